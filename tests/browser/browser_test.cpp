// The dashboard page in headless Chromium: this binary serves it for a real PostgreSQL and runs
// tests/browser/dashboard_test.mjs (playwright-core driving Debian's chromium), doing what the
// script asks (a load burst, stopping PostgreSQL) and passing on its verdict. The screenshots
// are saved in the build directory (STEADYPG_SCREENSHOT_DIR).

#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <string>
#include <thread>
#include <vector>

#include "steadypg/http/server.hpp"
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_cluster.hpp"

extern char** environ;

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Runs `fn` in 16 threads for `length`.
void burst(steadypg::client& db, std::chrono::milliseconds length) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      while (!stop) (void)db.query_value<int>(steadypg::statement{"SELECT 1"}.name("burst_select"));
    });
  }
  std::this_thread::sleep_for(length);
  stop = true;
  for (auto& t : threads) t.join();
}

}  // namespace

TEST(dashboard_page, in_headless_chromium) {
  const fs::path browser_dir = STEADYPG_BROWSER_DIR;
  ASSERT_TRUE(fs::exists(browser_dir / "node_modules" / "playwright-core"))
      << "playwright-core is not installed in " << browser_dir << ": run scripts/deps.sh (npm ci there)";
  ASSERT_TRUE(fs::exists("/usr/bin/chromium")) << "Debian's chromium package (scripts/deps.sh)";
  steadypg::testing::temp_cluster pg;
  steadypg::client_options o;
  o.dsn = pg.dsn();
  o.pool.max_size = 16;
  o.connection.connect_timeout = 1000ms;
  steadypg::client db(o);
  // Some named statements for the table of the slowest ones.
  for (int i = 0; i < 30; ++i)
    (void)db.query_value<int>(steadypg::statement{"SELECT count(*) FROM pg_class"}.name("count_relations"));
  (void)db.execute(steadypg::statement{"SELECT pg_sleep(0.05)"}.name("nightly_report"));
  for (int i = 0; i < 10; ++i) (void)db.query_value<int>(steadypg::statement{"SELECT $1::int"}.name("get_account"), i);
  steadypg::http::options ho;
  ho.listen = "127.0.0.1:0";
  steadypg::http::server srv(db, ho);
  // A light background load, so that the charts show something before the burst.
  std::atomic<bool> stop_background{false};
  std::thread background([&] {
    while (!stop_background) {
      try {
        (void)db.query_value<int>(steadypg::statement{"SELECT 1"}.name("get_account"));
      } catch (const steadypg::error&) {
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  const fs::path shots = STEADYPG_SCREENSHOT_DIR;
  fs::create_directories(shots);
  const std::string screenshot = (shots / "dashboard.png").string();

  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(from_child), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
  posix_spawn_file_actions_addclose(&fa, to_child[1]);
  posix_spawn_file_actions_addclose(&fa, from_child[0]);
  std::vector<std::string> args{"/usr/bin/node", (browser_dir / "dashboard_test.mjs").string(), srv.url(), screenshot};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(to_child[0]);
  ::close(from_child[1]);

  std::string verdict;
  std::string buffer;
  const auto until = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < until && verdict.empty()) {
    pollfd p{from_child[0], POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    char buf[4096];
    const auto n = ::read(from_child[0], buf, sizeof buf);
    if (n <= 0) break;
    buffer.append(buf, static_cast<std::size_t>(n));
    for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
      const std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      std::cout << "  page: " << line << "\n";
      std::string answer;
      if (line == "REQ burst") {
        burst(db, 2s);
        answer = "done\n";
      } else if (line == "REQ stop") {
        pg.stop();
        answer = "done\n";
      } else if (line.rfind("RESULT ", 0) == 0) {
        verdict = line.substr(7);
      }
      if (!answer.empty()) (void)!::write(to_child[1], answer.data(), answer.size());
    }
  }
  ::close(to_child[1]);
  ::close(from_child[0]);
  // End the script (by its pid) if it is still there, bounded.
  int status = 0;
  const auto reap_until = std::chrono::steady_clock::now() + 10s;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > reap_until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  stop_background = true;
  background.join();
  EXPECT_EQ(verdict, "ok");
  EXPECT_TRUE(fs::exists(screenshot));
  std::cout << "screenshot: " << screenshot << "\n";
}
