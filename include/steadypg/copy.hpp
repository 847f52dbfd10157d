#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/connection.hpp"

namespace steadypg {

/// COPY data formats.
enum class copy_format { text, csv };

/// COPY … FROM STDIN on one connection. RAII: if finish() is not called, the destructor
/// aborts the COPY so that nothing is loaded.
///
///     steadypg::copy_in copy{conn, "items", {"id", "name"}};
///     copy.write_row(1, "first");
///     copy.write_row(2, std::optional<std::string>{});   // NULL
///     auto rows = copy.finish();
class copy_in {
 public:
  /// Starts COPY `table` (columns) FROM STDIN. `table` is used verbatim (it may be
  /// schema-qualified, so it must come from trusted code); column names are quoted.
  /// With `header`, the server skips the first line of the data (and counts it in the line
  /// numbers of its errors).
  copy_in(connection& conn, std::string_view table, std::vector<std::string> columns = {},
          copy_format format = copy_format::text, bool header = false);
  ~copy_in();
  copy_in(const copy_in&) = delete;
  copy_in& operator=(const copy_in&) = delete;

  /// Sends one row, escaped for the COPY format (text: tabs, newlines, backslashes; CSV: quotes);
  /// nullopt → NULL.
  template <bindable... Args>
  void write_row(const Args&... args) {
    begin_row();
    (append_field(param_traits<std::remove_cvref_t<Args>>::to_param(args).ref()), ...);
    end_row();
  }
  /// Sends one row of already converted values.
  void write_row_refs(std::span<const param_ref> fields);
  /// Sends raw data in the COPY's format (for example lines of a CSV file).
  void write_raw(std::string_view data);
  /// Ends the COPY and returns the number of rows the server loaded. A bad row surfaces as
  /// sql_error with the server's message (which names the line); nothing is loaded then.
  std::uint64_t finish();
  /// Aborts the COPY: nothing is loaded.
  void abort(std::string_view reason = "aborted by the client");
  /// Rows passed to write_row so far.
  [[nodiscard]] std::uint64_t rows_written() const noexcept { return m_rows; }
  /// Bytes of COPY data sent or buffered so far (rows and raw data).
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return m_bytes_sent + m_buffer.size(); }
  /// Calls `fn(rows_written())` after every `every` rows written with write_row.
  void on_progress(std::function<void(std::uint64_t rows)> fn, std::uint64_t every = 10000) {
    m_progress = std::move(fn);
    m_progress_every = every == 0 ? 1 : every;
  }

 private:
  void begin_row();
  void append_field(const param_ref& value);
  void end_row();
  void flush_buffer();
  connection* m_conn;
  std::string m_buffer;
  std::uint64_t m_rows = 0;
  std::uint64_t m_bytes_sent = 0;
  std::function<void(std::uint64_t)> m_progress;
  std::uint64_t m_progress_every = 10000;
  std::size_t m_row_start = 0;  // where the row being written starts in m_buffer
  int m_field = 0;
  bool m_first_field = true;
  bool m_active = false;
  copy_format m_format;
};

/// How a COPY's data is written: COPY … TO STDOUT (client::copy_to, copy_out) and
/// COPY … FROM STDIN (client::copy_from).
struct copy_options {
  /// text (tab-separated, `\N` for NULL, backslash escapes) or csv (RFC 4180: quoted when
  /// needed, an unquoted empty field is NULL). Default text.
  copy_format format = copy_format::text;
  /// The first line names the columns: written by COPY out, skipped by COPY in. Default false.
  bool header = false;
  /// client::copy_from only: called with the rows written so far after every 10,000 rows
  /// written with write_row (raw data is not counted), from the calling thread. Default none.
  std::function<void(std::uint64_t rows)> progress = {};
};

