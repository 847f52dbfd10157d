#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/route.hpp"

namespace steadypg {

/// What the topology prober knows of a host (docs/cluster.md).
enum class host_role {
  unknown,            ///< not probed yet
  primary,            ///< writable: not in recovery, not read-only
  replica,            ///< a hot standby within the lag limit
  lagging,            ///< a standby whose replay lag is over cluster.max_replica_lag
  read_only_primary,  ///< not in recovery but read-only (default_transaction_read_only): served as a replica
  unavailable         ///< the last probe failed, or it has not been good twice since
};

/// "unknown", "primary", "replica", "lagging", "read_only_primary", "unavailable".
[[nodiscard]] std::string_view to_string(host_role r) noexcept;

/// Multi-host settings (docs/cluster.md). A DSN naming several hosts (`host=a,b port=1,2`
/// or `postgresql://a:1,b:2/db`) makes a client keep one pool and one breaker per host and
/// probe every host in the background; with one host nothing is probed and every route goes
/// to it. Plain aggregate; validate() throws config_error.
struct cluster_options {
  /// Where calls go unless they say (statement{…}.route(…), transaction_options::route).
  /// Default primary. POSTGRESQL_ROUTE. A DSN's target_session_attrs sets it when this is left
  /// at primary: read-write/primary → primary, prefer-standby → prefer_replica,
  /// standby/read-only → replica, any → any.
  route default_route = route::primary;
  /// A replica whose replay lag is over this is `lagging` and gets no reads; it serves again
  /// after 3 probes under half of it. Default 10000 ms; 0 off (lag never excludes);
  /// 0–3600000 ms. POSTGRESQL_MAX_REPLICA_LAG.
  std::chrono::milliseconds max_replica_lag{10000};
  /// Every host is probed this often, all in parallel. Default 1000 ms; 100–60000 ms.
  /// POSTGRESQL_PROBE_INTERVAL.
  std::chrono::milliseconds probe_interval{1000};
  /// Deadline of one probe (connect included). Default 1000 ms; 100–60000 ms.
  std::chrono::milliseconds probe_timeout{1000};
  /// Probe even a single host (its role is then reported and `replica` routes check it).
  /// Default false.
  bool probe_single_host = false;

  /// Throws config_error naming the field.
  void validate() const;
};

/// One host as the prober saw it last.
struct host_info {
  std::string host;   ///< as the DSN names it
  std::string port;   ///< as the DSN names it ("5432" when it names none)
  std::string label;  ///< "host:port", the metrics' host label
  host_role role = host_role::unknown;
  /// Replay lag behind the primary: seconds (0 when caught up) and bytes; nullopt when not a
  /// replica or unknown.
  std::optional<double> lag_seconds;
  std::optional<std::int64_t> lag_bytes;
  int timeline = 0;           ///< 0 when unknown
  double probe_ms = 0;        ///< duration of the last probe
  std::uint64_t wal_lsn = 0;  ///< a primary's current WAL position; a replica's replay position
  std::string last_error;     ///< why the last probe failed ("" when it did not)
  std::string breaker;        ///< the host's circuit breaker state
};

/// The hosts of a multi-host client, in DSN order (client::topology()).
struct topology_report {
  std::vector<host_info> hosts;
  /// The index of the primary writes go to; nullopt when none is known (or two tie).
  std::optional<std::size_t> primary;
  /// Writable hosts seen (more than 1: split brain; the higher timeline wins, a tie refuses writes).
  int primaries = 0;
  /// False when the client has one host and does not probe it.
  bool probing = false;
};

}  // namespace steadypg
