#pragma once

// The ticker of an adaptive (or observing) pool: once per scale_interval it gathers the
// signals, runs the pure controller (pool_controller.hpp) and applies its decision. Private;
// include basic_pool_impl.hpp.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "pool_controller.hpp"
#include "pool_state.hpp"

namespace steadypg {

template <typename Conn>
struct basic_pool<Conn>::state::autoscale_memory {
  internal::controller_settings cfg;
  internal::controller_state ctl;
  std::uint64_t acquires = 0, timeouts = 0, releases = 0, held_ns = 0;
  std::optional<std::size_t> server_cap;
  std::optional<clock::time_point> cap_checked;
};

template <typename Conn>
void basic_pool<Conn>::state::start_controller() {
  if (m_options.mode == pool_mode::fixed) return;
  auto memory = std::make_shared<autoscale_memory>();
  auto& cfg = memory->cfg;
  const auto& o = m_options;
  cfg.min_size = o.min_size;
  cfg.max_size = o.max_size;
  const auto ticks = [&](std::chrono::milliseconds d) {
    return static_cast<int>(
        std::max<long long>(1, (d + o.scale_interval - std::chrono::milliseconds{1}) / o.scale_interval));
  };
  cfg.shrink_ticks = ticks(o.scale_down_after);
  cfg.no_shrink_after_grow = o.scale_down_hold;
  cfg.no_grow_after_shrink = o.scale_up_hold;
  cfg.short_ticks = ticks(std::chrono::seconds{3});
  cfg.long_ticks = ticks(std::chrono::seconds{30});
  cfg.reserve_size = o.reserve_size;
  cfg.reserve_timeout = o.reserve_timeout;
  m_controller = std::thread([this, memory] {
    std::unique_lock lk(m_mutex);
    while (!m_stop_maintenance) {
      m_maintenance_wake.wait_for(lk, m_options.scale_interval, [this] { return m_stop_maintenance; });
      if (m_stop_maintenance) break;
      lk.unlock();
      try {
        controller_tick(*memory, now());
      } catch (...) {  // a tick that fails (no memory) leaves the limits as they were
      }
      lk.lock();
    }
  });
}

template <typename Conn>
void basic_pool<Conn>::state::controller_tick(autoscale_memory& m, clock::time_point t) {
  if (m_closed.load()) return;
  if (!m.cap_checked || t - *m.cap_checked >= m_options.server_cap_refresh) {
    m.cap_checked = t;
    refresh_server_cap(t);
  }
  internal::pool_signals sig;
  std::array<std::uint64_t, 16> buckets{};
  std::uint64_t acquires = 0, releases = 0, held = 0;
  std::chrono::nanoseconds inflight{};
  std::uint64_t inflight_n = 0;
  {
    std::lock_guard lk(m_mutex);
    std::size_t idle = 0;
    count_states(sig.active, idle);
    sig.open = sig.active + idle;
    sig.waiting = m_waiting.load();
    sig.connecting = m_connecting;
    if (m_wait_head) sig.oldest_wait = t - m_wait_head->since;
    buckets = m_wait_buckets;
    m_wait_buckets = {};
    acquires = m_retired_acquires;
    releases = m_retired_releases;
    held = m_retired_held_ns;
    sig.timeouts = m_counters.acquire_timeouts - m.timeouts;
    m.timeouts = m_counters.acquire_timeouts;
    if (m_cap_known) sig.server_cap = m_measured_cap;
    m.server_cap = sig.server_cap;
    const std::size_t hw = m_high_water.load();
    for (std::size_t i = 0; i < hw; ++i) {
      slot& s = m_slots[i];
      acquires += s.acquires.load(std::memory_order_relaxed);
      releases += s.releases.load(std::memory_order_relaxed);
      held += static_cast<std::uint64_t>(s.held_ns.load(std::memory_order_relaxed));
      if (s.status.load(std::memory_order_relaxed) == k_in_use) {
        const auto age = t - at(s.acquired_at.load(std::memory_order_relaxed));
        if (age > clock::duration::zero()) inflight += std::chrono::duration_cast<std::chrono::nanoseconds>(age);
        ++inflight_n;
      }
    }
  }
  sig.acquires = acquires >= m.acquires ? acquires - m.acquires : 0;
  const std::uint64_t done = releases >= m.releases ? releases - m.releases : 0;
  const std::uint64_t done_ns = held >= m.held_ns ? held - m.held_ns : 0;
  m.acquires = acquires;
  m.releases = releases;
  m.held_ns = held;
  sig.latency_sum = std::chrono::nanoseconds{static_cast<std::int64_t>(done_ns)} + inflight;
  sig.latency_samples = done + inflight_n;
  // p95 of this tick's acquire waits; acquires that never waited count as zero.
  std::uint64_t waited = 0;
  for (auto b : buckets) waited += b;
  const std::uint64_t total = std::max(sig.acquires, waited);
  if (total > 0) {
    const auto rank = static_cast<std::uint64_t>(std::ceil(0.95 * static_cast<double>(total)));
    std::uint64_t seen = total - waited;
    for (std::size_t i = 0; i < buckets.size() && seen < rank; ++i) {
      seen += buckets[i];
      if (seen >= rank) {
        const double ms = i < k_wait_bounds_ms.size() ? k_wait_bounds_ms[i] : 60000.0;
        sig.wait_p95 =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double, std::milli>(ms));
      }
    }
  }

