#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <cstdint>
#include <string>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "steadypg/batch.hpp"
#include "steadypg/cache.hpp"
#include "steadypg/circuit_breaker.hpp"
#include "steadypg/cluster.hpp"
#include "steadypg/config.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/copy.hpp"
#include "steadypg/health.hpp"
#include "steadypg/observe/client_metrics.hpp"
#include "steadypg/observe/metrics.hpp"
#include "steadypg/observe/slow_queries.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/plan.hpp"
#include "steadypg/pool.hpp"
#include "steadypg/retry.hpp"
#include "steadypg/transaction.hpp"

namespace steadypg {

namespace internal {
class health_monitor;
class slow_plan_capture;
class topology;
class query_cache;
class notify_listener;
}  // namespace internal

/// The result of client::connection_info().
struct connection_info_report {
  struct connections_t {
    std::int64_t active = 0, idle = 0, total = 0, max = 0;
  };
  struct server_t {
    std::string version;
    std::int64_t uptime_seconds = 0;
    connections_t connections;  ///< this database's sessions in pg_stat_activity; max = max_connections
  } server;
  pool_stats pool;
  struct performance_t {
    std::uint64_t queries = 0;
    double avg_query_ms = 0;
    double p95_query_ms = 0;
    std::uint64_t slow_queries = 0;
  } performance;  ///< from the metrics (zeros when metrics are off)
  /// The client's most recent slow calls, oldest first (see client::recent_slow_queries()).
  std::vector<slow_query> recent_slow_queries;
  /// Each host and its role (topology.probing is false for a single host that is not probed).
  topology_report topology;
};

/// The thread-safe entry point: a pool of connections behind one resilience pipeline
/// (deadline → retry with budget → circuit breaker → attempt with timeout and cancel).
///
///     steadypg::client db{steadypg::client_options::from_env()};
///     auto n = db.query_value<int64_t>("SELECT count(*) FROM users WHERE age > $1", 40);
///     db.execute(steadypg::statement{"INSERT … ON CONFLICT DO NOTHING"}.idempotent(), a, b);
///     db.transaction([&](steadypg::transaction& tx) { tx.execute(…); tx.execute(…); });
///
/// A statement is retried only when that cannot apply it twice: nothing was sent, the server
/// rolled it back, or it is marked idempotent(); transaction(fn) re-runs fn on serialization
/// failures, deadlocks, lock timeouts and connections lost before COMMIT. A COMMIT whose reply
/// was lost raises indeterminate_commit and is never resent.
class client {
 public:
  using pool_type = basic_pool<connection>;
  /// A borrowed connection (RAII: returned to the pool when destroyed).
  using pooled_connection = pool_type::handle;
  using clock = std::chrono::steady_clock;

  /// Validates `options` (config_error) and builds the pool and the pipeline from them.
  /// `obs` receives events (it must outlive the client).
  explicit client(client_options options, observer* obs = nullptr);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Borrows a connection for several statements (no retries: you own the connection).
  [[nodiscard]] pooled_connection acquire(const char* context = nullptr);

  /// Runs one statement (retried only when that is safe; see the class comment).
  template <bindable... Args>
  result execute(std::string_view sql, const Args&... args) {
    const std::tuple<const Args&...> a(args...);
    call_info info{"execute", sql, false, false, std::nullopt, describer<Args...>(), &a};
    info.bind = binder<Args...>();
    return run(info, [&](connection& c) { return c.execute(sql, args...); });
  }
  /// Runs one statement; `st.idempotent()` allows retries when the outcome is unknown and
  /// `st.timeout()` bounds the whole call.
  template <bindable... Args>
  result execute(const statement& st, const Args&... args) {
    const std::tuple<const Args&...> a(args...);
    const call_info info{st.name().empty() ? "execute" : st.name().c_str(),
                         st.sql(),
                         st.is_idempotent(),
                         false,
                         deadline_of(st),
                         describer<Args...>(),
                         &a,
                         st.target_route(),
                         st.read_after(),
                         binder<Args...>()};
    if (st.verifies_commit() && m_options.resilience.resolve_commits) {
      return internal::with_params([&](std::span<const param_ref> refs) { return execute_verified(info, st, refs); },
                                   args...);
    }
    return run(info, [&](connection& c) { return c.execute(st, args...); });
  }
  /// Runs a statement with run-time parameters.
  result execute(std::string_view sql, const param_list& params);
  /// Same for a statement (its idempotent(), timeout(), route() and after() apply).
  result execute(const statement& st, const param_list& params);
  /// Runs a statement that returns one row with one column and converts it.
  template <typename T, bindable... Args>
  [[nodiscard]] T query_value(std::string_view sql, const Args&... args) {
    return execute(sql, args...).template as<T>();
  }
  /// Same for a statement (idempotent reads are retried through outages).
  template <typename T, bindable... Args>
  [[nodiscard]] T query_value(const statement& st, const Args&... args) {
    return execute(st, args...).template as<T>();
  }

