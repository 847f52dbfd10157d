#include "steadypg/error.hpp"

#include "error_builder.hpp"

#include <libpq-fe.h>

#include <cstdlib>
#include <fmt/format.h>

namespace steadypg {

namespace {

std::shared_ptr<const internal::error_details> make_details(failure_kind kind, steadypg::outcome outcome,
                                                            server_error_fields fields, error_origin origin) {
  auto d = std::make_shared<internal::error_details>();
  d->fields = std::move(fields);
  d->kind = kind;
  d->outcome = outcome;
  d->origin = origin;
  return d;
}

internal::error_details details_of(failure_kind kind, steadypg::outcome outcome, server_error_fields fields,
                                   error_origin origin) {
  internal::error_details d;
  d.fields = std::move(fields);
  d.kind = kind;
  d.outcome = outcome;
  d.origin = origin;
  return d;
}

internal::error_details with_origin(internal::error_details d, error_origin origin) {
  d.origin = origin;
  return d;
}

internal::error_details in_doubt(internal::error_details d) {
  d.commit_in_doubt = true;
  return d;
}

}  // namespace

std::string_view to_string(error_origin o) noexcept {
  switch (o) {
    case error_origin::server: return "server";
    case error_origin::connection: return "connection";
    case error_origin::pool: return "pool";
    case error_origin::breaker: return "breaker";
    case error_origin::client: return "client";
  }
  return "unknown";
}

error::error(std::string message, failure_kind kind, steadypg::outcome outcome, server_error_fields fields)
    : std::runtime_error(std::move(message)),
      m_state(make_details(kind, outcome, std::move(fields), internal::default_origin(kind))) {}

error::error(std::string message, server_error_fields fields, steadypg::outcome outcome)
    : std::runtime_error(std::move(message)),
      m_state(make_details(failure_kind::server_error, outcome, std::move(fields), error_origin::server)) {}

error::error(std::string message, internal::error_details details)
    : std::runtime_error(std::move(message)),
      m_state(std::make_shared<const internal::error_details>(std::move(details))) {}

const std::string& error::sqlstate() const noexcept { return m_state->fields.sqlstate; }
sqlstate_class error::state_class() const noexcept { return classify_sqlstate(m_state->fields.sqlstate); }
const server_error_fields& error::server() const noexcept { return m_state->fields; }
failure_kind error::kind() const noexcept { return m_state->kind; }
outcome error::outcome() const noexcept { return m_state->outcome; }
error_origin error::origin() const noexcept { return m_state->origin; }
const std::string& error::operation() const noexcept { return m_state->operation; }
int error::attempts() const noexcept { return m_state->attempts; }
const std::vector<attempt_error>& error::earlier_attempts() const noexcept { return m_state->earlier; }
bool error::budget_exhausted() const noexcept { return m_state->budget_exhausted; }

bool error::is_transient() const noexcept {
  switch (m_state->outcome) {
    case outcome::rolled_back:
    case outcome::indeterminate:
    case outcome::wrong_host: return true;
    case outcome::not_sent: return m_state->origin != error_origin::client;
    case outcome::ok:
    case outcome::fatal: return false;
  }
  return false;
}

bool error::poisons_connection() const noexcept {
  return m_state->broken || m_state->kind == failure_kind::connection_lost ||
         m_state->kind == failure_kind::connect_failed || m_state->fields.sqlstate.starts_with("08") ||
         m_state->fields.sqlstate.starts_with("57P");
}

bool error::reached_server() const noexcept {
  return m_state->outcome != outcome::not_sent && m_state->kind != failure_kind::connect_failed;
}

bool error::counts_for_breaker() const noexcept {
  return m_state->origin == error_origin::server || m_state->origin == error_origin::connection;
}

bool error::cancel_sent() const noexcept { return m_state->cancel_sent; }
bool error::is_indeterminate_commit() const noexcept { return m_state->commit_in_doubt; }
std::optional<std::uint64_t> error::xid() const noexcept { return m_state->xid; }
std::optional<server_identity> error::commit_server() const noexcept { return m_state->commit_server; }
commit_resolution error::resolution() const noexcept { return m_state->resolution; }

std::string_view to_string(commit_resolution r) noexcept {
  switch (r) {
    case commit_resolution::none: return "none";
    case commit_resolution::committed: return "committed";
    case commit_resolution::aborted: return "aborted";
    case commit_resolution::unknown: return "unknown";
  }
  return "unknown";
}

pool_timeout::pool_timeout(std::string message, failure_kind kind, steadypg::outcome outcome,
                           server_error_fields fields)
    : timeout_error(std::move(message), details_of(kind, outcome, std::move(fields), error_origin::pool)) {}
pool_timeout::pool_timeout(std::string message, internal::error_details details)
    : timeout_error(std::move(message), with_origin(std::move(details), error_origin::pool)) {}

circuit_open::circuit_open(std::string message, failure_kind kind, steadypg::outcome outcome,
                           server_error_fields fields)
    : error(std::move(message), details_of(kind, outcome, std::move(fields), error_origin::breaker)) {}
circuit_open::circuit_open(std::string message, internal::error_details details)
    : error(std::move(message), with_origin(std::move(details), error_origin::breaker)) {}

indeterminate_commit::indeterminate_commit(std::string message, failure_kind kind, steadypg::outcome outcome,
                                           server_error_fields fields)
    : error(std::move(message),
            in_doubt(details_of(kind, outcome, std::move(fields), internal::default_origin(kind)))) {}
indeterminate_commit::indeterminate_commit(std::string message, internal::error_details details)
    : error(std::move(message), in_doubt(std::move(details))) {}

no_host_available::no_host_available(std::string message, failure_kind kind, steadypg::outcome outcome,
                                     server_error_fields fields)
    : error(std::move(message), details_of(kind, outcome, std::move(fields), error_origin::pool)) {}
no_host_available::no_host_available(std::string message, internal::error_details details)
    : error(std::move(message), std::move(details)) {}

usage_error::usage_error(std::string message) : error(std::move(message), failure_kind::usage, outcome::not_sent) {}
usage_error::usage_error(std::string message, internal::error_details details)
    : error(std::move(message), std::move(details)) {}
conversion_error::conversion_error(std::string message)
    : error(std::move(message), failure_kind::usage, outcome::fatal) {}
conversion_error::conversion_error(std::string message, internal::error_details details)
    : error(std::move(message), std::move(details)) {}
config_error::config_error(std::string message) : error(std::move(message), failure_kind::usage, outcome::not_sent) {}
config_error::config_error(std::string message, internal::error_details details)
    : error(std::move(message), std::move(details)) {}

// Each class throws a copy of its own type (what the retry layer's rethrow relies on).
#define STEADYPG_RAISE_WITH(type)                                                                       \
  void type::raise_with(internal::error_details details) const {                                        \
    std::string message = details.reworded.empty() ? std::string(what()) : std::move(details.reworded); \
    details.reworded.clear();                                                                           \
    throw type(std::move(message), std::move(details));                                                 \
  }
STEADYPG_RAISE_WITH(error)
STEADYPG_RAISE_WITH(connection_error)
STEADYPG_RAISE_WITH(timeout_error)
STEADYPG_RAISE_WITH(pool_timeout)
STEADYPG_RAISE_WITH(pool_exhausted)
STEADYPG_RAISE_WITH(pool_overloaded)
STEADYPG_RAISE_WITH(circuit_open)
STEADYPG_RAISE_WITH(indeterminate_commit)
STEADYPG_RAISE_WITH(no_host_available)
STEADYPG_RAISE_WITH(no_primary_available)
STEADYPG_RAISE_WITH(no_replica_available)
STEADYPG_RAISE_WITH(usage_error)
STEADYPG_RAISE_WITH(conversion_error)
STEADYPG_RAISE_WITH(config_error)
STEADYPG_RAISE_WITH(sql_error)
STEADYPG_RAISE_WITH(unique_violation)
STEADYPG_RAISE_WITH(serialization_failure)
STEADYPG_RAISE_WITH(deadlock_detected)
STEADYPG_RAISE_WITH(query_canceled)
#undef STEADYPG_RAISE_WITH

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

error_origin default_origin(failure_kind kind) noexcept {
  switch (kind) {
    case failure_kind::server_error: return error_origin::server;
    case failure_kind::usage: return error_origin::client;
    case failure_kind::connect_failed:
    case failure_kind::connection_lost:
    case failure_kind::timeout: break;
  }
  return error_origin::connection;
}

error_builder error_builder::from(const error& e) {
  const error_details& d = *e.m_state;
  error_builder b(d.kind, d.outcome);
  b.m_d.fields = d.fields;
  b.m_d.operation = d.operation;
  b.m_d.broken = d.broken;
  b.m_d.cancel_sent = d.cancel_sent;
  b.m_d.xid = d.xid;
  b.m_d.commit_server = d.commit_server;
  return b;
}

void error_builder::raise_with_call_facts(const error& e, call_outcome_facts facts) {
  error_details d = *e.m_state;
  if (d.operation.empty()) d.operation.assign(facts.operation);
  d.attempts = facts.attempts;
  d.earlier = std::move(facts.earlier);
  d.budget_exhausted = facts.budget_exhausted;
  if (facts.resolution) d.resolution = *facts.resolution;
  if (!facts.resolution_reason.empty()) {
    d.reworded =
        std::string(e.what()) + "; asking the server did not settle it: " + std::string(facts.resolution_reason);
  }
  e.raise_with(std::move(d));
  std::abort();  // not reached: raise_with always throws
}

void throw_connection_lost(std::string message, std::string_view operation, const request_facts& facts) {
  const auto o = classify_outcome("", failure_kind::connection_lost, facts);
  auto b = error_builder(failure_kind::connection_lost, o).operation(operation).broken();
  if (o == outcome::indeterminate && facts.commit_sent) {
    throw b.build<indeterminate_commit>(
        "connection lost after COMMIT was sent; the transaction may or may not have committed: " + message);
  }
  throw b.build<connection_error>(std::move(message));
}

void raise_server_error(server_error_fields fields, std::string_view operation, steadypg::outcome o, bool broken,
                        bool commit_sent) {
  std::string msg = format_server_message(fields);
  const std::string s = fields.sqlstate;
  auto b = error_builder(failure_kind::server_error, o).fields(std::move(fields)).operation(operation).broken(broken);
  if (broken) {
    // The server ended the session (57P01 …): the connection is gone, whatever it said.
    b.origin(error_origin::connection);
    if (o == outcome::indeterminate && commit_sent) {
      throw b.build<indeterminate_commit>(
          "connection lost after COMMIT was sent; the transaction may or may not have "
          "committed: " +
          msg);
    }
    throw b.build<connection_error>(std::move(msg));
  }
  if (s == sqlstates::unique_violation) throw b.build<unique_violation>(std::move(msg));
  if (s == sqlstates::serialization_failure) throw b.build<serialization_failure>(std::move(msg));
  if (s == sqlstates::deadlock_detected) throw b.build<deadlock_detected>(std::move(msg));
  if (s == sqlstates::query_canceled) throw b.build<query_canceled>(std::move(msg));
  throw b.build<sql_error>(std::move(msg));
}

void throw_server_error(server_error_fields fields, std::string_view operation, const request_facts& facts,
                        bool broken) {
  if (broken && fields.sqlstate == "08P01") {
    // A pooler ending the session (PgBouncer's query_wait_timeout, "server conn crashed?", …)
    // says nothing about the statement: the connection was lost, and the breaker hears it.
    const auto o = classify_outcome("", failure_kind::connection_lost, facts);
    std::string msg = format_server_message(fields);
    auto b = error_builder(failure_kind::connection_lost, o).fields(std::move(fields)).operation(operation).broken();
    if (o == outcome::indeterminate && facts.commit_sent) {
      throw b.build<indeterminate_commit>(
          "connection lost after COMMIT was sent; the transaction may or may not have committed: " + msg);
    }
    throw b.build<connection_error>(std::move(msg));
  }
  const auto o = classify_outcome(fields.sqlstate, failure_kind::server_error, facts);
  raise_server_error(std::move(fields), operation, o, broken, facts.commit_sent);
}

}  // namespace internal
}  // namespace steadypg