  const auto d = internal::step(m.cfg, m.ctl, sig, t);
  const bool apply = m_options.mode == pool_mode::adaptive;
  if (apply) {
    m_open_limit.store(d.target + d.reserve);
    m_queue_limit.store(
        d.admission == 0 ? 0 : (m_options.overload_max_waiters != 0 ? m_options.overload_max_waiters : d.admission));
    apply_admission(d.admission);
  }
  std::size_t closed = 0;
  if (apply && d.close_idle > 0) closed = close_idle_for_scale_down(d.close_idle);
  {
    std::lock_guard lk(m_mutex);
    m_view = {d.target, d.admission, m.server_cap.value_or(0), d.overloaded};
    if (apply) nudge_waiter();  // a higher limit may let a queued caller open a connection
  }
  (void)closed;
  if (observer* o = obs()) {
    for (const auto& e : d.events) {
      pool_scaling_report r;
      r.direction = e.up ? "up" : "down";
      r.reason = internal::to_string(e.reason);
      r.what = e.admission ? "admission" : "target";
      r.from = e.from;
      r.to = e.to;
      r.applied = apply;
      r.short_latency_ms = m.ctl.short_latency_ms;
      r.long_latency_ms = m.ctl.long_latency_ms;
      r.active = sig.active;
      r.waiting = sig.waiting;
      r.server_cap = m.server_cap.value_or(0);
      o->on_pool_scaling(r);
    }
  }
}

// Measures the server cap on an idle pooled connection, or, when every one is busy, on a
// connection opened for the purpose and closed at once.
template <typename Conn>
void basic_pool<Conn>::state::refresh_server_cap(clock::time_point t) {
  slot* s = nullptr;
  const std::size_t hw = m_high_water.load();
  for (std::size_t i = 0; i < hw && s == nullptr; ++i) {
    if (claim(m_slots[i], k_idle, k_in_use)) s = &m_slots[i];
  }
  std::optional<server_capacity> cap;
  constexpr std::chrono::milliseconds k_timeout{2000};
  if (s != nullptr) {
    s->acquired_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    cap = m_factory->capacity(*s->conn, k_timeout);
  } else {
    std::exception_ptr failure;
    auto c = open(k_timeout, failure);
    if (!c) return;
    cap = m_factory->capacity(*c, k_timeout);
    // The temporary connection counts as one of ours below.
  }
  std::size_t ours = 0;
  {
    std::lock_guard lk(m_mutex);
    ours = open_slots() + m_connecting + (s == nullptr ? 1 : 0);
  }
  if (s != nullptr) {
    if (m_factory->quick_check(*s->conn)) publish(*s, now());
    else close_owned(*s, close_reason::broken);
  }
  if (!cap) return;
  const std::size_t others = cap->client_sessions > ours ? cap->client_sessions - ours : 0;
  const std::size_t taken = cap->reserved + others + m_options.server_cap_margin;
  const std::size_t value = cap->max_connections > taken ? cap->max_connections - taken : 0;
  std::lock_guard lk(m_mutex);
  m_view.server_cap = value;
  m_measured_cap = value;
  m_cap_known = true;
}

// Holds back idle connections so that at most `admission` are usable (0: no limit).
template <typename Conn>
void basic_pool<Conn>::state::apply_admission(std::size_t admission) {
  m_admission_open.store(admission == 0 ? static_cast<std::size_t>(-1) : admission);
  std::size_t open = 0;
  {
    std::lock_guard lk(m_mutex);
    open = open_slots();
  }
  const std::size_t parked = m_parked.load();
  const std::size_t usable = open - std::min(open, parked);
  const std::size_t hw = m_high_water.load();
  if (admission != 0 && usable > admission) {
    std::size_t excess = usable - admission;
    for (std::size_t i = 0; i < hw && excess > 0; ++i) {
      if (claim(m_slots[i], k_idle, k_parked)) {
        m_parked.fetch_add(1);
        --excess;
      }
    }
    m_park_debt.store(excess);
    return;
  }
  m_park_debt.store(0);
  std::size_t room = admission == 0 ? parked : std::min(parked, admission - usable);
  bool freed = false;
  for (std::size_t i = 0; i < hw && room > 0; ++i) {
    if (claim(m_slots[i], k_parked, k_idle)) {
      m_parked.fetch_sub(1);
      --room;
      freed = true;
    }
  }
  if (freed && m_waiting.load() > 0) {
    std::lock_guard lk(m_mutex);
    if (m_wait_head) m_wait_head->cv.notify_one();  // first in line takes it (and checks it)
  }
}

template <typename Conn>
std::size_t basic_pool<Conn>::state::close_idle_for_scale_down(std::size_t n) {
  std::size_t closed = 0;
  const std::size_t hw = m_high_water.load();
  for (std::size_t i = hw; i-- > 0 && closed < n;) {
    if (claim(m_slots[i], k_idle, k_in_use)) {
      close_owned(m_slots[i], close_reason::idle_scale_down);
      ++closed;
    }
  }
  return closed;
}

template <typename Conn>
[[noreturn]] void basic_pool<Conn>::state::reject_overloaded(lock& lk) {
  ++m_counters.overload_rejections;
  const auto msg = fmt::format(
      "pool overloaded: the server is slow (admission limit {}, {} callers already waiting); rejected without "
      "waiting, nothing was sent",
      m_view.admission, m_waiting.load());
  lk.unlock();
  if (observer* o = obs()) o->on_pool_overloaded();
  throw pool_overloaded(msg, failure_kind::timeout, outcome::not_sent);
}

}  // namespace steadypg