/// What COPY … TO STDOUT reads: a table (some of its columns, or all) or a query.
class copy_source {
 public:
  /// `COPY name (columns) TO STDOUT`. `name` is used verbatim (it may be schema-qualified, so
  /// it must come from trusted code); column names are quoted; no columns = all, in table order.
  [[nodiscard]] static copy_source table(std::string name, std::vector<std::string> columns = {});
  /// `COPY (sql) TO STDOUT`: any statement that returns rows (SELECT, VALUES, TABLE, … RETURNING).
  /// Trailing semicolons and whitespace are dropped.
  [[nodiscard]] static copy_source query(std::string sql);

  /// True for query(), false for table().
  [[nodiscard]] bool is_query() const noexcept { return m_query; }
  /// The table name or the query text.
  [[nodiscard]] const std::string& text() const noexcept { return m_text; }
  /// The columns of table() (empty for a query).
  [[nodiscard]] const std::vector<std::string>& columns() const noexcept { return m_columns; }
  /// The COPY statement that reads it with `options`. A NUL byte in the name, a column or the
  /// query is a usage_error (libpq would send only the text before it).
  [[nodiscard]] std::string statement(const copy_options& options) const;

 private:
  copy_source(std::string text, std::vector<std::string> columns, bool query)
      : m_text(std::move(text)), m_columns(std::move(columns)), m_query(query) {}
  std::string m_text;
  std::vector<std::string> m_columns;
  bool m_query = false;
};

/// COPY … TO STDOUT on one connection: the data streams in chunks (whole rows, as the server
/// sends them), one at a time, so memory stays bounded however large the result is.
/// RAII: stopped before the end (destructor, abort(), or a sink that throws), it cancels the
/// COPY and drains what was in flight so the connection is idle again, or closes the connection
/// when that does not work within options().cancel_wait; never leaves it in COPY mode.
///
///     steadypg::copy_out out{conn, steadypg::copy_source::table("items", {"id", "name"})};
///     while (auto chunk = out.next()) file.write(chunk->data(), chunk->size());
///     auto rows = out.rows();
///
/// query_timeout bounds each wait for data (a silent server times out: cancel, close,
/// timeout_error), not the whole export; a call's deadline (set_deadline) bounds the whole.
/// Failures: sql_error for a bad query (the connection stays usable), connection_error when
/// the session is lost (the connection is closed). Once data has been handed out, every error
/// carries outcome::fatal: the caller already has part of the data, so the export must not be
/// restarted behind its back.
class copy_out {
 public:
  /// Starts the COPY and waits for the server to accept it (a bad query throws here).
  copy_out(connection& conn, const copy_source& source, const copy_options& options = {});
  ~copy_out();
  copy_out(const copy_out&) = delete;
  copy_out& operator=(const copy_out&) = delete;

  /// The next chunk (valid until the next call), or nullopt at the end, when rows() is known.
  [[nodiscard]] std::optional<std::string_view> next();
  /// Calls `sink(chunk)` for every chunk and returns rows(). If `sink` throws, the COPY is
  /// abandoned (see the class comment) and the exception propagates.
  std::uint64_t read_all(const std::function<void(std::string_view chunk)>& sink);
  /// Abandons the COPY now (cancel and drain, or close); no-op once it ended.
  void abort() noexcept;
  /// Rows the server reported at the end (0 until then; a header line does not count).
  [[nodiscard]] std::uint64_t rows() const noexcept { return m_rows; }
  /// Bytes of data handed out so far.
  [[nodiscard]] std::uint64_t bytes_read() const noexcept { return m_bytes; }
  /// True until the end was read, the COPY failed or was abandoned.
  [[nodiscard]] bool active() const noexcept { return m_active; }

 private:
  void release_chunk() noexcept;
  void finish_stream();
  [[noreturn]] void lost(std::string message);
  connection* m_conn;
  char* m_chunk = nullptr;  // libpq's buffer of the chunk handed out last
  std::uint64_t m_rows = 0;
  std::uint64_t m_bytes = 0;
  bool m_delivered = false;  // a chunk was handed out: errors are final from now on
  bool m_active = false;
};

}  // namespace steadypg
