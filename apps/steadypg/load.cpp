// `steadypg batch` and `steadypg copy`: batch execution and COPY bulk loads from files.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "steadypg/steadypg.hpp"

namespace fs = std::filesystem;

namespace steadypg::cli {

progress_bar::progress_bar(const context& ctx, std::string label, bool allowed)
    : m_enabled(allowed && !ctx.json && ::isatty(STDERR_FILENO) == 1), m_label(std::move(label)) {}

progress_bar::~progress_bar() { finish(); }

void progress_bar::update(double fraction, std::string_view detail) {
  if (!m_enabled) return;
  const auto now = std::chrono::steady_clock::now();
  if (fraction != 1.0 && now - m_last < std::chrono::milliseconds(100)) return;  // 10 redraws a second at most
  m_last = now;
  if (fraction < 0) {  // the total is unknown (standard input): no bar, just the figures
    std::string line = fmt::format("\r{} {}", m_label, detail);
    line.append("\x1b[K");
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    m_drawn = true;
    return;
  }
  fraction = std::clamp(fraction, 0.0, 1.0);
  constexpr int width = 30;
  const int filled = static_cast<int>(std::lround(fraction * width));
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(width - filled), '.');
  std::string line = fmt::format("\r{} [{}] {:5.1f}% {}", m_label, bar, fraction * 100.0, detail);
  line.append("\x1b[K");  // clear what a longer earlier line left
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
  m_drawn = true;
}

void progress_bar::finish() {
  if (m_drawn) std::fputs("\n", stderr);
  m_drawn = false;
}

namespace {

// A file named on the command line, or standard input for "-". A directory, a missing or
// unreadable file is a usage error naming the path, raised before anything is sent.
class input_file {
 public:
  explicit input_file(const std::string& path) : m_path(path) {
    if (path == "-") return;
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (fs::is_directory(status)) throw usage_error(fmt::format("cannot read {}: it is a directory", path));
    m_file.open(path, std::ios::binary);
    if (!m_file) throw usage_error(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    if (fs::is_regular_file(status)) m_size = fs::file_size(path, ec);
    if (ec) m_size.reset();
  }

  /// The name for messages.
  [[nodiscard]] const std::string& path() const noexcept { return m_path; }
  /// The size of a regular file; unknown for standard input and pipes.
  [[nodiscard]] std::optional<std::uintmax_t> size() const noexcept { return m_size; }
  /// Back to the start, where the input can seek (a regular file); false otherwise.
  bool rewind() {
    if (!m_size) return false;
    m_file.clear();
    m_file.seekg(0);
    return true;
  }
  /// Up to n bytes into buf; 0 at the end. A read error is a usage error naming the path.
  std::size_t read(char* buf, std::size_t n) {
    std::istream& in = m_path == "-" ? std::cin : m_file;
    in.read(buf, static_cast<std::streamsize>(n));
    if (in.bad()) throw usage_error(fmt::format("cannot read {}: {}", m_path, std::strerror(errno)));
    return static_cast<std::size_t>(in.gcount());
  }
  /// Everything that is left.
  std::string read_all() {
    std::string out;
    std::string buf(1 << 16, '\0');
    while (const std::size_t n = read(buf.data(), buf.size())) out.append(buf.data(), n);
    return out;
  }

 private:
  std::string m_path;
  std::ifstream m_file;
  std::optional<std::uintmax_t> m_size;
};

// The whole input, refused when it holds a NUL byte: statements and CSV fields reach the
// server as C strings, where a NUL would silently cut them short (`DELETE FROM t<NUL> WHERE
// id = 1` would run as `DELETE FROM t`). Lines are 1-based, counting every line.
std::string read_statement_input(const std::string& path) {
  input_file in(path);
  std::string text = in.read_all();
  if (const auto nul = text.find('\0'); nul != std::string::npos) {
    const auto line =
        1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(nul), '\n'));
    throw usage_error(fmt::format("{}:{}: a NUL byte (0x00) in line {}; nothing was run",
                                  path == "-" ? "standard input" : path, line, line));
  }
  return text;
}

