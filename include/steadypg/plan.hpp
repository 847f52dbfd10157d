#pragma once

// EXPLAIN-based plan analysis: the plan model, the rules, explain() on a connection and the
// HypoPG index advisor (docs/plans.md).

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "steadypg/connection.hpp"
#include "steadypg/params.hpp"

namespace steadypg::plan {

/// One plan node, as EXPLAIN (FORMAT JSON) gives it, with PEV2-style normalised figures.
struct node {
  std::string node_type;                    ///< "Seq Scan", "Hash Join", "ModifyTable" …
  std::string relation;                     ///< "Relation Name" (empty when none)
  std::string schema;                       ///< "Schema" (only with VERBOSE)
  std::string alias;                        ///< "Alias"
  std::string index_name;                   ///< "Index Name"
  std::string parent_relationship;          ///< "Outer", "Inner", "SubPlan", "InitPlan" …
  std::string path;                         ///< where it is in the tree: "0", "0.1", "0.1.0"
  double startup_cost = 0;                  ///< "Startup Cost"
  double total_cost = 0;                    ///< "Total Cost"
  double plan_rows = 0;                     ///< "Plan Rows" (per loop)
  double plan_width = 0;                    ///< "Plan Width"
  std::optional<double> actual_total_time;  ///< "Actual Total Time" (ms per loop; ANALYZE)
  std::optional<double> actual_rows;        ///< "Actual Rows" (per loop; ANALYZE)
  std::optional<double> actual_loops;       ///< "Actual Loops" (ANALYZE)
  double workers = 0;                       ///< "Workers Launched" of the nearest Gather above (or its own)
  double rows_removed_by_filter = 0;        ///< "Rows Removed by Filter" (per loop)
  double rows_removed_by_recheck = 0;       ///< "Rows Removed by Index Recheck" (per loop)
  /// Every key of the node but "Plans", as JSON text, in the plan's order (unknown keys
  /// included: nothing is dropped).
  std::vector<std::pair<std::string, std::string>> keys;
  std::vector<node> children;  ///< "Plans"

  // Normalised (PEV2 plan-service.ts); zero without ANALYZE.
  double total_time_ms = 0;         ///< actual total time × loops / (workers + 1)
  double exclusive_time_ms = 0;     ///< total_time_ms minus the children's (≥ 0)
  double exclusive_cost = 0;        ///< total_cost minus the children's (≥ 0)
  double rows = 0;                  ///< actual rows × loops
  double planned_rows = 0;          ///< plan rows × loops
  double removed_rows = 0;          ///< rows removed by filter × loops
  double recheck_removed_rows = 0;  ///< rows removed by index recheck × loops
  /// actual/planned when the planner under-estimated, planned/actual otherwise (≥ 1);
  /// nullopt without ANALYZE or when both are 0.
  std::optional<double> estimate_factor;
  bool under_estimate = false;  ///< the planner expected fewer rows than came

  /// A key's JSON text ("\"t\"", "12", "[…]"), or nullopt.
  [[nodiscard]] std::optional<std::string_view> key(std::string_view name) const;
  /// A string key's value ("Filter", "Sort Method" …), or empty.
  [[nodiscard]] std::string string_key(std::string_view name) const;
  /// A numeric key's value ("Hash Batches", "Lossy Heap Blocks" …), or nullopt.
  [[nodiscard]] std::optional<double> number_key(std::string_view name) const;
  /// "Seq Scan on t" / "Index Scan using t_pkey on t" — how a person names the node.
  [[nodiscard]] std::string label() const;
};

/// A parsed EXPLAIN: the root node and the statement-level figures.
struct explained_plan {
  node root;
  std::optional<double> planning_time_ms;   ///< "Planning Time"
  std::optional<double> execution_time_ms;  ///< "Execution Time" (ANALYZE)
  bool analyzed = false;                    ///< the plan carries actual figures
  std::string json;                         ///< the EXPLAIN output as the server gave it

  /// Every node, depth first, root first.
  [[nodiscard]] std::vector<const node*> nodes() const;
};

/// Parses EXPLAIN (FORMAT JSON[, ANALYZE, BUFFERS]) output (the array, or its one object).
/// Keys it does not know are kept in node::keys; a key of an unexpected type is treated as
/// absent. Throws usage_error when the text is not JSON or has no "Plan" object.
[[nodiscard]] explained_plan parse(std::string_view json);

/// How bad a finding is.
enum class severity { info, warning, critical };
/// "info", "warning", "critical".
[[nodiscard]] std::string_view to_string(severity s) noexcept;

/// One thing the rules found, with the numbers it is based on.
struct finding {
  std::string rule;                                    ///< "seq_scan_selective", "row_misestimate" … (docs/plans.md)
  steadypg::plan::severity level = severity::warning;  ///< how bad
  std::string node;                                    ///< the node's path and label: "0.1 Seq Scan on t"
  std::string evidence;                                ///< the figures from the plan or the catalog
  std::string suggestion;                              ///< what to do about it
};

/// The rules' thresholds (defaults from docs/plans.md; each must be > 0).
struct rule_thresholds {
  /// seq_scan_selective: rows read (returned + removed by filter), default 10000.
  double seq_scan_min_rows = 10000;
  /// seq_scan_selective: share of the rows read that the filter removed, default 0.9 (0–1].
  double seq_scan_removed_share = 0.9;
  /// row_misestimate: estimate factor for a warning, default 10.
  double misestimate_warn = 10;
  /// row_misestimate: estimate factor for a critical finding, default 100.
  double misestimate_critical = 100;
  /// row_misestimate: skipped when both estimated and actual rows are under this, default 10.
  double misestimate_min_rows = 10;
  /// nested_loop_large: outer rows, default 1000.
  double nested_loop_outer_rows = 1000;
  /// nested_loop_large: inner rows × loops (when the inner side is not a Seq Scan), default 100000.
  double nested_loop_inner_rows = 100000;
  /// filter_heavy_index: rows removed by filter or recheck, default 1000.
  double index_filter_removed_rows = 1000;
  /// filter_heavy_index: removed ÷ returned, default 10.
  double index_filter_ratio = 10;

