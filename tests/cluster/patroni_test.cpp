// The Patroni fixture against real Patroni 3 and etcd 3.4: what it promises the failover tests.
// The scenarios share one cluster and run in order (bring-up costs seconds, a failover a ttl).

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fmt/format.h>
#include <iostream>
#include <memory>
#include <string>

#include "patroni_cluster.hpp"
#include "processes.hpp"
#include "steadypg/connection.hpp"

using namespace std::chrono_literals;
using steadypg::connection;
using steadypg::test::patroni_cluster;
using steadypg::test::patroni_cluster_options;

namespace {

using clock_type = std::chrono::steady_clock;

std::int64_t ms_since(clock_type::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count();
}

std::size_t count_role(const std::vector<std::string>& roles, const std::string& role) {
  return static_cast<std::size_t>(std::count(roles.begin(), roles.end(), role));
}

std::string describe(const std::vector<std::string>& roles) { return fmt::format("{}", fmt::join(roles, ",")); }

class patroni : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (const auto reason = patroni_cluster::unavailable_reason(); !reason.empty()) {
      s_skip = reason;
      return;
    }
    const auto t0 = clock_type::now();
    s_cluster = std::make_unique<patroni_cluster>();
    std::cout << "patroni_cluster (etcd + 3 nodes) came up in " << ms_since(t0) << " ms\n";
  }
  static void TearDownTestSuite() { s_cluster.reset(); }
  void SetUp() override {
    if (!s_skip.empty()) GTEST_SKIP() << s_skip;
    if (!s_cluster) GTEST_SKIP() << "the cluster was torn down by an earlier scenario";
    // A scenario starts from a healthy cluster even if the one before it failed half-way.
    for (std::size_t i = 0; i < cluster().size(); ++i) {
      if (cluster().patroni_pid(i) == 0) cluster().start_node(i);
    }
    cluster().wait_healthy(90s);
  }
  static patroni_cluster& cluster() { return *s_cluster; }

 private:
  static inline std::unique_ptr<patroni_cluster> s_cluster;
  static inline std::string s_skip;
};

}  // namespace

TEST_F(patroni, comes_up_with_one_leader_and_two_streaming_replicas) {
  const auto roles = cluster().roles();
  ASSERT_EQ(roles.size(), 3U);
  EXPECT_EQ(count_role(roles, "leader"), 1U) << describe(roles);
  EXPECT_EQ(count_role(roles, "replica"), 2U) << describe(roles);
  const auto leader = cluster().leader();
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(roles[*leader], "leader");

  EXPECT_EQ(cluster().dsn(),
            fmt::format("host=127.0.0.1,127.0.0.1,127.0.0.1 port={},{},{} user=postgres dbname=postgres",
                        cluster().pg_port(0), cluster().pg_port(1), cluster().pg_port(2)));
  // The multi-host DSN reaches the leader for read-write, as libpq reads it.
  connection rw(cluster().dsn() + " target_session_attrs=read-write");
  EXPECT_EQ(rw.query_value<int>("SELECT inet_server_port()"), cluster().pg_port(*leader));
  (void)rw.execute("CREATE TABLE IF NOT EXISTS seen_everywhere (id int)");
  (void)rw.execute("INSERT INTO seen_everywhere VALUES (1)");
  const auto lsn = rw.query_value<std::string>("SELECT pg_current_wal_lsn()::text");
  for (std::size_t i = 0; i < cluster().size(); ++i) {
    if (i == *leader) continue;
    connection replica(cluster().node_dsn(i));
    EXPECT_TRUE(replica.query_value<bool>("SELECT pg_is_in_recovery()"));
    EXPECT_TRUE(cluster().wait_for(
        [&] { return replica.query_value<bool>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn); }, 10s));
    EXPECT_GE(replica.query_value<std::int64_t>("SELECT count(*) FROM seen_everywhere"), 1);
  }
  const auto listed = cluster().patronictl({"list", "-f", "json"});
  EXPECT_NE(listed.find("\"Leader\""), std::string::npos) << listed;
}

TEST_F(patroni, switchover_moves_the_leader_and_the_old_leader_rejoins_as_a_replica) {
  const auto from = cluster().leader();
  ASSERT_TRUE(from.has_value());
  const std::size_t to = (*from + 1) % cluster().size();
  const auto t0 = clock_type::now();
  cluster().switchover(*from, to);
  std::cout << "switchover " << cluster().name(*from) << " -> " << cluster().name(to) << " confirmed after "
            << ms_since(t0) << " ms\n";
  EXPECT_EQ(cluster().leader(), to);
  EXPECT_TRUE(cluster().wait_for([&] { return cluster().roles()[*from] == "replica"; }, 60s))
      << describe(cluster().roles()) << "\n"
      << cluster().logs(*from);
  cluster().wait_healthy(60s);
  std::cout << "old leader streaming again after " << ms_since(t0) << " ms\n";
  EXPECT_TRUE(connection(cluster().node_dsn(*from)).query_value<bool>("SELECT pg_is_in_recovery()"));
  EXPECT_FALSE(connection(cluster().node_dsn(to)).query_value<bool>("SELECT pg_is_in_recovery()"));
}

