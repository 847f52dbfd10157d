#include "steadypg/config.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

#include "check.hpp"
#include "steadypg/error.hpp"

namespace steadypg {
namespace {

using internal::int_range;
namespace ranges = internal::ranges;

template <typename T>
long long as_integer(const T& v) {
  if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
    return v.count();
  } else if constexpr (std::is_unsigned_v<T>) {
    return v > static_cast<T>(internal::no_max) ? internal::no_max : static_cast<long long>(v);
  } else {
    return static_cast<long long>(v);
  }
}

template <typename T>
void assign(T& member, long long v) {
  if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
    member = std::chrono::milliseconds{v};
  } else {
    member = static_cast<T>(v);  // within the knob's range, which every member type holds
  }
}

// One table maps each variable to its place in the tree and drives both from_env() and
// validate(), so the two cannot disagree.
struct int_knob {
  std::string_view env;
  std::string_view path;
  int_range range;
  long long (*get)(const client_options&);
  void (*set)(client_options&, long long);
};

#define STEADYPG_INT_KNOB(env, member, range)                                          \
  int_knob {                                                                           \
    env, #member, range, [](const client_options& o) { return as_integer(o.member); }, \
        [](client_options& o, long long v) { assign(o.member, v); }                    \
  }

const std::vector<int_knob>& int_knobs() {
  static const std::vector<int_knob> k{
      STEADYPG_INT_KNOB("POSTGRESQL_MAX_RETRIES", resilience.retry.max_retries, ranges::max_retries),
      STEADYPG_INT_KNOB("POSTGRESQL_RETRY_DELAY", resilience.retry.base_delay, ranges::retry_delay),
      STEADYPG_INT_KNOB("POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", resilience.breaker.failure_threshold,
                        ranges::breaker_threshold),
      STEADYPG_INT_KNOB("POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", resilience.breaker.open_duration, ranges::breaker_open),
      STEADYPG_INT_KNOB("POSTGRESQL_CONNECTION_TIMEOUT", connection.connect_timeout, ranges::connect_timeout),
      STEADYPG_INT_KNOB("POSTGRESQL_SLOW_QUERY_THRESHOLD", observe.slow_query_threshold, ranges::slow_query_threshold),
      STEADYPG_INT_KNOB("POSTGRESQL_HEALTH_CHECK_INTERVAL", pool.health_check_interval, ranges::health_check_interval),
      STEADYPG_INT_KNOB("POSTGRESQL_POOL_MIN", pool.min_size, ranges::pool_min),
      STEADYPG_INT_KNOB("POSTGRESQL_POOL_MAX", pool.max_size, ranges::pool_max),
      STEADYPG_INT_KNOB("POSTGRESQL_ACQUIRE_TIMEOUT", pool.acquire_timeout, ranges::acquire_timeout),
      STEADYPG_INT_KNOB("POSTGRESQL_STATEMENT_TIMEOUT", connection.statement_timeout, ranges::statement_timeout),
      STEADYPG_INT_KNOB("POSTGRESQL_BATCH_SIZE", batch.batch_size, ranges::batch_size),
      STEADYPG_INT_KNOB("POSTGRESQL_BATCH_CONCURRENCY", batch.concurrency, ranges::batch_concurrency),
      STEADYPG_INT_KNOB("POSTGRESQL_BATCH_TIMEOUT", batch.timeout, ranges::batch_timeout),
      STEADYPG_INT_KNOB("POSTGRESQL_STATEMENT_CACHE_SIZE", connection.statement_cache_capacity,
                        ranges::statement_cache),
      STEADYPG_INT_KNOB("POSTGRESQL_MAX_REPLICA_LAG", cluster.max_replica_lag, ranges::max_replica_lag),
      STEADYPG_INT_KNOB("POSTGRESQL_PROBE_INTERVAL", cluster.probe_interval, ranges::probe_interval),
  };
  return k;
}

#undef STEADYPG_INT_KNOB

struct flag_knob {
  std::string_view env;
  bool& (*at)(client_options&);
};