  /// EXPLAINs a statement on one pooled connection of the primary (plan::explain: plain EXPLAIN
  /// unless options.analyze, which runs it inside BEGIN … ROLLBACK); never retried. Inside a
  /// transaction of your own, call plan::explain(tx.conn(), …). docs/plans.md.
  [[nodiscard]] plan::explain_report explain(std::string_view sql, const param_list& params = {},
                                             const plan::explain_options& options = {});
  /// Same with C++ arguments bound as execute() binds them (plain EXPLAIN).
  template <bindable First, bindable... Rest>
  [[nodiscard]] plan::explain_report explain(std::string_view sql, const First& first, const Rest&... rest) {
    param_list p;
    p.add(first);
    (p.add(rest), ...);
    return explain(sql, p);
  }
  /// Index advice for a statement (plan::advise: HypoPG on one pinned connection; creates nothing).
  [[nodiscard]] plan::advice_report advise(std::string_view sql, const param_list& params = {},
                                           const plan::advisor_options& options = {});

  /// Runs `fn(steadypg::transaction&)` in a transaction and commits when it returns. On
  /// 40001, 40P01, 55P03 or a connection lost before COMMIT, the whole of fn runs again (so fn
  /// must be safe to re-run: keep side effects outside the database out of it). An exception
  /// from fn rolls back and propagates. Returns what fn returns.
  template <typename Fn>
  auto transaction(Fn&& fn, const transaction_options& options = {})
      -> std::invoke_result_t<Fn&, steadypg::transaction&> {
    using R = std::invoke_result_t<Fn&, steadypg::transaction&>;
    transaction_options o = options;
    o.fetch_xid = o.fetch_xid || m_options.resilience.resolve_commits;
    // fn's value is kept outside the pipeline, so that a lost COMMIT the server says committed
    // can end the call successfully (run() then has no value of its own to return).
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
    // With a query cache, the statements are kept so that the tables they write are invalidated
    // once COMMIT succeeded (never after a rollback); each attempt starts the list again.
    std::vector<std::string> statements;
    const transaction_scope scope(*this);
    run({"transaction", {}, false, true, std::nullopt, nullptr, nullptr, options.route}, [&](connection& c) {
      steadypg::transaction tx(c, o);
      statements.clear();
      if (m_cache) tx.record_statements(&statements);
      if constexpr (std::is_void_v<R>) {
        fn(tx);
      } else {
        value.reset();
        value.emplace(fn(tx));
      }
      tx.commit();
    });
    if (m_cache) cache_after_commit(statements);
    if constexpr (!std::is_void_v<R>) return std::move(*value);
  }

