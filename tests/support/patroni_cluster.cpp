#include "patroni_cluster.hpp"

#include "processes.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace steadypg::test {
namespace {

using clock_type = std::chrono::steady_clock;

struct run_as {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

run_as process_user() {
  run_as r;
  if (::geteuid() != 0) return r;
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) {
    throw std::runtime_error("patroni_cluster: running as root, but there is no 'postgres' user to run the servers as");
  }
  r.drop = true;
  r.uid = pw->pw_uid;
  r.gid = pw->pw_gid;
  return r;
}

void give_to(const fs::path& p, const run_as& user) {
  if (user.drop && ::chown(p.c_str(), user.uid, user.gid) != 0) {
    throw std::system_error(errno, std::generic_category(), "patroni_cluster: chown " + p.string());
  }
}

fs::path find_bin_dir(const fs::path& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("STEADYPG_PG_BINDIR"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres")) candidates.push_back(e.path() / "bin");
  }
  if (candidates.empty()) throw std::runtime_error("patroni_cluster: no /usr/lib/postgresql/*/bin/postgres");
  std::sort(candidates.begin(), candidates.end(), [](const fs::path& a, const fs::path& b) {
    return std::atoi(a.parent_path().filename().c_str()) < std::atoi(b.parent_path().filename().c_str());
  });
  return candidates.back();
}

std::optional<fs::path> which(const std::string& program) {
  for (const char* d : {"/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"}) {
    const fs::path p = fs::path(d) / program;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

int free_loopback_port(std::set<int>& taken) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "patroni_cluster: socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    ::close(fd);
    if (!ok) throw std::system_error(errno, std::generic_category(), "patroni_cluster: bind 127.0.0.1:0");
    const int port = ntohs(addr.sin_port);
    if (taken.insert(port).second) return port;
  }
  throw std::runtime_error("patroni_cluster: no free loopback port");
}

// fork + exec as the server user, in its own session, in `cwd`, with `env`, output appended
// to `log`. With `die_with_parent`, the child gets SIGTERM when the calling thread dies.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const fs::path& cwd,
            const fs::path& log, bool die_with_parent) {
  const auto user = process_user();
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string log_path = log.string();
  const std::string dir = cwd.string();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "patroni_cluster: fork");
  if (pid > 0) return pid;
  // Child: only async-signal-safe calls from here on.
  ::setsid();
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
  if (::chdir(dir.c_str()) != 0) ::_exit(126);
  // After the credentials change, which clears the parent-death signal.
  if (die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
  }
  ::execve(args[0], args.data(), envp.data());
  ::_exit(127);
}

std::vector<std::string> child_env(const fs::path& home) {
  return {"PATH=/usr/local/bin:/usr/bin:/bin",
          "HOME=" + home.string(),
          "LANG=C.UTF-8",
          "LC_ALL=C.UTF-8",
          "PYTHONUNBUFFERED=1",
          "TZ=UTC"};
}

// Reaps our own child, or watches another process until it is gone.
bool wait_gone(int pid, std::chrono::milliseconds patience) {
  const auto until = clock_type::now() + patience;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno == ECHILD && !process_alive(pid)) return true;
    if (clock_type::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
}

void kill_and_wait(int pid, int sig, std::chrono::milliseconds patience) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  if (!wait_gone(pid, patience) && sig != SIGKILL) {
    ::kill(pid, SIGKILL);
    wait_gone(pid, 5s);
  }
}

std::string read_tail(const fs::path& file, std::size_t max_bytes) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

struct http_reply {
  int status = 0;  // 0: no answer
  std::string body;
};

