#pragma once

#include <cstdint>
#include <functional>
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

  /// Sends one row (text format only), escaping tabs, newlines, backslashes; nullopt → NULL.
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

}  // namespace steadypg
