// The replica-set fixture against real standbys: what it promises the cluster tests.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <fmt/format.h>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "processes.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/error.hpp"
#include "steadypg/testing/temp_replica_set.hpp"

using namespace std::chrono_literals;
using steadypg::connection;
using steadypg::testing::temp_replica_set;
using steadypg::testing::temp_replica_set_options;

namespace {

bool in_recovery(temp_replica_set& set, std::size_t i) {
  return connection(set.node(i).dsn()).query_value<bool>("SELECT pg_is_in_recovery()");
}

std::int64_t count_rows(temp_replica_set& set, std::size_t i, const std::string& table) {
  return connection(set.node(i).dsn()).query_value<std::int64_t>(fmt::format("SELECT count(*) FROM {}", table));
}

int timeline(temp_replica_set& set, std::size_t i) {
  // The pgwatch method: the timeline is the first 8 hex digits of the current WAL file's name.
  return connection(set.node(i).dsn())
      .query_value<int>("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int");
}

// One set for the tests that leave it as they found it.
class replica_set : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto t0 = std::chrono::steady_clock::now();
    s_set = std::make_unique<temp_replica_set>();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::cout << "temp_replica_set (primary + 2 standbys) came up in " << ms.count() << " ms\n";
  }
  static void TearDownTestSuite() { s_set.reset(); }
  static temp_replica_set& set() { return *s_set; }

 private:
  static inline std::unique_ptr<temp_replica_set> s_set;
};

}  // namespace

TEST_F(replica_set, node_zero_is_the_primary_and_the_others_stream_from_it) {
  ASSERT_EQ(set().size(), 3U);
  EXPECT_EQ(set().primary(), 0U);
  EXPECT_FALSE(in_recovery(set(), 0));
  EXPECT_TRUE(in_recovery(set(), 1));
  EXPECT_TRUE(in_recovery(set(), 2));
  connection primary(set().node(0).dsn());
  EXPECT_EQ(primary.query_value<std::int64_t>(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN "
                "('node1', 'node2')"),
            2);
  EXPECT_NE(set().node(1).port(), set().node(0).port());
  EXPECT_NE(set().node(2).port(), set().node(1).port());
}

TEST_F(replica_set, dsn_and_url_name_every_node_in_order) {
  const auto p = [&](std::size_t i) { return set().node(i).port(); };
  EXPECT_EQ(set().dsn(), fmt::format("host=127.0.0.1,127.0.0.1,127.0.0.1 port={},{},{} user=postgres dbname=postgres",
                                     p(0), p(1), p(2)));
  EXPECT_EQ(set().url(), fmt::format("postgresql://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/postgres?user=postgres", p(0),
                                     p(1), p(2)));
  // libpq's own reading of both: in-order fallback lands on the primary for read-write.
  for (const auto& d :
       {set().dsn() + " target_session_attrs=read-write", set().url() + "&target_session_attrs=read-write"}) {
    EXPECT_FALSE(connection(d).query_value<bool>("SELECT pg_is_in_recovery()")) << d;
  }
  EXPECT_TRUE(
      connection(set().dsn() + " target_session_attrs=standby").query_value<bool>("SELECT pg_is_in_recovery()"));
}

TEST_F(replica_set, a_row_written_on_the_primary_reaches_both_replicas) {
  connection primary(set().node(0).dsn());
  (void)primary.execute("CREATE TABLE reach (id int primary key)");
  (void)primary.execute("INSERT INTO reach SELECT generate_series(1, 100)");
  set().wait_caught_up(1, 10s);
  set().wait_caught_up(2, 10s);
  EXPECT_EQ(count_rows(set(), 1, "reach"), 100);
  EXPECT_EQ(count_rows(set(), 2, "reach"), 100);
  try {
    (void)connection(set().node(1).dsn()).execute("INSERT INTO reach VALUES (101)");
    FAIL() << "a standby accepted a write";
  } catch (const steadypg::error& e) {
    EXPECT_EQ(e.sqlstate(), "25006");
  }
}

