#include "steadypg/route.hpp"

#include <fmt/format.h>

#include <charconv>

namespace steadypg {

std::string_view to_string(route r) noexcept {
  switch (r) {
    case route::primary: return "primary";
    case route::read_write: return "read_write";
    case route::prefer_replica: return "prefer_replica";
    case route::replica: return "replica";
    case route::any: return "any";
  }
  return "primary";
}

std::optional<route> parse_route(std::string_view text) noexcept {
  for (route r : {route::primary, route::read_write, route::prefer_replica, route::replica, route::any}) {
    if (text == to_string(r)) return r;
  }
  return std::nullopt;
}

std::string write_token::text() const { return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xffffffffU); }

std::optional<write_token> write_token::parse(std::string_view text) noexcept {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= text.size()) return std::nullopt;
  std::uint32_t hi = 0, lo = 0;
  const auto* end = text.data() + slash;
  auto r1 = std::from_chars(text.data(), end, hi, 16);
  if (r1.ec != std::errc{} || r1.ptr != end) return std::nullopt;
  const auto* end2 = text.data() + text.size();
  auto r2 = std::from_chars(end + 1, end2, lo, 16);
  if (r2.ec != std::errc{} || r2.ptr != end2) return std::nullopt;
  return write_token{(static_cast<std::uint64_t>(hi) << 32) | lo};
}

}  // namespace steadypg
