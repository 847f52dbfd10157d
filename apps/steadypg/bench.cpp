// `steadypg bench`: load on pgbench's schema through the pool, side by side with pgbench.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

#include "bench_ramp.hpp"
#include "cli.hpp"
#include "steadypg/steadypg.hpp"

namespace steadypg::cli {
namespace {

using clock_type = std::chrono::steady_clock;

// How long past --seconds a call may still run before it times out (docs/cli.md).
constexpr std::chrono::seconds bench_grace{1};

// Log-linear latency histogram: 16 sub-buckets per power of two of nanoseconds (≤ 4 % error).
class latency_histogram {
 public:
  void record(std::chrono::nanoseconds d) {
    const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(d.count(), 1));
    ++m_counts[index(ns)];
    ++m_total;
  }
  void merge(const latency_histogram& o) {
    for (std::size_t i = 0; i < m_counts.size(); ++i) m_counts[i] += o.m_counts[i];
    m_total += o.m_total;
  }
  [[nodiscard]] double percentile_ms(double p) const {
    if (m_total == 0) return 0.0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(m_total)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < m_counts.size(); ++i) {
      seen += m_counts[i];
      if (seen >= std::max<std::uint64_t>(rank, 1)) return midpoint_ns(i) / 1e6;
    }
    return midpoint_ns(m_counts.size() - 1) / 1e6;
  }

 private:
  static constexpr std::size_t sub = 16;
  static std::size_t index(std::uint64_t ns) {
    if (ns < sub) return static_cast<std::size_t>(ns);
    const unsigned e = static_cast<unsigned>(std::bit_width(ns)) - 1;  // 2^e ≤ ns < 2^(e+1)
    const auto frac = static_cast<std::size_t>((ns >> (e - 4)) & (sub - 1));
    return std::min<std::size_t>((e - 3) * sub + frac, buckets - 1);
  }
  static double midpoint_ns(std::size_t i) {
    if (i < sub) return static_cast<double>(i);
    const std::size_t e = i / sub + 3;
    const std::size_t frac = i % sub;
    const double lo = std::ldexp(1.0, static_cast<int>(e)) * (1.0 + static_cast<double>(frac) / sub);
    return lo * (1.0 + 0.5 / sub);
  }
  static constexpr std::size_t buckets = 60 * sub;
  std::array<std::uint64_t, buckets> m_counts{};
  std::uint64_t m_total = 0;
};

// pgbench's schema, through a client like every command (logs, metrics, the retry rule: the
// DDL is not idempotent, so a statement whose outcome is unknown is not sent again).
void init_schema(const context& ctx, int scale) {
  client_options o = ctx.options;
  o.pool.max_size = 1;
  o.pool.min_size = 0;
  command_client cc(ctx, o);
  client& db = *cc;
  (void)db.execute(
      "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;"
      "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));"
      "CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor=100);"
      "CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor=100);"
      "CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor=100)");
  (void)db.execute("INSERT INTO pgbench_branches (bid, bbalance) SELECT g, 0 FROM generate_series(1, $1) g", scale);
  (void)db.execute(
      "INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT g, (g - 1) / 10 + 1, 0 FROM generate_series(1, $1) g",
      scale * 10);
  const int rows = scale * 100000;
  (void)db.copy_from("pgbench_accounts", {"aid", "bid", "abalance", "filler"}, [&](copy_in& copy) {
    for (int aid = 1; aid <= rows; ++aid) copy.write_row(aid, (aid - 1) / 100000 + 1, 0, "");
  });
  (void)db.execute(
      "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);"
      "ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);"
      "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)");
  // VACUUM cannot run inside the implicit transaction of a multi-statement string.
  (void)db.execute("VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history");
}

bool is_outage(const error& e) { return is_health_failure(e.sqlstate(), e.kind()) || e.origin() == error_origin::pool; }

