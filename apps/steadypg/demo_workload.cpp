// `steadypg demo`, steps 1–3: connect through the pool, the mixed workload, the pipelined batch.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <thread>

#include "demo.hpp"

namespace steadypg::cli::demo_parts {

void demo::step_connect() {
  m_out.step(1, "Connect through the pool",
             "The client opens pooled connections, learns the server and creates its own schema.");
  const auto info = m_db->connection_info();
  m_db->execute(fmt::format("CREATE SCHEMA {}", m_schema));
  m_created_schema = true;
  m_db->execute(fmt::format("CREATE TABLE {} (id int PRIMARY KEY, balance bigint NOT NULL, updated_at timestamptz)",
                            t("accounts")));
  m_db->execute(
      fmt::format("CREATE TABLE {} (id bigint PRIMARY KEY, account int, amount int, at timestamptz)", t("events")));
  m_db->execute(
      fmt::format("CREATE TABLE {} (id int PRIMARY KEY, account int, value float8 CHECK (value >= 0))", t("readings")));
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
                         po.max_size, po.acquire_timeout.count(), m_options.connection.connect_timeout.count()));
  m_out.line(
      fmt::format("resilience: up to {} retries (full-jitter backoff from {} ms), breaker opens after {} "
                  "failures for {} ms; slow queries over {} ms",
                  m_options.resilience.retry.max_retries, m_options.resilience.retry.base_delay.count(),
                  m_options.resilience.breaker.failure_threshold, m_options.resilience.breaker.open_duration.count(),
                  m_options.observe.slow_query_threshold.count()));
  m_out.line(fmt::format("schema {}: seeded {} accounts with COPY in {:.1f} ms", m_schema, seeded, copy_ms));
  expect(seeded == accounts, "the COPY seed loaded a different number of rows");
  m_report["server"] = {{"version", info.server.version},
                        {"embedded", m_cluster != nullptr},
                        {"start_ms", round2(m_server_start_ms)}};
  m_report["pool"] = {{"min", po.min_size}, {"max", po.max_size}, {"acquire_timeout_ms", po.acquire_timeout.count()}};
  m_report["schema"] = m_schema;
  m_report["seed"] = {{"rows", seeded}, {"copy_ms", round2(copy_ms)}};
}

workload_result demo::run_workload(int threads, std::chrono::milliseconds length, int write_percent,
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

void demo::step_workload() {
  m_out.step(2, "Mixed read/write workload",
             "4 threads share the pool for 4 s: 80% point reads, 20% two-statement transactions, live.");
  const auto r = run_workload(4, std::chrono::milliseconds(4000), 20, {}, false);
  m_out.line(
      fmt::format("{} ops ({} reads, {} write transactions), {} errors, {:.0f} ops/s, p50 {:.2f} ms, p99 "
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

void demo::step_batch() {
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
    m_out.line(
        fmt::format("  operation {:5}: {} {}", e.index, e.sqlstate, e.message.substr(0, e.message.find(" (SQLSTATE"))));
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

}  // namespace steadypg::cli::demo_parts
