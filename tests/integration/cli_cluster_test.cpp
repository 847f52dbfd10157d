// The command line on a multi-host DSN: topology, --route, health/info per host and
// bench --workload mixed, against a real primary with a streaming standby.

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <set>

#include "cli_run.hpp"
#include "cluster_env.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/testing/temp_replica_set.hpp"

using namespace steadypg::test::cli;

namespace {

steadypg::testing::temp_replica_set_options one_replica() {
  steadypg::testing::temp_replica_set_options o;
  o.replicas = 1;
  return o;
}

TEST(cli_cluster, topology_health_info_and_routes_on_a_primary_with_a_replica) {
  steadypg::testing::temp_replica_set set(one_replica());
  const std::string p0 = fmt::format("127.0.0.1:{}", set.node(0).port());
  const std::string p1 = fmt::format("127.0.0.1:{}", set.node(1).port());
  auto r = run({"--json", "topology"}, {{"DATABASE_URL", set.dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("primary"), p0);
  ASSERT_EQ(j.at("hosts").size(), 2u);
  EXPECT_EQ(j["hosts"][0].at("role"), "primary");
  EXPECT_EQ(j["hosts"][1].at("role"), "replica");
  EXPECT_EQ(j["hosts"][1].at("port"), std::to_string(set.node(1).port()));
  EXPECT_EQ(j["hosts"][1].at("timeline"), 1);
  EXPECT_TRUE(j["hosts"][1].at("lag_seconds").is_number());
  EXPECT_EQ(j["hosts"][0].at("breaker"), "closed");
  // The URL form names the same hosts.
  r = run({"topology"}, {{"DATABASE_URL", set.url()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("primary: " + p0), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("replica"), std::string::npos) << r.out;

  // --route sends exec to the replica (the default is the primary).
  r = run({"--route", "replica", "exec", "SELECT pg_is_in_recovery()"}, {{"DATABASE_URL", set.dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\nt\n"), std::string::npos) << r.out;
  r = run({"exec", "SELECT pg_is_in_recovery()"}, {{"DATABASE_URL", set.dsn()}});
  EXPECT_NE(r.out.find("\nf\n"), std::string::npos) << r.out;
  r = run({"exec", "SELECT pg_is_in_recovery()"}, {{"DATABASE_URL", set.dsn()}, {"POSTGRESQL_ROUTE", "replica"}});
  EXPECT_NE(r.out.find("\nt\n"), std::string::npos) << r.out;
  r = run({"--route", "standby", "ping"}, {{"DATABASE_URL", set.dsn()}});
  EXPECT_EQ(r.exit_code, 2);
  r = run({"ping"}, {{"DATABASE_URL", set.dsn()}, {"POSTGRESQL_ROUTE", "nearest"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("POSTGRESQL_ROUTE"), std::string::npos) << r.err;

  r = run({"--json", "health"}, {{"DATABASE_URL", set.dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("status"), "healthy");
  ASSERT_EQ(j.at("hosts").size(), 2u);
  EXPECT_EQ(j["hosts"][1].at("role"), "replica");
  r = run({"--json", "info"}, {{"DATABASE_URL", set.dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("primary"), p0);
  EXPECT_EQ(j.at("hosts").size(), 2u);

  // A stopped replica: health is degraded (exit 1), the topology still has its primary.
  set.stop(1);
  r = run({"--json", "health"}, {{"DATABASE_URL", set.dsn()}});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("status"), "degraded");
  r = run({"--json", "topology"}, {{"DATABASE_URL", set.dsn()}});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out)["hosts"][1].at("role"), "unavailable");
  r = run({"--route", "replica", "exec", "SELECT 1"}, {{"DATABASE_URL", set.dsn()}});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("no replica available"), std::string::npos) << r.err;
  // No primary at all: exit 3.
  set.stop(0);
  r = run({"--json", "topology"}, {{"DATABASE_URL", set.dsn()}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(nlohmann::json::parse(r.out).at("primary").is_null());
}

TEST(cli_cluster, bench_mixed_reports_every_write_and_the_calls_per_host) {
  steadypg::testing::temp_replica_set set(one_replica());
  auto r = run({"bench", "--init", "--scale", "1"}, {{"DATABASE_URL", set.dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  set.wait_caught_up(1);
  r = run({"--json", "--route", "prefer_replica", "bench", "--workload", "mixed", "--clients", "2", "--seconds", "2"},
          {{"DATABASE_URL", set.dsn()}});
  ASSERT_EQ(r.exit_code, 0) << r.out.substr(0, 2000) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto acked = j.at("writes_acked").get<std::size_t>();
  EXPECT_GT(acked, 0u);
  EXPECT_EQ(j.at("writes_failed"), 0);
  EXPECT_EQ(j.at("writes_unknown"), 0);
  EXPECT_EQ(j.at("acked_ids").size(), acked);
  steadypg::connection primary(set.node(0).dsn());
  std::set<std::int64_t> rows;
  for (const auto row : primary.execute("SELECT id FROM steadypg_bench_writes")) rows.insert(row[0].as<std::int64_t>());
  EXPECT_EQ(rows.size(), acked);
  for (const auto& id : j.at("acked_ids")) EXPECT_EQ(rows.count(id.get<std::int64_t>()), 1u);
  // Reads went to the replica, writes to the primary: both hosts appear in the timeline.
  std::uint64_t on_primary = 0, on_replica = 0, writes = 0;
  for (const auto& t : j.at("timeline")) {
    on_primary += t.at("hosts").at(fmt::format("127.0.0.1:{}", set.node(0).port())).get<std::uint64_t>();
    on_replica += t.at("hosts").at(fmt::format("127.0.0.1:{}", set.node(1).port())).get<std::uint64_t>();
    writes += t.at("writes").get<std::uint64_t>();
  }
  EXPECT_GE(writes + 2, acked);  // writes acknowledged after the last whole second are not in it
  EXPECT_GT(on_replica, on_primary) << "90 % of the calls are reads on prefer_replica";
  EXPECT_GT(on_primary, 0u);
}

}  // namespace
