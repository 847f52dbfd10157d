#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "steadypg/observe/client_metrics.hpp"
#include "steadypg/observe/metrics.hpp"
#include "steadypg/sqlstate.hpp"

using namespace steadypg::observe;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST(metrics, counters_gauges_histograms) {
  registry r;
  auto& c = r.add_counter("x_total", "help");
  c.inc();
  c.inc(4);
  EXPECT_EQ(c.value(), 5u);
  EXPECT_EQ(&r.add_counter("x_total", "help"), &c) << "same series, same object";
  auto& g = r.add_gauge("g", "help");
  g.set(2.5);
  g.add(-1);
  EXPECT_DOUBLE_EQ(g.value(), 1.5);
  auto& h = r.add_histogram("h_seconds", "help");
  for (double v : {0.0001, 0.0007, 0.003, 0.2, 0.2, 20.0}) h.observe(v);
  EXPECT_EQ(h.count(), 6u);
  EXPECT_NEAR(h.sum(), 20.4038, 1e-9);
  EXPECT_EQ(h.cumulative(0), 1u);                         // ≤ 0.0005
  EXPECT_EQ(h.cumulative(1), 2u);                         // ≤ 0.001
  EXPECT_EQ(h.cumulative(histogram::bounds.size()), 6u);  // +Inf
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 0.005);
  EXPECT_THROW(r.add_gauge("x_total", "help"), std::logic_error);
}

TEST(metrics, prometheus_format_rules) {
  registry r;
  r.add_counter("req_total", "Requests", {{"path", "a\\b\"c\nd"}}).inc(3);
  r.add_counter("req_total", "Requests", {{"path", "plain"}}).inc();
  r.add_gauge_callback("live", "Live value", {}, [] { return 7.0; });
  auto& h = r.add_histogram("lat_seconds", "Latency");
  h.observe(0.002);
  h.observe(0.3);
  h.observe(99);
  const auto text = r.render_prometheus();
  const auto ls = lines(text);
  // One HELP and TYPE per family, before its samples.
  std::set<std::string> seen_type;
  std::string current;
  for (const auto& l : ls) {
    if (l.rfind("# TYPE ", 0) == 0) {
      const auto name = l.substr(7, l.find(' ', 7) - 7);
      EXPECT_TRUE(seen_type.insert(name).second) << "TYPE twice for " << name;
      current = name;
    } else if (l.rfind("#", 0) != 0) {
      EXPECT_EQ(l.rfind(current, 0), 0u) << "sample " << l << " outside its family " << current;
    }
  }
  EXPECT_NE(text.find("# HELP req_total Requests\n# TYPE req_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("req_total{path=\"a\\\\b\\\"c\\nd\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("live 7\n"), std::string::npos);
  // Buckets are cumulative and monotonic; +Inf equals _count; _sum is the sum.
  std::uint64_t previous = 0;
  for (const auto& l : ls) {
    if (l.rfind("lat_seconds_bucket", 0) == 0) {
      const auto v = std::stoull(l.substr(l.rfind(' ') + 1));
      EXPECT_GE(v, previous) << l;
      previous = v;
    }
  }
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_sum 99.302\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"0.0025\"} 1\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("# EOF"), std::string::npos);
}

TEST(metrics, openmetrics_format) {
  registry r;
  r.add_counter("postgresql_queries_total", "Calls", {{"outcome", "ok"}}).inc(2);
  r.add_histogram("d_seconds", "Durations").observe(0.01);
  const auto text = r.render_openmetrics();
  EXPECT_NE(text.find("# TYPE postgresql_queries counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("postgresql_queries_total{outcome=\"ok\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE d_seconds histogram\n"), std::string::npos);
  EXPECT_TRUE(text.size() >= 6 && text.substr(text.size() - 6) == "# EOF\n") << text;
}

TEST(metrics, json_snapshot) {
  registry r;
  r.add_counter("a_total", "A", {{"k", "v"}}).inc();
  r.add_histogram("h", "H").observe(1.5);
  EXPECT_EQ(r.render_json(),
            "{\"a_total\":[{\"labels\":{\"k\":\"v\"},\"value\":1}],\"h\":[{\"labels\":{},\"count\":1,\"sum\":1.5}]}");
}

TEST(metrics, concurrent_updates_are_exact) {
  registry r;
  auto& c = r.add_counter("c_total", "C");
  auto& h = r.add_histogram("h_seconds", "H");
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(0.001);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 80000u);
  EXPECT_EQ(h.count(), 80000u);
  EXPECT_EQ(h.cumulative(histogram::bounds.size()), 80000u);
  EXPECT_NEAR(h.sum(), 80.0, 1e-6);
}

TEST(metrics, retries_are_counted_by_the_failed_attempts_outcome) {
  registry r;
  client_metrics m(r, std::chrono::milliseconds(100));
  steadypg::retry_report report;
  report.reason = "text for logs only";  // the label comes from the typed field
  for (auto o : {steadypg::outcome::not_sent, steadypg::outcome::not_sent, steadypg::outcome::rolled_back,
                 steadypg::outcome::indeterminate, steadypg::outcome::not_sent}) {
    report.failed_outcome = o;
    m.on_retry(report);
  }
  const auto text = r.render_prometheus();
  EXPECT_NE(text.find("postgresql_operation_retry_total{reason=\"not_sent\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("postgresql_operation_retry_total{reason=\"rolled_back\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("postgresql_operation_retry_total{reason=\"indeterminate\"} 1\n"), std::string::npos) << text;
}
