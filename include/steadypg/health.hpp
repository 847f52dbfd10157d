#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "steadypg/circuit_breaker.hpp"

namespace steadypg {

/// Health of the database as seen by a client (docs/observability.md).
enum class health_status {
  healthy,   ///< the ping answered within the slow-query threshold
  degraded,  ///< slower than that, or the breaker is half-open, or the pool is saturated
  unhealthy  ///< cannot connect, or the breaker is open
};
/// "healthy", "degraded", "unhealthy".
[[nodiscard]] constexpr std::string_view to_string(health_status s) noexcept {
  switch (s) {
    case health_status::healthy: return "healthy";
    case health_status::degraded: return "degraded";
    case health_status::unhealthy: return "unhealthy";
  }
  return "unknown";
}

/// One host of a multi-host client in a health report.
struct host_health {
  std::string host;  ///< "host:port"
  std::string role;  ///< as the prober saw it (host_role names)
  health_status status = health_status::unhealthy;
  double probe_ms = 0;  ///< the prober's last round trip
  std::string reason;   ///< why not healthy ("" when healthy)
};

/// The result of client::health_check().
struct health_report {
  health_status status = health_status::unhealthy;
  double latency_ms = 0;    ///< ping round trip (0 when it did not run)
  double threshold_ms = 0;  ///< observe.slow_query_threshold
  breaker_state breaker = breaker_state::closed;
  std::string reason;  ///< why not healthy ("" when healthy)
  std::string error;   ///< the error of a failed ping, passwords never included
  /// Each host of a multi-host client (empty for one host). The client is healthy when its
  /// primary is and every host is up; degraded when a replica is down or lagging (or, for a
  /// client whose default route reads from replicas, when only the primary is missing);
  /// unhealthy when writes cannot be served.
  std::vector<host_health> hosts;
};

}  // namespace steadypg
