#include <gtest/gtest.h>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

namespace {
class transactions : public ::testing::Test {
 protected:
  void SetUp() override {
    (void)c.execute("DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
    (void)c.execute("INSERT INTO accounts VALUES (1, 100), (2, 0)");
  }
  int balance(int id) { return c.query_value<int>("SELECT balance FROM accounts WHERE id = $1", id); }
  connection c = connect();
};
}  // namespace

TEST_F(transactions, commit_applies) {
  {
    auto tx = c.begin();
    EXPECT_EQ(c.status(), connection_status::in_transaction);
    (void)tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = 1", 30);
    (void)tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = 2", 30);
    tx.commit();
    EXPECT_FALSE(tx.active());
    EXPECT_TRUE(c.last_request().commit_sent);
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(balance(1), 70);
  EXPECT_EQ(balance(2), 30);
}

TEST_F(transactions, destructor_rolls_back) {
  {
    auto tx = c.begin();
    (void)tx.execute("UPDATE accounts SET balance = 0 WHERE id = 1");
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(balance(1), 100);
}

TEST_F(transactions, exception_rolls_back) {
  try {
    auto tx = c.begin();
    (void)tx.execute("UPDATE accounts SET balance = 0 WHERE id = 1");
    (void)tx.execute("INSERT INTO accounts VALUES (1, 5)");  // duplicate
    tx.commit();
    FAIL();
  } catch (const unique_violation&) {
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(balance(1), 100);
}

TEST_F(transactions, commit_after_failure_reports_rollback) {
  auto tx = c.begin();
  EXPECT_THROW((void)tx.execute("SELECT 1/0"), sql_error);
  EXPECT_EQ(c.status(), connection_status::failed_transaction);
  EXPECT_THROW((void)tx.execute("SELECT 1"), sql_error);  // 25P02
  try {
    tx.commit();
    FAIL() << "a failed transaction must not look committed";
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "25P02");
  }
  EXPECT_EQ(c.status(), connection_status::idle);
}

TEST_F(transactions, explicit_rollback_and_reuse) {
  auto tx = c.begin();
  (void)tx.execute("DELETE FROM accounts");
  tx.rollback();
  EXPECT_THROW((void)tx.execute("SELECT 1"), usage_error);
  EXPECT_THROW(tx.commit(), usage_error);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM accounts"), 2);
}

TEST_F(transactions, nested_begin_is_refused) {
  auto tx = c.begin();
  EXPECT_THROW((void)c.begin(), usage_error);
  EXPECT_TRUE(tx.active());
}

TEST_F(transactions, isolation_and_read_only) {
  {
    auto tx = c.begin({.isolation = isolation_level::serializable, .read_only = true, .deferrable = true});
    EXPECT_EQ(tx.query_value<std::string>("SHOW transaction_isolation"), "serializable");
    EXPECT_EQ(tx.query_value<std::string>("SHOW transaction_read_only"), "on");
    try {
      (void)tx.execute("UPDATE accounts SET balance = 1");
      FAIL();
    } catch (const sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "25006");
      EXPECT_EQ(e.outcome(), outcome::wrong_host);
    }
  }
  auto tx = c.begin({.isolation = isolation_level::repeatable_read});
  EXPECT_EQ(tx.query_value<std::string>("SHOW transaction_isolation"), "repeatable read");
  tx.commit();
}

TEST_F(transactions, serialization_failure_is_classified) {
  auto other = connect();
  auto t1 = c.begin({.isolation = isolation_level::serializable});
  auto t2 = other.begin({.isolation = isolation_level::serializable});
  (void)t1.query_value<int64_t>("SELECT sum(balance) FROM accounts");
  (void)t2.query_value<int64_t>("SELECT sum(balance) FROM accounts");
  (void)t1.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1");
  (void)t2.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 2");
  t1.commit();
  try {
    t2.commit();
    FAIL() << "expected a serialization failure";
  } catch (const serialization_failure& e) {
    EXPECT_EQ(e.outcome(), outcome::rolled_back);
    EXPECT_TRUE(e.is_transient());
  }
}

TEST_F(transactions, move_transfers_ownership) {
  auto make = [&] {
    auto tx = c.begin();
    (void)tx.execute("UPDATE accounts SET balance = 5 WHERE id = 2");
    return tx;
  };
  auto tx = make();
  EXPECT_TRUE(tx.active());
  tx.commit();
  EXPECT_EQ(balance(2), 5);
}
