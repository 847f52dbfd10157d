#include "notify_listener.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <memory>
#include <string_view>
#include <utility>

namespace steadypg::internal {

notify_listener::notify_listener(std::string dsn, std::string channel,
                                 std::function<void(std::vector<std::string>)> on_tags,
                                 std::function<void()> on_reconnected)
    : m_dsn(std::move(dsn)),
      m_channel(std::move(channel)),
      m_on_tags(std::move(on_tags)),
      m_on_reconnected(std::move(on_reconnected)) {
  m_thread = std::thread([this] { loop(); });
}

notify_listener::~notify_listener() {
  m_stop = true;
  if (m_thread.joinable()) m_thread.join();
}

std::vector<std::string> notify_listener::split_payload(std::string_view payload) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= payload.size()) {
    auto end = payload.find('\n', start);
    if (end == std::string_view::npos) end = payload.size();
    if (end > start) out.emplace_back(payload.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> notify_listener::payloads(const std::vector<std::string>& tags) {
  std::vector<std::string> out;
  std::string cur;
  for (const auto& t : tags) {
    if (t.empty() || t.size() > 7000 || t.find('\n') != std::string::npos) continue;
    if (!cur.empty() && cur.size() + 1 + t.size() > 7900) out.push_back(std::exchange(cur, {}));
    if (!cur.empty()) cur.push_back('\n');
    cur.append(t);
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

void notify_listener::loop() {
  using conn_ptr = std::unique_ptr<PGconn, decltype(&PQfinish)>;
  bool was_down = false;
  auto backoff = std::chrono::milliseconds(50);
  while (!m_stop) {
    const char* keys[] = {"dbname", "connect_timeout", nullptr};
    const char* values[] = {m_dsn.c_str(), "5", nullptr};
    conn_ptr conn(PQconnectdbParams(keys, values, 1), &PQfinish);
    bool ok = conn && PQstatus(conn.get()) == CONNECTION_OK;
    if (ok) {
      const std::string sql = "LISTEN " + m_channel;
      std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn.get(), sql.c_str()), &PQclear);
      ok = r && PQresultStatus(r.get()) == PGRES_COMMAND_OK;
    }
    if (!ok) {
      was_down = true;
      m_listening = false;
      for (auto waited = std::chrono::milliseconds(0); waited < backoff && !m_stop;
           waited += std::chrono::milliseconds(10)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      continue;
    }
    backoff = std::chrono::milliseconds(50);
    if (was_down) {
      try {
        m_on_reconnected();
      } catch (...) {
      }
    }
    m_listening = true;
    while (!m_stop) {
      pollfd p{PQsocket(conn.get()), POLLIN, 0};
      const int n = ::poll(&p, 1, 50);
      if (n < 0) continue;
      if (n > 0 && !PQconsumeInput(conn.get())) break;  // lost: reconnect
      while (PGnotify* note = PQnotifies(conn.get())) {
        std::unique_ptr<PGnotify, decltype(&PQfreemem)> holder(note, &PQfreemem);
        try {
          m_on_tags(split_payload(note->extra ? note->extra : ""));
        } catch (...) {
        }
      }
      if (PQstatus(conn.get()) != CONNECTION_OK) break;
    }
    m_listening = false;
    was_down = true;
  }
}

}  // namespace steadypg::internal
