#include "steadypg/copy.hpp"

#include <fmt/format.h>

#include <cstring>

#include "connection_impl.hpp"

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

}  // namespace

copy_in::copy_in(connection& conn, std::string_view table, std::vector<std::string> columns, copy_format format,
                 bool header)
    : m_conn(&conn), m_format(format) {
  auto& d = *conn.m_impl;
  d.begin_request("copy");
  internal::connection_impl::check_sql(table, "the COPY table name");
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
  sql += " FROM STDIN";
  if (format == copy_format::csv) sql += header ? " WITH (FORMAT csv, HEADER true)" : " WITH (FORMAT csv)";
  else if (header) sql += " WITH (FORMAT text, HEADER true)";
  const auto until = d.make_deadline();
  if (!PQsendQuery(d.conn, sql.c_str())) d.send_failed("copy");
  d.last.bytes_sent = true;
  d.flush(until, "copy");
  bool timed_out = false;
  PGresult* raw = d.next_result(until, timed_out);
  if (timed_out) d.handle_timeout("copy");
  internal::result_ptr r(raw);
  if (raw != nullptr && PQresultStatus(raw) == PGRES_COPY_IN) {
    d.in_copy = true;
    m_active = true;
    return;
  }
  // An error (no such table, bad column): drain the rest and throw it.
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
    throw usage_error(fmt::format("COPY row {}, field {} contains a NUL byte, which PostgreSQL text cannot hold; the "
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
    throw usage_error(fmt::format("COPY data contains a NUL byte (at offset {} of this write); nothing of it was sent",
                                  nul));
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

}  // namespace steadypg
