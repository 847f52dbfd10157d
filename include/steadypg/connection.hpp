#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "steadypg/error.hpp"
#include "steadypg/params.hpp"
#include "steadypg/result.hpp"
#include "steadypg/route.hpp"
#include "steadypg/server_identity.hpp"
#include "steadypg/sqlstate.hpp"

struct pg_conn;

namespace steadypg {

/// What the connection goes through to reach PostgreSQL (docs/pgbouncer.md). PgBouncer's
/// pool_mode of the same name.
enum class pooler_mode {
  none,         ///< a server of its own, or a pooler that keeps one server session per client
  session,      ///< PgBouncer pool_mode=session: behaves like a direct connection
  transaction,  ///< pool_mode=transaction: the server session is shared between transactions
  statement     ///< pool_mode=statement: shared between statements; no transaction blocks
};

/// "none", "session", "transaction", "statement".
[[nodiscard]] std::string_view to_string(pooler_mode m) noexcept;
/// The mode named `text` (exactly as to_string() spells it), or nullopt.
[[nodiscard]] std::optional<pooler_mode> parse_pooler_mode(std::string_view text) noexcept;
/// True when consecutive transactions may run on different server sessions (transaction and
/// statement): nothing may rely on session state.
[[nodiscard]] constexpr bool shares_server_sessions(pooler_mode m) noexcept {
  return m == pooler_mode::transaction || m == pooler_mode::statement;
}

/// Options for one connection.
struct connection_options {
  /// Connection string, URI or key=value; empty uses libpq's PG* environment variables.
  std::string dsn;
  /// Deadline for establishing the connection (all hosts, TLS, auth). Default 10000 ms,
  /// range 100–600000 ms. POSTGRESQL_CONNECTION_TIMEOUT.
  std::chrono::milliseconds connect_timeout{10000};
  /// The session's statement_timeout, set once connected; 0 leaves the server's setting.
  /// Default 0, range 0–86400000 ms. POSTGRESQL_STATEMENT_TIMEOUT. A server that stopped
  /// answering cannot enforce it, so with query_timeout 0 the client-side bound becomes
  /// statement_timeout_backstop(statement_timeout): 1 s after it.
  std::chrono::milliseconds statement_timeout{0};
  /// Client-side deadline per statement; 0 = none (but see statement_timeout). On expiry a
  /// cancel request is sent, the connection is drained back to idle (or closed), and
  /// timeout_error is thrown. Default 0, range 0–86400000 ms.
  std::chrono::milliseconds query_timeout{0};
  /// How long to wait for the server to answer after a cancel request. Default 5000 ms,
  /// range 1–600000 ms.
  std::chrono::milliseconds cancel_wait{5000};
  /// Bound on delivering the cancel request itself (it needs a connection of its own, which a
  /// dead network can hang). Default 2000 ms, range 1–600000 ms.
  std::chrono::milliseconds cancel_timeout{2000};
  /// Prepared statements cached (LRU) per connection; 0 disables preparing entirely,
  /// as PgBouncer in transaction mode needs. Default 256, range 0–100000.
  /// POSTGRESQL_STATEMENT_CACHE_SIZE.
  std::size_t statement_cache_capacity = 256;
  /// application_name unless the DSN sets one.
  std::string application_name = "steadypg";
  /// The pooler between the client and the server. With transaction or statement: no
  /// prepared statements (statement_cache_capacity is ignored), per-call settings ride with
  /// each statement (never a session SET), session-only features are refused, and a DSN
  /// with a startup parameter PgBouncer rejects (options=) is a config_error. With none, a
  /// connection that sees a pooler anyway reports it (pooler_suspicion()). Default none.
  /// POSTGRESQL_POOLER (none, session, transaction, statement).
  pooler_mode pooler = pooler_mode::none;

  /// Throws config_error when a field is out of range or the DSN is malformed.
  void validate() const;
};

/// A SQL statement plus how it may be treated by the layers above.
class statement {
 public:
  /// Any SQL text; $1…$n placeholders bind parameters.
  explicit statement(std::string sql) : m_sql(std::move(sql)) {}
  explicit statement(std::string_view sql) : m_sql(sql) {}
  explicit statement(const char* sql) : m_sql(sql) {}

