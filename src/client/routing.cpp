// The multi-host half of the client: which host a call goes to, the topology report, the
// read-your-writes token and the per-host gauges.

#include <fmt/format.h>

#include "router.hpp"
#include "steadypg/client.hpp"
#include "topology.hpp"

namespace steadypg {

client::host_slot& client::route_call(const call_info& info, clock::time_point started) {
  const route r = info.route.value_or(m_default_route);
  auto deadline = started + m_options.pool.acquire_timeout;
  if (info.deadline) deadline = *info.deadline;
  auto snap = m_topology->snapshot();
  if (!snap->initialized) {
    // The first round of probes is under way: wait for it (a request never dials a host the
    // prober has not seen), at most a probe's time.
    const auto first_round = std::min(deadline, clock::now() + m_options.cluster.probe_timeout * 2);
    snap = m_topology->wait_for(first_round, [](const internal::topology_snapshot& s) { return s.initialized; });
  }
  internal::host_mask open = 0;
  auto read_breakers = [&] {
    bool all_open = true;
    open = 0;
    for (std::size_t i = 0; i < m_hosts.size(); ++i) {
      const bool blocked = m_hosts[i].breaker->is_open();
      if (blocked && i < 64) open |= internal::host_mask{1} << i;
      all_open = all_open && blocked;
    }
    return all_open;
  };
  bool all_open = read_breakers();
  const auto turn = m_turn.fetch_add(1, std::memory_order_relaxed);
  auto choice = internal::choose_host(*snap, r, info.after, turn, open);
  if (choice.failure == internal::route_failure::no_primary && !all_open) {
    // Writes wait for a primary (a switchover, or a host that just failed) within their own
    // deadline; every open breaker ends the wait.
    snap = m_topology->wait_for(deadline, [&](const internal::topology_snapshot& s) {
      return s.primary.has_value() || read_breakers();
    });
    all_open = read_breakers();
    choice = internal::choose_host(*snap, r, info.after, turn, open);
  }
  if (choice.host) {
    if (!choice.fallback.empty() && m_observer) {
      route_fallback_report f{to_string(r), "primary", choice.fallback};
      m_observer->on_route_fallback(f);
    }
    return m_hosts[*choice.host];
  }
  std::string hosts;
  for (std::size_t i = 0; i < m_hosts.size(); ++i) {
    const auto& v = snap->hosts[i];
    hosts += fmt::format("{}{} {}", i ? ", " : "", m_hosts[i].label, to_string(v.role));
    if (!v.last_error.empty()) hosts += fmt::format(" ({})", v.last_error);
    if (i < 64 && ((open >> i) & 1U) != 0) hosts += " [breaker open]";
  }
  if (choice.failure == internal::route_failure::no_replica) {
    throw no_replica_available(fmt::format("no replica available for route {}: {} ({})", to_string(r),
                                           choice.fallback == "token" ? "no replica has replayed the write token yet"
                                           : choice.fallback == "lag" ? "every replica is over the lag limit"
                                                                      : "no replica is up",
                                           hosts),
                               failure_kind::connect_failed, outcome::not_sent);
  }
  if (choice.failure == internal::route_failure::no_host) {
    throw no_host_available(fmt::format("no host available for route {} ({})", to_string(r), hosts),
                            failure_kind::connect_failed, outcome::not_sent);
  }
  std::string why = snap->primaries > 1 ? fmt::format(
                                              "{} writable hosts on the same timeline (split brain): writes "
                                              "are refused",
                                              snap->primaries)
                    : all_open ? std::string("every host's circuit breaker is open")
                               : std::string("none was found before the call's deadline");
  throw no_primary_available(fmt::format("no primary available for route {}: {} ({})", to_string(r), why, hosts),
                             failure_kind::connect_failed, outcome::not_sent);
}

const client::host_slot& client::primary_slot() const noexcept {
  if (m_topology) {
    auto snap = m_topology->snapshot();
    if (snap->primary) return m_hosts[*snap->primary];
  }
  return m_hosts.front();
}

topology_report client::topology() const {
  topology_report t;
  const auto endpoints_probed = m_topology != nullptr;
  t.probing = endpoints_probed;
  std::shared_ptr<const internal::topology_snapshot> snap;
  if (m_topology) snap = m_topology->snapshot();
  for (std::size_t i = 0; i < m_hosts.size(); ++i) {
    host_info h;
    h.label = m_hosts[i].label;
    const auto colon = h.label.rfind(':');
    h.host = h.label.substr(0, colon);
    h.port = colon == std::string::npos ? std::string{} : h.label.substr(colon + 1);
    h.breaker = std::string(to_string(m_hosts[i].breaker->state()));
    if (snap) {
      const auto& v = snap->hosts[i];
      h.role = v.role;
      if (v.role == host_role::replica || v.role == host_role::lagging) {
        h.lag_seconds = v.lag_seconds;
        h.lag_bytes = v.lag_bytes;
      }
      h.timeline = v.timeline;
      h.probe_ms = v.probe_ms;
      h.wal_lsn = v.lsn;
      h.last_error = std::string(v.last_error);
    }
    t.hosts.push_back(std::move(h));
  }
  if (snap) {
    t.primary = snap->primary;
    t.primaries = snap->primaries;
  }
  return t;
}

write_token client::commit_token() {
  auto lsn = execute(statement{"SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"}
                         .route(route::primary)
                         .idempotent()
                         .name("commit_token"))
                 .as<std::int64_t>();
  return write_token{static_cast<std::uint64_t>(lsn)};
}

void client::watch_topology() {
  auto& reg = *m_registry;
  internal::topology* topo = m_topology.get();
  for (std::size_t i = 0; i < m_hosts.size(); ++i) {
    const std::string& host = m_hosts[i].label;
    for (host_role role : {host_role::unknown, host_role::primary, host_role::replica, host_role::lagging,
                           host_role::read_only_primary, host_role::unavailable}) {
      reg.add_gauge_callback("postgresql_host_role", "Each host's role as the prober saw it last (one-hot)",
                             {{"host", host}, {"role", std::string(to_string(role))}},
                             [topo, i, role] { return topo->snapshot()->hosts[i].role == role ? 1.0 : 0.0; });
    }
    reg.add_gauge_callback("postgresql_host_replication_lag_seconds", "Replay lag of each replica behind the primary",
                           {{"host", host}},
                           [topo, i] { return topo->snapshot()->hosts[i].lag_seconds.value_or(0.0); });
  }
  reg.add_gauge_callback("postgresql_topology_primaries", "Writable hosts (1 expected; 2 or more: split brain)", {},
                         [topo] { return static_cast<double>(topo->snapshot()->primaries); });
}

}  // namespace steadypg
