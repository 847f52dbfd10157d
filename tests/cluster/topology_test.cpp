// Multi-host clients against real servers without replication: a hung host among healthy
// ones, two independent primaries (split brain on one timeline), probing a single host, and
// the prober's part in breaker recovery.

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "cluster_env.hpp"
#include "fault_proxy.hpp"
#include "steadypg/client.hpp"
#include "steadypg/testing/temp_cluster.hpp"

namespace steadypg {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::string two_host_dsn(int port_a, int port_b) {
  return fmt::format("host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres sslmode=disable", port_a,
                     port_b);
}

int server_port() { return test::cluster_environment::cluster()->port(); }

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto end = clock_type::now() + limit;
  while (clock_type::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

double p99_ms(client& db, int calls) {
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) {
    const auto t0 = clock_type::now();
    (void)db.query_value<int>("SELECT 1");
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[static_cast<std::size_t>(static_cast<double>(ms.size()) * 0.99) - 1];
}

TEST(topology, a_hung_host_is_unavailable_and_does_not_slow_calls_to_the_healthy_one) {
  if (!test::cluster_environment::cluster()) GTEST_SKIP() << "needs the embedded server";
  test::fault_proxy hung(server_port());
  hung.black_hole(true);  // accepts TCP, never answers
  auto single_opts = test::client_options_for(2);
  client single(single_opts);
  auto opts = test::client_options_for(2);
  opts.dsn = two_host_dsn(hung.port(), server_port());
  client multi(opts);
  (void)multi.query_value<int>("SELECT 1");  // waits for the first round of probes
  const auto topo = multi.topology();
  ASSERT_EQ(topo.hosts.size(), 2u);
  EXPECT_TRUE(topo.probing);
  EXPECT_EQ(topo.primary, std::optional<std::size_t>{1});
  EXPECT_TRUE(wait_until([&] { return multi.topology().hosts[0].role == host_role::unavailable; }, 5s));
  // The hung host's probes time out again and again meanwhile; the healthy host's calls do not wait for them.
  (void)p99_ms(single, 50);
  (void)p99_ms(multi, 50);
  const double base = p99_ms(single, 300);
  const double with_hung = p99_ms(multi, 300);
  RecordProperty("p99_single_ms", std::to_string(base));
  RecordProperty("p99_with_hung_host_ms", std::to_string(with_hung));
  EXPECT_LT(with_hung - base, 50.0) << "p99 " << base << " ms alone, " << with_hung << " ms with a hung host";
  // Nothing was ever dialled on the hung host by a call: only the prober's attempts reached it.
  EXPECT_EQ(multi.host_pool(0).stats().connections_created, 0u);
  EXPECT_EQ(multi.host_pool(0).stats().connect_failures, 0u);
  // Replica routes fail fast: there is no replica at all.
  const auto t0 = clock_type::now();
  EXPECT_THROW((void)multi.execute(statement{"SELECT 1"}.route(route::replica)), no_replica_available);
  EXPECT_LT(clock_type::now() - t0, 1s);
  // prefer_replica falls back to the primary and counts it.
  EXPECT_EQ(multi.execute(statement{"SELECT 2"}.route(route::prefer_replica)).as<int>(), 2);
  EXPECT_NE(multi.metrics().render_prometheus().find(
                "postgresql_route_fallbacks_total{from=\"prefer_replica\",to=\"primary\",reason=\"none\"} 1"),
            std::string::npos);
}

TEST(topology, two_writable_hosts_on_one_timeline_refuse_writes_and_show_two_primaries) {
  if (!test::cluster_environment::cluster()) GTEST_SKIP() << "needs the embedded server";
  testing::temp_cluster other;
  auto opts = test::client_options_for(2);
  opts.dsn = two_host_dsn(server_port(), other.port());
  client db(opts);
  EXPECT_TRUE(wait_until([&] { return db.topology().primaries == 2; }, 5s));
  const auto t0 = clock_type::now();
  try {
    (void)db.execute(statement{"SELECT 1"}.timeout(500ms));
    FAIL() << "a write went to one of two primaries on the same timeline";
  } catch (const no_primary_available& e) {
    EXPECT_NE(std::string(e.what()).find("split brain"), std::string::npos) << e.what();
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  }
  EXPECT_LT(clock_type::now() - t0, 2s);
  EXPECT_NE(db.metrics().render_prometheus().find("postgresql_topology_primaries 2"), std::string::npos);
  const auto h = db.health_check();
  EXPECT_EQ(h.status, health_status::unhealthy);
  ASSERT_EQ(h.hosts.size(), 2u);
  EXPECT_NE(h.reason.find("split brain"), std::string::npos) << h.reason;
}

TEST(topology, a_probed_single_host_reports_its_role_and_replica_calls_fail_fast) {
  if (!test::cluster_environment::cluster()) GTEST_SKIP() << "needs the embedded server";
  auto opts = test::client_options_for(2);
  opts.cluster.probe_single_host = true;
  client db(opts);
  EXPECT_EQ(db.query_value<int>("SELECT 7"), 7);
  const auto t = db.topology();
  ASSERT_EQ(t.hosts.size(), 1u);
  EXPECT_EQ(t.hosts[0].role, host_role::primary);
  EXPECT_GT(t.hosts[0].timeline, 0);
  EXPECT_GT(t.hosts[0].wal_lsn, 0u);
  EXPECT_EQ(t.primary, std::optional<std::size_t>{0});
  EXPECT_THROW((void)db.execute(statement{"SELECT 1"}.route(route::replica)), no_replica_available);
  const auto token = db.commit_token();
  EXPECT_GT(token.lsn, 0u);
  // A token the only host has reached: a prefer_replica read goes to the primary (no replica).
  EXPECT_EQ(db.execute(statement{"SELECT 3"}.route(route::prefer_replica).after(token)).as<int>(), 3);
  const auto text = db.metrics().render_prometheus();
  EXPECT_NE(text.find("postgresql_host_role{host=\"127.0.0.1:" + std::to_string(server_port()) +
                      "\",role=\"primary\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("postgresql_queries_total{outcome=\"ok\",host=\"127.0.0.1:" + std::to_string(server_port())),
            std::string::npos);
}

TEST(topology, a_good_probe_lets_an_open_breaker_try_again_before_its_open_time_ends) {
  testing::temp_cluster server;
  client_options opts;
  opts.dsn = server.dsn();
  opts.pool.max_size = 2;
  opts.cluster.probe_single_host = true;
  opts.cluster.probe_interval = 200ms;
  opts.resilience.breaker.failure_threshold = 1;
  opts.resilience.breaker.open_duration = 60000ms;  // without the prober: a minute of fast failures
  opts.resilience.retry.max_retries = 0;
  client db(opts);
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1);
  server.stop();
  EXPECT_THROW((void)db.query_value<int>("SELECT 1"), error);
  EXPECT_TRUE(wait_until([&] { return db.breaker().state() == breaker_state::open; }, 5s));
  server.start();
  const auto ready = clock_type::now();
  bool ok = false;
  while (!ok && clock_type::now() - ready < 10s) {
    try {
      ok = db.query_value<int>("SELECT 1") == 1;
    } catch (const error&) {
      std::this_thread::sleep_for(10ms);
    }
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - ready);
  RecordProperty("recovery_ms", std::to_string(took.count()));
  EXPECT_TRUE(ok);
  // Well before the open time ends (0.15 s on an idle machine; generous for a loaded one).
  EXPECT_LT(took, 15s) << "calls resumed " << took.count() << " ms after the server was ready";
  EXPECT_EQ(db.breaker().state(), breaker_state::closed);
}

}  // namespace
}  // namespace steadypg
