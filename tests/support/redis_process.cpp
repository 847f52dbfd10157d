#include "redis_process.hpp"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace steadypg::test {

namespace {

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    throw std::runtime_error("cannot find a free loopback port");
  }
  ::close(s);
  return ntohs(a.sin_port);
}

bool reap(int pid, std::chrono::milliseconds patience) {
  const auto until = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    const int r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || r < 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

redis_process::redis_process(std::vector<std::string> extra_args) : m_extra(std::move(extra_args)) {
  char tmpl[] = "/tmp/steadypg-redis-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  m_dir = tmpl;
  m_port = free_port();
  start();
}

redis_process::~redis_process() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(m_dir, ec);
}

std::string redis_process::url() const { return "redis://127.0.0.1:" + std::to_string(m_port) + "/0"; }

void redis_process::start() {
  if (m_pid > 0) return;
  std::vector<std::string> args{"/usr/bin/redis-server",
                                "--port",
                                std::to_string(m_port),
                                "--bind",
                                "127.0.0.1",
                                "--save",
                                "",
                                "--appendonly",
                                "no",
                                "--daemonize",
                                "no",
                                "--dir",
                                m_dir.string(),
                                "--logfile",
                                (m_dir / "redis.log").string()};
  args.insert(args.end(), m_extra.begin(), m_extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    throw std::runtime_error("cannot start /usr/bin/redis-server");
  }
  m_pid = pid;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    try {
      if (command({"PING"}) == "PONG") return;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop();
  throw std::runtime_error("redis-server did not answer within 5 s");
}

void redis_process::stop() {
  if (m_pid <= 0) return;
  ::kill(m_pid, SIGTERM);
  if (!reap(m_pid, std::chrono::seconds(3))) {
    ::kill(m_pid, SIGKILL);
    reap(m_pid, std::chrono::seconds(3));
  }
  m_pid = -1;
}

std::string redis_process::command(const std::vector<std::string>& args) const {
  timeval tv{1, 0};
  std::unique_ptr<redisContext, decltype(&redisFree)> c(redisConnectWithTimeout("127.0.0.1", m_port, tv), &redisFree);
  if (!c || c->err) throw std::runtime_error("cannot connect to the test's redis-server");
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  std::unique_ptr<redisReply, decltype(&freeReplyObject)> r(
      static_cast<redisReply*>(redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())),
      &freeReplyObject);
  if (!r) throw std::runtime_error("no reply from the test's redis-server");
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) {
    return std::string(r->str, r->len);
  }
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  if (r->type == REDIS_REPLY_ARRAY) {
    std::string out;
    for (std::size_t i = 0; i < r->elements; ++i) {
      if (i) out.push_back('\n');
      if (r->element[i]->type == REDIS_REPLY_STRING) out.append(r->element[i]->str, r->element[i]->len);
    }
    return out;
  }
  return "";
}

}  // namespace steadypg::test
