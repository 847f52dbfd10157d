#include "steadypg/copy.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstring>

#include "connection_impl.hpp"
#include "error_builder.hpp"

namespace steadypg {
namespace {

constexpr std::size_t flush_threshold = 64 * 1024;

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

void append_hex_bytea(std::string& out, const param_ref& v, std::string_view prefix) {
  static constexpr char hex[] = "0123456789abcdef";
  out.append(prefix);
  for (int i = 0; i < v.length; ++i) {
    const auto b = static_cast<unsigned char>(v.data[i]);
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 0xf]);
  }
}

// "COPY table (col, …)", the column names quoted; usage_error for an empty table name or a
// name with a NUL byte, before anything is sent.
std::string copy_table(std::string_view table, const std::vector<std::string>& columns) {
  internal::connection_impl::check_sql(table, "the COPY table name");
  if (table.empty()) throw usage_error("the COPY table name is empty");
  for (const auto& c : columns) internal::connection_impl::check_sql(c, "a COPY column name");
  std::string sql = fmt::format("COPY {}", table);
  if (!columns.empty()) {
    sql += " (";
    for (std::size_t i = 0; i < columns.size(); ++i) {
      if (i) sql += ", ";
      sql += quote_identifier(columns[i]);
    }
    sql += ")";
  }
  return sql;
}

// The WITH clause of a COPY in either direction ("" for text without a header).
std::string copy_with(copy_format format, bool header) {
  if (format == copy_format::csv) return header ? " WITH (FORMAT csv, HEADER true)" : " WITH (FORMAT csv)";
  return header ? " WITH (FORMAT text, HEADER true)" : "";
}

// Sends a COPY statement and returns the server's first answer: the COPY state on success,
// else the error that says why not (null when the connection went). A deadline passed before
// the answer cancels and drains (timeout_error); nothing is in COPY mode yet.
internal::result_ptr start_copy(internal::connection_impl& d, const std::string& sql, const internal::deadline& until) {
  d.begin_request("copy");
  if (!PQsendQuery(d.conn, sql.c_str())) d.send_failed("copy");
  d.last.bytes_sent = true;
  d.flush(until, "copy");
  bool timed_out = false;
  internal::result_ptr r(d.next_result(until, timed_out));
  if (timed_out) d.handle_timeout("copy");
  return r;
}

}  // namespace

copy_in::copy_in(connection& conn, std::string_view table, std::vector<std::string> columns, copy_format format,
                 bool header)
    : m_conn(&conn), m_format(format) {
  // A bad name is a usage_error before any request.
  const std::string sql = copy_table(table, columns) + " FROM STDIN" + copy_with(format, header);
  auto& d = *conn.m_impl;
  const auto until = d.make_deadline();
  internal::result_ptr r = start_copy(d, sql, until);
  PGresult* raw = r.get();
  if (raw != nullptr && PQresultStatus(raw) == PGRES_COPY_IN) {
    d.in_copy = true;
    m_active = true;
    return;
  }
  // An error (no such table, bad column): drain the rest and throw it.
  bool timed_out = false;
  while (PGresult* extra = d.next_result(until, timed_out)) PQclear(extra);
  const bool broken = PQstatus(d.conn) != CONNECTION_OK;
  if (raw == nullptr) internal::throw_connection_lost(internal::last_error_message(d.conn), "copy", d.last);
  auto fields = internal::read_error_fields(raw);
  if (broken && fields.sqlstate.empty()) internal::throw_connection_lost(std::move(fields.message), "copy", d.last);
  internal::throw_server_error(std::move(fields), "copy", d.last, broken);
}

copy_in::~copy_in() {
  if (!m_active) return;
  try {
    abort();
  } catch (...) {
    m_conn->close();
  }
}

void copy_in::begin_row() {
  if (!m_active) throw usage_error("the COPY is finished");
  m_first_field = true;
  m_field = 0;
  m_row_start = m_buffer.size();
}

