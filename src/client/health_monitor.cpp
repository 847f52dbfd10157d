#include "health_monitor.hpp"

namespace steadypg::internal {

health_monitor::~health_monitor() {
  {
    std::lock_guard lk(m_mutex);
    m_stop = true;
  }
  m_cv.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

bool health_monitor::start() {
  std::lock_guard lk(m_mutex);
  if (m_thread.joinable() || m_stop) return false;
  m_thread = std::thread([this] { loop(); });
  return true;
}

void health_monitor::loop() {
  std::unique_lock lk(m_mutex);
  while (!m_stop) {
    lk.unlock();
    health_status now = health_status::unhealthy;
    try {
      now = m_check();
    } catch (...) {
    }
    const health_status before = m_last.exchange(now);
    if (before != now && m_observer != nullptr) m_observer->on_health_changed(before, now);
    lk.lock();
    m_cv.wait_for(lk, m_interval, [this] { return m_stop; });
  }
}

}  // namespace steadypg::internal
