#include <exception>

#include "health_monitor.hpp"
#include "steadypg/client.hpp"

namespace steadypg {

health_report client::health_check() {
  health_report h;
  h.threshold_ms = static_cast<double>(m_options.observe.slow_query_threshold.count());
  h.breaker = m_breaker.state();
  if (h.breaker == breaker_state::open || h.breaker == breaker_state::forced_open) {
    h.status = health_status::unhealthy;
    h.reason = "circuit breaker is open";
    return h;
  }
  const auto stats = m_pool->stats();
  if (stats.waiting > 0 || (stats.active >= stats.max && stats.idle == 0)) {
    h.status = health_status::degraded;
    h.reason = "connection pool is saturated";
    return h;
  }
  try {
    auto c = m_pool->acquire_until(clock::now() + m_options.connection.connect_timeout, "health");
    const auto saved = c->options().query_timeout;
    c->set_query_timeout(m_options.connection.connect_timeout);
    const auto t0 = clock::now();
    try {
      c->ping();
    } catch (...) {
      c->set_query_timeout(saved);
      throw;
    }
    h.latency_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    c->set_query_timeout(saved);
  } catch (const error& e) {
    h.status = health_status::unhealthy;
    h.reason = "the server cannot be reached";
    h.error = e.what();
    return h;
  }
  if (h.breaker == breaker_state::half_open) {
    h.status = health_status::degraded;
    h.reason = "circuit breaker is half-open";
  } else if (h.latency_ms > h.threshold_ms) {
    h.status = health_status::degraded;
    h.reason = "ping slower than the slow-query threshold";
  } else {
    h.status = health_status::healthy;
  }
  return h;
}

void client::start_health_monitor() {
  if (m_health_monitor->start() && m_metrics) m_metrics->watch_health([this] { return last_health(); });
}

health_status client::last_health() const noexcept { return m_health_monitor->last(); }

}  // namespace steadypg
