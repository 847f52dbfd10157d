#pragma once

// The pool's slots and shared state, and the acquire and release paths. Private; include
// basic_pool_impl.hpp, which completes basic_pool<Conn>.

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "steadypg/pool.hpp"

namespace steadypg {

namespace internal {
// Each connection lives in a slot; a slot's status word is the only thing the hot path
// touches: acquire claims an idle slot with one compare-exchange (trying the slot this thread
// used last first), release publishes it with one store. The mutex is taken only to wait,
// to hand a connection to a waiter, to open or close connections, and for maintenance.
// k_parked: an idle connection held back by an adaptive pool's admission limit (nobody may
// claim it until the controller lets it go).
enum slot_status : int { k_empty = 0, k_idle = 1, k_in_use = 2, k_reserved = 3, k_parked = 4 };
}  // namespace internal

template <typename Conn>
struct alignas(64) basic_pool<Conn>::slot {
  using enum internal::slot_status;
  std::atomic<int> status{k_empty};
  state* owner = nullptr;      // the pool's state; set once, before any use
  std::unique_ptr<Conn> conn;  // owned by whoever holds the slot
  std::atomic<std::uint64_t> id{0};
  std::atomic<clock::rep> expires{clock::time_point::max().time_since_epoch().count()};
  std::atomic<clock::rep> released_at{0};  // read by maintenance without claiming
  std::atomic<clock::rep> acquired_at{0};  // read by leak detection
  std::atomic<std::thread::id> acquirer{};
  std::atomic<const char*> context{nullptr};
  std::atomic<bool> leak_reported{false};
  std::atomic<std::uint64_t> acquires{0};  // one writer at a time: the holder
  std::atomic<std::uint64_t> releases{0};
  std::atomic<std::int64_t> held_ns{0};  // summed hold time, one writer at a time: the holder
};

// Ownership of the state. The pool object and the handles still out share it, yet it is not
// reference-counted: a refcount (a shared_ptr in each handle) would add an atomic increment
// and decrement to every acquire and release, on one cache line that all threads share,
// where the hot path is meant to be one compare-exchange and one store on the slot's own
// line (BM_acquire_release and BM_contended in bench/pool_bench.cpp measure it). Instead the
// state is created once by the pool's constructor and deleted exactly once, by whichever of
// these comes last:
//  - ~basic_pool, in shutdown(): with no connection out it deletes the state itself;
//    otherwise it records how many are out (m_outstanding_after_close) and sets m_shut_down;
//  - a handle returned after that, in release_after_close(): the one that brings
//    m_outstanding_after_close to 0 deletes the state.
// Invariant: both counts and the decision to delete are made under m_mutex, a slot is counted
// as out by shutdown() only while it is k_in_use, and neither path touches a member after it
// has unlocked and decided to delete. A handle returned after m_closed is set but before the
// count is taken empties its slot first, so it is not counted and does not delete.
template <typename Conn>
struct basic_pool<Conn>::state {
  using enum internal::slot_status;

  struct waiter {
    std::condition_variable cv;
    slot* handed = nullptr;
    bool connecting = false;
    bool linked = false;
    std::thread::id thread = std::this_thread::get_id();
    const char* context = nullptr;
    clock::time_point since{};
    waiter* prev = nullptr;
    waiter* next = nullptr;
  };
  using lock = std::unique_lock<std::mutex>;

  state(pool_options o, std::shared_ptr<pool_factory<Conn>> f, observer* ob, time_source t)
      : m_options(std::move(o)), m_factory(std::move(f)), m_observer(ob), m_now(std::move(t)) {
    m_options.validate();
    if (!m_factory) throw usage_error("basic_pool needs a connection factory");
    m_slots = std::make_unique<slot[]>(m_options.max_size);
    for (std::size_t i = 0; i < m_options.max_size; ++i) m_slots[i].owner = this;
    m_quick_check_after = to_clock(m_options.quick_check_after_idle);
    m_ping_after = m_options.validate_after_idle == std::chrono::milliseconds::max()
                       ? clock::duration::max()
                       : to_clock(m_options.validate_after_idle);
    m_open_limit.store(m_options.mode == pool_mode::adaptive ? std::max<std::size_t>(m_options.min_size, 1)
                                                             : m_options.max_size);
  }