// Calls per second and host (the host each call ended on), for the timeline of a run.
class host_timeline final : public observer {
 public:
  static constexpr std::size_t max_hosts = 16;
  explicit host_timeline(std::size_t seconds) : m_seconds(seconds), m_counts((seconds + 1) * max_hosts) {}
  void start(clock_type::time_point t) { m_start.store(t.time_since_epoch().count(), std::memory_order_release); }
  void on_call_finished(const call_report& r) noexcept override {
    const auto start = m_start.load(std::memory_order_acquire);
    if (start == 0 || r.failure != nullptr || r.host_index < 0 || static_cast<std::size_t>(r.host_index) >= max_hosts) {
      return;
    }
    const auto since = clock_type::now().time_since_epoch().count() - start;
    const auto second =
        std::min<std::size_t>(static_cast<std::size_t>(
                                  std::max<std::int64_t>(since, 0) /
                                  std::chrono::duration_cast<clock_type::duration>(std::chrono::seconds(1)).count()),
                              m_seconds);
    m_counts[second * max_hosts + static_cast<std::size_t>(r.host_index)].fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t at(std::size_t second, std::size_t host) const {
    return m_counts[second * max_hosts + host].load(std::memory_order_relaxed);
  }

 private:
  std::size_t m_seconds;
  std::vector<std::atomic<std::uint64_t>> m_counts;
  std::atomic<clock_type::rep> m_start{0};
};

}  // namespace

