#pragma once

// Private: LISTENs on the cache's invalidation channel on a connection of its own and hands each
// notification's tags to a callback (cross-process invalidation, docs/cache.md).

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace steadypg::internal {

class notify_listener {
 public:
  /// `on_tags`: the tags of one notification. `on_reconnected`: the channel was down and is back
  /// (notifications may have been missed). Both run on the listener's thread.
  notify_listener(std::string dsn, std::string channel, std::function<void(std::vector<std::string>)> on_tags,
                  std::function<void()> on_reconnected);
  ~notify_listener();
  notify_listener(const notify_listener&) = delete;
  notify_listener& operator=(const notify_listener&) = delete;

  /// True once LISTEN has been acknowledged (tests wait for it).
  [[nodiscard]] bool listening() const noexcept { return m_listening.load(); }

  /// The tags of a payload: one per line.
  [[nodiscard]] static std::vector<std::string> split_payload(std::string_view payload);
  /// The payloads for `tags`: one per line, each under the 8000-byte NOTIFY limit.
  [[nodiscard]] static std::vector<std::string> payloads(const std::vector<std::string>& tags);

 private:
  void loop();
  std::string m_dsn, m_channel;
  std::function<void(std::vector<std::string>)> m_on_tags;
  std::function<void()> m_on_reconnected;
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_listening{false};
  std::thread m_thread;
};

}  // namespace steadypg::internal
