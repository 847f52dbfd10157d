#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "steadypg/batch.hpp"
#include "steadypg/cache.hpp"
#include "steadypg/circuit_breaker.hpp"
#include "steadypg/cluster.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/dsn.hpp"
#include "steadypg/pool.hpp"
#include "steadypg/retry.hpp"

namespace steadypg {

/// The resilience pipeline's settings (docs/resilience.md).
struct resilience_options {
  /// Off: every call is one attempt on a pooled connection (for measuring the layer's cost).
  bool enabled = true;
  /// max_retries (POSTGRESQL_MAX_RETRIES), base_delay (POSTGRESQL_RETRY_DELAY), …
  retry_options retry;
  retry_budget_options budget;
  /// failure_threshold (POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD), open_duration
  /// (POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT), …
  breaker_options breaker;
  /// Resolve a COMMIT whose reply was lost by asking the server (pg_xact_status of the
  /// transaction's id, fetched in COMMIT's round trip): committed → the call succeeds, aborted →
  /// transaction(fn) runs fn again, otherwise indeterminate_commit. Off: no id is fetched and a
  /// lost COMMIT is indeterminate_commit at once. Default true (docs/resilience.md).
  bool resolve_commits = true;
  /// How long resolving a lost COMMIT may take (reconnects while the server restarts, waits while
  /// the transaction is still in progress) when the call has no deadline of its own; with one,
  /// the call's deadline bounds it. Default 10000 ms, range 0–600000 ms (0: one try).
  std::chrono::milliseconds commit_resolution_timeout{10000};

  /// Throws config_error naming the field.
  void validate() const;
};

/// Metrics, slow queries and health monitoring (docs/observability.md).
struct observe_options {
  /// Metrics on or off. Default true. POSTGRESQL_METRICS_ENABLED (true/false/1/0).
  bool metrics_enabled = true;
  /// Calls slower than this are slow queries (logged, counted, kept in the ring of
  /// client::recent_slow_queries()); health is degraded when a ping is slower. Default 1000 ms,
  /// range 1–3600000 ms. POSTGRESQL_SLOW_QUERY_THRESHOLD.
  std::chrono::milliseconds slow_query_threshold{1000};
  /// Include parameter values in slow-query log lines and records. Default false (values can
  /// hold personal data). POSTGRESQL_LOG_PARAMETERS (true/false/1/0).
  bool log_parameters = false;
  /// EXPLAIN (no ANALYZE) a call over slow_query_threshold in the background, on a pooled
  /// connection of its own, and attach the plan's summary and findings to its slow-query
  /// record (docs/plans.md#slow-queries-with-their-plans). Default false.
  /// POSTGRESQL_EXPLAIN_SLOW_QUERIES (true/false/1/0).
  bool explain_slow_queries = false;
  /// With explain_slow_queries: the same statement text is EXPLAINed at most once per this
  /// interval. Default 60000 ms, range 1000–86400000 ms.
  std::chrono::milliseconds explain_slow_interval{60000};

  /// Throws config_error naming the field.
  void validate() const;
};

/// Everything a client needs, as one tree with the defaults and ranges of
/// docs/configuration.md. Build it with from_env() (environment), override fields in code,
/// then validate() (the client validates it again when it is built).
///
///     auto opts = steadypg::client_options::from_env();
///     opts.pool.max_size = 32;
///     opts.resilience.retry.max_retries = 5;
///     steadypg::client db{opts};
///
/// Each part is the aggregate its component takes on its own (a `connection`, a `basic_pool`,
/// a `circuit_breaker` …), so each knob has one name wherever it is used.
struct client_options {
  /// Connection string, URI (postgresql://…) or key=value; empty uses libpq's PG* variables.
  /// From DATABASE_URL. Parsed and validated once, by validate().
  std::string dsn;
  /// Each pooled connection's settings: connect_timeout (POSTGRESQL_CONNECTION_TIMEOUT),
  /// statement_timeout (POSTGRESQL_STATEMENT_TIMEOUT), statement_cache_capacity
  /// (POSTGRESQL_STATEMENT_CACHE_SIZE), pooler (POSTGRESQL_POOLER: PgBouncer in front, see
  /// docs/pgbouncer.md), cancel bounds, application_name. Its own `dsn` must
  /// stay empty: the client connects to client_options::dsn.
  connection_options connection;
  /// min_size (POSTGRESQL_POOL_MIN), max_size (POSTGRESQL_POOL_MAX), acquire_timeout
  /// (POSTGRESQL_ACQUIRE_TIMEOUT), health_check_interval (POSTGRESQL_HEALTH_CHECK_INTERVAL:
  /// the pool's maintenance and the client's health monitor), … The pool's connect deadline is
  /// connection.connect_timeout.
  pool_options pool;
  /// Retries, retry budget and circuit breaker.
  resilience_options resilience;
  /// Defaults of batch_execute(ops): batch_size (POSTGRESQL_BATCH_SIZE), concurrency
  /// (POSTGRESQL_BATCH_CONCURRENCY), timeout (POSTGRESQL_BATCH_TIMEOUT), …
  batch_options batch;
  /// Metrics, slow queries, parameters in logs.
  observe_options observe;
  /// Multi-host settings: default_route (POSTGRESQL_ROUTE), max_replica_lag
  /// (POSTGRESQL_MAX_REPLICA_LAG), probe_interval (POSTGRESQL_PROBE_INTERVAL), … The hosts
  /// themselves are the DSN's host list (docs/cluster.md).
  cluster_options cluster;
  /// The query-result cache of query_cached(): url (POSTGRESQL_CACHE_URL: local or
  /// redis://host:port[/db]), backend, defaults, notify_channel … (docs/cache.md).
  cache_options cache;

  /// Reads DATABASE_URL and every POSTGRESQL_* variable (the table of docs/configuration.md);
  /// unset variables keep their defaults, invalid ones throw config_error naming the variable,
  /// the value and the range.
  [[nodiscard]] static client_options from_env();
  /// Same, with an injectable lookup (tests): returns nullopt for an unset variable.
  [[nodiscard]] static client_options from_env(
      const std::function<std::optional<std::string>(std::string_view)>& lookup);

  /// Throws config_error when a field is out of range or the DSN is malformed. The message
  /// names the field by its path in this tree and, when it has one, its variable:
  /// `pool.max_size = 0 is out of range: expected an integer in 1–10000 (POSTGRESQL_POOL_MAX)`.
  void validate() const;
};

}  // namespace steadypg