  /// Runs a read through the query cache (docs/cache.md): the same result execute() returns
  /// (columns, types, values, NULLs), from the cache when `policy` and the rules allow. Never
  /// fails because of the cache: a backend error answers from the database.
  ///
  ///     auto rs = db.query_cached("SELECT name FROM users WHERE id = $1", {.ttl = 60s}, id);
  template <bindable... Args>
  [[nodiscard]] result query_cached(std::string_view sql, const cache_policy& policy, const Args&... args) {
    return internal::with_params([&](std::span<const param_ref> refs) { return execute_cached(sql, refs, policy); },
                                 args...);
  }
  /// Same with cache.defaults as the policy.
  template <bindable... Args>
  [[nodiscard]] result query_cached(std::string_view sql, const Args&... args) {
    return query_cached(sql, m_options.cache.defaults, args...);
  }
  /// Drops every cached entry carrying one of `tags` (here, and through notify_channel in the
  /// other processes).
  void invalidate_tags(const std::vector<std::string>& tags);
  /// Drops every cached entry that read `table` (a bare or schema-qualified name): for writes
  /// the client does not see (other programs, functions, triggers).
  void invalidate_table(std::string_view table);
  /// What the cache did so far (all zeros and backend "" without a cache).
  [[nodiscard]] cache_stats cache_statistics() const;
  /// True when query_cached() uses a cache backend.
  [[nodiscard]] bool cache_enabled() const noexcept { return m_cache != nullptr; }
  /// True once the cross-process invalidation channel is listening (or when there is none).
  [[nodiscard]] bool cache_listening() const noexcept;

  /// Runs every operation of `ops` (see batch_mode) and reports each one's outcome; never
  /// throws for an operation's failure (only for invalid options). Uses at most
  /// options.concurrency connections and returns by options.timeout.
  ///
  ///     auto report = db.batch_execute(ops, {.batch_size = 100, .concurrency = 4,
  ///                                          .mode = steadypg::batch_mode::pipeline});
  ///     for (const auto& e : report.errors) { … e.index, e.sqlstate, e.message … }
  [[nodiscard]] batch_report batch_execute(std::span<const batch_operation> ops, const batch_options& options);
  /// Same with the POSTGRESQL_BATCH_* settings.
  [[nodiscard]] batch_report batch_execute(std::span<const batch_operation> ops);
  /// Same with operations made on demand, chunk by chunk: `make(i)` for i in [0, count),
  /// called from the worker threads one call at a time. Memory stays bounded however large
  /// count is (unless keep_results).
  [[nodiscard]] batch_report batch_execute(std::size_t count, const std::function<batch_operation(std::size_t)>& make,
                                           const batch_options& options);

  /// COPY `table` (columns) FROM STDIN on a pooled connection through the pipeline:
  /// `write(copy)` writes the rows (copy.write_row(…) or copy.write_raw(…)); returns the rows
  /// the server loaded. All or nothing: a bad row raises sql_error naming its line and loads
  /// nothing. `write` runs again if the connection was lost before anything was sent, so it
  /// must produce the same rows each time. `options`: the data's format, whether its first
  /// line is a header the server skips, and a progress callback.
  ///
  ///     db.copy_from("items", {"id", "name"}, [&](steadypg::copy_in& copy) { copy.write_row(1, "one"); },
  ///                  {.format = steadypg::copy_format::csv});
  std::uint64_t copy_from(std::string_view table, const std::vector<std::string>& columns,
                          const std::function<void(copy_in&)>& write, const copy_options& options = {});
  /// The former signature, with the options one by one; removed in the release after 0.1.0.
  [[deprecated("use copy_from(table, columns, write, copy_options)")]] std::uint64_t copy_from(
      std::string_view table, const std::vector<std::string>& columns, const std::function<void(copy_in&)>& write,
      copy_format format, const std::function<void(std::uint64_t rows)>& progress = {}, bool header = false);

  /// COPY `source` TO STDOUT on a pooled connection through the pipeline: `sink(chunk)` gets
  /// the data in chunks of whole rows, in bounded memory; returns the rows the server sent.
  ///
  ///     db.copy_to(steadypg::copy_source::table("items"), [&](std::string_view chunk) { out << chunk; },
  ///                {.format = steadypg::copy_format::csv, .header = true});
  ///
  /// It is a read, so it is retried (like an idempotent statement) while nothing has reached
  /// `sink`: the connection was lost before the first byte. Once `sink` has had data it is
  /// never restarted: a later failure (lost connection, timeout, an error of the query) is
  /// thrown with outcome::fatal, and an exception from `sink` propagates unchanged after the
  /// COPY was abandoned (the connection goes back idle, or is closed).
  std::uint64_t copy_to(const copy_source& source, const std::function<void(std::string_view chunk)>& sink,
                        const copy_options& options = {});

