#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/server_identity.hpp"
#include "steadypg/sqlstate.hpp"

struct pg_result;

namespace steadypg {

/// Every field a server error report can carry (PQresultErrorField).
struct server_error_fields {
  std::string severity;        ///< ERROR, FATAL, PANIC (localised form)
  std::string sqlstate;        ///< five-character code, e.g. "23505"
  std::string message;         ///< primary human-readable message
  std::string detail;          ///< optional secondary message
  std::string hint;            ///< optional suggestion what to do
  int position = 0;            ///< 1-based character offset into the statement, 0 if none
  std::string internal_query;  ///< failed internally generated command, if any
  std::string context;         ///< call stack context (PL/pgSQL etc.)
  std::string schema;          ///< schema of the object involved
  std::string table;           ///< table involved
  std::string column;          ///< column involved
  std::string datatype;        ///< data type involved
  std::string constraint;      ///< constraint involved
};

/// What asking the server about a COMMIT whose reply was lost found out
/// (docs/resilience.md#resolving-a-lost-commit).
enum class commit_resolution {
  none,       ///< nothing was asked: not a lost COMMIT, or its transaction id is not known
  committed,  ///< the server says the transaction committed (the call succeeded)
  aborted,    ///< the server says it did not commit: a transaction(fn) ran fn again
  unknown     ///< no answer before the deadline, a different server, or a different timeline
};
/// "none", "committed", "aborted", "unknown".
[[nodiscard]] std::string_view to_string(commit_resolution r) noexcept;

/// A summary of an earlier failed attempt of the same operation.
struct attempt_error {
  std::string sqlstate;  ///< may be empty for local failures
  std::string message;   ///< what() of that attempt
  steadypg::outcome outcome = outcome::fatal;
  /// For a lost COMMIT: what the server said of it (aborted, when the call ran again).
  commit_resolution resolution = commit_resolution::none;
};

/// Which layer raised an error (error::origin(); docs/errors.md). The retry rule and the
/// circuit breaker read it instead of the error's class.
enum class error_origin {
  server,      ///< the server answered with an error report (sql_error and its subclasses)
  connection,  ///< the connection: could not connect (a refused login too), was lost (also when the
               ///< server ended the session, e.g. 57P01), or passed its deadline
  pool,        ///< the pool lent no connection (pool_timeout, pool_exhausted)
  breaker,     ///< the circuit breaker rejected the call without trying (circuit_open)
  client       ///< stopped on this side for reasons that say nothing about the server: a usage,
               ///< configuration or conversion error, a batch's own deadline
};
/// "server", "connection", "pool", "breaker", "client".
[[nodiscard]] std::string_view to_string(error_origin o) noexcept;

namespace internal {
struct error_details;  // every fact of an error; built by the library (src/error_builder.hpp)
class error_builder;
}  // namespace internal

/// Root of every exception steadypg throws. Immutable: everything it reports is known when it
/// is thrown; a layer that adds facts (the retry layer's attempts) throws a new error of the
/// same type.
class error : public std::runtime_error {
 public:
  /// A local error; `fields` may carry a SQLSTATE inferred from a connect failure. The origin
  /// follows from `kind` (server_error → server, usage → client, else connection).
  error(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields = {});
  /// An error reported by the server.
  [[deprecated("use error(message, failure_kind::server_error, outcome, fields)")]] error(std::string message,
                                                                                          server_error_fields fields,
                                                                                          steadypg::outcome outcome);
  /// Internal: an error with every fact given (only the library can make `details`).
  error(std::string message, internal::error_details details);

  /// The SQLSTATE code, or "" when the failure was local.
  [[nodiscard]] const std::string& sqlstate() const noexcept;
  /// The class of sqlstate().
  [[nodiscard]] sqlstate_class state_class() const noexcept;
  /// Every field the server sent (empty strings when the failure was local).
  [[nodiscard]] const server_error_fields& server() const noexcept;
  /// What failed: a server error, a lost connection, a timeout …
  [[nodiscard]] failure_kind kind() const noexcept;
  /// What the failure means for a retry (docs/resilience.md).
  [[nodiscard]] steadypg::outcome outcome() const noexcept;
  /// Which layer raised it: the server, the connection, the pool, the breaker or this side.
  [[nodiscard]] error_origin origin() const noexcept;
  /// The operation that failed ("execute", "connect", "commit", …); may be empty.
  [[nodiscard]] const std::string& operation() const noexcept;
  /// How many attempts were made in total (1 unless a retry layer ran it again).
  [[nodiscard]] int attempts() const noexcept;
  /// The errors of the earlier attempts, oldest first.
  [[nodiscard]] const std::vector<attempt_error>& earlier_attempts() const noexcept;
  /// True when a retry was refused because the retry budget was spent.
  [[nodiscard]] bool budget_exhausted() const noexcept;

