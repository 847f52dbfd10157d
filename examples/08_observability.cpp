// Metrics, logs, slow queries, health and connection insight.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  auto opts = steadypg::client_options::from_env();
  opts.observe.slow_query_threshold = std::chrono::milliseconds(100);

  //[logging
  steadypg::observe::json_logger log{stderr, steadypg::observe::log_level::info};
  steadypg::observe::log_observer events{log};  // retries, breaker, failures, slow queries → log lines
  steadypg::client db{opts, &events};
  //]

  //[slow_queries
  db.on_slow_query([](const steadypg::slow_query& q) {  // on the calling thread, after the call
    std::cout << "slow: " << q.duration_ms << " ms: " << q.sql << "\n";
  });
  db.execute("SELECT pg_sleep(0.15)");
  for (const auto& q : db.recent_slow_queries()) {  // the last 64, oldest first
    std::cout << q.operation << " took " << q.duration_ms << " ms, " << q.rows << " row(s)\n";
  }
  //]

  //[metrics
  for (int i = 0; i < 10; ++i) db.execute("SELECT $1::int", i);
  std::string prometheus = db.metrics().render_prometheus();    // text format 0.0.4
  std::string openmetrics = db.metrics().render_openmetrics();  // OpenMetrics 1.0, ends with "# EOF"
  std::string json = db.metrics().render_json();                // {"name":[{"labels":{…},"value":…}]}
  //]
  std::cout << prometheus.substr(0, prometheus.find("# HELP", 1)) << "…\n";

  //[health
  steadypg::health_report h = db.health_check();       // healthy / degraded / unhealthy, latency, reason
  std::cout << steadypg::to_string(h.status) << " in " << h.latency_ms << " ms\n";
  steadypg::connection_info_report info = db.connection_info();
  std::cout << "PostgreSQL " << info.server.version << ", " << info.server.connections.total << " sessions, "
            << info.performance.queries << " queries, p95 " << info.performance.p95_query_ms << " ms\n";
  db.start_health_monitor();                            // every POSTGRESQL_HEALTH_CHECK_INTERVAL
  //]

  const bool ok = db.recent_slow_queries().size() == 1 && h.status == steadypg::health_status::healthy &&
                  openmetrics.ends_with("# EOF\n") && json.front() == '{';
  return ok ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