  /// One round trip on a pooled connection (through the pipeline).
  void ping();
  /// healthy / degraded / unhealthy with the ping latency and the reason (one attempt, no
  /// retries; an open breaker is reported without touching the server).
  [[nodiscard]] health_report health_check();
  /// Starts a background thread that runs health_check() every POSTGRESQL_HEALTH_CHECK_INTERVAL,
  /// keeps the gauge postgresql_health_status{status} current and reports changes through
  /// observer::on_health_changed. Stopped when the client is destroyed. Idempotent.
  void start_health_monitor();
  /// The status the monitor saw last (healthy before its first check).
  [[nodiscard]] health_status last_health() const noexcept;
  /// Server version, uptime and sessions, pool state and query performance.
  [[nodiscard]] connection_info_report connection_info();
  /// Pool counters (summed over the hosts of a multi-host client).
  [[nodiscard]] pool_stats pool_statistics() const;
  /// Each host with the role the prober saw last, its lag, timeline and breaker, and the
  /// primary writes go to (docs/cluster.md). A single-host client that does not probe reports
  /// its host with role unknown.
  [[nodiscard]] topology_report topology() const;
  /// Read your writes: the primary's current WAL position (one round trip on the primary).
  /// Take it after a write has committed and give it to reads with statement{…}.after(token):
  /// a replica serves them only once it has replayed that far.
  [[nodiscard]] write_token commit_token();
  /// The pool of each host, in DSN order (pool() is the first).
  [[nodiscard]] std::size_t host_count() const noexcept { return m_hosts.size(); }
  [[nodiscard]] pool_type& host_pool(std::size_t i) { return *m_hosts.at(i).pool; }
  [[nodiscard]] circuit_breaker& host_breaker(std::size_t i) { return *m_hosts.at(i).breaker; }
  /// The options in effect.
  [[nodiscard]] const client_options& options() const noexcept { return m_options; }
  /// The pool (for stats and explicit acquire with a deadline); the first host's.
  [[nodiscard]] pool_type& pool() noexcept { return *m_hosts.front().pool; }
  /// The circuit breaker (state(), force_open(), reset()); the first host's.
  [[nodiscard]] circuit_breaker& breaker() noexcept { return *m_hosts.front().breaker; }
  /// The retry budget.
  [[nodiscard]] retry_budget& budget() noexcept { return m_budget; }
  /// The metrics registry (empty when POSTGRESQL_METRICS_ENABLED is false):
  /// `db.metrics().render_prometheus()`.
  [[nodiscard]] observe::registry& metrics() noexcept { return *m_registry; }
  /// The most recent calls slower than observe.slow_query_threshold (at most 64), oldest first.
  [[nodiscard]] std::vector<slow_query> recent_slow_queries() const { return m_slow_queries.recent(); }
  /// Calls `callback` for every slow call, from the thread that made it, after it finished
  /// (must not throw; keep it short). Replaces an earlier callback; an empty one removes it.
  void on_slow_query(std::function<void(const slow_query&)> callback) { m_slow_queries.on_slow(std::move(callback)); }

  /// The event counters behind the metrics, or nullptr when metrics are off.
  [[nodiscard]] const observe::client_metrics* metric_events() const noexcept { return m_metrics.get(); }

 private:
  /// What the pipeline needs to know about a call.
  struct call_info {
    const char* operation;
    std::string_view sql;  ///< for slow-query reports; "" when not one statement
    bool idempotent;
    bool transaction;
    std::optional<clock::time_point> deadline;
    /// Renders `args` for a slow-query log line (only with log_parameters); may be null.
    std::string (*describe)(const void* args);
    const void* args;
    std::optional<steadypg::route> route = std::nullopt;  ///< unset: the client's default route
    write_token after = {};                               ///< read your writes
    /// Copies `args` into a param_list (for the background EXPLAIN of a slow call); may be null.
    void (*bind)(const void* args, param_list& out) = nullptr;
  };