void copy_in::append_field(const param_ref& value) {
  ++m_field;
  if (value.data != nullptr && value.format == 0 && value.length > 0 &&
      std::memchr(value.data, 0, static_cast<std::size_t>(value.length)) != nullptr) {
    // The row is not sent: what it had put in the buffer goes, the COPY stays usable.
    m_buffer.resize(m_row_start);
    throw usage_error(
        fmt::format("COPY row {}, field {} contains a NUL byte, which PostgreSQL text cannot hold; the "
                    "row was not sent (send binary data as steadypg::bytes)",
                    m_rows + 1, m_field));
  }
  if (!m_first_field) m_buffer.push_back(m_format == copy_format::csv ? ',' : '\t');
  m_first_field = false;
  if (value.data == nullptr) {
    if (m_format == copy_format::text) m_buffer.append("\\N");
    return;  // CSV: an unquoted empty field is NULL
  }
  if (m_format == copy_format::text) {
    if (value.format == 1) {
      append_hex_bytea(m_buffer, value, "\\\\x");
      return;
    }
    for (int i = 0; i < value.length; ++i) {
      const char c = value.data[i];
      switch (c) {
        case '\\': m_buffer.append("\\\\"); break;
        case '\t': m_buffer.append("\\t"); break;
        case '\n': m_buffer.append("\\n"); break;
        case '\r': m_buffer.append("\\r"); break;
        default: m_buffer.push_back(c);
      }
    }
    return;
  }
  // CSV: always quote, so that an empty string differs from NULL.
  m_buffer.push_back('"');
  if (value.format == 1) {
    append_hex_bytea(m_buffer, value, "\\x");
  } else {
    for (int i = 0; i < value.length; ++i) {
      if (value.data[i] == '"') m_buffer.push_back('"');
      m_buffer.push_back(value.data[i]);
    }
  }
  m_buffer.push_back('"');
}

void copy_in::end_row() {
  m_buffer.push_back('\n');
  ++m_rows;
  if (m_buffer.size() >= flush_threshold) flush_buffer();
  if (m_progress && m_rows % m_progress_every == 0) m_progress(m_rows);
}

void copy_in::write_row_refs(std::span<const param_ref> fields) {
  begin_row();
  for (const auto& f : fields) append_field(f);
  end_row();
}

void copy_in::write_raw(std::string_view data) {
  if (!m_active) throw usage_error("the COPY is finished");
  if (const auto nul = data.find('\0'); nul != std::string_view::npos) {
    throw usage_error(
        fmt::format("COPY data contains a NUL byte (at offset {} of this write); nothing of it was sent", nul));
  }
  m_buffer.append(data);
  if (m_buffer.size() >= flush_threshold) flush_buffer();
}

void copy_in::flush_buffer() {
  auto& d = *m_conn->m_impl;
  const auto until = d.make_deadline();
  std::size_t offset = 0;
  while (offset < m_buffer.size()) {
    const std::size_t chunk = std::min<std::size_t>(m_buffer.size() - offset, 1 << 20);
    const int rc = PQputCopyData(d.conn, m_buffer.data() + offset, static_cast<int>(chunk));
    if (rc < 0) {
      m_active = false;
      d.in_copy = false;
      internal::throw_connection_lost(internal::last_error_message(d.conn), "copy", d.last);
    }
    if (rc == 0) {
      if (!d.wait_socket(true, true, until)) d.handle_timeout("copy", false);
      (void)PQconsumeInput(d.conn);
      continue;
    }
    offset += chunk;
  }
  m_bytes_sent += m_buffer.size();
  m_buffer.clear();
  d.flush(until, "copy");
}

std::uint64_t copy_in::finish() {
  if (!m_active) throw usage_error("the COPY is finished");
  auto& d = *m_conn->m_impl;
  flush_buffer();
  const auto until = d.make_deadline();
  int rc;
  while ((rc = PQputCopyEnd(d.conn, nullptr)) == 0) {
    if (!d.wait_socket(false, true, until)) d.handle_timeout("copy", false);
  }
  m_active = false;
  d.in_copy = false;
  if (rc < 0) internal::throw_connection_lost(internal::last_error_message(d.conn), "copy", d.last);
  d.flush(until, "copy");
  return d.collect("copy", until).rows_affected();
}

void copy_in::abort(std::string_view reason) {
  if (!m_active) return;
  auto& d = *m_conn->m_impl;
  m_buffer.clear();
  const std::string why(reason);
  const auto until = d.make_deadline();
  int rc;
  while ((rc = PQputCopyEnd(d.conn, why.c_str())) == 0) {
    if (!d.wait_socket(false, true, until)) d.handle_timeout("copy", false);
  }
  m_active = false;
  d.in_copy = false;
  if (rc < 0) internal::throw_connection_lost(internal::last_error_message(d.conn), "copy", d.last);
  d.flush(until, "copy");
  try {
    (void)d.collect("copy", until);
  } catch (const query_canceled&) {
    // Expected: the server reports the aborted COPY as 57014.
  }
}

// ---- COPY … TO STDOUT ----

