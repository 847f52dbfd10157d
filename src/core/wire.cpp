// What goes on the wire and back: the checks of what libpq can carry, parameters in its
// layout, and the socket loop (waiting, flushing, reading results and collecting a request's
// results into one result or one error).

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "connection_impl.hpp"
#include "error_builder.hpp"

namespace steadypg::internal {

namespace {

long long remaining_ms(const deadline& until) {
  if (!until) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*until - clock::now()).count();
  return std::max<long long>(left, 0);
}

}  // namespace

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

void check_param_count(int expected, std::size_t given) {
  if (static_cast<std::size_t>(expected) != given) {
    throw usage_error(
        fmt::format("wrong number of parameters: the statement uses {} ($1…${}), {} given", expected, expected, given));
  }
}

void connection_impl::check_sql(std::string_view sql, std::string_view what) {
  const auto nul = sql.find('\0');
  if (nul == std::string_view::npos) return;
  throw usage_error(
      fmt::format("{} contains a NUL byte at offset {}; nothing was sent (the server would have run only "
                  "the text before it)",
                  what, nul));
}

void connection_impl::check_params(std::span<const param_ref> params) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (p.format == 0 && p.data != nullptr && std::memchr(p.data, 0, static_cast<std::size_t>(p.length))) {
      throw usage_error(
          fmt::format("parameter ${} contains a NUL byte, which PostgreSQL text cannot hold; "
                      "send binary data as steadypg::bytes (bytea)",
                      i + 1));
    }
  }
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
  return conclude(std::move(ok), std::move(failure), op);
}

result connection_impl::conclude(result_ptr ok, result_ptr failure, std::string_view op) {
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

void connection_impl::run_internal(const char* sql, const deadline& until, std::string_view op) {
  if (!PQsendQuery(conn, sql)) send_failed(op);
  flush(until, op);
  (void)collect(op, until);
}

}  // namespace steadypg::internal
