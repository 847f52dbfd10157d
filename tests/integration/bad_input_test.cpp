#include <gtest/gtest.h>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

TEST(bad_input, wrong_parameter_count) {
  auto c = connect();
  for (bool cached : {true, false}) {
    connection_options o;
    o.dsn = cluster_environment::dsn();
    o.statement_cache_capacity = cached ? 16 : 0;
    connection conn(o);
    try {
      (void)conn.execute("SELECT $1::int + $2::int", 1);
      FAIL() << "accepted too few parameters";
    } catch (const usage_error& e) {
      EXPECT_NE(std::string(e.what()).find("uses 2 ($1…$2), 1 given"), std::string::npos) << e.what();
      EXPECT_EQ(e.outcome(), outcome::not_sent);
    }
    EXPECT_FALSE(conn.last_request().bytes_sent);
    EXPECT_EQ(conn.status(), connection_status::idle);
    EXPECT_EQ(conn.query_value<int>("SELECT $1::int + $2::int", 1, 2), 3);
    EXPECT_THROW((void)conn.execute("SELECT $1::int", 1, 2), usage_error);
    // Placeholders inside strings, identifiers, comments and dollar quotes do not count.
    EXPECT_EQ(conn.query_value<std::string>("SELECT $1::text || '$2' || E'\\'$3' || \"$4\".x /* $5 /* $6 */ */ -- $7\n"
                                            " || $$ $8 $$ || $q$ $9 $q$ FROM (SELECT 'y' AS x) AS \"$4\"",
                                            "a"),
              "a$2'$3y $8  $9 ");
    EXPECT_EQ(conn.query_value<int>("SELECT $1::int", 5), 5);
  }
}

TEST(bad_input, nul_byte_is_rejected_before_sending) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE nul (v text)");
  const std::string with_nul("abc\0def", 7);
  try {
    (void)c.execute("INSERT INTO nul VALUES ($1)", with_nul);
    FAIL();
  } catch (const usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter $1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NUL"), std::string::npos) << e.what();
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  }
  EXPECT_FALSE(c.last_request().bytes_sent);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM nul"), 0);  // nothing truncated was stored
  param_list p;
  p.add(std::string_view(with_nul));
  EXPECT_THROW((void)c.execute("INSERT INTO nul VALUES ($1)", p), usage_error);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM nul"), 0);
}

TEST(bad_input, invalid_utf8_surfaces_as_sql_error) {
  auto c = connect();
  const std::string bad = "ok\xC3\x28";
  try {
    (void)c.execute("SELECT $1::text", bad);
    FAIL();
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "22021");
    EXPECT_EQ(e.state_class(), sqlstate_class::data_exception);
  }
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", std::string("fine")), "fine");
}

TEST(bad_input, injection_string_is_stored_verbatim) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE victims (name text)");
  const std::string evil = "Robert'); DROP TABLE victims; --";
  (void)c.execute("INSERT INTO victims VALUES ($1)", evil);
  EXPECT_EQ(c.query_value<std::string>("SELECT name FROM victims"), evil);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM victims WHERE name = $1", evil), 1);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM victims WHERE name = $1", "' OR '1'='1"), 0);
}

TEST(bad_input, ten_megabyte_parameter_round_trips) {
  auto c = connect();
  std::string big(10 * 1024 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", big), big);
  EXPECT_EQ(c.query_value<int64_t>("SELECT length($1)", big), static_cast<int64_t>(big.size()));
  bytes blob(10 * 1024 * 1024, std::byte{0});
  blob[12345] = std::byte{0xAB};
  EXPECT_EQ(c.query_value<bytes>("SELECT $1::bytea", blob), blob);
}

TEST(bad_input, hundred_thousand_rows) {
  auto c = connect();
  auto rs = c.execute("SELECT g, md5(g::text) FROM generate_series(1, $1) g", 100000);
  ASSERT_EQ(rs.size(), 100000u);
  int64_t sum = 0;
  std::size_t n = 0;
  for (auto [g, hash] : rs.rows<int64_t, std::string>()) {
    sum += g;
    EXPECT_EQ(hash.size(), 32u);
    ++n;
  }
  EXPECT_EQ(n, 100000u);
  EXPECT_EQ(sum, int64_t{100000} * 100001 / 2);
}

TEST(bad_input, syntax_error_then_keeps_working) {
  auto c = connect();
  EXPECT_THROW((void)c.execute("SELEC 1"), sql_error);
  EXPECT_THROW((void)c.execute("SELEC $1", 1), sql_error);
  EXPECT_EQ(c.cache_stats().size, 0u);  // a failed prepare is not cached
  EXPECT_EQ(c.query_value<int>("SELECT $1::int", 1), 1);
}

TEST(bad_input, copy_through_execute_is_refused_cleanly) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cp (x int)");
  EXPECT_THROW((void)c.execute("COPY cp FROM STDIN"), usage_error);
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cp"), 0);
  (void)c.execute("INSERT INTO cp VALUES (1)");
  EXPECT_THROW((void)c.execute("COPY cp TO STDOUT"), usage_error);
  EXPECT_EQ(c.query_value<int>("SELECT x FROM cp"), 1);
}

TEST(bad_input, copy_without_a_table_name_is_refused_before_sending) {
  auto c = connect();
  const auto before = c.request_count();
  EXPECT_THROW(copy_in(c, ""), usage_error);
  EXPECT_THROW(copy_out(c, copy_source::table("")), usage_error);
  EXPECT_EQ(c.request_count(), before) << "nothing reached the server";
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);
}