// A bounded HTTP/1.0 GET on 127.0.0.1 (Patroni's REST API, etcd's /health).
http_reply http_get(int port, const std::string& path, std::chrono::milliseconds timeout = 2s) {
  http_reply reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return reply;
  const auto until = clock_type::now() + timeout;
  auto left_ms = [&] {
    return static_cast<int>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now()).count()));
  };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EINPROGRESS;
  if (ok) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, left_ms()) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  const std::string request =
      fmt::format("GET {} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", path, port);
  if (ok) ok = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
  std::string raw;
  while (ok) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left_ms()) != 1) {
      ok = false;
      break;
    }
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (!ok || raw.compare(0, 5, "HTTP/") != 0) return reply;
  const auto space = raw.find(' ');
  if (space == std::string::npos) return reply;
  reply.status = std::atoi(raw.c_str() + space + 1);
  const auto body = raw.find("\r\n\r\n");
  if (body != std::string::npos) reply.body = raw.substr(body + 4);
  return reply;
}

std::optional<nlohmann::json> rest_json(int port, const std::string& path) {
  const auto r = http_get(port, path);
  if (r.status == 0) return std::nullopt;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

bool is_primary_role(const std::string& role) {
  return role == "master" || role == "primary" || role == "standby_leader";
}

}  // namespace

void patroni_cluster_options::validate() const {
  if (nodes < 1 || nodes > 5)
    throw std::invalid_argument(fmt::format("patroni_cluster: nodes {} is out of range 1–5", nodes));
  if (ttl < 5 || ttl > 300)
    throw std::invalid_argument(fmt::format("patroni_cluster: ttl {} is out of range 5–300", ttl));
  if (loop_wait < 1 || loop_wait > 60) {
    throw std::invalid_argument(fmt::format("patroni_cluster: loop_wait {} is out of range 1–60", loop_wait));
  }
  if (retry_timeout < 1 || retry_timeout > 300) {
    throw std::invalid_argument(fmt::format("patroni_cluster: retry_timeout {} is out of range 1–300", retry_timeout));
  }
  if (start_timeout < 5s || start_timeout > 600s) {
    throw std::invalid_argument(
        fmt::format("patroni_cluster: start_timeout {} ms is out of range 5000–600000", start_timeout.count()));
  }
}

std::string patroni_cluster::unavailable_reason() {
  for (const char* program : {"patroni", "patronictl", "etcd"}) {
    if (!which(program)) return fmt::format("{} is not installed (scripts/deps.sh installs it)", program);
  }
  if (::geteuid() == 0 && ::getpwnam("postgres") == nullptr) return "running as root without a 'postgres' user";
  return {};
}

patroni_cluster::patroni_cluster(patroni_cluster_options options) : m_options(std::move(options)) {
  m_options.validate();
  if (const auto reason = unavailable_reason(); !reason.empty()) throw std::runtime_error("patroni_cluster: " + reason);
  m_options.bin_dir = find_bin_dir(m_options.bin_dir);
  const auto user = process_user();
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = fmt::format("{}/steadypg-patroni-XXXXXX", (tmp && *tmp) ? tmp : "/tmp");
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "patroni_cluster: mkdtemp " + templ);
  }
  m_dir = templ;
  try {
    give_to(m_dir, user);
    std::set<int> taken;
    m_etcd_client_port = free_loopback_port(taken);
    m_etcd_peer_port = free_loopback_port(taken);
    m_nodes.resize(m_options.nodes);
    for (std::size_t i = 0; i < m_nodes.size(); ++i) {
      auto& n = m_nodes[i];
      n.pg_port = free_loopback_port(taken);
      n.rest_port = free_loopback_port(taken);
      n.dir = m_dir / name(i);
      fs::create_directories(n.dir);
      ::chmod(n.dir.c_str(), 0700);
      give_to(n.dir, user);
      write_config(i);
    }
    const auto until = clock_type::now() + m_options.start_timeout;
    start_etcd();
    for (std::size_t i = 0; i < m_nodes.size(); ++i) spawn_patroni(i);
    wait_healthy(std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now()));
  } catch (...) {
    teardown();
    throw;
  }
}

patroni_cluster::~patroni_cluster() { teardown(); }

