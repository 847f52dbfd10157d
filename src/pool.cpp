#include "steadypg/pool.hpp"

#include <fmt/format.h>

namespace steadypg {

std::string_view to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::broken: return "broken";
    case close_reason::idle: return "idle";
    case close_reason::lifetime: return "lifetime";
    case close_reason::reset_failed: return "reset_failed";
    case close_reason::pool_closed: return "pool_closed";
  }
  return "unknown";
}

void pool_options::validate() const {
  auto fail = [](std::string_view field, auto value, std::string_view range) {
    throw config_error(fmt::format("pool_options.{} = {} is out of range: expected {}", field, value, range));
  };
  if (max_size < 1 || max_size > 10000) fail("max_size", max_size, "1–10000");
  if (min_size > max_size) fail("min_size", min_size, fmt::format("0–max_size ({})", max_size));
  if (acquire_timeout.count() <= 0) fail("acquire_timeout", acquire_timeout.count(), "> 0 ms");
  if (connecting_limit < 1) fail("connecting_limit", connecting_limit, "≥ 1");
  if (idle_timeout.count() < 0) fail("idle_timeout", idle_timeout.count(), "≥ 0 ms (0 never)");
  if (max_lifetime.count() < 0) fail("max_lifetime", max_lifetime.count(), "≥ 0 ms (0 never)");
  if (!(lifetime_jitter >= 0.0 && lifetime_jitter <= 0.5)) fail("lifetime_jitter", lifetime_jitter, "0–0.5");
  if (quick_check_after_idle.count() < 0) fail("quick_check_after_idle", quick_check_after_idle.count(), "≥ 0 ms");
  if (validate_after_idle.count() < 0) fail("validate_after_idle", validate_after_idle.count(), "≥ 0 ms");
  if (validation_timeout.count() <= 0) fail("validation_timeout", validation_timeout.count(), "> 0 ms");
  if (leak_detection_threshold.count() < 0) {
    fail("leak_detection_threshold", leak_detection_threshold.count(), "≥ 0 ms (0 off)");
  }
  if (health_check_interval.count() <= 0) fail("health_check_interval", health_check_interval.count(), "> 0 ms");
  if (connect_timeout.count() <= 0) fail("connect_timeout", connect_timeout.count(), "> 0 ms");
}

}  // namespace steadypg
