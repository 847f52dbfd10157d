// `steadypg demo`, steps 4–6: the outage with retries and the circuit breaker, a slow query, and
// health, info and metrics.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <atomic>
#include <random>
#include <thread>

#include "demo.hpp"

namespace steadypg::cli::demo_parts {

void demo::step_outage() {
  m_out.step(4, "Outage: the server stops for 3 s while 4 threads keep working",
             "Retries ride out short failures; the breaker then fails fast, probes, and closes on recovery.");
  if (!m_cluster) {
    m_out.line("skipped: this needs the embedded server (the demo never stops a server it did not start)");
    m_report["outage"] = {{"skipped", true}};
    return;
  }
  const auto events_before = m_db->query_value<std::int64_t>(fmt::format("SELECT count(*) FROM {}", t("events")));
  const auto acknowledged_before = m_acknowledged_writes.load();
  const auto unknown_before = m_unknown_writes.load();
  const auto committed_before = m_events.resolved_committed(), aborted_before = m_events.resolved_aborted(),
             unresolved_before = m_events.resolved_unknown();
  // One write is made to commit slowly (a deferred trigger sleeps 1 s inside its COMMIT), so that
  // the stop lands inside a COMMIT for certain: its outcome is then asked of the server.
  const std::string slow = t("slow_commits");
  m_db->execute(fmt::format(
      "CREATE TABLE IF NOT EXISTS {0} (id int); "
      "CREATE OR REPLACE FUNCTION {0}_sleep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "PERFORM pg_sleep(coalesce(nullif(current_setting('demo.commit_sleep', true), ''), '0')::float8); "
      "RETURN NULL; END $$; "
      "DROP TRIGGER IF EXISTS slow_commit ON {0}; "
      "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON {0} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
      "EXECUTE FUNCTION {0}_sleep(); TRUNCATE {0}",
      slow));
  std::thread slow_writer;
  std::atomic<int> slow_runs{0};
  std::atomic<bool> slow_ok{false};
  const auto t0 = clock_type::now();
  m_events.start_timeline(t0);
  double stopped_at = -1, started_at = -1;
  bool restarted = false;
  // Stopped and started from this thread: the server dies with the thread that started it.
  const auto r = run_workload(
      4, std::chrono::milliseconds(7500), 20,
      [&](double elapsed) {
        if (!slow_writer.joinable() && elapsed >= 700) {
          slow_writer = std::thread([&] {
            try {
              m_db->transaction([&](transaction& tx) {
                if (++slow_runs == 1) tx.execute("SET LOCAL demo.commit_sleep = '1'");
                tx.execute(fmt::format("INSERT INTO {} VALUES (1)", slow));
              });
              slow_ok = true;
            } catch (const error&) {
              // Reported below from the counts.
            }
          });
        }
        if (stopped_at < 0 && elapsed >= 1000) {
          stopped_at = elapsed;
          m_events.note("server stopped (fast shutdown: sessions are terminated)");
          m_cluster->stop();
        } else if (stopped_at >= 0 && !restarted && elapsed >= stopped_at + 3000) {
          started_at = ms_between(t0, clock_type::now());
          m_events.note("server starting");
          m_cluster->start();
          restarted = true;
          m_events.note("server accepts connections again");
        }
      },
      true);
  if (slow_writer.joinable()) slow_writer.join();
  m_events.stop_timeline();
  check_interrupted();
  const auto events = m_events.events();
  m_out.line("timeline (ms after the workload started):");
  json_doc timeline = json_doc::array();
  double closed_at = -1;
  for (const auto& e : events) {
    m_out.line(fmt::format("  +{:6.0f}  {}", e.at_ms, e.what));
    timeline.push_back({{"t_ms", std::lround(e.at_ms)}, {"event", e.what}});
    if (e.what.find("-> closed") != std::string::npos && e.at_ms > started_at && started_at > 0 && closed_at < 0) {
      closed_at = e.at_ms;
    }
  }
  m_out.line("per 250 ms around the outage:   t      ok  errors  rejected-at-once  breaker");
  for (const auto& s : r.timeline) {
    const double at = s["t_ms"].get<double>();
    if (at < stopped_at - 500 || (started_at > 0 && at > started_at + 1000)) continue;
    m_out.line(fmt::format("                           {:5}  {:6}  {:6}  {:16}  {}", s["t_ms"].get<long>(),
                           s["ok"].get<std::uint64_t>(), s["errors"].get<std::uint64_t>(),
                           s["rejected_by_breaker"].get<std::uint64_t>(), s["breaker"].get<std::string>()));
  }
  // Let the pool settle, then prove that no write was applied twice or lost silently.
  const auto events_after =
      m_db->query_value<std::int64_t>(statement{fmt::format("SELECT count(*) FROM {}", t("events"))}.idempotent());
  const auto acknowledged = m_acknowledged_writes.load() - acknowledged_before;
  const auto rows_written = events_after - events_before;
  const auto unknown = m_unknown_writes.load() - unknown_before;
  m_out.line(fmt::format("{} calls succeeded, {} failed, {} of them rejected at once by the open breaker; {} retries",
                         r.ops, r.errors, r.rejected, m_events.retries()));
  if (closed_at > 0) {
    m_out.line(fmt::format("recovered {:.0f} ms after the server was started again (its startup included)",
                           closed_at - started_at));
  }
  const auto resolved_committed = m_events.resolved_committed() - committed_before;
  const auto resolved_aborted = m_events.resolved_aborted() - aborted_before;
  const auto resolved_unknown = m_events.resolved_unknown() - unresolved_before;
  m_out.line(
      fmt::format("in-doubt writes (COMMIT sent, reply lost): {} resolved by asking the server — {} had "
                  "committed (acknowledged), {} had not (run again); {} could not be resolved",
                  resolved_committed + resolved_aborted + resolved_unknown, resolved_committed, resolved_aborted,
                  resolved_unknown));
  m_out.line(fmt::format("writes: {} acknowledged, {} rows written, {} with an unknown outcome (never re-sent)",
                         acknowledged, rows_written, unknown));
  expect(restarted, "the server did not come back");
  expect(m_events.transitions_to_open() >= 1, "the breaker never opened during the outage");
  expect(r.rejected > 0, "no call was rejected at once by the open breaker");
  expect(m_db->breaker().state() == breaker_state::closed && closed_at > 0,
         "the breaker did not close after the server came back");
  const auto slow_rows =
      m_db->query_value<std::int64_t>(statement{fmt::format("SELECT count(*) FROM {}", slow)}.idempotent());
  m_out.line(fmt::format("the slow-commit write: {} run(s), {}, {} row(s) in its table", slow_runs.load(),
                         slow_ok ? "acknowledged" : "not acknowledged", slow_rows));
  expect(resolved_committed + resolved_aborted >= 1, "the COMMIT in flight when the server stopped was not resolved");
  expect(slow_ok && slow_rows == 1, "the slow-commit write is not in its table exactly once");
  expect(rows_written >= static_cast<std::int64_t>(acknowledged) &&
             rows_written <= static_cast<std::int64_t>(acknowledged + unknown),
         "the rows written do not match the acknowledged writes");
  m_report["outage"] = {
      {"server_stopped_ms", std::lround(stopped_at)},
      {"server_started_ms", std::lround(started_at)},
      {"breaker_closed_ms", std::lround(closed_at)},
      {"ok", r.ops},
      {"errors", r.errors},
      {"rejected_by_breaker", r.rejected},
      {"retries", m_events.retries()},
      {"writes_acknowledged", acknowledged},
      {"rows_written", rows_written},
      {"writes_unknown_outcome", unknown},
      {"in_doubt_resolved",
       {{"committed", resolved_committed}, {"aborted", resolved_aborted}, {"unknown", resolved_unknown}}},
      {"events", timeline},
      {"per_250ms", r.timeline}};
}

void demo::step_slow_query() {
  m_out.step(5, "A slow query",
             fmt::format("A call over the slow-query threshold ({} ms) is flagged, logged and counted.",
                         m_options.observe.slow_query_threshold.count()));
  const auto before = m_db->metric_events() ? m_db->metric_events()->slow_queries() : 0;
  (void)m_db->execute(fmt::format("SELECT pg_sleep(0.3), count(*) FROM {} WHERE balance > $1", t("accounts")),
                      std::int64_t{0});
  const auto after = m_db->metric_events() ? m_db->metric_events()->slow_queries() : 0;
  const auto recent = m_db->recent_slow_queries();
  const auto lines = m_log.lines_with("\"msg\":\"slow query\"");
  if (!lines.empty()) m_out.line("log: " + lines.back());
  if (!recent.empty()) {
    m_out.line(fmt::format("kept: {:.0f} ms, {} row(s): {}", recent.back().duration_ms, recent.back().rows,
                           recent.back().sql));
  }
  m_out.line(fmt::format("postgresql_slow_query_total: {} -> {}", before, after));
  expect(after == before + 1 && !recent.empty() && !lines.empty(), "the slow query was not flagged");
  m_report["slow_query"] = {{"counted", after - before},
                            {"log_line", lines.empty() ? json_doc(nullptr) : json_doc::parse(lines.back())},
                            {"duration_ms", recent.empty() ? 0.0 : round2(recent.back().duration_ms)}};
}

void demo::step_report() {
  m_out.step(6, "Health, info and metrics", "What an SRE sees: health, connection insight, Prometheus metrics.");
  const auto h = m_db->health_check();
  m_out.line(fmt::format("health: {} (ping {:.2f} ms, threshold {:.0f} ms, breaker {}){}", to_string(h.status),
                         h.latency_ms, h.threshold_ms, to_string(h.breaker), h.reason.empty() ? "" : ": " + h.reason));
  expect(h.status == health_status::healthy, "the client is not healthy at the end: " + h.reason);
  const auto info = m_db->connection_info();
  std::istringstream text(info_text(info));
  for (std::string line; std::getline(text, line);) m_out.line("info: " + line);
  const std::string prom = m_db->metrics().render_prometheus();
  m_out.line("metrics (excerpt of the Prometheus text):");
  json_doc metrics = json_doc::object();
  static constexpr std::string_view shown[] = {"postgresql_operation_retry_total",
                                               "postgresql_slow_query_total",
                                               "postgresql_batch_duration_seconds_count",
                                               "postgresql_batch_duration_seconds_sum",
                                               "postgresql_batch_operations_total",
                                               "postgresql_batch_errors_total",
                                               "postgresql_queries_total",
                                               "postgresql_circuit_breaker_transitions_total",
                                               "postgresql_connections_closed_total{reason=\"broken\"}",
                                               "postgresql_query_duration_seconds_count"};
  std::istringstream in(prom);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    for (auto name : shown) {
      if (line.rfind(name, 0) == 0 && (line.size() > name.size()) &&
          (line[name.size()] == ' ' || line[name.size()] == '{' || name.back() == '}')) {
        m_out.line("  " + line);
        const auto sp = line.rfind(' ');
        metrics[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
        break;
      }
    }
  }
  m_report["health"] = {{"status", std::string(to_string(h.status))},
                        {"latency_ms", round2(h.latency_ms)},
                        {"breaker", std::string(to_string(h.breaker))}};
  m_report["info"] = info_json(info);
  m_report["metrics"] = metrics;
  m_final_metrics = prom;
}

}  // namespace steadypg::cli::demo_parts
