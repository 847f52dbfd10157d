#pragma once

// A redis-server of the test's own: /usr/bin/redis-server on a free 127.0.0.1 port, no
// persistence, stopped by pid (never a system Redis).

#include <filesystem>
#include <string>
#include <vector>

namespace steadypg::test {

class redis_process {
 public:
  /// Starts it (with extra `--name value` arguments, e.g. {"--maxmemory-policy", "allkeys-lru"})
  /// and waits until it answers PING (5 s at most).
  explicit redis_process(std::vector<std::string> extra_args = {});
  ~redis_process();
  redis_process(const redis_process&) = delete;
  redis_process& operator=(const redis_process&) = delete;

  /// redis://127.0.0.1:<port>/0
  [[nodiscard]] std::string url() const;
  [[nodiscard]] int port() const noexcept { return m_port; }
  [[nodiscard]] int pid() const noexcept { return m_pid; }
  /// Stops it (SIGTERM, then SIGKILL after 3 s).
  void stop();
  /// Starts it again on the same port.
  void start();
  /// Runs one command through redis-cli-free hiredis and returns the reply as text ("" for nil).
  std::string command(const std::vector<std::string>& argv) const;

 private:
  std::vector<std::string> m_extra;
  std::filesystem::path m_dir;
  int m_port = 0;
  int m_pid = -1;
};

}  // namespace steadypg::test