  /// One host: its pool and its breaker (a single-host client has one).
  struct host_slot {
    std::size_t index = 0;
    std::string label;  ///< "host:port"
    std::string dsn;    ///< this host alone
    std::unique_ptr<circuit_breaker> breaker;
    std::unique_ptr<pool_type> pool;
  };

  /// Runs `fn(connection&)` through the resilience pipeline: the one place every operation
  /// goes through.
  template <typename Fn>
  auto run(const call_info& info, Fn&& fn) -> std::invoke_result_t<Fn&, connection&> {
    using R = std::invoke_result_t<Fn&, connection&>;
    const auto started = clock::now();
    int attempt = 0;
    bool failed_over = false;
    std::vector<attempt_error> earlier;  // allocates only when an attempt fails
    while (true) {
      std::optional<circuit_breaker::permit> permit;
      host_slot* host = nullptr;
      try {
        host = m_topology ? &route_call(info, started) : &m_hosts.front();
        if (m_options.resilience.enabled) permit = host->breaker->acquire();
        auto conn = acquire_for(*host, info);
        timeout_scope scope(*conn, info.deadline, m_options.connection.statement_timeout);
        if constexpr (std::is_void_v<R>) {
          fn(*conn);
          succeeded(info, *host, permit, started, attempt, 0);
          return;
        } else {
          R r = fn(*conn);
          if constexpr (std::is_same_v<R, result>) {
            succeeded(info, *host, permit, started, attempt, r.columns() > 0 ? r.size() : r.rows_affected());
          } else {
            succeeded(info, *host, permit, started, attempt, 0);
          }
          return r;
        }
      } catch (const error& e) {
        // Or throws the final error. True: a lost COMMIT the server says committed (asked only
        // for calls without a value of their own), so the call succeeded.
        if (retry_after(info, e, host, permit, attempt, failed_over, earlier, started, std::is_void_v<R>)) {
          if constexpr (std::is_void_v<R>) return;
        }
        ++attempt;
      } catch (...) {
        // Not a steadypg error (thrown by the caller's code): it says nothing about the server,
        // so a probe permit goes back without a verdict.
        if (permit) host->breaker->release(*permit);
        throw;
      }
    }
  }

  // Applies the call's remaining time as the connection's client-side timeout for one attempt.
  class timeout_scope {
   public:
    timeout_scope(connection& c, const std::optional<clock::time_point>& deadline,
                  std::chrono::milliseconds session_default);
    ~timeout_scope();
    timeout_scope(const timeout_scope&) = delete;
    timeout_scope& operator=(const timeout_scope&) = delete;

   private:
    connection* m_conn = nullptr;
    std::chrono::milliseconds m_saved{0};
    std::optional<clock::time_point> m_saved_deadline;
  };

