#pragma once

// Shared pieces of the steadypg command-line tool.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/client.hpp"
#include "steadypg/config.hpp"
#include "steadypg/observe/log.hpp"

namespace steadypg::http {
class server;
}  // namespace steadypg::http

namespace steadypg::cli {

/// JSON that keeps the order fields were added in (ts, level, msg … in logs).
using json_doc = nlohmann::ordered_json;

/// Exit codes (DESIGN §7).
enum exit_code : int { ok = 0, sql_failure = 1, usage = 2, unavailable = 3 };

using observe::log_level;

/// Global flags and the resolved configuration.
struct context {
  std::string dsn_flag;
  bool json = false;
  std::string log_format = "text";
  std::string log_level_name = "warn";
  client_options options;
  std::string metrics_out;  ///< --metrics-out FILE
  /// --http ADDR (or POSTGRESQL_HTTP_LISTEN): serve the dashboard while the command runs.
  std::string http_listen;
  /// The command is long-running (bench, batch, copy, demo): its client serves http_listen.
  bool http_command = false;
  /// The metrics of the client a command used (bench …); written to metrics_out at exit.
  mutable std::function<std::string()> metrics_source;
  mutable std::unique_ptr<observe::logger> m_logger;

  [[nodiscard]] log_level level() const;
  /// The library logger for --log-format / --log-level on stderr (created on first use);
  /// the CLI's own lines and the library's events go through the same one.
  [[nodiscard]] observe::logger& logger() const;
  /// One log line (component "cli"); never contains a password.
  void log(log_level lvl, std::string_view msg, const json_doc& fields = json_doc::object()) const;
  /// Prints a JSON document on stdout.
  static void print_json(const json_doc& doc);
  /// Prints a JSON object on stdout with the member `raw_member` written as `raw_json`
  /// (JSON text the caller built and checked, e.g. around the server's json values) instead
  /// of its value in `doc`; every other member is written as print_json(doc) writes it.
  static void print_json(const json_doc& doc, std::string_view raw_member, std::string_view raw_json);
};

/// The client a command uses: the library's events are logged through the context's logger,
/// and when it ends its metrics become what --metrics-out writes.
class command_client {
 public:
  /// `also` (may be null; must outlive this) receives the client's events too.
  command_client(const context& ctx, const client_options& options, observer* also = nullptr);
  ~command_client();
  command_client(const command_client&) = delete;
  command_client& operator=(const command_client&) = delete;
  client& operator*() noexcept { return *m_db; }
  client* operator->() noexcept { return m_db.get(); }

