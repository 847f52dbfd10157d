// The monitoring endpoint against a real PostgreSQL: every path, status codes and content
// types, negotiation, promtool, no password in any body, refused binds and requests,
// per-statement metrics by name.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "http_support.hpp"
#include "negotiate.hpp"
#include "sampler.hpp"
#include "steadypg/http/report_json.hpp"
#include "steadypg/http/server.hpp"
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::http::get;
using steadypg::test::http::raw;
using json = nlohmann::json;

namespace {

constexpr const char* password = "Pw-9f3c1e77-never-shown";

// One password-protected server for the suite (the tests that stop a server start their own).
steadypg::testing::temp_cluster& shared_cluster() {
  static steadypg::testing::temp_cluster c([] {
    steadypg::testing::temp_cluster_options o;
    o.password = password;
    return o;
  }());
  return c;
}

client_options options_for(const std::string& dsn) {
  client_options o;
  o.dsn = dsn;
  o.pool.max_size = 4;
  o.resilience.retry.base_delay = 10ms;
  o.connection.connect_timeout = 1000ms;
  return o;
}

http::options loopback() {
  http::options o;
  o.listen = "127.0.0.1:0";
  o.sample_interval = 200ms;
  o.server_sample_interval = 1000ms;
  return o;
}

http::options listen_on(const std::string& address, bool allow_remote = false, const std::string& token = {}) {
  http::options o;
  o.listen = address;
  o.allow_remote = allow_remote;
  o.bearer_token = token;
  return o;
}

void expect_no_secret(const std::string& body, const std::string& where) {
  EXPECT_EQ(body.find(password), std::string::npos) << where << " shows the password";
  EXPECT_EQ(body.find("password="), std::string::npos) << where;
}

}  // namespace

