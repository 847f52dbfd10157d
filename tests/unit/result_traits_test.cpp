#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "steadypg/params.hpp"
#include "steadypg/result.hpp"

using namespace steadypg;

TEST(result_traits, integers_strict) {
  EXPECT_EQ(result_traits<int>::from_text("-42"), -42);
  EXPECT_EQ(result_traits<int64_t>::from_text("9223372036854775807"), std::numeric_limits<int64_t>::max());
  EXPECT_THROW((void)result_traits<int>::from_text("2147483648"), conversion_error);
  EXPECT_THROW((void)result_traits<int16_t>::from_text("40000"), conversion_error);
  EXPECT_THROW((void)result_traits<int>::from_text("12abc"), conversion_error);
  EXPECT_THROW((void)result_traits<int>::from_text(""), conversion_error);
  EXPECT_THROW((void)result_traits<int>::from_text("1.5"), conversion_error);
  EXPECT_THROW((void)result_traits<unsigned>::from_text("-1"), conversion_error);
}

TEST(result_traits, doubles_and_bools) {
  EXPECT_DOUBLE_EQ(result_traits<double>::from_text("3.25"), 3.25);
  EXPECT_DOUBLE_EQ(result_traits<double>::from_text("1e-05"), 1e-5);
  EXPECT_TRUE(std::isnan(result_traits<double>::from_text("NaN")));
  EXPECT_EQ(result_traits<double>::from_text("-Infinity"), -HUGE_VAL);
  EXPECT_THROW((void)result_traits<double>::from_text("x"), conversion_error);
  EXPECT_TRUE(result_traits<bool>::from_text("t"));
  EXPECT_FALSE(result_traits<bool>::from_text("f"));
  EXPECT_THROW((void)result_traits<bool>::from_text("yes"), conversion_error);
}

TEST(result_traits, error_message_names_value_and_type) {
  try {
    (void)result_traits<int>::from_text("oops");
    FAIL();
  } catch (const conversion_error& e) {
    EXPECT_NE(std::string(e.what()).find("\"oops\""), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("integer"), std::string::npos);
  }
}

TEST(result_traits, timestamps) {
  using namespace std::chrono;
  const auto base = sys_days{year{2024} / 2 / 29} + hours{13} + minutes{5} + seconds{9};
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text("2024-02-29 13:05:09+00"), base);
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text("2024-02-29 15:05:09+02"), base);
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text("2024-02-29 08:35:09-04:30"), base);
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text("2024-02-29 13:05:09.5+00"), base + milliseconds{500});
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text("2024-02-29 13:05:09"), base);
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text("2024-02-29"), sys_days{year{2024} / 2 / 29});
  EXPECT_THROW((void)result_traits<system_clock::time_point>::from_text("2023-02-29 00:00:00+00"), conversion_error);
  EXPECT_THROW((void)result_traits<system_clock::time_point>::from_text("infinity"), conversion_error);
  EXPECT_THROW((void)result_traits<system_clock::time_point>::from_text("2024-02-29 13:05"), conversion_error);
  // Round trip through the parameter formatter.
  const auto now = time_point_cast<microseconds>(system_clock::now());
  auto h = param_traits<system_clock::time_point>::to_param(now);
  const auto r = h.ref();
  EXPECT_EQ(result_traits<system_clock::time_point>::from_text(std::string_view(r.data, r.length)), now);
}

TEST(result_traits, bytea_both_formats) {
  const bytes expected{std::byte{0}, std::byte{'a'}, std::byte{0xff}, std::byte{'\\'}};
  EXPECT_EQ(result_traits<bytes>::from_text("\\x0061ff5c"), expected);
  EXPECT_EQ(result_traits<bytes>::from_text("\\000a\\377\\\\"), expected);
  EXPECT_THROW((void)result_traits<bytes>::from_text("\\x0"), conversion_error);
  EXPECT_THROW((void)result_traits<bytes>::from_text("\\xzz"), conversion_error);
}

TEST(result_traits, arrays) {
  EXPECT_EQ(result_traits<std::vector<int>>::from_text("{1,2,3}"), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(result_traits<std::vector<int>>::from_text("{}"), std::vector<int>{});
  EXPECT_EQ(result_traits<std::vector<std::string>>::from_text(R"({"a,b","c\"d","NULL",e})"),
            (std::vector<std::string>{"a,b", "c\"d", "NULL", "e"}));
  EXPECT_EQ(result_traits<std::vector<std::optional<int>>>::from_text("{1,NULL}"),
            (std::vector<std::optional<int>>{1, std::nullopt}));
  EXPECT_THROW((void)result_traits<std::vector<int>>::from_text("{1,NULL}"), conversion_error);
  EXPECT_THROW((void)result_traits<std::vector<int>>::from_text("{{1},{2}}"), conversion_error);
  EXPECT_THROW((void)result_traits<std::vector<int>>::from_text("1,2"), conversion_error);
}

TEST(result_traits, optional) {
  EXPECT_EQ(result_traits<std::optional<int>>::from_text("5"), 5);
  EXPECT_EQ(result_traits<std::optional<int>>::null(), std::nullopt);
}
