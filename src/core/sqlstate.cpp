#include "steadypg/sqlstate.hpp"

#include <array>
#include <utility>

namespace steadypg {
namespace {

struct class_entry {
  std::string_view code;
  sqlstate_class cls;
  std::string_view name;
};

constexpr std::array<class_entry, 42> k_classes{{
    {"00", sqlstate_class::successful_completion, "successful_completion"},
    {"01", sqlstate_class::warning, "warning"},
    {"02", sqlstate_class::no_data, "no_data"},
    {"03", sqlstate_class::statement_not_complete, "statement_not_complete"},
    {"08", sqlstate_class::connection_exception, "connection_exception"},
    {"09", sqlstate_class::triggered_action, "triggered_action"},
    {"0A", sqlstate_class::feature_not_supported, "feature_not_supported"},
    {"0B", sqlstate_class::invalid_transaction_initiation, "invalid_transaction_initiation"},
    {"0F", sqlstate_class::locator_exception, "locator_exception"},
    {"0L", sqlstate_class::invalid_grantor, "invalid_grantor"},
    {"0P", sqlstate_class::invalid_role_specification, "invalid_role_specification"},
    {"0Z", sqlstate_class::diagnostics_exception, "diagnostics_exception"},
    {"20", sqlstate_class::case_not_found, "case_not_found"},
    {"21", sqlstate_class::cardinality_violation, "cardinality_violation"},
    {"22", sqlstate_class::data_exception, "data_exception"},
    {"23", sqlstate_class::integrity_constraint_violation, "integrity_constraint_violation"},
    {"24", sqlstate_class::invalid_cursor_state, "invalid_cursor_state"},
    {"25", sqlstate_class::invalid_transaction_state, "invalid_transaction_state"},
    {"26", sqlstate_class::invalid_statement_name, "invalid_statement_name"},
    {"27", sqlstate_class::triggered_data_change, "triggered_data_change"},
    {"28", sqlstate_class::invalid_authorization, "invalid_authorization"},
    {"2B", sqlstate_class::dependent_privilege, "dependent_privilege"},
    {"2D", sqlstate_class::invalid_transaction_termination, "invalid_transaction_termination"},
    {"2F", sqlstate_class::routine_exception, "routine_exception"},
    {"34", sqlstate_class::invalid_cursor_name, "invalid_cursor_name"},
    {"38", sqlstate_class::external_routine, "external_routine"},
    {"39", sqlstate_class::external_routine_invocation, "external_routine_invocation"},
    {"3B", sqlstate_class::savepoint_exception, "savepoint_exception"},
    {"3D", sqlstate_class::invalid_catalog_name, "invalid_catalog_name"},
    {"3F", sqlstate_class::invalid_schema_name, "invalid_schema_name"},
    {"40", sqlstate_class::transaction_rollback, "transaction_rollback"},
    {"42", sqlstate_class::syntax_error_or_access_rule, "syntax_error_or_access_rule"},
    {"44", sqlstate_class::with_check_option_violation, "with_check_option_violation"},
    {"53", sqlstate_class::insufficient_resources, "insufficient_resources"},
    {"54", sqlstate_class::program_limit_exceeded, "program_limit_exceeded"},
    {"55", sqlstate_class::object_not_in_prerequisite_state, "object_not_in_prerequisite_state"},
    {"57", sqlstate_class::operator_intervention, "operator_intervention"},
    {"58", sqlstate_class::system_error, "system_error"},
    {"F0", sqlstate_class::config_file_error, "config_file_error"},
    {"HV", sqlstate_class::fdw_error, "fdw_error"},
    {"P0", sqlstate_class::plpgsql_error, "plpgsql_error"},
    {"XX", sqlstate_class::internal_error, "internal_error"},
}};

bool is_lost_connection_state(std::string_view s) noexcept {
  // 08P01 (protocol violation, e.g. a bind parameter count mismatch) leaves the session up.
  return (s.starts_with("08") && s != "08P01") || s == sqlstates::admin_shutdown || s == sqlstates::crash_shutdown ||
         s == sqlstates::cannot_connect_now;
}

}  // namespace

sqlstate_class classify_sqlstate(std::string_view sqlstate) noexcept {
  if (sqlstate.size() != 5) return sqlstate_class::unknown;
  const auto prefix = sqlstate.substr(0, 2);
  for (const auto& e : k_classes) {
    if (e.code == prefix) return e.cls;
  }
  return sqlstate_class::unknown;
}

std::string_view to_string(sqlstate_class c) noexcept {
  for (const auto& e : k_classes) {
    if (e.cls == c) return e.name;
  }
  return "unknown";
}

std::string_view to_string(outcome o) noexcept {
  switch (o) {
    case outcome::ok: return "ok";
    case outcome::not_sent: return "not_sent";
    case outcome::rolled_back: return "rolled_back";
    case outcome::indeterminate: return "indeterminate";
    case outcome::wrong_host: return "wrong_host";
    case outcome::fatal: return "fatal";
  }
  return "unknown";
}

outcome classify_outcome(std::string_view sqlstate, failure_kind kind, const request_facts& facts) noexcept {
  if (kind == failure_kind::connect_failed || kind == failure_kind::usage || !facts.bytes_sent) {
    return outcome::not_sent;
  }
  if (sqlstate == sqlstates::serialization_failure || sqlstate == sqlstates::deadlock_detected ||
      sqlstate == sqlstates::lock_not_available) {
    return outcome::rolled_back;
  }
  if (sqlstate == sqlstates::read_only_sql_transaction) return outcome::wrong_host;
  const bool lost =
      kind == failure_kind::connection_lost || kind == failure_kind::timeout || is_lost_connection_state(sqlstate);
  if (lost) {
    // A server drops an open transaction block when its session ends, so the work is
    // known to be gone — unless COMMIT itself was in flight.
    if (facts.in_transaction && !facts.commit_sent) {
      return outcome::rolled_back;
    }
    return outcome::indeterminate;
  }
  return outcome::fatal;
}

bool is_login_rejection(std::string_view sqlstate) noexcept {
  return sqlstate.starts_with("28") || sqlstate == "3D000" || sqlstate == "42501";
}

bool is_health_failure(std::string_view sqlstate, failure_kind kind) noexcept {
  if (kind == failure_kind::connect_failed && is_login_rejection(sqlstate)) return false;
  switch (kind) {
    case failure_kind::connect_failed:
    case failure_kind::connection_lost:
    case failure_kind::timeout: return true;
    case failure_kind::usage: return false;
    case failure_kind::server_error: break;
  }
  return is_lost_connection_state(sqlstate) || sqlstate == sqlstates::too_many_connections;
}

}  // namespace steadypg
