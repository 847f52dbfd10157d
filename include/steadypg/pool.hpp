#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "steadypg/error.hpp"
#include "steadypg/observer.hpp"

namespace steadypg {

/// Pool configuration. Plain aggregate; validate() throws config_error.
struct pool_options {
  /// Connections kept open even when idle (warmed by the maintenance thread). Default 0; ≤ max_size.
  std::size_t min_size = 0;
  /// Connections at most (open + being opened). Default 10; 1–10000.
  std::size_t max_size = 10;
  /// How long acquire() waits for a connection. Default 5 s; > 0.
  std::chrono::milliseconds acquire_timeout{5000};
  /// Callers allowed to wait at once; one more is rejected at once with pool_exhausted. Default 1024.
  std::size_t max_waiters = 1024;
  /// Connections being opened at once. Default 2; ≥ 1.
  std::size_t connecting_limit = 2;
  /// Idle connections above min_size are closed after this long; 0 never. Default 10 min.
  std::chrono::milliseconds idle_timeout{600000};
  /// Connections are closed (and replaced) after this age; 0 never. Default 30 min.
  std::chrono::milliseconds max_lifetime{1800000};
  /// Each connection's lifetime is shortened by a random 0…jitter share so that they do not
  /// all expire at once. Default 0.1; 0–0.5.
  double lifetime_jitter = 0.1;
  /// A connection idle at least this long is checked cheaply before it is handed out (pending
  /// input is read without blocking: a session the server ended is seen at once). Default
  /// 100 ms; 0 always.
  std::chrono::milliseconds quick_check_after_idle{100};
  /// A connection idle at least this long is pinged before it is handed out. Default 1 s;
  /// 0 always; std::chrono::milliseconds::max() never.
  std::chrono::milliseconds validate_after_idle{1000};
  /// Deadline of that ping. Default 2 s; > 0.
  std::chrono::milliseconds validation_timeout{2000};
  /// Report a connection held longer than this (once per hold, with the acquirer's thread and
  /// context) through observer::on_pool_leak_suspected; 0 off. Default 0.
  std::chrono::milliseconds leak_detection_threshold{0};
  /// Period of the maintenance thread (keeps min_size warm, closes idle and old connections,
  /// looks for leaks). Default 30 s; > 0.
  std::chrono::milliseconds health_check_interval{30000};
  /// Deadline for opening one connection. Default 10 s; > 0.
  std::chrono::milliseconds connect_timeout{10000};

  /// Throws config_error naming the field when a value is out of range.
  void validate() const;
};

/// A snapshot of the pool's state and counters.
struct pool_stats {
  std::size_t active = 0;      ///< connections handed out
  std::size_t idle = 0;        ///< connections ready in the pool
  std::size_t total = 0;       ///< open connections (active + idle)
  std::size_t connecting = 0;  ///< connections being opened
  std::size_t waiting = 0;     ///< callers waiting in acquire()
  std::size_t max = 0;         ///< max_size
  std::uint64_t acquire_count = 0;            ///< successful acquires
  std::uint64_t release_count = 0;            ///< connections returned
  std::chrono::nanoseconds acquire_wait_total{};  ///< time spent waiting, summed over acquires
  std::uint64_t acquires_waited = 0;          ///< acquires that found no idle connection
  std::uint64_t acquire_timeouts = 0;         ///< acquires that gave up at the deadline
  std::uint64_t rejections = 0;               ///< acquires rejected because max_waiters were queued
  std::uint64_t connections_created = 0;      ///< connections opened
  std::uint64_t connect_failures = 0;         ///< failed attempts to open one
  std::uint64_t closed_broken = 0;            ///< closed: broken or failed validation
  std::uint64_t closed_idle = 0;              ///< closed: idle_timeout
  std::uint64_t closed_lifetime = 0;          ///< closed: max_lifetime
  std::uint64_t closed_reset_failed = 0;      ///< closed: could not be reset on return
  std::uint64_t closed_pool_closed = 0;       ///< closed: the pool was destroyed
};

/// What a connection must come back as when returned to the pool.
enum class reset_result {
  ok,      ///< idle again; keep it
  broken,  ///< unusable; close it (reason broken)
  failed   ///< could not be brought back to idle; close it (reason reset_failed)
};

/// How the pool opens, checks and resets connections of type Conn. The pool is generic over
/// it so that it can be tested and benchmarked without a server.
template <typename Conn>
class pool_factory {
 public:
  virtual ~pool_factory() = default;
  /// Opens a connection within `timeout`; throws (for example connection_error) on failure.
  virtual std::unique_ptr<Conn> connect(std::chrono::milliseconds timeout) = 0;
  /// Cheap check without a round trip; false closes the connection (reason broken).
  virtual bool quick_check(Conn& c) noexcept = 0;
  /// A round trip within `timeout`; false closes the connection (reason broken).
  virtual bool validate(Conn& c, std::chrono::milliseconds timeout) noexcept = 0;
  /// Brings a returned connection back to idle (roll back an open transaction …).
  virtual reset_result reset(Conn& c) noexcept = 0;
};

/// A bounded, thread-safe, FIFO-fair pool of Conn. acquire() returns an RAII handle that puts
/// the connection back when destroyed. A maintenance thread keeps min_size warm, closes idle
/// and old connections and reports leaks; it never holds the lock while talking to a server.
template <typename Conn>
class basic_pool {
  struct slot;
  struct state;