namespace {

// Errors of a COPY out. Before any data was handed out they follow the usual rules (a read is
// safe to run again while the caller has nothing); after, `forced` is outcome::fatal, so that
// no retry layer restarts an export whose beginning the caller already has.
[[noreturn]] void raise_copy_error(server_error_fields f, bool broken, const request_facts& facts,
                                   std::optional<outcome> forced) {
  if (!forced) internal::throw_server_error(std::move(f), "copy", facts, broken);
  // A forced outcome is fatal: never indeterminate_commit.
  internal::raise_server_error(std::move(f), "copy", *forced, broken, false);
}

// A session-ending error: FATAL or PANIC, admin shutdown (57P…) or a connection failure (08…).
bool ends_session(const PGresult* r) {
  const char* sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (sev != nullptr && (std::strcmp(sev, "FATAL") == 0 || std::strcmp(sev, "PANIC") == 0)) return true;
  if (state != nullptr && (std::strncmp(state, "57P", 3) == 0 || std::strncmp(state, "08", 2) == 0)) return true;
  return false;
}

std::string_view trim_query(std::string_view sql) {
  while (!sql.empty() &&
         (sql.back() == ';' || sql.back() == ' ' || sql.back() == '\t' || sql.back() == '\n' || sql.back() == '\r')) {
    sql.remove_suffix(1);
  }
  return sql;
}

}  // namespace

copy_source copy_source::table(std::string name, std::vector<std::string> columns) {
  return copy_source(std::move(name), std::move(columns), false);
}

copy_source copy_source::query(std::string sql) {
  std::string text(trim_query(sql));
  return copy_source(std::move(text), {}, true);
}

std::string copy_source::statement(const copy_options& options) const {
  std::string sql;
  if (m_query) {
    internal::connection_impl::check_sql(m_text, "the COPY query");
    if (m_text.empty()) throw usage_error("the COPY query is empty");
    // The newline ends a trailing -- comment before the closing parenthesis.
    sql = fmt::format("COPY ({}\n) TO STDOUT", m_text);
  } else {
    sql = copy_table(m_text, m_columns) + " TO STDOUT";
  }
  return sql + copy_with(options.format, options.header);
}

copy_out::copy_out(connection& conn, const copy_source& source, const copy_options& options) : m_conn(&conn) {
  const std::string sql = source.statement(options);  // a NUL byte: usage_error before any request
  auto& d = *conn.m_impl;
  const auto until = d.make_deadline();
  internal::result_ptr r = start_copy(d, sql, until);
  PGresult* raw = r.get();
  if (raw != nullptr && PQresultStatus(raw) == PGRES_COPY_OUT) {
    d.in_copy = true;
    m_active = true;
    return;
  }
  // An error (no such table, bad query): drain the rest and throw it.
  bool timed_out = false;
  for (int guard = 0; guard < 16; ++guard) {
    PGresult* extra = d.next_result(until, timed_out);
    if (extra == nullptr) break;
    PQclear(extra);
  }
  bool broken = PQstatus(d.conn) != CONNECTION_OK;
  if (raw == nullptr) {
    d.close();
    internal::throw_connection_lost(internal::last_error_message(d.conn), "copy", d.last);
  }
  if (!broken && ends_session(raw)) broken = true;
  if (broken) d.close();
  auto fields = internal::read_error_fields(raw);
  if (broken && fields.sqlstate.empty()) internal::throw_connection_lost(std::move(fields.message), "copy", d.last);
  raise_copy_error(std::move(fields), broken, d.last, std::nullopt);
}

copy_out::~copy_out() { abort(); }

void copy_out::release_chunk() noexcept {
  if (m_chunk != nullptr) PQfreemem(m_chunk);
  m_chunk = nullptr;
}

void copy_out::lost(std::string message) {
  auto& d = *m_conn->m_impl;
  m_active = false;
  d.close();
  if (!m_delivered) internal::throw_connection_lost(std::move(message), "copy", d.last);
  throw internal::error_builder(failure_kind::connection_lost, outcome::fatal)
      .operation("copy")
      .broken()
      .build<connection_error>(std::move(message));
}

std::optional<std::string_view> copy_out::next() {
  release_chunk();
  if (!m_active) return std::nullopt;
  auto& d = *m_conn->m_impl;
  bool read_first = true;  // under a steady stream the data is already there: read before poll()
  while (true) {
    char* buf = nullptr;
    const int rc = PQgetCopyData(d.conn, &buf, 1);
    if (rc > 0) {
      m_chunk = buf;
      m_bytes += static_cast<std::uint64_t>(rc);
      m_delivered = true;
      return std::string_view(buf, static_cast<std::size_t>(rc));
    }
    if (rc == 0) {
      if (!read_first) {
        if (!d.wait_socket(true, false, d.make_deadline())) {
          m_active = false;
          try {
            d.handle_timeout("copy", false);  // in COPY mode: cancel and close, never drain
          } catch (const timeout_error& e) {
            if (!m_delivered) throw;
            throw internal::error_builder::from(e)
                .outcome(outcome::fatal)
                .operation("copy")
                .broken()
                .build<timeout_error>(e.what());
          }
        }
      }
      read_first = false;
      if (!PQconsumeInput(d.conn)) {
        // The session is gone; libpq turns what it knows into an error result.
        finish_stream();
        lost(internal::last_error_message(d.conn));
      }
      continue;
    }
    // -1: the end (or an error the server sent instead of the rest); -2: a failure.
    finish_stream();
    return std::nullopt;
  }
}

