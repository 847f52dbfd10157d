#include "router.hpp"

namespace steadypg::internal {

bool serves_reads(const host_view& h) noexcept {
  return h.role == host_role::replica || h.role == host_role::read_only_primary;
}

namespace {

std::optional<std::size_t> pick(const std::vector<std::size_t>& candidates, std::uint64_t turn) {
  if (candidates.empty()) return std::nullopt;
  return candidates[turn % candidates.size()];
}

bool is_excluded(const std::vector<bool>& excluded, std::size_t i) { return i < excluded.size() && excluded[i]; }

}  // namespace

route_choice choose_host(const topology_snapshot& s, route r, write_token after, std::uint64_t turn,
                         const std::vector<bool>& excluded) {
  route_choice c;
  if (r == route::primary || r == route::read_write) {
    c.host = s.primary;
    if (!c.host) c.failure = route_failure::no_primary;
    return c;
  }
  if (r == route::any) {
    std::vector<std::size_t> up;
    for (std::size_t i = 0; i < s.hosts.size(); ++i) {
      const bool loser = s.hosts[i].role == host_role::primary && s.primary != i;  // split brain
      if (!loser && (serves_reads(s.hosts[i]) || s.primary == i) && !is_excluded(excluded, i)) up.push_back(i);
    }
    c.host = pick(up, turn);
    if (!c.host) c.host = s.primary;
    if (!c.host) c.failure = route_failure::no_host;
    return c;
  }
  std::vector<std::size_t> ready;
  bool any_up = false, any_lagging = false;
  for (std::size_t i = 0; i < s.hosts.size(); ++i) {
    const auto& h = s.hosts[i];
    if (h.role == host_role::lagging) any_lagging = true;
    if (!serves_reads(h) || is_excluded(excluded, i)) continue;
    any_up = true;
    if (after && h.lsn < after.lsn) continue;
    ready.push_back(i);
  }
  c.host = pick(ready, turn);
  if (c.host) return c;
  const std::string_view reason = any_up ? "token" : any_lagging ? "lag" : "none";
  if (r == route::replica) {
    c.failure = route_failure::no_replica;
    c.fallback = reason;
    return c;
  }
  c.fallback = reason;
  c.host = s.primary;
  if (!c.host) c.failure = route_failure::no_primary;
  return c;
}

}  // namespace steadypg::internal
