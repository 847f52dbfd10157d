#include "steadypg/transaction.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <exception>
#include <optional>
#include <string>

#include "connection_impl.hpp"
#include "error_builder.hpp"
#include "sql_scan.hpp"
#include "verified_commit.hpp"
#include "steadypg/pipeline.hpp"

namespace steadypg {

transaction::transaction(connection& conn, const transaction_options& options) : m_conn(&conn) {
  const auto s = conn.status();
  if (s == connection_status::in_transaction || s == connection_status::failed_transaction) {
    throw usage_error("a transaction is already open on this connection");
  }
  const auto pooler = conn.options().pooler;
  if (pooler == pooler_mode::statement) {
    throw usage_error(
        "a transaction block is refused behind PgBouncer in statement pooling mode (pooler=statement): every "
        "statement is its own transaction there, and PgBouncer ends a session that opens one; use "
        "pool_mode=transaction (pooler=transaction) for transactions");
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
  // Behind a transaction pooler the statement_timeout is this transaction's own (one round
  // trip with the BEGIN), never the shared session's.
  if (shares_server_sessions(pooler) && conn.statement_timeout().count() > 0) {
    sql += fmt::format("; SET LOCAL statement_timeout = {}", conn.statement_timeout().count());
  }
  // The server's identity is asked once per connection, here, outside the transaction (where a
  // refusal cannot abort it); without it a lost COMMIT could not be resolved safely.
  try {
    if (options.fetch_xid && !options.read_only) m_fetch_xid = conn.identify().has_value();
    (void)conn.execute(sql);
  } catch (const error& e) {
    if (e.outcome() != outcome::indeterminate) throw;
    // Neither BEGIN nor the identity query changes anything: whatever became of them, nothing of
    // the transaction was applied.
    auto b = internal::error_builder::from(e).origin(e.origin()).outcome(outcome::rolled_back);
    if (e.kind() == failure_kind::timeout) throw b.build<timeout_error>(e.what());
    throw b.build<connection_error>(e.what());
  }
  m_active = true;
}

transaction::transaction(transaction&& other) noexcept
    : m_conn(other.m_conn),
      m_active(other.m_active),
      m_fetch_xid(other.m_fetch_xid),
      m_xid(other.m_xid),
      m_no_xid_at(other.m_no_xid_at),
      m_statements(other.m_statements) {
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

namespace {

[[noreturn]] void throw_commit_rolled_back() {
  server_error_fields f;
  f.sqlstate = std::string(sqlstates::in_failed_sql_transaction);
  f.message = "COMMIT rolled back the transaction because an earlier statement in it failed";
  throw internal::error_builder(failure_kind::server_error, outcome::fatal)
      .fields(f)
      .operation("commit")
      .build<sql_error>(f.message + " (SQLSTATE 25P02)");
}

}  // namespace

namespace internal {

void raise_lost_commit(const indeterminate_commit& e, bool id_answered, std::optional<std::uint64_t> xid,
                       std::optional<server_identity> server) {
  // The server ended the session (57P01 …) before answering the id: it processes a round trip
  // in order, so it never reached COMMIT and the transaction died with the session.
  if (!id_answered && !e.sqlstate().empty() && e.kind() != failure_kind::timeout && e.poisons_connection()) {
    throw error_builder::from(e)
        .origin(e.origin())
        .outcome(outcome::rolled_back)
        .operation("commit")
        .build<connection_error>(
            fmt::format("the server ended the session before COMMIT ran; the transaction rolled back: {}", e.what()));
  }
  // The cause, without the words the message already starts with.
  std::string_view cause = e.what();
  constexpr std::string_view said =
      "connection lost after COMMIT was sent; the transaction may or may not have committed: ";
  if (cause.substr(0, said.size()) == said) cause.remove_prefix(said.size());
  std::string what =
      xid ? fmt::format(
                "connection lost after COMMIT of transaction {} was sent; it may or may not have committed "
                "(pg_xact_status can tell): {}",
                *xid, cause)
      : id_answered
          ? fmt::format("connection lost after COMMIT was sent; the transaction had written nothing: {}", e.what())
          : std::string(e.what());
  throw error_builder::from(e)
      .origin(e.origin())
      .operation("commit")
      .in_doubt_commit(xid, xid ? server : std::nullopt)
      .build<indeterminate_commit>(std::move(what));
}

void execute_verified(connection& c, std::string_view sql, std::span<const param_ref> params,
                      std::optional<result>& out) {
  out.reset();
  const auto server = c.identify();
  if (!server) {
    out = c.execute_refs(sql, params, true);  // nothing to resolve with: a plain statement
    return;
  }
  std::optional<std::uint64_t> xid;
  bool id_answered = false;
  bool commit_answered = false;
  result commit_result;
  std::exception_ptr failed;
  try {
    pipeline p(c);
    p.send("BEGIN");
    p.send("SELECT pg_current_xact_id()::text");
    p.send_refs(sql, params);
    p.flush_request();
    p.send("COMMIT");
    p.sync();
    try {
      (void)p.get_result();  // BEGIN
      const auto text = p.get_result().as<std::optional<std::string>>();
      id_answered = true;
      if (text) xid = std::strtoull(text->c_str(), nullptr, 10);
      out = p.get_result();
      commit_result = p.get_result();
      commit_answered = true;
    } catch (const sql_error& e) {
      if (e.poisons_connection()) throw;
      failed = std::current_exception();  // the rest of the block was skipped (pipeline_aborted)
      out.reset();
    }
    p.finish();
  } catch (const indeterminate_commit& e) {
    if (commit_answered) {
      if (commit_result.command() == "ROLLBACK") throw_commit_rolled_back();
      return;
    }
    raise_lost_commit(e, id_answered, xid, server);
  }
  if (failed) {
    if (c.status() == connection_status::in_transaction || c.status() == connection_status::failed_transaction) {
      (void)c.execute("ROLLBACK");
    }
    std::rethrow_exception(failed);
  }
  if (commit_result.command() == "ROLLBACK") throw_commit_rolled_back();
}

}  // namespace internal

namespace {

// True when `sql` is one statement (a trailing `;` and comments allowed): only such text can go
// through the extended protocol next to another statement.
bool one_statement(std::string_view sql) noexcept {
  for (std::size_t i = 0; i < sql.size();) {
    const std::size_t q = internal::skip_quoted(sql, i);
    if (q != i) {
      i = q;
      continue;
    }
    if (sql[i] == ';') {
      std::size_t j = internal::skip_space_and_comments(sql, i + 1);
      while (j < sql.size() && sql[j] == ';') j = internal::skip_space_and_comments(sql, j + 1);
      return j >= sql.size();
    }
    ++i;
  }
  return true;
}

}  // namespace

result transaction::execute_noting_xid(std::string_view sql, std::span<const param_ref> params, bool may_prepare) {
  auto& d = *m_conn->m_impl;
  const bool can_ask = !d.in_pipeline && !internal::is_transaction_control(sql) &&
                       !internal::refuses_transaction_block(sql) && one_statement(sql);
  if (!can_ask) {
    m_no_xid_at = 0;
    return m_conn->execute_refs(sql, params, may_prepare);
  }
  d.begin_request("execute");
  internal::connection_impl::check_sql(sql);
  internal::connection_impl::check_params(params);
  if (d.shared_sessions()) d.refuse_session_features(sql);
  const auto until = d.make_deadline();
  const internal::param_arrays arrays(params);
  const internal::cached_statement* st = nullptr;
  const internal::cached_statement* tail = nullptr;
  if (may_prepare && d.options.statement_cache_capacity >= 2) {
    // The question first: preparing the statement then never evicts it (it was used last).
    const internal::param_arrays none({});
    tail = &d.prepared("SELECT pg_catalog.pg_current_xact_id_if_assigned()::text", none, until);
    st = &d.prepared(sql, arrays, until);
  } else if (may_prepare && d.options.statement_cache_capacity > 0) {
    st = &d.prepared(sql, arrays, until);
  } else {
    internal::check_param_count(internal::placeholder_count(sql), params.size());
  }
  bool answered = false;
  std::optional<std::uint64_t> xid;
  m_no_xid_at = 0;
  auto r = d.send_noting_xid(sql, arrays, st, tail, until, xid, answered);
  if (xid) {
    m_xid = xid;
  } else if (answered) {
    m_no_xid_at = d.requests;
  }
  return r;
}

// SELECT pg_current_xact_id_if_assigned(), a flush request, COMMIT and the sync point go out in
// one write: the id's answer leaves the server before COMMIT runs, so that it is here when the
// reply to COMMIT is lost (a backend killed in the commit, a server crash, a cut connection).
// A transaction that wrote nothing has no id (NULL): nothing to resolve.
void transaction::commit_fetching_xid() {
  std::optional<std::uint64_t> xid;
  bool id_answered = false;
  bool commit_answered = false;
  result commit_result;
  try {
    pipeline p(*m_conn);
    p.send("SELECT pg_current_xact_id_if_assigned()::text");
    p.flush_request();
    p.send("COMMIT");
    p.sync();
    std::optional<sql_error> id_failed;
    try {
      const auto text = p.get_result().as<std::optional<std::string>>();
      id_answered = true;
      if (text) xid = std::strtoull(text->c_str(), nullptr, 10);
    } catch (const sql_error& e) {
      if (e.poisons_connection()) throw;
      id_failed = e;  // COMMIT is then skipped (pipeline_aborted) and the block stays open
    }
    if (id_failed) {
      p.finish();
      (void)m_conn->execute("ROLLBACK");
      throw *id_failed;
    }
    commit_result = p.get_result();
    commit_answered = true;
    p.finish();
  } catch (const indeterminate_commit& e) {
    if (commit_answered) {
      // COMMIT answered; only the sync point after it was lost.
      if (commit_result.command() == "ROLLBACK") throw_commit_rolled_back();
      return;
    }
    internal::raise_lost_commit(e, id_answered, xid, m_conn->known_identity());
  }
  if (commit_result.command() == "ROLLBACK") throw_commit_rolled_back();
}

void transaction::commit_with_known_xid() {
  try {
    auto r = m_conn->execute("COMMIT");
    if (r.command() == "ROLLBACK") throw_commit_rolled_back();
  } catch (const indeterminate_commit& e) {
    internal::raise_lost_commit(e, true, m_xid, m_conn->known_identity());
  }
}

void transaction::commit() {
  check_active();
  m_active = false;
  if (m_fetch_xid) {
    // The id is known (or it is known that nothing was written) unless something ran since
    // without asking: then COMMIT's round trip asks.
    if (m_xid || (m_no_xid_at != 0 && m_no_xid_at == m_conn->m_impl->requests)) {
      commit_with_known_xid();
    } else {
      commit_fetching_xid();
    }
    return;
  }
  auto r = m_conn->execute("COMMIT");
  if (r.command() == "ROLLBACK") throw_commit_rolled_back();
}

void transaction::rollback() {
  check_active();
  m_active = false;
  (void)m_conn->execute("ROLLBACK");
}

}  // namespace steadypg
