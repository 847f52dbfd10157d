#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <compare>
#include <iterator>
#include <limits>
#include <ranges>
#include <string>
#include <tuple>
#include <vector>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

TEST(types, integers_round_trip) {
  auto c = connect();
  EXPECT_EQ(c.query_value<int16_t>("SELECT $1", int16_t{-32768}), -32768);
  EXPECT_EQ(c.query_value<int32_t>("SELECT $1", std::numeric_limits<int32_t>::min()),
            std::numeric_limits<int32_t>::min());
  EXPECT_EQ(c.query_value<int64_t>("SELECT $1", std::numeric_limits<int64_t>::max()),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(c.query_value<uint64_t>("SELECT $1", std::numeric_limits<uint64_t>::max()),
            std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.query_value<std::string>("SELECT pg_typeof($1)::text", int64_t{1}), "bigint");
  EXPECT_EQ(c.query_value<std::string>("SELECT pg_typeof($1)::text", 1), "integer");
}

TEST(types, floating_point_round_trip) {
  auto c = connect();
  for (double v : {0.1, -1e300, 1.0 / 3.0, 5e-324, 123456789.125}) {
    EXPECT_EQ(c.query_value<double>("SELECT $1", v), v);
  }
  EXPECT_TRUE(std::isnan(c.query_value<double>("SELECT $1", std::nan(""))));
  EXPECT_EQ(c.query_value<double>("SELECT $1", HUGE_VAL), HUGE_VAL);
  EXPECT_EQ(c.query_value<float>("SELECT $1", 1.25f), 1.25f);
}

TEST(types, booleans_strings_and_nulls) {
  auto c = connect();
  EXPECT_TRUE(c.query_value<bool>("SELECT $1", true));
  EXPECT_FALSE(c.query_value<bool>("SELECT NOT $1", true));
  const std::string unicode = "žluťoučký kůň 🐎 日本語";
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", unicode), unicode);
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", std::string_view("view")), "view");
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::text", ""), "");
  EXPECT_EQ(c.query_value<std::optional<int>>("SELECT $1::int", std::optional<int>{}), std::nullopt);
  EXPECT_EQ(c.query_value<std::optional<int>>("SELECT $1::int", std::optional<int>{4}), 4);
  EXPECT_EQ(c.query_value<std::optional<std::string>>("SELECT NULL::text"), std::nullopt);
  EXPECT_TRUE(c.query_value<bool>("SELECT $1::int IS NULL", std::nullopt));
}

TEST(types, arrays_round_trip) {
  auto c = connect();
  EXPECT_EQ(c.query_value<std::vector<int>>("SELECT $1", std::vector<int>{1, 2, 3}), (std::vector<int>{1, 2, 3}));
  const std::vector<std::string> awkward{"a,b", "quote\"d", "back\\slash", "NULL", "", "{}", "sp ace"};
  EXPECT_EQ(c.query_value<std::vector<std::string>>("SELECT $1::text[]", awkward), awkward);
  const std::vector<std::optional<int64_t>> with_null{1, std::nullopt, 3};
  EXPECT_EQ(c.query_value<std::vector<std::optional<int64_t>>>("SELECT $1", with_null), with_null);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM generate_series(1, 10) g WHERE g = ANY($1)",
                                   std::vector<int>{2, 4, 99}),
            2);
  EXPECT_EQ(c.query_value<std::vector<int>>("SELECT $1::int[]", std::vector<int>{}), std::vector<int>{});
}

TEST(types, timestamps_round_trip) {
  using namespace std::chrono;
  auto c = connect();
  const auto now = time_point_cast<microseconds>(system_clock::now());
  EXPECT_EQ(c.query_value<system_clock::time_point>("SELECT $1", system_clock::time_point(now)),
            system_clock::time_point(now));
  (void)c.execute("SET TimeZone = 'Asia/Kolkata'");
  EXPECT_EQ(c.query_value<system_clock::time_point>("SELECT $1", system_clock::time_point(now)),
            system_clock::time_point(now));
  EXPECT_EQ(c.query_value<system_clock::time_point>("SELECT '2000-01-01 05:30:00+05:30'::timestamptz"),
            sys_days{year{2000} / 1 / 1});
  EXPECT_EQ(c.query_value<system_clock::time_point>("SELECT '1700-03-15 00:00:00+00'::timestamptz"),
            sys_days{year{1700} / 3 / 15});
  // Outside system_clock's nanosecond range: a clear error, not overflow.
  EXPECT_THROW((void)c.query_value<system_clock::time_point>("SELECT '0044-03-15 00:00:00+00 BC'::timestamptz"),
               conversion_error);
  EXPECT_THROW((void)c.query_value<system_clock::time_point>("SELECT '9999-12-31 00:00:00+00'::timestamptz"),
               conversion_error);
  EXPECT_EQ(c.query_value<std::string>("SELECT '0044-03-15 00:00:00 BC'::timestamp::text"), "0044-03-15 00:00:00 BC");
}

TEST(types, bytea_round_trips_every_byte) {
  auto c = connect();
  bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::byte>(i));
  EXPECT_EQ(c.query_value<bytes>("SELECT $1", all), all);
  EXPECT_EQ(c.query_value<int>("SELECT length($1)", all), 256);
  (void)c.execute("SET bytea_output = 'escape'");
  EXPECT_EQ(c.query_value<bytes>("SELECT $1", all), all);
}