 public:
  using clock = std::chrono::steady_clock;
  /// Source of time for expiry, validation and leak checks (tests inject a fake one).
  using time_source = std::function<clock::time_point()>;

  /// A borrowed connection. Move-only; returns the connection when destroyed or release()d.
  class handle {
   public:
    handle() = default;
    handle(handle&& o) noexcept : m_state(std::exchange(o.m_state, nullptr)), m_slot(std::exchange(o.m_slot, nullptr)) {}
    handle& operator=(handle&& o) noexcept {
      if (this != &o) {
        release();
        m_state = std::exchange(o.m_state, nullptr);
        m_slot = std::exchange(o.m_slot, nullptr);
      }
      return *this;
    }
    handle(const handle&) = delete;
    handle& operator=(const handle&) = delete;
    ~handle() { release(); }

    /// The connection.
    [[nodiscard]] Conn& operator*() const noexcept { return *m_slot->conn; }
    [[nodiscard]] Conn* operator->() const noexcept { return m_slot->conn.get(); }
    [[nodiscard]] Conn& get() const noexcept { return *m_slot->conn; }
    /// True while a connection is held.
    explicit operator bool() const noexcept { return m_slot != nullptr; }
    /// The pool's id for this connection (stable for its lifetime).
    [[nodiscard]] std::uint64_t id() const noexcept { return m_slot ? m_slot->id.load(std::memory_order_relaxed) : 0; }
    /// Returns the connection now.
    void release() noexcept {
      if (m_slot) state::release(m_state, m_slot);
      m_state = nullptr;
      m_slot = nullptr;
    }

   private:
    friend class basic_pool;
    handle(state* st, slot* sl) noexcept : m_state(st), m_slot(sl) {}
    state* m_state = nullptr;
    slot* m_slot = nullptr;
  };

  /// Validates the options and starts the maintenance thread (which opens min_size
  /// connections in the background).
  basic_pool(pool_options options, std::shared_ptr<pool_factory<Conn>> factory, observer* obs = nullptr,
             time_source now = {})
      : m_state(new state(std::move(options), std::move(factory), obs, std::move(now))) {
    m_state->start_maintenance();
  }

  /// Stops maintenance, wakes waiters (they get usage_error), closes idle connections.
  /// Connections still out are closed when returned; their handles stay valid.
  ~basic_pool() { m_state->shutdown(); }

  basic_pool(const basic_pool&) = delete;
  basic_pool& operator=(const basic_pool&) = delete;