// One CSV record: its fields (nullopt = unquoted empty = NULL) and the line it starts on.
struct csv_record {
  std::size_t line = 0;
  std::vector<std::optional<std::string>> fields;
};

// RFC 4180 CSV: quoted fields may hold commas, quotes ("") and newlines.
std::vector<csv_record> parse_csv(const std::string& text, const std::string& path) {
  std::vector<csv_record> out;
  std::size_t i = 0, line = 1;
  while (i < text.size()) {
    csv_record rec;
    rec.line = line;
    while (true) {
      std::string value;
      bool quoted = false;
      if (i < text.size() && text[i] == '"') {
        quoted = true;
        const std::size_t opened = line;
        ++i;
        while (true) {
          if (i >= text.size()) throw usage_error(fmt::format("{}:{}: unterminated quoted field", path, opened));
          const char c = text[i++];
          if (c == '"') {
            if (i < text.size() && text[i] == '"') {
              value.push_back('"');
              ++i;
              continue;
            }
            break;
          }
          if (c == '\n') ++line;
          value.push_back(c);
        }
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          throw usage_error(fmt::format("{}:{}: unexpected character after a quoted field", path, line));
        }
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') value.push_back(text[i++]);
      }
      rec.fields.push_back(quoted || !value.empty() ? std::optional<std::string>(std::move(value)) : std::nullopt);
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < text.size() && text[i] == '\r') ++i;
      if (i < text.size() && text[i] == '\n') {
        ++i;
        ++line;
      }
      break;
    }
    const bool blank = rec.fields.size() == 1 && !rec.fields[0];
    if (!blank) out.push_back(std::move(rec));
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The --to target: a file, or standard output for "-". Opened (created if missing) before
// connecting, so that an unwritable path is a usage error naming it before anything runs; an
// existing file is emptied only when data arrives (or the export succeeds empty), so a query
// that fails at once leaves it as it was, and a file created for nothing is removed.
class output_file {
 public:
  explicit output_file(const std::string& path) : m_path(path) {
    if (path == "-") {
      m_fd = STDOUT_FILENO;
      return;
    }
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (fs::is_directory(status)) throw usage_error(fmt::format("cannot write {}: it is a directory", path));
    m_created = !fs::exists(status);
    m_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (m_fd < 0) throw usage_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
    struct stat st {};
    m_regular = ::fstat(m_fd, &st) == 0 && S_ISREG(st.st_mode);
    m_buffer.reserve(buffer_size);
  }
  ~output_file() {
    if (m_fd > STDERR_FILENO) ::close(m_fd);
  }
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;

  /// Before the first byte: empties an existing regular file.
  void start() {
    if (m_started) return;
    m_started = true;
    if (m_regular && ::ftruncate(m_fd, 0) != 0) fail();
  }
  /// Buffers `data`, writing 1 MiB at a time.
  void write(std::string_view data) {
    if (m_buffer.size() + data.size() > buffer_size) flush();
    if (data.size() >= buffer_size) {
      write_out(data);
      return;
    }
    m_buffer.append(data);
  }
  /// Writes what is buffered; a failure is a usage error naming the path.
  void flush() {
    write_out(m_buffer);
    m_buffer.clear();
  }
  /// After a failure: keeps what was written, or removes a file created for nothing.
  void abandon() noexcept {
    try {
      flush();
    } catch (...) {
    }
    if (m_created && m_written == 0 && m_fd > STDERR_FILENO) {
      std::error_code ec;
      fs::remove(m_path, ec);
    }
  }
  [[nodiscard]] std::uint64_t written() const noexcept { return m_written + m_buffer.size(); }
  [[nodiscard]] const std::string& path() const noexcept { return m_path; }
  [[nodiscard]] bool is_stdout() const noexcept { return m_path == "-"; }

