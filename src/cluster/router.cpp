#include "router.hpp"

#include <array>

namespace steadypg::internal {

bool serves_reads(const host_view& h) noexcept {
  return h.role == host_role::replica || h.role == host_role::read_only_primary;
}

namespace {

// The candidates of a choice, without allocating (a DSN names a handful of hosts).
class candidates {
 public:
  void add(std::size_t i) {
    if (m_n < m_at.size()) m_at[m_n++] = i;
  }
  [[nodiscard]] std::optional<std::size_t> pick(std::uint64_t turn) const {
    if (m_n == 0) return std::nullopt;
    return m_at[turn % m_n];
  }

 private:
  std::array<std::size_t, 64> m_at{};
  std::size_t m_n = 0;
};

bool is_excluded(host_mask excluded, std::size_t i) { return i < 64 && ((excluded >> i) & 1U) != 0; }

}  // namespace

route_choice choose_host(const topology_snapshot& s, route r, write_token after, std::uint64_t turn,
                         host_mask excluded) {
  route_choice c;
  if (r == route::primary || r == route::read_write) {
    c.host = s.primary;
    if (!c.host) c.failure = route_failure::no_primary;
    return c;
  }
  if (r == route::any) {
    candidates up;
    for (std::size_t i = 0; i < s.hosts.size(); ++i) {
      const bool loser = s.hosts[i].role == host_role::primary && s.primary != i;  // split brain
      if (!loser && (serves_reads(s.hosts[i]) || s.primary == i) && !is_excluded(excluded, i)) up.add(i);
    }
    c.host = up.pick(turn);
    if (!c.host) c.host = s.primary;
    if (!c.host) c.failure = route_failure::no_host;
    return c;
  }
  candidates ready;
  bool any_up = false, any_lagging = false;
  for (std::size_t i = 0; i < s.hosts.size(); ++i) {
    const auto& h = s.hosts[i];
    if (h.role == host_role::lagging) any_lagging = true;
    if (!serves_reads(h) || is_excluded(excluded, i)) continue;
    any_up = true;
    if (after && h.lsn < after.lsn) continue;
    ready.add(i);
  }
  c.host = ready.pick(turn);
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