  /// Borrows a connection, waiting up to acquire_timeout. Throws pool_timeout at the deadline,
  /// pool_exhausted when max_waiters are already queued, or the connect error when this caller
  /// had to open a connection and could not. `context` (a string literal, e.g. an operation
  /// name) is reported by leak detection.
  [[nodiscard]] handle acquire(const char* context = nullptr) {
    const auto start = clock::now();
    return handle(m_state, m_state->acquire(start, start + m_state->opts.acquire_timeout, context));
  }
  /// Same with an explicit deadline.
  [[nodiscard]] handle acquire_until(clock::time_point deadline, const char* context = nullptr) {
    return handle(m_state, m_state->acquire(clock::now(), deadline, context));
  }

  /// A snapshot of the state and counters.
  [[nodiscard]] pool_stats stats() const { return m_state->snapshot(); }
  /// The options in effect.
  [[nodiscard]] const pool_options& options() const noexcept { return m_state->opts; }
  /// Runs one maintenance pass now (also done every health_check_interval).
  void maintain() { m_state->maintain_once(); }

 private:
  // Each connection lives in a slot; a slot's state word is the only thing the hot path
  // touches: acquire claims an idle slot with one compare-exchange (trying the slot this thread
  // used last first), release publishes it with one store. The mutex is taken only to wait,
  // to hand a connection to a waiter, to open or close connections, and for maintenance.
  enum : int { k_empty = 0, k_idle = 1, k_in_use = 2, k_reserved = 3 };

  struct alignas(64) slot {
    std::atomic<int> state{k_empty};
    std::unique_ptr<Conn> conn;                   // owned by whoever holds the slot
    std::atomic<std::uint64_t> id{0};
    std::atomic<clock::rep> expires{clock::time_point::max().time_since_epoch().count()};
    std::atomic<clock::rep> released_at{0};       // read by maintenance without claiming
    std::atomic<clock::rep> acquired_at{0};       // read by leak detection
    std::atomic<std::thread::id> acquirer{};
    std::atomic<const char*> context{nullptr};
    std::atomic<bool> leak_reported{false};
    std::atomic<std::uint64_t> acquires{0};       // one writer at a time: the holder
    std::atomic<std::uint64_t> releases{0};
  };

  struct waiter {
    std::condition_variable cv;
    slot* handed = nullptr;
    bool connecting = false;
    bool linked = false;
    std::thread::id thread = std::this_thread::get_id();
    const char* context = nullptr;
    waiter* prev = nullptr;
    waiter* next = nullptr;
  };

  struct state {
    state(pool_options o, std::shared_ptr<pool_factory<Conn>> f, observer* ob, time_source t)
        : opts(std::move(o)), factory(std::move(f)), obs_(ob), now_fn(std::move(t)) {
      opts.validate();
      if (!factory) throw usage_error("basic_pool needs a connection factory");
      slots = std::make_unique<slot[]>(opts.max_size);
      quick_after = to_clock(opts.quick_check_after_idle);
      ping_after = opts.validate_after_idle == std::chrono::milliseconds::max() ? clock::duration::max()
                                                                                 : to_clock(opts.validate_after_idle);
    }

    // Milliseconds in the clock's unit, saturating instead of overflowing.
    static clock::duration to_clock(std::chrono::milliseconds ms) {
      constexpr auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(clock::duration::max());
      return ms >= limit ? clock::duration::max() : std::chrono::duration_cast<clock::duration>(ms);
    }

    pool_options opts;
    std::shared_ptr<pool_factory<Conn>> factory;
    std::atomic<observer*> obs_;  // cleared at shutdown: the observer may die with the pool's owner
    time_source now_fn;

    observer* obs() const noexcept { return obs_.load(std::memory_order_acquire); }
    std::unique_ptr<slot[]> slots;
    clock::duration quick_after{};  // quick_check_after_idle and validate_after_idle, saturated
    clock::duration ping_after{};
    std::atomic<std::size_t> high_water{0};    // slots [0, high_water) have ever been used
    std::atomic<std::size_t> n_waiting{0};
    std::atomic<bool> closed{false};

    std::mutex mu;                             // guards everything below
    waiter* wait_head = nullptr;
    waiter* wait_tail = nullptr;
    std::size_t connecting = 0;
    std::uint64_t next_id = 0;
    std::size_t outstanding_after_close = 0;
    bool shut_down = false;
    pool_stats counters;                       // slow-path counters; per-slot ones are summed
    std::uint64_t retired_acquires = 0;
    std::uint64_t retired_releases = 0;
    std::minstd_rand rng{std::random_device{}()};
    std::condition_variable drained_cv;        // shutdown waits for waiters to leave