  // Milliseconds in the clock's unit, saturating instead of overflowing.
  static clock::duration to_clock(std::chrono::milliseconds ms) {
    constexpr auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(clock::duration::max());
    return ms >= limit ? clock::duration::max() : std::chrono::duration_cast<clock::duration>(ms);
  }

  pool_options m_options;
  std::shared_ptr<pool_factory<Conn>> m_factory;
  std::atomic<observer*> m_observer;  // cleared at shutdown: the observer may die with the pool's owner
  time_source m_now;

  observer* obs() const noexcept { return m_observer.load(std::memory_order_acquire); }
  std::unique_ptr<slot[]> m_slots;
  clock::duration m_quick_check_after{};  // quick_check_after_idle and validate_after_idle, saturated
  clock::duration m_ping_after{};
  std::atomic<std::size_t> m_high_water{0};  // slots [0, m_high_water) have ever been used
  std::atomic<std::size_t> m_waiting{0};
  std::atomic<bool> m_closed{false};

  std::mutex m_mutex;  // guards everything below
  waiter* m_wait_head = nullptr;
  waiter* m_wait_tail = nullptr;
  std::size_t m_connecting = 0;
  std::uint64_t m_next_id = 0;
  std::size_t m_outstanding_after_close = 0;
  bool m_shut_down = false;
  pool_stats m_counters;  // slow-path counters; per-slot ones are summed
  std::uint64_t m_retired_acquires = 0;
  std::uint64_t m_retired_releases = 0;
  std::minstd_rand m_rng{std::random_device{}()};
  std::condition_variable m_drained;  // shutdown waits for waiters to leave

  std::condition_variable m_maintenance_wake;
  bool m_stop_maintenance = false;
  std::atomic<bool> m_login_refused{false};  // the last connect was a refused login
  std::thread m_maintenance;

  // Autoscaling (pool_autoscale.hpp). The hot path reads m_park_debt on release only; the
  // limits are read where connections are opened and callers queue, under the lock.
  std::atomic<std::size_t> m_open_limit{0};                                 // target + reserve (max_size when fixed)
  std::atomic<std::size_t> m_admission_open{static_cast<std::size_t>(-1)};  // unparked connections at most
  std::atomic<std::size_t> m_queue_limit{0};                                // waiters while overloaded; 0 none
  std::atomic<std::size_t> m_park_debt{0};                                  // returned connections to park
  std::atomic<std::size_t> m_parked{0};
  std::array<std::uint64_t, 16> m_wait_buckets{};  // this tick's waited acquires (lock held)
  std::uint64_t m_retired_held_ns = 0;             // lock held
  std::thread m_controller;
  struct controller_view {  // the controller's last decision, for stats (lock held)
    std::size_t target = 0, admission = 0, server_cap = 0;
    bool overloaded = false;
  } m_view;
  std::size_t m_measured_cap = 0;  // the last server cap measured (lock held)
  bool m_cap_known = false;
  struct autoscale_memory;
  void start_controller();
  void controller_tick(autoscale_memory& m, clock::time_point t);
  void refresh_server_cap(clock::time_point t);
  void apply_admission(std::size_t admission);
  std::size_t close_idle_for_scale_down(std::size_t n);
  [[noreturn]] void reject_overloaded(lock& lk);
  bool park_on_release(slot& s, clock::time_point t);

  clock::time_point now(clock::time_point fallback) const { return m_now ? m_now() : fallback; }
  clock::time_point now() const { return m_now ? m_now() : clock::now(); }
  static clock::time_point at(clock::rep r) { return clock::time_point(clock::duration(r)); }