void patroni_cluster::teardown() noexcept {
  try {
    // Patroni first, so that none restarts its PostgreSQL; then the postmasters (immediate
    // shutdown), then etcd, then any PostgreSQL program still running in our directories
    // (backends of a killed postmaster, a pg_basebackup or pg_rewind Patroni had started).
    std::vector<int> postmasters;
    for (std::size_t i = 0; i < m_nodes.size(); ++i) postmasters.push_back(postmaster_pid(i));
    for (auto& n : m_nodes) {
      kill_and_wait(n.patroni_pid, SIGKILL, 5s);
      n.patroni_pid = 0;
    }
    for (std::size_t i = 0; i < m_nodes.size(); ++i) {
      const int pm = std::max(postmasters[i], postmaster_pid(i));
      kill_and_wait(pm, SIGQUIT, 5s);
    }
    kill_and_wait(m_etcd_pid, SIGKILL, 5s);
    m_etcd_pid = 0;
    if (!m_dir.empty()) {
      for (int round = 0; round < 3; ++round) {
        const auto left = processes_in(m_dir, m_options.bin_dir);
        if (left.empty()) break;
        for (const int pid : left) ::kill(pid, SIGKILL);
        for (const int pid : left) wait_gone(pid, 2s);
      }
      std::error_code ec;
      fs::remove_all(m_dir, ec);
    }
  } catch (...) {
  }
}

const patroni_cluster::node_state& patroni_cluster::at(std::size_t i) const {
  if (i >= m_nodes.size()) {
    throw std::out_of_range(fmt::format("patroni_cluster: no node {} (there are {})", i, m_nodes.size()));
  }
  return m_nodes[i];
}

std::string patroni_cluster::name(std::size_t i) const {
  (void)at(i);
  return fmt::format("node{}", i);
}

int patroni_cluster::pg_port(std::size_t i) const { return at(i).pg_port; }

int patroni_cluster::rest_port(std::size_t i) const { return at(i).rest_port; }

std::string patroni_cluster::dsn() const {
  std::string hosts;
  std::string ports;
  for (const auto& n : m_nodes) {
    if (!hosts.empty()) {
      hosts += ',';
      ports += ',';
    }
    hosts += "127.0.0.1";
    ports += std::to_string(n.pg_port);
  }
  return fmt::format("host={} port={} user=postgres dbname=postgres", hosts, ports);
}

std::string patroni_cluster::node_dsn(std::size_t i) const {
  return fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres", at(i).pg_port);
}

void patroni_cluster::start_etcd() {
  const auto etcd = which("etcd");
  const fs::path data = m_dir / "etcd";
  const std::string client = fmt::format("http://127.0.0.1:{}", m_etcd_client_port);
  const std::string peer = fmt::format("http://127.0.0.1:{}", m_etcd_peer_port);
  const std::vector<std::string> argv{etcd->string(),
                                      "--name",
                                      "etcd0",
                                      "--data-dir",
                                      data.string(),
                                      "--listen-client-urls",
                                      client,
                                      "--advertise-client-urls",
                                      client,
                                      "--listen-peer-urls",
                                      peer,
                                      "--initial-advertise-peer-urls",
                                      peer,
                                      "--initial-cluster",
                                      "etcd0=" + peer,
                                      "--initial-cluster-state",
                                      "new",
                                      "--initial-cluster-token",
                                      m_dir.filename().string()};
  m_etcd_pid = spawn(argv, child_env(m_dir), m_dir, m_dir / "etcd.log", true);
  const bool up = wait_for(
      [&] {
        if (!process_alive(m_etcd_pid)) throw std::runtime_error("etcd exited");
        const auto r = http_get(m_etcd_client_port, "/health", 1s);
        return r.status == 200 && r.body.find("true") != std::string::npos;
      },
      20s);
  if (!up) throw std::runtime_error("patroni_cluster: etcd did not become healthy within 20 s:\n" + etcd_logs());
}

