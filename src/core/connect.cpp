// The connect path: keepalive defaults ahead of the DSN, the poll loop bounded by
// connect_timeout, and the SQLSTATE of a failed connect, which libpq does not give.

#include <cstdlib>
#include <fmt/format.h>

#include "connection_impl.hpp"
#include "error_builder.hpp"
#include "steadypg/result.hpp"

namespace steadypg::internal {

namespace {

// A connect failure carries no SQLSTATE in libpq 15; recover the ones that matter for
// retries and the circuit breaker from the server's message.
std::string infer_connect_sqlstate(std::string_view msg) {
  struct pattern {
    std::string_view text;
    std::string_view code;
  };
  static constexpr pattern patterns[] = {
      {"too many clients", "53300"},
      {"remaining connection slots are reserved", "53300"},
      {"the database system is starting up", "57P03"},
      {"the database system is shutting down", "57P03"},
      {"the database system is in recovery mode", "57P03"},
      {"the database system is not yet accepting connections", "57P03"},
      {"password authentication failed", "28P01"},
      {"Peer authentication failed", "28000"},
      {"Ident authentication failed", "28000"},
      {"no pg_hba.conf entry", "28000"},
      {"pg_hba.conf rejects connection", "28000"},
      {"no password supplied", "28P01"},
      {"SCRAM authentication", "28000"},
      {"permission denied for database", "42501"},
      {"not permitted to log in", "28000"},
      {"too many connections for role", "53300"},
      {"too many connections for database", "53300"},
      // PgBouncer's own refusals (it sends 08P01): the pooler is full or cannot reach a server.
      {"no more connections allowed", "08P01"},
      {"pgbouncer cannot connect to server", "08P01"},
      {"server login has been failing", "08P01"},
      {"query_wait_timeout", "08P01"},
      {"unsupported startup parameter", "08P01"},
  };
  for (const auto& p : patterns) {
    if (msg.find(p.text) != std::string_view::npos) return std::string(p.code);
  }
  if (msg.find("does not exist") != std::string_view::npos) {
    if (msg.find("role \"") != std::string_view::npos) return "28000";
    if (msg.find("database \"") != std::string_view::npos) return "3D000";
  }
  return "08001";
}

}  // namespace

bool names_a_service(const std::string& dsn) noexcept {
  if (const char* env = std::getenv("PGSERVICE"); env != nullptr && *env != '\0') return true;
  if (dsn.find("service") == std::string::npos) return false;
  bool found = false;
  if (PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), nullptr)) {
    for (auto* o = opts; o->keyword != nullptr; ++o) {
      if (std::string_view(o->keyword) == "service" && o->val != nullptr && *o->val != '\0') found = true;
    }
    PQconninfoFree(opts);
  }
  return found;
}

void connection_impl::connect(const connection_options& given) {
  options = given;
  if (options.query_timeout.count() == 0) options.query_timeout = statement_timeout_backstop(options.statement_timeout);
  // TCP keepalives and a user timeout, so that a peer that vanished (host down, network cut)
  // is noticed within about 30 s even by a call without a deadline. They come before the
  // DSN, so that a DSN setting any of them wins (libpq: later entries override earlier ones).
  // A service file's settings apply only to keywords not given here: with a service, give none.
  const char* keywords[] = {"keepalives",       "keepalives_idle", "keepalives_interval",       "keepalives_count",
                            "tcp_user_timeout", "dbname",          "fallback_application_name", nullptr};
  const char* values[] = {"1", "15", "5", "3", "30000", options.dsn.c_str(), options.application_name.c_str(), nullptr};
  const int first = names_a_service(options.dsn) ? 5 : 0;
  const auto until = clock::now() + options.connect_timeout;
  auto fail = [&](std::string msg) {
    server_error_fields f;
    f.sqlstate = infer_connect_sqlstate(msg);
    f.message = msg;
    close();
    // A rejected login says nothing about the server's health and repeats the same way;
    // retrying it can lock the account: fatal, one attempt.
    // So does PgBouncer refusing a startup parameter (options= in the DSN).
    const bool refused_parameter = msg.find("unsupported startup parameter") != std::string::npos;
    const auto o = is_login_rejection(f.sqlstate) || refused_parameter ? outcome::fatal : outcome::not_sent;
    std::string text = "could not connect: " + msg;
    if (refused_parameter) {
      text +=
          " (PgBouncer accepts no options= or other untracked startup parameter: remove it from the DSN and set "
          "POSTGRESQL_POOLER to PgBouncer's pool_mode)";
    }
    throw error_builder(failure_kind::connect_failed, o)
        .fields(std::move(f))
        .operation("connect")
        .broken()
        .build<connection_error>(std::move(text));
  };
  conn = PQconnectStartParams(keywords + first, values + first, 1);
  if (conn == nullptr) fail("out of memory");
  if (PQstatus(conn) == CONNECTION_BAD) fail(last_error_message(conn));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) fail(last_error_message(conn));
    const bool ready = wait_socket(st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING, until);
    if (!ready) {
      close();
      throw error_builder(failure_kind::connect_failed, outcome::not_sent)
          .operation("connect")
          .broken()
          .build<timeout_error>(fmt::format("could not connect within {} ms", options.connect_timeout.count()));
    }
    st = PQconnectPoll(conn);
  }
  if (PQsetnonblocking(conn, 1) != 0) fail(last_error_message(conn));
  // Server notices (NOTICE, WARNING) are not printed to stderr by a library.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  // Behind a transaction or statement pooler a named statement would live on one server
  // session while the next call runs on another (26000): statements go unnamed.
  if (shared_sessions()) options.statement_cache_capacity = 0;
  stats.capacity = options.statement_cache_capacity;
  if (options.pooler == pooler_mode::none) probe_pooler(until);
}

void connection_impl::probe_pooler(const deadline& until) {
  // Behind PgBouncer the backend key given at login is the pooler's own, so the backend that
  // runs statements has another pid; the port it listens on is usually not the one dialled
  // either (a port alone also differs through NAT or a TCP proxy, so it is only evidence).
  const int login_pid = PQbackendPID(conn);
  const char* dialled = PQport(conn);
  if (!PQsendQuery(conn, "SELECT pg_catalog.pg_backend_pid(), pg_catalog.inet_server_port()")) send_failed("connect");
  flush(until, "connect");
  result r;
  try {
    r = collect("connect", until);
  } catch (const sql_error&) {
    return;  // not PostgreSQL as we know it (an admin console): nothing to conclude
  }
  if (r.size() != 1 || r.columns() != 2 || r[0][0].is_null()) return;
  const auto pid = r[0][0].as<int>();
  if (pid == login_pid) return;
  std::string port = r[0][1].is_null() ? std::string("a Unix socket") : fmt::format("port {}", r[0][1].as<int>());
  pooler_suspicion = fmt::format(
      "the backend that runs statements (pid {}, {}) is not the one named at login (pid {}, dialled port {}): the "
      "connection goes through a pooler; with PgBouncer in transaction or statement mode set POSTGRESQL_POOLER",
      pid, port, login_pid, dialled != nullptr && *dialled != '\0' ? dialled : "default");
}

}  // namespace steadypg::internal
