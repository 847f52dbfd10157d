#include "steadypg/pool.hpp"

#include "check.hpp"

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
  using internal::check_range;
  namespace ranges = internal::ranges;
  check_range("pool_options.max_size", max_size, ranges::pool_max);
  check_range("pool_options.min_size", min_size, {0, static_cast<long long>(max_size)}, " (≤ max_size)");
  check_range("pool_options.acquire_timeout", acquire_timeout, ranges::acquire_timeout);
  check_range("pool_options.max_waiters", max_waiters, {1, 1000000});
  check_range("pool_options.connecting_limit", connecting_limit, {1, 10000});
  check_range("pool_options.idle_timeout", idle_timeout, {0, internal::no_max, " ms"}, " (0 never)");
  check_range("pool_options.max_lifetime", max_lifetime, {0, internal::no_max, " ms"}, " (0 never)");
  check_range("pool_options.lifetime_jitter", lifetime_jitter, 0.0, 0.5);
  check_range("pool_options.quick_check_after_idle", quick_check_after_idle, {0, internal::no_max, " ms"});
  check_range("pool_options.validate_after_idle", validate_after_idle, {0, internal::no_max, " ms"});
  check_range("pool_options.validation_timeout", validation_timeout, {1, 600000, " ms"});
  check_range("pool_options.leak_detection_threshold", leak_detection_threshold, {0, internal::no_max, " ms"},
              " (0 off)");
  check_range("pool_options.health_check_interval", health_check_interval, {1, internal::no_max, " ms"});
}

}  // namespace steadypg
