// The plan model: EXPLAIN (FORMAT JSON) parsed into nodes, normalised as PEV2 does
// (dalibo/pev2 src/services/plan-service.ts).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <string>

#include "steadypg/error.hpp"
#include "steadypg/plan.hpp"

namespace steadypg::plan {

namespace {

using json = nlohmann::ordered_json;

std::string text_of(const json& o, const char* key) {
  const auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::optional<double> number_of(const json& o, const char* key) {
  const auto it = o.find(key);
  if (it == o.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  if (!(v == v)) return std::nullopt;  // NaN never comes from the server; treat as absent
  return v;
}

node parse_node(const json& o, const std::string& path, double inherited_workers, int depth) {
  if (depth > 1000) throw usage_error("EXPLAIN JSON: the plan is nested more than 1000 levels deep");
  node n;
  n.path = path;
  n.node_type = text_of(o, "Node Type");
  if (n.node_type.empty()) n.node_type = "?";
  n.relation = text_of(o, "Relation Name");
  n.schema = text_of(o, "Schema");
  n.alias = text_of(o, "Alias");
  n.index_name = text_of(o, "Index Name");
  n.parent_relationship = text_of(o, "Parent Relationship");
  n.startup_cost = number_of(o, "Startup Cost").value_or(0);
  n.total_cost = number_of(o, "Total Cost").value_or(0);
  n.plan_rows = number_of(o, "Plan Rows").value_or(0);
  n.plan_width = number_of(o, "Plan Width").value_or(0);
  n.actual_total_time = number_of(o, "Actual Total Time");
  n.actual_rows = number_of(o, "Actual Rows");
  n.actual_loops = number_of(o, "Actual Loops");
  n.rows_removed_by_filter = number_of(o, "Rows Removed by Filter").value_or(0);
  n.rows_removed_by_recheck = number_of(o, "Rows Removed by Index Recheck").value_or(0);
  // Workers of a Gather apply to the nodes under it (their times are per worker).
  double workers = inherited_workers;
  if (auto w = number_of(o, "Workers Launched")) workers = *w;
  n.workers = workers;
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (it.key() == "Plans") continue;
    n.keys.emplace_back(it.key(), it.value().dump());
  }
  const auto plans = o.find("Plans");
  if (plans != o.end() && plans->is_array()) {
    std::size_t i = 0;
    for (const auto& child : *plans) {
      if (!child.is_object()) continue;
      const bool is_gather = n.node_type == "Gather" || n.node_type == "Gather Merge";
      n.children.push_back(
          parse_node(child, path + "." + std::to_string(i++), is_gather ? workers : inherited_workers, depth + 1));
    }
  }
  return n;
}

void normalise(node& n) {
  for (auto& c : n.children) normalise(c);
  const double loops = std::max(1.0, n.actual_loops.value_or(1));
  n.planned_rows = n.plan_rows * loops;
  if (n.actual_total_time) {
    // Under a Gather, Actual Loops counts the workers and the leader: per PEV2, the node's
    // wall time is the per-loop time × loops shared among them.
    const double share = n.node_type == "Gather" || n.node_type == "Gather Merge" ? 1.0 : n.workers + 1;
    n.total_time_ms = *n.actual_total_time * loops / share;
  }
  if (n.actual_rows) n.rows = *n.actual_rows * loops;
  n.removed_rows = n.rows_removed_by_filter * loops;
  n.recheck_removed_rows = n.rows_removed_by_recheck * loops;
  double child_time = 0;
  double child_cost = 0;
  for (const auto& c : n.children) {
    // InitPlans and SubPlans are timed on their own, not as part of the parent's input.
    child_time += c.total_time_ms;
    child_cost += c.total_cost;
  }
  n.exclusive_time_ms = std::max(0.0, n.total_time_ms - child_time);
  n.exclusive_cost = std::max(0.0, n.total_cost - child_cost);
  if (n.actual_rows) {
    const double actual = n.rows;
    const double planned = n.planned_rows;
    if (actual > 0 || planned > 0) {
      // A zero on either side counts as one row, so that the factor stays finite.
      const double a = std::max(actual, 1.0);
      const double p = std::max(planned, 1.0);
      n.under_estimate = a > p;
      n.estimate_factor = a > p ? a / p : p / a;
    }
  }
}

void collect(const node& n, std::vector<const node*>& out) {
  out.push_back(&n);
  for (const auto& c : n.children) collect(c, out);
}

}  // namespace

std::optional<std::string_view> node::key(std::string_view name) const {
  for (const auto& [k, v] : keys) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::string node::string_key(std::string_view name) const {
  const auto v = key(name);
  if (!v) return {};
  const json j = json::parse(*v, nullptr, false);
  return j.is_string() ? j.get<std::string>() : std::string();
}

std::optional<double> node::number_key(std::string_view name) const {
  const auto v = key(name);
  if (!v) return std::nullopt;
  const json j = json::parse(*v, nullptr, false);
  if (!j.is_number()) return std::nullopt;
  return j.get<double>();
}

std::string node::label() const {
  std::string s = node_type;
  if (!index_name.empty()) s += " using " + index_name;
  if (!relation.empty()) {
    s += " on " + relation;
    if (!alias.empty() && alias != relation) s += " " + alias;
  }
  return s;
}

std::vector<const node*> explained_plan::nodes() const {
  std::vector<const node*> out;
  collect(root, out);
  return out;
}

explained_plan parse(std::string_view text) {
  const json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) throw usage_error("EXPLAIN JSON: not valid JSON");
  const json* top = &doc;
  if (doc.is_array()) {
    if (doc.empty() || !doc.front().is_object()) throw usage_error("EXPLAIN JSON: expected [{\"Plan\": …}]");
    top = &doc.front();
  }
  if (!top->is_object()) throw usage_error("EXPLAIN JSON: expected an object with \"Plan\"");
  const auto plan = top->find("Plan");
  if (plan == top->end() || !plan->is_object()) throw usage_error("EXPLAIN JSON: no \"Plan\" object");
  explained_plan out;
  out.root = parse_node(*plan, "0", 0, 0);
  normalise(out.root);
  out.planning_time_ms = number_of(*top, "Planning Time");
  out.execution_time_ms = number_of(*top, "Execution Time");
  out.analyzed = out.root.actual_loops.has_value();
  out.json = std::string(text);
  return out;
}

}  // namespace steadypg::plan
