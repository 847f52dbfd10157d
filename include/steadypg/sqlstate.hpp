#pragma once

#include <string_view>

namespace steadypg {

/// SQLSTATE classes (the first two characters of a five-character code).
enum class sqlstate_class {
  successful_completion,             ///< 00
  warning,                           ///< 01
  no_data,                           ///< 02
  statement_not_complete,            ///< 03
  connection_exception,              ///< 08
  triggered_action,                  ///< 09
  feature_not_supported,             ///< 0A
  invalid_transaction_initiation,    ///< 0B
  locator_exception,                 ///< 0F
  invalid_grantor,                   ///< 0L
  invalid_role_specification,        ///< 0P
  diagnostics_exception,             ///< 0Z
  case_not_found,                    ///< 20
  cardinality_violation,             ///< 21
  data_exception,                    ///< 22
  integrity_constraint_violation,    ///< 23
  invalid_cursor_state,              ///< 24
  invalid_transaction_state,         ///< 25
  invalid_statement_name,            ///< 26
  triggered_data_change,             ///< 27
  invalid_authorization,             ///< 28
  dependent_privilege,               ///< 2B
  invalid_transaction_termination,   ///< 2D
  routine_exception,                 ///< 2F
  invalid_cursor_name,               ///< 34
  external_routine,                  ///< 38
  external_routine_invocation,       ///< 39
  savepoint_exception,               ///< 3B
  invalid_catalog_name,              ///< 3D
  invalid_schema_name,               ///< 3F
  transaction_rollback,              ///< 40
  syntax_error_or_access_rule,       ///< 42
  with_check_option_violation,       ///< 44
  insufficient_resources,            ///< 53
  program_limit_exceeded,            ///< 54
  object_not_in_prerequisite_state,  ///< 55
  operator_intervention,             ///< 57
  system_error,                      ///< 58
  config_file_error,                 ///< F0
  fdw_error,                         ///< HV
  plpgsql_error,                     ///< P0
  internal_error,                    ///< XX
  unknown                            ///< empty, malformed or unlisted
};

/// The class of a SQLSTATE code ("23505" → integrity_constraint_violation).
[[nodiscard]] sqlstate_class classify_sqlstate(std::string_view sqlstate) noexcept;

/// A short stable name for a class ("integrity_constraint_violation"), for logs and labels.
[[nodiscard]] std::string_view to_string(sqlstate_class c) noexcept;

/// Frequently used SQLSTATE codes.
namespace sqlstates {
inline constexpr std::string_view query_canceled = "57014";
inline constexpr std::string_view admin_shutdown = "57P01";
inline constexpr std::string_view crash_shutdown = "57P02";
inline constexpr std::string_view cannot_connect_now = "57P03";
inline constexpr std::string_view too_many_connections = "53300";
inline constexpr std::string_view serialization_failure = "40001";
inline constexpr std::string_view deadlock_detected = "40P01";
inline constexpr std::string_view lock_not_available = "55P03";
inline constexpr std::string_view read_only_sql_transaction = "25006";
inline constexpr std::string_view unique_violation = "23505";
inline constexpr std::string_view character_not_in_repertoire = "22021";
inline constexpr std::string_view invalid_sql_statement_name = "26000";
inline constexpr std::string_view in_failed_sql_transaction = "25P02";
}  // namespace sqlstates

/// What a failed attempt means for a retry (docs/resilience.md).
enum class outcome {
  ok,             ///< the attempt succeeded
  not_sent,       ///< nothing reached the server: safe to retry anything
  rolled_back,    ///< the server rolled the work back (40001, 40P01, 55P03, or a lost open transaction)
  indeterminate,  ///< sent, then the connection was lost or timed out: the effect is unknown
  wrong_host,     ///< 25006: the server is read-only (a standby after failover)
  fatal           ///< a definite error that a retry would repeat (22xxx, 23xxx, 42xxx, 28xxx, …)
};

/// A short stable name for an outcome ("not_sent").
[[nodiscard]] std::string_view to_string(outcome o) noexcept;

/// How an attempt failed locally, as opposed to with a server error.
enum class failure_kind {
  server_error,     ///< the server answered with an error (SQLSTATE set)
  connect_failed,   ///< could not establish the connection
  connection_lost,  ///< the connection broke while the request was in flight
  timeout,          ///< a client-side deadline passed
  usage             ///< the request was rejected locally (bad parameters, conversion)
};

/// What the connection knew about the request when it failed.
struct request_facts {
  bool bytes_sent = false;      ///< any byte of the request reached the socket
  bool commit_sent = false;     ///< the request was (or ended with) a COMMIT
  bool in_transaction = false;  ///< an explicit transaction block was open when it was sent
};

/// Maps a failure to its outcome class; a pure function (docs/resilience.md).
/// Nothing sent → not_sent. 40001/40P01/55P03 → rolled_back. 25006 → wrong_host.
/// Lost connection, 08xxx, 57P0x or timeout after sending → indeterminate, except inside
/// an explicit transaction before COMMIT was sent, where nothing can have committed: rolled_back.
/// Everything else → fatal.
[[nodiscard]] outcome classify_outcome(std::string_view sqlstate, failure_kind kind,
                                       const request_facts& facts) noexcept;

/// True for failures that mean the server or the path to it is unhealthy
/// (connect errors, lost connections, 57P0x, 53300, timeouts) — not 23xxx/42xxx/40001.
[[nodiscard]] bool is_health_failure(std::string_view sqlstate, failure_kind kind) noexcept;

/// True for a login the server refused for who is asking rather than how it is doing:
/// authentication and authorization (28xxx), a missing database (3D000), no CONNECT
/// privilege (42501). Fatal: never retried, never counted against the circuit breaker.
[[nodiscard]] bool is_login_rejection(std::string_view sqlstate) noexcept;

}  // namespace steadypg