void patroni_cluster::write_config(std::size_t i) const {
  const auto& n = m_nodes[i];
  std::string extra;
  for (const auto& [k, v] : m_options.parameters) extra += fmt::format("    {}: '{}'\n", k, v);
  const std::string yaml = fmt::format(
      R"(scope: steadypg
namespace: /steadypg/
name: {name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry_timeout}
    maximum_lag_on_failover: 1048576
    synchronous_mode: {sync}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: 'on'
        wal_keep_size: 128MB
  initdb:
  - encoding: UTF8
  - no-locale
  - no-sync
  pg_hba:
  - local all all trust
  - local replication all trust
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {dir}/data
  bin_dir: {bin}
  pgpass: {dir}/pgpass
  use_pg_rewind: true
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: '{dir}'
    fsync: 'off'
    max_connections: 100
{extra}tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
)",
      fmt::arg("name", name(i)), fmt::arg("rest", n.rest_port), fmt::arg("etcd", m_etcd_client_port),
      fmt::arg("ttl", m_options.ttl), fmt::arg("loop_wait", m_options.loop_wait),
      fmt::arg("retry_timeout", m_options.retry_timeout),
      fmt::arg("sync", m_options.synchronous_mode ? "true" : "false"), fmt::arg("pg", n.pg_port),
      fmt::arg("dir", n.dir.string()), fmt::arg("bin", m_options.bin_dir.string()), fmt::arg("extra", extra));
  const fs::path file = n.dir / "patroni.yml";
  {
    std::ofstream out(file);
    out << yaml;
    if (!out) throw std::runtime_error("patroni_cluster: cannot write " + file.string());
  }
  ::chmod(file.c_str(), 0600);
  give_to(file, process_user());
}

void patroni_cluster::spawn_patroni(std::size_t i) {
  auto& n = m_nodes.at(i);
  const auto patroni = which("patroni");
  n.patroni_pid = spawn({patroni->string(), (n.dir / "patroni.yml").string()}, child_env(n.dir), n.dir,
                        n.dir / "patroni.log", true);
}

int patroni_cluster::patroni_pid(std::size_t i) const {
  const int pid = at(i).patroni_pid;
  return process_alive(pid) ? pid : 0;
}

int patroni_cluster::postmaster_pid(std::size_t i) const {
  std::ifstream in(at(i).dir / "data" / "postmaster.pid");
  int pid = 0;
  if (!(in >> pid)) return 0;
  return process_alive(pid) ? pid : 0;
}

std::optional<std::size_t> patroni_cluster::leader() const {
  for (std::size_t i = 0; i < m_nodes.size(); ++i) {
    if (http_get(m_nodes[i].rest_port, "/primary").status == 200) return i;
  }
  return std::nullopt;
}

std::vector<std::string> patroni_cluster::roles() const {
  std::vector<std::string> out;
  for (const auto& n : m_nodes) {
    const auto j = rest_json(n.rest_port, "/patroni");
    if (!j || !j->is_object()) {
      out.emplace_back("down");
      continue;
    }
    const std::string state = j->value("state", "");
    const std::string role = j->value("role", "");
    if (state != "running") {
      out.push_back(state.empty() ? "unknown" : state);
    } else if (is_primary_role(role)) {
      out.emplace_back("leader");
    } else {
      out.push_back(role == "replica" ? "replica" : role);
    }
  }
  return out;
}

bool patroni_cluster::healthy() const {
  const auto l = leader();
  if (!l) return false;
  const auto r = roles();
  const auto j = rest_json(m_nodes[*l].rest_port, "/patroni");
  if (!j) return false;
  std::set<std::string> streaming;
  if (j->contains("replication") && (*j)["replication"].is_array()) {
    for (const auto& rep : (*j)["replication"]) {
      if (rep.value("state", "") == "streaming") streaming.insert(rep.value("application_name", ""));
    }
  }
  for (std::size_t i = 0; i < m_nodes.size(); ++i) {
    if (i == *l) continue;
    if (r[i] != "replica" || streaming.count(name(i)) == 0) return false;
  }
  return r[*l] == "leader";
}

void patroni_cluster::wait_healthy(std::chrono::milliseconds timeout) {
  if (!wait_for([&] { return healthy(); }, timeout)) {
    const auto r = roles();
    std::string summary;
    for (std::size_t i = 0; i < r.size(); ++i) summary += fmt::format(" {}={}", name(i), r[i]);
    throw std::runtime_error(
        fmt::format("patroni_cluster: no leader with {} streaming replicas within {} ms (roles:{})\n{}",
                    m_nodes.size() - 1, timeout.count(), summary, all_logs()));
  }
}

