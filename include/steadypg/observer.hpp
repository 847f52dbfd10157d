#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <thread>

namespace steadypg {

class error;
enum class breaker_state;
enum class health_status;
enum class outcome;            // steadypg/sqlstate.hpp
enum class commit_resolution;  // steadypg/error.hpp

/// Why a pooled connection was closed.
enum class close_reason {
  broken,          ///< it failed (lost, validation failed, unusable status)
  idle,            ///< idle longer than idle_timeout
  lifetime,        ///< older than max_lifetime (with jitter)
  reset_failed,    ///< it could not be brought back to idle when returned
  pool_closed,     ///< the pool was destroyed
  idle_scale_down  ///< an adaptive pool's target shrank
};

/// A short stable name ("broken", "idle", "lifetime", "reset_failed", "pool_closed").
[[nodiscard]] std::string_view to_string(close_reason r) noexcept;

/// An adaptive (or observing) pool changed its target size or its admission limit.
struct pool_scaling_report {
  std::string_view direction;    ///< "up" or "down"
  std::string_view reason;       ///< "waiters", "idle", "server_cap", "overload", "recovery"
  std::string_view what;         ///< "target" or "admission"
  std::size_t from = 0, to = 0;  ///< 0 for an admission limit means none
  bool applied = true;           ///< false in observe mode
  double short_latency_ms = 0, long_latency_ms = 0;
  std::size_t active = 0, waiting = 0, server_cap = 0;
};

/// A connection held longer than leak_detection_threshold.
struct leak_report {
  std::uint64_t connection_id = 0;      ///< the pool's id for the connection
  std::chrono::nanoseconds held_for{};  ///< how long it has been out so far
  std::thread::id acquirer;             ///< the thread that acquired it
  std::string_view context;             ///< the context string passed to acquire(), or ""
};

/// The pool and the breaker when something happened (log context); -1 / "" when unknown.
struct call_context {
  int pool_active = -1, pool_idle = -1, pool_waiting = -1;
  std::string_view breaker;  ///< "closed", "open", "half_open", "forced_open"
};

/// One finished call of a client (after all its attempts).
struct call_report {
  call_report(std::string_view op, std::string_view statement, std::chrono::nanoseconds d, int n, std::uint64_t r,
              const error* e) noexcept
      : operation(op), sql(statement), duration(d), attempts(n), rows(r), failure(e) {}

