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
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

namespace fs = std::filesystem;

namespace steadypg::cli {
namespace {

connection open_connection(const context& ctx) {
  connection_options o;
  o.dsn = ctx.options.dsn;
  o.connect_timeout = ctx.options.connection_timeout;
  o.statement_cache_capacity = static_cast<std::size_t>(ctx.options.statement_cache_size);
  ctx.log(log_level::debug, "connecting", {{"dsn", redact_dsn(o.dsn)}});
  connection c(o);
  if (ctx.options.statement_timeout.count() > 0) {
    (void)c.execute(fmt::format("SET statement_timeout = {}", ctx.options.statement_timeout.count()));
  }
  ctx.log(log_level::debug, "connected", {{"server_version", c.server_version()}, {"backend_pid", c.backend_pid()}});
  return c;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

json_doc json_value(const field& f, oid type) {
  if (f.is_null()) return nullptr;
  const std::string_view t = f.text();
  try {
    switch (type) {
      case oids::int2:
      case oids::int4:
      case oids::int8:
        return f.as<int64_t>();
      case oids::float4:
      case oids::float8: {
        const double d = f.as<double>();
        if (std::isfinite(d)) return d;
        return std::string(t);
      }
      case oids::boolean:
        return f.as<bool>();
      case 114:   // json
      case 3802:  // jsonb
        return json_doc::parse(t);
      default:
        break;
    }
  } catch (const std::exception&) {
  }
  return std::string(t);
}

// Display width in terminal columns, counting UTF-8 code points.
std::size_t display_width(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

void print_table(const result& rs) {
  const std::size_t cols = rs.columns();
  if (cols == 0) {
    std::cout << rs.command() << "\n";
    return;
  }
  std::vector<std::size_t> width(cols);
  for (std::size_t c = 0; c < cols; ++c) width[c] = display_width(rs.column_name(c));
  for (const auto row : rs) {
    for (std::size_t c = 0; c < cols; ++c) {
      width[c] = std::max(width[c], display_width(row[c].is_null() ? "NULL" : row[c].text()));
    }
  }
  auto cell = [&](std::string_view s, std::size_t c) {
    return std::string(s) + std::string(width[c] - display_width(s), ' ');
  };
  std::string line;
  for (std::size_t c = 0; c < cols; ++c) line += (c ? " | " : " ") + cell(rs.column_name(c), c);
  std::cout << line << "\n";
  line.clear();
  for (std::size_t c = 0; c < cols; ++c) line += (c ? "-+-" : "-") + std::string(width[c], '-');
  std::cout << line << "-\n";
  for (const auto row : rs) {
    line.clear();
    for (std::size_t c = 0; c < cols; ++c) line += (c ? " | " : " ") + cell(row[c].is_null() ? "NULL" : row[c].text(), c);
    std::cout << line << "\n";
  }
  std::cout << fmt::format("({} row{})\n", rs.size(), rs.size() == 1 ? "" : "s");
}

void print_tsv(const result& rs) {
  const std::size_t cols = rs.columns();
  if (cols == 0) {
    std::cout << rs.command() << "\n";
    return;
  }
  for (std::size_t c = 0; c < cols; ++c) std::cout << (c ? "\t" : "") << rs.column_name(c);
  std::cout << "\n";
  for (const auto row : rs) {
    for (std::size_t c = 0; c < cols; ++c) std::cout << (c ? "\t" : "") << (row[c].is_null() ? "NULL" : row[c].text());
    std::cout << "\n";
  }
}

}  // namespace

std::string default_sandbox_dir() {
  const char* tmp = std::getenv("TMPDIR");
  return fmt::format("{}/steadypg-sandbox-{}", (tmp && *tmp) ? tmp : "/tmp", ::getuid());
}

int run_ping(const context& ctx) {
  try {
    const auto connect_start = std::chrono::steady_clock::now();
    auto c = open_connection(ctx);
    const double connect_ms = ms_since(connect_start);
    const auto start = std::chrono::steady_clock::now();
    c.ping();
    const double latency = ms_since(start);
    if (ctx.json) {
      context::print_json({{"ok", true}, {"latency_ms", round3(latency)}, {"connect_ms", round3(connect_ms)}});
    } else {
      std::cout << fmt::format("ok: round trip {:.3f} ms (connect {:.3f} ms, server {})\n", latency, connect_ms,
                               c.server_version());
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
  o.pool_max = 1;
  o.pool_min = 0;
  resilience_options r = resilience_options_from(o);
  r.retry.max_retries = 0;
  return {ctx, o, pool_options_from(o), r};
}

}  // namespace

int run_health(const context& ctx) {
  try {
    auto d = diagnostic_client(ctx);
    const auto h = d->health_check();
    if (ctx.json) {
      json_doc doc{{"status", std::string(to_string(h.status))},
                   {"latency_ms", round3(h.latency_ms)},
                   {"threshold_ms", h.threshold_ms},
                   {"breaker", std::string(to_string(h.breaker))},
                   {"error", h.error.empty() ? json_doc(nullptr) : json_doc(h.error)}};
      if (!h.reason.empty()) doc["reason"] = h.reason;
      context::print_json(doc);
    } else {
      std::cout << fmt::format("{}: ping {:.3f} ms (threshold {} ms), breaker {}{}{}\n", to_string(h.status),
                               h.latency_ms, h.threshold_ms, to_string(h.breaker),
                               h.reason.empty() ? "" : ", " + h.reason, h.error.empty() ? "" : ": " + h.error);
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
  json_doc slow = json_doc::array();
  for (const auto& q : i.recent_slow_queries) {
    json_doc e{{"operation", q.operation}, {"sql", q.sql}, {"duration_ms", round3(q.duration_ms)},
               {"rows", q.rows},           {"attempts", q.attempts}, {"failed", q.failed}};
    if (!q.params.empty()) e["params"] = q.params;
    slow.push_back(std::move(e));
  }
  return {{"server",
           {{"version", i.server.version},
            {"uptime_seconds", i.server.uptime_seconds},
            {"connections",
             {{"active", i.server.connections.active},
              {"idle", i.server.connections.idle},
              {"total", i.server.connections.total},
              {"max", i.server.connections.max}}}}},
          {"pool",
           {{"active", i.pool.active}, {"idle", i.pool.idle}, {"total", i.pool.total}, {"waiting", i.pool.waiting},
            {"max", i.pool.max}}},
          {"performance",
           {{"queries", i.performance.queries},
            {"avg_query_ms", round3(i.performance.avg_query_ms)},
            {"p95_query_ms", round3(i.performance.p95_query_ms)},
            {"slow_queries", i.performance.slow_queries}}},
          {"recent_slow_queries", std::move(slow)}};
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
  }
  return out;
}

int run_info(const context& ctx) {
  try {
    auto d = diagnostic_client(ctx);
    const auto i = d->connection_info();
    if (ctx.json) {
      context::print_json(info_json(i));
    } else {
      std::cout << info_text(i);
    }
    return ok;
  } catch (...) {
    return report_error(ctx, "info");
  }
}

int run_exec(const context& ctx, const std::string& sql, const std::vector<std::string>& params,
             const std::string& null_marker, bool use_null_marker) {
  try {
    auto c = open_connection(ctx);
    param_list p;
    for (const auto& v : params) {
      if (use_null_marker && v == null_marker) p.add_null();
      else p.add_text(v);
    }
    const auto start = std::chrono::steady_clock::now();
    const result rs = c.execute(sql, p);
    ctx.log(log_level::info, "statement done",
            {{"op", "exec"}, {"duration_ms", round3(ms_since(start))}, {"rows", rs.size()}});
    if (ctx.json) {
      json_doc columns = json_doc::array();
      std::vector<oid> types;
      for (std::size_t i = 0; i < rs.columns(); ++i) {
        columns.push_back(std::string(rs.column_name(i)));
        types.push_back(rs.column_type(i));
      }
      json_doc rows = json_doc::array();
      for (const auto row : rs) {
        json_doc r = json_doc::array();
        for (std::size_t i = 0; i < rs.columns(); ++i) r.push_back(json_value(row[i], types[i]));
        rows.push_back(std::move(r));
      }
      context::print_json({{"columns", columns},
                           {"rows", rows},
                           {"command", std::string(rs.command())},
                           {"rows_affected", rs.rows_affected()}});
    } else if (::isatty(STDOUT_FILENO)) {
      print_table(rs);
    } else {
      print_tsv(rs);
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
    std::ofstream(dir / "sandbox.json") << json_doc{{"dsn", cluster.dsn()}, {"pid", cluster.pid()},
                                                          {"dir", dir.string()}}
                                               .dump()
                                        << "\n";
    ctx.log(log_level::info, "sandbox started", {{"dir", dir.string()}, {"pid", cluster.pid()}});
    describe(cluster.pid(), cluster.port());
    return ok;
  } catch (...) {
    return report_error(ctx, "sandbox");
  }
}

}  // namespace steadypg::cli
