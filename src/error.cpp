#include "steadypg/error.hpp"

#include <libpq-fe.h>

#include <cstdlib>
#include <fmt/format.h>

namespace steadypg {

struct error::state {
  server_error_fields fields;
  failure_kind kind = failure_kind::server_error;
  steadypg::outcome outcome = outcome::fatal;
  std::string operation;
  int attempts = 1;
  bool broken = false;
  bool budget_exhausted = false;
  std::vector<attempt_error> earlier;
};

error::error(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields)
    : std::runtime_error(std::move(message)), m_state(std::make_shared<state>()) {
  m_state->fields = std::move(fields);
  m_state->kind = kind;
  m_state->outcome = outcome;
}

error::error(std::string message, server_error_fields fields, steadypg::outcome outcome)
    : std::runtime_error(std::move(message)), m_state(std::make_shared<state>()) {
  m_state->fields = std::move(fields);
  m_state->kind = failure_kind::server_error;
  m_state->outcome = outcome;
}

const std::string& error::sqlstate() const noexcept { return m_state->fields.sqlstate; }
sqlstate_class error::state_class() const noexcept { return classify_sqlstate(m_state->fields.sqlstate); }
const server_error_fields& error::server() const noexcept { return m_state->fields; }
failure_kind error::kind() const noexcept { return m_state->kind; }
outcome error::outcome() const noexcept { return m_state->outcome; }
const std::string& error::operation() const noexcept { return m_state->operation; }
int error::attempts() const noexcept { return m_state->attempts; }
const std::vector<attempt_error>& error::earlier_attempts() const noexcept { return m_state->earlier; }

bool error::is_transient() const noexcept {
  switch (m_state->outcome) {
    case outcome::rolled_back:
    case outcome::indeterminate:
    case outcome::wrong_host:
      return true;
    case outcome::not_sent:
      return m_state->kind != failure_kind::usage;
    case outcome::ok:
    case outcome::fatal:
      return false;
  }
  return false;
}

bool error::poisons_connection() const noexcept {
  return m_state->broken || m_state->kind == failure_kind::connection_lost || m_state->kind == failure_kind::connect_failed ||
         m_state->fields.sqlstate.starts_with("08") || m_state->fields.sqlstate.starts_with("57P");
}

void error::set_operation(std::string op) { m_state->operation = std::move(op); }

void error::set_broken(bool broken) noexcept { m_state->broken = broken; }
bool error::budget_exhausted() const noexcept { return m_state->budget_exhausted; }
void error::set_budget_exhausted(bool on) noexcept { m_state->budget_exhausted = on; }

void error::set_attempts(int attempts, std::vector<attempt_error> earlier) {
  m_state->attempts = attempts;
  m_state->earlier = std::move(earlier);
}

usage_error::usage_error(std::string message) : error(std::move(message), failure_kind::usage, outcome::not_sent) {}
conversion_error::conversion_error(std::string message)
    : error(std::move(message), failure_kind::usage, outcome::fatal) {}
config_error::config_error(std::string message) : error(std::move(message), failure_kind::usage, outcome::not_sent) {}

namespace internal {

server_error_fields read_error_fields(const pg_result* res) {
  auto field = [res](int code) -> std::string {
    const char* v = PQresultErrorField(res, code);
    return v ? std::string(v) : std::string();
  };
  server_error_fields f;
  f.severity = field(PG_DIAG_SEVERITY);
  f.sqlstate = field(PG_DIAG_SQLSTATE);
  f.message = field(PG_DIAG_MESSAGE_PRIMARY);
  f.detail = field(PG_DIAG_MESSAGE_DETAIL);
  f.hint = field(PG_DIAG_MESSAGE_HINT);
  if (const char* pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION)) f.position = std::atoi(pos);
  f.internal_query = field(PG_DIAG_INTERNAL_QUERY);
  f.context = field(PG_DIAG_CONTEXT);
  f.schema = field(PG_DIAG_SCHEMA_NAME);
  f.table = field(PG_DIAG_TABLE_NAME);
  f.column = field(PG_DIAG_COLUMN_NAME);
  f.datatype = field(PG_DIAG_DATATYPE_NAME);
  f.constraint = field(PG_DIAG_CONSTRAINT_NAME);
  if (f.message.empty()) {
    // A result without a primary message (libpq-generated, e.g. a lost connection).
    const char* msg = PQresultErrorMessage(res);
    f.message = msg ? msg : "";
    while (!f.message.empty() && (f.message.back() == '\n' || f.message.back() == ' ')) f.message.pop_back();
  }
  return f;
}

std::string format_server_message(const server_error_fields& f) {
  std::string out = f.message;
  if (!f.sqlstate.empty()) out += fmt::format(" (SQLSTATE {})", f.sqlstate);
  if (!f.detail.empty()) out += fmt::format(" DETAIL: {}", f.detail);
  if (!f.hint.empty()) out += fmt::format(" HINT: {}", f.hint);
  if (!f.context.empty() && f.context.size() <= 200) out += fmt::format(" CONTEXT: {}", f.context);
  return out;
}

void throw_connection_lost(std::string message, std::string_view operation, const request_facts& facts) {
  const auto o = classify_outcome("", failure_kind::connection_lost, facts);
  if (o == outcome::indeterminate && facts.commit_sent) {
    indeterminate_commit e("connection lost after COMMIT was sent; the transaction may or may not have committed: " +
                               message,
                           failure_kind::connection_lost, o);
    e.set_operation(std::string(operation));
    e.set_broken();
    throw e;
  }
  connection_error e(std::move(message), failure_kind::connection_lost, o);
  e.set_operation(std::string(operation));
  e.set_broken();
  throw e;
}

void throw_server_error(server_error_fields fields, std::string_view operation, const request_facts& facts,
                        bool broken) {
  const auto o = classify_outcome(fields.sqlstate, failure_kind::server_error, facts);
  std::string msg = format_server_message(fields);
  const std::string& s = fields.sqlstate;
  auto raise = [&](auto&& e) {
    e.set_operation(std::string(operation));
    e.set_broken(broken);
    throw e;
  };
  if (broken) {
    if (o == outcome::indeterminate && facts.commit_sent) {
      raise(indeterminate_commit("connection lost after COMMIT was sent; the transaction may or may not have "
                                 "committed: " + msg, std::move(fields), o));
    }
    raise(connection_error(std::move(msg), std::move(fields), o));
  }
  if (s == sqlstates::unique_violation) raise(unique_violation(std::move(msg), std::move(fields), o));
  if (s == sqlstates::serialization_failure) raise(serialization_failure(std::move(msg), std::move(fields), o));
  if (s == sqlstates::deadlock_detected) raise(deadlock_detected(std::move(msg), std::move(fields), o));
  if (s == sqlstates::query_canceled) raise(query_canceled(std::move(msg), std::move(fields), o));
  sql_error e(std::move(msg), std::move(fields), o);
  e.set_operation(std::string(operation));
  e.set_broken(broken);
  throw e;
}

}  // namespace internal
}  // namespace steadypg