TEST(types, json_and_uuid_bind_as_text) {
  auto c = connect();
  EXPECT_EQ(c.query_value<std::string>("SELECT ($1::jsonb)->>'k'", std::string(R"({"k": "v"})")), "v");
  EXPECT_EQ(c.query_value<std::string>("SELECT $1::uuid::text", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
}

TEST(types, conversion_errors_name_column_and_row) {
  auto c = connect();
  try {
    (void)c.query_value<int>("SELECT NULL::int AS maybe");
    FAIL();
  } catch (const conversion_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("\"maybe\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("NULL"), std::string::npos) << msg;
    EXPECT_NE(msg.find("std::optional"), std::string::npos) << msg;
  }
  try {
    auto rs = c.execute("SELECT 'abc'::text AS word");
    (void)rs[0][0].as<int>();
    FAIL();
  } catch (const conversion_error& e) {
    EXPECT_NE(std::string(e.what()).find("\"word\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"abc\""), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)c.query_value<int>("SELECT 1, 2"), usage_error);
  EXPECT_THROW((void)c.query_value<int>("SELECT 1 WHERE false"), usage_error);
  auto rs = c.execute("SELECT 1 AS a, 2 AS b");
  EXPECT_THROW((void)rs.rows<int>(), usage_error);
  EXPECT_THROW((void)rs[0]["nope"], usage_error);
  EXPECT_THROW((void)rs[5], usage_error);
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);  // the connection is fine
}

TEST(types, result_and_typed_rows_are_random_access_ranges) {
  auto c = connect();
  const auto rs = c.execute("SELECT i, 'name ' || i FROM generate_series(1, 10) AS i ORDER BY i DESC");

  // The rows: distance, arithmetic, ordering and [] in O(1).
  EXPECT_EQ(std::distance(rs.begin(), rs.end()), 10);
  EXPECT_EQ(std::ranges::distance(rs), 10);
  EXPECT_EQ(std::ranges::size(rs), 10u);
  EXPECT_EQ(rs.end() - rs.begin(), 10);
  EXPECT_EQ(rs.begin()[3][0].as<int>(), 7);
  EXPECT_EQ((rs.begin() + 3)->index(), 3);
  EXPECT_EQ((3 + rs.begin())->index(), 3);
  auto it = rs.end();
  it -= 2;
  EXPECT_EQ((*it)[0].as<int>(), 2);
  EXPECT_EQ((it - 1)->index(), 7);
  EXPECT_LT(rs.begin(), it);
  EXPECT_LE(it, rs.end());
  EXPECT_GT(rs.end(), it);
  EXPECT_EQ(rs.begin() <=> rs.begin(), std::strong_ordering::equal);
  EXPECT_EQ(std::next(rs.begin(), 10), rs.end());
  EXPECT_EQ(std::prev(rs.end())->index(), 9);

  // Backwards, by hand and through std::views::reverse.
  std::vector<int> ascending;
  for (auto r = rs.end(); r != rs.begin();) ascending.push_back((*--r)[0].as<int>());
  EXPECT_EQ(ascending, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  std::vector<int> reversed;
  for (const auto row : std::views::reverse(rs)) reversed.push_back(row[0].as<int>());
  EXPECT_EQ(reversed, ascending);
  int rows_seen = 0;
  for (const auto row : rs) rows_seen += row.index() == rows_seen ? 1 : 100;
  EXPECT_EQ(rows_seen, 10);

  // Typed rows: the same operations, each row converted on the way out.
  const auto typed = rs.rows<int, std::string>();
  EXPECT_EQ(std::ranges::distance(typed), 10);
  EXPECT_EQ(std::ranges::size(typed), 10u);
  EXPECT_FALSE(typed.empty());
  EXPECT_EQ(typed.begin()[3], std::make_tuple(7, std::string("name 7")));
  EXPECT_EQ(typed[9], std::make_tuple(1, std::string("name 1")));
  EXPECT_THROW((void)typed[10], usage_error);
  EXPECT_EQ(std::get<0>(*std::prev(typed.end())), 1);
  EXPECT_EQ(std::get<1>(*(typed.begin() + 1)), "name 9");
  std::vector<std::tuple<int, std::string>> v(typed.begin(), typed.end());
  std::ranges::sort(v);
  EXPECT_EQ(v.front(), std::make_tuple(1, std::string("name 1")));
  EXPECT_EQ(v.back(), std::make_tuple(10, std::string("name 10")));  // sorted by id first
  std::vector<int> typed_reversed;
  for (auto [id, name] : std::views::reverse(typed)) {
    typed_reversed.push_back(id);
    EXPECT_EQ(name, "name " + std::to_string(id));
  }
  EXPECT_EQ(typed_reversed, ascending);

  // A random-access algorithm straight on the range: binary search over ascending rows.
  const auto asc = c.execute("SELECT i FROM generate_series(1, 100) AS i ORDER BY i");
  const auto ids = asc.rows<int>();
  EXPECT_TRUE(std::ranges::is_sorted(ids));
  const auto found = std::ranges::lower_bound(ids, std::make_tuple(42));
  EXPECT_EQ(found - ids.begin(), 41);
  EXPECT_EQ(std::get<0>(*found), 42);

  // Structured bindings in range-for, as before.
  int sum = 0;
  for (auto [id, name] : rs.rows<int, std::string>()) sum += id + static_cast<int>(name.size() > 0);
  EXPECT_EQ(sum, 65);
}
