#include <exception>

#include "health_monitor.hpp"
#include "router.hpp"
#include "steadypg/client.hpp"
#include "topology.hpp"

namespace steadypg {

health_report client::check_host(host_slot& host) {
  health_report h;
  h.threshold_ms = static_cast<double>(m_options.observe.slow_query_threshold.count());
  h.breaker = host.breaker->state();
  if (h.breaker == breaker_state::open || h.breaker == breaker_state::forced_open) {
    h.status = health_status::unhealthy;
    h.reason = "circuit breaker is open";
    return h;
  }
  const auto stats = host.pool->stats();
  if (stats.waiting > 0 || (stats.active >= stats.max && stats.idle == 0)) {
    h.status = health_status::degraded;
    h.reason = "connection pool is saturated";
    return h;
  }
  try {
    auto c = host.pool->acquire_until(clock::now() + m_options.connection.connect_timeout, "health");
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

health_report client::health_check() {
  if (!m_topology) return check_host(m_hosts.front());
  // The prober already knows every host; only the primary is pinged through its pool.
  auto snap = m_topology->snapshot();
  if (!snap->initialized) {
    // Right after the client started: the first round of probes (each within probe_timeout).
    snap = m_topology->wait_for(clock::now() + m_options.cluster.probe_timeout * 2,
                                [](const internal::topology_snapshot& s) { return s.initialized; });
  }
  health_report h;
  const bool reads_from_replicas =
      m_default_route == route::replica || m_default_route == route::prefer_replica || m_default_route == route::any;
  if (snap->primary) {
    h = check_host(m_hosts[*snap->primary]);
  } else {
    h.threshold_ms = static_cast<double>(m_options.observe.slow_query_threshold.count());
    h.breaker = m_hosts.front().breaker->state();
    bool replica_up = false;
    for (const auto& v : snap->hosts) replica_up = replica_up || internal::serves_reads(v);
    h.status = reads_from_replicas && replica_up ? health_status::degraded : health_status::unhealthy;
    h.reason = snap->primaries > 1 ? "two writable hosts on one timeline (split brain): writes are refused"
                                   : "no primary is available";
  }
  std::string down;
  for (std::size_t i = 0; i < m_hosts.size(); ++i) {
    const auto& v = snap->hosts[i];
    steadypg::host_health hh;
    hh.host = m_hosts[i].label;
    hh.role = std::string(to_string(v.role));
    hh.probe_ms = v.probe_ms;
    const bool breaker_open = m_hosts[i].breaker->is_open();
    switch (v.role) {
      case host_role::primary:
      case host_role::replica:
      case host_role::read_only_primary:
        hh.status = breaker_open ? health_status::unhealthy : health_status::healthy;
        if (breaker_open) hh.reason = "circuit breaker is open";
        if (v.role == host_role::primary && snap->primary != i) {
          hh.status = health_status::unhealthy;
          hh.reason = "writable but not the primary (split brain)";
        }
        break;
      case host_role::lagging:
        hh.status = health_status::degraded;
        hh.reason = "replay lag over the limit";
        break;
      case host_role::unknown:
        hh.status = health_status::degraded;
        hh.reason = "not probed yet";
        break;
      case host_role::unavailable:
        hh.status = health_status::unhealthy;
        hh.reason = v.last_error.empty() ? std::string("unavailable") : std::string(v.last_error);
        break;
    }
    if (hh.status != health_status::healthy && snap->primary != i) down += (down.empty() ? "" : ", ") + hh.host;
    h.hosts.push_back(std::move(hh));
  }
  if (h.status == health_status::healthy && !down.empty()) {
    h.status = health_status::degraded;
    h.reason = "not every host is serving: " + down;
  }
  return h;
}

void client::start_health_monitor() {
  if (m_health_monitor->start() && m_metrics) m_metrics->watch_health([this] { return last_health(); });
}

health_status client::last_health() const noexcept { return m_health_monitor->last(); }

}  // namespace steadypg