  static std::optional<clock::time_point> deadline_of(const statement& st);
  // query_cached() without templates (src/client/client_cache.cpp).
  result execute_cached(std::string_view sql, std::span<const param_ref> params, const cache_policy& policy);
  // Invalidates the tables `statements` wrote, after their transaction committed.
  void cache_after_commit(const std::vector<std::string>& statements) noexcept;
  // Builds the query cache and its listener from m_options.cache.
  void start_cache();
  // Marks the calling thread as inside transaction(fn): query_cached() bypasses the cache there.
  class transaction_scope {
   public:
    explicit transaction_scope(client& c) noexcept;
    ~transaction_scope();
    transaction_scope(const transaction_scope&) = delete;
    transaction_scope& operator=(const transaction_scope&) = delete;
  };
  // statement{…}.verify_commit(): the statement in a transaction of its own whose id is fetched
  // with COMMIT, so that a lost reply is resolved (the call has no value of its own in run():
  // the statement's result is kept outside it).
  result execute_verified(const call_info& info, const statement& st, std::span<const param_ref> params);
  // Renders a param_list (call_info::describe for run-time parameters).
  static std::string describe_param_list(const void* params);
  // internal::call_runner over this client, for the components in src/ that run calls of
  // their own (the batch executor); defined in src/batch.cpp.
  class runner;
  template <typename... Args>
  static auto binder() -> void (*)(const void*, param_list&) {
    if constexpr (sizeof...(Args) == 0) {
      return [](const void*, param_list&) {};
    } else {
      return [](const void* p, param_list& out) {
        std::apply([&](const auto&... a) { (out.add(a), ...); }, *static_cast<const std::tuple<const Args&...>*>(p));
      };
    }
  }
  template <typename... Args>
  static auto describer() -> std::string (*)(const void*) {
    if constexpr (sizeof...(Args) == 0) {
      return nullptr;
    } else {
      return [](const void* p) {
        return std::apply([](const auto&... a) { return describe_args(a...); },
                          *static_cast<const std::tuple<const Args&...>*>(p));
      };
    }
  }
  // Reports a finished call: slow-query detection, the ring buffer and on_call_finished.
  void finished(const call_info& info, const host_slot* host, clock::duration d, int attempts, std::uint64_t rows,
                const error* failure) noexcept;
  call_context context_now(const host_slot* host) const noexcept;
  pooled_connection acquire_for(host_slot& host, const call_info& info);
  // The host for a call of a multi-host client (src/client/routing.cpp): reads the topology
  // snapshot, waits for a primary within the call's deadline, throws no_host_available.
  host_slot& route_call(const call_info& info, clock::time_point started);
  void succeeded(const call_info& info, const host_slot& host, const std::optional<circuit_breaker::permit>& permit,
                 clock::time_point started, int attempt, std::uint64_t rows) noexcept;
  // Applies the retry rule (src/retry_policy.hpp) to a failed attempt: records it with the
  // breaker, fires the events, spends the budget and sleeps the backoff when the call is to run
  // again; otherwise throws a copy of `e` carrying the attempts (and reports the call finished).
  // A lost COMMIT carrying its transaction id is first resolved (when `can_resolve`): true
  // means the server says it committed and the call has succeeded.
  bool retry_after(const call_info& info, const error& e, host_slot* host,
                   const std::optional<circuit_breaker::permit>& permit, int attempt, bool& failed_over,
                   std::vector<attempt_error>& earlier, clock::time_point started, bool can_resolve);
  // Asks the server the call used (`host`) what became of the lost COMMIT of `e`
  // (src/client/commit_resolver.hpp), within the call's deadline (or
  // resilience_options::commit_resolution_timeout) and that host's breaker's rules, and reports
  // it (on_commit_resolved).
  commit_resolution resolve_lost_commit(const call_info& info, const error& e, host_slot& host,
                                        std::string* why = nullptr);
  // The host writes go to now (the elected primary, else the first host).
  const host_slot& primary_slot() const noexcept;
  // Registers the per-host gauges (role, lag) and postgresql_topology_primaries.
  void watch_topology();
  // The health of one host: its breaker, its pool, a ping.
  health_report check_host(host_slot& host);

  client_options m_options;
  std::unique_ptr<observe::registry> m_registry;
  std::unique_ptr<observe::client_metrics> m_metrics;  // null when metrics are off
  std::unique_ptr<observer> m_fanout;                  // metrics + the caller's observer
  observer* m_observer;
  retry_budget m_budget;
  std::vector<host_slot> m_hosts;                    // one per host of the DSN, in order
  steadypg::route m_default_route = route::primary;  // cluster.default_route, or the DSN's target_session_attrs
  std::atomic<std::uint64_t> m_turn{0};              // round robin among replicas
  std::unique_ptr<internal::topology> m_topology;    // null for a single host that is not probed
  observe::slow_query_log m_slow_queries;
  std::unique_ptr<internal::query_cache> m_cache;               // null without cache.backend / cache.url
  std::unique_ptr<internal::notify_listener> m_cache_listener;  // with cache.notify_channel
  std::unique_ptr<internal::health_monitor> m_health_monitor;
  std::unique_ptr<internal::slow_plan_capture> m_plan_capture;  // declared last: stopped first
};

}  // namespace steadypg
