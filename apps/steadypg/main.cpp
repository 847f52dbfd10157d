// steadypg: the command-line tool (DESIGN §7).

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "steadypg/error.hpp"
#include "steadypg/http/server.hpp"
#include "steadypg/version.hpp"

int main(int argc, char** argv) {
  using namespace steadypg::cli;
  context ctx;
  CLI::App app{"steadypg — a resilient, observable PostgreSQL client"};
  app.set_version_flag("--version", steadypg::version);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--dsn", ctx.dsn_flag, "Connection string (URI or key=value); overrides DATABASE_URL");
  app.add_flag("--json", ctx.json, "Machine-readable output on stdout");
  app.add_option("--log-format", ctx.log_format, "Log format on stderr")->check(CLI::IsMember({"json", "text"}));
  app.add_option("--log-level", ctx.log_level_name, "Least severe level logged")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  std::string route_flag;
  app.add_option("--route", route_flag,
                 "Where calls go on a multi-host DSN (overrides POSTGRESQL_ROUTE): primary, read_write, "
                 "prefer_replica, replica, any")
      ->check(CLI::IsMember({"primary", "read_write", "prefer_replica", "replica", "any"}));
  app.add_option("--metrics-out", ctx.metrics_out,
                 "At exit, write the process's metrics in Prometheus text format to FILE");

  app.add_option("--http", ctx.http_listen,
                 "Serve the dashboard, /metrics, /health, /info and /api/snapshot on ADDR (host:port, port 0 = "
                 "any free one; loopback) while bench, batch, copy or demo runs; overrides POSTGRESQL_HTTP_LISTEN");

  auto* ping = app.add_subcommand("ping", "One round trip to the server");
  auto* health = app.add_subcommand("health", "Health check: healthy (0), degraded (1) or unhealthy (3)");
  auto* info = app.add_subcommand("info", "Server version, uptime, sessions, pool state and query performance");
  auto* topology = app.add_subcommand(
      "topology", "Each host of the DSN with its role, replay lag, timeline and breaker; exit 3 without a primary");

  std::string sql;
  std::vector<std::string> params;
  std::string null_marker;
  auto* exec = app.add_subcommand("exec", "Run one parameterized statement");
  exec->add_option("sql", sql, "SQL text; $1…$n bind the -p values in order")->required();
  exec->add_option("-p,--param", params, "A parameter value (repeatable)");
  auto* null_opt = exec->add_option("--null", null_marker,
                                    "The string for NULL: a -p value equal to it is sent as NULL, and NULLs print "
                                    "as it (default \\N, or ∅ on a terminal)");

  std::string explain_sql;
  std::vector<std::string> explain_params;
  bool explain_analyze = false;
  bool explain_advise = false;
  auto* explain = app.add_subcommand("explain", "A statement's plan as a tree, the rules' findings and index advice");
  explain->add_option("sql", explain_sql, "SQL text; $1…$n bind the -p values in order")->required();
  explain->add_option("-p,--param", explain_params, "A parameter value (repeatable)");
  explain->add_flag("--analyze", explain_analyze,
                    "EXPLAIN ANALYZE: runs the statement inside a transaction that is rolled back");
  explain->add_flag("--advise", explain_advise, "Index advice checked with hypothetical indexes (needs hypopg)");

  bench_args bargs;
  auto* bench = app.add_subcommand("bench", "Load on pgbench's schema through the pool (select, pipeline, insert)");
  bench->add_flag("--init", bargs.init, "Create pgbench's tables (like pgbench -i) and exit");
  bench->add_option("--scale", bargs.scale, "With --init: scale factor (100000 accounts each)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  bench
      ->add_option("--workload", bargs.workload,
                   "select | pipeline | insert | mixed (90 % reads per --route, 10 % writes to the primary)")
      ->check(CLI::IsMember({"select", "pipeline", "insert", "mixed"}))
      ->capture_default_str();
  bench->add_option("--clients", bargs.clients, "Threads, one pooled connection each")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  bench->add_option("--seconds", bargs.seconds, "Duration")->check(CLI::Range(1, 86400))->capture_default_str();
  bench->add_flag("--no-resilience", bargs.no_resilience,
                  "Bypass retries, budget and breaker (to measure what they cost)");
  bench
      ->add_option("--pool-mode", bargs.pool_mode,
                   "fixed (max = min = --clients) | adaptive | observe (default POSTGRESQL_POOL_MODE)")
      ->check(CLI::IsMember({"fixed", "adaptive", "observe"}));
  bench->add_flag("--ramp", bargs.ramp, "Clients step up to --clients and back down over the run (ten steps)");
  bench->add_option("--depth", bargs.depth, "pipeline: statements per round trip")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  bench->add_option("--cache", bargs.cache,
                    "select: read through the query cache, local, redis://host:port[/db] or local+redis://… (a local "
                    "level in front of Redis)");
  bench->add_option("--keys", bargs.keys, "select: random accounts among the first N (default all)")
      ->check(CLI::Range(1, 1000000000));

  batch_args batch_a;
  auto* batch = app.add_subcommand("batch", "Batch execution: statements from a file, or a template bound to CSV rows");
  auto* batch_file = batch->add_option("--file", batch_a.file,
                                       "One statement per line (blank and -- lines skipped); - reads standard input");
  auto* batch_sql = batch->add_option("--sql", batch_a.sql, "Statement template; each CSV record binds $1…$n");
  auto* batch_csv = batch->add_option("--csv", batch_a.csv,
                                      "CSV file for --sql (unquoted empty field = NULL); - reads standard input");
  batch_file->excludes(batch_sql)->excludes(batch_csv);
  batch_sql->needs(batch_csv);
  batch_csv->needs(batch_sql);
  batch->add_flag("--header", batch_a.header, "The CSV file's first record is a header");
  batch->add_option("--batch-size", batch_a.batch_size, "Operations per chunk (default POSTGRESQL_BATCH_SIZE)")
      ->check(CLI::Range(1, 1000000));
  batch->add_option("--concurrency", batch_a.concurrency, "Connections at once (default POSTGRESQL_BATCH_CONCURRENCY)")
      ->check(CLI::Range(1, 1024));
  batch
      ->add_option("--timeout-ms", batch_a.timeout_ms,
                   "Deadline for the whole batch (default POSTGRESQL_BATCH_TIMEOUT)")
      ->check(CLI::Range(1L, 86400000L));
  batch->add_option("--mode", batch_a.mode, "independent | pipeline | transaction")
      ->check(CLI::IsMember({"independent", "pipeline", "transaction"}))
      ->capture_default_str();
  batch->add_flag("--stop-on-error", batch_a.stop_on_error, "Start no new chunk after a failure");

  copy_args copy_a;
  auto* copy =
      app.add_subcommand("copy", "COPY bulk load of a file into a table, or export of a table or query to a file");
  copy->add_option("table", copy_a.table, "Table to load (--file) or export (--to); may be schema-qualified");
  auto* copy_file = copy->add_option("--file", copy_a.file, "Load: the data file; - streams standard input");
  auto* copy_to =
      copy->add_option("--to", copy_a.to, "Export: the file to write (created or replaced); - is standard output");
  auto* copy_query =
      copy->add_option("--query", copy_a.query, "Export the rows of this query instead of a table (with --to)");
  copy_file->excludes(copy_to);
  copy_query->needs(copy_to);
  copy->add_option("--format", copy_a.format, "csv | text")
      ->check(CLI::IsMember({"csv", "text"}))
      ->capture_default_str();
  copy->add_option("--columns", copy_a.columns, "Comma-separated columns of TABLE (default: all, in table order)");
  copy->add_flag("--header", copy_a.header, "Load: skip the file's first line; export: write a header line first");

  auto* demo = app.add_subcommand(
      "demo",
      "The whole story in one run against an embedded server (or DATABASE_URL/--dsn): pool, batch, outage "
      "and circuit breaker, slow query, health, info, metrics");

  std::string monitor_listen;
  auto* monitor = app.add_subcommand("monitor", "Serve the dashboard and endpoints for the database until Ctrl-C");
  monitor->add_option("--listen", monitor_listen, "host:port to serve on (port 0 = any free one; loopback)")
      ->required();

  std::string action;
  std::string dir = default_sandbox_dir();
  int port = 0;
  bool keep = false;
  auto* sandbox = app.add_subcommand("sandbox", "An embedded throwaway PostgreSQL server");
  sandbox->add_option("action", action, "start, stop or status")
      ->required()
      ->check(CLI::IsMember({"start", "stop", "status"}));
  sandbox->add_option("--dir", dir, "Directory of the sandbox")->capture_default_str();
  sandbox->add_option("--port", port, "Loopback port for start (default: a free one)")->check(CLI::Range(0, 65535));
  sandbox->add_flag("--keep", keep, "stop: keep the data directory");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? ok : usage;
  }

  // Configuration: environment, then flags. A bad value is a usage error (exit 2).
  // --dsn replaces DATABASE_URL, so DATABASE_URL is not read (nor checked) when it is given.
  try {
    ctx.options = steadypg::client_options::from_env([&](std::string_view name) -> std::optional<std::string> {
      if (name == "DATABASE_URL" && !ctx.dsn_flag.empty()) return std::nullopt;
      const char* v = std::getenv(std::string(name).c_str());
      return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
    });
    if (!ctx.dsn_flag.empty()) {
      steadypg::validate_dsn(ctx.dsn_flag);
      ctx.options.dsn = ctx.dsn_flag;
    }
    if (!route_flag.empty()) ctx.options.cluster.default_route = *steadypg::parse_route(route_flag);
    if (ctx.http_listen.empty()) {
      if (const auto h = steadypg::http::options::from_env()) ctx.http_listen = h->listen;
    } else {
      (void)steadypg::http::parse_listen(ctx.http_listen, "--http");
    }
    if (!ctx.http_listen.empty()) {
      steadypg::http::options h;
      h.listen = ctx.http_listen;
      h.validate();  // loopback only from the command line
    }
    ctx.http_command = *bench || *batch || *copy;
  } catch (...) {
    return report_error(ctx, "config");
  }

  int rc = usage;
  if (*ping) rc = run_ping(ctx);
  else if (*health) rc = run_health(ctx);
  else if (*info) rc = run_info(ctx);
  else if (*topology) rc = run_topology(ctx);
  else if (*exec) rc = run_exec(ctx, sql, params, null_marker, null_opt->count() > 0);
  else if (*bench) rc = run_bench(ctx, bargs);
  else if (*explain) rc = run_explain(ctx, explain_sql, explain_params, explain_analyze, explain_advise);
  else if (*batch) {
    if (batch_a.file.empty() && batch_a.csv.empty()) {
      ctx.log(log_level::error, "batch needs --file F or --sql TEMPLATE --csv F");
      rc = usage;
    } else {
      rc = run_batch(ctx, batch_a);
    }
  } else if (*copy) rc = run_copy(ctx, copy_a);
  else if (*demo) rc = run_demo(ctx);
  else if (*monitor) rc = run_monitor(ctx, monitor_listen);
  else if (*sandbox) rc = run_sandbox(ctx, action, dir, port, keep);
  if (!ctx.metrics_out.empty()) {
    std::ofstream out(ctx.metrics_out);
    out << (ctx.metrics_source ? ctx.metrics_source() : std::string());
    if (!out) {
      ctx.log(log_level::error, "cannot write --metrics-out file", {{"file", ctx.metrics_out}});
      if (rc == ok) rc = usage;
    }
  }
  return rc;
}