  struct hint_t {
    const state* pool = nullptr;
    std::size_t index = 0;
  };
  static hint_t& hint() {
    thread_local hint_t h;
    return h;
  }

  // ---- slot ownership ------------------------------------------------------------------
  static bool claim(slot& s, int from, int to) {
    int expected = from;
    return s.status.load(std::memory_order_relaxed) == from &&
           s.status.compare_exchange_strong(expected, to, std::memory_order_acquire, std::memory_order_relaxed);
  }

  slot* claim_idle() {
    auto& h = hint();
    const std::size_t n = m_high_water.load(std::memory_order_acquire);
    if (h.pool == this && h.index < n && claim(m_slots[h.index], k_idle, k_in_use)) return &m_slots[h.index];
    for (std::size_t i = 0; i < n; ++i) {
      if (claim(m_slots[i], k_idle, k_in_use)) return &m_slots[i];
    }
    return nullptr;
  }

  // An empty slot for a new connection (lock held).
  slot* claim_empty() {
    for (std::size_t i = 0; i < m_options.max_size; ++i) {
      if (claim(m_slots[i], k_empty, k_reserved)) {
        std::size_t hw = m_high_water.load(std::memory_order_relaxed);
        while (hw < i + 1 && !m_high_water.compare_exchange_weak(hw, i + 1)) {
        }
        return &m_slots[i];
      }
    }
    return nullptr;
  }

