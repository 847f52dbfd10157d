// `steadypg explain SQL [-p V]… [--analyze] [--advise] [--json]`: the plan as a tree, the
// rules' findings and HypoPG index advice (docs/plans.md).

#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "cli.hpp"
#include "steadypg/plan.hpp"

namespace steadypg::cli {

namespace {

std::string rows_text(double v) {
  if (v >= 1e6) return fmt::format("{:.1f}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

void print_node(std::string& out, const plan::node& n, int depth, bool analyzed) {
  const std::string indent(static_cast<std::size_t>(depth) * 2, ' ');
  const std::string role =
      n.parent_relationship.empty() || n.parent_relationship == "Outer" || n.parent_relationship == "Inner"
          ? std::string()
          : "[" + n.parent_relationship + "] ";
  out += fmt::format("{}{}{}{}  cost {:.2f}..{:.2f}", indent, depth > 0 ? "-> " : "", role, n.label(), n.startup_cost,
                     n.total_cost);
  if (analyzed && n.actual_loops) {
    out += fmt::format("  time {:.3f} ms (self {:.3f})  rows {} of est {}", n.total_time_ms, n.exclusive_time_ms,
                       rows_text(n.rows), rows_text(n.planned_rows));
    if (n.estimate_factor && *n.estimate_factor >= 2) {
      out += fmt::format(" ({} ×{:.1f})", n.under_estimate ? "under" : "over", *n.estimate_factor);
    }
    if (*n.actual_loops > 1) out += fmt::format("  loops {:.0f}", *n.actual_loops);
  } else {
    out += fmt::format("  est rows {}", rows_text(n.planned_rows));
  }
  out += '\n';
  for (const char* k : {"Filter", "Index Cond", "Hash Cond", "Join Filter", "Sort Method"}) {
    const std::string v = n.string_key(k);
    if (!v.empty()) out += fmt::format("{}     {}: {}\n", indent, k, v);
  }
  if (n.removed_rows > 0) out += fmt::format("{}     rows removed by filter: {}\n", indent, rows_text(n.removed_rows));
  for (const auto& c : n.children) print_node(out, c, depth + 1, analyzed);
}

}  // namespace

int run_explain(const context& ctx, const std::string& sql, const std::vector<std::string>& params, bool analyze,
                bool advise) {
  try {
    client_options o = ctx.options;
    o.pool.max_size = 1;
    o.pool.min_size = 0;
    command_client d(ctx, o);
    param_list p;
    for (const auto& v : params) p.add_text(v);
    plan::explain_options eo;
    eo.analyze = analyze;
    const plan::explain_report report = d->explain(sql, p, eo);
    std::optional<plan::advice_report> advice;
    if (advise) advice = d->advise(sql, p);

    if (ctx.json) {
      json_doc findings = json_doc::array();
      for (const auto& f : report.findings) {
        findings.push_back({{"rule", f.rule},
                            {"severity", std::string(plan::to_string(f.level))},
                            {"node", f.node},
                            {"evidence", f.evidence},
                            {"suggestion", f.suggestion}});
      }
      json_doc adv = json_doc::array();
      if (advice) {
        for (const auto& a : advice->indexes) {
          adv.push_back({{"ddl", a.ddl},
                         {"cost_before", a.cost_before},
                         {"cost_after", a.cost_after},
                         {"savings_pct", std::round(a.savings_pct * 10) / 10}});
        }
      }
      json_doc doc{{"plan", json_doc::parse(report.plan.json)}, {"findings", findings}, {"advice", adv}};
      if (advice && advice->indexes.empty() && !advice->note.empty()) doc["advice_note"] = advice->note;
      context::print_json(doc);
      return ok;
    }
    std::string out;
    print_node(out, report.plan.root, 0, report.plan.analyzed);
    if (report.plan.planning_time_ms) out += fmt::format("Planning: {:.3f} ms", *report.plan.planning_time_ms);
    if (report.plan.execution_time_ms) out += fmt::format("  Execution: {:.3f} ms", *report.plan.execution_time_ms);
    if (report.plan.planning_time_ms || report.plan.execution_time_ms) out += '\n';
    if (analyze) out += "(ANALYZE ran the statement inside a transaction that was rolled back)\n";
    out += fmt::format("\nFindings ({}):\n", report.findings.size());
    if (report.findings.empty()) out += "  none\n";
    for (const auto& f : report.findings) {
      out += fmt::format("  [{}] {} at {}\n      evidence:   {}\n      suggestion: {}\n", plan::to_string(f.level),
                         f.rule, f.node, f.evidence, f.suggestion);
    }
    if (advice) {
      out += "\nIndex advice:\n";
      if (advice->indexes.empty()) out += fmt::format("  {}\n", advice->note);
      for (const auto& a : advice->indexes) {
        out += fmt::format("  {};\n      cost {:.1f} -> {:.1f} ({:.1f} % less; checked with a hypothetical index)\n",
                           a.ddl, a.cost_before, a.cost_after, a.savings_pct);
      }
    }
    std::fputs(out.c_str(), stdout);
    return ok;
  } catch (...) {
    return report_error(ctx, "explain");
  }
}

}  // namespace steadypg::cli
