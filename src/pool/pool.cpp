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
    case close_reason::idle_scale_down: return "idle_scale_down";
  }
  return "unknown";
}

std::string_view to_string(pool_mode m) noexcept {
  switch (m) {
    case pool_mode::fixed: return "fixed";
    case pool_mode::adaptive: return "adaptive";
    case pool_mode::observe: return "observe";
  }
  return "unknown";
}

std::optional<pool_mode> parse_pool_mode(std::string_view s) noexcept {
  if (s == "fixed") return pool_mode::fixed;
  if (s == "adaptive") return pool_mode::adaptive;
  if (s == "observe") return pool_mode::observe;
  return std::nullopt;
}

pool_stats& pool_stats::operator+=(const pool_stats& o) noexcept {
  active += o.active;
  idle += o.idle;
  total += o.total;
  connecting += o.connecting;
  waiting += o.waiting;
  max += o.max;
  acquire_count += o.acquire_count;
  release_count += o.release_count;
  acquire_wait_total += o.acquire_wait_total;
  acquires_waited += o.acquires_waited;
  acquire_timeouts += o.acquire_timeouts;
  rejections += o.rejections;
  connections_created += o.connections_created;
  connect_failures += o.connect_failures;
  closed_broken += o.closed_broken;
  closed_idle += o.closed_idle;
  closed_lifetime += o.closed_lifetime;
  closed_reset_failed += o.closed_reset_failed;
  closed_pool_closed += o.closed_pool_closed;
  closed_scale_down += o.closed_scale_down;
  overload_rejections += o.overload_rejections;
  mode = o.mode;
  target_size += o.target_size;
  admission_limit += o.admission_limit;
  server_cap += o.server_cap;
  parked += o.parked;
  overloaded = overloaded || o.overloaded;
  return *this;
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
  check_range("pool_options.scale_interval", scale_interval, {10, 60000, " ms"});
  check_range("pool_options.scale_down_after", scale_down_after, {scale_interval.count(), internal::no_max, " ms"},
              " (≥ scale_interval)");
  check_range("pool_options.scale_down_hold", scale_down_hold, {0, internal::no_max, " ms"});
  check_range("pool_options.scale_up_hold", scale_up_hold, {0, internal::no_max, " ms"});
  check_range("pool_options.reserve_size", reserve_size, {0, static_cast<long long>(max_size)}, " (≤ max_size)");
  check_range("pool_options.reserve_timeout", reserve_timeout, {1, internal::no_max, " ms"});
  check_range("pool_options.server_cap_margin", server_cap_margin, {0, 10000});
  check_range("pool_options.server_cap_refresh", server_cap_refresh, {100, internal::no_max, " ms"});
  check_range("pool_options.overload_max_waiters", overload_max_waiters, {0, 1000000}, " (0: the admission limit)");
}

}  // namespace steadypg
