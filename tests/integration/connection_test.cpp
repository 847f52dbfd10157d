#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

TEST(connection, connects_and_reports_status) {
  auto c = connect();
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_TRUE(c.is_idle());
  EXPECT_GE(c.server_version(), 140000);
  EXPECT_GT(c.backend_pid(), 0);
  c.ping();
  EXPECT_EQ(c.query_value<std::string>("SELECT current_setting('application_name')"), "steadypg");
}

TEST(connection, execute_with_parameters) {
  auto c = connect();
  EXPECT_EQ(c.query_value<int64_t>("SELECT $1::int8 + $2", int64_t{40}, 2), 42);
  EXPECT_EQ(c.query_value<std::string>("SELECT $1 || '-' || $2", std::string("a"), "b"), "a-b");
  auto rs = c.execute("SELECT g, 'row ' || g FROM generate_series(1, $1) g", 3);
  ASSERT_EQ(rs.size(), 3u);
  ASSERT_EQ(rs.columns(), 2u);
  EXPECT_EQ(rs.column_name(0), "g");
  EXPECT_EQ(rs.column_name(1), "?column?");
  int expected = 1;
  for (auto [g, label] : rs.rows<int, std::string>()) {
    EXPECT_EQ(g, expected);
    EXPECT_EQ(label, "row " + std::to_string(expected));
    ++expected;
  }
  EXPECT_EQ(expected, 4);
  EXPECT_EQ(rs.command(), "SELECT 3");
  EXPECT_EQ(rs.rows_affected(), 3u);
  EXPECT_EQ(rs[1]["g"].as<int>(), 2);
  EXPECT_EQ(c.execute("SELECT generate_series(1, 3)").vector<int>(), (std::vector<int>{1, 2, 3}));
}

TEST(connection, commands_report_rows_affected) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE ra (id int primary key, v text)");
  auto ins = c.execute("INSERT INTO ra SELECT g, 'x' FROM generate_series(1, 5) g");
  EXPECT_EQ(ins.command(), "INSERT 0 5");
  EXPECT_EQ(ins.rows_affected(), 5u);
  auto upd = c.execute("UPDATE ra SET v = $1 WHERE id > $2", "y", 2);
  EXPECT_EQ(upd.rows_affected(), 3u);
  EXPECT_EQ(c.execute("DELETE FROM ra WHERE id = $1", 99).rows_affected(), 0u);
}

TEST(connection, simple_protocol_runs_several_statements) {
  auto c = connect();
  auto r = c.execute("CREATE TEMP TABLE multi (x int); INSERT INTO multi VALUES (1), (2); SELECT count(*) FROM multi");
  EXPECT_EQ(r.as<int>(), 2);
}

TEST(connection, statement_cache_reuses_and_evicts) {
  connection_options o;
  o.dsn = cluster_environment::dsn();
  o.statement_cache_capacity = 2;
  connection c(o);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.query_value<int>("SELECT $1::int * 2", i), i * 2);
  auto s = c.cache_stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 4u);
  EXPECT_EQ(s.size, 1u);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM pg_prepared_statements"), 1);
  (void)c.query_value<int>("SELECT $1::int + 1", 1);
  (void)c.query_value<int>("SELECT $1::int + 2", 1);  // evicts the least recently used
  s = c.cache_stats();
  EXPECT_EQ(s.size, 2u);
  EXPECT_EQ(s.evictions, 1u);
  (void)c.query_value<int>("SELECT $1::int + 3", 1);  // deallocates the evicted one on the server
  EXPECT_EQ(c.query_value<int64_t>(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int%'"),
            2);
}

TEST(connection, statement_cache_can_be_disabled) {
  connection_options o;
  o.dsn = cluster_environment::dsn();
  o.statement_cache_capacity = 0;
  connection c(o);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.query_value<int>("SELECT $1::int", i), i);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM pg_prepared_statements WHERE $1", true), 0);
  EXPECT_EQ(c.cache_stats().misses, 0u);
}

TEST(connection, statement_cache_survives_discard_all) {
  auto c = connect();
  EXPECT_EQ(c.query_value<int>("SELECT $1::int", 1), 1);
  (void)c.execute("DISCARD ALL");
  EXPECT_EQ(c.query_value<int>("SELECT $1::int", 2), 2);  // re-prepared transparently
}

TEST(connection, same_sql_with_other_parameter_types_is_reprepared) {
  auto c = connect();
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", 5), "5");
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", int64_t{9000000000}), "9000000000");
}

TEST(connection, statement_type_is_usable) {
  auto c = connect();
  auto st = statement{"SELECT $1::int + 1"}.idempotent().name("inc");
  EXPECT_TRUE(st.is_idempotent());
  EXPECT_EQ(st.name(), "inc");
  EXPECT_EQ(c.execute(st, 41).as<int>(), 42);
  EXPECT_EQ(c.execute(statement{"SELECT $1::int"}.unprepared(), 7).as<int>(), 7);
  EXPECT_EQ(c.cache_stats().size, 1u);
}

