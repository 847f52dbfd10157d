#pragma once

// What the CLI tests share: running the steadypg binary (plain, or on a pseudo-terminal) and
// temporary files. STEADYPG_CLI_PATH is the binary under test.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster_env.hpp"
#include "steadypg/connection.hpp"

namespace steadypg::test::cli {

using steadypg::test::cluster_environment;
namespace fs = std::filesystem;

struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `program` with `args` and extra environment, capturing stdout and stderr.
inline run_result run_program(const std::string& program, std::vector<std::string> args,
                              const std::map<std::string, std::string>& env, const std::string& stdin_file) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("steadypg-cli-{}", ::getpid());
  fs::create_directories(dir);
  const fs::path out = dir / "out", err = dir / "err";
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv{const_cast<char*>(program.c_str())};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr) ||
        !std::freopen(stdin_file.c_str(), "r", stdin)) {
      ::_exit(120);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  run_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove_all(dir);
  return r;
}

// Runs the CLI with `args` and extra environment; DATABASE_URL defaults to the test server.
inline run_result run(std::vector<std::string> args, std::map<std::string, std::string> env = {},
                      const std::string& stdin_file = "/dev/null") {
  if (!env.count("DATABASE_URL")) env["DATABASE_URL"] = cluster_environment::dsn();
  return run_program(STEADYPG_CLI_PATH, std::move(args), env, stdin_file);
}

// A file in the temp directory that is removed at the end of the scope.
struct temp_file {
  explicit temp_file(const std::string& name, const std::string& content)
      : path(fs::temp_directory_path() / fmt::format("steadypg-{}-{}", ::getpid(), name)) {
    std::ofstream(path, std::ios::binary) << content;
  }
  ~temp_file() { fs::remove(path); }
  fs::path path;
};

// Runs the CLI with stdout, stderr and stdin on a pseudo-terminal; returns what the terminal
// showed, with the terminal's CR LF line ends turned back into LF.
inline run_result run_on_terminal(std::vector<std::string> args) {
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (pid == 0) {
    ::setenv("DATABASE_URL", cluster_environment::dsn().c_str(), 1);
    std::vector<char*> argv{const_cast<char*>(STEADYPG_CLI_PATH)};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  run_result r;
  if (pid < 0) return r;
  std::string shown;
  char buf[4096];
  for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;) shown.append(buf, static_cast<std::size_t>(n));
  ::close(master);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  for (std::size_t i = 0; i < shown.size(); ++i) {
    if (shown[i] == '\r' && i + 1 < shown.size() && shown[i + 1] == '\n') continue;
    r.out.push_back(shown[i]);
  }
  return r;
}

}  // namespace steadypg::test::cli
