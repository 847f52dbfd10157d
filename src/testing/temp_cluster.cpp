#include "steadypg/testing/temp_cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "steadypg/dsn.hpp"
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace fs = std::filesystem;

namespace steadypg::testing {
namespace {

using namespace std::chrono_literals;

struct run_as {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

run_as server_user() {
  run_as r;
  if (::geteuid() != 0) return r;
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) {
    throw std::runtime_error(
        "temp_cluster: running as root, but there is no unprivileged 'postgres' user to run the server as "
        "(PostgreSQL refuses to run as root); create one or run as an ordinary user");
  }
  r.drop = true;
  r.uid = pw->pw_uid;
  r.gid = pw->pw_gid;
  return r;
}

fs::path find_bin_dir(const fs::path& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("STEADYPG_PG_BINDIR"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres")) candidates.push_back(e.path() / "bin");
  }
  if (!candidates.empty()) {
    std::sort(candidates.begin(), candidates.end(), [](const fs::path& a, const fs::path& b) {
      return std::atoi(a.parent_path().filename().c_str()) < std::atoi(b.parent_path().filename().c_str());
    });
    return candidates.back();
  }
  if (FILE* p = ::popen("pg_config --bindir 2>/dev/null", "r")) {
    char buf[512] = {};
    const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
    ::pclose(p);
    std::string s = got ? buf : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!s.empty() && fs::exists(fs::path(s) / "postgres")) return s;
  }
  throw std::runtime_error(
      "temp_cluster: cannot find the PostgreSQL server binaries (initdb, postgres); "
      "install the postgresql package or set STEADYPG_PG_BINDIR");
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "temp_cluster: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "temp_cluster: bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// fork + exec `argv` as the server user with stdout/stderr appended to `log`.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log, const run_as& user, bool detach_session,
            bool die_with_parent) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string log_path = log.string();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "temp_cluster: fork");
  if (pid > 0) return pid;
  // Child: only async-signal-safe calls from here on.
  if (detach_session) ::setsid();
  const int in = ::open("/dev/null", O_RDONLY);
  const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (in < 0 || out < 0) ::_exit(126);
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(out, 2);
  ::close_range(3, ~0U, 0);
  if (user.drop) {
    if (::fchown(1, user.uid, user.gid) != 0) ::_exit(126);
    if (::setgroups(0, nullptr) != 0 || ::setgid(user.gid) != 0 || ::setuid(user.uid) != 0) ::_exit(126);
  }
  if (die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGINT);
    if (::getppid() != parent) ::_exit(1);
  }
  ::execv(args[0], args.data());
  ::_exit(127);
}

std::string read_tail(const fs::path& file, std::size_t max_bytes) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// Reaps our own child, or watches a foreign pid until it disappears.
bool wait_gone(pid_t pid, std::chrono::milliseconds patience) {
  const auto until = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno == ECHILD && !alive(pid)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

void chown_tree(const fs::path& p, const run_as& user) {
  if (!user.drop) return;
  if (::chown(p.c_str(), user.uid, user.gid) != 0) {
    throw std::system_error(errno, std::generic_category(), "temp_cluster: chown " + p.string());
  }
}

// Runs a short-lived tool (initdb, pg_basebackup, pg_rewind) as the server user with its
// output in `log`; kills it after `patience`. True when it exited with status 0.
bool run_to_completion(const std::vector<std::string>& argv, const fs::path& log, const run_as& user,
                       std::chrono::milliseconds patience) {
  const pid_t pid = spawn(argv, log, user, false, false);
  const auto until = std::chrono::steady_clock::now() + patience;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() >= until) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      std::ofstream(log, std::ios::app) << fmt::format("\n(killed after {} ms)\n", patience.count());
      return false;
    }
    std::this_thread::sleep_for(20ms);
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

temp_cluster::temp_cluster(temp_cluster_options options) : m_options(std::move(options)) {
  const auto user = server_user();
  m_options.bin_dir = find_bin_dir(m_options.bin_dir);
  if (m_options.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = fmt::format("{}/steadypg-XXXXXX", (tmp && *tmp) ? tmp : "/tmp");
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "temp_cluster: mkdtemp " + templ);
    }
    m_options.dir = templ;
    m_created_dir = true;
  } else {
    m_options.dir = fs::absolute(m_options.dir);
    m_created_dir = fs::create_directories(m_options.dir);
  }
  try {
    ::chmod(m_options.dir.c_str(), 0700);
    chown_tree(m_options.dir, user);
    const bool has_data = fs::exists(m_options.dir / "data" / "PG_VERSION");
    if (has_data && !m_options.reuse) {
      throw std::runtime_error("temp_cluster: " + m_options.dir.string() +
                               " already holds a cluster; remove it or set reuse");
    }
    if (!has_data && m_options.standby_of.empty()) init_data();
    if (!has_data && !m_options.standby_of.empty()) base_backup(m_options.standby_of);
    if (m_options.port == 0 && has_data) {
      std::ifstream in(m_options.dir / "port");
      in >> m_options.port;
    }
    start();
  } catch (...) {
    if (m_created_dir) {
      std::error_code ec;
      fs::remove_all(m_options.dir, ec);
    }
    throw;
  }
}

