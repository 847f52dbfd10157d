#pragma once

#include <string>

#include "steadypg/client.hpp"
#include "steadypg/health.hpp"

namespace steadypg::http {

/// The `info` JSON (docs/cli.md): server, pool, performance, recent_slow_queries and, for a
/// probing client, primary and hosts. The one source of both `steadypg info --json` and /info;
/// it never contains a password.
[[nodiscard]] std::string info_json(const connection_info_report& info);
/// The hosts of a topology report (the `topology` command's `hosts` array).
[[nodiscard]] std::string hosts_json(const topology_report& topology);
/// A health report as JSON: status, latency_ms, threshold_ms, breaker, reason, error, hosts.
[[nodiscard]] std::string health_json(const health_report& health);

}  // namespace steadypg::http