const std::vector<flag_knob>& flag_knobs() {
  static const std::vector<flag_knob> k{
      {"POSTGRESQL_METRICS_ENABLED", [](client_options& o) -> bool& { return o.observe.metrics_enabled; }},
      {"POSTGRESQL_LOG_PARAMETERS", [](client_options& o) -> bool& { return o.observe.log_parameters; }},
      {"POSTGRESQL_EXPLAIN_SLOW_QUERIES", [](client_options& o) -> bool& { return o.observe.explain_slow_queries; }},
  };
  return k;
}

// Variables that name one of a few values.
struct choice_knob {
  std::string_view env;
  std::string_view values;  // for the message: "primary, read_write, …"
  bool (*set)(client_options&, std::string_view);
};

const std::vector<choice_knob>& choice_knobs() {
  static const std::vector<choice_knob> k{
      {"POSTGRESQL_ROUTE", "primary, read_write, prefer_replica, replica, any",
       [](client_options& o, std::string_view v) {
         auto r = parse_route(v);
         if (r) o.cluster.default_route = *r;
         return r.has_value();
       }},
      {"POSTGRESQL_POOLER", "none, session, transaction, statement",
       [](client_options& o, std::string_view v) {
         const auto m = parse_pooler_mode(v);
         if (m) o.connection.pooler = *m;
         return m.has_value();
       }},
      {"POSTGRESQL_POOL_MODE", "fixed, adaptive, observe",
       [](client_options& o, std::string_view v) {
         const auto m = parse_pool_mode(v);
         if (m) o.pool.mode = *m;
         return m.has_value();
       }},
  };
  return k;
}

}  // namespace

void resilience_options::validate() const {
  retry.validate();
  budget.validate();
  breaker.validate();
  internal::check_range("resilience_options.commit_resolution_timeout", commit_resolution_timeout, {0, 600000, " ms"},
                        " (0 one try)");
}

void observe_options::validate() const {
  internal::check_range("observe_options.slow_query_threshold", slow_query_threshold, ranges::slow_query_threshold);
  internal::check_range("observe_options.explain_slow_interval", explain_slow_interval, {1000, 86400000, " ms"});
}

client_options client_options::from_env() {
  return from_env([](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

client_options client_options::from_env(const std::function<std::optional<std::string>(std::string_view)>& lookup) {
  client_options o;
  if (auto url = lookup("DATABASE_URL")) o.dsn = *url;
  for (const auto& k : int_knobs()) {
    if (auto v = lookup(k.env)) k.set(o, internal::parse_int(k.env, *v, k.range));
  }
  for (const auto& k : flag_knobs()) {
    if (auto v = lookup(k.env)) k.at(o) = internal::parse_bool(k.env, *v);
  }
  for (const auto& k : choice_knobs()) {
    if (auto v = lookup(k.env); v && !k.set(o, *v)) {
      throw config_error(fmt::format("{}=\"{}\" is invalid: expected one of {}", k.env, *v, k.values));
    }
  }
  if (auto v = lookup("POSTGRESQL_CACHE_URL")) o.cache.url = *v;
  // A base delay above the default cap raises the cap with it.
  if (o.resilience.retry.max_delay < o.resilience.retry.base_delay) {
    o.resilience.retry.max_delay = o.resilience.retry.base_delay;
  }
  o.validate();
  return o;
}

void client_options::validate() const {
  for (const auto& k : int_knobs()) {
    internal::check_range(k.path, k.get(*this), k.range, fmt::format(" ({})", k.env));
  }
  if (pool.min_size > pool.max_size) {
    internal::out_of_range("pool.min_size", fmt::format("{}", pool.min_size),
                           fmt::format("must not exceed pool.max_size ({}) (POSTGRESQL_POOL_MIN ≤ POSTGRESQL_POOL_MAX)",
                                       pool.max_size));
  }
  if (!connection.dsn.empty()) {
    throw config_error(
        "connection.dsn is set: a client connects to client_options::dsn (DATABASE_URL); leave connection.dsn empty");
  }
  internal::check_dsn_for_pooler(dsn, connection.pooler, "dsn (DATABASE_URL)", "connection.pooler (POSTGRESQL_POOLER)");
  connection.validate();
  pool.validate();
  resilience.validate();
  cache.validate();
  batch.validate();
  observe.validate();
  cluster.validate();
  if (!dsn.empty()) validate_dsn(dsn);
}

}  // namespace steadypg
