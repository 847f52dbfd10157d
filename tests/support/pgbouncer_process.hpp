#pragma once

// A throwaway PgBouncer in front of a temp_cluster, for the pooler suite (tests/cluster/):
// writes its ini into a fresh directory, starts /usr/sbin/pgbouncer in the foreground (as the
// unprivileged `postgres` user when run as root: PgBouncer refuses root), waits until it
// accepts connections, and stops it by pid in the destructor (also when a test fails).

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace steadypg::test {

/// Settings of the PgBouncer under test.
struct pgbouncer_options {
  std::string pool_mode = "transaction";
  int default_pool_size = 2;
  int max_client_conn = 100;
  /// Extra `name = value` lines for the [pgbouncer] section.
  std::vector<std::pair<std::string, std::string>> settings;
  /// How long start waits for PgBouncer to accept connections.
  std::chrono::milliseconds start_timeout{15000};
};

/// One PgBouncer process in front of 127.0.0.1:`server_port`; database `postgres` only.
class pgbouncer_process {
 public:
  pgbouncer_process(int server_port, pgbouncer_options options = {}) : m_options(std::move(options)) {
    namespace fs = std::filesystem;
    const char* binary = "/usr/sbin/pgbouncer";
    if (!fs::exists(binary)) throw std::runtime_error("pgbouncer is not installed (scripts/deps.sh installs it)");
    std::string templ = "/tmp/steadypg-pgbouncer-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    m_dir = templ;
    m_port = free_port();
    std::ofstream(m_dir / "userlist.txt") << "\"postgres\" \"\"\n";
    std::ofstream ini(m_dir / "pgbouncer.ini");
    ini << fmt::format("[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres user=postgres\n\n", server_port);
    ini << "[pgbouncer]\n"
        << "listen_addr = 127.0.0.1\n"
        << fmt::format("listen_port = {}\n", m_port) << fmt::format("unix_socket_dir = {}\n", m_dir.string())
        << "auth_type = trust\n"
        << fmt::format("auth_file = {}\n", (m_dir / "userlist.txt").string()) << "admin_users = postgres\n"
        << fmt::format("pool_mode = {}\n", m_options.pool_mode)
        << fmt::format("default_pool_size = {}\n", m_options.default_pool_size)
        << fmt::format("max_client_conn = {}\n", m_options.max_client_conn) << "stats_period = 1\n"
        << fmt::format("logfile = {}\n", (m_dir / "pgbouncer.log").string())
        << fmt::format("pidfile = {}\n", (m_dir / "pgbouncer.pid").string());
    for (const auto& [k, v] : m_options.settings) ini << k << " = " << v << "\n";
    ini.close();
    drop_to_postgres_owner();
    m_pid = spawn({binary, (m_dir / "pgbouncer.ini").string()});
    wait_ready();
  }
  ~pgbouncer_process() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }
  pgbouncer_process(const pgbouncer_process&) = delete;
  pgbouncer_process& operator=(const pgbouncer_process&) = delete;

  /// A key=value DSN to database `postgres` through PgBouncer (TCP loopback).
  [[nodiscard]] std::string dsn() const {
    return fmt::format("host=127.0.0.1 port={} dbname=postgres user=postgres", m_port);
  }
  /// The admin console (SHOW STATS, SHOW POOLS …).
  [[nodiscard]] std::string admin_dsn() const {
    return fmt::format("host=127.0.0.1 port={} dbname=pgbouncer user=postgres", m_port);
  }
  [[nodiscard]] int port() const noexcept { return m_port; }
  [[nodiscard]] int pid() const noexcept { return m_pid; }
  /// PgBouncer's log so far.
  [[nodiscard]] std::string log() const {
    std::ifstream in(m_dir / "pgbouncer.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  /// Stops PgBouncer (SIGTERM, then SIGKILL after 5 s) and reaps it. Idempotent.
  void stop() noexcept {
    if (m_pid <= 0) return;
    ::kill(m_pid, SIGTERM);
    if (!reaped_within(std::chrono::seconds(5))) {
      ::kill(m_pid, SIGKILL);
      (void)reaped_within(std::chrono::seconds(5));
    }
    m_pid = 0;
  }

 private:
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) ::close(fd);
      throw std::runtime_error("no free loopback port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  void drop_to_postgres_owner() {
    if (::geteuid() != 0) return;
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) throw std::runtime_error("running as root without a 'postgres' user to run pgbouncer as");
    m_uid = pw->pw_uid;
    m_gid = pw->pw_gid;
    m_drop = true;
    for (const auto& p : {m_dir, m_dir / "userlist.txt", m_dir / "pgbouncer.ini"}) {
      if (::chown(p.c_str(), m_uid, m_gid) != 0) throw std::system_error(errno, std::generic_category(), "chown");
    }
  }

  pid_t spawn(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string out_path = (m_dir / "stdout.log").string();
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid > 0) return pid;
    // Child: only async-signal-safe calls from here on.
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || out < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0U, 0);
    if (m_drop) {
      if (::fchown(1, m_uid, m_gid) != 0) ::_exit(126);
      if (::setgroups(0, nullptr) != 0 || ::setgid(m_gid) != 0 || ::setuid(m_uid) != 0) ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the test binary
    if (::getppid() != parent) ::_exit(1);
    ::execv(args[0], args.data());
    ::_exit(127);
  }

  bool reaped_within(std::chrono::milliseconds patience) noexcept {
    const auto until = std::chrono::steady_clock::now() + patience;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      const pid_t r = ::waitpid(m_pid, &status, WNOHANG);
      if (r == m_pid || (r < 0 && errno == ECHILD)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  void wait_ready() {
    const auto until = std::chrono::steady_clock::now() + m_options.start_timeout;
    const std::string conninfo = admin_dsn() + " connect_timeout=2";
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
        m_pid = 0;
        throw std::runtime_error("pgbouncer exited at start:\n" + log());
      }
      if (PQping(conninfo.c_str()) == PQPING_OK) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop();
    throw std::runtime_error("pgbouncer did not accept connections in time:\n" + log());
  }

  pgbouncer_options m_options;
  std::filesystem::path m_dir;
  int m_port = 0;
  pid_t m_pid = 0;
  bool m_drop = false;
  uid_t m_uid = 0;
  gid_t m_gid = 0;
};

}  // namespace steadypg::test