int run_bench(const context& ctx, const bench_args& args) {
  try {
    if (args.init) {
      const auto start = clock_type::now();
      init_schema(ctx, args.scale);
      const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
      if (ctx.json) {
        context::print_json({{"initialized", true}, {"scale", args.scale}, {"seconds", secs}});
      } else {
        std::cout << fmt::format("initialized pgbench schema, scale {} ({} accounts) in {:.1f} s\n", args.scale,
                                 args.scale * 100000, secs);
      }
      return ok;
    }
    client_options co = ctx.options;
    {
      // One login first: a refused one ends the bench here, before the pool opens N at once.
      connection_options probe;
      probe.dsn = co.dsn;
      probe.connect_timeout = co.connection.connect_timeout;
      connection c(probe);
    }
    co.pool.max_size = static_cast<std::size_t>(args.clients);
    co.pool.min_size = static_cast<std::size_t>(args.clients);
    if (!args.pool_mode.empty()) co.pool.mode = *parse_pool_mode(args.pool_mode);
    // An adaptive pool starts small and sizes itself; fixed opens --clients at once.
    if (co.pool.mode != pool_mode::fixed) co.pool.min_size = std::min<std::size_t>(2, co.pool.max_size);
    co.pool.acquire_timeout = std::chrono::milliseconds(5000);
    co.resilience.enabled = !args.no_resilience;
    if (!args.cache.empty()) {
      if (args.workload != "select") throw usage_error("--cache works with --workload select");
      co.cache.url = args.cache;
      co.cache.validate();
    }
    const auto seconds = static_cast<std::size_t>(args.seconds);
    host_timeline per_host(seconds);
    command_client cc(ctx, co, &per_host);
    client& db = *cc;
    const bool mixed = args.workload == "mixed";
    if (mixed) {
      // Each write has a unique id, so that the table can be checked against what was acknowledged.
      (void)db.execute(
          statement{"CREATE TABLE IF NOT EXISTS steadypg_bench_writes "
                    "(id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"}
              .route(route::primary));
      (void)db.execute(statement{"TRUNCATE steadypg_bench_writes"}.route(route::primary));
    }
    const int scale =
        static_cast<int>(db.query_value<int64_t>(statement{"SELECT count(*) FROM pgbench_branches"}.timeout(
            co.connection.connect_timeout + co.pool.acquire_timeout)));
    if (scale < 1) throw usage_error("pgbench_branches is empty: run `steadypg bench --init --scale N` first");
    const int accounts = args.keys > 0 ? std::min(args.keys, scale * 100000) : scale * 100000;
    const bool cached = !args.cache.empty();
    const cache_policy bench_policy{.ttl = std::chrono::seconds(3600)};

    // Everything a worker counts is its own (no shared cache lines on the hot path); merged at the end.
    struct worker_stats {
      latency_histogram hist;
      std::vector<std::uint64_t> ops, errors, writes;
      std::vector<std::int64_t> acked, unknown;  // write ids (mixed)
      std::uint64_t writes_failed = 0;
    };
    std::vector<worker_stats> per_worker(static_cast<std::size_t>(args.clients));
    for (auto& w : per_worker) {
      w.ops.assign(seconds + 1, 0);
      w.errors.assign(seconds + 1, 0);
      w.writes.assign(seconds + 1, 0);
    }
    std::atomic<std::uint64_t> total_ops{0}, total_errors{0};
    std::atomic<std::int64_t> next_write_id{1};
    const auto start = clock_type::now();
    per_host.start(start);
    const auto end = start + std::chrono::seconds(args.seconds);
    auto second_of = [&](clock_type::time_point t) {
      return std::min<std::size_t>(static_cast<std::size_t>((t - start) / std::chrono::seconds(1)), seconds);
    };

    // Every call ends by the end of the run plus this grace, even on a server that stopped
    // answering (then it times out: cancelled, its connection dropped, counted as an error).
    const auto hard_end = end + bench_grace;
    auto time_left = [&] {
      return std::max(std::chrono::ceil<std::chrono::milliseconds>(hard_end - clock_type::now()),
                      std::chrono::milliseconds(1));
    };
    auto worker = [&](std::size_t index) {
      std::mt19937 rng(static_cast<unsigned>(index * 7919 + 17));
      statement select_st{"SELECT abalance FROM pgbench_accounts WHERE aid = $1"};
      statement insert_st{
          "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"};
      statement write_st = std::move(
          statement{"INSERT INTO steadypg_bench_writes (id) VALUES ($1)"}.route(route::primary).name("bench_write"));
      std::uniform_int_distribution<int> aid(1, accounts), tid(1, scale * 10), bid(1, scale), delta(-5000, 5000);
      std::uniform_int_distribution<int> percent(0, 99);
      auto& mine = per_worker[index];
      auto& hist = mine.hist;
      std::uint64_t ops = 0, errors = 0;
      while (true) {
        const auto t0 = clock_type::now();
        if (t0 >= end) break;
        if (args.ramp && !ramp_active(index, per_worker.size(), t0 - start, end - start)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          continue;
        }
        try {
          if (args.workload == "select") {
            if (cached) {
              benchmark_sink(db.query_cached(select_st.sql(), bench_policy, aid(rng)).as<int>());
            } else {
              benchmark_sink(db.query_value<int>(select_st.timeout(time_left()), aid(rng)));
            }
            const auto t1 = clock_type::now();
            hist.record(t1 - t0);
            ++ops;
            ++mine.ops[second_of(t1)];
          } else if (mixed) {
            // 90 % reads where --route sends them, 10 % writes to the primary.
            if (percent(rng) < 90) {
              benchmark_sink(db.query_value<int>(select_st.timeout(time_left()), aid(rng)));
            } else {
              const std::int64_t id = next_write_id.fetch_add(1, std::memory_order_relaxed);
              try {
                (void)db.execute(write_st.timeout(time_left()), id);
                mine.acked.push_back(id);
                ++mine.writes[second_of(clock_type::now())];
              } catch (const error& e) {
                // A write whose outcome is unknown may have committed; any other failure did not.
                if (e.outcome() == outcome::indeterminate || e.is_indeterminate_commit()) {
                  mine.unknown.push_back(id);
                } else {
                  ++mine.writes_failed;
                }
                throw;
              }
            }
            const auto t1 = clock_type::now();
            hist.record(t1 - t0);
            ++ops;
            ++mine.ops[second_of(t1)];
          } else if (args.workload == "insert") {
            db.execute(insert_st.timeout(time_left()), tid(rng), bid(rng), aid(rng), delta(rng));
            const auto t1 = clock_type::now();
            hist.record(t1 - t0);
            ++ops;
            ++mine.ops[second_of(t1)];
          } else {  // pipeline: `depth` selects per round trip
            auto c = db.acquire("bench");
            const auto saved = c->options().query_timeout;
            c->set_query_timeout(time_left());
            struct restore {
              connection& c;
              std::chrono::milliseconds t;
              ~restore() { c.set_query_timeout(t); }
            } restore_timeout{*c, saved};
            pipeline p(*c);
            for (int i = 0; i < args.depth; ++i)
              p.send("SELECT abalance FROM pgbench_accounts WHERE aid = $1", aid(rng));
            p.sync();
            for (int i = 0; i < args.depth; ++i) benchmark_sink(p.get_result().as<int>());
            p.finish();
            const auto t1 = clock_type::now();
            for (int i = 0; i < args.depth; ++i) hist.record(t1 - t0);
            ops += static_cast<std::uint64_t>(args.depth);
            mine.ops[second_of(t1)] += static_cast<std::uint64_t>(args.depth);
          }
        } catch (const error& e) {
          ++errors;
          ++mine.errors[second_of(clock_type::now())];
          // Keep going through outages, without spinning.
          if (is_outage(e)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
      total_ops += ops;
      total_errors += errors;
    };
    pool_size_sampler pool_sizes(db, seconds, start);
    std::vector<std::thread> threads;
    for (int i = 0; i < args.clients; ++i) threads.emplace_back(worker, static_cast<std::size_t>(i));
    for (auto& t : threads) t.join();
    pool_sizes.stop();
    const std::size_t final_pool_size = db.pool_statistics().total;
    const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    latency_histogram all;
    std::vector<std::uint64_t> timeline_ops(seconds + 1, 0), timeline_errors(seconds + 1, 0);
    for (const auto& w : per_worker) {
      all.merge(w.hist);
      for (std::size_t s = 0; s <= seconds; ++s) {
        timeline_ops[s] += w.ops[s];
        timeline_errors[s] += w.errors[s];
      }
    }
    std::vector<std::uint64_t> timeline_writes(seconds + 1, 0);
    std::vector<std::int64_t> acked, unknown;
    std::uint64_t writes_failed = 0;
    for (const auto& w : per_worker) {
      for (std::size_t s = 0; s <= seconds; ++s) timeline_writes[s] += w.writes[s];
      acked.insert(acked.end(), w.acked.begin(), w.acked.end());
      unknown.insert(unknown.end(), w.unknown.begin(), w.unknown.end());
      writes_failed += w.writes_failed;
    }
    std::sort(acked.begin(), acked.end());
    std::sort(unknown.begin(), unknown.end());
    const auto topo = db.topology();
    const std::size_t hosts = std::min(topo.hosts.size(), host_timeline::max_hosts);
    const double ops_per_s = static_cast<double>(total_ops) / elapsed;
    if (ctx.json) {
      json_doc timeline = json_doc::array();
      for (std::size_t s = 0; s < seconds; ++s) {
        timeline.push_back(
            {{"t", s + 1}, {"ops", timeline_ops[s]}, {"errors", timeline_errors[s]}, {"pool_size", pool_sizes.at(s)}});
        if (mixed) timeline.back()["writes"] = timeline_writes[s];
        if (hosts > 1) {
          json_doc by_host = json_doc::object();
          for (std::size_t h = 0; h < hosts; ++h) by_host[topo.hosts[h].label] = per_host.at(s, h);
          timeline.back()["hosts"] = std::move(by_host);
        }
      }
      json_doc doc{{"workload", args.workload},
                   {"clients", args.clients},
                   {"seconds", args.seconds},
                   {"ops", total_ops.load()},
                   {"errors", total_errors.load()},
                   {"ops_per_s", std::round(ops_per_s * 10) / 10},
                   {"p50_ms", round3(all.percentile_ms(50))},
                   {"p99_ms", round3(all.percentile_ms(99))}};
      doc["pool_mode"] = std::string(to_string(co.pool.mode));
      doc["ramp"] = args.ramp;
      doc["pool_size_final"] = final_pool_size;
      if (cached) doc["cache_hit_ratio"] = std::round(db.cache_statistics().hit_ratio() * 10000) / 10000;
      if (mixed) {
        doc["writes_acked"] = acked.size();
        doc["writes_failed"] = writes_failed;
        doc["writes_unknown"] = unknown.size();
        doc["acked_ids"] = acked;
        doc["unknown_ids"] = unknown;
      }
      doc["timeline"] = std::move(timeline);
      context::print_json(doc);
    } else {
      std::cout << fmt::format(
          "workload {}, {} clients, {} s (scale {}): {} ops, {} errors, {:.1f} ops/s, "
          "p50 {:.3f} ms, p99 {:.3f} ms\n",
          args.workload, args.clients, args.seconds, scale, total_ops.load(), total_errors.load(), ops_per_s,
          all.percentile_ms(50), all.percentile_ms(99));
      if (cached) std::cout << "  " << cache_text(db.cache_statistics());
      if (mixed) {
        std::cout << fmt::format("  writes: {} acknowledged, {} failed, {} unknown outcome\n", acked.size(),
                                 writes_failed, unknown.size());
      }
      for (std::size_t s = 0; s < seconds; ++s) {
        std::string line = fmt::format("  t={:>3}s ops={:<8} errors={} pool_size={}", s + 1, timeline_ops[s],
                                       timeline_errors[s], pool_sizes.at(s));
        if (mixed) line += fmt::format(" writes={}", timeline_writes[s]);
        for (std::size_t h = 0; h < hosts && hosts > 1; ++h) {
          line += fmt::format(" {}={}", topo.hosts[h].label, per_host.at(s, h));
        }
        std::cout << line << "\n";
      }
    }
    return total_errors.load() == 0 ? ok : sql_failure;
  } catch (...) {
    return report_error(ctx, "bench");
  }
}

}  // namespace steadypg::cli