  /// Throws config_error when a threshold is out of range.
  void validate() const;
};

/// The plan rules over one plan (pure; no server): seq_scan_selective, row_misestimate,
/// nested_loop_large, sort_spill, hash_batches, lossy_bitmap, filter_heavy_index. Rules that
/// need actual figures stay silent on a plan without ANALYZE.
[[nodiscard]] std::vector<finding> analyze(const explained_plan& plan, const rule_thresholds& thresholds = {});

/// fk_missing_index: foreign keys of (or onto) `tables` (names as the plan gives them; empty:
/// every table of the database) whose columns are not the leading columns of an index on the
/// referencing table. A catalog query on `conn`.
[[nodiscard]] std::vector<finding> unindexed_foreign_keys(connection& conn,
                                                          const std::vector<std::string>& tables = {});

/// How explain() runs.
struct explain_options {
  /// EXPLAIN ANALYZE: runs the statement, inside BEGIN … ROLLBACK (a savepoint in an open
  /// transaction). Default false (plain EXPLAIN, nothing runs).
  bool analyze = false;
  /// Adds BUFFERS to an ANALYZE run. Default true.
  bool buffers = true;
  /// statement_timeout for the ANALYZE run (SET LOCAL), default 30 s; 1 ms – 24 h.
  std::chrono::milliseconds statement_timeout{30000};
  /// Checks the catalog for foreign keys without an index on the plan's tables. Default true.
  bool check_foreign_keys = true;
  /// The rules' thresholds.
  rule_thresholds thresholds;

  /// Throws config_error when a field is out of range.
  void validate() const;
};

/// A plan and what the rules found in it.
struct explain_report {
  explained_plan plan;
  std::vector<finding> findings;
};

/// EXPLAINs `sql` on `conn` with `params` bound as execute() binds them (PostgreSQL 15 plans
/// `$n` only with values). Statements EXPLAIN cannot take, or that cannot run in a transaction
/// (VACUUM, CREATE INDEX CONCURRENTLY …), are refused with usage_error before anything is sent.
/// With analyze, the statement runs inside BEGIN … ROLLBACK, or SAVEPOINT … ROLLBACK TO
/// SAVEPOINT when `conn` is in a transaction (which stays usable); a rollback does not undo
/// nextval() or effects outside the database. A connection in a failed transaction is refused.
[[nodiscard]] explain_report explain(connection& conn, std::string_view sql, const param_list& params = {},
                                     const explain_options& options = {});

/// How the index advisor runs (Dexter's thresholds).
struct advisor_options {
  /// Statements whose plan costs less are left alone, default 100.
  double min_cost = 100;
  /// An index must cut the plan's cost by this share, default 0.5 (0–1).
  double min_savings = 0.5;
  /// Try ordered two-column indexes too. Default true.
  bool two_column = true;
  /// Candidate columns per table at most (the rest are ignored), default 8; 1–64.
  std::size_t max_columns_per_table = 8;

  /// Throws config_error when a field is out of range.
  void validate() const;
};

/// One index worth creating.
struct index_advice {
  std::string ddl;    ///< "CREATE INDEX CONCURRENTLY ON public.t (code)"
  std::string table;  ///< schema-qualified
  std::vector<std::string> columns;
  double cost_before = 0;  ///< the plan's total cost now
  double cost_after = 0;   ///< with the (hypothetical) index
  double savings_pct = 0;  ///< (before − after) ÷ before × 100
};

/// What the advisor found.
struct advice_report {
  bool available = false;             ///< hypopg is installed in the database
  std::string note;                   ///< why there is no advice, when there is none
  double cost = 0;                    ///< the statement's plan cost without new indexes
  std::vector<index_advice> indexes;  ///< the winner(s); empty when nothing saves enough
};

/// The Dexter algorithm with HypoPG on `conn` (hypothetical indexes live in one backend):
/// candidate columns from the plan's conditions, every single-column then every ordered
/// two-column index, kept only when it cuts the cost by min_savings and no existing btree
/// already starts with those columns. Creates nothing real, and removes its hypothetical
/// indexes before it returns (also on error). Without hypopg, available is false and the
/// note says how to get it.
[[nodiscard]] advice_report advise(connection& conn, std::string_view sql, const param_list& params = {},
                                   const advisor_options& options = {});

}  // namespace steadypg::plan