TEST_F(patroni, killing_the_leader_elects_a_new_one_within_ttl_and_the_old_one_rejoins) {
  const auto old = cluster().leader();
  ASSERT_TRUE(old.has_value());
  const int patroni_pid = cluster().patroni_pid(*old);
  const int postmaster_pid = cluster().postmaster_pid(*old);
  ASSERT_GT(patroni_pid, 0);
  ASSERT_GT(postmaster_pid, 0);
  const auto t0 = clock_type::now();
  cluster().kill_node(*old);
  EXPECT_FALSE(steadypg::test::process_alive(patroni_pid));
  EXPECT_FALSE(steadypg::test::process_alive(postmaster_pid));
  EXPECT_EQ(cluster().roles()[*old], "down");
  const auto ttl = std::chrono::seconds(patroni_cluster_options{}.ttl);
  std::optional<std::size_t> elected;
  EXPECT_TRUE(cluster().wait_for(
      [&] {
        elected = cluster().leader();
        return elected.has_value() && *elected != *old;
      },
      ttl + 10s))
      << describe(cluster().roles());
  const auto election_ms = ms_since(t0);
  std::cout << "new leader " << (elected ? cluster().name(*elected) : "none") << " after " << election_ms << " ms (ttl "
            << ttl.count() << " s)\n";
  EXPECT_LE(election_ms, std::chrono::duration_cast<std::chrono::milliseconds>(ttl + 8s).count());

  const auto t1 = clock_type::now();
  cluster().start_node(*old);
  cluster().wait_healthy(90s);
  std::cout << "killed node rejoined as a streaming replica after " << ms_since(t1) << " ms\n";
  EXPECT_EQ(cluster().roles()[*old], "replica");
}

TEST_F(patroni, a_planned_stop_of_the_leader_hands_over_within_a_few_loops) {
  const auto old = cluster().leader();
  ASSERT_TRUE(old.has_value());
  const auto t0 = clock_type::now();
  cluster().stop_node(*old);
  EXPECT_EQ(cluster().patroni_pid(*old), 0);
  EXPECT_EQ(cluster().postmaster_pid(*old), 0);
  std::optional<std::size_t> elected;
  EXPECT_TRUE(cluster().wait_for(
      [&] {
        elected = cluster().leader();
        return elected.has_value() && *elected != *old;
      },
      30s))
      << describe(cluster().roles());
  std::cout << "new leader after a planned stop: " << (elected ? cluster().name(*elected) : "none") << " after "
            << ms_since(t0) << " ms\n";
  cluster().start_node(*old);
  cluster().wait_healthy(90s);
  EXPECT_EQ(cluster().roles()[*old], "replica");
}

TEST_F(patroni, destruction_leaves_no_process_and_no_directory) {
  std::vector<int> pids;
  for (std::size_t i = 0; i < cluster().size(); ++i) {
    pids.push_back(cluster().patroni_pid(i));
    pids.push_back(cluster().postmaster_pid(i));
  }
  const auto dir = cluster().dir();
  EXPECT_FALSE(steadypg::test::processes_in(dir).empty());
  const auto t0 = clock_type::now();
  TearDownTestSuite();
  std::cout << "patroni_cluster torn down in " << ms_since(t0) << " ms\n";
  for (const int pid : pids) EXPECT_FALSE(steadypg::test::process_alive(pid)) << pid;
  EXPECT_TRUE(steadypg::test::processes_in(dir).empty());
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(patroni_synchronous, synchronous_mode_gives_the_leader_a_synchronous_standby) {
  if (const auto reason = patroni_cluster::unavailable_reason(); !reason.empty()) GTEST_SKIP() << reason;
  patroni_cluster_options o;
  o.nodes = 2;
  o.synchronous_mode = true;
  const auto t0 = clock_type::now();
  patroni_cluster cluster(o);
  std::cout << "patroni_cluster (etcd + 2 nodes, synchronous_mode) came up in " << ms_since(t0) << " ms\n";
  const auto leader = cluster.leader();
  ASSERT_TRUE(leader.has_value());
  const std::size_t standby = 1 - *leader;
  connection primary(cluster.node_dsn(*leader));
  // Patroni names the standby in synchronous_standby_names once it streams.
  EXPECT_TRUE(cluster.wait_for(
      [&] {
        return primary.query_value<std::int64_t>(
                   "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND application_name = $1",
                   cluster.name(standby)) == 1;
      },
      30s))
      << primary.query_value<std::string>("SHOW synchronous_standby_names");
  EXPECT_NE(primary.query_value<std::string>("SHOW synchronous_standby_names"), "");
  EXPECT_EQ(primary.query_value<std::string>("SHOW synchronous_commit"), "on");
}
