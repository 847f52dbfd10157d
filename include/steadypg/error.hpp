#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/sqlstate.hpp"

struct pg_result;

namespace steadypg {

/// Every field a server error report can carry (PQresultErrorField).
struct server_error_fields {
  std::string severity;         ///< ERROR, FATAL, PANIC (localised form)
  std::string sqlstate;         ///< five-character code, e.g. "23505"
  std::string message;          ///< primary human-readable message
  std::string detail;           ///< optional secondary message
  std::string hint;             ///< optional suggestion what to do
  int position = 0;             ///< 1-based character offset into the statement, 0 if none
  std::string internal_query;   ///< failed internally generated command, if any
  std::string context;          ///< call stack context (PL/pgSQL etc.)
  std::string schema;           ///< schema of the object involved
  std::string table;            ///< table involved
  std::string column;           ///< column involved
  std::string datatype;         ///< data type involved
  std::string constraint;       ///< constraint involved
};

/// A summary of an earlier failed attempt of the same operation.
struct attempt_error {
  std::string sqlstate;   ///< may be empty for local failures
  std::string message;    ///< what() of that attempt
  steadypg::outcome outcome = outcome::fatal;
};

/// Root of every exception steadypg throws.
class error : public std::runtime_error {
 public:
  /// A local error; `fields` may carry a SQLSTATE inferred from a connect failure.
  error(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields = {});
  /// An error reported by the server.
  error(std::string message, server_error_fields fields, steadypg::outcome outcome);

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
  /// The operation that failed ("execute", "connect", "commit", …); may be empty.
  [[nodiscard]] const std::string& operation() const noexcept;
  /// How many attempts were made in total (1 unless a retry layer ran it again).
  [[nodiscard]] int attempts() const noexcept;
  /// The errors of the earlier attempts, oldest first.
  [[nodiscard]] const std::vector<attempt_error>& earlier_attempts() const noexcept;

  /// True when running the same request again may succeed (rolled_back, not_sent with a
  /// health failure, lost connection) — it does not say whether it is *safe* (see outcome()).
  [[nodiscard]] bool is_transient() const noexcept;
  /// True when the connection that produced this error must not be reused.
  [[nodiscard]] bool poisons_connection() const noexcept;

  /// Sets the operation name (used by higher layers).
  void set_operation(std::string op);
  /// True when a retry was refused because the retry budget was spent.
  [[nodiscard]] bool budget_exhausted() const noexcept;
  /// Flags the error as returned because the retry budget was spent.
  void set_budget_exhausted(bool on = true) noexcept;
  /// Marks the connection that produced this error as unusable.
  void set_broken(bool broken = true) noexcept;
  /// Records the attempt count and the earlier attempts (used by the retry layer).
  void set_attempts(int attempts, std::vector<attempt_error> earlier);

 private:
  struct state;
  std::shared_ptr<state> m_state;  // shared so that copying an exception cannot throw
};

/// The connection could not be established or was lost.
class connection_error : public error { using error::error; };
/// A client-side deadline passed (connect, query, acquire).
class timeout_error : public error { using error::error; };
/// No pooled connection became free before the acquire deadline, or the waiter cap was hit.
class pool_timeout : public timeout_error { using timeout_error::timeout_error; };
/// An acquire was rejected at once because max_waiters callers were already queued.
class pool_exhausted : public pool_timeout { using pool_timeout::pool_timeout; };
/// The circuit breaker is open: the call failed at once without trying the server.
class circuit_open : public error { using error::error; };
/// The connection was lost after COMMIT was sent: the transaction may or may not have
/// committed. Never retried automatically.
class indeterminate_commit : public error { using error::error; };
/// A bad argument or misuse detected before anything was sent (parameter count, NUL byte …).
class usage_error : public error {
 public:
  explicit usage_error(std::string message);
};
/// A result value could not be converted (NULL into a non-optional, unparsable text …).
class conversion_error : public error {
 public:
  explicit conversion_error(std::string message);
};
/// Invalid configuration (environment variable, option or DSN).
class config_error : public error {
 public:
  explicit config_error(std::string message);
};
/// The server reported an error for a statement.
class sql_error : public error { using error::error; };
/// 23505
class unique_violation : public sql_error { using sql_error::sql_error; };
/// 40001
class serialization_failure : public sql_error { using sql_error::sql_error; };
/// 40P01
class deadlock_detected : public sql_error { using sql_error::sql_error; };
/// 57014 (statement_timeout or a cancel request)
class query_canceled : public sql_error { using sql_error::sql_error; };

namespace internal {
/// Extracts every error field of a failed PGresult.
[[nodiscard]] server_error_fields read_error_fields(const pg_result* res);
/// Throws the most specific exception for a server error; `broken` says the connection
/// did not survive it (57P01 and friends end the session).
[[noreturn]] void throw_server_error(server_error_fields fields, std::string_view operation,
                                     const request_facts& facts, bool broken);
/// Throws connection_error, or indeterminate_commit when COMMIT was in flight.
[[noreturn]] void throw_connection_lost(std::string message, std::string_view operation,
                                        const request_facts& facts);
/// Builds the what() text of a server error: "message (SQLSTATE x) DETAIL: … HINT: …".
[[nodiscard]] std::string format_server_message(const server_error_fields& f);
}  // namespace internal

}  // namespace steadypg