 private:
  static constexpr std::size_t buffer_size = 1 << 20;
  void write_out(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(m_fd, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        fail();
      }
      m_written += static_cast<std::uint64_t>(n);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  [[noreturn]] void fail() {
    throw usage_error(
        fmt::format("cannot write {}: {}", m_path == "-" ? "standard output" : m_path, std::strerror(errno)));
  }
  std::string m_path;
  std::string m_buffer;
  int m_fd = -1;
  std::uint64_t m_written = 0;
  bool m_created = false;
  bool m_regular = false;
  bool m_started = false;
};

std::vector<std::string> split_columns(const std::string& list) {
  std::vector<std::string> columns;
  for (std::size_t p = 0; !list.empty() && p <= list.size();) {
    const auto comma = std::min(list.find(',', p), list.size());
    columns.emplace_back(trim(std::string_view(list).substr(p, comma - p)));
    p = comma + 1;
  }
  return columns;
}

// The client for a load: enough connections for the concurrency.
command_client load_client(const context& ctx, std::size_t connections) {
  client_options o = ctx.options;
  o.pool.max_size = std::max(o.pool.max_size, connections);
  return {ctx, o};
}

}  // namespace

int run_batch(const context& ctx, const batch_args& args) {
  try {
    batch_options o = ctx.options.batch;
    if (args.batch_size) o.batch_size = static_cast<std::size_t>(*args.batch_size);
    if (args.concurrency) o.concurrency = static_cast<std::size_t>(*args.concurrency);
    if (args.timeout_ms) o.timeout = std::chrono::milliseconds(*args.timeout_ms);
    const auto mode = parse_batch_mode(args.mode);
    if (!mode) throw usage_error(fmt::format("unknown batch mode '{}'", args.mode));
    o.mode = *mode;
    o.stop_on_error = args.stop_on_error;
    o.validate();

    // The operations, and the input line each one came from (the `index` of errors).
    std::vector<batch_operation> ops;
    std::vector<std::size_t> line_of;
    if (!args.file.empty()) {
      const std::string text = read_statement_input(args.file);
      std::size_t line = 0, pos = 0;
      while (pos < text.size()) {
        const std::size_t nl = text.find('\n', pos);
        const std::string_view raw(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        ++line;
        const auto stmt = trim(raw);
        if (stmt.empty() || stmt.starts_with("--")) continue;
        ops.emplace_back(std::string(stmt));
        line_of.push_back(line);
      }
    } else {
      auto records = parse_csv(read_statement_input(args.csv), args.csv);
      std::size_t first = args.header && !records.empty() ? 1 : 0;
      ops.reserve(records.size());
      for (std::size_t r = first; r < records.size(); ++r) {
        param_list params;
        for (const auto& f : records[r].fields) {
          if (f) params.add_text(*f);
          else params.add_null();
        }
        ops.emplace_back(args.sql, std::move(params));
        line_of.push_back(records[r].line);
      }
    }

    auto lc = load_client(ctx, o.concurrency);
    lc->ping();  // unreachable: exit 3 before doing anything
    progress_bar bar(ctx, "batch");
    const auto started = std::chrono::steady_clock::now();
    o.on_progress = [&](const batch_progress& p) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      bar.update(p.total ? static_cast<double>(p.processed) / static_cast<double>(p.total) : 1.0,
                 fmt::format("{}/{} ops, {} failed, {:.0f} ops/s", p.processed, p.total, p.failed,
                             secs > 0 ? static_cast<double>(p.processed) / secs : 0.0));
    };
    const auto report = lc->batch_execute(ops, o);
    bar.finish();

    const auto& st = report.stats;
    const double duration_ms = std::chrono::duration<double, std::milli>(st.duration).count();
    if (ctx.json) {
      json_doc errors = json_doc::array();
      for (const auto& e : report.errors) {
        json_doc j{{"index", line_of[e.index]},
                   {"sqlstate", e.sqlstate},
                   {"message", e.message},
                   {"outcome", std::string(to_string(e.outcome))}};
        if (e.reason != batch_failure::failed) j["reason"] = std::string(to_string(e.reason));
        if (e.cause) j["cause"] = line_of[*e.cause];
        errors.push_back(std::move(j));
      }
      context::print_json({{"mode", std::string(to_string(o.mode))},
                           {"stats",
                            {{"total", st.total},
                             {"processed", st.processed},
                             {"succeeded", st.succeeded},
                             {"failed", st.failed},
                             {"unknown", st.unknown},
                             {"timed_out", st.timed_out},
                             {"breaker_waited", st.breaker_waited},
                             {"success_rate", round3(st.success_rate)},
                             {"duration_ms", round3(duration_ms)}}},
                           {"timed_out", report.timed_out},
                           {"errors", std::move(errors)}});
    } else {
      std::cout << fmt::format(
          "{} operations ({} mode, batch size {}, concurrency {}): {} succeeded, {} failed ({:.1f}% success) in "
          "{:.1f} ms, {:.0f} ops/s{}\n",
          st.total, to_string(o.mode), o.batch_size, o.concurrency, st.succeeded, st.failed, st.success_rate * 100.0,
          duration_ms, duration_ms > 0 ? static_cast<double>(st.processed) * 1000.0 / duration_ms : 0.0,
          report.timed_out ? " (timed out)" : "");
      const std::size_t shown = std::min<std::size_t>(report.errors.size(), 20);
      for (std::size_t i = 0; i < shown; ++i) {
        const auto& e = report.errors[i];
        std::cout << fmt::format("  line {}: {}{}\n", line_of[e.index], e.sqlstate.empty() ? "" : e.sqlstate + " ",
                                 e.message);
      }
      if (report.errors.size() > shown) {
        std::cout << fmt::format("  … and {} more (--json lists them all)\n", report.errors.size() - shown);
      }
      if (st.unknown > 0) {
        std::cout << fmt::format(
            "  {} failed with an unknown outcome (the connection was lost before the commit was confirmed): only "
            "these may have been applied\n",
            st.unknown);
      }
      if (st.breaker_waited > 0) {
        std::cout << fmt::format("  {} waited for the circuit breaker to close\n", st.breaker_waited);
      }
    }
    // A login the server refused stopped the batch: as for any command that cannot connect.
    const bool refused = std::any_of(report.errors.begin(), report.errors.end(),
                                     [](const batch_error& e) { return is_login_rejection(e.sqlstate); });
    if (report.stopped && refused) return unavailable;
    return st.failed == 0 ? ok : sql_failure;
  } catch (...) {
    return report_error(ctx, "batch");
  }
}

