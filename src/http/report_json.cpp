#include "steadypg/http/report_json.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "json_parts.hpp"

namespace steadypg::http {

namespace internal {

double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

namespace {
json or_null(const std::optional<double>& v) { return v ? json(round3(*v)) : json(nullptr); }
}  // namespace

json hosts_doc(const topology_report& t) {
  json hosts = json::array();
  for (const auto& h : t.hosts) {
    hosts.push_back({{"host", h.host},
                     {"port", h.port},
                     {"role", std::string(to_string(h.role))},
                     {"lag_seconds", or_null(h.lag_seconds)},
                     {"lag_bytes", h.lag_bytes ? json(*h.lag_bytes) : json(nullptr)},
                     {"timeline", h.timeline},
                     {"probe_ms", round3(h.probe_ms)},
                     {"breaker", h.breaker}});
    if (!h.last_error.empty()) hosts.back()["error"] = h.last_error;
  }
  return hosts;
}

json info_doc(const connection_info_report& i) {
  json slow = json::array();
  for (const auto& q : i.recent_slow_queries) {
    json e{{"operation", q.operation}, {"sql", q.sql},           {"duration_ms", round3(q.duration_ms)},
           {"rows", q.rows},           {"attempts", q.attempts}, {"failed", q.failed}};
    if (!q.params.empty()) e["params"] = q.params;
    if (!q.plan.empty()) {
      e["plan"] = q.plan;
      e["plan_findings"] = q.plan_findings;
    }
    slow.push_back(std::move(e));
  }
  json doc{{"server",
            {{"version", i.server.version},
             {"uptime_seconds", i.server.uptime_seconds},
             {"connections",
              {{"active", i.server.connections.active},
               {"idle", i.server.connections.idle},
               {"total", i.server.connections.total},
               {"max", i.server.connections.max}}}}},
           {"pool",
            {{"active", i.pool.active},
             {"idle", i.pool.idle},
             {"total", i.pool.total},
             {"waiting", i.pool.waiting},
             {"max", i.pool.max},
             {"mode", std::string(to_string(i.pool.mode))},
             {"target", i.pool.target_size},
             {"admission_limit", i.pool.admission_limit},
             {"server_cap", i.pool.server_cap}}},
           {"performance",
            {{"queries", i.performance.queries},
             {"avg_query_ms", round3(i.performance.avg_query_ms)},
             {"p95_query_ms", round3(i.performance.p95_query_ms)},
             {"slow_queries", i.performance.slow_queries}}},
           {"recent_slow_queries", std::move(slow)}};
  if (i.topology.probing) {
    doc["primary"] = i.topology.primary ? json(i.topology.hosts[*i.topology.primary].label) : json(nullptr);
    doc["hosts"] = hosts_doc(i.topology);
  }
  return doc;
}

json health_doc(const health_report& h) {
  json doc{{"status", std::string(to_string(h.status))},
           {"latency_ms", round3(h.latency_ms)},
           {"threshold_ms", h.threshold_ms},
           {"breaker", std::string(to_string(h.breaker))},
           {"error", h.error.empty() ? json(nullptr) : json(h.error)}};
  if (!h.reason.empty()) doc["reason"] = h.reason;
  if (!h.hosts.empty()) {
    json hosts = json::array();
    for (const auto& x : h.hosts) {
      hosts.push_back({{"host", x.host},
                       {"role", x.role},
                       {"status", std::string(to_string(x.status))},
                       {"probe_ms", round3(x.probe_ms)}});
      if (!x.reason.empty()) hosts.back()["reason"] = x.reason;
    }
    doc["hosts"] = std::move(hosts);
  }
  return doc;
}

std::string dump(const json& doc) { return doc.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace internal

std::string info_json(const connection_info_report& info) { return internal::dump(internal::info_doc(info)); }
std::string hosts_json(const topology_report& topology) { return internal::dump(internal::hosts_doc(topology)); }
std::string health_json(const health_report& health) { return internal::dump(internal::health_doc(health)); }

}  // namespace steadypg::http