  /// Marks the statement safe to run twice (reads, upserts): the retry layer may resend it
  /// even when its first outcome is unknown.
  statement& idempotent(bool on = true) & {
    m_idempotent = on;
    return *this;
  }
  statement&& idempotent(bool on = true) && {
    m_idempotent = on;
    return std::move(*this);
  }
  /// A short name for metrics and logs (never the SQL text).
  statement& name(std::string n) & {
    m_name = std::move(n);
    return *this;
  }
  statement&& name(std::string n) && {
    m_name = std::move(n);
    return std::move(*this);
  }
  /// A deadline for the whole call through a client (all attempts, waits and backoff);
  /// each attempt gets the time that is left, enforced with a real cancel.
  statement& timeout(std::chrono::milliseconds t) & {
    m_timeout = t;
    return *this;
  }
  statement&& timeout(std::chrono::milliseconds t) && {
    m_timeout = t;
    return std::move(*this);
  }
  /// Runs the write through a client as a transaction of its own — BEGIN,
  /// `SELECT pg_current_xact_id()`, the statement, COMMIT, pipelined in one round trip — so that
  /// a reply lost after COMMIT is resolved by asking the server instead of leaving the write in
  /// doubt (committed: the call succeeds; aborted: it runs again; docs/resilience.md). One
  /// statement only (extended protocol); not inside a transaction of your own.
  statement& verify_commit(bool on = true) & {
    m_verify_commit = on;
    return *this;
  }
  statement&& verify_commit(bool on = true) && {
    m_verify_commit = on;
    return std::move(*this);
  }
  /// Opts this statement out of the prepared-statement cache.
  statement& unprepared() & {
    m_prepare = false;
    return *this;
  }
  statement&& unprepared() && {
    m_prepare = false;
    return std::move(*this);
  }

  /// Where a multi-host client sends it (docs/cluster.md); unset: the client's
  /// cluster.default_route.
  statement& route(steadypg::route r) & {
    m_route = r;
    return *this;
  }
  statement&& route(steadypg::route r) && {
    m_route = r;
    return std::move(*this);
  }
  /// Read your writes: a replica serves it only once it has replayed up to `token`
  /// (client::write_token()); otherwise the primary does.
  statement& after(write_token token) & {
    m_after = token;
    return *this;
  }
  statement&& after(write_token token) && {
    m_after = token;
    return std::move(*this);
  }

  [[nodiscard]] const std::string& sql() const noexcept { return m_sql; }
  [[nodiscard]] bool is_idempotent() const noexcept { return m_idempotent; }
  [[nodiscard]] const std::string& name() const noexcept { return m_name; }
  [[nodiscard]] bool may_prepare() const noexcept { return m_prepare; }
  [[nodiscard]] bool verifies_commit() const noexcept { return m_verify_commit; }
  [[nodiscard]] std::optional<std::chrono::milliseconds> call_timeout() const noexcept { return m_timeout; }
  [[nodiscard]] std::optional<steadypg::route> target_route() const noexcept { return m_route; }
  [[nodiscard]] write_token read_after() const noexcept { return m_after; }

 private:
  std::string m_sql;
  std::string m_name;
  std::optional<std::chrono::milliseconds> m_timeout;
  std::optional<steadypg::route> m_route;
  write_token m_after;
  bool m_idempotent = false;
  bool m_prepare = true;
  bool m_verify_commit = false;
};

/// What a connection is doing, as seen by a pool.
enum class connection_status {
  idle,                ///< ready, no transaction open
  active,              ///< a request is in flight (or pipeline/COPY mode)
  in_transaction,      ///< inside an open transaction block
  failed_transaction,  ///< inside a transaction block that hit an error (needs ROLLBACK)
  broken               ///< unusable: closed, lost, or out of sync
};

/// A short stable name for a status ("idle").
[[nodiscard]] std::string_view to_string(connection_status s) noexcept;

/// Counters of the prepared-statement cache.
struct statement_cache_stats {
  std::size_t size = 0;         ///< statements currently prepared
  std::size_t capacity = 0;     ///< configured capacity
  std::uint64_t hits = 0;       ///< executions that reused a prepared statement
  std::uint64_t misses = 0;     ///< executions that had to prepare first
  std::uint64_t evictions = 0;  ///< statements deallocated to make room
};

class transaction;
struct transaction_options;
class pipeline;
class copy_in;
class copy_out;
enum class copy_format;

namespace internal {
struct connection_impl;
class connection_factory;
}  // namespace internal

/// The client-side bound that goes with a server-side statement_timeout: 1 s after it (0 when
/// it is off). A server that stopped answering cannot enforce its own timeout; at this bound
/// the client cancels and drops the connection (timeout_error).
[[nodiscard]] std::chrono::milliseconds statement_timeout_backstop(
    std::chrono::milliseconds statement_timeout) noexcept;

/// One libpq connection. Not thread-safe, except cancel(), which another thread may call.
class connection {
 public:
  /// Connects within options.connect_timeout; throws connection_error or timeout_error.
  explicit connection(const connection_options& options);
  /// Connects with default options to `dsn`.
  explicit connection(std::string_view dsn);
  ~connection();
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Runs one statement. With parameters it goes through the prepared-statement cache
  /// (extended protocol, one statement); without, through the simple protocol, which also
  /// accepts several ';'-separated statements (the last one's result is returned).
  template <bindable... Args>
  result execute(const statement& st, const Args&... args) {
    return execute_with(st.sql(), st.may_prepare(), args...);
  }
  /// Same, for plain SQL text.
  template <bindable... Args>
  result execute(std::string_view sql, const Args&... args) {
    return execute_with(sql, true, args...);
  }
  /// Runs one statement with parameters built at run time.
  result execute(std::string_view sql, const param_list& params);

