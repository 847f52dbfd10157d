// `steadypg monitor --listen ADDR` and the global --http flag, as a user runs them.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.hpp"
#include "http_support.hpp"
#include "steadypg/testing/temp_cluster.hpp"

using namespace std::chrono_literals;
namespace th = steadypg::test::http;
namespace fs = std::filesystem;

namespace {

// The endpoint's answer to GET path, or status 0 while nothing listens.
th::response try_get(int port, const std::string& path) {
  try {
    return th::get(port, path);
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace

TEST(cli_monitor, serves_until_sigterm) {
  steadypg::testing::temp_cluster pg;
  const int port = th::free_port();
  const fs::path log = fs::temp_directory_path() / fmt::format("steadypg-monitor-{}.log", ::getpid());
  th::child_process monitor({STEADYPG_CLI_PATH, "--dsn", pg.dsn(), "monitor", "--listen",
                             fmt::format("127.0.0.1:{}", port)},
                            log.string());
  th::response health;
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < until && health.status != 200) {
    health = try_get(port, "/health");
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(health.status, 200) << th::shell("cat " + log.string()).second;
  EXPECT_EQ(try_get(port, "/metrics").status, 200);
  EXPECT_EQ(try_get(port, "/").status, 200);
  EXPECT_TRUE(monitor.running());
  monitor.stop();  // SIGTERM: it ends by itself (SIGKILL only after 10 s)
  EXPECT_EQ(try_get(port, "/health").status, 0) << "still serving after SIGTERM";
  const auto out = th::shell("cat " + log.string()).second;
  EXPECT_NE(out.find(fmt::format("dashboard: http://127.0.0.1:{}/", port)), std::string::npos) << out;
  EXPECT_NE(out.find("stopped"), std::string::npos) << out;
  fs::remove(log);
}

TEST(cli_monitor, bad_addresses_exit_2) {
  for (const char* args : {"--http 0.0.0.0:9 ping", "--http nonsense ping", "monitor --listen 10.1.2.3:0"}) {
    const auto [rc, out] = th::shell(fmt::format("{} --dsn 'host=127.0.0.1 port=1' {} 2>&1", STEADYPG_CLI_PATH, args));
    EXPECT_EQ(rc, 2) << args << ": " << out;
  }
  const auto [rc, out] = th::shell(
      fmt::format("POSTGRESQL_HTTP_LISTEN=bad {} --dsn 'host=127.0.0.1 port=1' ping 2>&1", STEADYPG_CLI_PATH));
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("POSTGRESQL_HTTP_LISTEN=\"bad\""), std::string::npos) << out;
}