TEST(http_endpoint, serves_every_path_with_its_content_type_and_no_password) {
  auto& pg = shared_cluster();
  ASSERT_NE(pg.dsn().find(password), std::string::npos) << "the DSN under test carries the password";
  client db(options_for(pg.dsn()));
  for (int i = 0; i < 20; ++i) (void)db.query_value<int>("SELECT $1::int", i);
  http::server srv(db, loopback());
  ASSERT_GT(srv.port(), 0);
  EXPECT_EQ(srv.url(), fmt::format("http://127.0.0.1:{}/", srv.port()));

  const auto text = get(srv.port(), "/metrics");
  EXPECT_EQ(text.status, 200);
  EXPECT_EQ(text.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  // 20 calls, and the sampler's health pings (one a probe interval).
  const auto ok_at = text.body.find("\npostgresql_queries_total{outcome=\"ok\"");
  ASSERT_NE(ok_at, std::string::npos) << text.body;
  const auto line = text.body.substr(ok_at + 1, text.body.find('\n', ok_at + 1) - ok_at - 1);
  EXPECT_GE(std::stod(line.substr(line.rfind(' ') + 1)), 20.0) << line;
  EXPECT_EQ(text.body.find("# EOF"), std::string::npos);
  EXPECT_EQ(text.header("Cache-Control"), "no-store");

  // What Prometheus 2.42 sends.
  const auto om = get(srv.port(), "/metrics",
                      "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                      "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n");
  EXPECT_EQ(om.status, 200);
  EXPECT_EQ(om.header("Content-Type"), "application/openmetrics-text; version=1.0.0; charset=utf-8");
  ASSERT_GE(om.body.size(), 6U);
  EXPECT_EQ(om.body.substr(om.body.size() - 6), "# EOF\n");

  const auto health = get(srv.port(), "/health");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.header("Content-Type"), "application/json");
  EXPECT_EQ(json::parse(health.body).at("status"), "healthy") << health.body;

  const auto info = get(srv.port(), "/info");
  EXPECT_EQ(info.status, 200) << info.body;
  const auto i = json::parse(info.body);
  EXPECT_EQ(i.at("pool").at("max"), 4);
  EXPECT_FALSE(i.at("server").at("version").get<std::string>().empty());
  EXPECT_GE(i.at("performance").at("queries").get<int>(), 20);

  std::this_thread::sleep_for(1500ms);  // a server sample (every 1 s here) and a probe
  const auto snap = get(srv.port(), "/api/snapshot");
  EXPECT_EQ(snap.status, 200);
  EXPECT_EQ(snap.header("Content-Type"), "application/json");
  const auto s = json::parse(snap.body);
  for (const char* k : {"ts", "qps", "errors_per_second", "error_ratio", "latency_ms", "retries_per_second", "pool",
                        "breaker", "health", "hosts", "slowest_statements", "server"}) {
    EXPECT_TRUE(s.contains(k)) << k << " missing: " << snap.body;
  }
  EXPECT_EQ(s.at("pool").at("max"), 4);
  EXPECT_EQ(s.at("breaker"), "closed");
  ASSERT_EQ(s.at("hosts").size(), 1U);
  EXPECT_EQ(s.at("hosts")[0].at("status"), "available");
  EXPECT_GE(s.at("server").at("max_connections").get<int>(), 1) << snap.body;
  EXPECT_GE(s.at("server").at("sessions").at("total").get<int>(), 1) << snap.body;

  const auto page = get(srv.port(), "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_LT(page.body.size(), 20U * 1024U);
  EXPECT_NE(page.body.find("api/snapshot"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "the page loads nothing from elsewhere";
  EXPECT_EQ(page.body.find("https://"), std::string::npos);
  EXPECT_NE(page.header("Content-Security-Policy").find("default-src 'none'"), std::string::npos);

  const auto head = raw(srv.port(), "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());

  EXPECT_EQ(get(srv.port(), "/nope").status, 404);

  for (const auto* r : {&text, &om, &health, &info, &snap, &page}) expect_no_secret(r->head + r->body, "a response");
  // The endpoint's own requests, by path and status (unknown paths as "other").
  // (Rendered before this request itself is counted: text, OpenMetrics and HEAD so far.)
  const auto after = get(srv.port(), "/metrics").body;
  EXPECT_NE(after.find("postgresql_http_requests_total{path=\"/metrics\",code=\"200\"} 3"), std::string::npos) << after;
  EXPECT_NE(after.find("postgresql_http_requests_total{path=\"other\",code=\"404\"} 1"), std::string::npos) << after;
}

TEST(http_endpoint, promtool_accepts_the_metrics) {
  client db(options_for(shared_cluster().dsn()));
  (void)db.query_value<int>(statement{"SELECT 1"}.name("one"));
  EXPECT_THROW((void)db.execute(statement{"SELECT 1/0"}.name("divide")), sql_error);
  http::server srv(db, loopback());
  const auto text = get(srv.port(), "/metrics");
  const auto file = std::filesystem::temp_directory_path() / fmt::format("steadypg-metrics-{}.txt", ::getpid());
  std::ofstream(file) << text.body;
  const auto [rc, out] = test::http::shell(fmt::format("promtool check metrics < {} 2>&1", file.string()));
  std::filesystem::remove(file);
  EXPECT_EQ(rc, 0) << out;
}

TEST(http_endpoint, health_turns_503_within_2_s_of_stopping_postgresql) {
  steadypg::testing::temp_cluster pg;
  auto o = options_for(pg.dsn());
  client db(o);
  http::options ho = loopback();
  ho.sample_interval = 1000ms;  // the production default
  http::server srv(db, ho);
  const auto up = get(srv.port(), "/health");
  ASSERT_EQ(up.status, 200) << up.body;
  pg.stop();
  const auto stopped = std::chrono::steady_clock::now();
  int status = 0;
  std::string body;
  while (std::chrono::steady_clock::now() - stopped < 4s) {
    const auto r = get(srv.port(), "/health");
    status = r.status;
    body = r.body;
    if (status == 503) break;
    std::this_thread::sleep_for(50ms);
  }
  const auto took = std::chrono::steady_clock::now() - stopped;
  ASSERT_EQ(status, 503) << body;
  EXPECT_LT(took, 2s);
  const auto h = json::parse(body);
  EXPECT_EQ(h.at("status"), "unhealthy");
  EXPECT_FALSE(h.at("reason").get<std::string>().empty()) << body;
  // The page's data shows the host unavailable too, and /info says why it cannot answer.
  std::this_thread::sleep_for(1200ms);
  const auto s = json::parse(get(srv.port(), "/api/snapshot").body);
  EXPECT_EQ(s.at("hosts")[0].at("status"), "unavailable") << s.dump();
  EXPECT_EQ(get(srv.port(), "/info").status, 503);
  pg.start();
}

TEST(http_endpoint, refuses_a_remote_bind_without_permission_and_bad_addresses) {
  client db(options_for(shared_cluster().dsn()));
  EXPECT_THROW(http::server(db, listen_on("0.0.0.0:0")), config_error);
  EXPECT_THROW(http::server(db, listen_on("0.0.0.0:0", true)), config_error);  // no token
  try {
    http::server srv(db, listen_on("0.0.0.0:0"));
    FAIL();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("allow_remote"), std::string::npos) << e.what();
  }
  for (const char* bad : {"", "9187", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:9x",
                          "::1:9187", "[::1]9187", "a b:80"}) {
    EXPECT_THROW(http::server(db, listen_on(bad)), config_error) << bad;
  }
  // A port already in use is a startup error too.
  http::server first(db, loopback());
  EXPECT_THROW(http::server(db, listen_on(fmt::format("127.0.0.1:{}", first.port()))), config_error);
  // Allowed remote bind with a token: requests without it are refused.
  http::server remote(db, listen_on("0.0.0.0:0", true, "0123456789abcdef-token"));
  EXPECT_EQ(get(remote.port(), "/metrics").status, 401);
  EXPECT_EQ(get(remote.port(), "/metrics", "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(get(remote.port(), "/metrics", "Authorization: Bearer 0123456789abcdef-token\r\n").status, 200);
}

TEST(http_endpoint, refuses_oversized_requests_and_other_methods) {
  client db(options_for(shared_cluster().dsn()));
  http::server srv(db, loopback());
  const std::string body(10 * 1024, 'x');
  const auto big_body = raw(srv.port(), fmt::format("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                                    "Content-Length: {}\r\n\r\n{}",
                                                    body.size(), body));
  EXPECT_EQ(big_body.status, 413) << big_body.head;
  const auto big_header =
      raw(srv.port(), fmt::format("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
                                  std::string(5000, 'y')));
  EXPECT_EQ(big_header.status, 431) << big_header.head;
  const auto post =
      raw(srv.port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET, HEAD");
  const auto garbage = raw(srv.port(), std::string("\x01\xff\r\n\r\n", 6));
  EXPECT_TRUE(garbage.status == 400 || garbage.status == 0) << garbage.status;
  // Still serving afterwards.
  EXPECT_EQ(get(srv.port(), "/metrics").status, 200);
}

TEST(http_endpoint, statements_are_measured_by_name_never_by_text_and_capped) {
  auto o = options_for(shared_cluster().dsn());
  client db(o);
  for (int i = 0; i < 3; ++i) (void)db.query_value<int>(statement{"SELECT 42"}.name("answer"));
  EXPECT_THROW((void)db.execute(statement{"SELECT 1/0"}.name("divide")), sql_error);
  (void)db.query_value<int>("SELECT 7 /* unnamed-text-marker */");
  for (int i = 0; i < 120; ++i) (void)db.execute(statement{"SELECT 1"}.name(fmt::format("n{:03}", i)));
  const auto text = db.metrics().render_prometheus();
  EXPECT_NE(text.find("postgresql_statement_duration_seconds_count{name=\"answer\"} 3"), std::string::npos);
  EXPECT_NE(text.find("postgresql_statement_errors_total{name=\"divide\"} 1"), std::string::npos);
  EXPECT_NE(text.find("postgresql_statement_errors_total{name=\"answer\"} 0"), std::string::npos);
  EXPECT_EQ(text.find("unnamed-text-marker"), std::string::npos) << "SQL text is never a label";
  EXPECT_EQ(text.find("name=\"SELECT"), std::string::npos);
  // 100 names at most: answer, divide and n000 … n097; the rest counted as other.
  EXPECT_NE(text.find("{name=\"n097\"}"), std::string::npos);
  EXPECT_EQ(text.find("{name=\"n098\"}"), std::string::npos);
  EXPECT_NE(text.find("postgresql_statement_duration_seconds_count{name=\"other\"} 22"), std::string::npos) << text;

  http::server srv(db, loopback());
  const auto s = json::parse(get(srv.port(), "/api/snapshot").body);
  ASSERT_FALSE(s.at("slowest_statements").empty());
  for (const auto& e : s.at("slowest_statements")) EXPECT_TRUE(e.at("calls").get<int>() > 0);
}

TEST(http_endpoint, snapshot_rates_come_from_the_last_interval) {
  client db(options_for(shared_cluster().dsn()));
  http::server srv(db, loopback());  // samples every 200 ms
  std::atomic<bool> stop{false};
  std::thread load([&] {
    while (!stop) (void)db.query_value<int>("SELECT 1");
  });
  // Bounded waits: on a loaded machine a sample may come late.
  auto wait_for = [&](auto pred) {
    json snap = json::parse(srv.snapshot_json());
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (!pred(snap) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(50ms);
      snap = json::parse(srv.snapshot_json());
    }
    return snap;
  };
  const auto busy = wait_for([](const json& j) { return j.at("qps").get<double>() > 10.0; });
  stop = true;
  load.join();
  EXPECT_GT(busy.at("qps").get<double>(), 10.0) << busy.dump();
  EXPECT_FALSE(busy.at("latency_ms").at("p95").is_null());
  const auto idle = wait_for([](const json& j) { return j.at("qps").get<double>() == 0.0; });
  EXPECT_EQ(idle.at("qps").get<double>(), 0.0) << idle.dump();
  EXPECT_TRUE(idle.at("latency_ms").at("p50").is_null());
}

TEST(http_logic, accept_negotiation_by_q_value) {
  using steadypg::http::internal::wants_openmetrics;
  EXPECT_TRUE(wants_openmetrics("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"));
  EXPECT_TRUE(wants_openmetrics("application/openmetrics-text"));
  EXPECT_FALSE(wants_openmetrics(""));
  EXPECT_FALSE(wants_openmetrics("*/*"));
  EXPECT_FALSE(wants_openmetrics("text/plain"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text;q=0.2, text/plain;q=0.9"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text;q=0"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text;q=abc"));
  EXPECT_TRUE(wants_openmetrics("  Application/OpenMetrics-Text ; version=1.0.0 ; q=0.8 , text/plain;q=0.5"));
}

TEST(http_logic, loopback_hosts_and_listen_addresses) {
  using steadypg::http::internal::is_loopback_host;
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.3.2.1"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("::"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
  EXPECT_FALSE(is_loopback_host("localhost.example.com"));
  const auto a = http::parse_listen("[::1]:9187", "x");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 9187);
  EXPECT_EQ(http::parse_listen("127.0.0.1:0", "x").port, 0);
  ::setenv("POSTGRESQL_HTTP_LISTEN", "127.0.0.1:bad", 1);
  try {
    (void)http::options::from_env();
    ADD_FAILURE();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("POSTGRESQL_HTTP_LISTEN=\"127.0.0.1:bad\""), std::string::npos) << e.what();
  }
  ::setenv("POSTGRESQL_HTTP_LISTEN", "127.0.0.1:9187", 1);
  EXPECT_EQ(http::options::from_env()->listen, "127.0.0.1:9187");
  ::unsetenv("POSTGRESQL_HTTP_LISTEN");
  EXPECT_FALSE(http::options::from_env().has_value());
}

TEST(http_logic, percentiles_from_bucket_deltas) {
  using steadypg::http::internal::bucket_counts;
  using steadypg::http::internal::percentiles_between;
  bucket_counts before{}, after{};
  EXPECT_FALSE(percentiles_between(before, after).has_value());
  // 100 calls in the interval: 90 ≤ 1 ms, 9 ≤ 10 ms, 1 ≤ 100 ms (cumulative buckets).
  for (std::size_t i = 0; i < after.size(); ++i) {
    const double b = i < observe::histogram::bounds.size() ? observe::histogram::bounds[i] : 1e9;
    after[i] = 1000 + (b >= 0.001 ? 90 : 0) + (b >= 0.01 ? 9 : 0) + (b >= 0.1 ? 1 : 0);
    before[i] = 1000;
  }
  const auto p = percentiles_between(before, after);
  ASSERT_TRUE(p.has_value());
  EXPECT_DOUBLE_EQ(p->p50, 1.0);
  EXPECT_DOUBLE_EQ(p->p95, 10.0);
  EXPECT_DOUBLE_EQ(p->p99, 10.0);
}
