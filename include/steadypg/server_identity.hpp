#pragma once

#include <cstdint>

namespace steadypg {

/// Which database cluster, and which history of it, a connection talks to. Two servers with
/// the same system identifier come from one initdb (a primary and its standbys); after a
/// failover the promoted standby writes on a new timeline, where transaction ids may repeat
/// numbers the old primary used. A transaction id names one transaction only together with both.
struct server_identity {
  std::uint64_t system_identifier = 0;  ///< pg_control_system().system_identifier
  std::uint32_t timeline = 0;           ///< the timeline the server writes (or, on a standby, replays)

  friend bool operator==(const server_identity&, const server_identity&) = default;
};

}  // namespace steadypg
