#include "steadypg/connection.hpp"

#include <poll.h>
#include <condition_variable>
#include <memory>
#include <thread>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fmt/format.h>

#include "check.hpp"
#include "connection_impl.hpp"
#include "error_builder.hpp"
#include "steadypg/dsn.hpp"
#include "steadypg/transaction.hpp"

namespace steadypg {
namespace internal {

namespace {

long long remaining_ms(const deadline& until) {
  if (!until) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*until - clock::now()).count();
  return std::max<long long>(left, 0);
}

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

void check_param_count(int expected, std::size_t given) {
  if (static_cast<std::size_t>(expected) != given) {
    throw usage_error(fmt::format("wrong number of parameters: the statement uses {} ($1…${}), {} given", expected,
                                  expected, given));
  }
}

std::string last_error_message(PGconn* conn) {
  // libpq's messages span lines ("…failed: Connection refused\n\tIs the server running…"):
  // fold every run of whitespace into one space.
  const std::string_view raw = conn ? PQerrorMessage(conn) : "connection is closed";
  std::string msg;
  msg.reserve(raw.size());
  bool space = false;
  for (const char c : raw) {
    if (c == '\n' || c == '\t' || c == ' ' || c == '\r') {
      space = true;
      continue;
    }
    if (space && !msg.empty()) msg.push_back(' ');
    space = false;
    msg.push_back(c);
  }
  return msg;
}

param_arrays::param_arrays(std::span<const param_ref> params) : m_n(static_cast<int>(params.size())) {
  if (params.size() <= inline_count) {
    m_values = m_values_inline.data();
    m_lengths = m_lengths_inline.data();
    m_formats = m_formats_inline.data();
    m_types = m_types_inline.data();
  } else {
    m_values_heap.resize(params.size());
    m_lengths_heap.resize(params.size());
    m_formats_heap.resize(params.size());
    m_types_heap.resize(params.size());
    m_values = m_values_heap.data();
    m_lengths = m_lengths_heap.data();
    m_formats = m_formats_heap.data();
    m_types = m_types_heap.data();
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    m_values[i] = params[i].data;
    m_lengths[i] = params[i].length;
    m_formats[i] = params[i].format;
    m_types[i] = params[i].type;
  }
}

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
  if (in_copy) throw usage_error("the connection is in COPY mode; finish or abort the steadypg::copy_in or copy_out first");
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

bool connection_impl::wait_socket(bool for_read, bool for_write, const deadline& until) {
  pollfd pfd{};
  pfd.fd = PQsocket(conn);
  if (pfd.fd < 0) return true;  // libpq reports the broken socket on the next call
  pfd.events = static_cast<short>((for_read ? POLLIN : 0) | (for_write ? POLLOUT : 0));
  while (true) {
    const long long ms = remaining_ms(until);
    const int rc = ::poll(&pfd, 1, ms < 0 ? -1 : static_cast<int>(std::min<long long>(ms, 1 << 30)));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let libpq surface the error
  }
}

void connection_impl::flush(const deadline& until, std::string_view op) {
  while (true) {
    const int rc = PQflush(conn);
    if (rc == 0) return;
    if (rc < 0) throw_connection_lost(last_error_message(conn), op, last);
    // In pipeline or COPY mode the results in flight belong to others: close, never drain.
    if (!wait_socket(true, true, until)) handle_timeout(op, !in_pipeline && !in_copy);
    // Read what the server sent meanwhile so that it can keep accepting our data.
    if (!PQconsumeInput(conn)) throw_connection_lost(last_error_message(conn), op, last);
  }
}

void connection_impl::send_failed(std::string_view op) {
  // The request was rejected before or while writing: conservatively "sent" unless
  // the connection was already unusable (begin_request checked it was fine).
  if (PQstatus(conn) != CONNECTION_OK) throw_connection_lost(last_error_message(conn), op, last);
  throw usage_error(fmt::format("{} could not be sent: {}", op, last_error_message(conn)));
}

PGresult* connection_impl::next_result(const deadline& until, bool& timed_out) {
  timed_out = false;
  if (PQisBusy(conn)) {
    if (eager_skip > 0) {
      --eager_skip;
    } else {
      (void)PQconsumeInput(conn);  // non-blocking; a failure shows in PQgetResult below
      if (PQisBusy(conn)) {
        if (++eager_misses >= 8) {
          eager_misses = 0;
          eager_skip = 64;
        }
      } else {
        eager_misses = 0;
      }
    }
  }
  while (PQisBusy(conn)) {
    if (!wait_socket(true, false, until)) {
      timed_out = true;
      return nullptr;
    }
    if (!PQconsumeInput(conn)) break;  // PQgetResult reports the failure
  }
  return PQgetResult(conn);
}

result connection_impl::collect(std::string_view op, const deadline& until) {
  result_ptr ok;
  result_ptr failure;
  for (int guard = 0;; ++guard) {
    bool timed_out = false;
    PGresult* raw = next_result(until, timed_out);
    if (timed_out) handle_timeout(op);
    if (raw == nullptr) break;
    result_ptr r(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY:
      case PGRES_SINGLE_TUPLE:
        if (!failure) ok = std::move(r);
        break;
      case PGRES_COPY_IN:
        PQputCopyEnd(conn, "COPY FROM STDIN needs steadypg::copy_in");
        flush(until, op);
        if (!failure) failure.reset(PQmakeEmptyPGresult(conn, PGRES_NONFATAL_ERROR));
        break;
      case PGRES_COPY_OUT: {
        char* buf = nullptr;
        while (PQgetCopyData(conn, &buf, 0) > 0) PQfreemem(buf);
        if (!failure) failure.reset(PQmakeEmptyPGresult(conn, PGRES_NONFATAL_ERROR));
        break;
      }
      default:
        if (!failure) failure = std::move(r);
        break;
    }
    if (PQstatus(conn) == CONNECTION_BAD && guard > 16) break;
  }
  const bool broken = PQstatus(conn) != CONNECTION_OK;
  if (failure) {
    if (PQresultStatus(failure.get()) == PGRES_NONFATAL_ERROR) {
      throw usage_error(
          "COPY cannot run through execute(); use steadypg::copy_in for COPY FROM STDIN and steadypg::copy_out for "
          "COPY TO STDOUT");
    }
    auto fields = read_error_fields(failure.get());
    if (broken && fields.sqlstate.empty()) throw_connection_lost(std::move(fields.message), op, last);
    throw_server_error(std::move(fields), op, last, broken);
  }
  if (broken) throw_connection_lost(last_error_message(conn), op, last);
  return result(ok.release());
}

namespace {

// PQcancel (libpq 15) blocks without a bound while it connects and waits for the server to
// hang up. Run it on a helper thread and stop waiting at the deadline; the helper owns its
// own PGcancel copy, so it may outlive the connection. At most a few run at once per
// process: beyond that no cancel is sent and the caller drops the connection instead.
std::atomic<int> g_cancels_in_flight{0};
constexpr int k_max_cancels_in_flight = 8;

struct cancel_job {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
};

bool bounded_cancel(PGcancel* handle, std::chrono::milliseconds timeout) {
  if (handle == nullptr) return false;
  if (g_cancels_in_flight.fetch_add(1) >= k_max_cancels_in_flight) {
    g_cancels_in_flight.fetch_sub(1);
    PQfreeCancel(handle);
    return false;
  }
  auto job = std::make_shared<cancel_job>();
  try {
    std::thread([job, handle] {
      char err[256];
      const bool ok = PQcancel(handle, err, sizeof err) == 1;
      PQfreeCancel(handle);
      g_cancels_in_flight.fetch_sub(1);
      std::lock_guard lk(job->mu);
      job->done = true;
      job->ok = ok;
      job->cv.notify_all();
    }).detach();
  } catch (...) {
    g_cancels_in_flight.fetch_sub(1);
    PQfreeCancel(handle);
    return false;
  }
  std::unique_lock lk(job->mu);
  job->cv.wait_for(lk, timeout, [&] { return job->done; });
  return job->done && job->ok;
}

}  // namespace

bool connection_impl::send_cancel() noexcept {
  PGcancel* copy = nullptr;
  {
    std::lock_guard lock(cancel_mutex);
    if (conn != nullptr) copy = PQgetCancel(conn);
  }
  return bounded_cancel(copy, options.cancel_timeout);
}

void connection_impl::handle_timeout(std::string_view op, bool can_drain) {
  const auto timeout = options.query_timeout;
  const bool cancelled = send_cancel();
  // Drain: the server answers the cancelled statement with 57014 (or its result).
  bool drained = false;
  bool server_cancelled = false;
  if (cancelled && can_drain) {
    const deadline grace = clock::now() + options.cancel_wait;
    drained = true;
    while (true) {
      bool timed_out = false;
      PGresult* raw = next_result(grace, timed_out);
      if (timed_out) {
        drained = false;
        break;
      }
      if (raw == nullptr) break;
      result_ptr r(raw);
      const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
      if (state && sqlstates::query_canceled == state) server_cancelled = true;
      const auto st = PQresultStatus(raw);
      if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        drained = false;
        break;
      }
    }
    if (drained && PQstatus(conn) != CONNECTION_OK) drained = false;
  }
  auto o = classify_outcome("", failure_kind::timeout, last);
  if (server_cancelled && !last.commit_sent) o = outcome::rolled_back;
  const bool at_deadline = hard_deadline && clock::now() >= *hard_deadline;
  std::string msg = fmt::format("{} timed out {}; {}", op,
                                at_deadline || timeout.count() <= 0 ? std::string("at its deadline")
                                                                    : fmt::format("after {} ms", timeout.count()),
                                drained ? "the statement was cancelled and the connection is idle again"
                                        : "the connection could not be recovered and was closed");
  if (!drained) close();
  throw error_builder(failure_kind::timeout, o)
      .operation(op)
      .broken(!drained)
      .cancel_sent(cancelled)
      .build<timeout_error>(std::move(msg));
}

void connection_impl::run_internal(const char* sql, const deadline& until, std::string_view op) {
  if (!PQsendQuery(conn, sql)) send_failed(op);
  flush(until, op);
  (void)collect(op, until);
}

const cached_statement* connection_impl::find_prepared(std::string_view sql, const param_arrays& params) {
  auto it = cache.find(sql);
  if (it == cache.end()) return nullptr;
  const auto& types = it->second.types;
  if (types.size() != static_cast<std::size_t>(params.size()) ||
      !std::equal(types.begin(), types.end(), params.types())) {
    return nullptr;
  }
  it->second.last_used = ++tick;
  ++stats.hits;
  return &it->second;
}

const cached_statement& connection_impl::prepared(std::string_view sql, const param_arrays& params,
                                                  const deadline& until) {
  ++tick;
  auto it = cache.find(sql);
  // The placeholder count is scanned once per cached statement; a mismatch fails here,
  // before anything is sent.
  check_param_count(it != cache.end() ? it->second.param_count : placeholder_count(sql),
                    static_cast<std::size_t>(params.size()));
  if (it != cache.end()) {
    const auto& types = it->second.types;
    if (std::equal(types.begin(), types.end(), params.types(), params.types() + params.size()) &&
        types.size() == static_cast<std::size_t>(params.size())) {
      it->second.last_used = tick;
      ++stats.hits;
      return it->second;
    }
    to_deallocate.push_back(std::move(it->second.name));
    cache.erase(it);
  }
  ++stats.misses;
  if (cache.size() >= options.statement_cache_capacity) {
    auto victim = std::min_element(cache.begin(), cache.end(), [](const auto& a, const auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    to_deallocate.push_back(std::move(victim->second.name));
    cache.erase(victim);
    ++stats.evictions;
  }
  // Deallocating is impossible inside a failed transaction; keep the names for later.
  if (!to_deallocate.empty() && PQtransactionStatus(conn) != PQTRANS_INERROR) {
    std::string sql_text;
    for (const auto& n : to_deallocate) sql_text += fmt::format("DEALLOCATE {};", n);
    to_deallocate.clear();
    run_internal(sql_text.c_str(), until, "deallocate");
  }
  cached_statement entry;
  entry.name = fmt::format("steadypg_{}", ++name_counter);
  entry.types.assign(params.types(), params.types() + params.size());
  entry.param_count = placeholder_count(sql);
  entry.last_used = tick;
  sql_buf.assign(sql);
  if (!PQsendPrepare(conn, entry.name.c_str(), sql_buf.c_str(), params.size(), params.types())) send_failed("prepare");
  try {
    flush(until, "prepare");
    (void)collect("prepare", until);
  } catch (const connection_error& e) {
    // Preparing has no effect on data: a connection lost now means nothing ran.
    throw error_builder(failure_kind::connection_lost, outcome::not_sent)
        .fields(e.server())
        .operation("prepare")
        .broken()
        .build<connection_error>(e.what());
  }
  auto [pos, inserted] = cache.emplace(std::string(sql), std::move(entry));
  stats.size = cache.size();
  return pos->second;
}

void connection_impl::check_sql(std::string_view sql, std::string_view what) {
  const auto nul = sql.find('\0');
  if (nul == std::string_view::npos) return;
  throw usage_error(fmt::format("{} contains a NUL byte at offset {}; nothing was sent (the server would have run only "
                                "the text before it)",
                                what, nul));
}

void connection_impl::check_params(std::span<const param_ref> params) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (p.format == 0 && p.data != nullptr && std::memchr(p.data, 0, static_cast<std::size_t>(p.length))) {
      throw usage_error(fmt::format("parameter ${} contains a NUL byte, which PostgreSQL text cannot hold; "
                                    "send binary data as steadypg::bytes (bytea)",
                                    i + 1));
    }
  }
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

connection::connection(std::string_view dsn) : connection([&] {
  connection_options o;
  o.dsn = std::string(dsn);
  return o;
}()) {}

connection::connection(const connection_options& options) : connection((options.validate(), options), validated{}) {}

connection::connection(const connection_options& options, validated) : m_impl(std::make_unique<connection_impl>()) {
  auto& d = *m_impl;
  d.options = options;
  if (d.options.query_timeout.count() == 0) d.options.query_timeout = statement_timeout_backstop(options.statement_timeout);
  // TCP keepalives and a user timeout, so that a peer that vanished (host down, network cut)
  // is noticed within about 30 s even by a call without a deadline. They come before the
  // DSN, so that a DSN setting any of them wins (libpq: later entries override earlier ones).
  // A service file's settings apply only to keywords not given here: with a service, give none.
  const char* keywords[] = {"keepalives",      "keepalives_idle", "keepalives_interval",       "keepalives_count",
                            "tcp_user_timeout", "dbname",          "fallback_application_name", nullptr};
  const char* values[] = {"1",  "15", "5", "3", "30000", options.dsn.c_str(), options.application_name.c_str(),
                          nullptr};
  const int first = internal::names_a_service(options.dsn) ? 5 : 0;
  const auto until = internal::clock::now() + options.connect_timeout;
  auto fail = [&](std::string msg) {
    server_error_fields f;
    f.sqlstate = internal::infer_connect_sqlstate(msg);
    f.message = msg;
    d.close();
    // A rejected login says nothing about the server's health and repeats the same way;
    // retrying it can lock the account: fatal, one attempt.
    const auto o = is_login_rejection(f.sqlstate) ? outcome::fatal : outcome::not_sent;
    throw internal::error_builder(failure_kind::connect_failed, o)
        .fields(std::move(f))
        .operation("connect")
        .broken()
        .build<connection_error>("could not connect: " + msg);
  };
  d.conn = PQconnectStartParams(keywords + first, values + first, 1);
  if (d.conn == nullptr) fail("out of memory");
  if (PQstatus(d.conn) == CONNECTION_BAD) fail(internal::last_error_message(d.conn));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) fail(internal::last_error_message(d.conn));
    const bool ready = d.wait_socket(st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING, until);
    if (!ready) {
      d.close();
      throw internal::error_builder(failure_kind::connect_failed, outcome::not_sent)
          .operation("connect")
          .broken()
          .build<timeout_error>(fmt::format("could not connect within {} ms", options.connect_timeout.count()));
    }
    st = PQconnectPoll(d.conn);
  }
  if (PQsetnonblocking(d.conn, 1) != 0) fail(internal::last_error_message(d.conn));
  // Server notices (NOTICE, WARNING) are not printed to stderr by a library.
  PQsetNoticeProcessor(d.conn, [](void*, const char*) {}, nullptr);
  d.stats.capacity = options.statement_cache_capacity;
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
    d.last.commit_sent = internal::mentions_commit(sql, false);
    if (!PQsendQuery(d.conn, d.sql_buf.c_str())) d.send_failed("execute");
    d.last.bytes_sent = true;
    d.flush(until, "execute");
    return d.collect("execute", until);
  }
  const internal::param_arrays arrays(params);
  if (may_prepare && d.options.statement_cache_capacity > 0) {
    for (int attempt = 0;; ++attempt) {
      const auto& st = d.prepared(sql, arrays, until);
      d.last.commit_sent = internal::mentions_commit(sql, true);
      if (!PQsendQueryPrepared(d.conn, st.name.c_str(), arrays.size(), arrays.values(), arrays.lengths(),
                               arrays.formats(), 0)) {
        d.send_failed("execute");
      }
      d.last.bytes_sent = true;
      try {
        d.flush(until, "execute");
        return d.collect("execute", until);
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
  d.last.commit_sent = internal::mentions_commit(sql, true);
  if (!PQsendQueryParams(d.conn, d.sql_buf.c_str(), arrays.size(), arrays.types(), arrays.values(), arrays.lengths(),
                         arrays.formats(), 0)) {
    d.send_failed("execute");
  }
  d.last.bytes_sent = true;
  d.flush(until, "execute");
  return d.collect("execute", until);
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
  if (!PQsendQuery(d.conn, "")) d.send_failed("ping");
  d.last.bytes_sent = true;
  d.flush(until, "ping");
  (void)d.collect("ping", until);
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

void connection::set_query_timeout(std::chrono::milliseconds timeout) noexcept { m_impl->options.query_timeout = timeout; }
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
