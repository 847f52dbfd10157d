#pragma once

// The pool's maintenance pass, its thread, the statistics snapshot and shutdown. Private;
// include basic_pool_impl.hpp.

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pool_state.hpp"

namespace steadypg {

template <typename Conn>
void basic_pool<Conn>::state::maintain_once() {
  if (m_closed.load()) return;
  const auto t = now();
  close_expired_idle(t);
  report_leaks(t);
  keep_min_size();
}

// Closes idle connections that expired or idled too long (keeping min_size open).
template <typename Conn>
void basic_pool<Conn>::state::close_expired_idle(clock::time_point t) {
  std::size_t open_count;
  {
    std::lock_guard lk(m_mutex);
    open_count = open_slots();
  }
  const std::size_t hw = m_high_water.load();
  for (std::size_t i = 0; i < hw; ++i) {
    slot& s = m_slots[i];
    if (s.status.load(std::memory_order_acquire) != k_idle) continue;
    const bool old = t >= at(s.expires.load(std::memory_order_relaxed));
    const bool idle_long = m_options.idle_timeout.count() > 0 &&
                           t - at(s.released_at.load(std::memory_order_relaxed)) >= m_options.idle_timeout &&
                           open_count > m_options.min_size;
    if ((old || idle_long) && claim(s, k_idle, k_in_use)) {
      close_owned(s, old ? close_reason::lifetime : close_reason::idle);
      --open_count;
    }
  }
}

// Reports connections held longer than leak_detection_threshold, once per hold.
template <typename Conn>
void basic_pool<Conn>::state::report_leaks(clock::time_point t) {
  observer* o = obs();
  if (m_options.leak_detection_threshold.count() <= 0 || o == nullptr) return;
  const std::size_t hw = m_high_water.load();
  for (std::size_t i = 0; i < hw; ++i) {
    slot& s = m_slots[i];
    if (s.status.load(std::memory_order_acquire) != k_in_use) continue;
    const auto held = t - at(s.acquired_at.load(std::memory_order_relaxed));
    if (held >= m_options.leak_detection_threshold && !s.leak_reported.exchange(true)) {
      const char* ctx = s.context.load(std::memory_order_relaxed);
      o->on_pool_leak_suspected({s.id.load(std::memory_order_relaxed),
                                 std::chrono::duration_cast<std::chrono::nanoseconds>(held),
                                 s.acquirer.load(std::memory_order_relaxed), ctx ? ctx : ""});
    }
  }
}

// Opens connections until min_size are open, connecting_limit at a time, until a connect fails.
template <typename Conn>
void basic_pool<Conn>::state::keep_min_size() {
  while (true) {
    slot* s = nullptr;
    {
      std::lock_guard lk(m_mutex);
      if (m_closed.load() || m_stop_maintenance || m_login_refused.load(std::memory_order_relaxed) ||
          m_connecting >= m_options.connecting_limit || open_slots() + m_connecting >= m_options.min_size) {
        break;
      }
      s = claim_empty();
      if (s == nullptr) break;
      ++m_connecting;
    }
    std::exception_ptr failure;
    auto c = open(std::chrono::milliseconds::max(), failure);
    std::lock_guard lk(m_mutex);
    --m_connecting;
    if (!c) {
      ++m_counters.connect_failures;
      s->status.store(k_empty, std::memory_order_release);
      break;
    }
    place_new(*s, std::move(c));
  }
}

template <typename Conn>
void basic_pool<Conn>::state::start_maintenance() {
  m_maintenance = std::thread([this] {
    std::unique_lock lk(m_mutex);
    while (!m_stop_maintenance) {
      lk.unlock();
      maintain_once();
      lk.lock();
      m_maintenance_wake.wait_for(lk, tick(), [this] { return m_stop_maintenance; });
    }
  });
}

template <typename Conn>
std::chrono::milliseconds basic_pool<Conn>::state::tick() const {
  auto t = m_options.health_check_interval;
  if (m_options.leak_detection_threshold.count() > 0) {
    t = std::min(t, std::max(m_options.leak_detection_threshold / 2, std::chrono::milliseconds{10}));
  }
  return t;
}

template <typename Conn>
pool_stats basic_pool<Conn>::state::snapshot() {
  std::lock_guard lk(m_mutex);
  pool_stats s = m_counters;
  s.acquire_count = m_retired_acquires;
  s.release_count = m_retired_releases;
  const std::size_t hw = m_high_water.load();
  for (std::size_t i = 0; i < hw; ++i) {
    s.acquire_count += m_slots[i].acquires.load(std::memory_order_relaxed);
    s.release_count += m_slots[i].releases.load(std::memory_order_relaxed);
  }
  count_states(s.active, s.idle);
  s.connecting = m_connecting;
  s.total = s.active + s.idle;
  s.waiting = m_waiting.load();
  s.max = m_options.max_size;
  s.mode = m_options.mode;
  s.parked = m_parked.load();
  if (m_options.mode == pool_mode::fixed) {
    s.target_size = m_options.max_size;
  } else {
    s.target_size = m_view.target != 0 ? m_view.target : std::max<std::size_t>(m_options.min_size, 1);
    s.admission_limit = m_view.admission;
    s.server_cap = m_view.server_cap;
    s.overloaded = m_view.overloaded;
  }
  return s;
}

// Called once, by ~basic_pool. Deletes the state unless connections are still out (see the
// ownership note above basic_pool::state).
template <typename Conn>
void basic_pool<Conn>::state::shutdown() {
  {
    std::lock_guard lk(m_mutex);
    m_stop_maintenance = true;
  }
  m_maintenance_wake.notify_all();
  if (m_maintenance.joinable()) m_maintenance.join();
  if (m_controller.joinable()) m_controller.join();
  m_closed.store(true, std::memory_order_seq_cst);
  std::unique_lock lk(m_mutex);
  observer* const ob = obs();
  m_observer.store(nullptr, std::memory_order_release);  // connections returned later report to no one
  for (waiter* w = m_wait_head; w; w = w->next) w->cv.notify_one();
  m_drained.wait(lk, [this] { return m_waiting.load() == 0 && m_connecting == 0; });
  // Close what is idle; what is out is closed when it comes back.
  std::vector<std::unique_ptr<Conn>> victims;
  const std::size_t hw = m_high_water.load();
  std::size_t out = 0;
  for (std::size_t i = 0; i < hw; ++i) {
    slot& s = m_slots[i];
    const bool parked = claim(s, k_parked, k_in_use);
    if (parked) m_parked.fetch_sub(1, std::memory_order_relaxed);
    if (parked || claim(s, k_idle, k_in_use)) {
      victims.push_back(std::move(s.conn));
      ++m_counters.closed_pool_closed;
      s.status.store(k_empty, std::memory_order_release);
    } else if (s.status.load() == k_in_use) {
      ++out;
    }
  }
  m_shut_down = true;
  m_outstanding_after_close = out;
  const bool last = out == 0;
  const std::size_t closed_now = victims.size();
  // From here on a returning handle may delete the state: touch no member after unlocking.
  lk.unlock();
  victims.clear();
  if (ob) {
    for (std::size_t i = 0; i < closed_now; ++i) ob->on_pool_connection_closed(close_reason::pool_closed);
  }
  if (last) delete this;
}

}  // namespace steadypg
