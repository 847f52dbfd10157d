#include <gtest/gtest.h>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

TEST(pipeline, results_arrive_in_order) {
  auto c = connect();
  pipeline p(c);
  EXPECT_EQ(c.status(), connection_status::active);
  EXPECT_THROW((void)c.execute("SELECT 1"), usage_error);
  for (int i = 0; i < 100; ++i) p.send("SELECT $1::int * 2", i);
  p.sync();
  EXPECT_EQ(p.pending(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(p.get_result().as<int>(), i * 2);
  EXPECT_EQ(p.pending(), 0u);
  p.finish();
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 9"), 9);
}

TEST(pipeline, errors_are_isolated_per_sync_group) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE pu (id int PRIMARY KEY)");
  {
    pipeline p(c);
    for (int i : {1, 2, 1, 3}) {
      p.send("INSERT INTO pu VALUES ($1)", i);
      p.sync();  // each statement stands alone
    }
    EXPECT_NO_THROW((void)p.get_result());
    EXPECT_NO_THROW((void)p.get_result());
    EXPECT_THROW((void)p.get_result(), unique_violation);
    EXPECT_NO_THROW((void)p.get_result());
  }
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM pu"), 3);
  {
    pipeline p(c);
    p.send("INSERT INTO pu VALUES ($1)", 10);
    p.send("INSERT INTO pu VALUES ($1)", 1);   // fails
    p.send("INSERT INTO pu VALUES ($1)", 11);  // aborted with it
    p.sync();
    EXPECT_NO_THROW((void)p.get_result());
    EXPECT_THROW((void)p.get_result(), unique_violation);
    EXPECT_THROW((void)p.get_result(), pipeline_aborted);
  }
  // One sync group is one implicit transaction: all three rolled back.
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM pu WHERE id >= 10"), 0);
  EXPECT_EQ(c.status(), connection_status::idle);
}

TEST(pipeline, results_without_sync_and_destructor_drains) {
  auto c = connect();
  {
    pipeline p(c);
    p.send("SELECT 1");
    EXPECT_EQ(p.get_result().as<int>(), 1);  // a flush request is sent for us
    p.send("SELECT 2");
    p.send("SELECT pg_sleep(0.05)");
    // Leaving with results outstanding: the destructor collects them.
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 3"), 3);
}

TEST(pipeline, many_statements_do_not_deadlock) {
  auto c = connect();
  pipeline p(c);
  const std::string padding(2000, 'p');
  constexpr int n = 20000;
  for (int i = 0; i < n; ++i) p.send("SELECT $1::int, $2::text", i, padding);
  p.sync();
  int64_t sum = 0;
  for (int i = 0; i < n; ++i) sum += p.get_result()[0][0].as<int64_t>();
  EXPECT_EQ(sum, int64_t{n} * (n - 1) / 2);
}

TEST(copy, round_trips_awkward_values) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE ck (id int, t text, b bytea, n int)");
  const std::vector<std::string> awkward{"tab\there", "new\nline", "cr\rreturn", "back\\slash", "\\N",
                                         "quote'\"", "comma,semi;", "unicode ✓ 日本", "", "\\.", "end\\"};
  {
    copy_in cp(c, "ck", {"id", "t", "b", "n"});
    for (std::size_t i = 0; i < awkward.size(); ++i) {
      cp.write_row(static_cast<int>(i), awkward[i], bytes{std::byte{0}, std::byte{'\t'}, std::byte{0xff}},
                   std::optional<int>{});
    }
    EXPECT_EQ(cp.rows_written(), awkward.size());
    EXPECT_EQ(cp.finish(), awkward.size());
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  auto rs = c.execute("SELECT id, t, b, n FROM ck ORDER BY id");
  ASSERT_EQ(rs.size(), awkward.size());
  for (auto [id, t, b, n] : rs.rows<int, std::string, bytes, std::optional<int>>()) {
    EXPECT_EQ(t, awkward[static_cast<std::size_t>(id)]);
    EXPECT_EQ(b, (bytes{std::byte{0}, std::byte{'\t'}, std::byte{0xff}}));
    EXPECT_EQ(n, std::nullopt);
  }
}

TEST(copy, csv_distinguishes_empty_from_null) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cc (a text, b text)");
  {
    copy_in cp(c, "cc", {"a", "b"}, copy_format::csv);
    cp.write_row(std::string(""), std::optional<std::string>{});
    cp.write_row(std::string("x,\"y\"\nz"), std::string("w"));
    EXPECT_EQ(cp.finish(), 2u);
  }
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cc WHERE a = '' AND b IS NULL"), 1);
  EXPECT_EQ(c.query_value<std::string>("SELECT a FROM cc WHERE b = 'w'"), "x,\"y\"\nz");
}

TEST(copy, bad_row_aborts_everything_with_line_number) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cb (id int PRIMARY KEY)");
  copy_in cp(c, "cb");
  cp.write_raw("1\n2\nthree\n4\n");
  try {
    (void)cp.finish();
    FAIL();
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "22P02");
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cb"), 0);
}

TEST(copy, destructor_aborts_and_loads_nothing) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cd (id int)");
  {
    copy_in cp(c, "cd");
    for (int i = 0; i < 100000; ++i) cp.write_row(i);
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cd"), 0);
  copy_in cp(c, "cd");
  for (int i = 0; i < 100000; ++i) cp.write_row(i);
  EXPECT_EQ(cp.finish(), 100000u);
  EXPECT_EQ(c.query_value<int64_t>("SELECT sum(id) FROM cd"), int64_t{100000} * 99999 / 2);
}

TEST(copy, unknown_table_is_a_clear_error) {
  auto c = connect();
  EXPECT_THROW(copy_in(c, "no_such_table"), sql_error);
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);
}
