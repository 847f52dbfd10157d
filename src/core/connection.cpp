#include "steadypg/connection.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>
#include <utility>

#include "check.hpp"
#include "connection_impl.hpp"
#include "error_builder.hpp"
#include "steadypg/dsn.hpp"
#include "steadypg/transaction.hpp"

namespace steadypg {
namespace internal {

namespace {

// How every request of execute() and ping() goes out: say whether it may commit, send it with
// `send` (a PQsend* call, 0 on failure), flush it and collect its results.
template <typename Send>
result send_and_collect(connection_impl& d, std::string_view op, bool may_commit, const deadline& until, Send send) {
  d.last.commit_sent = may_commit;
  if (!send()) d.send_failed(op);
  d.last.bytes_sent = true;
  d.flush(until, op);
  return d.collect(op, until);
}

// The replies of a two-statement pipelined request: the result of the kept statement, or
// the first error.
struct pipelined_replies {
  result_ptr ok;
  result_ptr failure;
};

// How send_with_timeout and send_noting_xid finish a request of two statements and one Sync
// queued in pipeline mode (`queued` false: part of it may be in libpq, so the connection is
// closed and lost): flushes it and reads the replies to the sync point. The result of
// statement `keep` (0 or 1) is kept unless an error came first; `on_other(raw)` sees the
// other statement's successful result. Leaves pipeline mode, or closes the connection when
// the reply was incomplete or out of step (connection lost, saying `incomplete`, when no
// error came).
template <typename OnOther>
pipelined_replies finish_pipelined(connection_impl& d, bool queued, std::string_view op, int keep,
                                   std::string_view incomplete, const deadline& until, OnOther on_other) {
  if (!queued) {
    // Part of the request may be queued in libpq: the session cannot be trusted any more.
    const std::string msg = last_error_message(d.conn);
    d.close();
    throw_connection_lost(msg, op, d.last);
  }
  d.last.bytes_sent = true;
  d.flush(until, op);
  pipelined_replies replies;
  int statement = 0;
  int nulls = 0;
  bool synced = false;
  while (!synced) {
    bool timed_out = false;
    PGresult* raw = d.next_result(until, timed_out);
    if (timed_out) d.handle_timeout(op);  // cancels and drains to the sync point, or closes
    if (raw == nullptr) {
      if (PQstatus(d.conn) != CONNECTION_OK || ++nulls > 1) break;
      ++statement;
      continue;
    }
    nulls = 0;
    result_ptr r(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_PIPELINE_SYNC: synced = true; break;
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY:
        if (statement == keep) {
          if (!replies.failure) replies.ok = std::move(r);
        } else if (statement == 1 - keep) {
          on_other(raw);
        }
        break;
      case PGRES_PIPELINE_ABORTED: break;
      default:
        if (!replies.failure) replies.failure = std::move(r);
        break;
    }
  }
  d.in_pipeline = false;
  if (!synced || !PQexitPipelineMode(d.conn)) {
    // Lost, or out of step with the server: never hand this session out again.
    if (!replies.failure && PQstatus(d.conn) == CONNECTION_OK) {
      d.close();
      throw_connection_lost(std::string(incomplete), op, d.last);
    }
    d.close();
  }
  return replies;
}

}  // namespace

connection_impl::~connection_impl() { close(); }

void connection_impl::close() noexcept {
  PGconn* victim = nullptr;
  {
    std::lock_guard lock(cancel_mutex);  // a concurrent cancel() reads conn
    victim = conn;
    conn = nullptr;
  }
  if (victim) PQfinish(victim);
  in_pipeline = false;
  in_copy = false;
  cache.clear();
  to_deallocate.clear();
  stats.size = 0;
}

void connection_impl::begin_request(std::string_view op) {
  if (conn == nullptr) {
    throw error_builder(failure_kind::connection_lost, outcome::not_sent)
        .operation(op)
        .broken()
        .build<connection_error>("the connection is closed");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    throw error_builder(failure_kind::connection_lost, outcome::not_sent)
        .operation(op)
        .broken()
        .build<connection_error>("the connection is broken: " + last_error_message(conn));
  }
  if (in_pipeline) throw usage_error("the connection is in pipeline mode; send through the steadypg::pipeline");
  if (in_copy)
    throw usage_error("the connection is in COPY mode; finish or abort the steadypg::copy_in or copy_out first");
  const auto tx = PQtransactionStatus(conn);
  last = request_facts{false, false, tx == PQTRANS_INTRANS || tx == PQTRANS_INERROR};
  ++requests;
}

deadline connection_impl::make_deadline() const {
  deadline d;
  if (options.query_timeout.count() > 0) d = clock::now() + options.query_timeout;
  if (hard_deadline && (!d || *hard_deadline < *d)) d = hard_deadline;
  return d;
}

void connection_impl::refuse_session_features(std::string_view sql) const {
  const auto what = session_only_feature(sql, options.pooler == pooler_mode::statement);
  if (what.empty()) return;
  std::string_view instead;
  if (what == "LISTEN") {
    instead = "LISTEN needs a connection that bypasses PgBouncer (a DSN to the server itself, pooler=none)";
  } else if (what == "a session SET") {
    instead =
        "use SET LOCAL inside a transaction, statement::timeout() for a deadline, or ALTER ROLE … SET … for a "
        "default";
  } else if (what == "a session advisory lock") {
    instead = "use pg_advisory_xact_lock inside a transaction";
  } else if (what == "a WITH HOLD cursor") {
    instead = "use a cursor without HOLD inside a transaction";
  } else if (what == "a transaction block") {
    instead = "each statement is its own transaction there; use pool_mode=transaction for transaction blocks";
  } else {
    instead = "send the statement text with parameters: it is parsed, unnamed, with every call";
  }
  const auto mode = to_string(options.pooler);
  throw usage_error(fmt::format(
      "{} is refused behind PgBouncer in {} pooling mode (pooler={}): it needs a server session of its own, and the "
      "next transaction may run on another one while what this one leaves behind reaches other clients; nothing "
      "was sent. Instead, {}",
      what, mode, mode, instead));
}

result connection_impl::send_with_timeout(std::string_view sql, const param_arrays& arrays, bool may_commit,
                                          const deadline& until) {
  constexpr std::string_view op = "execute";
  last.commit_sent = may_commit;
  if (!PQenterPipelineMode(conn)) send_failed(op);
  in_pipeline = true;
  const std::string value = fmt::format("{}ms", session_statement_timeout.count());
  const char* values[] = {value.c_str()};
  sql_buf.assign(sql);
  const bool queued = PQsendQueryParams(conn, "SELECT pg_catalog.set_config('statement_timeout', $1, true)", 1, nullptr,
                                        values, nullptr, nullptr, 0) != 0 &&
                      PQsendQueryParams(conn, sql_buf.c_str(), arrays.size(), arrays.types(), arrays.values(),
                                        arrays.lengths(), arrays.formats(), 0) != 0 &&
                      PQpipelineSync(conn) != 0;
  // Statement 0 is set_config, 1 the caller's.
  auto replies = finish_pipelined(*this, queued, op, 1, "the reply to a statement and its settings was incomplete",
                                  until, [](const PGresult*) {});
  return conclude(std::move(replies.ok), std::move(replies.failure), op);
}

result connection_impl::send_noting_xid(std::string_view sql, const param_arrays& arrays, const cached_statement* st,
                                        const cached_statement* tail, const deadline& until,
                                        std::optional<std::uint64_t>& xid, bool& answered) {
  constexpr std::string_view op = "execute";
  static constexpr const char* k_xid_sql = "SELECT pg_catalog.pg_current_xact_id_if_assigned()::text";
  last.commit_sent = false;
  answered = false;
  xid.reset();
  if (!PQenterPipelineMode(conn)) send_failed(op);
  in_pipeline = true;
  if (st == nullptr) sql_buf.assign(sql);
  const bool queued =
      (st != nullptr ? PQsendQueryPrepared(conn, st->name.c_str(), arrays.size(), arrays.values(), arrays.lengths(),
                                           arrays.formats(), 0)
                     : PQsendQueryParams(conn, sql_buf.c_str(), arrays.size(), arrays.types(), arrays.values(),
                                         arrays.lengths(), arrays.formats(), 0)) != 0 &&
      (tail != nullptr ? PQsendQueryPrepared(conn, tail->name.c_str(), 0, nullptr, nullptr, nullptr, 0)
                       : PQsendQueryParams(conn, k_xid_sql, 0, nullptr, nullptr, nullptr, nullptr, 0)) != 0 &&
      PQpipelineSync(conn) != 0;
  // Statement 0 is the caller's, 1 the id.
  auto replies =
      finish_pipelined(*this, queued, op, 0, "the reply to a statement and its transaction id was incomplete", until,
                       [&](const PGresult* raw) {
                         if (PQntuples(raw) != 1 || PQnfields(raw) != 1) return;
                         answered = true;
                         if (PQgetisnull(raw, 0, 0) == 0) xid = std::strtoull(PQgetvalue(raw, 0, 0), nullptr, 10);
                       });
  if (replies.failure) {
    answered = false;
    xid.reset();
  }
  return conclude(std::move(replies.ok), std::move(replies.failure), op);
}

}  // namespace internal

using internal::connection_impl;

std::string_view to_string(pooler_mode m) noexcept {
  switch (m) {
    case pooler_mode::none: return "none";
    case pooler_mode::session: return "session";
    case pooler_mode::transaction: return "transaction";
    case pooler_mode::statement: return "statement";
  }
  return "unknown";
}

std::optional<pooler_mode> parse_pooler_mode(std::string_view text) noexcept {
  for (auto m : {pooler_mode::none, pooler_mode::session, pooler_mode::transaction, pooler_mode::statement}) {
    if (text == to_string(m)) return m;
  }
  return std::nullopt;
}

namespace internal {

void check_dsn_for_pooler(std::string_view dsn, pooler_mode mode, std::string_view dsn_name,
                          std::string_view mode_name) {
  if (mode == pooler_mode::none) return;
  // Startup parameters libpq sends that PgBouncer does not track: it ends the login with
  // "unsupported startup parameter" (or, with ignore_startup_parameters, drops them silently).
  std::string keyword;
  std::string source;
  const std::string text(dsn);
  if (PQconninfoOption* opts = PQconninfoParse(text.c_str(), nullptr)) {
    for (auto* o = opts; o->keyword != nullptr; ++o) {
      const std::string_view k = o->keyword;
      if ((k == "options" || k == "replication") && o->val != nullptr && *o->val != '\0' && keyword.empty()) {
        keyword = k;
        source = fmt::format("{} sets {}=", dsn_name, k);
      }
    }
    PQconninfoFree(opts);
  }
  if (keyword.empty()) {
    for (const auto& [var, param] : {std::pair{"PGOPTIONS", "options"}, std::pair{"PGGEQO", "geqo"}}) {
      const char* v = std::getenv(var);
      if (v != nullptr && *v != '\0') {
        keyword = param;
        source = fmt::format("the environment sets {} (startup parameter {})", var, param);
        break;
      }
    }
  }
  if (keyword.empty()) return;
  throw config_error(fmt::format(
      "{}, a startup parameter PgBouncer rejects (\"unsupported startup parameter: {}\"), and {} = {} says the "
      "connection goes through PgBouncer; remove it and set such settings server-side (ALTER ROLE … SET …) or "
      "per call (statement::timeout())",
      source, keyword, mode_name, to_string(mode)));
}

}  // namespace internal

void connection_options::validate() const {
  using internal::check_range;
  namespace ranges = internal::ranges;
  check_range("connection_options.connect_timeout", connect_timeout, {1, 600000, " ms"});
  check_range("connection_options.statement_timeout", statement_timeout, ranges::statement_timeout);
  check_range("connection_options.query_timeout", query_timeout, {0, 86400000, " ms"}, " (0 none)");
  check_range("connection_options.cancel_wait", cancel_wait, {1, 600000, " ms"});
  check_range("connection_options.cancel_timeout", cancel_timeout, {1, 600000, " ms"});
  check_range("connection_options.statement_cache_capacity", statement_cache_capacity, ranges::statement_cache,
              " (0 off)");
  if (!parse_pooler_mode(to_string(pooler))) {
    internal::out_of_range("connection_options.pooler", fmt::format("{}", static_cast<int>(pooler)),
                           "expected none, session, transaction or statement");
  }
  if (!dsn.empty()) validate_dsn(dsn);
  internal::check_dsn_for_pooler(dsn, pooler, "connection_options.dsn", "connection_options.pooler");
}

std::chrono::milliseconds statement_timeout_backstop(std::chrono::milliseconds statement_timeout) noexcept {
  if (statement_timeout.count() <= 0) return std::chrono::milliseconds{0};
  return statement_timeout + std::chrono::milliseconds{1000};
}

std::string_view to_string(connection_status s) noexcept {
  switch (s) {
    case connection_status::idle: return "idle";
    case connection_status::active: return "active";
    case connection_status::in_transaction: return "in_transaction";
    case connection_status::failed_transaction: return "failed_transaction";
    case connection_status::broken: return "broken";
  }
  return "unknown";
}

connection::connection(std::string_view dsn)
    : connection([&] {
        connection_options o;
        o.dsn = std::string(dsn);
        return o;
      }()) {}

connection::connection(const connection_options& options) : connection((options.validate(), options), validated{}) {}

connection::connection(const connection_options& options, validated) : m_impl(std::make_unique<connection_impl>()) {
  m_impl->connect(options);
  if (options.statement_timeout.count() > 0) set_statement_timeout(options.statement_timeout);
}

connection::~connection() = default;
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;

result connection::execute_refs(std::string_view sql, std::span<const param_ref> params, bool may_prepare) {
  auto& d = *m_impl;
  d.begin_request("execute");
  connection_impl::check_sql(sql);
  connection_impl::check_params(params);
  if (d.shared_sessions()) d.refuse_session_features(sql);
  const auto until = d.make_deadline();
  // Behind a transaction pooler the statement_timeout rides with the statement, in the same
  // round trip and implicit transaction (an explicit one got SET LOCAL after its BEGIN).
  const bool carry_timeout = d.shared_sessions() && d.session_statement_timeout.count() > 0 && !d.last.in_transaction &&
                             !internal::is_transaction_control(sql) && !internal::refuses_transaction_block(sql);
  if (params.empty() && may_prepare) {
    // Simple protocol: no parameters, several statements allowed.
    if (carry_timeout) {
      // One Query message of several statements is one implicit transaction.
      d.sql_buf = fmt::format("SET LOCAL statement_timeout = {}; ", d.session_statement_timeout.count());
      d.sql_buf.append(sql);
      return internal::send_and_collect(d, "execute", internal::mentions_commit(sql, false), until,
                                        [&] { return PQsendQuery(d.conn, d.sql_buf.c_str()); });
    }
    d.sql_buf.assign(sql);
    return internal::send_and_collect(d, "execute", internal::mentions_commit(sql, false), until,
                                      [&] { return PQsendQuery(d.conn, d.sql_buf.c_str()); });
  }
  const internal::param_arrays arrays(params);
  if (may_prepare && d.options.statement_cache_capacity > 0) {
    for (int attempt = 0;; ++attempt) {
      const auto& st = d.prepared(sql, arrays, until);
      try {
        return internal::send_and_collect(d, "execute", internal::mentions_commit(sql, true), until, [&] {
          return PQsendQueryPrepared(d.conn, st.name.c_str(), arrays.size(), arrays.values(), arrays.lengths(),
                                     arrays.formats(), 0);
        });
      } catch (const sql_error& e) {
        // The server forgot our statement (DISCARD ALL, a pooler switched sessions):
        // nothing ran, so prepare again once — unless a transaction block is now aborted.
        if (e.sqlstate() != sqlstates::invalid_sql_statement_name || attempt > 0 || d.last.in_transaction) throw;
        d.cache.clear();
        d.stats.size = 0;
        d.begin_request("execute");
      }
    }
  }
  internal::check_param_count(internal::placeholder_count(sql), params.size());
  if (carry_timeout) return d.send_with_timeout(sql, arrays, internal::mentions_commit(sql, true), until);
  d.sql_buf.assign(sql);
  return internal::send_and_collect(d, "execute", internal::mentions_commit(sql, true), until, [&] {
    return PQsendQueryParams(d.conn, d.sql_buf.c_str(), arrays.size(), arrays.types(), arrays.values(),
                             arrays.lengths(), arrays.formats(), 0);
  });
}

result connection::execute(std::string_view sql, const param_list& params) {
  const auto refs = params.refs();
  return execute_refs(sql, refs, true);
}

void connection::prepare(std::string_view sql, const param_list& params) {
  auto& d = *m_impl;
  connection_impl::check_sql(sql);
  if (d.options.statement_cache_capacity == 0) return;
  const auto refs = params.refs();
  const internal::param_arrays arrays(refs);
  if (d.find_prepared(sql, arrays) != nullptr) return;
  d.begin_request("prepare");
  (void)d.prepared(sql, arrays, d.make_deadline());
}

transaction connection::begin() { return transaction(*this); }
transaction connection::begin(const transaction_options& options) { return transaction(*this, options); }

void connection::ping() {
  auto& d = *m_impl;
  d.begin_request("ping");
  const auto until = d.make_deadline();
  (void)internal::send_and_collect(d, "ping", false, until, [&] { return PQsendQuery(d.conn, ""); });
}

bool connection::cancel() noexcept {
  if (!m_impl) return false;
  return m_impl->send_cancel();
}

bool connection::check_alive() noexcept {
  if (!m_impl || m_impl->conn == nullptr || PQstatus(m_impl->conn) != CONNECTION_OK) return false;
  if (m_impl->in_pipeline || m_impl->in_copy) return true;
  PGconn* conn = m_impl->conn;
  for (int round = 0; round < 4; ++round) {
    // One non-blocking peek: nothing pending means the session is up.
    char byte = 0;
    const ssize_t n = ::recv(PQsocket(conn), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;  // the server closed the connection
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    // Input on an idle session: usually the server's FATAL message before it hangs up.
    // Let libpq read and parse it (an error when idle goes to the notice processor).
    if (!PQconsumeInput(conn)) return false;
    (void)PQisBusy(conn);
    if (PQstatus(conn) != CONNECTION_OK) return false;
  }
  return PQstatus(conn) == CONNECTION_OK;
}

connection_status connection::status() const noexcept {
  if (!m_impl || m_impl->conn == nullptr || PQstatus(m_impl->conn) != CONNECTION_OK) return connection_status::broken;
  if (m_impl->in_pipeline || m_impl->in_copy || PQpipelineStatus(m_impl->conn) != PQ_PIPELINE_OFF) {
    return connection_status::active;
  }
  switch (PQtransactionStatus(m_impl->conn)) {
    case PQTRANS_IDLE: return connection_status::idle;
    case PQTRANS_INTRANS: return connection_status::in_transaction;
    case PQTRANS_INERROR: return connection_status::failed_transaction;
    case PQTRANS_ACTIVE: return connection_status::active;
    case PQTRANS_UNKNOWN: return connection_status::broken;
  }
  return connection_status::broken;
}

const request_facts& connection::last_request() const noexcept { return m_impl->last; }
int connection::server_version() const noexcept { return m_impl->conn ? PQserverVersion(m_impl->conn) : 0; }
int connection::backend_pid() const noexcept { return m_impl->conn ? PQbackendPID(m_impl->conn) : 0; }
const connection_options& connection::options() const noexcept { return m_impl->options; }
statement_cache_stats connection::cache_stats() const noexcept { return m_impl->stats; }
const std::string& connection::pooler_suspicion() const noexcept { return m_impl->pooler_suspicion; }

void connection::clear_statement_cache() noexcept {
  m_impl->cache.clear();
  m_impl->to_deallocate.clear();
  m_impl->stats.size = 0;
}

void connection::set_statement_timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) timeout = std::chrono::milliseconds{0};
  if (timeout == m_impl->session_statement_timeout) return;
  if (m_impl->shared_sessions()) {
    // The session belongs to the pooler: the value goes with each statement instead.
    m_impl->session_statement_timeout = timeout;
    return;
  }
  try {
    (void)execute(fmt::format("SET statement_timeout = {}", timeout.count()));
  } catch (const error& e) {
    // A SET changes no data: whatever happened to it, the caller's own request was not sent.
    if (e.kind() == failure_kind::timeout) {
      throw internal::error_builder::from(e)
          .outcome(outcome::not_sent)
          .operation("set statement_timeout")
          .broken(e.poisons_connection())
          .build<timeout_error>(e.what());
    }
    if (!e.poisons_connection()) throw;
    throw internal::error_builder(failure_kind::connection_lost, outcome::not_sent)
        .fields(e.server())
        .operation("set statement_timeout")
        .broken()
        .build<connection_error>(e.what());
  }
  m_impl->session_statement_timeout = timeout;
}

std::chrono::milliseconds connection::statement_timeout() const noexcept { return m_impl->session_statement_timeout; }

void connection::set_query_timeout(std::chrono::milliseconds timeout) noexcept {
  m_impl->options.query_timeout = timeout;
}
void connection::set_deadline(std::optional<std::chrono::steady_clock::time_point> until) noexcept {
  m_impl->hard_deadline = until;
}
std::optional<std::chrono::steady_clock::time_point> connection::deadline() const noexcept {
  return m_impl->hard_deadline;
}
std::uint64_t connection::request_count() const noexcept { return m_impl->requests; }
void connection::close() noexcept { m_impl->close(); }
pg_conn* connection::native_handle() const noexcept { return m_impl->conn; }

}  // namespace steadypg