  std::string_view operation;           ///< "execute", "transaction", a statement's name() …
  std::string_view sql;                 ///< the statement text ("" for transactions and pings)
  std::chrono::nanoseconds duration{};  ///< including pool waits, retries and backoff
  int attempts = 1;
  std::uint64_t rows = 0;          ///< rows returned or affected, when known
  const error* failure = nullptr;  ///< nullptr on success
  /// Filled for failed and slow calls (the hot path does not pay for it otherwise).
  call_context context;
  /// The host the last attempt used ("host:port"), and its index in the DSN's host list; ""
  /// and -1 when no host was chosen (for example no primary was available).
  std::string_view host;
  int host_index = -1;
  /// Slower than the client's slow_query_threshold.
  bool slow = false;
  /// The parameter values ("$1='a', $2=42"), only for slow calls and only when the client's
  /// log_parameters is on; "" otherwise.
  std::string_view params;
};

/// A call about to be retried.
struct retry_report {
  std::string_view operation;
  /// The outcome class of the failed attempt: not_sent, rolled_back or indeterminate (the
  /// only ones retried), or wrong_host for a multi-host client's fail-over to a new primary. Value-initialised
  /// (outcome::ok) only in a report made by hand.
  outcome failed_outcome{};
  /// The same as text, for logs: "not_sent", "rolled_back" or "indeterminate".
  std::string_view reason;
  std::string_view sqlstate;         ///< of the failed attempt
  int attempt = 2;                   ///< the number of the next attempt
  std::chrono::nanoseconds delay{};  ///< backoff before it
  call_context context;
};

/// A COMMIT whose reply was lost, after the server was asked what became of it.
struct commit_resolution_report {
  std::string_view operation;  ///< "transaction", a statement's name() …
  /// committed (the call succeeded), aborted (it runs again) or unknown (indeterminate_commit).
  commit_resolution result{};
  std::uint64_t xid = 0;            ///< the transaction's id
  std::chrono::nanoseconds took{};  ///< time spent asking (reconnects, waits)
  /// Why the outcome stayed unknown (a failover, no answer in time …); empty otherwise.
  std::string_view reason;
};

/// The plan of a slow call, EXPLAINed in the background after it (observe.explain_slow_queries).
struct slow_plan_report {
  std::string_view sql;                   ///< the statement, as the slow-query record has it
  std::string_view plan;                  ///< one-line summary, or "(no plan: …)"
  std::span<const std::string> findings;  ///< "rule: evidence" each
};

/// A finished batch (client::batch_execute).
struct batch_summary {
  std::string_view mode;  ///< "independent", "pipeline", "transaction"
  std::size_t total = 0, succeeded = 0, failed = 0;
  std::chrono::nanoseconds duration{};
  bool timed_out = false;
};

/// A host's role changed, as the topology prober of a multi-host client saw it.
struct topology_change {
  std::string_view host;  ///< "host:port"
  std::string_view from;  ///< host_role names: "unknown", "primary", "replica", "lagging", …
  std::string_view to;
  int primaries = 0;        ///< writable hosts after the change (more than 1: split brain)
  std::string_view reason;  ///< what the prober saw ("probe failed: …", "replay lag 12.3 s" …)
};

/// One probe of one host by the topology prober.
struct probe_report {
  std::size_t host_index = 0;
  std::string_view host;  ///< "host:port"
  std::chrono::nanoseconds duration{};
  bool ok = true;
  std::string_view error;  ///< why it failed ("" when ok)
};

/// A call that could not go where its route asked and went to another host.
struct route_fallback_report {
  std::string_view from;    ///< the route asked ("prefer_replica")
  std::string_view to;      ///< where it went ("primary")
  std::string_view reason;  ///< "none" (no replica is up), "lag" (every replica lags), "token"
                            ///< (no replica has replayed the call's write token)
};

/// Receives typed events from the core: the pool, calls, retries, the breaker, batches and
/// health. Every method has an empty default; override what you need. Methods may be called
/// from any thread, never with a pool lock held, and must not throw.
class observer {
 public:
  virtual ~observer() = default;

  /// A connection was handed out; `wait` is zero when one was idle.
  virtual void on_pool_acquired(std::chrono::nanoseconds wait) noexcept { (void)wait; }
  /// A connection came back after being used for `use`.
  virtual void on_pool_released(std::chrono::nanoseconds use) noexcept { (void)use; }
  /// A new connection was opened in `connect_time`.
  virtual void on_pool_connection_created(std::chrono::nanoseconds connect_time) noexcept { (void)connect_time; }
  /// Opening a connection failed.
  virtual void on_pool_connect_failed(const error& e) noexcept { (void)e; }
  /// A connection was closed.
  virtual void on_pool_connection_closed(close_reason reason) noexcept { (void)reason; }
  /// An acquire gave up after `waited`.
  virtual void on_pool_acquire_timeout(std::chrono::nanoseconds waited) noexcept { (void)waited; }
  /// An acquire was rejected at once because max_waiters were already queued.
  virtual void on_pool_rejected() noexcept {}
  /// A connection has been held longer than leak_detection_threshold (reported once per hold).
  virtual void on_pool_leak_suspected(const leak_report& report) noexcept { (void)report; }
  /// An acquire was rejected at once with pool_overloaded (the admission limit's queue was full).
  virtual void on_pool_overloaded() noexcept {}
  /// The pool's controller changed its target or admission limit (one event per change).
  virtual void on_pool_scaling(const pool_scaling_report& report) noexcept { (void)report; }

