#include "steadypg/observe/client_metrics.hpp"

#include "steadypg/circuit_breaker.hpp"
#include "steadypg/error.hpp"
#include "steadypg/health.hpp"

namespace steadypg::observe {

namespace {

// True for a statement's own name (statement{…}.name()); false for the operations the client
// names itself, whose calls are unnamed SQL and never labelled (postgresql_statement_* families,
// src/observe/statement_metrics.cpp).
bool is_statement_name(std::string_view op) noexcept {
  return !op.empty() && op != "execute" && op != "transaction" && op != "ping" && op != "batch" && op != "copy" &&
         op != "copy_to";
}

// The counters' values summed.
template <typename Counters>
std::uint64_t sum(const Counters& counters) noexcept {
  std::uint64_t n = 0;
  for (const counter* c : counters) n += c->value();
  return n;
}

}  // namespace

client_metrics::client_metrics(registry& reg, std::chrono::milliseconds slow_query_threshold,
                               std::vector<std::string> hosts)
    : m_registry(reg), m_slow_threshold(slow_query_threshold), m_statements(reg) {
  // The call counters of one host (`host` empty: of a client without hosts, unlabelled).
  auto add_calls = [&](const std::string& host) {
    const std::string help = host.empty() ? "Calls finished, by outcome" : "Calls finished, by outcome and host";
    for (auto [calls, outcome] : {std::pair{&m_calls_ok, "ok"}, std::pair{&m_calls_error, "error"}}) {
      labels l{{"outcome", outcome}};
      if (!host.empty()) l.emplace_back("host", host);
      calls->push_back(&reg.add_counter("postgresql_queries_total", help, l));
    }
  };
  if (hosts.empty()) {
    add_calls({});
  } else {
    for (const auto& h : hosts) {
      m_probe_duration.push_back(&reg.add_histogram("postgresql_host_probe_duration_seconds",
                                                    "Duration of the topology prober's probes", {{"host", h}}));
      m_probe_failures.push_back(
          &reg.add_counter("postgresql_host_probe_failures_total", "Probes that failed", {{"host", h}}));
    }
    hosts.emplace_back("none");
    for (const auto& h : hosts) add_calls(h);
    reg.add_counter("postgresql_route_fallbacks_total", "Calls that went to another host than their route asked",
                    {{"from", "prefer_replica"}, {"to", "primary"}, {"reason", "none"}});
  }
  m_query_duration =
      &reg.add_histogram("postgresql_query_duration_seconds", "Duration of calls including retries and pool waits");
  reg.add_counter("postgresql_query_errors_total", "Failed calls by SQLSTATE class", {{"sqlstate_class", "none"}});
  const char* reasons[] = {"not_sent", "rolled_back", "indeterminate", "wrong_host"};
  for (std::size_t i = 0; i < m_retry.size(); ++i) {
    m_retry[i] = &reg.add_counter("postgresql_operation_retry_total", "Retries, by the outcome of the failed attempt",
                                  {{"reason", reasons[i]}});
  }
  m_slow = &reg.add_counter("postgresql_slow_query_total", "Calls slower than the slow-query threshold");
  m_batch_duration = &reg.add_histogram("postgresql_batch_duration_seconds", "Duration of batch executions");
  m_batch_operations = &reg.add_counter("postgresql_batch_operations_total", "Operations in batch executions");
  m_batch_errors = &reg.add_counter("postgresql_batch_errors_total", "Batch operations that did not succeed");
  m_acquire_duration =
      &reg.add_histogram("postgresql_pool_acquire_duration_seconds", "Time spent waiting for a pooled connection");
  m_acquire_timeouts =
      &reg.add_counter("postgresql_pool_acquire_timeouts_total", "Acquires that gave up at their deadline");
  const close_reason all[] = {close_reason::broken,       close_reason::idle,        close_reason::lifetime,
                              close_reason::reset_failed, close_reason::pool_closed, close_reason::idle_scale_down};
  for (std::size_t i = 0; i < m_closed.size(); ++i) {
    m_closed[i] = &reg.add_counter("postgresql_connections_closed_total", "Pooled connections closed, by reason",
                                   {{"reason", std::string(to_string(all[i]))}});
  }
  reg.add_counter("postgresql_circuit_breaker_transitions_total", "Circuit breaker state changes",
                  {{"from", "closed"}, {"to", "open"}});
  const char* resolutions[] = {"committed", "aborted", "unknown"};
  for (std::size_t i = 0; i < m_resolutions.size(); ++i) {
    m_resolutions[i] = &reg.add_counter("postgresql_commit_resolutions_total",
                                        "COMMITs whose reply was lost, by what the server said of them afterwards",
                                        {{"result", resolutions[i]}});
  }
  m_budget_exhausted =
      &reg.add_counter("postgresql_retry_budget_exhausted_total", "Retries refused because the retry budget was spent");
  m_pooler_suspected = &reg.add_gauge("postgresql_pooler_suspected",
                                      "1 when a connection looked pooled (PgBouncer) while the pooler setting is none");
}

void client_metrics::on_pooler_suspected(std::string_view) noexcept { m_pooler_suspected->set(1); }

void client_metrics::watch_pool(std::function<pool_stats()> read) {
  auto shared = std::make_shared<std::function<pool_stats()>>(std::move(read));
  auto& reg = m_registry;
  reg.add_gauge_callback("postgresql_pool_connections", "Pooled connections by state", {{"state", "active"}},
                         [shared] { return static_cast<double>((*shared)().active); });
  reg.add_gauge_callback("postgresql_pool_connections", "Pooled connections by state", {{"state", "idle"}},
                         [shared] { return static_cast<double>((*shared)().idle); });
  reg.add_gauge_callback("postgresql_pool_max_connections", "Pool size limit", {},
                         [shared] { return static_cast<double>((*shared)().max); });
  reg.add_gauge_callback("postgresql_pool_pending_requests", "Callers waiting for a pooled connection", {},
                         [shared] { return static_cast<double>((*shared)().waiting); });
  reg.add_gauge_callback("postgresql_pool_target_size",
                         "Connections the pool's controller wants (max_size in fixed mode)", {},
                         [shared] { return static_cast<double>((*shared)().target_size); });
  reg.add_gauge_callback("postgresql_pool_admission_limit",
                         "Callers allowed to hold a connection at once under overload (the target when no limit)", {},
                         [shared] {
                           const auto st = (*shared)();
                           return static_cast<double>(st.admission_limit != 0 ? st.admission_limit : st.target_size);
                         });
  reg.add_gauge_callback("postgresql_pool_server_cap", "Connections the server can give the pool (0 unknown)", {},
                         [shared] { return static_cast<double>((*shared)().server_cap); });
}

void client_metrics::on_pool_scaling(const pool_scaling_report& r) noexcept {
  try {
    std::lock_guard lk(m_lazy);
    m_registry
        .add_counter("postgresql_pool_scaling_events_total", "Changes of the pool's target size or admission limit",
                     {{"direction", std::string(r.direction)}, {"reason", std::string(r.reason)}})
        .inc();
  } catch (...) {
  }
}

void client_metrics::watch_breaker(std::function<breaker_state()> read) {
  auto shared = std::make_shared<std::function<breaker_state()>>(std::move(read));
  for (breaker_state st :
       {breaker_state::closed, breaker_state::open, breaker_state::half_open, breaker_state::forced_open}) {
    m_registry.add_gauge_callback("postgresql_circuit_breaker_state", "Circuit breaker state (one-hot)",
                                  {{"state", std::string(to_string(st))}},
                                  [shared, st] { return (*shared)() == st ? 1.0 : 0.0; });
  }
}

void client_metrics::watch_health(std::function<health_status()> read) {
  auto shared = std::make_shared<std::function<health_status()>>(std::move(read));
  for (health_status st : {health_status::healthy, health_status::degraded, health_status::unhealthy}) {
    m_registry.add_gauge_callback("postgresql_health_status", "Last background health check (one-hot)",
                                  {{"status", std::string(to_string(st))}},
                                  [shared, st] { return (*shared)() == st ? 1.0 : 0.0; });
  }
}

void client_metrics::on_pool_acquired(std::chrono::nanoseconds wait) noexcept {
  m_acquire_duration->observe(std::chrono::duration<double>(wait).count());
}

void client_metrics::on_pool_connection_closed(close_reason reason) noexcept {
  const auto i = static_cast<std::size_t>(reason);
  if (i < m_closed.size()) m_closed[i]->inc();
}

void client_metrics::on_pool_acquire_timeout(std::chrono::nanoseconds) noexcept { m_acquire_timeouts->inc(); }

void client_metrics::on_retry(const retry_report& r) noexcept {
  // The counters of the constructor's `reasons`: not_sent, rolled_back, indeterminate.
  switch (r.failed_outcome) {
    case outcome::not_sent: m_retry[0]->inc(); break;
    case outcome::rolled_back: m_retry[1]->inc(); break;
    case outcome::wrong_host: m_retry[3]->inc(); break;  // a fail-over to the new primary
    case outcome::indeterminate:
    case outcome::ok:
    case outcome::fatal: m_retry[2]->inc(); break;  // only indeterminate ones are retried (idempotent calls)
  }
}

void client_metrics::on_retry_budget_exhausted(std::string_view) noexcept { m_budget_exhausted->inc(); }

void client_metrics::on_breaker_transition(breaker_state from, breaker_state to) noexcept {
  try {
    std::lock_guard lk(m_lazy);
    m_registry
        .add_counter("postgresql_circuit_breaker_transitions_total", "Circuit breaker state changes",
                     {{"from", std::string(to_string(from))}, {"to", std::string(to_string(to))}})
        .inc();
  } catch (...) {
  }
}

void client_metrics::on_call_finished(const call_report& report) noexcept {
  const auto duration = report.duration;
  const error* failure = report.failure;
  const double seconds = std::chrono::duration<double>(duration).count();
  m_query_duration->observe(seconds);
  if (duration >= m_slow_threshold) m_slow->inc();
  if (is_statement_name(report.operation)) m_statements.record(report.operation, seconds, failure != nullptr);
  // Without hosts the one pair; with hosts the call's host, else host="none" (the last).
  const std::size_t last = m_calls_ok.size() - 1;
  const std::size_t i =
      report.host_index >= 0 && static_cast<std::size_t>(report.host_index) < last ? report.host_index : last;
  if (failure == nullptr) {
    m_calls_ok[i]->inc();
    return;
  }
  m_calls_error[i]->inc();
  try {
    const std::string& s = failure->sqlstate();
    const std::string cls = s.size() == 5 ? s.substr(0, 2) : std::string("none");
    std::lock_guard lk(m_lazy);  // the class set is bounded (SQLSTATE classes)
    m_registry.add_counter("postgresql_query_errors_total", "Failed calls by SQLSTATE class", {{"sqlstate_class", cls}})
        .inc();
  } catch (...) {
  }
}

namespace {

// The index of `r` in the constructor's `resolutions`, or -1 for none.
int resolution_index(commit_resolution r) noexcept {
  switch (r) {
    case commit_resolution::committed: return 0;
    case commit_resolution::aborted: return 1;
    case commit_resolution::unknown: return 2;
    case commit_resolution::none: break;
  }
  return -1;
}

}  // namespace

void client_metrics::on_commit_resolved(const commit_resolution_report& r) noexcept {
  if (const int i = resolution_index(r.result); i >= 0) m_resolutions[static_cast<std::size_t>(i)]->inc();
}

std::uint64_t client_metrics::commit_resolutions(commit_resolution result) const noexcept {
  const int i = resolution_index(result);
  return i < 0 ? 0 : m_resolutions[static_cast<std::size_t>(i)]->value();
}

void client_metrics::on_batch_finished(const batch_summary& b) noexcept {
  m_batch_duration->observe(std::chrono::duration<double>(b.duration).count());
  m_batch_operations->inc(b.total);
  m_batch_errors->inc(b.failed);
}

void client_metrics::on_host_probed(const probe_report& r) noexcept {
  if (r.host_index >= m_probe_duration.size()) return;
  m_probe_duration[r.host_index]->observe(std::chrono::duration<double>(r.duration).count());
  if (!r.ok) m_probe_failures[r.host_index]->inc();
}

void client_metrics::on_topology_changed(const topology_change& c) noexcept {
  try {
    std::lock_guard lk(m_lazy);  // hosts × roles: bounded by the DSN
    m_registry
        .add_counter("postgresql_topology_changes_total", "Host role changes seen by the prober",
                     {{"host", std::string(c.host)}, {"from", std::string(c.from)}, {"to", std::string(c.to)}})
        .inc();
  } catch (...) {
  }
}

void client_metrics::on_route_fallback(const route_fallback_report& r) noexcept {
  try {
    std::lock_guard lk(m_lazy);  // routes × reasons: a handful
    m_registry
        .add_counter("postgresql_route_fallbacks_total", "Calls that went to another host than their route asked",
                     {{"from", std::string(r.from)}, {"to", std::string(r.to)}, {"reason", std::string(r.reason)}})
        .inc();
  } catch (...) {
  }
}

std::uint64_t client_metrics::queries() const noexcept { return sum(m_calls_ok) + sum(m_calls_error); }

std::uint64_t client_metrics::query_errors() const noexcept { return sum(m_calls_error); }

std::uint64_t client_metrics::retries() const noexcept { return sum(m_retry); }

}  // namespace steadypg::observe
