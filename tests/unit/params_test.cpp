#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "steadypg/error.hpp"
#include "steadypg/params.hpp"

using namespace steadypg;

namespace {

template <typename T>
std::string text_of(const T& v) {
  auto h = param_traits<T>::to_param(v);
  const auto r = h.ref();
  if (r.data == nullptr) return "<NULL>";
  return std::string(r.data, static_cast<std::size_t>(r.length));
}

template <typename T>
oid type_of(const T& v) {
  auto h = param_traits<T>::to_param(v);
  return h.ref().type;
}

}  // namespace

TEST(params, integers) {
  EXPECT_EQ(text_of<int16_t>(-32768), "-32768");
  EXPECT_EQ(text_of<int32_t>(2147483647), "2147483647");
  EXPECT_EQ(text_of<int64_t>(std::numeric_limits<int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(text_of<uint64_t>(std::numeric_limits<uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(type_of<int16_t>(1), oids::int2);
  EXPECT_EQ(type_of<int32_t>(1), oids::int4);
  EXPECT_EQ(type_of<int64_t>(1), oids::int8);
  EXPECT_EQ(type_of<uint16_t>(1), oids::int4);  // 65535 does not fit int2
  EXPECT_EQ(type_of<uint32_t>(1), oids::int8);
  EXPECT_EQ(type_of<uint64_t>(1), oids::numeric);
}

TEST(params, floating_point_round_trips) {
  EXPECT_EQ(text_of(0.1), "0.1");
  EXPECT_EQ(std::stod(text_of(1.0 / 3.0)), 1.0 / 3.0);
  EXPECT_EQ(text_of(std::nan("")), "NaN");
  EXPECT_EQ(text_of(HUGE_VAL), "Infinity");
  EXPECT_EQ(text_of(-HUGE_VAL), "-Infinity");
  EXPECT_EQ(text_of(1.5f), "1.5");
  EXPECT_EQ(type_of(1.5f), oids::float4);
}

TEST(params, booleans_and_strings) {
  EXPECT_EQ(text_of(true), "t");
  EXPECT_EQ(text_of(false), "f");
  EXPECT_EQ(text_of(std::string("it's \"quoted\"")), "it's \"quoted\"");
  EXPECT_EQ(text_of(std::string_view("view")), "view");
  const char* cstr = "c string";
  EXPECT_EQ(text_of(cstr), "c string");
  EXPECT_EQ(type_of(std::string("x")), oids::unknown);  // the server infers text, jsonb, uuid …
}

TEST(params, optional_is_null) {
  EXPECT_EQ(text_of(std::optional<int>{}), "<NULL>");
  EXPECT_EQ(text_of(std::optional<int>{42}), "42");
  EXPECT_EQ(type_of(std::optional<int64_t>{}), oids::int8);
  EXPECT_EQ(text_of(std::optional<std::string>{"x"}), "x");
}

TEST(params, arrays) {
  EXPECT_EQ(text_of(std::vector<int>{1, 2, 3}), "{\"1\",\"2\",\"3\"}");
  EXPECT_EQ(type_of(std::vector<int>{}), oids::int4_array);
  EXPECT_EQ(text_of(std::vector<int>{}), "{}");
  EXPECT_EQ(text_of(std::vector<std::string>{"a\"b", "c\\d", "NULL", ""}), R"({"a\"b","c\\d","NULL",""})");
  EXPECT_EQ(text_of(std::vector<std::optional<int>>{1, std::nullopt}), "{\"1\",NULL}");
  EXPECT_EQ(text_of(std::vector<bool>{true, false}), "{\"t\",\"f\"}");
}

TEST(params, timestamps) {
  using namespace std::chrono;
  const sys_days d = year{2024} / 2 / 29;
  const auto tp = d + hours{13} + minutes{5} + seconds{9} + microseconds{123456};
  EXPECT_EQ(text_of(time_point_cast<system_clock::duration>(tp)), "2024-02-29 13:05:09.123456+00");
  EXPECT_EQ(text_of(system_clock::time_point{}), "1970-01-01 00:00:00.000000+00");
  EXPECT_EQ(type_of(system_clock::time_point{}), oids::timestamptz);
}

TEST(params, bytes_are_binary) {
  const bytes b{std::byte{0}, std::byte{1}, std::byte{0xff}};
  auto h = param_traits<bytes>::to_param(b);
  const auto r = h.ref();
  EXPECT_EQ(r.format, 1);
  EXPECT_EQ(r.length, 3);
  EXPECT_EQ(r.type, oids::bytea);
}

TEST(params, param_list_owns_values) {
  param_list p;
  {
    std::string temp = "temporary";
    p.add(temp).add(42).add_null().add_text("7");
  }
  const auto refs = p.refs();
  ASSERT_EQ(refs.size(), 4u);
  EXPECT_STREQ(refs[0].data, "temporary");
  EXPECT_STREQ(refs[1].data, "42");
  EXPECT_EQ(refs[1].type, oids::int4);
  EXPECT_EQ(refs[2].data, nullptr);
  EXPECT_STREQ(refs[3].data, "7");
  EXPECT_EQ(refs[3].type, oids::unknown);
}

TEST(params, described_for_logs) {
  EXPECT_EQ(describe_args(42, std::string("it's"), std::optional<int>{}, true), "$1='42', $2='it''s', $3=NULL, $4='t'");
  const std::string long_value(300, 'v');
  const auto d = describe_args(long_value);
  EXPECT_EQ(d, "$1='" + std::string(100, 'v') + "'…");
  EXPECT_EQ(describe_args(), "");
  param_list l;
  l.add_text("x").add_null();
  EXPECT_EQ(describe_params(l.refs()), "$1='x', $2=NULL");
}