 private:
  const context& m_ctx;
  std::unique_ptr<steadypg::observe::log_observer> m_events;
  std::unique_ptr<observer_tee> m_tee;
  std::unique_ptr<client> m_db;
  std::unique_ptr<http::server> m_http;  // after m_db: stopped first
};

/// Maps an exception from the library to an exit code, logging it (and printing a JSON
/// error object on stdout with --json).
int report_error(const context& ctx, std::string_view command);

/// `info` output (JSON fields of DESIGN §7, plus recent_slow_queries) and its text form.
json_doc info_json(const connection_info_report& info);
std::string info_text(const connection_info_report& info);

/// `topology`: every host with its role, lag, timeline, probe time and breaker; exit 0 with a
/// primary, 3 without.
int run_topology(const context& ctx);
/// The hosts of a topology report as JSON (DESIGN §9 `topology` fields), the primary
/// ("host:port" or null), and a table for people.
json_doc hosts_json(const topology_report& t);
json_doc primary_json(const topology_report& t);
std::string hosts_text(const topology_report& t);

int run_ping(const context& ctx);
int run_health(const context& ctx);
int run_info(const context& ctx);
/// `exec`: `null_marker` (when `use_null_marker`) is the --null string: a -p value equal to it
/// binds NULL, and NULLs in the text output are printed as it.
int run_exec(const context& ctx, const std::string& sql, const std::vector<std::string>& params,
             const std::string& null_marker, bool use_null_marker);
/// `explain`: the plan, findings and (with `advise`) index advice; exit 0, 1 when the statement fails.
int run_explain(const context& ctx, const std::string& sql, const std::vector<std::string>& params, bool analyze,
                bool advise);
int run_sandbox(const context& ctx, const std::string& action, const std::string& dir, int port, bool keep);

/// Arguments of `steadypg bench`.
struct bench_args {
  bool init = false;
  int scale = 1;
  std::string workload = "select";
  int clients = 1;
  int seconds = 10;
  int depth = 16;
  bool no_resilience = false;
  std::string pool_mode;  ///< --pool-mode: fixed, adaptive, observe ("" = POSTGRESQL_POOL_MODE)
  bool ramp = false;      ///< --ramp: clients step up then down over the run
  std::string cache;      ///< --cache local|redis://…: select through query_cached
  int keys = 0;           ///< --keys N: random accounts among the first N (0: all)
};
int run_bench(const context& ctx, const bench_args& args);

/// `options` with the query cache's backend built from cache.url (POSTGRESQL_CACHE_URL or
/// --cache): "local" or redis://… (steadypg::redis); unchanged without a URL.
[[nodiscard]] client_options with_cache_backend(client_options options);
/// The cache's figures for `info` and `bench` (hit_ratio, hits, misses, …).
json_doc cache_json(const cache_stats& stats);
std::string cache_text(const cache_stats& stats);

/// Arguments of `steadypg batch` (unset numbers come from POSTGRESQL_BATCH_*).
struct batch_args {
  std::string file;  ///< one statement per line
  std::string sql;   ///< with csv: the template whose $1…$n each record binds
  std::string csv;
  bool header = false;
  std::optional<int> batch_size, concurrency;
  std::optional<long> timeout_ms;
  std::string mode = "independent";
  bool stop_on_error = false;
};
int run_batch(const context& ctx, const batch_args& args);

/// Arguments of `steadypg copy`.
struct copy_args {
  std::string table;
  std::string file;   ///< load from this file ("-": standard input)
  std::string to;     ///< export to this file ("-": standard output)
  std::string query;  ///< export the rows of this query instead of `table`
  std::string format = "text";
  std::string columns;  ///< comma-separated; empty: all, in table order
  bool header = false;
};
/// `copy`: a load with --file, an export with --to.
int run_copy(const context& ctx, const copy_args& args);

/// `steadypg demo` (DESIGN §8).
int run_demo(const context& ctx);

/// Starts the dashboard for `db` on `listen` (none when empty: returns null) and prints its URL
/// on stderr. Throws config_error for a bad or unusable address.
std::unique_ptr<http::server> start_dashboard(const context& ctx, client& db, const std::string& listen);
/// `monitor --listen ADDR`: the dashboard of the database until SIGINT or SIGTERM.
int run_monitor(const context& ctx, const std::string& listen);

/// A one-line progress bar on stderr, drawn only on a terminal and never with --json.
class progress_bar {
 public:
  /// Drawn only when `allowed` too (false when the terminal also shows the data).
  progress_bar(const context& ctx, std::string label, bool allowed = true);
  ~progress_bar();
  progress_bar(const progress_bar&) = delete;
  progress_bar& operator=(const progress_bar&) = delete;
  /// Redraws (at most 10 times a second, and always at 100%); a negative fraction means the
  /// total is unknown: only `detail` is shown.
  void update(double fraction, std::string_view detail);
  /// Ends the line.
  void finish();

 private:
  bool m_enabled;
  bool m_drawn = false;
  std::string m_label;
  std::chrono::steady_clock::time_point m_last{};
};

/// A figure for --json output: three decimals.
inline double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

/// Keeps a value alive so the compiler cannot drop the work that produced it.
inline void benchmark_sink(int v) { asm volatile("" : : "g"(v) : "memory"); }

/// Default sandbox directory: $TMPDIR/steadypg-sandbox-<uid>.
std::string default_sandbox_dir();

}  // namespace steadypg::cli