  /// Makes sure `sql` with the parameter types of `params` is in the prepared-statement cache
  /// (one round trip when it is not). A pipeline then sends it by name instead of parsing it
  /// for every statement. No-op when the cache is disabled or behind a transaction or
  /// statement pooler, where the text itself is the handle: it is sent again, unnamed, each time.
  void prepare(std::string_view sql, const param_list& params);

  /// Runs a statement that returns one row with one column and converts it.
  template <typename T, bindable... Args>
  [[nodiscard]] T query_value(std::string_view sql, const Args&... args) {
    return execute(sql, args...).template as<T>();
  }

  /// Starts a transaction block (RAII: rolls back unless committed).
  [[nodiscard]] transaction begin();
  /// Starts a transaction block with an isolation level and access mode.
  [[nodiscard]] transaction begin(const transaction_options& options);

  /// One round trip (an empty query); throws on failure.
  void ping();

  /// Asks the server to cancel the statement in flight (PQcancel), giving up after
  /// options().cancel_timeout. Thread-safe. Returns false when the request could not be
  /// delivered in time (or too many cancels are already in flight in this process).
  bool cancel() noexcept;

  /// Reads whatever the server sent meanwhile without blocking and reports whether the
  /// session is still up: a session the server ended (pg_terminate_backend, shutdown) is
  /// seen without a round trip. Only meaningful while idle.
  [[nodiscard]] bool check_alive() noexcept;

  /// The current status.
  [[nodiscard]] connection_status status() const noexcept;
  /// status() == idle.
  [[nodiscard]] bool is_idle() const noexcept { return status() == connection_status::idle; }
  /// status() == broken.
  [[nodiscard]] bool is_broken() const noexcept { return status() == connection_status::broken; }
  /// What the last request did: did bytes reach the socket, was it a COMMIT.
  [[nodiscard]] const request_facts& last_request() const noexcept;

  /// The server's system identifier and timeline: asked once per connection, at the first call
  /// (one round trip), and only while the connection is idle (outside any transaction, where a
  /// failure could abort nothing). nullopt when the server does not say (no permission for
  /// pg_control_system(), a server before 13, a connection not idle at the first call).
  [[nodiscard]] std::optional<server_identity> identify();
  /// What identify() found, without asking.
  [[nodiscard]] std::optional<server_identity> known_identity() const noexcept;
  /// Server version as an integer (150004 for 15.4).
  [[nodiscard]] int server_version() const noexcept;
  /// The backend process id (for pg_terminate_backend, pg_stat_activity).
  [[nodiscard]] int backend_pid() const noexcept;
  /// The options this connection was made with.
  [[nodiscard]] const connection_options& options() const noexcept;
  /// Prepared-statement cache counters.
  [[nodiscard]] statement_cache_stats cache_stats() const noexcept;
  /// With pooler none: why this connection looks like it goes through a pooler anyway (the
  /// backend that runs its statements is not the one named at login), checked once when it
  /// connected; "" when nothing suggests one.
  [[nodiscard]] const std::string& pooler_suspicion() const noexcept;
  /// Forgets every cached prepared statement (call after DISCARD ALL on this session).
  void clear_statement_cache() noexcept;
  /// Sets the session's server-side statement_timeout (0 = off) with one SET, unless it is
  /// already that value. Behind a transaction or statement pooler no SET is sent: the value
  /// rides with every later statement instead (set_config(…, true) in the same round trip,
  /// or SET LOCAL after BEGIN), so that it never outlives the transaction.
  void set_statement_timeout(std::chrono::milliseconds timeout);
  /// The statement_timeout as last set through this object (0 = off / default).
  [[nodiscard]] std::chrono::milliseconds statement_timeout() const noexcept;
  /// Changes the client-side per-statement deadline (0 = none).
  void set_query_timeout(std::chrono::milliseconds timeout) noexcept;
  /// An absolute bound for every request from now on (nullopt clears it): each request ends by
  /// then, however many a call makes (statements of a transaction, results of a pipeline).
  void set_deadline(std::optional<std::chrono::steady_clock::time_point> until) noexcept;
  /// The bound set by set_deadline().
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept;
  /// Requests started on this connection so far (statements, pings, pipelines, COPYs): tells a
  /// caller whether work ran before a failure.
  [[nodiscard]] std::uint64_t request_count() const noexcept;
  /// Closes the connection now; status() becomes broken.
  void close() noexcept;

  /// The underlying PGconn (owned by this object).
  [[nodiscard]] pg_conn* native_handle() const noexcept;

  /// Low-level: runs `sql` with already converted parameters.
  result execute_refs(std::string_view sql, std::span<const param_ref> params, bool may_prepare);

 private:
  friend class transaction;
  friend class pipeline;
  friend class internal::connection_factory;  // connects with options validated once, by the client
  struct validated {};
  connection(const connection_options& options, validated);
  friend class copy_in;
  friend class copy_out;

  template <typename... Args>
  result execute_with(std::string_view sql, bool may_prepare, const Args&... args) {
    return internal::with_params([&](std::span<const param_ref> refs) { return execute_refs(sql, refs, may_prepare); },
                                 args...);
  }

  std::unique_ptr<internal::connection_impl> m_impl;
};

}  // namespace steadypg
