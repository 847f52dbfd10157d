// The connect path: keepalive defaults ahead of the DSN, the poll loop bounded by
// connect_timeout, and the SQLSTATE of a failed connect, which libpq does not give.

#include <cstdlib>
#include <fmt/format.h>

#include "connection_impl.hpp"
#include "error_builder.hpp"

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
    const auto o = is_login_rejection(f.sqlstate) ? outcome::fatal : outcome::not_sent;
    throw error_builder(failure_kind::connect_failed, o)
        .fields(std::move(f))
        .operation("connect")
        .broken()
        .build<connection_error>("could not connect: " + msg);
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
  stats.capacity = options.statement_cache_capacity;
}

}  // namespace steadypg::internal
