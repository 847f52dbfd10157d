#include "steadypg/connection.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <fmt/format.h>

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

}  // namespace internal

using internal::connection_impl;

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
  if (!dsn.empty()) validate_dsn(dsn);
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
  const auto until = d.make_deadline();
  if (params.empty() && may_prepare) {
    // Simple protocol: no parameters, several statements allowed.
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

void connection::clear_statement_cache() noexcept {
  m_impl->cache.clear();
  m_impl->to_deallocate.clear();
  m_impl->stats.size = 0;
}

void connection::set_statement_timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) timeout = std::chrono::milliseconds{0};
  if (timeout == m_impl->session_statement_timeout) return;
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
