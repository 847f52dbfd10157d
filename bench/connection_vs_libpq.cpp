// Side by side, in one run: the same prepared single-row SELECT through steadypg::connection
// and through a raw libpq loop (PQexecPrepared), alternating rounds on one embedded server.
// Prints ops/s per round and the median ratio steadypg / libpq.
#include <libpq-fe.h>
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_cluster.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* k_sql = "SELECT abalance FROM bench_accounts WHERE aid = $1";

double run_libpq(const std::string& dsn, double seconds) {
  PGconn* c = PQconnectdb(dsn.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "libpq connect: %s", PQerrorMessage(c));
    std::exit(1);
  }
  PQclear(PQprepare(c, "q", k_sql, 1, nullptr));
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> aid(1, 100000);
  long ops = 0;
  char buf[16];
  const auto end = clock_type::now() + std::chrono::duration<double>(seconds);
  const auto start = clock_type::now();
  while (clock_type::now() < end) {
    std::snprintf(buf, sizeof buf, "%d", aid(rng));
    const char* values[] = {buf};
    PGresult* r = PQexecPrepared(c, "q", 1, values, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) std::exit(2);
    (void)std::atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    ++ops;
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  PQfinish(c);
  return static_cast<double>(ops) / elapsed;
}

double run_steadypg(const std::string& dsn, double seconds) {
  steadypg::connection c{dsn};
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> aid(1, 100000);
  long ops = 0;
  const auto end = clock_type::now() + std::chrono::duration<double>(seconds);
  const auto start = clock_type::now();
  while (clock_type::now() < end) {
    (void)c.query_value<int>(k_sql, aid(rng));
    ++ops;
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(ops) / elapsed;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  steadypg::testing::temp_cluster cluster;
  {
    steadypg::connection setup{cluster.dsn()};
    setup.execute("CREATE TABLE bench_accounts (aid int PRIMARY KEY, abalance int NOT NULL)");
    setup.execute("INSERT INTO bench_accounts SELECT g, g % 1000 FROM generate_series(1, 100000) g");
    setup.execute("VACUUM ANALYZE bench_accounts");
  }
  std::vector<double> ours, theirs;
  for (int r = 0; r < rounds; ++r) {
    theirs.push_back(run_libpq(cluster.dsn(), seconds));
    ours.push_back(run_steadypg(cluster.dsn(), seconds));
    std::printf("round %d: libpq %.0f ops/s, steadypg %.0f ops/s\n", r + 1, theirs.back(), ours.back());
  }
  std::printf("median: libpq %.0f ops/s, steadypg %.0f ops/s, ratio steadypg/libpq %.3f\n", median(theirs),
              median(ours), median(ours) / median(theirs));
  return 0;
}