  /// A call is about to be retried.
  virtual void on_retry(const retry_report& report) noexcept { (void)report; }
  /// A retry was refused because the retry budget was spent.
  virtual void on_retry_budget_exhausted(std::string_view operation) noexcept { (void)operation; }
  /// The circuit breaker changed state.
  virtual void on_breaker_transition(breaker_state from, breaker_state to) noexcept { (void)from, (void)to; }
  /// A call was rejected at once by an open breaker.
  virtual void on_breaker_rejected() noexcept {}
  /// A cancel request was delivered to the server for a statement that passed its deadline
  /// (error::cancel_sent()).
  virtual void on_cancel_sent() noexcept {}
  /// A COMMIT was in flight when the connection was lost: its outcome is unknown.
  virtual void on_indeterminate_commit(std::string_view operation) noexcept { (void)operation; }
  /// The server was asked what became of a lost COMMIT (docs/resilience.md#resolving-a-lost-commit).
  virtual void on_commit_resolved(const commit_resolution_report& report) noexcept { (void)report; }
  /// The background EXPLAIN of a slow call finished (observe.explain_slow_queries): after the
  /// call's own on_call_finished, on the capture's thread.
  virtual void on_slow_query_plan(const slow_plan_report& report) noexcept { (void)report; }
  /// The background health monitor saw the status change (steadypg/health.hpp).
  virtual void on_health_changed(health_status from, health_status to) noexcept { (void)from, (void)to; }
  /// A batch finished (every operation succeeded or failed).
  virtual void on_batch_finished(const batch_summary& summary) noexcept { (void)summary; }
  /// A call finished (after all its attempts), successfully or not.
  virtual void on_call_finished(const call_report& report) noexcept { (void)report; }
  /// A host's role changed (multi-host clients; one event per change).
  virtual void on_topology_changed(const topology_change& change) noexcept { (void)change; }
  /// The prober probed a host.
  virtual void on_host_probed(const probe_report& report) noexcept { (void)report; }
  /// A call went to another host than its route asked (prefer_replica to the primary).
  virtual void on_route_fallback(const route_fallback_report& report) noexcept { (void)report; }
  /// With pooler none, a new connection looks like it goes through a pooler anyway
  /// (connection::pooler_suspicion()); reported once per pool. Nothing changes behaviour.
  virtual void on_pooler_suspected(std::string_view evidence) noexcept { (void)evidence; }
};

/// Forwards every event to two observers (either may be null), first `a`, then `b`: to log
/// and to count, or to add your own observer next to a log_observer.
class observer_tee final : public observer {
 public:
  observer_tee(observer* a, observer* b) noexcept : m_a(a), m_b(b) {}
  void on_pool_acquired(std::chrono::nanoseconds wait) noexcept override;
  void on_pool_released(std::chrono::nanoseconds use) noexcept override;
  void on_pool_connection_created(std::chrono::nanoseconds connect_time) noexcept override;
  void on_pool_connect_failed(const error& e) noexcept override;
  void on_pool_connection_closed(close_reason reason) noexcept override;
  void on_pool_acquire_timeout(std::chrono::nanoseconds waited) noexcept override;
  void on_pool_rejected() noexcept override;
  void on_pool_leak_suspected(const leak_report& report) noexcept override;
  void on_pool_overloaded() noexcept override;
  void on_pool_scaling(const pool_scaling_report& report) noexcept override;
  void on_retry(const retry_report& report) noexcept override;
  void on_retry_budget_exhausted(std::string_view operation) noexcept override;
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override;
  void on_breaker_rejected() noexcept override;
  void on_cancel_sent() noexcept override;
  void on_indeterminate_commit(std::string_view operation) noexcept override;
  void on_commit_resolved(const commit_resolution_report& report) noexcept override;
  void on_slow_query_plan(const slow_plan_report& report) noexcept override;
  void on_health_changed(health_status from, health_status to) noexcept override;
  void on_batch_finished(const batch_summary& summary) noexcept override;
  void on_call_finished(const call_report& report) noexcept override;
  void on_topology_changed(const topology_change& change) noexcept override;
  void on_host_probed(const probe_report& report) noexcept override;
  void on_route_fallback(const route_fallback_report& report) noexcept override;
  void on_pooler_suspected(std::string_view evidence) noexcept override;

 private:
  observer* m_a;
  observer* m_b;
};

}  // namespace steadypg
