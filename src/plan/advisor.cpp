// The index advisor: Dexter's algorithm (ankane/dexter lib/dexter/indexer.rb) with HypoPG
// hypothetical indexes, on the one connection they exist in.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "sql_scan.hpp"
#include "steadypg/error.hpp"
#include "steadypg/plan.hpp"
#include "steadypg/result.hpp"

namespace steadypg::plan {

namespace {

struct table_columns {
  std::string qualified;             // quote_ident(schema).quote_ident(name)
  std::vector<std::string> columns;  // candidates, in the order they were found
};

struct costed {
  double cost = 0;
  std::set<std::string> used;  // hypothetical index names the plan uses
};

// Identifiers in an expression: `code`, `t.code`, `"Odd Name"` (the part after the last dot).
std::set<std::string> identifiers(std::string_view expr) {
  std::set<std::string> out;
  std::size_t i = 0;
  while (i < expr.size()) {
    const char c = expr[i];
    if (c == '\'') {  // a literal: skip it
      i = internal::skip_quoted(expr, i);
      continue;
    }
    if (c == '"') {
      std::string w;
      ++i;
      while (i < expr.size()) {
        if (expr[i] == '"' && i + 1 < expr.size() && expr[i + 1] == '"') {
          w += '"';
          i += 2;
        } else if (expr[i] == '"') {
          ++i;
          break;
        } else {
          w += expr[i++];
        }
      }
      out.insert(w);
      continue;
    }
    if (internal::is_ident_char(c) && !(c >= '0' && c <= '9')) {
      std::string w;
      while (i < expr.size() && internal::is_ident_char(expr[i])) w += expr[i++];
      out.insert(w);
      continue;
    }
    ++i;
  }
  return out;
}

const char* const condition_keys[] = {"Filter",     "Index Cond",  "Recheck Cond", "Hash Cond",
                                      "Merge Cond", "Join Filter", "Sort Key",     "Group Key"};

std::string node_conditions(const node& n) {
  std::string all;
  for (const char* k : condition_keys) {
    // Sort Key and Group Key are arrays of expressions; the rest are strings.
    if (const auto v = n.string_key(k); !v.empty()) {
      all += v + " ";
    } else if (const auto raw = n.key(k)) {
      const auto arr = nlohmann::json::parse(raw->begin(), raw->end(), nullptr, false);
      if (!arr.is_array()) continue;
      for (const auto& e : arr) {
        if (e.is_string()) all += e.get<std::string>() + " ";
      }
    }
  }
  return all;
}

costed cost_of(connection& conn, std::string_view sql, const std::vector<param_ref>& refs) {
  const result rs = conn.execute_refs(fmt::format("EXPLAIN (FORMAT JSON) {}", sql), refs, false);
  const explained_plan p = parse(rs[0][0].text());
  costed c;
  c.cost = p.root.total_cost;
  for (const node* n : p.nodes()) {
    if (!n->index_name.empty() && n->index_name.find("btree_") != std::string::npos && n->index_name.front() == '<') {
      c.used.insert(n->index_name);
    }
  }
  return c;
}

std::string create_hypothetical(connection& conn, const std::string& table, const std::vector<std::string>& cols) {
  std::string list;
  for (const auto& c : cols) list += (list.empty() ? "" : ", ") + c;
  const result rs = conn.execute("SELECT indexname FROM hypopg_create_index($1)",
                                 fmt::format("CREATE INDEX ON {} ({})", table, list));
  return std::string(rs[0][0].text());
}

// Removes every hypothetical index of this backend when the advisor leaves, also on error.
class hypothetical_scope {
 public:
  explicit hypothetical_scope(connection& c) : m_conn(c) {}
  ~hypothetical_scope() {
    try {
      if (!m_conn.is_broken()) (void)m_conn.execute("SELECT hypopg_reset()");
    } catch (...) {  // NOLINT(bugprone-empty-catch): a broken session takes its hypothetical indexes with it
    }
  }
  hypothetical_scope(const hypothetical_scope&) = delete;
  hypothetical_scope& operator=(const hypothetical_scope&) = delete;
  void reset() { (void)m_conn.execute("SELECT hypopg_reset()"); }

