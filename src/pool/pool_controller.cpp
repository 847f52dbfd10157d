#include "pool_controller.hpp"

#include <algorithm>
#include <cmath>

namespace steadypg::internal {

std::string_view to_string(scaling_reason r) noexcept {
  switch (r) {
    case scaling_reason::waiters: return "waiters";
    case scaling_reason::idle: return "idle";
    case scaling_reason::server_cap: return "server_cap";
    case scaling_reason::overload: return "overload";
    case scaling_reason::recovery: return "recovery";
  }
  return "unknown";
}

namespace {

using sample = controller_state::sample;

void push(std::vector<sample>& window, sample s, int keep) {
  window.push_back(s);
  const auto limit = static_cast<std::size_t>(std::max(keep, 1));
  if (window.size() > limit) window.erase(window.begin(), window.begin() + static_cast<long>(window.size() - limit));
}

// Mean over a window of each tick's mean latency, in milliseconds; 0 when it holds no sample.
// Ticks weigh the same whatever their traffic: a stalled tick (few holds, each long) must not
// be drowned by the thousands of fast holds of the healthy tick before it.
double mean_ms(const std::vector<sample>& window) {
  double sum = 0;
  int ticks = 0;
  for (const auto& s : window) {
    if (s.count == 0) continue;
    sum += std::chrono::duration<double, std::milli>(s.sum).count() / static_cast<double>(s.count);
    ++ticks;
  }
  return ticks == 0 ? 0.0 : sum / ticks;
}

bool elapsed(const std::optional<std::chrono::steady_clock::time_point>& since,
             std::chrono::steady_clock::time_point now, std::chrono::nanoseconds at_least) {
  return !since || now - *since >= at_least;
}

}  // namespace

controller_decision step(const controller_settings& cfg, controller_state& st, const pool_signals& sig,
                         std::chrono::steady_clock::time_point now) {
  controller_decision d;
  // Bounds: never above max_size nor what the server can take; never below min_size (and at
  // least one connection, or no caller could ever be served), unless the server cap is lower.
  std::size_t ceiling = cfg.max_size;
  if (sig.server_cap) ceiling = std::min(ceiling, *sig.server_cap);
  ceiling = std::max<std::size_t>(ceiling, 1);
  const std::size_t floor = std::min(std::max<std::size_t>(cfg.min_size, 1), ceiling);
  d.ceiling = ceiling;
  if (st.target == 0) st.target = floor;  // observe mode: whatever the pool holds

  // Overload: latency (hold times, counting the age of holds still out) well above its
  // healthy long-term level, or too many acquire timeouts.
  const sample now_sample{sig.latency_sum, sig.latency_samples};
  push(st.short_window, now_sample, cfg.short_ticks);
  st.short_latency_ms = mean_ms(st.short_window);
  const double floor_ms = std::chrono::duration<double, std::milli>(cfg.latency_floor).count();
  const double long_ms = std::max(mean_ms(st.long_window), floor_ms);
  st.long_latency_ms = long_ms;
  const bool slow = st.short_latency_ms > cfg.overload_ratio * long_ms;
  const std::uint64_t tries = sig.acquires + sig.timeouts;
  const bool timing_out =
      sig.timeouts > 0 && static_cast<double>(sig.timeouts) > cfg.timeout_rate * static_cast<double>(tries);
  st.overloaded = slow || timing_out;
  d.overloaded = st.overloaded;
  // This tick alone already that slow: the short-term mean may not have caught up yet, but a
  // pool does not grow into a latency jump (more connections would deepen the server's queue).
  const double tick_ms = mean_ms(std::vector<sample>{now_sample});
  const bool jumping = tick_ms > cfg.overload_ratio * long_ms;
  // The long-term level learns only from healthy ticks, so that it keeps describing normal.
  if (!st.overloaded && now_sample.count > 0) push(st.long_window, now_sample, cfg.long_ticks);

  // Admission: set to the current load when overload starts, then down by 10 % a tick; back up
  // by one a tick once healthy, lifted when it reaches the target.
  if (st.overloaded) {
    const std::size_t before = st.admission;
    st.admission = before == 0 ? std::max<std::size_t>(sig.active, 1)
                               : std::max<std::size_t>(static_cast<std::size_t>(std::floor(static_cast<double>(before) *
                                                                                           cfg.admission_decrease)),
                                                       1);
    if (st.admission != before) d.events.push_back({false, scaling_reason::overload, true, before, st.admission});
  } else if (st.admission != 0) {
    const std::size_t before = st.admission;
    st.admission = before + 1 >= st.target ? 0 : before + 1;
    d.events.push_back({true, scaling_reason::recovery, true, before, st.admission});
  }

  // Sizing.
  bool cut_to_cap = false;
  if (st.target > ceiling) {
    d.events.push_back({false, scaling_reason::server_cap, false, st.target, ceiling});
    st.target = ceiling;
    cut_to_cap = true;
  }
  const double utilisation = static_cast<double>(sig.active) / static_cast<double>(std::max<std::size_t>(st.target, 1));
  const bool busy = utilisation >= cfg.grow_utilisation && (sig.wait_p95 >= cfg.grow_wait_p95 || sig.waiting > 0);
  const bool quiet = utilisation <= cfg.shrink_utilisation && sig.waiting == 0;
  st.busy_streak = busy ? st.busy_streak + 1 : 0;
  st.idle_streak = quiet ? st.idle_streak + 1 : 0;
  if (busy && st.busy_streak >= cfg.grow_ticks && !st.overloaded && !jumping && st.admission == 0 &&
      st.target < ceiling && elapsed(st.last_shrink, now, cfg.no_grow_after_shrink)) {
    const std::size_t step_by =
        std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(0.25 * static_cast<double>(st.target))));
    const std::size_t to = std::min(ceiling, st.target + step_by);
    d.events.push_back({true, scaling_reason::waiters, false, st.target, to});
    st.target = to;
    st.last_grow = now;
    st.busy_streak = 0;
  } else if (quiet && st.idle_streak >= cfg.shrink_ticks && st.target > floor &&
             elapsed(st.last_grow, now, cfg.no_shrink_after_grow)) {
    // One connection a tick; a target above what is open drops to it first.
    const std::size_t base = std::min(st.target, std::max<std::size_t>(sig.open, 1));
    const std::size_t to = std::max(floor, base - 1);
    if (to < st.target) {
      d.events.push_back({false, scaling_reason::idle, false, st.target, to});
      st.target = to;
      st.last_shrink = now;
    }
  }

  // Reserve: a caller waited reserve_timeout, and the server is not the bottleneck.
  if (cfg.reserve_size > 0 && !st.overloaded && st.admission == 0 && sig.waiting > 0 &&
      sig.oldest_wait >= cfg.reserve_timeout && st.target < ceiling) {
    d.reserve = std::min(cfg.reserve_size, ceiling - st.target);
  }
  const std::size_t allowed = st.target + d.reserve;
  if (sig.open > allowed) d.close_idle = cut_to_cap ? sig.open - allowed : 1;
  d.target = st.target;
  d.admission = st.admission;
  return d;
}

}  // namespace steadypg::internal
