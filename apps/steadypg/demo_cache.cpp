// The demo's cache step: reads through the query cache on a redis-server of the demo's own
// (or the in-process cache when there is no /usr/bin/redis-server), a write invalidating, and
// Redis stopped with the reads still succeeding (docs/cache.md).

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "demo.hpp"
#if STEADYPG_CLI_REDIS
#include "steadypg/redis/cache.hpp"
#endif

extern char** environ;

namespace steadypg::cli {

namespace {

// A redis-server on a free loopback port, no persistence; stopped by pid.
class demo_redis {
 public:
  demo_redis() {
    if (::access("/usr/bin/redis-server", X_OK) != 0) return;
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (s >= 0) ::close(s);
      return;
    }
    ::close(s);
    m_port = ntohs(a.sin_port);
    m_dir = std::filesystem::temp_directory_path() / fmt::format("steadypg-demo-redis-{}", ::getpid());
    std::filesystem::create_directories(m_dir);
    std::vector<std::string> args{"/usr/bin/redis-server",
                                  "--port",
                                  std::to_string(m_port),
                                  "--bind",
                                  "127.0.0.1",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--dir",
                                  m_dir.string(),
                                  "--logfile",
                                  (m_dir / "redis.log").string()};
    std::vector<char*> argv;
    for (auto& x : args) argv.push_back(x.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0) m_pid = pid;
    // Ready when the port accepts (2 s at most).
    for (int i = 0; i < 200 && m_pid > 0; ++i) {
      const int c = ::socket(AF_INET, SOCK_STREAM, 0);
      const bool up = ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(c);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
  }
  ~demo_redis() {
    stop();
    std::error_code ec;
    if (!m_dir.empty()) std::filesystem::remove_all(m_dir, ec);
  }
  demo_redis(const demo_redis&) = delete;
  demo_redis& operator=(const demo_redis&) = delete;
  [[nodiscard]] bool running() const noexcept { return m_pid > 0; }
  [[nodiscard]] std::string url() const { return fmt::format("redis://127.0.0.1:{}/0", m_port); }
  void stop() {
    if (m_pid <= 0) return;
    ::kill(m_pid, SIGTERM);
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(m_pid, nullptr, WNOHANG) != 0) {
        m_pid = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(m_pid, SIGKILL);
    ::waitpid(m_pid, nullptr, 0);
    m_pid = -1;
  }

 private:
  int m_port = 0;
  int m_pid = -1;
  std::filesystem::path m_dir;
};

}  // namespace

namespace demo_parts {

void demo::step_cache() {
  m_out.step(8, "Query cache",
             "Reads through the cache (Redis when there is a redis-server), a write that invalidates, and Redis "
             "stopped while the reads still succeed.");
  demo_redis redis;
  client_options o = m_options;
  o.cache = {};
  o.cache.warn = [](std::string_view) {};  // the step reports the errors itself
  std::string backend = "local";
#if STEADYPG_CLI_REDIS
  if (redis.running()) {
    o.cache.backend = redis::make_cache(redis.url());
    backend = "redis";
  }
#endif
  if (!o.cache.backend) o.cache.backend = std::make_shared<local_cache>();
  client db(o);
  const std::string read = fmt::format("SELECT balance FROM {} WHERE id = $1", t("accounts"));
  for (int i = 0; i < 200; ++i) (void)db.query_cached(read, 1 + i % 20);
  const auto warm = db.cache_statistics();
  m_out.line(fmt::format("200 reads of 20 accounts through the {} cache: hit ratio {:.0f} % ({} hits, {} misses)",
                         backend, warm.hit_ratio() * 100, warm.hits, warm.misses));
  expect(warm.hits >= 180, "the cache did not serve the repeated reads");

  const auto before = db.query_cached(read, 1).as<std::int64_t>();
  (void)db.execute(fmt::format("UPDATE {} SET balance = balance + 1 WHERE id = 1", t("accounts")));
  const auto after = db.query_cached(read, 1).as<std::int64_t>();
  m_out.line(
      fmt::format("UPDATE committed through the client: account 1 read {} -> {} (tag table:accounts "
                  "invalidated)",
                  before, after));
  expect(after == before + 1, "a committed write did not invalidate the cached read");

  std::uint64_t ok_reads = 0, errors_before = db.cache_statistics().errors;
  double worst_ms = 0;
  if (backend == "redis") {
    redis.stop();
    for (int i = 0; i < 100; ++i) {
      const auto t0 = clock_type::now();
      try {
        (void)db.query_cached(read, 1 + i % 20);
        ++ok_reads;
      } catch (const error&) {
      }
      worst_ms = std::max(worst_ms, ms_between(t0, clock_type::now()));
    }
    const auto errors = db.cache_statistics().errors - errors_before;
    m_out.line(
        fmt::format("Redis stopped: {}/100 reads succeeded from the database (slowest {:.1f} ms), {} cache "
                    "errors counted",
                    ok_reads, worst_ms, errors));
    expect(ok_reads == 100, "reads failed while Redis was down");
  }
  const auto s = db.cache_statistics();
  m_report["cache"] = {{"backend", backend},
                       {"hit_ratio", round2(warm.hit_ratio())},
                       {"invalidated_read", {{"before", before}, {"after", after}}},
                       {"reads_with_redis_down", backend == "redis" ? json_doc(ok_reads) : json_doc(nullptr)},
                       {"cache_errors", s.errors}};
}

}  // namespace demo_parts

}  // namespace steadypg::cli