bool patroni_cluster::wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) const {
  const auto until = clock_type::now() + timeout;
  for (;;) {
    try {
      if (pred()) return true;
    } catch (const std::exception&) {
    }
    if (clock_type::now() >= until) return false;
    std::this_thread::sleep_for(100ms);
  }
}

std::string patroni_cluster::patronictl(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  const auto ctl = which("patronictl");
  if (!ctl) throw std::runtime_error("patroni_cluster: patronictl is not installed");
  std::vector<std::string> argv{ctl->string(), "-c", (m_nodes.at(0).dir / "patroni.yml").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  static std::atomic<int> counter{0};
  const fs::path out = m_dir / fmt::format("patronictl-{}.out", ++counter);
  const pid_t pid = spawn(argv, child_env(m_dir), m_dir, out, true);
  const auto until = clock_type::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (clock_type::now() >= until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      throw std::runtime_error(fmt::format("patroni_cluster: patronictl {} took longer than {} ms:\n{}",
                                           fmt::join(args, " "), timeout.count(), read_tail(out, 4000)));
    }
    std::this_thread::sleep_for(20ms);
  }
  std::string text = read_tail(out, 1 << 20);
  std::error_code ec;
  fs::remove(out, ec);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(fmt::format("patroni_cluster: patronictl {} failed:\n{}", fmt::join(args, " "), text));
  }
  return text;
}

void patroni_cluster::switchover(std::size_t from, std::size_t to, std::chrono::milliseconds timeout) {
  (void)at(from);
  (void)at(to);
  const auto until = clock_type::now() + timeout;
  (void)patronictl({"switchover", "--leader", name(from), "--candidate", name(to), "--force"}, timeout);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now());
  if (!wait_for([&] { return leader() == to; }, std::max(left, 0ms))) {
    throw std::runtime_error(fmt::format("patroni_cluster: {} did not become the leader within {} ms\n{}", name(to),
                                         timeout.count(), all_logs()));
  }
}

void patroni_cluster::kill_node(std::size_t i) {
  auto& n = m_nodes.at(i);
  const int pm = postmaster_pid(i);
  kill_and_wait(n.patroni_pid, SIGKILL, 5s);
  n.patroni_pid = 0;
  kill_and_wait(pm, SIGKILL, 5s);
}

void patroni_cluster::stop_node(std::size_t i, std::chrono::milliseconds timeout) {
  auto& n = m_nodes.at(i);
  const int pm = postmaster_pid(i);
  // SIGTERM: Patroni stops its PostgreSQL (fast shutdown) and releases the leader lock.
  kill_and_wait(n.patroni_pid, SIGTERM, timeout);
  n.patroni_pid = 0;
  kill_and_wait(pm, SIGINT, timeout);
}

void patroni_cluster::start_node(std::size_t i) {
  if (patroni_pid(i) != 0) return;
  spawn_patroni(i);
  const int pid = m_nodes[i].patroni_pid;
  if (!wait_for(
          [&] {
            if (!process_alive(pid)) throw std::runtime_error("patroni exited");
            return http_get(m_nodes[i].rest_port, "/patroni", 1s).status != 0;
          },
          30s)) {
    throw std::runtime_error(
        fmt::format("patroni_cluster: the REST API of {} did not answer within 30 s\n{}", name(i), logs(i)));
  }
}

std::string patroni_cluster::logs(std::size_t i, std::size_t max_bytes) const {
  return read_tail(at(i).dir / "patroni.log", max_bytes);
}

std::string patroni_cluster::etcd_logs(std::size_t max_bytes) const { return read_tail(m_dir / "etcd.log", max_bytes); }

std::string patroni_cluster::all_logs() const {
  std::string out;
  for (std::size_t i = 0; i < m_nodes.size(); ++i) out += fmt::format("--- {} ---\n{}\n", name(i), logs(i, 3000));
  out += "--- etcd ---\n" + etcd_logs(1500);
  return out;
}

}  // namespace steadypg::test
