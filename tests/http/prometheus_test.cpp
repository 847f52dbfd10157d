// A real Prometheus 2.42 (Debian's /usr/bin/prometheus) scraping the endpoint every second,
// with a generated config and a temporary TSDB on loopback, started and ended by pid here.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.hpp"
#include "http_support.hpp"
#include "steadypg/http/server.hpp"
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;
namespace th = steadypg::test::http;

namespace {

// An instant query through Prometheus's HTTP API: the first sample's value, or nullopt.
std::optional<double> query(int port, const std::string& promql) {
  th::response r;
  try {
    r = th::get(port, "/api/v1/query?query=" + th::url_encode(promql));
  } catch (const std::exception&) {
    return std::nullopt;  // not listening yet
  }
  if (r.status != 200) return std::nullopt;
  const auto doc = json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || doc.value("status", "") != "success") return std::nullopt;
  const auto& result = doc["data"]["result"];
  if (!result.is_array() || result.empty()) return std::nullopt;
  return std::stod(result[0]["value"][1].get<std::string>());
}

template <typename F>
bool eventually(std::chrono::milliseconds within, F&& f) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return f();
}

}  // namespace

TEST(prometheus, scrapes_the_endpoint_and_sees_the_queries) {
  ASSERT_TRUE(fs::exists("/usr/bin/prometheus")) << "Debian's prometheus package (scripts/deps.sh)";
  steadypg::testing::temp_cluster pg;
  steadypg::client_options o;
  o.dsn = pg.dsn();
  o.pool.max_size = 4;
  steadypg::client db(o);
  steadypg::http::options ho;
  ho.listen = "127.0.0.1:0";
  steadypg::http::server srv(db, ho);

  const fs::path dir = fs::temp_directory_path() / fmt::format("steadypg-prometheus-{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "tsdb");
  const int prom_port = th::free_port();
  std::ofstream(dir / "prometheus.yml") << fmt::format(
      "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n  - job_name: steadypg\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n"
      "    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
      srv.port());
  const std::string log = (dir / "prometheus.log").string();
  {
    th::child_process prom({"/usr/bin/prometheus", "--config.file=" + (dir / "prometheus.yml").string(),
                            "--storage.tsdb.path=" + (dir / "tsdb").string(),
                            fmt::format("--web.listen-address=127.0.0.1:{}", prom_port), "--log.level=warn"},
                           log);

    const auto started = std::chrono::steady_clock::now();
    EXPECT_TRUE(eventually(10s, [&] { return query(prom_port, "up{job=\"steadypg\"}") == 1.0; }))
        << "up{job=\"steadypg\"} did not become 1 within 10 s; log: " << th::shell("tail -20 " + log).second;
    std::cout << fmt::format("up after {:.1f} s\n",
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());

    for (int i = 0; i < 500; ++i) (void)db.query_value<int>("SELECT $1::int", i);
    std::optional<double> seen;
    EXPECT_TRUE(eventually(5s,
                           [&] {
                             seen = query(prom_port, "sum(postgresql_queries_total{job=\"steadypg\"})");
                             return seen && *seen >= 500;
                           }))
        << "postgresql_queries_total through Prometheus: " << (seen ? *seen : -1);

    const auto targets = th::get(prom_port, "/api/v1/targets");
    ASSERT_EQ(targets.status, 200);
    const auto t = json::parse(targets.body);
    const auto& active = t["data"]["activeTargets"];
    ASSERT_EQ(active.size(), 1U) << targets.body;
    EXPECT_EQ(active[0]["health"], "up") << targets.body;
    EXPECT_EQ(active[0]["lastError"], "") << targets.body;
    EXPECT_LT(active[0]["lastScrapeDuration"].get<double>(), 0.05) << targets.body;

    // Its scrapes are counted by the endpoint itself.
    EXPECT_GE(query(prom_port, "postgresql_http_requests_total{path=\"/metrics\",code=\"200\"}").value_or(0), 1.0);
    // Prometheus asked for OpenMetrics and parsed it: the metadata it keeps names the counter
    // family without _total, as only OpenMetrics' "# TYPE postgresql_queries counter" does (the
    // 0.0.4 text would have given it as postgresql_queries_total).
    const auto meta = th::get(prom_port, "/api/v1/metadata?metric=postgresql_queries");
    EXPECT_NE(meta.body.find("\"postgresql_queries\":[{\"type\":\"counter\""), std::string::npos) << meta.body;
    prom.stop();
  }
  fs::remove_all(dir);
}