TEST_F(replica_set, paused_replay_hides_new_rows_until_resumed) {
  connection primary(set().node(0).dsn());
  (void)primary.execute("CREATE TABLE paused (id int)");
  set().wait_caught_up(1, 10s);
  set().wait_caught_up(2, 10s);
  set().pause_replay(1);
  (void)primary.execute("INSERT INTO paused VALUES (1)");
  set().wait_caught_up(2, 10s);
  EXPECT_EQ(count_rows(set(), 2, "paused"), 1) << "the other standby is not held back";
  EXPECT_THROW(set().wait_caught_up(1, 500ms), std::runtime_error) << "a paused standby cannot catch up";
  EXPECT_EQ(count_rows(set(), 1, "paused"), 0);
  connection standby(set().node(1).dsn());
  bool received = false;
  for (int i = 0; i < 100 && !received; ++i) {
    received = standby.query_value<std::int64_t>(
                   "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint") > 0;
    if (!received) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(received) << "WAL is still received while replay is paused";
  set().resume_replay(1);
  set().wait_caught_up(1, 10s);
  EXPECT_EQ(count_rows(set(), 1, "paused"), 1);
}

TEST_F(replica_set, a_stopped_replica_catches_up_after_start) {
  connection primary(set().node(0).dsn());
  (void)primary.execute("CREATE TABLE while_stopped (id int)");
  const int port = set().node(2).port();
  set().stop(2);
  EXPECT_FALSE(set().node(2).running());
  (void)primary.execute("INSERT INTO while_stopped SELECT generate_series(1, 1000)");
  set().start(2);
  EXPECT_EQ(set().node(2).port(), port);
  set().wait_streaming(2, 0, 10s);
  set().wait_caught_up(2, 10s);
  EXPECT_EQ(count_rows(set(), 2, "while_stopped"), 1000);

  set().kill(1);
  EXPECT_FALSE(set().node(1).running());
  (void)primary.execute("INSERT INTO while_stopped VALUES (0)");
  set().start(1);
  set().wait_caught_up(1, 10s);
  EXPECT_EQ(count_rows(set(), 1, "while_stopped"), 1001);
}

TEST(replica_set_failover, promote_while_the_primary_runs_makes_a_split_brain_and_the_old_primary_can_rejoin) {
  temp_replica_set set;
  (void)connection(set.node(0).dsn())
      .execute("CREATE TABLE before_promote (id int); INSERT INTO before_promote VALUES (1)");
  set.wait_caught_up(1, 10s);
  set.promote(1);
  EXPECT_EQ(set.primary(), 1U);
  EXPECT_FALSE(in_recovery(set, 1));
  EXPECT_FALSE(in_recovery(set, 0)) << "the old primary still runs: two writable nodes";
  (void)connection(set.node(1).dsn()).execute("INSERT INTO before_promote VALUES (2)");
  (void)connection(set.node(0).dsn()).execute("INSERT INTO before_promote VALUES (3)");
  EXPECT_EQ(timeline(set, 0), 1);
  EXPECT_EQ(timeline(set, 1), 2) << "only the timeline tells the two primaries apart";

  // Node 2 still follows node 0 and has replayed its diverging row: it is rebuilt onto node 1.
  set.make_replica_of(2, 1);
  // The old primary diverged: pg_rewind brings it onto node 1's timeline.
  set.make_replica_of(0, 1);
  EXPECT_TRUE(in_recovery(set, 0));
  EXPECT_TRUE(in_recovery(set, 2));
  (void)connection(set.node(1).dsn()).execute("INSERT INTO before_promote VALUES (4)");
  set.wait_caught_up(0, 10s);
  set.wait_caught_up(2, 10s);
  for (const std::size_t i : {0U, 2U}) {
    EXPECT_EQ(connection(set.node(i).dsn())
                  .query_value<std::string>("SELECT string_agg(id::text, ',' ORDER BY id) FROM before_promote"),
              "1,2,4")
        << "node " << i << " has node 1's history, not node 0's lost row";
  }
}

TEST(replica_set_teardown, destruction_stops_every_node_and_removes_every_directory) {
  std::vector<int> pids;
  std::filesystem::path dir;
  {
    temp_replica_set_options o;
    o.replicas = 1;
    o.password = "rep 'pw";
    temp_replica_set set(o);
    dir = set.dir();
    EXPECT_NE(set.dsn().find("password='rep \\'pw'"), std::string::npos) << set.dsn();
    EXPECT_NE(set.url().find("password=rep%20%27pw"), std::string::npos) << set.url();
    EXPECT_TRUE(
        connection(set.dsn() + " target_session_attrs=standby").query_value<bool>("SELECT pg_is_in_recovery()"));
    EXPECT_TRUE(
        connection(set.url() + "&target_session_attrs=standby").query_value<bool>("SELECT pg_is_in_recovery()"));
    for (std::size_t i = 0; i < set.size(); ++i) pids.push_back(set.node(i).pid());
    EXPECT_FALSE(steadypg::test::processes_in(dir).empty());
  }
  for (const int pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "postmaster " << pid << " is still there";
  EXPECT_TRUE(steadypg::test::processes_in(dir).empty());
  EXPECT_FALSE(std::filesystem::exists(dir));
}
