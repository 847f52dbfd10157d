#pragma once

// `steadypg demo`, shared by its parts (demo.cpp, demo_workload.cpp, demo_outage.cpp): the whole
// story in one run — the pool under a mixed workload,
// a pipelined batch with isolated failures, an outage with retries and the circuit breaker,
// a slow query, then health, info and metrics.

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "cli.hpp"
#include "steadypg/http/server.hpp"
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

namespace steadypg::cli::demo_parts {

using clock_type = std::chrono::steady_clock;

// Ctrl-C or SIGTERM: finish the current step quickly, then clean up (schema, server, files).
inline volatile std::sig_atomic_t g_interrupted = 0;
extern "C" inline void on_interrupt(int) { g_interrupted = 1; }
inline bool interrupted() { return g_interrupted != 0; }
struct interrupted_error {};
inline void check_interrupted() {
  if (interrupted()) throw interrupted_error{};
}

inline double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
inline double round2(double v) { return std::round(v * 100.0) / 100.0; }

inline double percentile(std::vector<float>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Library log lines, captured as JSON lines in memory (the demo shows excerpts; stderr stays
// for the display's progress lines). One mutex covers writing and reading the buffer.
class captured_log final : public observe::logger {
 public:
  captured_log()
      : logger(observe::log_level::info),
        m_file(::open_memstream(&m_buf, &m_size)),
        m_json(m_file, observe::log_level::info) {}
  ~captured_log() override {
    std::fclose(m_file);
    std::free(m_buf);
  }
  captured_log(const captured_log&) = delete;
  captured_log& operator=(const captured_log&) = delete;
  /// The captured lines containing `needle`.
  std::vector<std::string> lines_with(std::string_view needle) {
    std::lock_guard lk(m_mutex);
    std::fflush(m_file);
    std::vector<std::string> out;
    std::istringstream in(std::string(m_buf, m_size));
    for (std::string line; std::getline(in, line);) {
      if (line.find(needle) != std::string::npos) out.push_back(line);
    }
    return out;
  }

 protected:
  void write(observe::log_level l, std::string_view component, std::string_view msg,
             std::span<const observe::log_field> fields) override {
    std::lock_guard lk(m_mutex);
    m_json.log(l, component, msg, fields);
  }

 private:
  std::mutex m_mutex;
  char* m_buf = nullptr;
  std::size_t m_size = 0;
  std::FILE* m_file;
  observe::json_logger m_json;
};

// A timestamped event of the outage step.
struct timeline_event {
  double at_ms;
  std::string what;
};

// Records breaker transitions and retries for the timeline (the client gets it teed with the
// log observer).
class demo_observer final : public observer {
 public:
  void start_timeline(clock_type::time_point t0) {
    std::lock_guard lk(m_mutex);
    m_t0 = t0;
    m_events.clear();
    m_recording = true;
    m_retries_logged = 0;
  }
  void stop_timeline() {
    std::lock_guard lk(m_mutex);
    m_recording = false;
  }
  void note(std::string what) {
    std::lock_guard lk(m_mutex);
    if (m_recording) m_events.push_back({ms_between(m_t0, clock_type::now()), std::move(what)});
  }
  std::vector<timeline_event> events() {
    std::lock_guard lk(m_mutex);
    return m_events;
  }
  std::uint64_t retries() const { return m_retries.load(); }
  std::uint64_t transitions_to_open() const { return m_opened.load(); }
  /// Lost COMMITs the server was asked about, by answer.
  std::uint64_t resolved_committed() const { return m_resolved[0].load(); }
  std::uint64_t resolved_aborted() const { return m_resolved[1].load(); }
  std::uint64_t resolved_unknown() const { return m_resolved[2].load(); }

  void on_commit_resolved(const commit_resolution_report& r) noexcept override {
    const int i = r.result == commit_resolution::committed ? 0 : r.result == commit_resolution::aborted ? 1 : 2;
    ++m_resolved[static_cast<std::size_t>(i)];
    try {
      note(fmt::format("lost COMMIT of transaction {} resolved: {} (asked the server for {:.0f} ms)", r.xid,
                       to_string(r.result), std::chrono::duration<double, std::milli>(r.took).count()));
    } catch (...) {
    }
  }

  void on_retry(const retry_report& r) noexcept override {
    ++m_retries;
    try {
      std::lock_guard lk(m_mutex);
      // The first few retries tell the story; the rest are counted.
      if (m_recording && m_retries_logged < 3) {
        ++m_retries_logged;
        m_events.push_back(
            {ms_between(m_t0, clock_type::now()),
             fmt::format("retry of {} (attempt {}, previous attempt {}, backoff {:.0f} ms)", r.operation, r.attempt,
                         r.reason, std::chrono::duration<double, std::milli>(r.delay).count())});
      }
    } catch (...) {
    }
  }
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override {
    if (to == breaker_state::open) ++m_opened;
    try {
      std::string why;
      if (to == breaker_state::open && from == breaker_state::closed)
        why = " (consecutive failures reached the threshold)";
      if (to == breaker_state::half_open) why = " (open time over: one probe call may pass)";
      if (to == breaker_state::open && from == breaker_state::half_open) why = " (the probe failed)";
      if (to == breaker_state::closed) why = " (the probe succeeded)";
      note(fmt::format("circuit breaker {} -> {}{}", to_string(from), to_string(to), why));
    } catch (...) {
    }
  }

 private:
  std::mutex m_mutex;
  clock_type::time_point m_t0{};
  bool m_recording = false;
  int m_retries_logged = 0;
  std::vector<timeline_event> m_events;
  std::atomic<std::uint64_t> m_retries{0}, m_opened{0};
  std::array<std::atomic<std::uint64_t>, 3> m_resolved{};  // committed, aborted, unknown
};

// Where the demo's output goes: the display (text) or nothing until the final JSON.
class display {
 public:
  explicit display(bool json) : m_json(json), m_tty(!json && ::isatty(STDOUT_FILENO) == 1) {}
  [[nodiscard]] bool tty() const { return m_tty; }
  void step(int n, std::string_view title, std::string_view shows) {
    if (m_json) return;
    std::cout << fmt::format("\n[{}/8] {}\n      {}\n", n, title, shows) << std::flush;
  }
  void line(std::string_view text) {
    if (m_json) return;
    std::cout << "      " << text << "\n" << std::flush;
  }
  // A live line: redrawn in place on a terminal, else printed once a second.
  void live(std::string_view text, bool every_second_tick) {
    if (m_json) return;
    if (m_tty) {
      std::cout << "\r      " << text << "\x1b[K" << std::flush;
      m_live = true;
    } else if (every_second_tick) {
      std::cout << "      " << text << "\n" << std::flush;
    }
  }
  void end_live() {
    if (m_live) std::cout << "\n";
    m_live = false;
  }

 private:
  bool m_json;
  bool m_tty;
  bool m_live = false;
};

// Latencies of one worker, handed to the display thread tick by tick.
struct worker_samples {
  std::mutex mutex;
  std::vector<float> fresh;  // ms, since the last tick
  std::uint64_t ops = 0, errors = 0, rejected = 0;
};

struct workload_result {
  std::uint64_t ops = 0, reads = 0, writes = 0, errors = 0, rejected = 0;
  double seconds = 0, ops_per_s = 0, p50_ms = 0, p99_ms = 0;
  std::vector<json_doc> timeline;
};

class demo {
 public:
  demo(const context& ctx)
      : m_ctx(ctx), m_out(ctx.json), m_log_observer(m_log), m_observers(&m_log_observer, &m_events) {}

  int run() {
    const auto t_start = clock_type::now();
    std::cout.setf(std::ios::unitbuf);
    if (!m_ctx.json) std::cout << "steadypg demo: a resilient, observable PostgreSQL client at work\n";
    start_server();
    make_client();
    for (auto step : {&demo::step_connect, &demo::step_workload, &demo::step_batch, &demo::step_outage,
                      &demo::step_slow_query, &demo::step_report, &demo::step_switchover, &demo::step_cache}) {
      check_interrupted();
      (this->*step)();
    }
    if (m_http && !m_ctx.http_listen.empty()) {
      // --http: the story is over, the dashboard stays until Ctrl-C (then the usual clean-up).
      if (!m_ctx.json) std::cout << fmt::format("\nserving the dashboard at {} until Ctrl-C\n", m_http->url());
      while (!interrupted()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      g_interrupted = 0;
    }
    check_interrupted();
    cleanup();
    m_report["duration_s"] = round2(std::chrono::duration<double>(clock_type::now() - t_start).count());
    m_report["ok"] = m_problems.empty();
    m_report["problems"] = m_problems;
    if (m_ctx.json) {
      context::print_json(m_report);
    } else {
      std::cout << fmt::format("\ndemo finished in {:.1f} s{}\n",
                               std::chrono::duration<double>(clock_type::now() - t_start).count(),
                               m_problems.empty() ? "; everything behaved as described" : "");
      for (const auto& p : m_problems) std::cout << "  problem: " << p << "\n";
    }
    return m_problems.empty() ? ok : sql_failure;
  }

  ~demo() {
    try {
      cleanup();
    } catch (...) {
    }
  }

 private:
  void expect(bool condition, std::string what) {
    if (!condition) m_problems.push_back(std::move(what));
  }

  void start_server() {
    if (!m_ctx.options.dsn.empty()) {
      m_dsn = m_ctx.options.dsn;
      m_out.line(fmt::format("using the server of DATABASE_URL/--dsn: {}", redact_dsn(m_dsn)));
      return;
    }
    const auto t0 = clock_type::now();
    testing::temp_cluster_options o;
    o.settings = {{"max_connections", "40"}};
    m_cluster = std::make_unique<testing::temp_cluster>(o);
    m_dsn = m_cluster->dsn();
    m_server_start_ms = ms_between(t0, clock_type::now());
    if (!m_ctx.json) {
      std::cout << fmt::format(
          "started an embedded throwaway PostgreSQL on 127.0.0.1:{} in {:.1f} s (it is removed at "
          "the end)\n",
          m_cluster->port(), m_server_start_ms / 1000.0);
    }
  }

  void make_client() {
    client_options o = m_ctx.options;
    o.dsn = m_dsn;
    o.pool.min_size = 2;
    o.pool.max_size = 8;
    o.pool.acquire_timeout = std::chrono::milliseconds(2000);
    o.connection.connect_timeout = std::chrono::milliseconds(1000);
    o.resilience.retry.max_retries = 3;
    o.resilience.retry.base_delay = std::chrono::milliseconds(50);
    o.resilience.breaker.failure_threshold = 3;
    o.resilience.breaker.open_duration = std::chrono::milliseconds(1000);
    o.observe.slow_query_threshold = std::chrono::milliseconds(200);
    o.observe.metrics_enabled = true;
    m_options = o;
    m_db = std::make_unique<client>(o, &m_observers);
    // The dashboard of the story: on --http's address, else on any free loopback port.
    m_http = start_dashboard(m_ctx, *m_db, m_ctx.http_listen.empty() ? "127.0.0.1:0" : m_ctx.http_listen);
    m_schema = fmt::format("steadypg_demo_{}", ::getpid());
  }

  std::string t(std::string_view table) const { return m_schema + "." + std::string(table); }

  void step_connect();

  // `threads` workers run reads (idempotent) and writes (a transaction) until `stop`; the
  // display thread prints a live line and collects per-tick figures.
  workload_result run_workload(int threads, std::chrono::milliseconds length, int write_percent,
                               const std::function<void(double elapsed_ms)>& on_tick, bool outage);

  void step_workload();

  void step_batch();

  void step_outage();

  void step_slow_query();

  void step_report();

  void step_switchover();

  void step_cache();  // demo_cache.cpp

  void cleanup() {
    if (m_cleaned) return;
    m_cleaned = true;
    // An embedded server that is down is about to be deleted with everything in it.
    const bool server_gone = m_cluster && !m_cluster->running();
    if (m_db && m_created_schema && !server_gone) {
      try {
        // On a connection of its own: the client's breaker may still be open after an outage.
        connection_options co;
        co.dsn = m_dsn;
        co.connect_timeout = std::chrono::milliseconds(3000);
        co.query_timeout = std::chrono::milliseconds(10000);
        connection c(co);
        c.execute(fmt::format("DROP SCHEMA {} CASCADE", m_schema));
        m_out.line("");
        m_out.line(fmt::format("dropped schema {}", m_schema));
      } catch (const std::exception& e) {
        m_out.line(fmt::format("could not drop schema {}: {}", m_schema, e.what()));
      }
    }
    if (m_db) {
      const std::string text = m_final_metrics.empty() ? m_db->metrics().render_prometheus() : m_final_metrics;
      m_ctx.metrics_source = [text] { return text; };
    }
    m_http.reset();
    m_db.reset();
    if (m_cluster) {
      m_cluster.reset();  // stops the server and deletes its directory
      if (!m_ctx.json) std::cout << "stopped and removed the embedded server\n";
    }
  }

  static constexpr int accounts = 10000;
  const context& m_ctx;
  display m_out;
  captured_log m_log;
  observe::log_observer m_log_observer;
  demo_observer m_events;
  observer_tee m_observers;  // what the client reports to: logs, then the timeline
  std::unique_ptr<testing::temp_cluster> m_cluster;
  std::string m_dsn;
  double m_server_start_ms = 0;
  client_options m_options;
  std::unique_ptr<client> m_db;
  std::unique_ptr<http::server> m_http;  // after m_db: stopped first
  std::string m_schema;
  bool m_created_schema = false;
  bool m_cleaned = false;
  std::atomic<std::int64_t> m_next_event{1};
  std::atomic<std::uint64_t> m_acknowledged_writes{0}, m_unknown_writes{0};
  json_doc m_report = json_doc::object();
  std::vector<std::string> m_problems;
  std::string m_final_metrics;
};

}  // namespace steadypg::cli::demo_parts
