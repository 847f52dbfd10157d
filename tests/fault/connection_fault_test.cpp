#include <gtest/gtest.h>

#include <typeinfo>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

namespace {

void terminate(int pid) {
  auto admin = connect();
  EXPECT_TRUE(admin.query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pid));
}

}  // namespace

TEST(connection_fault, terminated_idle_backend) {
  auto c = connect();
  terminate(c.backend_pid());
  try {
    (void)c.execute("SELECT 1");
    FAIL() << "a terminated session answered";
  } catch (const connection_error& e) {
    EXPECT_TRUE(e.poisons_connection());
    EXPECT_TRUE(e.sqlstate() == "57P01" || e.sqlstate().empty()) << e.sqlstate();
    EXPECT_EQ(e.outcome(), outcome::indeterminate);  // from the client's view it may have run
  }
  EXPECT_TRUE(c.is_broken());
  EXPECT_THROW((void)c.execute("SELECT 1"), connection_error);
  auto fresh = connect();
  EXPECT_EQ(fresh.query_value<int>("SELECT 1"), 1);
}

TEST(connection_fault, terminated_inside_transaction_is_rolled_back) {
  auto c = connect();
  (void)c.execute("CREATE TABLE IF NOT EXISTS fault_tx (x int)");
  auto tx = c.begin();
  (void)tx.execute("INSERT INTO fault_tx VALUES (1)");
  terminate(c.backend_pid());
  try {
    (void)tx.execute("INSERT INTO fault_tx VALUES (2)");
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.outcome(), outcome::rolled_back) << "nothing before COMMIT can have committed";
    EXPECT_TRUE(e.is_transient());
  }
  EXPECT_EQ(connect().query_value<int64_t>("SELECT count(*) FROM fault_tx"), 0);
}

TEST(connection_fault, lost_during_commit_is_indeterminate) {
  auto c = connect();
  (void)c.execute("CREATE TABLE IF NOT EXISTS fault_commit (x int)");
  auto tx = c.begin();
  (void)tx.execute("INSERT INTO fault_commit VALUES (1)");
  terminate(c.backend_pid());
  try {
    tx.commit();
    FAIL();
  } catch (const indeterminate_commit& e) {
    EXPECT_EQ(e.outcome(), outcome::indeterminate);
    EXPECT_TRUE(e.poisons_connection());
    EXPECT_NE(std::string(e.what()).find("may or may not have committed"), std::string::npos);
  }
  EXPECT_TRUE(c.is_broken());
}

TEST(connection_fault, lost_reply_to_any_commit_form_is_indeterminate) {
  // Each of these ends the transaction: a lost reply may hide a commit, so it must be an
  // indeterminate_commit, never a rolled_back that invites running the work again.
  for (const char* commit : {"/* tag */ COMMIT", "-- done\ncommit;", "/* a /* nested */ comment */ END", "END WORK",
                             "  COMMIT AND NO CHAIN", "INSERT INTO fault_commit_forms VALUES (2); COMMIT"}) {
    auto c = connect();
    (void)c.execute("CREATE TABLE IF NOT EXISTS fault_commit_forms (x int)");
    (void)c.execute("BEGIN");
    (void)c.execute("INSERT INTO fault_commit_forms VALUES (1)");
    terminate(c.backend_pid());
    try {
      (void)c.execute(commit);  // no parameters: the simple protocol
      ADD_FAILURE() << "a terminated session answered " << commit;
    } catch (const indeterminate_commit& e) {
      EXPECT_EQ(e.outcome(), outcome::indeterminate) << commit;
    } catch (const error& e) {
      ADD_FAILURE() << commit << ": " << typeid(e).name() << " with outcome " << to_string(e.outcome());
    }
  }
}

TEST(connection_fault, lost_reply_to_a_commit_sent_as_one_extended_statement_is_indeterminate) {
  for (const char* commit : {"/* tag */ COMMIT", "-- done\ncommit", "/* a /* nested */ comment */ END TRANSACTION",
                             "\n  COMMIT PREPARED 'never_prepared'"}) {
    auto c = connect();
    (void)c.execute("CREATE TABLE IF NOT EXISTS fault_commit_forms (x int)");
    (void)c.execute("BEGIN");
    (void)c.execute("INSERT INTO fault_commit_forms VALUES (1)");
    terminate(c.backend_pid());
    try {
      (void)c.execute_refs(commit, {}, false);  // the extended protocol: one statement
      ADD_FAILURE() << "a terminated session answered " << commit;
    } catch (const indeterminate_commit& e) {
      EXPECT_EQ(e.outcome(), outcome::indeterminate) << commit;
    } catch (const error& e) {
      ADD_FAILURE() << commit << ": " << typeid(e).name() << " with outcome " << to_string(e.outcome());
    }
  }
}

TEST(connection_fault, server_restart_breaks_open_connections) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  auto c = connect();
  cluster->restart();
  EXPECT_THROW((void)c.execute("SELECT 1"), connection_error);
  EXPECT_TRUE(c.is_broken());
  EXPECT_EQ(connect().query_value<int>("SELECT 1"), 1);
}

TEST(connection_fault, server_down_fails_fast_with_not_sent) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  cluster->stop();
  const auto start = std::chrono::steady_clock::now();
  try {
    connect();
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.kind(), failure_kind::connect_failed);
    EXPECT_EQ(e.outcome(), outcome::not_sent);
    EXPECT_TRUE(is_health_failure(e.sqlstate(), e.kind()));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  cluster->start();
  EXPECT_EQ(connect().query_value<int>("SELECT 1"), 1);
}

TEST(connection_fault, statement_timeout_on_server_is_query_canceled) {
  auto c = connect();
  (void)c.execute("SET statement_timeout = 100");
  try {
    (void)c.execute("SELECT pg_sleep(5)");
    FAIL();
  } catch (const query_canceled& e) {
    EXPECT_EQ(e.sqlstate(), "57014");
    EXPECT_FALSE(e.poisons_connection());
  }
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);
}
