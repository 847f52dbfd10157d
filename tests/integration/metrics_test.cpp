#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <thread>

#include "cluster_env.hpp"
#include "fault_proxy.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::cluster_environment;

namespace {

client_options options() {
  auto o = steadypg::test::client_options_for(2);
  o.observe.slow_query_threshold = 50ms;
  return o;
}

std::string sample(const std::string& text, const std::string& series) {
  const auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) return "<missing>";
  const auto start = pos + series.size() + 2;
  return text.substr(start, text.find('\n', start) - start);
}

}  // namespace

TEST(client_metrics, every_design_family_is_fed_and_promtool_accepts_it) {
  client db(options());
  for (int i = 0; i < 20; ++i) (void)db.query_value<int>("SELECT $1::int", i);
  EXPECT_THROW(db.execute("SELECT 1/0"), sql_error);
  int runs = 0;
  db.transaction([&](transaction& tx) {
    if (++runs == 1) {
      tx.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$");
    }
    tx.execute("SELECT 1");
  });
  EXPECT_EQ(runs, 2);
  // The server stops it at 90 % of the deadline (57014); 100 ms of margin before the client-side bound.
  EXPECT_THROW(db.execute(statement{"SELECT pg_sleep(5)"}.timeout(1000ms)), error);

  const std::string text = db.metrics().render_prometheus();
  // Labelled with the host each call ended on ("host:port" as the DSN names it).
  const std::string host = db.topology().hosts.at(0).label;
  EXPECT_EQ(sample(text, "postgresql_queries_total{outcome=\"ok\",host=\"" + host + "\"}"), "21");
  EXPECT_EQ(sample(text, "postgresql_queries_total{outcome=\"error\",host=\"" + host + "\"}"), "2");
  EXPECT_EQ(sample(text, "postgresql_queries_total{outcome=\"ok\",host=\"none\"}"), "0");
  EXPECT_EQ(sample(text, "postgresql_query_errors_total{sqlstate_class=\"22\"}"), "1");
  EXPECT_EQ(sample(text, "postgresql_query_errors_total{sqlstate_class=\"57\"}"), "1");
  EXPECT_EQ(sample(text, "postgresql_operation_retry_total{reason=\"rolled_back\"}"), "1");
  EXPECT_EQ(sample(text, "postgresql_slow_query_total"), "1") << "the 1 s call is over 50 ms";
  EXPECT_EQ(sample(text, "postgresql_query_duration_seconds_count"), "23");
  EXPECT_EQ(sample(text, "postgresql_pool_max_connections"), "2");
  EXPECT_EQ(sample(text, "postgresql_pool_pending_requests"), "0");
  EXPECT_EQ(sample(text, "postgresql_pool_connections{state=\"active\"}"), "0");
  EXPECT_EQ(sample(text, "postgresql_circuit_breaker_state{state=\"closed\"}"), "1");
  EXPECT_EQ(sample(text, "postgresql_circuit_breaker_state{state=\"open\"}"), "0");
  for (const char* family :
       {"postgresql_batch_duration_seconds_count", "postgresql_batch_operations_total", "postgresql_batch_errors_total",
        "postgresql_pool_acquire_duration_seconds_count", "postgresql_pool_acquire_timeouts_total",
        "postgresql_retry_budget_exhausted_total", "postgresql_connections_closed_total{reason=\"broken\"}",
        "postgresql_circuit_breaker_transitions_total{from=\"closed\",to=\"open\"}"}) {
    EXPECT_NE(sample(text, family), "<missing>") << family;
  }
  EXPECT_EQ(text.find("SELECT"), std::string::npos) << "SQL text is never a label";

  if (std::system("command -v promtool >/dev/null 2>&1") != 0) GTEST_SKIP() << "promtool is not installed";
  const auto file = std::filesystem::temp_directory_path() / fmt::format("steadypg-metrics-{}.prom", ::getpid());
  std::ofstream(file) << text;
  const int rc = std::system(fmt::format("promtool check metrics < {} 2>&1", file.string()).c_str());
  std::filesystem::remove(file);
  EXPECT_EQ(rc, 0) << "promtool rejected:\n" << text;
}

TEST(slow_queries, kept_reported_and_params_only_with_log_parameters) {
  for (const bool log_parameters : {false, true}) {
    auto o = options();
    o.observe.log_parameters = log_parameters;
    client db(o);
    std::vector<slow_query> seen;
    db.on_slow_query([&](const slow_query& q) { seen.push_back(q); });
    (void)db.query_value<int>("SELECT $1::int", 7);  // fast: not kept
    (void)db.execute("SELECT pg_sleep($1::float8 / 1000), $2::text", 80, std::string("card-4242"));
    EXPECT_THROW(db.execute(statement{"SELECT pg_sleep(1)"}.timeout(120ms)), error);
    const auto recent = db.recent_slow_queries();
    ASSERT_EQ(recent.size(), 2u);
    ASSERT_EQ(seen.size(), 2u) << "the callback sees each slow call";
    EXPECT_EQ(recent[0].sql, "SELECT pg_sleep($1::float8 / 1000), $2::text");
    EXPECT_GE(recent[0].duration_ms, 80.0);
    EXPECT_EQ(recent[0].rows, 1u);
    EXPECT_FALSE(recent[0].failed);
    EXPECT_TRUE(recent[1].failed) << "a slow failure is a slow query too";
    if (log_parameters) {
      EXPECT_EQ(recent[0].params, "$1='80', $2='card-4242'");
    } else {
      EXPECT_EQ(recent[0].params, "") << "parameter values stay out unless asked for";
    }
    const auto info = db.connection_info();
    ASSERT_EQ(info.recent_slow_queries.size(), 2u);
    EXPECT_EQ(info.performance.slow_queries, 2u);
  }
}

