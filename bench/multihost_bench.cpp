// Side by side, in one run: the per-call cost of a multi-host client. A primary with one
// streaming standby (steadypg::testing::temp_replica_set); the same point SELECT on the primary
// through a client given only the primary (single host: no prober, no routing) and through a
// client given both hosts (the prober runs, every call is routed to the primary), alternating
// rounds. Prints calls/s per round and the median of the pairs' ratios multi/single.
// Usage: steadypg_bench_multihost [seconds=1] [rounds=15] [clients=4]
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_replica_set.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "alternate.hpp"

namespace {

constexpr int k_rows = 100000;

double run(steadypg::client& db, int clients, double seconds) {
  return steadypg::bench::rate(clients, seconds, [&](std::mt19937& rng) {
    std::uniform_int_distribution<int> id(1, k_rows);
    (void)db.execute("SELECT v FROM mh_bench WHERE id = $1", id(rng));
  });
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
  using steadypg::bench::median;
  const auto res = steadypg::bench::alternate(
      rounds, [&] { return run(multi, clients, seconds); }, [&] { return run(single, clients, seconds); },
      [](int round, double a, double b) {
        std::printf("round %d: single host %.0f calls/s, multi-host %.0f calls/s, ratio %.3f\n", round, b, a, a / b);
      });
  std::printf(
      "clients %d: median single host %.0f calls/s, multi-host %.0f calls/s; median of the pairs' ratios "
      "multi/single %.3f\n",
      clients, median(res.b), median(res.a), median(res.ratios));
  return 0;
}