 private:
  connection& m_conn;
};

}  // namespace

void advisor_options::validate() const {
  if (!(min_cost >= 0)) throw config_error(fmt::format("advisor_options.min_cost = {}: must be ≥ 0", min_cost));
  if (!(min_savings > 0 && min_savings < 1)) {
    throw config_error(fmt::format("advisor_options.min_savings = {}: must be in (0, 1)", min_savings));
  }
  if (max_columns_per_table < 1 || max_columns_per_table > 64) {
    throw config_error(fmt::format("advisor_options.max_columns_per_table = {}: must be 1–64", max_columns_per_table));
  }
}

advice_report advise(connection& conn, std::string_view sql, const param_list& params, const advisor_options& options) {
  options.validate();
  advice_report report;
  if (conn.status() == connection_status::failed_transaction) {
    throw usage_error("advise: the connection's transaction has failed; roll it back first");
  }
  const bool has_hypopg = conn.query_value<bool>("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg')");
  if (!has_hypopg) {
    const bool installable =
        conn.query_value<bool>("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg')");
    report.note = installable ? "no index advice: the hypopg extension is not created in this database "
                                "(CREATE EXTENSION hypopg)"
                              : "no index advice: the hypopg extension is not installed on the server "
                                "(Debian: postgresql-15-hypopg, then CREATE EXTENSION hypopg)";
    return report;
  }
  report.available = true;
  const auto refs = params.refs();

  // The statement's plan with the tables and conditions of each scan (VERBOSE qualifies them).
  const result first = conn.execute_refs(fmt::format("EXPLAIN (FORMAT JSON, VERBOSE) {}", sql), refs, false);
  const explained_plan plan = parse(first[0][0].text());
  report.cost = plan.root.total_cost;
  if (report.cost < options.min_cost) {
    report.note = fmt::format("no index advice: the plan costs {:.1f}, under the {:.0f} worth indexing for",
                              report.cost, options.min_cost);
    return report;
  }

  // Candidate columns: a table's columns named in the conditions of the nodes that read it or
  // join it (Dexter takes them from the parse tree; the plan's conditions name the same ones
  // that can use an index). json/jsonb columns are skipped, as Dexter does.
  std::string all_conditions;
  for (const node* n : plan.nodes()) all_conditions += node_conditions(*n);
  std::map<std::string, table_columns> tables;
  for (const node* n : plan.nodes()) {
    if (n->relation.empty()) continue;
    const std::string reg = (n->schema.empty() ? std::string() : n->schema + ".") + n->relation;
    const result cols = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname, a.attnum "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.oid = to_regclass(quote_ident($1) || '.' || quote_ident($2)) AND c.relkind IN ('r', 'm') "
        "AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype) "
        "ORDER BY a.attnum",
        n->schema.empty() ? std::string("public") : n->schema, n->relation);
    if (cols.empty()) continue;
    const std::set<std::string> named = identifiers(node_conditions(*n) + all_conditions);
    auto& t = tables[reg];
    t.qualified = std::string(cols[0][0].text());
    for (const auto& r : cols) {
      const std::string col(r[1].text());
      if (named.count(col) == 0) continue;
      if (std::find(t.columns.begin(), t.columns.end(), col) != t.columns.end()) continue;
      if (t.columns.size() < options.max_columns_per_table) t.columns.push_back(col);
    }
  }

  // Existing btree indexes' first two columns: a candidate they start with is covered.
  auto covered = [&](const std::string& table, const std::vector<std::string>& cols) {
    const result rs = conn.execute(
        "SELECT count(*) FROM pg_index i JOIN pg_am am ON am.oid = (SELECT relam FROM pg_class WHERE oid = "
        "i.indexrelid) WHERE i.indrelid = $1::regclass AND am.amname = 'btree' AND i.indpred IS NULL AND "
        "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest((i.indkey::int2[])[0:$3 - 1]) WITH "
        "ORDINALITY k(attnum, ord) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = $2",
        table, cols, static_cast<int>(cols.size()));
    return rs.as<std::int64_t>() > 0;
  };

  hypothetical_scope scope(conn);
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> by_name;  // hypo name → table, cols
  auto create_round = [&](std::size_t width) {
    for (const auto& [reg, t] : tables) {
      std::vector<std::vector<std::string>> sets;
      if (width == 1) {
        for (const auto& c : t.columns) sets.push_back({c});
      } else {
        for (const auto& a : t.columns) {
          for (const auto& b : t.columns) {
            if (a != b) sets.push_back({a, b});
          }
        }
      }
      for (const auto& cols : sets) {
        std::vector<std::string> quoted;
        for (const auto& c : cols) quoted.push_back(conn.query_value<std::string>("SELECT quote_ident($1)", c));
        if (covered(t.qualified, cols)) continue;
        by_name[create_hypothetical(conn, t.qualified, quoted)] = {t.qualified, quoted};
      }
    }
  };

  create_round(1);
  const costed round1 = cost_of(conn, sql, refs);
  costed best = round1;
  if (options.two_column) {
    scope.reset();
    by_name.clear();
    create_round(2);
    const costed round2 = cost_of(conn, sql, refs);
    // Dexter: two columns only when they halve the single-column cost again.
    if (round1.cost > options.min_cost && round2.cost < round1.cost * 0.5 && !round2.used.empty()) {
      best = round2;
    } else {
      scope.reset();
      by_name.clear();
      create_round(1);
      best = cost_of(conn, sql, refs);
    }
  }
  if (best.used.empty() || best.cost > report.cost * (1 - options.min_savings)) {
    report.note = best.used.empty()
                      ? "no index advice: no candidate index would be used"
                      : fmt::format(
                            "no index advice: the best candidate cuts the cost from {:.1f} to {:.1f}, under "
                            "{:.0f} %",
                            report.cost, best.cost, options.min_savings * 100);
    return report;
  }
  // Several new indexes in one plan: each is costed alone and only the winner is kept.
  std::vector<std::pair<std::string, std::vector<std::string>>> chosen;
  for (const auto& name : best.used) {
    if (auto it = by_name.find(name); it != by_name.end()) chosen.push_back(it->second);
  }
  std::pair<std::string, std::vector<std::string>> winner = chosen.front();
  double winner_cost = best.cost;
  if (chosen.size() > 1) {
    winner_cost = report.cost;
    for (const auto& cand : chosen) {
      scope.reset();
      (void)create_hypothetical(conn, cand.first, cand.second);
      const double c = cost_of(conn, sql, refs).cost;
      if (c < winner_cost) {
        winner_cost = c;
        winner = cand;
      }
    }
  }
  scope.reset();
  if (winner_cost > report.cost * (1 - options.min_savings)) {
    report.note = "no index advice: no single index cuts the cost enough on its own";
    return report;
  }
  index_advice a;
  a.table = winner.first;
  a.columns = winner.second;
  std::string list;
  for (const auto& c : a.columns) list += (list.empty() ? "" : ", ") + c;
  a.ddl = fmt::format("CREATE INDEX CONCURRENTLY ON {} ({})", a.table, list);
  a.cost_before = report.cost;
  a.cost_after = winner_cost;
  a.savings_pct = (report.cost - winner_cost) / report.cost * 100;
  report.indexes.push_back(std::move(a));
  return report;
}

}  // namespace steadypg::plan