    std::condition_variable maintenance_cv;
    bool stop_maintenance = false;
    std::atomic<bool> login_refused{false};  // the last connect was a refused login
    std::thread maintenance;

    clock::time_point now(clock::time_point fallback) const { return now_fn ? now_fn() : fallback; }
    clock::time_point now() const { return now_fn ? now_fn() : clock::now(); }
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
      return s.state.load(std::memory_order_relaxed) == from &&
             s.state.compare_exchange_strong(expected, to, std::memory_order_acquire, std::memory_order_relaxed);
    }

    slot* claim_idle() {
      auto& h = hint();
      const std::size_t n = high_water.load(std::memory_order_acquire);
      if (h.pool == this && h.index < n && claim(slots[h.index], k_idle, k_in_use)) return &slots[h.index];
      for (std::size_t i = 0; i < n; ++i) {
        if (claim(slots[i], k_idle, k_in_use)) return &slots[i];
      }
      return nullptr;
    }

    // An empty slot for a new connection (lock held).
    slot* claim_empty() {
      for (std::size_t i = 0; i < opts.max_size; ++i) {
        if (claim(slots[i], k_empty, k_reserved)) {
          std::size_t hw = high_water.load(std::memory_order_relaxed);
          while (hw < i + 1 && !high_water.compare_exchange_weak(hw, i + 1)) {
          }
          return &slots[i];
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
      w->prev = wait_tail;
      w->next = nullptr;
      if (wait_tail) wait_tail->next = w;
      else wait_head = w;
      wait_tail = w;
      w->linked = true;
      n_waiting.fetch_add(1, std::memory_order_seq_cst);
    }
    void unlink_waiter(waiter* w) {
      if (!w->linked) return;
      if (w->prev) w->prev->next = w->next;
      else wait_head = w->next;
      if (w->next) w->next->prev = w->prev;
      else wait_tail = w->prev;
      w->linked = false;
      n_waiting.fetch_sub(1, std::memory_order_seq_cst);
      if (closed.load() && n_waiting.load() == 0) drained_cv.notify_all();
    }
    // Gives an owned slot to the first waiter (lock held, a waiter exists).
    void handoff(slot& s, clock::time_point t) {
      waiter* w = wait_head;
      unlink_waiter(w);
      mark_owned(s, w->thread, w->context, t);
      w->handed = &s;
      w->cv.notify_one();
    }

    std::size_t open_slots() const {  // lock held; IDLE + IN_USE
      std::size_t n = 0;
      const std::size_t hw = high_water.load();
      for (std::size_t i = 0; i < hw; ++i) {
        const int st = slots[i].state.load(std::memory_order_relaxed);
        n += st == k_idle || st == k_in_use;
      }
      return n;
    }
    bool has_empty() const {
      for (std::size_t i = 0; i < opts.max_size; ++i) {
        if (slots[i].state.load(std::memory_order_relaxed) == k_empty) return true;
      }
      return false;
    }
    // Room to open one more connection for the callers queued (lock held).
    bool may_open() const {
      return !closed.load() && connecting < opts.connecting_limit && n_waiting.load() > connecting && has_empty();
    }
    void nudge_waiter() {  // lock held
      if (!may_open()) return;
      for (waiter* w = wait_head; w; w = w->next) {
        if (!w->connecting) {
          w->cv.notify_one();
          return;
        }
      }
    }

    // ---- returning and closing -----------------------------------------------------------
    // Makes an owned, healthy slot available: to the first waiter, else idle.
    void publish(slot& s, clock::time_point t) {
      s.released_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
      if (n_waiting.load(std::memory_order_seq_cst) > 0) {
        std::unique_lock lk(mu);
        if (wait_head) {
          handoff(s, t);
          return;
        }
      }
      s.state.store(k_idle, std::memory_order_seq_cst);
      // A caller may have queued between our check and the store: make sure it is served.
      if (n_waiting.load(std::memory_order_seq_cst) > 0) {
        std::unique_lock lk(mu);
        if (wait_head && claim(s, k_idle, k_in_use)) handoff(s, t);
      }
    }

    // Closes an owned slot's connection and frees the slot.
    void close_owned(slot& s, close_reason why) {
      std::unique_ptr<Conn> victim = std::move(s.conn);
      victim.reset();  // the connection closes outside the lock
      {
        std::lock_guard lk(mu);
        count_close(why);
        retired_acquires += s.acquires.exchange(0);
        retired_releases += s.releases.exchange(0);
        s.expires.store(clock::time_point::max().time_since_epoch().count(), std::memory_order_relaxed);
        s.state.store(k_empty, std::memory_order_release);
        nudge_waiter();
      }
      if (observer* o = obs()) o->on_pool_connection_closed(why);
    }
    void count_close(close_reason why) {
      switch (why) {
        case close_reason::broken: ++counters.closed_broken; break;
        case close_reason::idle: ++counters.closed_idle; break;
        case close_reason::lifetime: ++counters.closed_lifetime; break;
        case close_reason::reset_failed: ++counters.closed_reset_failed; break;
        case close_reason::pool_closed: ++counters.closed_pool_closed; break;
      }
    }

    // Installs a new connection in a reserved slot (lock held).
    void install(slot& s, std::unique_ptr<Conn> c, clock::time_point t) {
      s.conn = std::move(c);
      s.id.store(++next_id, std::memory_order_relaxed);
      auto expires = clock::time_point::max();
      if (opts.max_lifetime.count() > 0) {
        std::uniform_real_distribution<double> jitter(0.0, opts.lifetime_jitter);
        expires = t + std::chrono::duration_cast<clock::duration>(opts.max_lifetime * (1.0 - jitter(rng)));
      }
      s.expires.store(expires.time_since_epoch().count(), std::memory_order_relaxed);
      s.released_at.store(t.time_since_epoch().count(), std::memory_order_relaxed);
      ++counters.connections_created;
    }

    // Opens one connection outside the lock.
    std::unique_ptr<Conn> open(std::chrono::milliseconds timeout, std::exception_ptr& failure) {
      const auto t0 = clock::now();
      try {
        auto c = factory->connect(timeout);
        login_refused.store(false, std::memory_order_relaxed);
        if (observer* o = obs()) o->on_pool_connection_created(clock::now() - t0);
        return c;
      } catch (const error& e) {
        // A refused login would be refused again: no more background logins until a caller's
        // connect succeeds (repeated failed logins can lock the account).
        if (e.kind() == failure_kind::connect_failed && is_login_rejection(e.sqlstate())) {
          login_refused.store(true, std::memory_order_relaxed);
        }
        if (observer* o = obs()) o->on_pool_connect_failed(e);
        failure = std::current_exception();
      } catch (...) {
        failure = std::current_exception();
      }
      return nullptr;
    }

    // ---- acquire -------------------------------------------------------------------------
    // Checks a claimed idle slot (outside any lock); false when it was closed instead.
    bool checkout(slot& s, clock::time_point t) {
      if (t >= at(s.expires.load(std::memory_order_relaxed))) {
        close_owned(s, close_reason::lifetime);
        return false;
      }
      const auto idle_for = t - at(s.released_at.load(std::memory_order_relaxed));
      const bool quick = quick_after != clock::duration::max() && idle_for >= quick_after;
      const bool ping = ping_after != clock::duration::max() && idle_for >= ping_after;
      if (!quick && !ping) return true;
      bool ok = factory->quick_check(*s.conn);
      if (ok && ping) ok = factory->validate(*s.conn, opts.validation_timeout);
      if (!ok) close_owned(s, close_reason::broken);
      return ok;
    }

    slot* acquire(clock::time_point start, clock::time_point deadline, const char* context) {
      if (closed.load(std::memory_order_relaxed)) throw usage_error("the pool is closed");
      const auto me = std::this_thread::get_id();
      // Fast path: an idle connection and nobody queued ahead of us; no lock.
      while (n_waiting.load(std::memory_order_seq_cst) == 0) {
        slot* s = claim_idle();
        if (s == nullptr) break;
        const auto t = now(start);
        if (!checkout(*s, t)) continue;
        mark_owned(*s, me, context, t);
        hint() = {this, static_cast<std::size_t>(s - slots.get())};
        if (observer* o = obs()) o->on_pool_acquired(std::chrono::nanoseconds{0});
        return s;
      }
      return acquire_slow(start, deadline, context);
    }

    slot* acquire_slow(clock::time_point start, clock::time_point deadline, const char* context) {
      std::unique_lock lk(mu);
      if (closed.load()) throw usage_error("the pool is closed");
      if (n_waiting.load() >= opts.max_waiters) {
        ++counters.rejections;
        const auto msg = fmt_exhausted();
        lk.unlock();
        if (observer* o = obs()) o->on_pool_rejected();
        throw pool_exhausted(msg, failure_kind::timeout, outcome::not_sent);
      }
      waiter w;
      w.context = context;
      link_waiter(&w);
      ++counters.acquires_waited;
      while (w.handed == nullptr) {
        if (closed.load()) {
          unlink_waiter(&w);
          throw usage_error("the pool was closed while waiting for a connection");
        }
        // First in line: an idle connection may have been published while we queued.
        if (wait_head == &w) {
          if (slot* s = claim_idle()) {
            unlink_waiter(&w);
            lk.unlock();
            const auto t = now();
            if (checkout(*s, t)) {
              mark_owned(*s, w.thread, context, t);
              return finish_wait(s, start);
            }
            lk.lock();  // it was dead and is closed now: queue again (at the back)
            if (closed.load()) throw usage_error("the pool was closed while waiting for a connection");
            link_waiter(&w);
            continue;
          }
        }
        if (slot* s = may_open() ? claim_empty() : nullptr) {
          ++connecting;
          w.connecting = true;
          lk.unlock();
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
          std::exception_ptr failure;
          auto c = open(std::clamp(left, std::chrono::milliseconds{1}, opts.connect_timeout), failure);
          lk.lock();
          w.connecting = false;
          --connecting;
          if (c && !closed.load()) {
            const auto t = now();
            install(*s, std::move(c), t);
            if (wait_head) {
              s->state.store(k_in_use, std::memory_order_release);
              handoff(*s, t);  // the first in line gets it (maybe us)
            } else {
              s->state.store(k_idle, std::memory_order_seq_cst);  // we were served meanwhile
            }
            nudge_waiter();
            continue;
          }
          if (c) ++counters.closed_pool_closed;
          s->state.store(k_empty, std::memory_order_release);
          if (!c) ++counters.connect_failures;
          if (w.handed) {  // someone returned one meanwhile: use it
            nudge_waiter();
            break;
          }
          // Leave the queue before waking the next caller to try: a wake-up sent to ourselves
          // would be lost, and the others would sleep until their deadline.
          unlink_waiter(&w);
          nudge_waiter();
          lk.unlock();
          c.reset();
          if (failure) std::rethrow_exception(failure);
          throw usage_error("the pool was closed while waiting for a connection");
        }
        if (w.cv.wait_until(lk, deadline) == std::cv_status::timeout && w.handed == nullptr) {
          unlink_waiter(&w);
          ++counters.acquire_timeouts;
          const auto msg = fmt_timeout();
          lk.unlock();
          if (observer* o = obs()) o->on_pool_acquire_timeout(clock::now() - start);
          throw pool_timeout(msg, failure_kind::timeout, outcome::not_sent);
        }
      }
      slot* s = w.handed;
      lk.unlock();
      return finish_wait(s, start);
    }

    slot* finish_wait(slot* s, clock::time_point start) {
      const auto waited = clock::now() - start;
      {
        std::lock_guard lk(mu);
        counters.acquire_wait_total += waited;
      }
      if (observer* o = obs()) o->on_pool_acquired(waited);
      return s;
    }

    std::string fmt_timeout() const {
      std::size_t active = 0, idle = 0;
      count_states(active, idle);
      return "no pooled connection became available within " + std::to_string(opts.acquire_timeout.count()) +
             " ms (active " + std::to_string(active) + ", idle " + std::to_string(idle) + ", opening " +
             std::to_string(connecting) + ", waiting " + std::to_string(n_waiting.load()) + ", max " +
             std::to_string(opts.max_size) + ")";
    }
    std::string fmt_exhausted() const {
      return "pool exhausted: " + std::to_string(n_waiting.load()) + " callers already waiting (max_waiters " +
             std::to_string(opts.max_waiters) + "); rejected without waiting";
    }
    void count_states(std::size_t& active, std::size_t& idle) const {
      const std::size_t hw = high_water.load();
      for (std::size_t i = 0; i < hw; ++i) {
        const int st = slots[i].state.load(std::memory_order_relaxed);
        active += st == k_in_use;
        idle += st == k_idle;
      }
    }

    // ---- release -------------------------------------------------------------------------
    static void release(state* st, slot* s) noexcept {
      // Reset outside any lock: it may need a round trip (ROLLBACK).
      const reset_result r = st->closed.load() ? reset_result::ok : st->factory->reset(*s->conn);
      const auto t = st->now();
      const auto used = t - at(s->acquired_at.load(std::memory_order_relaxed));
      s->releases.store(s->releases.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      if (observer* o = st->obs()) o->on_pool_released(std::chrono::duration_cast<std::chrono::nanoseconds>(used));
      if (st->closed.load()) {
        st->release_after_close(*s);
        return;
      }
      if (r == reset_result::broken) {
        st->close_owned(*s, close_reason::broken);
      } else if (r == reset_result::failed) {
        st->close_owned(*s, close_reason::reset_failed);
      } else if (t >= at(s->expires.load(std::memory_order_relaxed))) {
        st->close_owned(*s, close_reason::lifetime);
      } else {
        st->publish(*s, t);
        // The pool may have closed while we published: take it back and close it then.
        if (st->closed.load() && claim(*s, k_idle, k_in_use)) st->release_after_close(*s);
      }
    }

    // A connection returned after the pool was destroyed; the last one frees the state.
    void release_after_close(slot& s) {
      std::unique_ptr<Conn> victim = std::move(s.conn);
      victim.reset();
      bool last = false;
      {
        std::lock_guard lk(mu);
        ++counters.closed_pool_closed;
        s.state.store(k_empty, std::memory_order_release);
        last = shut_down && --outstanding_after_close == 0;
      }
      if (observer* o = obs()) o->on_pool_connection_closed(close_reason::pool_closed);
      if (last) delete this;
    }

    // ---- maintenance ---------------------------------------------------------------------
    void maintain_once() {
      if (closed.load()) return;
      const auto t = now();
      // Close idle connections that expired or idled too long (keeping min_size open).
      std::size_t open_count;
      {
        std::lock_guard lk(mu);
        open_count = open_slots();
      }
      const std::size_t hw = high_water.load();
      for (std::size_t i = 0; i < hw; ++i) {
        slot& s = slots[i];
        if (s.state.load(std::memory_order_acquire) != k_idle) continue;
        const bool old = t >= at(s.expires.load(std::memory_order_relaxed));
        const bool idle_long = opts.idle_timeout.count() > 0 &&
                               t - at(s.released_at.load(std::memory_order_relaxed)) >= opts.idle_timeout &&
                               open_count > opts.min_size;
        if ((old || idle_long) && claim(s, k_idle, k_in_use)) {
          close_owned(s, old ? close_reason::lifetime : close_reason::idle);
          --open_count;
        }
      }
      // Leaks: connections held longer than the threshold, reported once per hold.
      if (observer* o = obs(); opts.leak_detection_threshold.count() > 0 && o) {
        for (std::size_t i = 0; i < hw; ++i) {
          slot& s = slots[i];
          if (s.state.load(std::memory_order_acquire) != k_in_use) continue;
          const auto held = t - at(s.acquired_at.load(std::memory_order_relaxed));
          if (held >= opts.leak_detection_threshold && !s.leak_reported.exchange(true)) {
            const char* ctx = s.context.load(std::memory_order_relaxed);
            o->on_pool_leak_suspected({s.id.load(std::memory_order_relaxed),
                                         std::chrono::duration_cast<std::chrono::nanoseconds>(held),
                                         s.acquirer.load(std::memory_order_relaxed), ctx ? ctx : ""});
          }
        }
      }
      // Keep min_size open, connecting_limit at a time, until a connect fails.
      while (true) {
        slot* s = nullptr;
        {
          std::lock_guard lk(mu);
          if (closed.load() || stop_maintenance || login_refused.load(std::memory_order_relaxed) ||
              connecting >= opts.connecting_limit || open_slots() + connecting >= opts.min_size) {
            break;
          }
          s = claim_empty();
          if (s == nullptr) break;
          ++connecting;
        }
        std::exception_ptr failure;
        auto c = open(opts.connect_timeout, failure);
        std::unique_lock lk(mu);
        --connecting;
        if (!c) {
          ++counters.connect_failures;
          s->state.store(k_empty, std::memory_order_release);
          break;
        }
        const auto now_t = now();
        install(*s, std::move(c), now_t);
        if (wait_head) {
          s->state.store(k_in_use, std::memory_order_release);
          handoff(*s, now_t);
        } else {
          s->state.store(k_idle, std::memory_order_seq_cst);
        }
      }
    }

    void start_maintenance() {
      maintenance = std::thread([this] {
        std::unique_lock lk(mu);
        while (!stop_maintenance) {
          lk.unlock();
          maintain_once();
          lk.lock();
          maintenance_cv.wait_for(lk, tick(), [this] { return stop_maintenance; });
        }
      });
    }

    std::chrono::milliseconds tick() const {
      auto t = opts.health_check_interval;
      if (opts.leak_detection_threshold.count() > 0) {
        t = std::min(t, std::max(opts.leak_detection_threshold / 2, std::chrono::milliseconds{10}));
      }
      return t;
    }

    pool_stats snapshot() {
      std::lock_guard lk(mu);
      pool_stats s = counters;
      s.acquire_count = retired_acquires;
      s.release_count = retired_releases;
      const std::size_t hw = high_water.load();
      for (std::size_t i = 0; i < hw; ++i) {
        s.acquire_count += slots[i].acquires.load(std::memory_order_relaxed);
        s.release_count += slots[i].releases.load(std::memory_order_relaxed);
      }
      count_states(s.active, s.idle);
      s.connecting = connecting;
      s.total = s.active + s.idle;
      s.waiting = n_waiting.load();
      s.max = opts.max_size;
      return s;
    }

    void shutdown() {
      {
        std::lock_guard lk(mu);
        stop_maintenance = true;
      }
      maintenance_cv.notify_all();
      if (maintenance.joinable()) maintenance.join();
      closed.store(true, std::memory_order_seq_cst);
      std::unique_lock lk(mu);
      observer* const ob = obs();
      obs_.store(nullptr, std::memory_order_release);  // connections returned later report to no one
      for (waiter* w = wait_head; w; w = w->next) w->cv.notify_one();
      drained_cv.wait(lk, [this] { return n_waiting.load() == 0 && connecting == 0; });
      // Close what is idle; what is out is closed when it comes back.
      std::vector<std::unique_ptr<Conn>> victims;
      const std::size_t hw = high_water.load();
      std::size_t out = 0;
      for (std::size_t i = 0; i < hw; ++i) {
        slot& s = slots[i];
        if (claim(s, k_idle, k_in_use)) {
          victims.push_back(std::move(s.conn));
          ++counters.closed_pool_closed;
          s.state.store(k_empty, std::memory_order_release);
        } else if (s.state.load() == k_in_use) {
          ++out;
        }
      }
      shut_down = true;
      outstanding_after_close = out;
      const bool last = out == 0;
      const std::size_t closed_now = victims.size();
      // From here on a returning handle may free the state: touch no member after unlocking.
      lk.unlock();
      victims.clear();
      if (ob) {
        for (std::size_t i = 0; i < closed_now; ++i) ob->on_pool_connection_closed(close_reason::pool_closed);
      }
      if (last) delete this;
    }
  };

  state* m_state;
};

}  // namespace steadypg