temp_cluster::~temp_cluster() {
  if (m_detached) return;
  try {
    if (running()) stop();
  } catch (...) {
  }
  if (m_options.keep) return;
  std::error_code ec;
  if (m_created_dir) {
    fs::remove_all(m_options.dir, ec);
  } else {
    fs::remove_all(m_options.dir / "data", ec);
    fs::remove(m_options.dir / "server.log", ec);
    fs::remove(m_options.dir / "port", ec);
  }
}

void temp_cluster::init_data() {
  const auto user = server_user();
  const fs::path data = m_options.dir / "data";
  std::vector<std::string> argv{(m_options.bin_dir / "initdb").string(),
                                "-D",
                                data.string(),
                                "-U",
                                "postgres",
                                "-E",
                                "UTF8",
                                "--no-locale",
                                "--no-sync",
                                "--no-instructions"};
  fs::path pwfile;
  if (!m_options.password.empty()) {
    pwfile = m_options.dir / "pwfile";
    {
      std::ofstream out(pwfile);
      out << m_options.password << "\n";
    }
    ::chmod(pwfile.c_str(), 0600);
    chown_tree(pwfile, user);
    argv.insert(argv.end(), {"--pwfile=" + pwfile.string(), "--auth-local=trust", "--auth-host=scram-sha-256"});
  } else {
    argv.emplace_back("--auth=trust");
  }
  const fs::path log = m_options.dir / "initdb.log";
  const bool ok = run_to_completion(argv, log, user, std::max<std::chrono::milliseconds>(m_options.start_timeout, 60s));
  std::error_code ec;
  if (!pwfile.empty()) fs::remove(pwfile, ec);
  if (!ok) {
    throw std::runtime_error(
        fmt::format("temp_cluster: initdb failed in {} (is the path reachable by the server "
                    "user?):\n{}",
                    data.string(), read_tail(log, 4000)));
  }
  fs::remove(log, ec);
  if (replication_ready()) {
    // initdb's sample has these lines too; they are written here so that a standby can
    // always connect, whatever the sample of this PostgreSQL version says.
    const char* host_method = m_options.password.empty() ? "trust" : "scram-sha-256";
    std::ofstream hba(data / "pg_hba.conf", std::ios::app);
    hba << "\n# streaming replication (steadypg::testing)\n"
        << "local   replication all                trust\n"
        << "host    replication all 127.0.0.1/32   " << host_method << "\n";
    if (!hba) throw std::runtime_error("temp_cluster: cannot write " + (data / "pg_hba.conf").string());
  }
}

void temp_cluster::base_backup(const std::string& primary_dsn) {
  const auto user = server_user();
  const fs::path data = m_options.dir / "data";
  const std::vector<std::string> argv{(m_options.bin_dir / "pg_basebackup").string(),
                                      "-D",
                                      data.string(),
                                      "-R",
                                      "-X",
                                      "stream",
                                      "-c",
                                      "fast",
                                      "--no-sync",
                                      "-d",
                                      primary_dsn};
  const fs::path log = m_options.dir / "basebackup.log";
  if (!run_to_completion(argv, log, user, std::max<std::chrono::milliseconds>(m_options.start_timeout, 60s))) {
    throw std::runtime_error(
        fmt::format("temp_cluster: pg_basebackup into {} failed:\n{}", data.string(), read_tail(log, 4000)));
  }
  std::error_code ec;
  fs::remove(log, ec);
}

void temp_cluster::rebuild_as_standby_of(const std::string& primary_dsn) {
  const auto user = server_user();
  if (running()) stop();
  const fs::path data = m_options.dir / "data";
  const std::vector<std::string> argv{(m_options.bin_dir / "pg_rewind").string(), "--target-pgdata=" + data.string(),
                                      "--source-server=" + primary_dsn, "--write-recovery-conf", "--no-sync"};
  const fs::path log = m_options.dir / "rewind.log";
  if (!run_to_completion(argv, log, user, std::max<std::chrono::milliseconds>(m_options.start_timeout, 60s))) {
    // pg_rewind refuses some histories (no common checkpoint, WAL already recycled): copy anew.
    std::error_code ec;
    fs::remove_all(data, ec);
    base_backup(primary_dsn);
  }
  start();
}

