#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace steadypg {

/// Everything a client needs, with the defaults and ranges of docs/configuration.md.
/// Build it with from_env() (environment), override fields in code, then validate().
struct client_options {
  /// Connection string, URI (postgresql://…) or key=value; empty uses libpq's PG* variables.
  /// From DATABASE_URL.
  std::string dsn;
  /// Retries after the first attempt. Default 3, range 0–100. POSTGRESQL_MAX_RETRIES.
  int max_retries = 3;
  /// Backoff base delay. Default 1000 ms, range 0–600000 ms. POSTGRESQL_RETRY_DELAY.
  std::chrono::milliseconds retry_delay{1000};
  /// Consecutive health failures that open the breaker. Default 5, range 1–10000.
  /// POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD.
  int circuit_breaker_threshold = 5;
  /// How long the breaker stays open. Default 30000 ms, range 100–3600000 ms.
  /// POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT.
  std::chrono::milliseconds circuit_breaker_timeout{30000};
  /// Connect deadline. Default 10000 ms, range 100–600000 ms. POSTGRESQL_CONNECTION_TIMEOUT.
  std::chrono::milliseconds connection_timeout{10000};
  /// Metrics on or off. Default true. POSTGRESQL_METRICS_ENABLED (true/false/1/0).
  bool metrics_enabled = true;
  /// Queries slower than this are flagged. Default 1000 ms, range 1–3600000 ms.
  /// POSTGRESQL_SLOW_QUERY_THRESHOLD.
  std::chrono::milliseconds slow_query_threshold{1000};
  /// Include parameter values in slow-query log lines and records. Default false (values can
  /// hold personal data). POSTGRESQL_LOG_PARAMETERS (true/false/1/0).
  bool log_parameters = false;
  /// Background health-check period. Default 30000 ms, range 100–3600000 ms.
  /// POSTGRESQL_HEALTH_CHECK_INTERVAL.
  std::chrono::milliseconds health_check_interval{30000};
  /// Connections kept open. Default 0, range 0–10000, ≤ pool_max. POSTGRESQL_POOL_MIN.
  int pool_min = 0;
  /// Connections at most. Default 10, range 1–10000. POSTGRESQL_POOL_MAX.
  int pool_max = 10;
  /// How long to wait for a pooled connection. Default 5000 ms, range 1–600000 ms.
  /// POSTGRESQL_ACQUIRE_TIMEOUT.
  std::chrono::milliseconds acquire_timeout{5000};
  /// Server-side statement_timeout; 0 disables it. Default 0, range 0–86400000 ms.
  /// POSTGRESQL_STATEMENT_TIMEOUT.
  std::chrono::milliseconds statement_timeout{0};
  /// Operations per batch chunk. Default 10, ≥ 1. POSTGRESQL_BATCH_SIZE.
  int batch_size = 10;
  /// Connections a batch may use at once. Default 3, range 1–1024. POSTGRESQL_BATCH_CONCURRENCY.
  int batch_concurrency = 3;
  /// Deadline for a whole batch. Default 30000 ms, ≥ 1 ms. POSTGRESQL_BATCH_TIMEOUT.
  std::chrono::milliseconds batch_timeout{30000};
  /// Prepared statements cached per connection; 0 disables the cache (PgBouncer transaction
  /// mode). Default 256, range 0–100000. POSTGRESQL_STATEMENT_CACHE_SIZE.
  int statement_cache_size = 256;

  /// Reads DATABASE_URL and every POSTGRESQL_* variable; unset variables keep their
  /// defaults, invalid ones throw config_error naming the variable, the value and the range.
  [[nodiscard]] static client_options from_env();
  /// Same, with an injectable lookup (tests): returns nullopt for an unset variable.
  [[nodiscard]] static client_options from_env(
      const std::function<std::optional<std::string>(std::string_view)>& lookup);

  /// Throws config_error when a field is out of range or the DSN is malformed.
  void validate() const;
};

/// The DSN as libpq reads it (PQconninfoParse), normalized in its own form (key=value or URI),
/// with every secret (password, sslpassword, any keyword libpq displays as "*") as "****".
/// A string libpq cannot parse is shown conservatively (see docs/configuration.md). Never throws.
[[nodiscard]] std::string redact_dsn(std::string_view dsn);

/// Throws config_error, with the DSN redacted, unless libpq parses it and every value libpq checks
/// only when connecting (port, sslmode, connect_timeout, host/port counts, …) is valid.
void validate_dsn(std::string_view dsn);

}  // namespace steadypg
