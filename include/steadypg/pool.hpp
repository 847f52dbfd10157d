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
    [[nodiscard]] std::uint64_t id() const noexcept { return m_slot ? m_slot->id : 0; }
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
    return acquire_until(clock::now() + m_state->opts.acquire_timeout, context);
  }
  /// Same with an explicit deadline.
  [[nodiscard]] handle acquire_until(clock::time_point deadline, const char* context = nullptr) {
    slot* sl = m_state->acquire(deadline, context);
    return handle(m_state, sl);
  }

  /// A consistent snapshot of the counters.
  [[nodiscard]] pool_stats stats() const {
    std::lock_guard lk(m_state->mu);
    pool_stats s = m_state->counters;
    s.active = m_state->active_count;
    s.idle = m_state->idle.size();
    s.connecting = m_state->connecting;
    s.total = m_state->total - m_state->connecting;
    s.waiting = m_state->n_waiting;
    s.max = m_state->opts.max_size;
    return s;
  }
  /// The options in effect.
  [[nodiscard]] const pool_options& options() const noexcept { return m_state->opts; }
  /// Runs one maintenance pass now (also done every health_check_interval).
  void maintain() { m_state->maintain_once(); }

 private:
  struct slot {
    std::unique_ptr<Conn> conn;
    std::uint64_t id = 0;
    clock::time_point expires{clock::time_point::max()};
    clock::time_point released_at{};
    clock::time_point acquired_at{};
    std::thread::id acquirer{};
    const char* context = nullptr;
    bool leak_reported = false;
    slot* prev = nullptr;  // active list
    slot* next = nullptr;
  };

  struct waiter {
    std::condition_variable cv;
    slot* handed = nullptr;
    bool connecting = false;  // this waiter is opening a connection right now
    bool linked = true;
    std::thread::id thread = std::this_thread::get_id();
    const char* context = nullptr;
    waiter* prev = nullptr;
    waiter* next = nullptr;
  };

  using retired_list = std::vector<std::pair<std::unique_ptr<slot>, close_reason>>;

  struct state {
    state(pool_options o, std::shared_ptr<pool_factory<Conn>> f, observer* ob, time_source t)
        : opts(std::move(o)), factory(std::move(f)), obs(ob), now_fn(std::move(t)) {
      opts.validate();
      if (!factory) throw usage_error("basic_pool needs a connection factory");
    }

    pool_options opts;
    std::shared_ptr<pool_factory<Conn>> factory;
    observer* obs;
    time_source now_fn;

    std::mutex mu;
    std::vector<slot*> idle;            // back = most recently returned
    slot* active_head = nullptr;        // intrusive list of handed-out slots
    waiter* wait_head = nullptr;        // FIFO
    waiter* wait_tail = nullptr;
    std::size_t n_waiting = 0;
    std::size_t active_count = 0;
    std::size_t total = 0;              // open + connecting
    std::size_t connecting = 0;
    std::size_t refs = 1;               // the pool itself + waiters + handles
    std::uint64_t next_id = 0;
    std::atomic<bool> closed{false};  // read without the lock on release
    pool_stats counters;
    std::minstd_rand rng{std::random_device{}()};

    std::condition_variable maintenance_cv;
    bool stop_maintenance = false;
    std::thread maintenance;

    clock::time_point now() const { return now_fn ? now_fn() : clock::now(); }

    // ---- lists (lock held) ----
    void link_active(slot* s, std::thread::id who, const char* context, clock::time_point at) {
      s->acquirer = who;
      s->context = context;
      s->acquired_at = at;
      s->leak_reported = false;
      s->prev = nullptr;
      s->next = active_head;
      if (active_head) active_head->prev = s;
      active_head = s;
      ++active_count;
      ++refs;
      ++counters.acquire_count;
    }
    void unlink_active(slot* s) {
      if (s->prev) s->prev->next = s->next;
      else active_head = s->next;
      if (s->next) s->next->prev = s->prev;
      s->prev = s->next = nullptr;
      --active_count;
    }
    void link_waiter(waiter* w) {
      w->prev = wait_tail;
      if (wait_tail) wait_tail->next = w;
      else wait_head = w;
      wait_tail = w;
      ++n_waiting;
      ++refs;
    }
    void unlink_waiter(waiter* w) {
      if (!w->linked) return;
      if (w->prev) w->prev->next = w->next;
      else wait_head = w->next;
      if (w->next) w->next->prev = w->prev;
      else wait_tail = w->prev;
      w->linked = false;
      --n_waiting;
    }

    bool expired(const slot* s, clock::time_point t) const { return t >= s->expires; }

    void retire(slot* s, close_reason why, retired_list& out) {
      --total;
      switch (why) {
        case close_reason::broken: ++counters.closed_broken; break;
        case close_reason::idle: ++counters.closed_idle; break;
        case close_reason::lifetime: ++counters.closed_lifetime; break;
        case close_reason::reset_failed: ++counters.closed_reset_failed; break;
        case close_reason::pool_closed: ++counters.closed_pool_closed; break;
      }
      out.emplace_back(std::unique_ptr<slot>(s), why);
    }

    // Room to open one more connection for the callers queued (lock held).
    bool may_open() const {
      return !closed && total < opts.max_size && connecting < opts.connecting_limit && n_waiting > connecting;
    }

    // After a close or a finished connect, a queued caller may now open one (lock held).
    void nudge_waiter() {
      if (!may_open()) return;
      for (waiter* w = wait_head; w; w = w->next) {
        if (!w->connecting) {
          w->cv.notify_one();
          return;
        }
      }
    }

    // Gives a ready connection to the first waiter, or parks it as idle (lock held).
    void offer(slot* s, clock::time_point t, retired_list& out) {
      if (closed) {
        retire(s, close_reason::pool_closed, out);
        return;
      }
      if (waiter* w = wait_head) {
        unlink_waiter(w);
        --refs;  // the waiter's reference becomes the handle's (link_active adds one)
        link_active(s, w->thread, w->context, t);
        w->handed = s;
        w->cv.notify_one();
        return;
      }
      s->released_at = t;
      idle.push_back(s);
    }

    slot* make_slot(std::unique_ptr<Conn> c, clock::time_point t) {
      auto* s = new slot;
      s->conn = std::move(c);
      s->id = ++next_id;
      if (opts.max_lifetime.count() > 0) {
        std::uniform_real_distribution<double> jitter(0.0, opts.lifetime_jitter);
        const auto life = std::chrono::duration_cast<clock::duration>(opts.max_lifetime * (1.0 - jitter(rng)));
        s->expires = t + life;
      }
      return s;
    }

    void emit_closed(const retired_list& out) {
      if (!obs) return;
      for (const auto& r : out) obs->on_pool_connection_closed(r.second);
    }

    // Drops one reference; the last one deletes the state (lock held on entry, released).
    static void drop_ref(state* st, std::unique_lock<std::mutex>& lk) {
      const bool last = --st->refs == 0;
      lk.unlock();
      if (last) delete st;
    }

    // Opens one connection outside the lock (the caller reserved total/connecting).
    std::unique_ptr<Conn> open(std::chrono::milliseconds timeout, std::exception_ptr& failure) {
      const auto t0 = clock::now();
      try {
        auto c = factory->connect(timeout);
        if (obs) obs->on_pool_connection_created(clock::now() - t0);
        return c;
      } catch (const error& e) {
        if (obs) obs->on_pool_connect_failed(e);
        failure = std::current_exception();
      } catch (...) {
        failure = std::current_exception();
      }
      return nullptr;
    }

    slot* acquire(clock::time_point deadline, const char* context) {
      // Read the clock and thread id before locking: the critical section stays a few loads.
      const auto t = now();
      const auto me = std::this_thread::get_id();
      std::unique_lock lk(mu);
      if (closed) throw usage_error("the pool is closed");
      retired_list retired;
      // Fast path: an idle connection and nobody queued ahead of us.
      while (!idle.empty() && wait_head == nullptr) {
        slot* s = idle.back();
        idle.pop_back();
        if (expired(s, t)) {
          retire(s, close_reason::lifetime, retired);
          continue;
        }
        const auto idle_for = t - s->released_at;
        const bool quick = idle_for >= opts.quick_check_after_idle;
        const bool ping = opts.validate_after_idle != std::chrono::milliseconds::max() &&
                          idle_for >= opts.validate_after_idle;
        link_active(s, me, context, t);
        if (!quick && !ping) {
          lk.unlock();
          emit_closed(retired);
          if (obs) obs->on_pool_acquired(std::chrono::nanoseconds{0});
          return s;
        }
        // Check it outside the lock; a dead one is closed and we try again.
        lk.unlock();
        emit_closed(retired);
        retired.clear();
        bool ok = factory->quick_check(*s->conn);
        if (ok && ping) ok = factory->validate(*s->conn, opts.validation_timeout);
        if (ok) {
          if (obs) obs->on_pool_acquired(std::chrono::nanoseconds{0});
          return s;
        }
        lk.lock();
        unlink_active(s);
        --refs;
        --counters.acquire_count;
        retire(s, close_reason::broken, retired);
        if (closed) {
          lk.unlock();
          emit_closed(retired);
          throw usage_error("the pool is closed");
        }
      }
      // Slow path: queue up (FIFO) and, if there is room, open a connection ourselves.
      if (n_waiting >= opts.max_waiters) {
        ++counters.rejections;
        const auto msg = fmt_exhausted();
        lk.unlock();
        emit_closed(retired);
        if (obs) obs->on_pool_rejected();
        throw pool_exhausted(msg, failure_kind::timeout, outcome::not_sent);
      }
      const auto wait_start = clock::now();
      waiter w;
      w.context = context;
      link_waiter(&w);
      ++counters.acquires_waited;
      observer* const ob = obs;
      while (!w.handed) {
        if (closed) {
          unlink_waiter(&w);
          drop_waiter_ref(lk, retired);
          throw usage_error("the pool was closed while waiting for a connection");
        }
        if (may_open()) {
          // Open one ourselves; whoever is first in line gets it (maybe us).
          ++total;
          ++connecting;
          w.connecting = true;
          lk.unlock();
          emit_closed(retired);
          retired.clear();
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
          std::exception_ptr failure;
          auto c = open(std::clamp(left, std::chrono::milliseconds{1}, opts.connect_timeout), failure);
          lk.lock();
          w.connecting = false;
          --connecting;
          if (c) {
            ++counters.connections_created;
            const auto t = now();
            offer(make_slot(std::move(c), t), t, retired);
            nudge_waiter();
            continue;
          }
          --total;
          ++counters.connect_failures;
          nudge_waiter();
          if (w.handed) break;  // someone returned one meanwhile: use it
          unlink_waiter(&w);
          drop_waiter_ref(lk, retired);
          std::rethrow_exception(failure);
        }
        if (w.cv.wait_until(lk, deadline) == std::cv_status::timeout && !w.handed) {
          unlink_waiter(&w);
          ++counters.acquire_timeouts;
          const auto waited = clock::now() - wait_start;
          const auto msg = fmt_timeout();
          drop_waiter_ref(lk, retired);
          if (ob) ob->on_pool_acquire_timeout(waited);
          throw pool_timeout(msg, failure_kind::timeout, outcome::not_sent);
        }
      }
      const auto waited = clock::now() - wait_start;
      counters.acquire_wait_total += waited;
      slot* s = w.handed;
      lk.unlock();
      emit_closed(retired);
      if (ob) ob->on_pool_acquired(waited);
      return s;
    }

    // Drops a waiter's reference and unlocks; the last reference deletes the state, so the
    // caller must not touch members afterwards.
    void drop_waiter_ref(std::unique_lock<std::mutex>& lk, retired_list& retired) {
      const bool last = --refs == 0;
      observer* const ob = obs;
      lk.unlock();
      if (ob) {
        for (const auto& r : retired) ob->on_pool_connection_closed(r.second);
      }
      retired.clear();
      if (last) delete this;
    }

    std::string fmt_timeout() const {
      return "no pooled connection became available within " + std::to_string(opts.acquire_timeout.count()) +
             " ms (active " + std::to_string(active_count) + ", idle " + std::to_string(idle.size()) +
             ", opening " + std::to_string(connecting) + ", waiting " + std::to_string(n_waiting) + ", max " +
             std::to_string(opts.max_size) + ")";
    }
    std::string fmt_exhausted() const {
      return "pool exhausted: " + std::to_string(n_waiting) + " callers already waiting (max_waiters " +
             std::to_string(opts.max_waiters) + "), all " + std::to_string(active_count) +
             " connections busy; rejected without waiting";
    }

    static void release(state* st, slot* s) noexcept {
      // Reset outside the lock: it may need a round trip (ROLLBACK).
      const reset_result r = st->closed ? reset_result::ok : st->factory->reset(*s->conn);
      const auto t = st->now();
      retired_list retired;
      std::unique_lock lk(st->mu);
      const auto used = t - s->acquired_at;
      st->unlink_active(s);
      ++st->counters.release_count;
      if (r == reset_result::broken) st->retire(s, close_reason::broken, retired);
      else if (r == reset_result::failed) st->retire(s, close_reason::reset_failed, retired);
      else if (st->closed) st->retire(s, close_reason::pool_closed, retired);
      else if (st->expired(s, t)) st->retire(s, close_reason::lifetime, retired);
      else st->offer(s, t, retired);
      if (!retired.empty()) st->nudge_waiter();
      observer* obs = st->obs;
      const bool last = --st->refs == 0;
      lk.unlock();
      if (obs) {
        obs->on_pool_released(std::chrono::duration_cast<std::chrono::nanoseconds>(used));
        for (const auto& x : retired) obs->on_pool_connection_closed(x.second);
      }
      retired.clear();
      if (last) delete st;
    }

    void maintain_once() {
      retired_list retired;
      std::vector<leak_report> leaks;
      {
        std::lock_guard lk(mu);
        if (closed) return;
        const auto t = now();
        // Oldest-returned first: idle[0] has waited longest.
        std::vector<slot*> keep;
        keep.reserve(idle.size());
        std::size_t open_count = total - connecting;
        for (slot* s : idle) {
          if (expired(s, t)) {
            retire(s, close_reason::lifetime, retired);
            --open_count;
          } else if (opts.idle_timeout.count() > 0 && t - s->released_at >= opts.idle_timeout &&
                     open_count > opts.min_size) {
            retire(s, close_reason::idle, retired);
            --open_count;
          } else {
            keep.push_back(s);
          }
        }
        idle.swap(keep);
        if (opts.leak_detection_threshold.count() > 0) {
          for (slot* s = active_head; s; s = s->next) {
            if (!s->leak_reported && t - s->acquired_at >= opts.leak_detection_threshold) {
              s->leak_reported = true;
              leaks.push_back({s->id, std::chrono::duration_cast<std::chrono::nanoseconds>(t - s->acquired_at),
                               s->acquirer, s->context ? s->context : ""});
            }
          }
        }
      }
      emit_closed(retired);
      retired.clear();
      if (obs) {
        for (const auto& l : leaks) obs->on_pool_leak_suspected(l);
      }
      // Keep min_size open, a batch of connecting_limit at a time, until a connect fails.
      for (bool failed = false; !failed;) {
        std::size_t to_open = 0;
        {
          std::lock_guard lk(mu);
          while (!closed && !stop_maintenance && total < opts.min_size && connecting < opts.connecting_limit) {
            ++total;
            ++connecting;
            ++to_open;
          }
        }
        if (to_open == 0) break;
        for (std::size_t i = 0; i < to_open; ++i) {
          std::exception_ptr failure;
          auto c = open(opts.connect_timeout, failure);
          std::lock_guard lk(mu);
          --connecting;
          if (c) {
            ++counters.connections_created;
            const auto t = now();
            offer(make_slot(std::move(c), t), t, retired);
          } else {
            --total;
            ++counters.connect_failures;
            failed = true;
          }
        }
        emit_closed(retired);
        retired.clear();
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
      if (opts.leak_detection_threshold.count() > 0) t = std::min(t, std::max(opts.leak_detection_threshold / 2, std::chrono::milliseconds{10}));
      return t;
    }

    void shutdown() {
      {
        std::lock_guard lk(mu);
        stop_maintenance = true;
      }
      maintenance_cv.notify_all();
      if (maintenance.joinable()) maintenance.join();
      retired_list retired;
      std::unique_lock lk(mu);
      closed = true;
      for (slot* s : idle) retire(s, close_reason::pool_closed, retired);
      idle.clear();
      for (waiter* w = wait_head; w; w = w->next) w->cv.notify_one();
      lk.unlock();
      emit_closed(retired);
      retired.clear();
      lk.lock();
      drop_ref(this, lk);
    }
  };

  state* m_state;
};

}  // namespace steadypg
