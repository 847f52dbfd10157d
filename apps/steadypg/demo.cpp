// `steadypg demo`: the whole story in one run (DESIGN §8) — the pool under a mixed workload,
// a pipelined batch with isolated failures, an outage with retries and the circuit breaker,
// a slow query, then health, info and metrics.

#include <unistd.h>

#include <algorithm>
#include <csignal>
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
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

namespace steadypg::cli {
namespace {

using clock_type = std::chrono::steady_clock;

// Ctrl-C or SIGTERM: finish the current step quickly, then clean up (schema, server, files).
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }
bool interrupted() { return g_interrupted != 0; }
struct interrupted_error {};
void check_interrupted() {
  if (interrupted()) throw interrupted_error{};
}

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
double round2(double v) { return std::round(v * 100.0) / 100.0; }

double percentile(std::vector<float>& v, double q) {
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

  void on_retry(const retry_report& r) noexcept override {
    ++m_retries;
    try {
      std::lock_guard lk(m_mutex);
      // The first few retries tell the story; the rest are counted.
      if (m_recording && m_retries_logged < 3) {
        ++m_retries_logged;
        m_events.push_back({ms_between(m_t0, clock_type::now()),
                            fmt::format("retry of {} (attempt {}, previous attempt {}, backoff {:.0f} ms)",
                                        r.operation, r.attempt, r.reason,
                                        std::chrono::duration<double, std::milli>(r.delay).count())});
      }
    } catch (...) {
    }
  }
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override {
    if (to == breaker_state::open) ++m_opened;
    try {
      std::string why;
      if (to == breaker_state::open && from == breaker_state::closed) why = " (consecutive failures reached the threshold)";
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
};

// Where the demo's output goes: the display (text) or nothing until the final JSON.
class display {
 public:
  explicit display(bool json) : m_json(json), m_tty(!json && ::isatty(STDOUT_FILENO) == 1) {}
  [[nodiscard]] bool tty() const { return m_tty; }
  void step(int n, std::string_view title, std::string_view shows) {
    if (m_json) return;
    std::cout << fmt::format("\n[{}/6] {}\n      {}\n", n, title, shows) << std::flush;
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
  demo(const context& ctx) : m_ctx(ctx), m_out(ctx.json), m_log_observer(m_log),
        m_observers(&m_log_observer, &m_events) {}

  int run() {
    const auto t_start = clock_type::now();
    std::cout.setf(std::ios::unitbuf);
    if (!m_ctx.json) std::cout << "steadypg demo: a resilient, observable PostgreSQL client at work\n";
    start_server();
    make_client();
    for (auto step : {&demo::step_connect, &demo::step_workload, &demo::step_batch, &demo::step_outage,
                      &demo::step_slow_query, &demo::step_report}) {
      check_interrupted();
      (this->*step)();
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
      std::cout << fmt::format("started an embedded throwaway PostgreSQL on 127.0.0.1:{} in {:.1f} s (it is removed at "
                               "the end)\n",
                               m_cluster->port(), m_server_start_ms / 1000.0);
    }
  }

  void make_client() {
    client_options o = m_ctx.options;
    o.dsn = m_dsn;
    o.pool_min = 2;
    o.pool_max = 8;
    o.acquire_timeout = std::chrono::milliseconds(2000);
    o.connection_timeout = std::chrono::milliseconds(1000);
    o.max_retries = 3;
    o.retry_delay = std::chrono::milliseconds(50);
    o.circuit_breaker_threshold = 3;
    o.circuit_breaker_timeout = std::chrono::milliseconds(1000);
    o.slow_query_threshold = std::chrono::milliseconds(200);
    o.metrics_enabled = true;
    m_options = o;
    m_db = std::make_unique<client>(o, &m_observers);
    m_schema = fmt::format("steadypg_demo_{}", ::getpid());
  }

  std::string t(std::string_view table) const { return m_schema + "." + std::string(table); }

  void step_connect() {
    m_out.step(1, "Connect through the pool",
               "The client opens pooled connections, learns the server and creates its own schema.");
    const auto info = m_db->connection_info();
    m_db->execute(fmt::format("CREATE SCHEMA {}", m_schema));
    m_created_schema = true;
    m_db->execute(fmt::format("CREATE TABLE {} (id int PRIMARY KEY, balance bigint NOT NULL, updated_at timestamptz)",
                              t("accounts")));
    m_db->execute(fmt::format("CREATE TABLE {} (id bigint PRIMARY KEY, account int, amount int, at timestamptz)",
                              t("events")));
    m_db->execute(fmt::format("CREATE TABLE {} (id int PRIMARY KEY, account int, value float8 CHECK (value >= 0))",
                              t("readings")));
    const auto c0 = clock_type::now();
    const auto seeded = m_db->copy_from(t("accounts"), {"id", "balance"}, [](copy_in& copy) {
      for (int id = 1; id <= accounts; ++id) copy.write_row(id, std::int64_t{1000});
    });
    const double copy_ms = ms_between(c0, clock_type::now());
    const auto& po = m_db->pool().options();
    m_out.line(fmt::format("server: PostgreSQL {} (up {} s, {} of max_connections {} sessions in this database)",
                           info.server.version, info.server.uptime_seconds, info.server.connections.total,
                           info.server.connections.max));
    m_out.line(fmt::format("pool: {}..{} connections, acquire timeout {} ms, connect timeout {} ms", po.min_size,
                           po.max_size, po.acquire_timeout.count(), m_options.connection_timeout.count()));
    m_out.line(fmt::format("resilience: up to {} retries (full-jitter backoff from {} ms), breaker opens after {} "
                           "failures for {} ms; slow queries over {} ms",
                           m_options.max_retries, m_options.retry_delay.count(), m_options.circuit_breaker_threshold,
                           m_options.circuit_breaker_timeout.count(), m_options.slow_query_threshold.count()));
    m_out.line(fmt::format("schema {}: seeded {} accounts with COPY in {:.1f} ms", m_schema, seeded, copy_ms));
    expect(seeded == accounts, "the COPY seed loaded a different number of rows");
    m_report["server"] = {{"version", info.server.version},
                          {"embedded", m_cluster != nullptr},
                          {"start_ms", round2(m_server_start_ms)}};
    m_report["pool"] = {{"min", po.min_size}, {"max", po.max_size}, {"acquire_timeout_ms", po.acquire_timeout.count()}};
    m_report["schema"] = m_schema;
    m_report["seed"] = {{"rows", seeded}, {"copy_ms", round2(copy_ms)}};
  }

  // `threads` workers run reads (idempotent) and writes (a transaction) until `stop`; the
  // display thread prints a live line and collects per-tick figures.
  workload_result run_workload(int threads, std::chrono::milliseconds length, int write_percent,
                               const std::function<void(double elapsed_ms)>& on_tick, bool outage) {
    std::vector<worker_samples> samples(static_cast<std::size_t>(threads));
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads{0}, writes{0};
    std::vector<std::thread> workers;
    const std::string read_sql = fmt::format("SELECT balance FROM {} WHERE id = $1", t("accounts"));
    const std::string update_sql =
        fmt::format("UPDATE {} SET balance = balance + $2, updated_at = now() WHERE id = $1", t("accounts"));
    const std::string event_sql = fmt::format("INSERT INTO {} VALUES ($1, $2, $3, now())", t("events"));
    for (int w = 0; w < threads; ++w) {
      workers.emplace_back([&, w] {
        std::mt19937 rng(static_cast<unsigned>(w * 7919 + 1));
        std::uniform_int_distribution<int> account(1, accounts), pct(0, 99), amount(-50, 50);
        auto& mine = samples[static_cast<std::size_t>(w)];
        const statement read = statement{read_sql}.idempotent().name("read balance");
        while (!stop.load(std::memory_order_relaxed)) {
          const auto t0 = clock_type::now();
          bool failed = false, rejected = false;
          const bool is_write = pct(rng) < write_percent;
          try {
            if (is_write) {
              const std::int64_t event_id = m_next_event.fetch_add(1);
              const int id = account(rng), delta = amount(rng);
              m_db->transaction([&](transaction& tx) {
                tx.execute(update_sql, id, delta);
                tx.execute(event_sql, event_id, id, delta);
              });
              m_acknowledged_writes.fetch_add(1);
              writes.fetch_add(1, std::memory_order_relaxed);
            } else {
              (void)m_db->execute(read, account(rng));
              reads.fetch_add(1, std::memory_order_relaxed);
            }
          } catch (const circuit_open&) {
            failed = rejected = true;
          } catch (const indeterminate_commit&) {
            failed = true;
            m_unknown_writes.fetch_add(1);
          } catch (const error& e) {
            failed = true;
            if (is_write && e.outcome() == steadypg::outcome::indeterminate) m_unknown_writes.fetch_add(1);
          }
          const auto took = static_cast<float>(ms_between(t0, clock_type::now()));
          {
            std::lock_guard lk(mine.mutex);
            if (!failed) mine.fresh.push_back(took);
            ++(failed ? mine.errors : mine.ops);
            if (rejected) ++mine.rejected;
          }
          // A service backs off a little when the database is unavailable.
          if (failed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      });
    }
    workload_result r;
    std::vector<float> all;
    const auto t0 = clock_type::now();
    std::uint64_t last_ops = 0, last_errors = 0, last_rejected = 0;
    auto next_second = t0 + std::chrono::seconds(1);
    const auto tick = outage ? std::chrono::milliseconds(250) : std::chrono::milliseconds(200);
    for (auto next = t0 + tick;; next += tick) {
      std::this_thread::sleep_until(next);
      const double elapsed = ms_between(t0, clock_type::now());
      if (on_tick) on_tick(elapsed);
      std::vector<float> fresh;
      std::uint64_t ops = 0, errors = 0, rejected = 0;
      for (auto& s : samples) {
        std::lock_guard lk(s.mutex);
        fresh.insert(fresh.end(), s.fresh.begin(), s.fresh.end());
        s.fresh.clear();
        ops += s.ops;
        errors += s.errors;
        rejected += s.rejected;
      }
      all.insert(all.end(), fresh.begin(), fresh.end());
      const auto st = m_db->pool_statistics();
      const double p99 = percentile(fresh, 0.99);
      const double secs = std::chrono::duration<double>(tick).count();
      const bool second = clock_type::now() >= next_second;
      if (second) next_second += std::chrono::seconds(1);
      if (outage) {
        r.timeline.push_back({{"t_ms", std::lround(elapsed)},
                              {"ok", ops - last_ops},
                              {"errors", errors - last_errors},
                              {"rejected_by_breaker", rejected - last_rejected},
                              {"breaker", std::string(to_string(m_db->breaker().state()))},
                              {"pool_total", st.total}});
      } else if (second) {
        r.timeline.push_back({{"t_ms", std::lround(elapsed)}, {"ops", ops}, {"errors", errors}});
      }
      m_out.live(fmt::format("{:5.1f} s  {:7} ops  {:6.0f} ops/s  p99 {:6.2f} ms  errors {:4}  breaker {:9}  pool {} "
                             "active / {} idle / {} waiting",
                             elapsed / 1000.0, ops, static_cast<double>(ops - last_ops) / secs, p99, errors,
                             to_string(m_db->breaker().state()), st.active, st.idle, st.waiting),
                 second);
      last_ops = ops;
      last_errors = errors;
      last_rejected = rejected;
      r.ops = ops;
      r.errors = errors;
      r.rejected = rejected;
      if (clock_type::now() - t0 >= length || interrupted()) break;
    }
    stop = true;
    for (auto& w : workers) w.join();
    m_out.end_live();
    for (auto& s : samples) {  // what finished after the last tick
      std::lock_guard lk(s.mutex);
      all.insert(all.end(), s.fresh.begin(), s.fresh.end());
    }
    r.ops = r.errors = r.rejected = 0;
    for (auto& s : samples) {
      r.ops += s.ops;
      r.errors += s.errors;
      r.rejected += s.rejected;
    }
    r.reads = reads;
    r.writes = writes;
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.ops_per_s = static_cast<double>(r.ops) / r.seconds;
    r.p50_ms = percentile(all, 0.50);
    r.p99_ms = percentile(all, 0.99);
    return r;
  }

  void step_workload() {
    m_out.step(2, "Mixed read/write workload",
               "4 threads share the pool for 4 s: 80% point reads, 20% two-statement transactions, live.");
    const auto r = run_workload(4, std::chrono::milliseconds(4000), 20, {}, false);
    m_out.line(fmt::format("{} ops ({} reads, {} write transactions), {} errors, {:.0f} ops/s, p50 {:.2f} ms, p99 "
                           "{:.2f} ms",
                           r.ops, r.reads, r.writes, r.errors, r.ops_per_s, r.p50_ms, r.p99_ms));
    const auto st = m_db->pool_statistics();
    m_out.line(fmt::format("pool: {} acquires, {} had to wait, {} connections opened", st.acquire_count,
                           st.acquires_waited, st.connections_created));
    expect(r.ops > 0 && r.errors == 0, fmt::format("the workload saw {} errors", r.errors));
    m_report["workload"] = {{"threads", 4},
                            {"seconds", round2(r.seconds)},
                            {"ops", r.ops},
                            {"reads", r.reads},
                            {"writes", r.writes},
                            {"errors", r.errors},
                            {"ops_per_s", std::round(r.ops_per_s)},
                            {"p50_ms", round2(r.p50_ms)},
                            {"p99_ms", round2(r.p99_ms)},
                            {"timeline", r.timeline}};
  }

  void step_batch() {
    m_out.step(3, "Batch insert in pipeline mode",
               "30,000 INSERTs, 500 per round trip on 2 connections; 5 rows that break a CHECK fail on their own.");
    constexpr int n = 30000;
    const std::string sql = fmt::format("INSERT INTO {} (id, account, value) VALUES ($1, $2, $3)", t("readings"));
    batch_options o;
    o.mode = batch_mode::pipeline;
    o.batch_size = 500;
    o.concurrency = 2;
    o.timeout = std::chrono::seconds(60);
    progress_bar bar(m_ctx, "      batch");
    o.on_progress = [&](const batch_progress& p) {
      bar.update(static_cast<double>(p.processed) / static_cast<double>(p.total),
                 fmt::format("{}/{} ops, {} failed", p.processed, p.total, p.failed));
    };
    const auto report = m_db->batch_execute(
        n,
        [&](std::size_t i) {
          const bool bad = i % 6000 == 5999;  // 5 deliberately invalid rows
          return batch_operation(sql, static_cast<int>(i), static_cast<int>(i % accounts) + 1,
                                 bad ? -1.0 : static_cast<double>(i % 100) / 10.0);
        },
        o);
    bar.finish();
    const auto& st = report.stats;
    const double ms = std::chrono::duration<double, std::milli>(st.duration).count();
    m_out.line(fmt::format("{} succeeded, {} failed ({:.2f}% success) in {:.0f} ms, {:.0f} ops/s", st.succeeded,
                           st.failed, st.success_rate * 100.0, ms, static_cast<double>(st.total) * 1000.0 / ms));
    json_doc errors = json_doc::array();
    for (const auto& e : report.errors) {
      m_out.line(fmt::format("  operation {:5}: {} {}", e.index, e.sqlstate, e.message.substr(0, e.message.find(" (SQLSTATE"))));
      errors.push_back({{"index", e.index}, {"sqlstate", e.sqlstate}, {"message", e.message}});
    }
    const auto rows = m_db->query_value<std::int64_t>(fmt::format("SELECT count(*) FROM {}", t("readings")));
    m_out.line(fmt::format("the table holds {} rows: every other operation committed exactly once", rows));
    bool indices_ok = report.errors.size() == 5;
    for (const auto& e : report.errors) indices_ok = indices_ok && e.index % 6000 == 5999 && e.sqlstate == "23514";
    expect(indices_ok && rows == n - 5, "the batch did not isolate exactly the 5 bad rows");
    m_report["batch"] = {{"mode", "pipeline"},
                         {"stats",
                          {{"processed", st.processed},
                           {"succeeded", st.succeeded},
                           {"failed", st.failed},
                           {"success_rate", st.success_rate},
                           {"duration_ms", round2(ms)}}},
                         {"errors", errors},
                         {"rows_in_table", rows}};
  }

  void step_outage() {
    m_out.step(4, "Outage: the server stops for 3 s while 4 threads keep working",
               "Retries ride out short failures; the breaker then fails fast, probes, and closes on recovery.");
    if (!m_cluster) {
      m_out.line("skipped: this needs the embedded server (the demo never stops a server it did not start)");
      m_report["outage"] = {{"skipped", true}};
      return;
    }
    const auto events_before = m_db->query_value<std::int64_t>(fmt::format("SELECT count(*) FROM {}", t("events")));
    const auto acknowledged_before = m_acknowledged_writes.load();
    const auto unknown_before = m_unknown_writes.load();
    const auto t0 = clock_type::now();
    m_events.start_timeline(t0);
    double stopped_at = -1, started_at = -1;
    bool restarted = false;
    // Stopped and started from this thread: the server dies with the thread that started it.
    const auto r = run_workload(
        4, std::chrono::milliseconds(7500), 20,
        [&](double elapsed) {
          if (stopped_at < 0 && elapsed >= 1000) {
            stopped_at = elapsed;
            m_events.note("server stopped (fast shutdown: sessions are terminated)");
            m_cluster->stop();
          } else if (stopped_at >= 0 && !restarted && elapsed >= stopped_at + 3000) {
            started_at = ms_between(t0, clock_type::now());
            m_events.note("server starting");
            m_cluster->start();
            restarted = true;
            m_events.note("server accepts connections again");
          }
        },
        true);
    m_events.stop_timeline();
    check_interrupted();
    const auto events = m_events.events();
    m_out.line("timeline (ms after the workload started):");
    json_doc timeline = json_doc::array();
    double closed_at = -1;
    for (const auto& e : events) {
      m_out.line(fmt::format("  +{:6.0f}  {}", e.at_ms, e.what));
      timeline.push_back({{"t_ms", std::lround(e.at_ms)}, {"event", e.what}});
      if (e.what.find("-> closed") != std::string::npos && e.at_ms > started_at && started_at > 0 && closed_at < 0) {
        closed_at = e.at_ms;
      }
    }
    m_out.line("per 250 ms around the outage:   t      ok  errors  rejected-at-once  breaker");
    for (const auto& s : r.timeline) {
      const double at = s["t_ms"].get<double>();
      if (at < stopped_at - 500 || (started_at > 0 && at > started_at + 1000)) continue;
      m_out.line(fmt::format("                           {:5}  {:6}  {:6}  {:16}  {}", s["t_ms"].get<long>(),
                             s["ok"].get<std::uint64_t>(),
                             s["errors"].get<std::uint64_t>(), s["rejected_by_breaker"].get<std::uint64_t>(),
                             s["breaker"].get<std::string>()));
    }
    // Let the pool settle, then prove that no write was applied twice or lost silently.
    const auto events_after = m_db->query_value<std::int64_t>(
        statement{fmt::format("SELECT count(*) FROM {}", t("events"))}.idempotent());
    const auto acknowledged = m_acknowledged_writes.load() - acknowledged_before;
    const auto rows_written = events_after - events_before;
    const auto unknown = m_unknown_writes.load() - unknown_before;
    m_out.line(fmt::format("{} calls succeeded, {} failed, {} of them rejected at once by the open breaker; {} retries",
                           r.ops, r.errors, r.rejected, m_events.retries()));
    if (closed_at > 0) {
      m_out.line(fmt::format("recovered {:.0f} ms after the server was started again (its startup included)",
                             closed_at - started_at));
    }
    m_out.line(fmt::format("writes: {} acknowledged, {} rows written, {} with an unknown outcome (never re-sent)",
                           acknowledged, rows_written, unknown));
    expect(restarted, "the server did not come back");
    expect(m_events.transitions_to_open() >= 1, "the breaker never opened during the outage");
    expect(r.rejected > 0, "no call was rejected at once by the open breaker");
    expect(m_db->breaker().state() == breaker_state::closed && closed_at > 0,
           "the breaker did not close after the server came back");
    expect(rows_written >= static_cast<std::int64_t>(acknowledged) &&
               rows_written <= static_cast<std::int64_t>(acknowledged + unknown),
           "the rows written do not match the acknowledged writes");
    m_report["outage"] = {{"server_stopped_ms", std::lround(stopped_at)},
                          {"server_started_ms", std::lround(started_at)},
                          {"breaker_closed_ms", std::lround(closed_at)},
                          {"ok", r.ops},
                          {"errors", r.errors},
                          {"rejected_by_breaker", r.rejected},
                          {"retries", m_events.retries()},
                          {"writes_acknowledged", acknowledged},
                          {"rows_written", rows_written},
                          {"writes_unknown_outcome", unknown},
                          {"events", timeline},
                          {"per_250ms", r.timeline}};
  }

  void step_slow_query() {
    m_out.step(5, "A slow query",
               fmt::format("A call over the slow-query threshold ({} ms) is flagged, logged and counted.",
                           m_options.slow_query_threshold.count()));
    const auto before = m_db->metric_events() ? m_db->metric_events()->slow_queries() : 0;
    (void)m_db->execute(fmt::format("SELECT pg_sleep(0.3), count(*) FROM {} WHERE balance > $1", t("accounts")),
                        std::int64_t{0});
    const auto after = m_db->metric_events() ? m_db->metric_events()->slow_queries() : 0;
    const auto recent = m_db->recent_slow_queries();
    const auto lines = m_log.lines_with("\"msg\":\"slow query\"");
    if (!lines.empty()) m_out.line("log: " + lines.back());
    if (!recent.empty()) {
      m_out.line(fmt::format("kept: {:.0f} ms, {} row(s): {}", recent.back().duration_ms, recent.back().rows,
                             recent.back().sql));
    }
    m_out.line(fmt::format("postgresql_slow_query_total: {} -> {}", before, after));
    expect(after == before + 1 && !recent.empty() && !lines.empty(), "the slow query was not flagged");
    m_report["slow_query"] = {{"counted", after - before},
                              {"log_line", lines.empty() ? json_doc(nullptr) : json_doc::parse(lines.back())},
                              {"duration_ms", recent.empty() ? 0.0 : round2(recent.back().duration_ms)}};
  }

  void step_report() {
    m_out.step(6, "Health, info and metrics", "What an SRE sees: health, connection insight, Prometheus metrics.");
    const auto h = m_db->health_check();
    m_out.line(fmt::format("health: {} (ping {:.2f} ms, threshold {:.0f} ms, breaker {}){}", to_string(h.status),
                           h.latency_ms, h.threshold_ms, to_string(h.breaker), h.reason.empty() ? "" : ": " + h.reason));
    expect(h.status == health_status::healthy, "the client is not healthy at the end: " + h.reason);
    const auto info = m_db->connection_info();
    std::istringstream text(info_text(info));
    for (std::string line; std::getline(text, line);) m_out.line("info: " + line);
    const std::string prom = m_db->metrics().render_prometheus();
    m_out.line("metrics (excerpt of the Prometheus text):");
    json_doc metrics = json_doc::object();
    static constexpr std::string_view shown[] = {
        "postgresql_operation_retry_total",   "postgresql_slow_query_total",
        "postgresql_batch_duration_seconds_count", "postgresql_batch_duration_seconds_sum",
        "postgresql_batch_operations_total",  "postgresql_batch_errors_total",
        "postgresql_queries_total",           "postgresql_circuit_breaker_transitions_total",
        "postgresql_connections_closed_total{reason=\"broken\"}", "postgresql_query_duration_seconds_count"};
    std::istringstream in(prom);
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      for (auto name : shown) {
        if (line.rfind(name, 0) == 0 && (line.size() > name.size()) &&
            (line[name.size()] == ' ' || line[name.size()] == '{' || name.back() == '}')) {
          m_out.line("  " + line);
          const auto sp = line.rfind(' ');
          metrics[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
          break;
        }
      }
    }
    m_report["health"] = {{"status", std::string(to_string(h.status))},
                          {"latency_ms", round2(h.latency_ms)},
                          {"breaker", std::string(to_string(h.breaker))}};
    m_report["info"] = info_json(info);
    m_report["metrics"] = metrics;
    m_final_metrics = prom;
  }

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
  std::string m_schema;
  bool m_created_schema = false;
  bool m_cleaned = false;
  std::atomic<std::int64_t> m_next_event{1};
  std::atomic<std::uint64_t> m_acknowledged_writes{0}, m_unknown_writes{0};
  json_doc m_report = json_doc::object();
  std::vector<std::string> m_problems;
  std::string m_final_metrics;
};

}  // namespace

int run_demo(const context& ctx) {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  try {
    demo d(ctx);
    return d.run();
  } catch (const interrupted_error&) {
    // The demo's destructor has dropped its schema and removed its server by now.
    std::cerr << "demo interrupted; cleaned up\n";
    return 130;
  } catch (...) {
    return report_error(ctx, "demo");
  }
}

}  // namespace steadypg::cli
