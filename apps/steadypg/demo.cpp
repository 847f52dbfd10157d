// `steadypg demo`: the whole story in one run (docs/cli.md) — the pool under a mixed workload,
// a pipelined batch with isolated failures, an outage with retries and the circuit breaker,
// a slow query, then health, info and metrics. The steps are in demo_workload.cpp and
// demo_outage.cpp.

#include <csignal>
#include <iostream>

#include "demo.hpp"

namespace steadypg::cli {

int run_demo(const context& ctx) {
  using namespace demo_parts;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  try {
    demo d(ctx);
    return d.run();
  } catch (const interrupted_error&) {
    // The demo's destructor has dropped its schema and removed its server by now.
    std::cerr << "demo interrupted; cleaned up\n";
    return 130;
  } catch (...) {
    return report_error(ctx, "demo");
  }
}

}  // namespace steadypg::cli
