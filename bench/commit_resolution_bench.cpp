// Side by side, in one run: client::transaction(fn) with commit resolution on (the transaction
// id is fetched in COMMIT's round trip) and off, alternating rounds on one embedded server (or
// $DATABASE_URL) with pgbench's schema: two statements and a commit per transaction, as
// pgbench's simple-update does it. Prints transactions/s per round and the median ratio on/off.
// Usage: steadypg_bench_commit_resolution [seconds=1] [rounds=21] [clients=4]
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_cluster.hpp>

#include <string_view>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "alternate.hpp"

namespace {

constexpr int k_accounts = 100000;

double run(steadypg::client& db, int clients, double seconds) {
  return steadypg::bench::rate(clients, seconds, [&](std::mt19937& rng) {
    std::uniform_int_distribution<int> aid(1, k_accounts), delta(-5000, 5000);
    const int a = aid(rng), d = delta(rng);
    db.transaction([&](steadypg::transaction& tx) {
      tx.execute("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", d, a);
      tx.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, $1, $2, now())", a, d);
    });
  });
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 21;
  const int clients = argc > 3 ? std::atoi(argv[3]) : 4;
  // "durable": the embedded server flushes each commit to disk (fsync, synchronous_commit), as a
  // production server does; otherwise it runs with both off, where a commit costs next to nothing.
  const bool durable = argc > 4 && std::string_view(argv[4]) == "durable";
  std::unique_ptr<steadypg::testing::temp_cluster> cluster;
  std::string dsn;
  if (const char* url = std::getenv("DATABASE_URL"); url != nullptr && *url != '\0') {
    dsn = url;
  } else {
    steadypg::testing::temp_cluster_options o;
    if (durable) o.settings = {{"fsync", "on"}, {"synchronous_commit", "on"}, {"full_page_writes", "on"}};
    cluster = std::make_unique<steadypg::testing::temp_cluster>(o);
    dsn = cluster->dsn();
    std::printf("embedded server: %s\n",
                durable ? "fsync and synchronous_commit on" : "fsync and synchronous_commit off");
  }
  {
    steadypg::connection setup{dsn};
    const bool have = setup.query_value<bool>("SELECT to_regclass('pgbench_accounts') IS NOT NULL");
    if (!have) {  // the part of pgbench's schema the transaction touches (`steadypg bench --init` makes all of it)
      setup.execute(
          "CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int NOT NULL, filler char(84)); "
          "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))");
      setup.execute(
          fmt::format("INSERT INTO pgbench_accounts SELECT g, 1, 0, '' FROM generate_series(1, {}) g", k_accounts));
      setup.execute("VACUUM ANALYZE pgbench_accounts");
    }
  }
  auto options = [&](bool resolve) {
    steadypg::client_options o;
    o.dsn = dsn;
    o.pool.max_size = static_cast<std::size_t>(clients);
    o.resilience.resolve_commits = resolve;
    return o;
  };
  steadypg::client on{options(true)}, off{options(false)};
  (void)run(on, clients, 0.5);  // warm both pools and statement caches
  (void)run(off, clients, 0.5);
  // Rounds in pairs, the order swapped every pair; the per-pair ratios' median is the figure.
  using steadypg::bench::median;
  const auto res = steadypg::bench::alternate(
      rounds, [&] { return run(on, clients, seconds); }, [&] { return run(off, clients, seconds); },
      [](int round, double a, double b) {
        std::printf("round %d: resolution off %.0f tx/s, on %.0f tx/s, ratio %.3f\n", round, b, a, a / b);
      });
  std::printf("clients %d: median resolution off %.0f tx/s, on %.0f tx/s; median of the pairs' ratios on/off %.3f\n",
              clients, median(res.b), median(res.a), median(res.ratios));
  return 0;
}
