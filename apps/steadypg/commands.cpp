#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <optional>

#include "cli.hpp"
#include "steadypg/http/report_json.hpp"
#include "json_text.hpp"
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

namespace fs = std::filesystem;

namespace steadypg::cli {
namespace {

// A one-connection client for a command that runs one statement: the same pipeline as every
// other command (logs, metrics, slow queries, statement_timeout and its bound, the retry rule,
// which never repeats a write whose outcome is unknown), with `retries` retries.
command_client single_client(const context& ctx, int retries) {
  client_options o = ctx.options;
  o.pool.max_size = 1;
  o.pool.min_size = 0;
  o.resilience.retry.max_retries = std::min(o.resilience.retry.max_retries, retries);
  ctx.log(log_level::debug, "connecting", {{"dsn", redact_dsn(o.dsn)}});
  return {ctx, o};
}

// The aligned table's NULL marker (unless --null).
constexpr std::string_view table_null = "\xE2\x88\x85";  // ∅ (U+2205) in UTF-8

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// One value for --json, as JSON text. Numbers and json/jsonb are the server's text as it is
// (no round trip through a double, duplicate keys kept); what is not valid JSON there
// (NaN, Infinity) becomes a string.
std::string json_cell(const field& f, oid type) {
  if (f.is_null()) return "null";
  const std::string_view t = f.text();
  switch (type) {
    case oids::int2:
    case oids::int4:
    case oids::int8:
    case oids::numeric:
    case oids::float4:
    case oids::float8:
      if (is_json_number(t)) return std::string(t);
      break;
    case oids::boolean:
      if (t == "t") return "true";
      if (t == "f") return "false";
      break;
    case 114:   // json
    case 3802:  // jsonb
      if (is_json_text(t)) return std::string(t);
      break;
    default: break;
  }
  return json_string(t);
}

// The `rows` member of exec --json: [[cell, …], …].
std::string json_rows(const result& rs) {
  std::vector<oid> types;
  for (std::size_t c = 0; c < rs.columns(); ++c) types.push_back(rs.column_type(c));
  std::string out = "[";
  for (const auto row : rs) {
    if (out.size() > 1) out += ',';
    out += '[';
    for (std::size_t c = 0; c < types.size(); ++c) {
      if (c) out += ',';
      out += json_cell(row[c], types[c]);
    }
    out += ']';
  }
  out += ']';
  return out;
}

// How the text output shows a value: COPY text format escapes (backslash, \b \f \n \r \t \v,
// other control characters as \xHH), so that a value is one cell on one line and the NULL
// marker (\N by default) cannot be mistaken for text. COPY ... FROM reads the rows back.
// `escape_default_null` (the table's default marker ∅) also writes a text ∅ as \u2205.
std::string escape_text(std::string_view s, bool escape_default_null = false) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\v': out += "\\v"; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else if (escape_default_null && s.substr(i).starts_with(table_null)) {
      out += "\\u2205";
      i += table_null.size() - 1;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// Display width in terminal columns, counting UTF-8 code points.
std::size_t display_width(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// On a terminal: an aligned table; NULL shows as `null_marker` (∅ unless --null).
void print_table(const result& rs, const std::optional<std::string>& null_marker) {
  const std::size_t cols = rs.columns();
  if (cols == 0) {
    std::cout << rs.command() << "\n";
    return;
  }
  const bool default_marker = !null_marker;
  const std::string null_shown = null_marker.value_or(std::string(table_null));
  // Every cell as shown, header first.
  std::vector<std::vector<std::string>> cells;
  cells.emplace_back();
  for (std::size_t c = 0; c < cols; ++c) cells.back().push_back(escape_text(rs.column_name(c), default_marker));
  for (const auto row : rs) {
    cells.emplace_back();
    for (std::size_t c = 0; c < cols; ++c) {
      cells.back().push_back(row[c].is_null() ? null_shown : escape_text(row[c].text(), default_marker));
    }
  }
  std::vector<std::size_t> width(cols);
  for (const auto& line : cells) {
    for (std::size_t c = 0; c < cols; ++c) width[c] = std::max(width[c], display_width(line[c]));
  }
  auto cell = [&](const std::string& s, std::size_t c) { return s + std::string(width[c] - display_width(s), ' '); };
  auto print_line = [&](const std::vector<std::string>& line) {
    std::string out;
    for (std::size_t c = 0; c < cols; ++c) out += (c ? " | " : " ") + cell(line[c], c);
    std::cout << out << "\n";
  };
  print_line(cells.front());
  std::string line;
  for (std::size_t c = 0; c < cols; ++c) line += (c ? "-+-" : "-") + std::string(width[c], '-');
  std::cout << line << "-\n";
  for (std::size_t r = 1; r < cells.size(); ++r) print_line(cells[r]);
  std::cout << fmt::format("({} row{})\n", rs.size(), rs.size() == 1 ? "" : "s");
}

// Not on a terminal: a header line, then the rows in COPY text format (\N unless --null).
void print_tsv(const result& rs, const std::optional<std::string>& null_marker) {
  const std::size_t cols = rs.columns();
  if (cols == 0) {
    std::cout << rs.command() << "\n";
    return;
  }
  const std::string null_shown = null_marker.value_or("\\N");
  std::string out;
  for (std::size_t c = 0; c < cols; ++c) (out += (c ? "\t" : "")) += escape_text(rs.column_name(c));
  out += '\n';
  for (const auto row : rs) {
    for (std::size_t c = 0; c < cols; ++c) {
      if (c) out += '\t';
      out += row[c].is_null() ? null_shown : escape_text(row[c].text());
    }
    out += '\n';
  }
  std::cout << out;
}

}  // namespace

std::string default_sandbox_dir() {
  const char* tmp = std::getenv("TMPDIR");
  return fmt::format("{}/steadypg-sandbox-{}", (tmp && *tmp) ? tmp : "/tmp", ::getuid());
}

int run_ping(const context& ctx) {
  try {
    auto d = single_client(ctx, 0);
    // The first borrow opens the connection: that is the connect time.
    const auto connect_start = std::chrono::steady_clock::now();
    int server_version = 0;
    {
      auto c = d->acquire("ping");
      server_version = c->server_version();
    }
    const double connect_ms = ms_since(connect_start);
    const auto start = std::chrono::steady_clock::now();
    // Through the client's pipeline (logs, metrics); a server that does not answer within the
    // connect timeout is unavailable.
    (void)d->execute(statement{""}.idempotent().name("ping").timeout(ctx.options.connection.connect_timeout));
    const double latency = ms_since(start);
    if (ctx.json) {
      context::print_json({{"ok", true}, {"latency_ms", round3(latency)}, {"connect_ms", round3(connect_ms)}});
    } else {
      std::cout << fmt::format("ok: round trip {:.3f} ms (connect {:.3f} ms, server {})\n", latency, connect_ms,
                               server_version);
    }
    return ok;
  } catch (...) {
    const int rc = report_error(ctx, "ping");
    return rc == sql_failure ? unavailable : rc;
  }
}

namespace {

// A one-connection client for the diagnostic commands, without retries: report what is.
command_client diagnostic_client(const context& ctx) {
  client_options o = ctx.options;
  o.pool.max_size = 1;
  o.pool.min_size = 0;
  o.resilience.retry.max_retries = 0;
  return {ctx, o};
}

}  // namespace

int run_health(const context& ctx) {
  try {
    auto d = diagnostic_client(ctx);
    const auto h = d->health_check();
    if (ctx.json) {
      // One source for `health --json` and the HTTP endpoint's /health.
      context::print_json(json_doc::parse(http::health_json(h)));
    } else {
      std::cout << fmt::format("{}: ping {:.3f} ms (threshold {} ms), breaker {}{}{}\n", to_string(h.status),
                               h.latency_ms, h.threshold_ms, to_string(h.breaker),
                               h.reason.empty() ? "" : ", " + h.reason, h.error.empty() ? "" : ": " + h.error);
      for (const auto& x : h.hosts) {
        std::cout << fmt::format("  {:<24} {:<18} {:<9} probe {:.1f} ms{}\n", x.host, x.role, to_string(x.status),
                                 x.probe_ms, x.reason.empty() ? "" : ", " + x.reason);
      }
    }
    switch (h.status) {
      case health_status::healthy: return ok;
      case health_status::degraded: return sql_failure;
      case health_status::unhealthy: return unavailable;
    }
    return unavailable;
  } catch (...) {
    return report_error(ctx, "health");
  }
}

json_doc info_json(const connection_info_report& i) {
  // One source for `info --json` and the HTTP endpoint's /info.
  return json_doc::parse(http::info_json(i));
}

std::string info_text(const connection_info_report& i) {
  std::string out = fmt::format(
      "server: PostgreSQL {}, up {} s, sessions {} active / {} idle / {} total (max_connections {})\n"
      "pool: {} active, {} idle, {} total, {} waiting, max {}\n"
      "performance: {} queries, avg {:.3f} ms, p95 {:.3f} ms, {} slow\n",
      i.server.version, i.server.uptime_seconds, i.server.connections.active, i.server.connections.idle,
      i.server.connections.total, i.server.connections.max, i.pool.active, i.pool.idle, i.pool.total, i.pool.waiting,
      i.pool.max, i.performance.queries, i.performance.avg_query_ms, i.performance.p95_query_ms,
      i.performance.slow_queries);
  for (const auto& q : i.recent_slow_queries) {
    out += fmt::format("slow: {:.1f} ms, {} rows{}: {}{}\n", q.duration_ms, q.rows, q.failed ? ", failed" : "",
                       q.sql.substr(0, 120), q.params.empty() ? std::string() : " [" + q.params + "]");
    if (!q.plan.empty()) out += fmt::format("      plan: {}\n", q.plan);
    for (const auto& f : q.plan_findings) out += fmt::format("      finding: {}\n", f);
  }
  if (i.topology.probing) out += hosts_text(i.topology);
  return out;
}

int run_info(const context& ctx) {
  try {
    auto d = diagnostic_client(ctx);
    const auto i = d->connection_info();
    if (ctx.json) {
      auto doc = info_json(i);
      if (d->cache_enabled()) doc["cache"] = cache_json(d->cache_statistics());
      context::print_json(doc);
    } else {
      std::cout << info_text(i);
      if (d->cache_enabled()) std::cout << cache_text(d->cache_statistics());
    }
    return ok;
  } catch (...) {
    return report_error(ctx, "info");
  }
}

int run_exec(const context& ctx, const std::string& sql, const std::vector<std::string>& params,
             const std::string& null_marker, bool use_null_marker) {
  try {
    auto d = single_client(ctx, ctx.options.resilience.retry.max_retries);
    param_list p;
    for (const auto& v : params) {
      if (use_null_marker && v == null_marker) p.add_null();
      else p.add_text(v);
    }
    const auto start = std::chrono::steady_clock::now();
    const result rs = d->execute(sql, p);
    ctx.log(log_level::info, "statement done",
            {{"op", "exec"}, {"duration_ms", round3(ms_since(start))}, {"rows", rs.size()}});
    const std::optional<std::string> output_null =
        use_null_marker ? std::optional<std::string>(null_marker) : std::nullopt;
    if (ctx.json) {
      json_doc columns = json_doc::array();
      for (std::size_t i = 0; i < rs.columns(); ++i) columns.push_back(std::string(rs.column_name(i)));
      context::print_json({{"columns", columns},
                           {"rows", nullptr},  // written from the server's text: json_rows
                           {"command", std::string(rs.command())},
                           {"rows_affected", rs.rows_affected()}},
                          "rows", json_rows(rs));
    } else if (::isatty(STDOUT_FILENO)) {
      print_table(rs, output_null);
    } else {
      print_tsv(rs, output_null);
    }
    return ok;
  } catch (...) {
    return report_error(ctx, "exec");
  }
}

int run_sandbox(const context& ctx, const std::string& action, const std::string& dir_arg, int port, bool keep) {
  try {
    const fs::path dir = fs::absolute(dir_arg);
    auto read_port = [&] {
      int p = 0;
      std::ifstream(dir / "port") >> p;
      return p;
    };
    auto describe = [&](int pid, int p) {
      const std::string dsn = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres", p);
      if (ctx.json) {
        context::print_json({{"dsn", dsn}, {"pid", pid}, {"dir", dir.string()}, {"running", pid != 0}});
      } else {
        std::cout << dsn << "\n";
      }
    };
    if (action == "status") {
      const int pid = testing::temp_cluster::running_pid_in(dir);
      if (pid == 0) {
        if (ctx.json) context::print_json({{"dsn", nullptr}, {"pid", 0}, {"dir", dir.string()}, {"running", false}});
        else std::cerr << "steadypg: no sandbox is running in " << dir.string() << "\n";
        return unavailable;
      }
      describe(pid, read_port());
      return ok;
    }
    if (action == "stop") {
      const bool was_running = testing::temp_cluster::stop_in(dir);
      if (!keep && fs::exists(dir / "sandbox.json")) {
        for (const char* name : {"data", "server.log", "port", "sandbox.json"}) fs::remove_all(dir / name);
        std::error_code ec;
        fs::remove(dir, ec);  // only if empty
      }
      if (ctx.json) {
        context::print_json({{"stopped", was_running}, {"dir", dir.string()}});
      } else {
        std::cout << (was_running ? "stopped " : "no sandbox was running in ") << dir.string() << "\n";
      }
      return ok;
    }
    // start: idempotent when one already runs here.
    if (const int pid = testing::temp_cluster::running_pid_in(dir); pid != 0) {
      ctx.log(log_level::info, "sandbox already running", {{"dir", dir.string()}, {"pid", pid}});
      describe(pid, read_port());
      return ok;
    }
    testing::temp_cluster_options o;
    o.dir = dir;
    o.keep = true;
    o.reuse = true;
    o.port = port;
    o.die_with_parent = false;
    testing::temp_cluster cluster(o);
    cluster.detach();
    std::ofstream(dir / "sandbox.json")
        << json_doc{{"dsn", cluster.dsn()}, {"pid", cluster.pid()}, {"dir", dir.string()}}.dump() << "\n";
    ctx.log(log_level::info, "sandbox started", {{"dir", dir.string()}, {"pid", cluster.pid()}});
    describe(cluster.pid(), cluster.port());
    return ok;
  } catch (...) {
    return report_error(ctx, "sandbox");
  }
}

}  // namespace steadypg::cli