TEST(connection, server_error_fields_are_complete) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE uv (id int CONSTRAINT uv_pk PRIMARY KEY)");
  (void)c.execute("INSERT INTO uv VALUES ($1)", 1);
  try {
    (void)c.execute("INSERT INTO uv VALUES ($1)", 1);
    FAIL() << "expected unique_violation";
  } catch (const unique_violation& e) {
    EXPECT_EQ(e.sqlstate(), "23505");
    EXPECT_EQ(e.state_class(), sqlstate_class::integrity_constraint_violation);
    EXPECT_EQ(e.server().severity, "ERROR");
    EXPECT_EQ(e.server().constraint, "uv_pk");
    EXPECT_EQ(e.server().table, "uv");
    EXPECT_NE(e.server().detail.find("(id)=(1)"), std::string::npos);
    EXPECT_EQ(e.outcome(), outcome::fatal);
    EXPECT_EQ(e.operation(), "execute");
    EXPECT_FALSE(e.poisons_connection());
  }
  try {
    (void)c.execute("SELECT nosuchcolumn FROM uv");
    FAIL();
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "42703");
    EXPECT_EQ(e.server().position, 8);
  }
  try {
    (void)c.execute("SELECT 1/0");
    FAIL();
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "22012");
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);
}

TEST(connection, records_request_facts) {
  auto c = connect();
  (void)c.execute("SELECT 1");
  EXPECT_TRUE(c.last_request().bytes_sent);
  EXPECT_FALSE(c.last_request().commit_sent);
  EXPECT_FALSE(c.last_request().in_transaction);
  (void)c.execute("BEGIN");
  (void)c.execute("SELECT $1::int", 1);
  EXPECT_TRUE(c.last_request().in_transaction);
  (void)c.execute("COMMIT");
  EXPECT_TRUE(c.last_request().commit_sent);
  EXPECT_THROW((void)c.execute("SELECT $1", std::string("a\0b", 3)), usage_error);
  EXPECT_FALSE(c.last_request().bytes_sent);
}

TEST(connection, query_timeout_cancels_on_the_server) {
  connection_options o;
  o.dsn = cluster_environment::dsn();
  o.query_timeout = std::chrono::milliseconds(200);
  connection c(o);
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)c.execute("SELECT pg_sleep(30)");
    FAIL() << "expected timeout_error";
  } catch (const timeout_error& e) {
    EXPECT_EQ(e.kind(), failure_kind::timeout);
    EXPECT_EQ(e.outcome(), outcome::rolled_back);  // the server confirmed the cancel (57014)
    EXPECT_FALSE(e.poisons_connection());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(c.status(), connection_status::idle);
  c.set_query_timeout(std::chrono::milliseconds(0));
  EXPECT_EQ(c.query_value<int>("SELECT 7"), 7);
  // The server runs nothing for this session any more.
  auto observer = connect();
  EXPECT_EQ(observer.query_value<int64_t>(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'"),
            0);
}

TEST(connection, cancel_from_another_thread) {
  auto c = connect();
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE(c.cancel());
  });
  EXPECT_THROW((void)c.execute("SELECT pg_sleep(30)"), query_canceled);
  canceller.join();
  EXPECT_EQ(c.query_value<int>("SELECT 3"), 3);
}

TEST(connection, connect_failures_are_clear) {
  connection_options o;
  o.dsn = "host=127.0.0.1 port=1 user=postgres dbname=postgres";
  o.connect_timeout = std::chrono::milliseconds(2000);
  try {
    connection c(o);
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.kind(), failure_kind::connect_failed);
    EXPECT_EQ(e.outcome(), outcome::not_sent);
    EXPECT_EQ(e.sqlstate(), "08001");
    EXPECT_NE(std::string(e.what()).find("could not connect"), std::string::npos);
  }
  o.dsn = cluster_environment::dsn() + " dbname=no_such_db";
  try {
    connection c(o);
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.sqlstate(), "3D000");
  }
}

TEST(connection, connect_deadline_is_enforced) {
  // A loopback socket that accepts TCP but never answers the startup packet.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  connection_options o;
  o.dsn = "host=127.0.0.1 user=postgres sslmode=disable port=" + std::to_string(ntohs(addr.sin_port));
  o.connect_timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  try {
    connection c(o);
    FAIL() << "connected to a silent socket";
  } catch (const timeout_error& e) {
    EXPECT_EQ(e.kind(), failure_kind::connect_failed);
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ::close(fd);
}

TEST(connection, move_keeps_the_session) {
  auto a = connect();
  const int pid = a.backend_pid();
  connection b = std::move(a);
  EXPECT_EQ(b.backend_pid(), pid);
  EXPECT_EQ(b.query_value<int>("SELECT pg_backend_pid()"), pid);
}

TEST(connection, close_makes_it_broken) {
  auto c = connect();
  c.close();
  EXPECT_TRUE(c.is_broken());
  try {
    (void)c.execute("SELECT 1");
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  }
}