  void mark_owned(slot& s, std::thread::id who, const char* context, clock::time_point t) {
    s.acquired_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    s.acquirer.store(who, std::memory_order_relaxed);
    s.context.store(context, std::memory_order_relaxed);
    s.leak_reported.store(false, std::memory_order_relaxed);
    s.acquires.store(s.acquires.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // ---- waiters (lock held) -------------------------------------------------------------
  void link_waiter(waiter* w) {
    w->prev = m_wait_tail;
    w->next = nullptr;
    if (m_wait_tail) m_wait_tail->next = w;
    else m_wait_head = w;
    m_wait_tail = w;
    w->linked = true;
    m_waiting.fetch_add(1, std::memory_order_seq_cst);
  }
  void unlink_waiter(waiter* w) {
    if (!w->linked) return;
    if (w->prev) w->prev->next = w->next;
    else m_wait_head = w->next;
    if (w->next) w->next->prev = w->prev;
    else m_wait_tail = w->prev;
    w->linked = false;
    m_waiting.fetch_sub(1, std::memory_order_seq_cst);
    if (m_closed.load() && m_waiting.load() == 0) m_drained.notify_all();
  }
  // Gives an owned slot to the first waiter (lock held, a waiter exists).
  void handoff(slot& s, clock::time_point t) {
    waiter* w = m_wait_head;
    unlink_waiter(w);
    mark_owned(s, w->thread, w->context, t);
    w->handed = &s;
    w->cv.notify_one();
  }

  std::size_t open_slots() const {  // lock held; IDLE + IN_USE
    std::size_t n = 0;
    const std::size_t hw = m_high_water.load();
    for (std::size_t i = 0; i < hw; ++i) {
      const int st = m_slots[i].status.load(std::memory_order_relaxed);
      n += st == k_idle || st == k_in_use || st == k_parked;
    }
    return n;
  }
  bool has_empty() const {
    for (std::size_t i = 0; i < m_options.max_size; ++i) {
      if (m_slots[i].status.load(std::memory_order_relaxed) == k_empty) return true;
    }
    return false;
  }
  // Room to open one more connection for the callers queued (lock held).
  bool may_open() const {
    if (m_closed.load() || m_connecting >= m_options.connecting_limit || m_waiting.load() <= m_connecting ||
        !has_empty()) {
      return false;
    }
    if (m_options.mode != pool_mode::adaptive) return true;
    const std::size_t open = open_slots();
    const std::size_t unparked = open - std::min(open, m_parked.load());
    return open + m_connecting < m_open_limit.load() && unparked + m_connecting < m_admission_open.load();
  }
  void nudge_waiter() {  // lock held
    if (!may_open()) return;
    for (waiter* w = m_wait_head; w; w = w->next) {
      if (!w->connecting) {
        w->cv.notify_one();
        return;
      }
    }
  }

  // ---- opening, returning and closing --------------------------------------------------
  // Makes an owned, healthy slot available: to the first waiter, else idle.
  void publish(slot& s, clock::time_point t) {
    s.released_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    if (m_waiting.load(std::memory_order_seq_cst) > 0) {
      lock lk(m_mutex);
      if (m_wait_head) {
        handoff(s, t);
        return;
      }
    }
    s.status.store(k_idle, std::memory_order_seq_cst);
    // A caller may have queued between our check and the store: make sure it is served.
    if (m_waiting.load(std::memory_order_seq_cst) > 0) {
      lock lk(m_mutex);
      if (m_wait_head && claim(s, k_idle, k_in_use)) handoff(s, t);
    }
  }

  // Closes an owned slot's connection and frees the slot.
  void close_owned(slot& s, close_reason why) {
    std::unique_ptr<Conn> victim = std::move(s.conn);
    victim.reset();  // the connection closes outside the lock
    {
      std::lock_guard lk(m_mutex);
      count_close(why);
      m_retired_acquires += s.acquires.exchange(0);
      m_retired_releases += s.releases.exchange(0);
      m_retired_held_ns += static_cast<std::uint64_t>(s.held_ns.exchange(0));
      s.expires.store(clock::time_point::max().time_since_epoch().count(), std::memory_order_relaxed);
      s.status.store(k_empty, std::memory_order_release);
      nudge_waiter();
    }
    if (observer* o = obs()) o->on_pool_connection_closed(why);
  }
  void count_close(close_reason why) {
    switch (why) {
      case close_reason::broken: ++m_counters.closed_broken; break;
      case close_reason::idle: ++m_counters.closed_idle; break;
      case close_reason::lifetime: ++m_counters.closed_lifetime; break;
      case close_reason::reset_failed: ++m_counters.closed_reset_failed; break;
      case close_reason::pool_closed: ++m_counters.closed_pool_closed; break;
      case close_reason::idle_scale_down: ++m_counters.closed_scale_down; break;
    }
  }

  // Opens one connection outside the lock.
  std::unique_ptr<Conn> open(std::chrono::milliseconds timeout, std::exception_ptr& failure) {
    const auto t0 = clock::now();
    try {
      auto c = m_factory->connect(timeout);
      m_login_refused.store(false, std::memory_order_relaxed);
      if (observer* o = obs()) o->on_pool_connection_created(clock::now() - t0);
      return c;
    } catch (const error& e) {
      // A refused login would be refused again: no more background logins until a caller's
      // connect succeeds (repeated failed logins can lock the account).
      if (e.kind() == failure_kind::connect_failed && is_login_rejection(e.sqlstate())) {
        m_login_refused.store(true, std::memory_order_relaxed);
      }
      if (observer* o = obs()) o->on_pool_connect_failed(e);
      failure = std::current_exception();
    } catch (...) {
      failure = std::current_exception();
    }
    return nullptr;
  }

  // Puts a new connection into the reserved slot `s` and hands it to the first in line, or
  // leaves it idle when nobody is queued (lock held).
  void place_new(slot& s, std::unique_ptr<Conn> c) {
    const auto t = now();
    s.conn = std::move(c);
    s.id.store(++m_next_id, std::memory_order_relaxed);
    auto expires = clock::time_point::max();
    if (m_options.max_lifetime.count() > 0) {
      std::uniform_real_distribution<double> jitter(0.0, m_options.lifetime_jitter);
      expires = t + std::chrono::duration_cast<clock::duration>(m_options.max_lifetime * (1.0 - jitter(m_rng)));
    }
    s.expires.store(expires.time_since_epoch().count(), std::memory_order_relaxed);
    s.released_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
    ++m_counters.connections_created;
    if (m_wait_head) {
      s.status.store(k_in_use, std::memory_order_release);
      handoff(s, t);
    } else {
      s.status.store(k_idle, std::memory_order_seq_cst);
    }
  }

  // ---- acquire -------------------------------------------------------------------------
  // Checks a claimed idle slot (outside any lock); false when it was closed instead.
  bool checkout(slot& s, clock::time_point t) {
    if (t >= at(s.expires.load(std::memory_order_relaxed))) {
      close_owned(s, close_reason::lifetime);
      return false;
    }
    const auto idle_for = t - at(s.released_at.load(std::memory_order_relaxed));
    const bool quick = m_quick_check_after != clock::duration::max() && idle_for >= m_quick_check_after;
    const bool ping = m_ping_after != clock::duration::max() && idle_for >= m_ping_after;
    if (!quick && !ping) return true;
    bool ok = m_factory->quick_check(*s.conn);
    if (ok && ping) ok = m_factory->validate(*s.conn, m_options.validation_timeout);
    if (!ok) close_owned(s, close_reason::broken);
    return ok;
  }

  slot* acquire(clock::time_point start, clock::time_point deadline, const char* context) {
    if (m_closed.load(std::memory_order_relaxed)) throw usage_error("the pool is closed");
    const auto me = std::this_thread::get_id();
    // Fast path: an idle connection and nobody queued ahead of us; no lock.
    while (m_waiting.load(std::memory_order_seq_cst) == 0) {
      slot* s = claim_idle();
      if (s == nullptr) break;
      const auto t = now(start);
      if (!checkout(*s, t)) continue;
      mark_owned(*s, me, context, t);
      hint() = {this, static_cast<std::size_t>(s - m_slots.get())};
      if (observer* o = obs()) o->on_pool_acquired(std::chrono::nanoseconds{0});
      return s;
    }
    return acquire_slow(start, deadline, context);
  }

  // Queues the caller and waits in FIFO order. Each turn of the loop the caller, while still
  // unserved, takes an idle connection if it is first in line, else opens one if there is
  // room, else sleeps until it is handed one, nudged, or the deadline passes.
  slot* acquire_slow(clock::time_point start, clock::time_point deadline, const char* context) {
    lock lk(m_mutex);
    if (m_closed.load()) throw usage_error("the pool is closed");
    if (m_waiting.load() >= m_options.max_waiters) reject(lk);
    if (const std::size_t q = m_queue_limit.load(std::memory_order_relaxed); q != 0 && m_waiting.load() >= q) {
      reject_overloaded(lk);
    }
    waiter w;
    w.context = context;
    w.since = start;
    link_waiter(&w);
    ++m_counters.acquires_waited;
    while (w.handed == nullptr) {
      if (m_closed.load()) {
        unlink_waiter(&w);
        throw_closed_while_waiting();
      }
      // First in line: an idle connection may have been published while we queued.
      if (m_wait_head == &w) {
        if (slot* s = claim_idle()) {
          if (check_out_as_first(lk, w, *s)) return finish_wait(s, start);
          continue;  // it was dead and is closed now; we queued again at the back
        }
      }
      if (slot* s = may_open() ? claim_empty() : nullptr) {
        open_for_queue(lk, w, *s, deadline);
        continue;
      }
      wait_for_turn(lk, w, start, deadline);
    }
    slot* s = w.handed;
    lk.unlock();
    return finish_wait(s, start);
  }

  [[noreturn]] static void throw_closed_while_waiting() {
    throw usage_error("the pool was closed while waiting for a connection");
  }

  // max_waiters are queued: fail at once, reporting outside the lock.
  [[noreturn]] void reject(lock& lk) {
    ++m_counters.rejections;
    const auto msg =
        fmt::format("pool exhausted: {} callers already waiting (max_waiters {}); rejected without waiting",
                    m_waiting.load(), m_options.max_waiters);
    lk.unlock();
    if (observer* o = obs()) o->on_pool_rejected();
    throw pool_exhausted(msg, failure_kind::timeout, outcome::not_sent);
  }

  // `w`, first in line, claimed the idle slot `s`: leaves the queue and checks it out without
  // the lock. True when it is ours (lock released); false when it was dead and is closed now
  // (lock held again, `w` queued again at the back).
  bool check_out_as_first(lock& lk, waiter& w, slot& s) {
    unlink_waiter(&w);
    lk.unlock();
    const auto t = now();
    if (checkout(s, t)) {
      mark_owned(s, w.thread, w.context, t);
      return true;
    }
    lk.lock();
    link_waiter(&w);
    return false;
  }

  // Opens a connection into the reserved slot `s` for the queue, without the lock while
  // connecting. On success the first in line (maybe `w`) gets it, or it stays idle. On failure
  // `w` gets the connect error, unless it was handed a connection meanwhile. Returns with the
  // lock held.
  void open_for_queue(lock& lk, waiter& w, slot& s, clock::time_point deadline) {
    ++m_connecting;
    w.connecting = true;
    lk.unlock();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    std::exception_ptr failure;
    auto c = open(std::max(left, std::chrono::milliseconds{1}), failure);
    lk.lock();
    w.connecting = false;
    --m_connecting;
    if (c && !m_closed.load()) {
      place_new(s, std::move(c));
      nudge_waiter();
      return;
    }
    if (c) ++m_counters.closed_pool_closed;
    s.status.store(k_empty, std::memory_order_release);
    if (!c) ++m_counters.connect_failures;
    if (w.handed) {  // someone returned one meanwhile: use it
      nudge_waiter();
      return;
    }
    // Leave the queue before waking the next caller to try: a wake-up sent to ourselves
    // would be lost, and the others would sleep until their deadline.
    unlink_waiter(&w);
    nudge_waiter();
    lk.unlock();
    c.reset();
    if (failure) std::rethrow_exception(failure);
    throw_closed_while_waiting();
  }

  // Sleeps until handed a connection, nudged, or the deadline (returns with the lock held);
  // throws pool_timeout at the deadline when nothing was handed.
  void wait_for_turn(lock& lk, waiter& w, clock::time_point start, clock::time_point deadline) {
    if (w.cv.wait_until(lk, deadline) != std::cv_status::timeout || w.handed != nullptr) return;
    unlink_waiter(&w);
    ++m_counters.acquire_timeouts;
    const auto msg = timeout_message();
    lk.unlock();
    if (observer* o = obs()) o->on_pool_acquire_timeout(clock::now() - start);
    throw pool_timeout(msg, failure_kind::timeout, outcome::not_sent);
  }

  slot* finish_wait(slot* s, clock::time_point start) {
    const auto waited = clock::now() - start;
    {
      std::lock_guard lk(m_mutex);
      m_counters.acquire_wait_total += waited;
      ++m_wait_buckets[wait_bucket(waited)];
    }
    if (observer* o = obs()) o->on_pool_acquired(waited);
    return s;
  }

  // Upper bounds (ms) of the wait buckets; the last one is open.
  static constexpr std::array<double, 15> k_wait_bounds_ms{0.5, 1,   2.5,  5,    10,   25,    50,   100,
                                                           250, 500, 1000, 2500, 5000, 10000, 30000};
  static std::size_t wait_bucket(clock::duration d) {
    const double ms = std::chrono::duration<double, std::milli>(d).count();
    std::size_t i = 0;
    while (i < k_wait_bounds_ms.size() && ms > k_wait_bounds_ms[i]) ++i;
    return i;
  }

  std::string timeout_message() const {  // lock held
    std::size_t active = 0, idle = 0;
    count_states(active, idle);
    return fmt::format(
        "no pooled connection became available within {} ms (active {}, idle {}, opening {}, "
        "waiting {}, max {})",
        m_options.acquire_timeout.count(), active, idle, m_connecting, m_waiting.load(), m_options.max_size);
  }
  void count_states(std::size_t& active, std::size_t& idle) const {
    const std::size_t hw = m_high_water.load();
    for (std::size_t i = 0; i < hw; ++i) {
      const int st = m_slots[i].status.load(std::memory_order_relaxed);
      active += st == k_in_use;
      idle += st == k_idle || st == k_parked;
    }
  }

  // ---- release -------------------------------------------------------------------------
  void release(slot& s) noexcept {
    // Reset outside any lock: it may need a round trip (ROLLBACK).
    const reset_result r = m_closed.load() ? reset_result::ok : m_factory->reset(*s.conn);
    const auto t = now();
    const auto used = t - at(s.acquired_at.load(std::memory_order_relaxed));
    s.releases.store(s.releases.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    s.held_ns.store(s.held_ns.load(std::memory_order_relaxed) +
                        std::chrono::duration_cast<std::chrono::nanoseconds>(used).count(),
                    std::memory_order_relaxed);
    if (observer* o = obs()) o->on_pool_released(std::chrono::duration_cast<std::chrono::nanoseconds>(used));
    if (m_closed.load()) {
      release_after_close(s);
      return;
    }
    if (r == reset_result::broken) {
      close_owned(s, close_reason::broken);
    } else if (r == reset_result::failed) {
      close_owned(s, close_reason::reset_failed);
    } else if (t >= at(s.expires.load(std::memory_order_relaxed))) {
      close_owned(s, close_reason::lifetime);
    } else if (m_park_debt.load(std::memory_order_relaxed) == 0 || !park_on_release(s, t)) {
      publish(s, t);
      // The pool may have closed while we published: take it back and close it then.
      if (m_closed.load() && claim(s, k_idle, k_in_use)) release_after_close(s);
    }
  }

  // A connection returned after the pool was closed; the last one deletes the state (see the
  // ownership note above the class).
  void release_after_close(slot& s) {
    std::unique_ptr<Conn> victim = std::move(s.conn);
    victim.reset();
    bool last = false;
    {
      std::lock_guard lk(m_mutex);
      ++m_counters.closed_pool_closed;
      s.status.store(k_empty, std::memory_order_release);
      last = m_shut_down && --m_outstanding_after_close == 0;
    }
    if (observer* o = obs()) o->on_pool_connection_closed(close_reason::pool_closed);
    if (last) delete this;
  }

  // ---- maintenance and shutdown (pool_maintenance.hpp) ----------------------------------
  void maintain_once();
  void close_expired_idle(clock::time_point t);
  void report_leaks(clock::time_point t);
  void keep_min_size();
  void start_maintenance();
  std::chrono::milliseconds tick() const;
  pool_stats snapshot();
  void shutdown();
};

// An admission limit wants fewer connections in use: keep this returned one back (outside
// the lock; the controller lets it go when the limit rises).
template <typename Conn>
bool basic_pool<Conn>::state::park_on_release(slot& s, clock::time_point t) {
  std::size_t debt = m_park_debt.load(std::memory_order_relaxed);
  while (debt > 0 && !m_park_debt.compare_exchange_weak(debt, debt - 1, std::memory_order_relaxed)) {
  }
  if (debt == 0) return false;
  s.released_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
  m_parked.fetch_add(1, std::memory_order_relaxed);
  s.status.store(k_parked, std::memory_order_release);
  if (m_closed.load()) {  // shutdown may have missed it
    if (claim(s, k_parked, k_in_use)) {
      m_parked.fetch_sub(1, std::memory_order_relaxed);
      release_after_close(s);
    }
  }
  return true;
}

}  // namespace steadypg