void temp_cluster::launch() {
  const auto user = server_user();
  std::vector<std::string> argv{(m_options.bin_dir / "postgres").string(),
                                "-D",
                                (m_options.dir / "data").string(),
                                "-p",
                                std::to_string(m_port),
                                "-c",
                                "listen_addresses=127.0.0.1",
                                "-c",
                                "unix_socket_directories=" + m_options.dir.string(),
                                "-c",
                                "fsync=off",
                                "-c",
                                "synchronous_commit=off",
                                "-c",
                                "full_page_writes=off",
                                "-c",
                                "max_connections=200"};
  if (replication_ready()) {
    for (const char* setting : {"wal_level=replica", "max_wal_senders=10", "max_replication_slots=10", "hot_standby=on",
                                "wal_keep_size=256MB", "wal_log_hints=on", "full_page_writes=on",
                                // A commit's WAL is written before it returns, so that a standby
                                // that reached pg_current_wal_lsn() has every acknowledged commit.
                                "synchronous_commit=on"}) {
      argv.emplace_back("-c");
      argv.emplace_back(setting);
    }
  }
  if (!m_options.name.empty()) {
    argv.emplace_back("-c");
    argv.push_back("cluster_name=" + m_options.name);
  }
  for (const auto& [k, v] : m_options.settings) {
    argv.emplace_back("-c");
    argv.push_back(k + "=" + v);
  }
  m_pid = spawn(argv, m_options.dir / "server.log", user, true, m_options.die_with_parent);
}

void temp_cluster::wait_ready() {
  const std::string ping_dsn =
      fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2", m_port);
  const auto until = std::chrono::steady_clock::now() + m_options.start_timeout;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
      m_pid = 0;
      throw std::runtime_error("temp_cluster: the server exited during startup:\n" + log_tail());
    }
    if (PQping(ping_dsn.c_str()) == PQPING_OK) return;
    std::this_thread::sleep_for(50ms);
  }
  throw std::runtime_error(fmt::format("temp_cluster: the server did not accept connections within {} ms:\n{}",
                                       m_options.start_timeout.count(), log_tail()));
}

void temp_cluster::start() {
  if (running()) return;
  const bool fixed_port = m_options.port != 0;
  for (int attempt = 0;; ++attempt) {
    m_port = fixed_port ? m_options.port : free_loopback_port();
    launch();
    try {
      wait_ready();
      m_options.port = m_port;  // a restart reuses the port, so DSNs stay valid
      std::ofstream(m_options.dir / "port") << m_port << "\n";
      return;
    } catch (const std::runtime_error&) {
      if (m_pid != 0) signal_and_wait(SIGQUIT, 10s);
      // Another process took the port between our probe and the server's bind: try another.
      if (fixed_port || attempt >= 4 || log_tail().find("could not bind") == std::string::npos) throw;
    }
  }
}

bool temp_cluster::running() const { return m_pid != 0 && alive(m_pid); }

void temp_cluster::signal_and_wait(int sig, std::chrono::milliseconds patience) {
  if (m_pid == 0) return;
  ::kill(m_pid, sig);
  if (!wait_gone(m_pid, patience)) {
    ::kill(m_pid, SIGQUIT);
    if (!wait_gone(m_pid, 10s)) {
      ::kill(m_pid, SIGKILL);
      wait_gone(m_pid, 10s);
    }
  }
  m_pid = 0;
}

void temp_cluster::stop() { signal_and_wait(SIGINT, 30s); }

void temp_cluster::restart() {
  stop();
  start();
}

void temp_cluster::kill() { signal_and_wait(SIGQUIT, 10s); }

void temp_cluster::detach() noexcept { m_detached = true; }

std::string temp_cluster::dsn() const {
  std::string d = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres", m_port);
  if (!m_options.password.empty()) d += " password=" + dsn_value(m_options.password);
  return d;
}

std::string temp_cluster::socket_dsn() const {
  return fmt::format("host={} port={} user=postgres dbname=postgres", m_options.dir.string(), m_port);
}

std::string temp_cluster::log_tail(std::size_t max_bytes) const {
  return read_tail(m_options.dir / "server.log", max_bytes);
}

int temp_cluster::running_pid_in(const fs::path& dir) {
  std::ifstream in(dir / "data" / "postmaster.pid");
  int pid = 0;
  if (!(in >> pid)) return 0;
  return alive(pid) ? pid : 0;
}

bool temp_cluster::stop_in(const fs::path& dir) {
  const int pid = running_pid_in(dir);
  if (pid == 0) return false;
  ::kill(pid, SIGINT);
  if (!wait_gone(pid, 30s)) {
    ::kill(pid, SIGQUIT);
    wait_gone(pid, 10s);
  }
  return true;
}

}  // namespace steadypg::testing
