#pragma once

// A test-only TCP proxy on 127.0.0.1 between the client and the server, for faults libpq
// cannot produce by itself: cut the connection right after the client sent a given statement
// (so the server runs it but its reply is lost), delay the server's replies, or black-hole
// all traffic. Loopback only; one thread per proxied connection.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace steadypg::test {

class fault_proxy {
 public:
  /// Forwards 127.0.0.1:<port()> to 127.0.0.1:`target_port`.
  explicit fault_proxy(int target_port) : m_target(target_port) {
    m_listen = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(m_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(m_listen, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(m_listen, 64) != 0 ||
        ::getsockname(m_listen, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("fault_proxy: cannot listen on 127.0.0.1");
    }
    m_port = ntohs(a.sin_port);
    m_acceptor = std::thread([this] { accept_loop(); });
  }

  ~fault_proxy() {
    m_stop = true;
    ::shutdown(m_listen, SHUT_RDWR);
    ::close(m_listen);
    m_acceptor.join();
    // Join outside the lock: a worker may be taking m_mu to record a message.
    std::vector<std::thread> workers;
    {
      std::lock_guard lk(m_mu);
      workers.swap(m_workers);
    }
    for (auto& t : workers) t.join();
  }

  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  [[nodiscard]] int port() const { return m_port; }
  /// A DSN that reaches the server through this proxy (TCP, no TLS).
  [[nodiscard]] std::string dsn() const {
    return "host=127.0.0.1 user=postgres dbname=postgres sslmode=disable port=" + std::to_string(m_port);
  }

  /// After the client sends bytes containing `pattern`, forward them, then drop whatever the
  /// server answers and close the client's connection (once; re-arm to repeat).
  void cut_reply_after(std::string pattern) {
    std::lock_guard lk(m_mu);
    m_cut_pattern = std::move(pattern);
    m_armed = true;
  }
  /// After the client sends bytes containing "COMMIT", forward the server's answers up to, but
  /// not including, the reply to that COMMIT (its CommandComplete), then drop the rest and close
  /// the client's connection (once): the server committed, the client saw everything but that.
  void lose_commit_reply() {
    std::lock_guard lk(m_mu);
    m_cut_pattern = "COMMIT";
    m_armed = true;
    m_keep_until_commit = true;
  }
  /// New connections go to `target_port` from now on (connections already open stay where they are).
  void retarget(int target_port) { m_target = target_port; }
  /// Delays every reply from the server by `d` (0 to stop).
  void delay_replies(std::chrono::milliseconds d) { m_delay_ms = static_cast<int>(d.count()); }
  /// Stops forwarding anything in either direction, keeping the sockets open.
  void black_hole(bool on) { m_black_hole = on; }
  /// How many client messages contained `pattern` (counted while armed or after).
  [[nodiscard]] int times_seen(const std::string& pattern) const {
    std::lock_guard lk(m_mu);
    int n = 0;
    for (const auto& s : m_seen) n += s.find(pattern) != std::string::npos;
    return n;
  }

 private:
  void accept_loop() {
    while (!m_stop) {
      const int client = ::accept(m_listen, nullptr, nullptr);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(m_target.load()));
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      int one = 1;
      ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lk(m_mu);
      m_workers.emplace_back([this, client, server] { pump(client, server); });
    }
  }

  // Forwards the complete server messages of `pending` (type byte + length) until the reply to
  // COMMIT; true once it was reached (nothing from it on is forwarded).
  static bool forward_until_commit_reply(int client, std::string& pending) {
    std::size_t at = 0;
    while (pending.size() - at >= 5) {
      const auto* p = reinterpret_cast<const unsigned char*>(pending.data() + at);
      const std::size_t len = (std::size_t{p[1]} << 24) | (std::size_t{p[2]} << 16) | (std::size_t{p[3]} << 8) | p[4];
      if (pending.size() - at < len + 1) break;
      const bool commit_reply = p[0] == 'C' && pending.compare(at + 5, 6, "COMMIT") == 0;
      if (commit_reply) {
        (void)::send(client, pending.data(), at, MSG_NOSIGNAL);
        return true;
      }
      at += len + 1;
    }
    (void)::send(client, pending.data(), at, MSG_NOSIGNAL);
    pending.erase(0, at);
    return false;
  }

  void pump(int client, int server) {
    bool cutting = false;
    bool keep_until_commit = false;
    std::string pending;  // server bytes not yet forwarded while keeping answers until COMMIT's
    char buf[65536];
    while (!m_stop) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(fds, 2, 50) <= 0) continue;
      if (m_black_hole) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      if (fds[0].revents) {
        const ssize_t n = ::recv(client, buf, sizeof buf, 0);
        if (n <= 0) break;
        const std::string chunk(buf, static_cast<std::size_t>(n));
        {
          std::lock_guard lk(m_mu);
          m_seen.push_back(chunk);
          if (m_armed && !m_cut_pattern.empty() && chunk.find(m_cut_pattern) != std::string::npos) {
            m_armed = false;
            cutting = !m_keep_until_commit;
            keep_until_commit = m_keep_until_commit;
            m_keep_until_commit = false;
          }
        }
        if (::send(server, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) < 0) break;
        if (cutting) {
          // Let the server receive and run it, swallow its answer, then hang up on the client.
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          break;
        }
      }
      if (fds[1].revents) {
        const ssize_t n = ::recv(server, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (const int d = m_delay_ms.load(); d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(d));
        if (keep_until_commit) {
          pending.append(buf, static_cast<std::size_t>(n));
          if (forward_until_commit_reply(client, pending)) {
            // The server committed; its answer never arrives.
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            break;
          }
          continue;
        }
        if (::send(client, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) < 0) break;
      }
    }
    ::close(client);
    ::close(server);
  }

  std::atomic<int> m_target;
  int m_listen = -1;
  int m_port = 0;
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_black_hole{false};
  std::atomic<int> m_delay_ms{0};
  mutable std::mutex m_mu;
  std::string m_cut_pattern;
  bool m_armed = false;
  bool m_keep_until_commit = false;
  std::vector<std::string> m_seen;
  std::thread m_acceptor;
  std::vector<std::thread> m_workers;
};

}  // namespace steadypg::test