namespace {

// `copy … --to FILE`: COPY TO STDOUT through client::copy_to into the file.
int run_copy_out(const context& ctx, const copy_args& args) {
  if (args.table.empty() && args.query.empty()) throw usage_error("copy --to needs a TABLE or --query SQL");
  if (!args.table.empty() && !args.query.empty()) throw usage_error("copy takes a TABLE or --query SQL, not both");
  if (!args.query.empty() && !args.columns.empty()) {
    throw usage_error("--columns goes with a TABLE; with --query, select the columns in the query");
  }
  if (args.to == "-" && ctx.json) {
    throw usage_error(
        "--json with --to - would mix the report with the data on standard output; write to a file, or "
        "leave out --json");
  }
  const copy_options options{args.format == "csv" ? copy_format::csv : copy_format::text, args.header};
  const auto source =
      args.query.empty() ? copy_source::table(args.table, split_columns(args.columns)) : copy_source::query(args.query);
  (void)source.statement(options);  // a NUL byte: a usage error before connecting
  output_file out(args.to);         // an unwritable path: a usage error before connecting
  auto lc = load_client(ctx, 1);
  // No bar when the same terminal shows the data.
  progress_bar bar(ctx, "copy", !(out.is_stdout() && ::isatty(STDOUT_FILENO) == 1));
  const auto started = std::chrono::steady_clock::now();
  std::uint64_t rows = 0;
  try {
    std::uint64_t next_report = 0;  // the bar's figures once per MiB, not per row (the hot path)
    rows = lc->copy_to(
        source,
        [&](std::string_view chunk) {
          out.start();
          out.write(chunk);
          if (out.written() < next_report) return;
          next_report = out.written() + (1 << 20);
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
          const double mib = static_cast<double>(out.written()) / (1 << 20);
          bar.update(-1.0, fmt::format("{:.1f} MiB, {:.1f} MiB/s", mib, secs > 0 ? mib / secs : 0.0));
        },
        options);
    out.start();
    out.flush();
  } catch (...) {
    bar.finish();
    out.abandon();
    if (out.written() > 0 && !out.is_stdout()) {
      ctx.log(log_level::error,
              fmt::format("the export stopped after {} bytes: {} is incomplete", out.written(), out.path()));
    }
    throw;
  }
  bar.finish();
  const double duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  const double rows_per_s = duration_ms > 0 ? static_cast<double>(rows) * 1000.0 / duration_ms : 0.0;
  if (ctx.json) {
    json_doc j = json_doc::object();
    if (args.query.empty()) j["table"] = args.table;
    j["to"] = args.to;
    j["rows"] = rows;
    j["duration_ms"] = round3(duration_ms);
    j["rows_per_s"] = std::round(rows_per_s);
    context::print_json(j);
  } else {
    // With --to -, standard output carries the data: the summary goes to standard error.
    const std::string line =
        fmt::format("copied {} rows from {} to {} in {:.1f} ms ({:.0f} rows/s)\n", rows,
                    args.query.empty() ? args.table : std::string("the query"),
                    out.is_stdout() ? std::string("standard output") : args.to, duration_ms, rows_per_s);
    std::fputs(line.c_str(), out.is_stdout() ? stderr : stdout);
  }
  return ok;
}

}  // namespace

