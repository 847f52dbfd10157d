#pragma once

// Private: the choice of a host for a call, a pure function of the topology snapshot (the
// prober publishes it; request paths only read it).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "steadypg/cluster.hpp"
#include "steadypg/route.hpp"

namespace steadypg::internal {

/// One host in a published snapshot.
struct host_view {
  host_role role = host_role::unknown;  ///< as reported (lagging, read_only_primary … included)
  bool writable = false;                ///< not in recovery and not read-only (a primary candidate)
  std::uint64_t lsn = 0;                ///< WAL position (primary) or replay position (replica)
  std::optional<double> lag_seconds;
  std::optional<std::int64_t> lag_bytes;
  int timeline = 0;
  double probe_ms = 0;
  std::string_view last_error;  ///< points into the snapshot's own storage
};

/// What the prober knows, published as a whole (immutable once published).
struct topology_snapshot {
  std::vector<host_view> hosts;
  std::vector<std::string> errors;     ///< storage of host_view::last_error
  std::optional<std::size_t> primary;  ///< the host writes go to
  int primaries = 0;                   ///< writable hosts (more than 1: split brain)
  bool initialized = false;            ///< every host has been probed once (or the first round timed out)
  std::uint64_t generation = 0;
};

/// Why no host was chosen.
enum class route_failure { none, no_primary, no_replica, no_host };

/// The choice for one call.
struct route_choice {
  std::optional<std::size_t> host;
  route_failure failure = route_failure::none;
  /// Set when the call goes to the primary although its route preferred a replica:
  /// "none" (no replica up), "lag" (every replica up lags), "token" (none has replayed the token).
  std::string_view fallback;
};

/// A replica (or a read-only primary) that may serve reads.
[[nodiscard]] bool serves_reads(const host_view& h) noexcept;

/// Hosts left out of a choice (their breaker is open): bit i is host i (hosts past 64 are never left out).
using host_mask = std::uint64_t;

/// Chooses a host for `r`: primary/read_write → the elected primary; replica → a replica that
/// serves reads, is not `excluded` (its breaker is open) and has replayed `after`, round robin
/// by `turn`; prefer_replica → the same, else the primary (with the fallback's reason); any →
/// any host that is up and not a split brain's loser, round robin.
[[nodiscard]] route_choice choose_host(const topology_snapshot& s, route r, write_token after, std::uint64_t turn,
                                       host_mask excluded = 0);

}  // namespace steadypg::internal