TEST(client_metrics, disabled_means_empty) {
  auto o = options();
  o.observe.metrics_enabled = false;
  client db(o);
  (void)db.query_value<int>("SELECT 1");
  EXPECT_EQ(db.metrics().render_prometheus(), "");
  EXPECT_EQ(db.metric_events(), nullptr);
}

TEST(health, healthy_degraded_unhealthy) {
  client db(options());
  auto h = db.health_check();
  EXPECT_EQ(h.status, health_status::healthy) << h.reason << h.error;
  EXPECT_GT(h.latency_ms, 0.0);
  EXPECT_EQ(h.threshold_ms, 50.0);
  // Slower than a tiny threshold: degraded (replies delayed by a proxy).
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  auto o = options();
  o.dsn = proxy.dsn();
  o.observe.slow_query_threshold = 1ms;
  {
    client slow(o);
    (void)slow.query_value<int>("SELECT 1");  // connect before slowing down
    proxy.delay_replies(20ms);
    h = slow.health_check();
    EXPECT_EQ(h.status, health_status::degraded) << h.latency_ms;
    EXPECT_GE(h.latency_ms, 20.0);
    proxy.delay_replies(0ms);
    // Saturated pool: degraded without waiting for a connection.
    auto held = slow.acquire();
    auto held2 = slow.acquire();
    h = slow.health_check();
    EXPECT_EQ(h.status, health_status::degraded);
    EXPECT_EQ(h.reason, "connection pool is saturated");
  }
  // Breaker open: unhealthy without touching the server.
  db.breaker().force_open();
  h = db.health_check();
  EXPECT_EQ(h.status, health_status::unhealthy);
  EXPECT_EQ(h.breaker, breaker_state::forced_open);
  db.breaker().reset();
  // Server stopped: unhealthy with the error.
  cluster->stop();
  auto down = options();
  down.connection.connect_timeout = 500ms;
  client fresh(down);
  h = fresh.health_check();
  cluster->start();
  EXPECT_EQ(h.status, health_status::unhealthy);
  EXPECT_FALSE(h.error.empty());
}

TEST(info, matches_pg_stat_activity) {
  client db(options());
  auto mine = steadypg::test::connect();  // an extra idle session of this test
  (void)db.query_value<int>("SELECT 1");
  const auto i = db.connection_info();
  EXPECT_FALSE(i.server.version.empty());
  EXPECT_GE(i.server.uptime_seconds, 0);
  EXPECT_EQ(i.server.connections.max, 200);
  const auto expected_total =
      mine.query_value<int64_t>("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()");
  EXPECT_EQ(i.server.connections.total, expected_total);
  EXPECT_GE(i.server.connections.active, 1) << "the info query itself";
  EXPECT_GE(i.server.connections.idle, 1) << "this test's own idle session";
  EXPECT_EQ(i.pool.max, 2u);
  EXPECT_GE(i.performance.queries, 1u);
  EXPECT_GT(i.performance.avg_query_ms, 0.0);
}

TEST(health, background_monitor_tracks_transitions) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  struct watcher : observer {
    std::atomic<int> to_unhealthy{0}, to_healthy{0};
    void on_health_changed(health_status, health_status to) noexcept override {
      if (to == health_status::unhealthy) ++to_unhealthy;
      if (to == health_status::healthy) ++to_healthy;
    }
  } w;
  auto o = options();
  o.pool.health_check_interval = 100ms;
  o.connection.connect_timeout = 300ms;
  client db(o, &w);
  db.start_health_monitor();
  auto wait_for = [&](auto pred) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!pred() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
    return pred();
  };
  ASSERT_TRUE(wait_for([&] {
    return db.metrics().render_prometheus().find("postgresql_health_status{status=\"healthy\"} 1") != std::string::npos;
  }));
  cluster->stop();
  EXPECT_TRUE(wait_for([&] { return w.to_unhealthy.load() >= 1; }));
  EXPECT_EQ(db.last_health(), health_status::unhealthy);
  cluster->start();
  EXPECT_TRUE(wait_for([&] { return w.to_healthy.load() >= 1; }));
  EXPECT_EQ(db.last_health(), health_status::healthy);
}
