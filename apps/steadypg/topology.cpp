// `steadypg topology`: each host of the DSN with the role the prober finds, and the primary.

#include <fmt/format.h>

#include <iostream>
#include <thread>

#include "cli.hpp"
#include "steadypg/http/report_json.hpp"

namespace steadypg::cli {

json_doc hosts_json(const topology_report& t) { return json_doc::parse(http::hosts_json(t)); }

json_doc primary_json(const topology_report& t) {
  return t.primary ? json_doc(t.hosts[*t.primary].label) : json_doc(nullptr);
}

std::string hosts_text(const topology_report& t) {
  std::string out = fmt::format("{:<24} {:<6} {:<18} {:>9} {:>12} {:>8} {:>9}  {}\n", "HOST", "PORT", "ROLE", "LAG",
                                "LAG BYTES", "TIMELINE", "PROBE", "BREAKER");
  for (const auto& h : t.hosts) {
    out += fmt::format("{:<24} {:<6} {:<18} {:>9} {:>12} {:>8} {:>9}  {}{}\n", h.host, h.port, to_string(h.role),
                       h.lag_seconds ? fmt::format("{:.1f} s", *h.lag_seconds) : "-",
                       h.lag_bytes ? fmt::format("{}", *h.lag_bytes) : "-",
                       h.timeline ? fmt::format("{}", h.timeline) : "-", fmt::format("{:.1f} ms", h.probe_ms),
                       h.breaker, h.last_error.empty() ? "" : "  (" + h.last_error + ")");
  }
  out += fmt::format("primary: {}{}\n", t.primary ? t.hosts[*t.primary].label : "none",
                     t.primaries > 1 ? fmt::format(" ({} writable hosts: split brain)", t.primaries) : "");
  return out;
}

int run_topology(const context& ctx) {
  try {
    client_options o = ctx.options;
    o.pool.max_size = 1;
    o.pool.min_size = 0;
    o.cluster.probe_single_host = true;  // one host is probed too: its role is the answer
    command_client d(ctx, o);
    // Every host probed once (a hung one times out after probe_timeout).
    const auto until = std::chrono::steady_clock::now() + o.cluster.probe_timeout * 2 + std::chrono::milliseconds(500);
    auto t = d->topology();
    auto all_probed = [](const topology_report& r) {
      for (const auto& h : r.hosts) {
        if (h.role == host_role::unknown) return false;
      }
      return true;
    };
    while (!all_probed(t) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      t = d->topology();
    }
    if (ctx.json) {
      context::print_json({{"primary", primary_json(t)}, {"hosts", hosts_json(t)}});
    } else {
      std::cout << hosts_text(t);
    }
    return t.primary ? ok : unavailable;
  } catch (...) {
    return report_error(ctx, "topology");
  }
}

}  // namespace steadypg::cli