  /// True when running the same request again may succeed (rolled_back, not_sent with a
  /// health failure, lost connection) — it does not say whether it is *safe* (see outcome()).
  [[nodiscard]] bool is_transient() const noexcept;
  /// True when the connection that produced this error must not be reused.
  [[nodiscard]] bool poisons_connection() const noexcept;
  /// True when some of the request may have reached the server, so it may have had effects:
  /// every outcome but not_sent, except a refused login (only the login reached the server).
  [[nodiscard]] bool reached_server() const noexcept;
  /// True when the failure says something about the server's health, either way (origin
  /// server or connection); false for pool, breaker and client errors (breaker_verdict_of()).
  [[nodiscard]] bool counts_for_breaker() const noexcept;
  /// True when a deadline passed and a cancel request was delivered to the server for it.
  [[nodiscard]] bool cancel_sent() const noexcept;
  /// True for indeterminate_commit: the transaction may or may not have committed.
  [[nodiscard]] bool is_indeterminate_commit() const noexcept;
  /// For a lost COMMIT: the transaction's id (pg_current_xact_id()), when it was known, so that
  /// `SELECT pg_xact_status($1::xid8)` on commit_server() can tell later what became of it.
  [[nodiscard]] std::optional<std::uint64_t> xid() const noexcept;
  /// For a lost COMMIT: the server (system identifier and timeline) the COMMIT went to, when known.
  [[nodiscard]] std::optional<server_identity> commit_server() const noexcept;
  /// For a lost COMMIT: what asking the server found out (unknown when it could not tell;
  /// none when nothing was asked).
  [[nodiscard]] commit_resolution resolution() const noexcept;

 private:
  friend class internal::error_builder;
  // Throws a copy of this error, of the same type, carrying `details` (error_builder).
  [[noreturn]] virtual void raise_with(internal::error_details details) const;

  std::shared_ptr<const internal::error_details> m_state;  // shared so that copying cannot throw
};

/// The connection could not be established or was lost.
class connection_error : public error {
 public:
  using error::error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// A client-side deadline passed (connect, query, acquire).
class timeout_error : public error {
 public:
  using error::error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// No pooled connection became free before the acquire deadline, or the waiter cap was hit
/// (origin() == error_origin::pool).
class pool_timeout : public timeout_error {
 public:
  pool_timeout(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields = {});
  /// Internal (see error).
  pool_timeout(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// An acquire was rejected at once because max_waiters callers were already queued. It
/// never waited; it derives from pool_timeout so that one catch handles "no connection".
class pool_exhausted : public pool_timeout {
 public:
  using pool_timeout::pool_timeout;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// An adaptive pool is shedding load: the server looks overloaded, an admission limit is in
/// force and its wait queue is full, so the acquire was rejected at once (never sent, not
/// retried by the client; docs/pool.md). Derives from pool_exhausted.
class pool_overloaded : public pool_exhausted {
 public:
  using pool_exhausted::pool_exhausted;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// The circuit breaker is open: the call failed at once without trying the server
/// (origin() == error_origin::breaker).
class circuit_open : public error {
 public:
  circuit_open(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields = {});
  /// Internal (see error).
  circuit_open(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// A multi-host client has no host for the call's route (docs/cluster.md): no primary is
/// known (no_primary_available) or no replica qualifies (no_replica_available). Nothing was
/// sent (outcome not_sent, origin pool); the message names the route and each host's state.
class no_host_available : public error {
 public:
  no_host_available(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields = {});
  /// Internal (see error).
  no_host_available(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// No primary is known, within the call's deadline (a write waits for one; fast when every
/// host's breaker is open).
class no_primary_available : public no_host_available {
 public:
  using no_host_available::no_host_available;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// route::replica found no replica that is up, within the lag limit and past the call's
/// write token.
class no_replica_available : public no_host_available {
 public:
  using no_host_available::no_host_available;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// The connection was lost after COMMIT was sent: the transaction may or may not have
/// committed. Never retried automatically.
class indeterminate_commit : public error {
 public:
  indeterminate_commit(std::string message, failure_kind kind, steadypg::outcome outcome,
                       server_error_fields fields = {});
  /// Internal (see error).
  indeterminate_commit(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// A bad argument or misuse detected before anything was sent (parameter count, NUL byte …).
class usage_error : public error {
 public:
  explicit usage_error(std::string message);
  /// Internal (see error).
  usage_error(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// A result value could not be converted (NULL into a non-optional, unparsable text …).
class conversion_error : public error {
 public:
  explicit conversion_error(std::string message);
  /// Internal (see error).
  conversion_error(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// Invalid configuration (environment variable, option or DSN).
class config_error : public error {
 public:
  explicit config_error(std::string message);
  /// Internal (see error).
  config_error(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// The server reported an error for a statement.
class sql_error : public error {
 public:
  using error::error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// 23505
class unique_violation : public sql_error {
 public:
  using sql_error::sql_error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// 40001
class serialization_failure : public sql_error {
 public:
  using sql_error::sql_error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// 40P01
class deadlock_detected : public sql_error {
 public:
  using sql_error::sql_error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};
/// 57014 (statement_timeout or a cancel request)
class query_canceled : public sql_error {
 public:
  using sql_error::sql_error;

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};

namespace internal {
/// Extracts every error field of a failed PGresult.
[[nodiscard]] server_error_fields read_error_fields(const pg_result* res);
/// Throws the most specific exception for a server error; `broken` says the connection
/// did not survive it (57P01 and friends end the session).
[[noreturn]] void throw_server_error(server_error_fields fields, std::string_view operation, const request_facts& facts,
                                     bool broken);
/// Throws connection_error, or indeterminate_commit when COMMIT was in flight.
[[noreturn]] void throw_connection_lost(std::string message, std::string_view operation, const request_facts& facts);
/// Builds the what() text of a server error: "message (SQLSTATE x) DETAIL: … HINT: …".
[[nodiscard]] std::string format_server_message(const server_error_fields& f);
}  // namespace internal

}  // namespace steadypg
