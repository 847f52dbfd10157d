// The monitoring endpoint in the CLI: the global --http ADDR of the long-running commands, and
// `steadypg monitor --listen ADDR` (docs/monitoring.md).

#include <csignal>
#include <fmt/format.h>
#include <iostream>
#include <thread>

#include "cli.hpp"
#include "steadypg/http/server.hpp"

namespace steadypg::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

}  // namespace

std::unique_ptr<http::server> start_dashboard(const context& ctx, client& db, const std::string& listen) {
  if (listen.empty()) return nullptr;
  http::options o;
  o.listen = listen;
  auto srv = std::make_unique<http::server>(db, o);
  // On stderr, so that --json output on stdout stays one document.
  std::cerr << fmt::format("dashboard: {} (metrics: {}metrics)\n", srv->url(), srv->url());
  ctx.log(log_level::info, "dashboard serving", {{"url", srv->url()}});
  return srv;
}

int run_monitor(const context& ctx, const std::string& listen) {
  try {
    g_stop = 0;
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
    client_options o = ctx.options;
    o.pool.min_size = 0;
    o.pool.max_size = 2;  // the probe and /info; the server sampler has a connection of its own
    command_client db(ctx, o);
    const auto srv = start_dashboard(ctx, *db, listen);  // --listen wins over --http here
    if (!ctx.json) std::cout << fmt::format("monitoring {} at {} until Ctrl-C\n", redact_dsn(o.dsn), srv->url());
    while (g_stop == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!ctx.json) std::cout << "stopped\n";
    return ok;
  } catch (...) {
    return report_error(ctx, "monitor");
  }
}

}  // namespace steadypg::cli