void copy_out::finish_stream() {
  auto& d = *m_conn->m_impl;
  m_active = false;
  d.in_copy = false;
  internal::result_ptr ok, failure;
  for (int guard = 0; guard < 16; ++guard) {
    bool timed_out = false;
    PGresult* raw = d.next_result(d.make_deadline(), timed_out);
    if (timed_out) {
      try {
        d.handle_timeout("copy", false);
      } catch (const timeout_error& e) {
        if (!m_delivered) throw;
        throw internal::error_builder::from(e)
            .outcome(outcome::fatal)
            .operation("copy")
            .broken()
            .build<timeout_error>(e.what());
      }
    }
    if (raw == nullptr) break;
    internal::result_ptr r(raw);
    const auto st = PQresultStatus(raw);
    if (st == PGRES_COMMAND_OK) {
      if (!failure) ok = std::move(r);
    } else if (!failure) {
      failure = std::move(r);
      // Still in COPY mode (libpq says so by handing out COPY_OUT again): cannot recover.
      if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) break;
    }
  }
  bool broken = PQstatus(d.conn) != CONNECTION_OK;
  if (failure) {
    const auto st = PQresultStatus(failure.get());
    if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) broken = true;
    if (ends_session(failure.get())) broken = true;
    auto fields = internal::read_error_fields(failure.get());
    if (broken) d.close();  // a session the server is ending must not go back to a pool
    if (broken && fields.sqlstate.empty()) lost(std::move(fields.message));
    raise_copy_error(std::move(fields), broken, d.last,
                     m_delivered ? std::optional<outcome>(outcome::fatal) : std::nullopt);
  }
  if (broken || !ok) lost(broken ? internal::last_error_message(d.conn) : std::string("COPY ended without a result"));
  const char* tuples = PQcmdTuples(ok.get());
  std::uint64_t n = 0;
  (void)std::from_chars(tuples, tuples + std::strlen(tuples), n);
  m_rows = n;
}

std::uint64_t copy_out::read_all(const std::function<void(std::string_view)>& sink) {
  while (auto chunk = next()) {
    try {
      sink(*chunk);
    } catch (...) {
      abort();
      throw;
    }
  }
  return m_rows;
}

void copy_out::abort() noexcept {
  release_chunk();
  if (!m_active) return;
  m_active = false;
  auto& d = *m_conn->m_impl;
  if (d.conn == nullptr || PQstatus(d.conn) != CONNECTION_OK || !d.send_cancel()) {
    d.close();
    return;
  }
  // The server stops at the cancel; discard what it sent until then, within cancel_wait.
  const internal::deadline grace = internal::clock::now() + d.options.cancel_wait;
  while (true) {
    char* buf = nullptr;
    const int rc = PQgetCopyData(d.conn, &buf, 1);
    if (rc > 0) {
      PQfreemem(buf);
      continue;
    }
    if (rc < 0) break;
    if (!d.wait_socket(true, false, grace) || !PQconsumeInput(d.conn)) {
      d.close();
      return;
    }
  }
  d.in_copy = false;
  for (int guard = 0;; ++guard) {
    bool timed_out = false;
    PGresult* raw = d.next_result(grace, timed_out);
    if (timed_out || guard > 16) {
      d.close();
      return;
    }
    if (raw == nullptr) break;
    internal::result_ptr r(raw);
    const auto st = PQresultStatus(raw);
    // The COPY's end (it finished before the cancel) or 57014 (cancelled) are expected.
    const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
    const bool expected = st == PGRES_COMMAND_OK || (st == PGRES_FATAL_ERROR && !ends_session(raw) &&
                                                     state != nullptr && sqlstates::query_canceled == state);
    if (!expected) {
      d.close();
      return;
    }
  }
  if (PQstatus(d.conn) != CONNECTION_OK || PQtransactionStatus(d.conn) == PQTRANS_ACTIVE) d.close();
}

}  // namespace steadypg