int run_copy(const context& ctx, const copy_args& args) {
  try {
    if (!args.to.empty()) return run_copy_out(ctx, args);
    if (args.file.empty()) throw usage_error("copy needs --file FILE (load into TABLE) or --to FILE (export)");
    if (args.table.empty()) throw usage_error("copy --file needs the TABLE to load");
    const auto format = args.format == "csv" ? copy_format::csv : copy_format::text;
    // A file streams with a percentage; "-" and pipes stream without (size unknown).
    input_file in(args.file);
    const double size = in.size() ? static_cast<double>(std::max<std::uintmax_t>(*in.size(), 1)) : -1.0;
    const auto columns = split_columns(args.columns);

    auto lc = load_client(ctx, 1);
    progress_bar bar(ctx, "copy");
    const auto started = std::chrono::steady_clock::now();
    const auto rows =
        lc->copy_from(args.table, columns,
                      [&](copy_in& copy) {
                        // `write` runs again only when the COPY could not even start, so nothing was read yet.
                        in.rewind();
                        std::string buf(1 << 20, '\0');
                        std::uint64_t read = 0;
                        while (const std::size_t n = in.read(buf.data(), buf.size())) {
                          read += n;
                          copy.write_raw(std::string_view(buf.data(), n));
                          const double secs =
                              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
                          bar.update(size < 0 ? -1.0 : static_cast<double>(read) / size,
                                     fmt::format("{:.1f} MiB, {:.1f} MiB/s", static_cast<double>(read) / (1 << 20),
                                                 secs > 0 ? static_cast<double>(read) / (1 << 20) / secs : 0.0));
                        }
                      },
                      {.format = format, .header = args.header});
    bar.finish();
    const double duration_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    const double rows_per_s = duration_ms > 0 ? static_cast<double>(rows) * 1000.0 / duration_ms : 0.0;
    if (ctx.json) {
      context::print_json({{"table", args.table},
                           {"rows", rows},
                           {"duration_ms", round3(duration_ms)},
                           {"rows_per_s", std::round(rows_per_s)}});
    } else {
      std::cout << fmt::format("copied {} rows into {} in {:.1f} ms ({:.0f} rows/s)\n", rows, args.table, duration_ms,
                               rows_per_s);
    }
    return ok;
  } catch (...) {
    return report_error(ctx, "copy");
  }
}

}  // namespace steadypg::cli
