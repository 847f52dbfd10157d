#pragma once

// `bench --ramp` and the pool size in the timeline (`bench --pool-mode`): which clients run at
// a given moment of a ramped run, and a once-a-second sample of the pool's size.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "steadypg/client.hpp"

namespace steadypg::cli {

/// With --ramp the run is cut in ten equal steps: 20 %, 40 %, 60 %, 80 %, 100 %, 100 %, 80 %,
/// 60 %, 40 %, 20 % of the clients (at least one) run in each. True when client `index`
/// (0-based) runs `elapsed` into a run of `total`.
[[nodiscard]] inline bool ramp_active(std::size_t index, std::size_t clients, std::chrono::nanoseconds elapsed,
                                      std::chrono::nanoseconds total) noexcept {
  if (total.count() <= 0) return true;
  const auto step = std::min<std::int64_t>(9, std::max<std::int64_t>(0, elapsed.count() * 10 / total.count()));
  const std::int64_t level = step < 5 ? step + 1 : 10 - step;  // fifths of the clients
  const auto active = std::max<std::size_t>(1, (clients * static_cast<std::size_t>(level) + 4) / 5);
  return index < active;
}

/// Samples the client's open connections (all hosts) at the end of every second of the run.
class pool_size_sampler {
 public:
  pool_size_sampler(client& db, std::size_t seconds, std::chrono::steady_clock::time_point start)
      : m_sizes(seconds + 1, 0), m_thread([this, &db, seconds, start] {
          std::unique_lock lk(m_mu);
          for (std::size_t s = 0; s < seconds; ++s) {
            m_cv.wait_until(lk, start + std::chrono::seconds(s + 1), [this] { return m_stop; });
            m_sizes[s] = db.pool_statistics().total;  // taken at the end of second s (or at stop)
            if (m_stop) break;
          }
        }) {}
  pool_size_sampler(const pool_size_sampler&) = delete;
  pool_size_sampler& operator=(const pool_size_sampler&) = delete;
  ~pool_size_sampler() { stop(); }
  void stop() {
    {
      std::lock_guard lk(m_mu);
      m_stop = true;
    }
    m_cv.notify_all();
    if (m_thread.joinable()) m_thread.join();
  }
  /// Open connections at the end of second `s` (0-based).
  [[nodiscard]] std::size_t at(std::size_t s) const { return s < m_sizes.size() ? m_sizes[s] : 0; }

 private:
  std::mutex m_mu;
  std::condition_variable m_cv;
  bool m_stop = false;
  std::vector<std::size_t> m_sizes;
  std::thread m_thread;
};

}  // namespace steadypg::cli
