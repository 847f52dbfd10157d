#include "steadypg/transaction.hpp"

#include <fmt/format.h>

#include "error_builder.hpp"

namespace steadypg {

transaction::transaction(connection& conn, const transaction_options& options) : m_conn(&conn) {
  const auto s = conn.status();
  if (s == connection_status::in_transaction || s == connection_status::failed_transaction) {
    throw usage_error("a transaction is already open on this connection");
  }
  std::string sql = "BEGIN";
  if (options.isolation) {
    switch (*options.isolation) {
      case isolation_level::read_committed: sql += " ISOLATION LEVEL READ COMMITTED"; break;
      case isolation_level::repeatable_read: sql += " ISOLATION LEVEL REPEATABLE READ"; break;
      case isolation_level::serializable: sql += " ISOLATION LEVEL SERIALIZABLE"; break;
    }
  }
  // A transaction routed to replicas reads only (a replica would refuse its writes anyway).
  const bool to_replica =
      options.route && (*options.route == route::replica || *options.route == route::prefer_replica);
  if (options.read_only || to_replica) sql += " READ ONLY";
  if (options.deferrable) sql += " DEFERRABLE";
  (void)conn.execute(sql);
  m_active = true;
}

transaction::transaction(transaction&& other) noexcept : m_conn(other.m_conn), m_active(other.m_active) {
  other.m_active = false;
}

transaction::~transaction() {
  if (!m_active) return;
  try {
    if (!m_conn->is_broken()) (void)m_conn->execute("ROLLBACK");
  } catch (...) {
    // A connection that cannot roll back is unusable; a pool will see it as broken.
    m_conn->close();
  }
}

void transaction::check_active() const {
  if (!active()) throw usage_error("the transaction is no longer active (committed or rolled back)");
}

void transaction::commit() {
  check_active();
  m_active = false;
  auto r = m_conn->execute("COMMIT");
  if (r.command() == "ROLLBACK") {
    server_error_fields f;
    f.sqlstate = std::string(sqlstates::in_failed_sql_transaction);
    f.message = "COMMIT rolled back the transaction because an earlier statement in it failed";
    throw internal::error_builder(failure_kind::server_error, outcome::fatal)
        .fields(f)
        .operation("commit")
        .build<sql_error>(f.message + " (SQLSTATE 25P02)");
  }
}

void transaction::rollback() {
  check_active();
  m_active = false;
  (void)m_conn->execute("ROLLBACK");
}

}  // namespace steadypg
