#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "steadypg/error.hpp"
#include "steadypg/observe/metrics.hpp"
#include "steadypg/observe/statement_metrics.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/pool.hpp"

namespace steadypg::observe {

/// Turns the core's events into the metrics of docs/metrics.md (Prometheus names):
/// postgresql_queries_total{outcome}, postgresql_query_duration_seconds,
/// postgresql_query_errors_total{sqlstate_class}, postgresql_operation_retry_total{reason},
/// postgresql_slow_query_total, postgresql_pool_acquire_duration_seconds,
/// postgresql_pool_acquire_timeouts_total, postgresql_connections_closed_total{reason},
/// postgresql_circuit_breaker_transitions_total{from,to}, postgresql_retry_budget_exhausted_total,
/// postgresql_commit_resolutions_total{result},
/// and the batch families (fed by batch execution); and the gauges that mirror live state,
/// read when the metrics are rendered: postgresql_pool_connections{state},
/// postgresql_pool_max_connections, postgresql_pool_pending_requests (watch_pool),
/// postgresql_circuit_breaker_state{state} (watch_breaker) and postgresql_health_status{status}
/// (watch_health); postgresql_pooler_suspected (1 once a connection looked pooled while the
/// pooler setting is none). Every metric name of docs/metrics.md is in this class's source file.
class client_metrics final : public observer {
 public:
  /// Registers every family in `reg`; queries slower than `slow_query_threshold` count as slow.
  /// With `hosts` ("host:port" of each host, in the order of call_report::host_index)
  /// postgresql_queries_total gets a host label (host="none" for calls that found no host),
  /// and the prober's families postgresql_host_probe_duration_seconds{host} and
  /// postgresql_host_probe_failures_total{host} are registered.
  client_metrics(registry& reg, std::chrono::milliseconds slow_query_threshold, std::vector<std::string> hosts = {});

  void on_pool_acquired(std::chrono::nanoseconds wait) noexcept override;
  void on_pool_connection_closed(close_reason reason) noexcept override;
  void on_pool_acquire_timeout(std::chrono::nanoseconds waited) noexcept override;
  void on_retry(const retry_report& report) noexcept override;
  void on_retry_budget_exhausted(std::string_view operation) noexcept override;
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override;
  void on_call_finished(const call_report& report) noexcept override;
  void on_commit_resolved(const commit_resolution_report& report) noexcept override;
  void on_batch_finished(const batch_summary& summary) noexcept override;
  void on_host_probed(const probe_report& report) noexcept override;
  void on_topology_changed(const topology_change& change) noexcept override;
  void on_route_fallback(const route_fallback_report& report) noexcept override;
  void on_pooler_suspected(std::string_view evidence) noexcept override;
  void on_pool_scaling(const pool_scaling_report& report) noexcept override;

  /// Registers the pool gauges, which call `read` when rendered. Call once.
  void watch_pool(std::function<pool_stats()> read);
  /// Registers the one-hot breaker state gauge. Call once.
  void watch_breaker(std::function<breaker_state()> read);
  /// Registers the one-hot health status gauge. Call once.
  void watch_health(std::function<health_status()> read);

  /// Queries finished (ok + error) — for connection_info().
  [[nodiscard]] std::uint64_t queries() const noexcept;
  /// The query duration histogram.
  [[nodiscard]] const histogram& query_durations() const noexcept { return *m_query_duration; }
  /// Slow queries counted.
  [[nodiscard]] std::uint64_t slow_queries() const noexcept { return m_slow->value(); }
  /// Failed calls counted.
  [[nodiscard]] std::uint64_t query_errors() const noexcept;
  /// Retries counted (all reasons).
  [[nodiscard]] std::uint64_t retries() const noexcept;
  /// Pool acquires that timed out.
  [[nodiscard]] std::uint64_t acquire_timeouts() const noexcept { return m_acquire_timeouts->value(); }
  /// The per-statement families (calls of named statements).
  [[nodiscard]] const statement_metrics& statements() const noexcept { return m_statements; }
  /// Lost COMMITs resolved so far with `result` (committed, aborted or unknown).
  [[nodiscard]] std::uint64_t commit_resolutions(commit_resolution result) const noexcept;

 private:
  registry& m_registry;
  std::chrono::nanoseconds m_slow_threshold;
  // Calls finished, ok and error: one of each without hosts; with hosts, one per host, then
  // host="none".
  std::vector<counter*> m_calls_ok;
  std::vector<counter*> m_calls_error;
  std::vector<histogram*> m_probe_duration;
  std::vector<counter*> m_probe_failures;
  histogram* m_query_duration;
  counter* m_slow;
  histogram* m_batch_duration;
  counter* m_batch_operations;
  counter* m_batch_errors;
  histogram* m_acquire_duration;
  counter* m_acquire_timeouts;
  counter* m_budget_exhausted;
  gauge* m_pooler_suspected;
  std::array<counter*, 4> m_retry{};        // not_sent, rolled_back, indeterminate, wrong_host
  std::array<counter*, 6> m_closed{};       // by close_reason
  std::array<counter*, 3> m_resolutions{};  // committed, aborted, unknown
  statement_metrics m_statements;
  std::mutex m_lazy;  // first error of a class, first transition of a pair
};

}  // namespace steadypg::observe
