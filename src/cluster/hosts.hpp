#pragma once

// Private: a multi-host DSN split into one DSN per host (like libpq's own host list, but each
// host gets its own pool, breaker and probe instead of in-order fallback).

#include <optional>
#include <string>
#include <vector>

#include "steadypg/route.hpp"

namespace steadypg::internal {

/// One host of a DSN.
struct host_endpoint {
  std::string host;   ///< as the DSN names it (a name, an address or a socket directory)
  std::string port;   ///< as the DSN names it, "5432" when it names none
  std::string label;  ///< "host:port"
  std::string dsn;    ///< a DSN for this host alone (target_session_attrs removed)
};

/// The hosts of a validated DSN, in order. A DSN naming one host (or none) gives one endpoint
/// whose dsn is the DSN unchanged.
[[nodiscard]] std::vector<host_endpoint> split_hosts(const std::string& dsn);

/// The route a DSN's target_session_attrs asks for: read-write/primary → primary,
/// prefer-standby → prefer_replica, standby/read-only → replica, any → any; nullopt when unset.
[[nodiscard]] std::optional<route> route_of_session_attrs(const std::string& dsn);

}  // namespace steadypg::internal
