// The plan rules: pure functions over a parsed plan (docs/plans.md lists each with its
// threshold and the reason for it).

#include <fmt/format.h>

#include <cmath>
#include <string>

#include "steadypg/error.hpp"
#include "steadypg/plan.hpp"

namespace steadypg::plan {

namespace {

std::string where(const node& n) { return n.path + " " + n.label(); }

std::string num(double v) {
  if (std::fabs(v - std::round(v)) < 1e-9 && std::fabs(v) < 1e15) return fmt::format("{:.0f}", v);
  return fmt::format("{:.1f}", v);
}

bool is_scan_with_filter(const node& n) { return !n.string_key("Filter").empty(); }

void seq_scan_selective(const node& n, const rule_thresholds& t, std::vector<finding>& out) {
  if (n.node_type != "Seq Scan" || !n.actual_rows) return;
  const double read = n.rows + n.removed_rows;
  if (read < t.seq_scan_min_rows || read <= 0) return;
  const double share = n.removed_rows / read;
  if (share < t.seq_scan_removed_share) return;
  out.push_back({"seq_scan_selective", severity::warning, where(n),
                 fmt::format("read {} rows, filter `{}` removed {} ({:.1f} %), returned {}", num(read),
                             n.string_key("Filter"), num(n.removed_rows), share * 100, num(n.rows)),
                 fmt::format("an index on {} over the filter's columns would read only the rows it returns "
                             "(the advisor checks with HypoPG when it is installed)",
                             n.relation)});
}

void row_misestimate(const node& n, const node* parent, const rule_thresholds& t, std::vector<finding>& out) {
  if (!n.estimate_factor || *n.estimate_factor < t.misestimate_warn) return;
  if (n.rows < t.misestimate_min_rows && n.planned_rows < t.misestimate_min_rows) return;
  // Under a Limit the child stops early by design: its actual rows say nothing of the estimate.
  if (parent != nullptr && parent->node_type == "Limit") return;
  const auto level = *n.estimate_factor >= t.misestimate_critical ? severity::critical : severity::warning;
  out.push_back({"row_misestimate", level, where(n),
                 fmt::format("estimated {} rows, got {} ({}-estimate by a factor of {:.1f})", num(n.planned_rows),
                             num(n.rows), n.under_estimate ? "under" : "over", *n.estimate_factor),
                 "refresh statistics (ANALYZE), raise the column's statistics target, or add extended statistics "
                 "(CREATE STATISTICS … (dependencies)) for correlated columns; the error spreads to the nodes "
                 "above"});
}

const node* child_by_role(const node& n, std::string_view role) {
  for (const auto& c : n.children) {
    if (c.parent_relationship == role) return &c;
  }
  return nullptr;
}

void nested_loop_large(const node& n, const rule_thresholds& t, std::vector<finding>& out) {
  if (n.node_type != "Nested Loop" || !n.actual_rows) return;
  const node* outer = child_by_role(n, "Outer");
  const node* inner = child_by_role(n, "Inner");
  if (outer == nullptr || inner == nullptr) return;
  if (outer->rows < t.nested_loop_outer_rows) return;
  // The inner side's work is its rows produced plus those it read and threw away, each loop.
  const double inner_work = inner->rows + inner->removed_rows;
  const bool seq_inner = inner->node_type == "Seq Scan" || inner->node_type == "Materialize";
  if (!seq_inner && inner_work < t.nested_loop_inner_rows) return;
  out.push_back({"nested_loop_large", severity::warning, where(n),
                 fmt::format("{} outer rows; inner side `{}` ran {} times and handled {} rows", num(outer->rows),
                             inner->label(), num(inner->actual_loops.value_or(1)), num(inner_work)),
                 "index the inner side's join key so each outer row is a lookup; check the outer row estimate "
                 "(a hash join may have been rejected on a misestimate)"});
}

void sort_spill(const node& n, std::vector<finding>& out) {
  if (n.node_type != "Sort" && n.node_type != "Incremental Sort") return;
  const std::string method = n.string_key("Sort Method");
  const std::string space = n.string_key("Sort Space Type");
  if (space != "Disk" && method.rfind("external", 0) != 0) return;
  const auto used = n.number_key("Sort Space Used");
  out.push_back({
      "sort_spill",
      severity::warning,
      where(n),
      fmt::format("Sort Method: {}, {} kB on {}", method.empty() ? "?" : method, used ? num(*used) : std::string("?"),
                  space.empty() ? "?" : space),
      fmt::format("raise work_mem for this query above {} kB (2× the space used), or read the rows in "
                  "order from an index on the sort key",
                  used ? num(*used * 2) : std::string("twice the space used")),
  });
}

void hash_batches(const node& n, std::vector<finding>& out) {
  if (n.node_type != "Hash") return;
  const auto batches = n.number_key("Hash Batches");
  if (!batches || *batches <= 1) return;
  const auto original = n.number_key("Original Hash Batches").value_or(*batches);
  const auto peak = n.number_key("Peak Memory Usage");
  std::string evidence = fmt::format("Hash Batches: {} (planned {}), peak memory {} kB", num(*batches), num(original),
                                     peak ? num(*peak) : std::string("?"));
  std::string suggestion = "raise work_mem for this query so the hash table fits in memory in one batch";
  if (*batches > original) {
    evidence += "; more batches than planned: the planner under-estimated the rows";
    suggestion += "; refresh the statistics of the hashed table (ANALYZE)";
  }
  out.push_back({"hash_batches", severity::warning, where(n), std::move(evidence), std::move(suggestion)});
}

void lossy_bitmap(const node& n, std::vector<finding>& out) {
  if (n.node_type != "Bitmap Heap Scan") return;
  const auto lossy = n.number_key("Lossy Heap Blocks");
  if (!lossy || *lossy <= 0) return;
  out.push_back(
      {"lossy_bitmap", severity::warning, where(n),
       fmt::format("Lossy Heap Blocks: {}, Exact Heap Blocks: {}, Rows Removed by Index Recheck: {}", num(*lossy),
                   num(n.number_key("Exact Heap Blocks").value_or(0)), num(n.recheck_removed_rows)),
       "raise work_mem for this query: the bitmap did not fit and fell back to whole pages, whose every "
       "row is rechecked"});
}

void filter_heavy_index(const node& n, const rule_thresholds& t, std::vector<finding>& out) {
  if (n.node_type != "Index Scan" && n.node_type != "Index Only Scan" && n.node_type != "Bitmap Heap Scan") return;
  if (!n.actual_rows) return;
  const double removed = n.removed_rows + n.recheck_removed_rows;
  if (removed < t.index_filter_removed_rows) return;
  if (removed < t.index_filter_ratio * std::max(n.rows, 1.0)) return;
  // A lossy bitmap's rechecks are lossy_bitmap's finding, not a badly chosen index.
  if (n.node_type == "Bitmap Heap Scan" && n.number_key("Lossy Heap Blocks").value_or(0) > 0 &&
      n.removed_rows < t.index_filter_removed_rows) {
    return;
  }
  const std::string filter = is_scan_with_filter(n) ? n.string_key("Filter") : n.string_key("Recheck Cond");
  out.push_back({"filter_heavy_index", severity::warning, where(n),
                 fmt::format("returned {} rows, removed {} after the index (`{}`)", num(n.rows), num(removed), filter),
                 "a composite index with the filter's columns after the index's, or a partial index WHERE the "
                 "filter holds, would skip those rows"});
}

void walk(const node& n, const node* parent, const rule_thresholds& t, std::vector<finding>& out) {
  seq_scan_selective(n, t, out);
  row_misestimate(n, parent, t, out);
  nested_loop_large(n, t, out);
  sort_spill(n, out);
  hash_batches(n, out);
  lossy_bitmap(n, out);
  filter_heavy_index(n, t, out);
  for (const auto& c : n.children) walk(c, &n, t, out);
}

void positive(double v, const char* name) {
  if (!(v > 0) || !std::isfinite(v)) {
    throw config_error(fmt::format("rule_thresholds.{} = {}: must be a finite number > 0", name, v));
  }
}

}  // namespace

std::string_view to_string(severity s) noexcept {
  switch (s) {
    case severity::info: return "info";
    case severity::warning: return "warning";
    case severity::critical: return "critical";
  }
  return "?";
}

void rule_thresholds::validate() const {
  positive(seq_scan_min_rows, "seq_scan_min_rows");
  positive(seq_scan_removed_share, "seq_scan_removed_share");
  if (seq_scan_removed_share > 1) {
    throw config_error(
        fmt::format("rule_thresholds.seq_scan_removed_share = {}: must be in (0, 1]", seq_scan_removed_share));
  }
  positive(misestimate_warn, "misestimate_warn");
  positive(misestimate_critical, "misestimate_critical");
  if (misestimate_critical < misestimate_warn) {
    throw config_error(fmt::format("rule_thresholds.misestimate_critical = {} is below misestimate_warn = {}",
                                   misestimate_critical, misestimate_warn));
  }
  positive(misestimate_min_rows, "misestimate_min_rows");
  positive(nested_loop_outer_rows, "nested_loop_outer_rows");
  positive(nested_loop_inner_rows, "nested_loop_inner_rows");
  positive(index_filter_removed_rows, "index_filter_removed_rows");
  positive(index_filter_ratio, "index_filter_ratio");
}

std::vector<finding> analyze(const explained_plan& plan, const rule_thresholds& thresholds) {
  thresholds.validate();
  std::vector<finding> out;
  walk(plan.root, nullptr, thresholds, out);
  return out;
}

}  // namespace steadypg::plan
