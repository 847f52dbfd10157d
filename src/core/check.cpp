#include "check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "steadypg/error.hpp"

namespace steadypg::internal {

std::string describe(int_range r) {
  if (r.max == no_max) return fmt::format("an integer ≥ {}{}", r.min, r.unit);
  return fmt::format("an integer in {}–{}{}", r.min, r.max, r.unit);
}

void check_range(std::string_view field, long long value, int_range r, std::string_view note) {
  if (value < r.min || value > r.max) {
    throw config_error(
        fmt::format("{} = {}{} is out of range: expected {}{}", field, value, r.unit, describe(r), note));
  }
}

void check_range(std::string_view field, std::size_t value, int_range r, std::string_view note) {
  const auto v = value > static_cast<std::size_t>(no_max) ? no_max : static_cast<long long>(value);
  check_range(field, v, r, note);
}

void check_range(std::string_view field, int value, int_range r, std::string_view note) {
  check_range(field, static_cast<long long>(value), r, note);
}

void check_range(std::string_view field, std::chrono::milliseconds value, int_range r, std::string_view note) {
  check_range(field, static_cast<long long>(value.count()), r, note);
}

void check_range(std::string_view field, double value, double min, double max, std::string_view note) {
  if (!(value >= min && value <= max)) {  // NaN fails too
    throw config_error(
        fmt::format("{} = {} is out of range: expected a number in {}–{}{}", field, value, min, max, note));
  }
}

void out_of_range(std::string_view field, std::string_view value, std::string_view rule) {
  throw config_error(fmt::format("{} = {} is out of range: {}", field, value, rule));
}

long long parse_int(std::string_view name, const std::string& value, int_range r) {
  // Plain decimal digits only: from_chars alone would take "-0" for a minimum of 0.
  long long v = 0;
  const char* end = value.data() + value.size();
  const bool digits =
      !value.empty() && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  const auto res = std::from_chars(value.data(), end, v);
  const bool ok = digits && res.ec == std::errc{} && res.ptr == end;
  if (!ok || v < r.min || v > r.max) {
    throw config_error(fmt::format("{}=\"{}\" is invalid: expected {}", name, value, describe(r)));
  }
  return v;
}

bool parse_bool(std::string_view name, const std::string& value) {
  if (value == "true" || value == "1" || value == "TRUE" || value == "True") return true;
  if (value == "false" || value == "0" || value == "FALSE" || value == "False") return false;
  throw config_error(fmt::format("{}=\"{}\" is invalid: expected true, false, 1 or 0", name, value));
}

}  // namespace steadypg::internal
