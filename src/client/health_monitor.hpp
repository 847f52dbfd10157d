#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "steadypg/health.hpp"
#include "steadypg/observer.hpp"

namespace steadypg::internal {

// Runs a health check every `interval` on a thread of its own, keeps the last status and
// reports changes through observer::on_health_changed. Started on demand; stopped (and
// joined) when destroyed.
class health_monitor {
 public:
  health_monitor(std::function<health_status()> check, std::chrono::milliseconds interval, observer* obs)
      : m_check(std::move(check)), m_interval(interval), m_observer(obs) {}
  ~health_monitor();
  health_monitor(const health_monitor&) = delete;
  health_monitor& operator=(const health_monitor&) = delete;

  // Starts the thread; false when it was already started.
  bool start();
  [[nodiscard]] health_status last() const noexcept { return m_last.load(); }

 private:
  void loop();

  std::function<health_status()> m_check;
  std::chrono::milliseconds m_interval;
  observer* m_observer;
  std::atomic<health_status> m_last{health_status::healthy};
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_stop = false;
  std::thread m_thread;  // declared last: stopped first
};

}  // namespace steadypg::internal
