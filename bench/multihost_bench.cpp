// Side by side, in one run: the per-call cost of a multi-host client. A primary with one
// streaming standby (steadypg::testing::temp_replica_set); the same point SELECT on the primary
// through a client given only the primary (single host: no prober, no routing) and through a
// client given both hosts (the prober runs, every call is routed to the primary), alternating
// rounds. Prints calls/s per round and the median of the pairs' ratios multi/single.
// Usage: steadypg_bench_multihost [seconds=1] [rounds=15] [clients=4]
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_replica_set.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int k_rows = 100000;

double run(steadypg::client& db, int clients, double seconds) {
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto start = clock_type::now();
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 1);
      std::uniform_int_distribution<int> id(1, k_rows);
      while (!stop.load(std::memory_order_relaxed)) {
        (void)db.execute("SELECT v FROM mh_bench WHERE id = $1", id(rng));
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(done.load()) / elapsed;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 15;
  const int clients = argc > 3 ? std::atoi(argv[3]) : 4;
  steadypg::testing::temp_replica_set_options so;
  so.replicas = 1;
  steadypg::testing::temp_replica_set set(so);
  {
    steadypg::connection setup{set.node(0).dsn()};
    setup.execute("CREATE TABLE mh_bench (id int PRIMARY KEY, v text)");
    setup.execute(fmt::format("INSERT INTO mh_bench SELECT g, md5(g::text) FROM generate_series(1, {}) g", k_rows));
    setup.execute("VACUUM ANALYZE mh_bench");
  }
  set.wait_caught_up(1);
  auto options = [&](std::string dsn) {
    steadypg::client_options o;
    o.dsn = std::move(dsn);
    o.pool.max_size = static_cast<std::size_t>(clients);
    return o;
  };
  steadypg::client single{options(set.node(0).dsn())}, multi{options(set.dsn())};
  (void)run(single, clients, 0.5);  // warm both pools and statement caches
  (void)run(multi, clients, 0.5);
  std::printf("multi-host client: %s\n", set.dsn().c_str());
  std::vector<double> one, many, ratios;
  for (int r = 0; r < rounds; ++r) {
    double a = 0, b = 0;
    if (r % 2 == 0) {
      b = run(single, clients, seconds);
      a = run(multi, clients, seconds);
    } else {
      a = run(multi, clients, seconds);
      b = run(single, clients, seconds);
    }
    many.push_back(a);
    one.push_back(b);
    ratios.push_back(a / b);
    std::printf("round %d: single host %.0f calls/s, multi-host %.0f calls/s, ratio %.3f\n", r + 1, b, a, a / b);
  }
  std::printf(
      "clients %d: median single host %.0f calls/s, multi-host %.0f calls/s; median of the pairs' ratios "
      "multi/single %.3f\n",
      clients, median(one), median(many), median(ratios));
  return 0;
}
