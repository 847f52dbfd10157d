// The monitoring endpoint: /metrics for Prometheus, /health, /info, /api/snapshot and the dashboard.
#include <steadypg/http/server.hpp>
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  //[monitoring
  steadypg::client db{steadypg::client_options::from_env()};
  steadypg::http::options http;
  http.listen = "127.0.0.1:0";  // port 0: any free port; loopback unless allow_remote + bearer_token
  if (auto env = steadypg::http::options::from_env()) http = *env;  // POSTGRESQL_HTTP_LISTEN
  steadypg::http::server monitor{db, http};                         // serving until destroyed
  std::cout << "dashboard: " << monitor.url() << "  (Prometheus: " << monitor.url() << "metrics)\n";
  //]

  //[statement_names
  // Per-statement metrics come from the statement's name, never its SQL text.
  auto account = steadypg::statement{"SELECT abalance FROM pgbench_accounts WHERE aid = $1"}.name("get_account");
  //]
  (void)account;
  for (int i = 0; i < 5; ++i) (void)db.query_value<int>(steadypg::statement{"SELECT $1::int"}.name("echo"), i);
  const std::string snapshot = monitor.snapshot_json();
  std::cout << snapshot.substr(0, 120) << "…\n";
  const std::string metrics = db.metrics().render_prometheus();
  const bool ok = monitor.port() > 0 &&
                  metrics.find("postgresql_statement_duration_seconds_count{name=\"echo\"} 5") != std::string::npos &&
                  snapshot.find("\"pool\"") != std::string::npos;
  return ok ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
