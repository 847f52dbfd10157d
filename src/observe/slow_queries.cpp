#include "steadypg/observe/slow_queries.hpp"

#include "steadypg/error.hpp"

namespace steadypg::observe {

void slow_query_log::record(const call_report& report) noexcept {
  try {
    slow_query q;
    q.at = std::chrono::system_clock::now();
    q.operation = std::string(report.operation);
    q.sql = std::string(report.sql.substr(0, 500));
    q.params = std::string(report.params);
    q.duration_ms = std::chrono::duration<double, std::milli>(report.duration).count();
    q.rows = report.rows;
    q.attempts = report.attempts;
    q.failed = report.failure != nullptr;
    std::function<void(const slow_query&)> callback;
    {
      std::lock_guard lk(m_mutex);
      m_ring.push_back(q);
      while (m_ring.size() > m_capacity) m_ring.pop_front();
      callback = m_callback;
    }
    if (callback) callback(q);
  } catch (...) {
    // Out of memory while recording: the call itself succeeded or failed already.
  }
}

std::vector<slow_query> slow_query_log::recent() const {
  std::lock_guard lk(m_mutex);
  return {m_ring.begin(), m_ring.end()};
}

void slow_query_log::attach_plan(std::string_view sql, std::string plan, std::vector<std::string> findings) noexcept {
  const std::string_view key = sql.substr(0, 500);
  std::lock_guard lk(m_mutex);
  for (auto it = m_ring.rbegin(); it != m_ring.rend(); ++it) {
    if (it->sql == key && it->plan.empty()) {
      it->plan = std::move(plan);
      it->plan_findings = std::move(findings);
      return;
    }
  }
}

void slow_query_log::on_slow(std::function<void(const slow_query&)> callback) {
  std::lock_guard lk(m_mutex);
  m_callback = std::move(callback);
}

}  // namespace steadypg::observe
