#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "steadypg/error.hpp"
#include "steadypg/observer.hpp"

namespace steadypg {

/// How the pool sizes itself (docs/pool.md, "Autoscaling").
enum class pool_mode {
  fixed,     ///< opens connections on demand up to max_size and keeps them (the default)
  adaptive,  ///< a once-a-second controller sets the target size and, under overload, an admission limit
  observe    ///< the controller runs and exports its target, but the pool behaves as fixed
};
/// "fixed", "adaptive", "observe".
[[nodiscard]] std::string_view to_string(pool_mode m) noexcept;
/// Parses "fixed", "adaptive" or "observe"; nullopt otherwise.
[[nodiscard]] std::optional<pool_mode> parse_pool_mode(std::string_view s) noexcept;

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

  /// Sizing policy (POSTGRESQL_POOL_MODE). Default fixed: none of the settings below apply.
  pool_mode mode = pool_mode::fixed;
  /// Period of the autoscaling controller (adaptive and observe). Default 1 s; 10 ms–60 s.
  std::chrono::milliseconds scale_interval{1000};
  /// Quiet time (utilisation ≤ 0.3, nobody waiting) before the target shrinks by one connection
  /// a tick. Default 30 s; ≥ scale_interval.
  std::chrono::milliseconds scale_down_after{30000};
  /// No shrink this long after a grow. Default 60 s; ≥ 0.
  std::chrono::milliseconds scale_down_hold{60000};
  /// No grow this long after a shrink. Default 5 s; ≥ 0.
  std::chrono::milliseconds scale_up_hold{5000};
  /// Extra connections above the target once a caller has waited reserve_timeout (still under
  /// the server cap). Default 0 (off); ≤ max_size.
  std::size_t reserve_size = 0;
  /// See reserve_size. Default 2 s; > 0.
  std::chrono::milliseconds reserve_timeout{2000};
  /// Connections left free on the server for others: server cap = max_connections −
  /// reserved slots − other sessions − this. Default 5; 0–10000.
  std::size_t server_cap_margin = 5;
  /// How often the server cap is measured, on one of the pool's idle connections. Default 15 s; ≥ 100 ms.
  std::chrono::milliseconds server_cap_refresh{15000};
  /// While an admission limit is in force, callers allowed to wait; one more gets
  /// pool_overloaded at once. Default 0: as many as the admission limit; else 1–1000000.
  std::size_t overload_max_waiters = 0;

  // How long opening one connection may take is the factory's own setting (a client's is
  // connection.connect_timeout); the pool bounds it further by an acquire's time left.

  /// Throws config_error naming the field when a value is out of range.
  void validate() const;
};

/// A snapshot of the pool's state and counters.
struct pool_stats {
  std::size_t active = 0;                         ///< connections handed out
  std::size_t idle = 0;                           ///< connections ready in the pool
  std::size_t total = 0;                          ///< open connections (active + idle)
  std::size_t connecting = 0;                     ///< connections being opened
  std::size_t waiting = 0;                        ///< callers waiting in acquire()
  std::size_t max = 0;                            ///< max_size
  std::uint64_t acquire_count = 0;                ///< successful acquires
  std::uint64_t release_count = 0;                ///< connections returned
  std::chrono::nanoseconds acquire_wait_total{};  ///< time spent waiting, summed over acquires
  std::uint64_t acquires_waited = 0;              ///< acquires that found no idle connection
  std::uint64_t acquire_timeouts = 0;             ///< acquires that gave up at the deadline
  std::uint64_t rejections = 0;                   ///< acquires rejected because max_waiters were queued
  std::uint64_t connections_created = 0;          ///< connections opened
  std::uint64_t connect_failures = 0;             ///< failed attempts to open one
  std::uint64_t closed_broken = 0;                ///< closed: broken or failed validation
  std::uint64_t closed_idle = 0;                  ///< closed: idle_timeout
  std::uint64_t closed_lifetime = 0;              ///< closed: max_lifetime
  std::uint64_t closed_reset_failed = 0;          ///< closed: could not be reset on return
  std::uint64_t closed_pool_closed = 0;           ///< closed: the pool was destroyed
  std::uint64_t closed_scale_down = 0;            ///< closed: the adaptive target shrank (idle_scale_down)
  std::uint64_t overload_rejections = 0;          ///< acquires rejected with pool_overloaded
  pool_mode mode = pool_mode::fixed;              ///< the sizing policy
  std::size_t target_size = 0;                    ///< connections the controller wants (max_size when fixed)
  std::size_t admission_limit = 0;                ///< callers allowed to hold a connection; 0 none
  std::size_t server_cap = 0;                     ///< connections the server can give the pool; 0 unknown
  std::size_t parked = 0;                         ///< idle connections held back by the admission limit
  bool overloaded = false;                        ///< the controller's last verdict

  /// Adds another pool's snapshot (several hosts' pools as one): every count and size summed,
  /// `overloaded` when either is, and `mode` the other's.
  pool_stats& operator+=(const pool_stats& other) noexcept;
};

/// What the server says about its connection slots (for the adaptive pool's server cap).
struct server_capacity {
  std::size_t max_connections = 0;  ///< max_connections
  std::size_t reserved = 0;         ///< superuser_reserved_connections (+ reserved_connections)
  std::size_t client_sessions = 0;  ///< client backends now, the pool's own included
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
  /// Opens a connection within `timeout` (an acquire's time left, or milliseconds::max() for
  /// the maintenance thread) and within the factory's own connect timeout; throws (for
  /// example connection_error) on failure.
  virtual std::unique_ptr<Conn> connect(std::chrono::milliseconds timeout) = 0;
  /// Cheap check without a round trip; false closes the connection (reason broken).
  virtual bool quick_check(Conn& c) noexcept = 0;
  /// A round trip within `timeout`; false closes the connection (reason broken).
  virtual bool validate(Conn& c, std::chrono::milliseconds timeout) noexcept = 0;
  /// Brings a returned connection back to idle (roll back an open transaction …).
  virtual reset_result reset(Conn& c) noexcept = 0;
  /// Asks the server how many connection slots it has and uses (adaptive pools, every
  /// server_cap_refresh); nullopt when unknown. The default knows nothing.
  virtual std::optional<server_capacity> capacity(Conn& c, std::chrono::milliseconds timeout) noexcept {
    (void)c, (void)timeout;
    return std::nullopt;
  }
};

/// A bounded, thread-safe, FIFO-fair pool of Conn. acquire() returns an RAII handle that puts
/// the connection back when destroyed. A maintenance thread keeps min_size warm, closes idle
/// and old connections and reports leaks; it never holds the lock while talking to a server.
///
/// Only the interface is public: the library compiles the pool once, for
/// basic_pool<connection>, the pool a client uses (docs/pool.md, "A pool of anything").
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
    handle(handle&& o) noexcept : m_slot(std::exchange(o.m_slot, nullptr)), m_conn(std::exchange(o.m_conn, nullptr)) {}
    handle& operator=(handle&& o) noexcept {
      if (this != &o) {
        release();
        m_slot = std::exchange(o.m_slot, nullptr);
        m_conn = std::exchange(o.m_conn, nullptr);
      }
      return *this;
    }
    handle(const handle&) = delete;
    handle& operator=(const handle&) = delete;
    ~handle() { release(); }

    /// The connection.
    [[nodiscard]] Conn& operator*() const noexcept { return *m_conn; }
    [[nodiscard]] Conn* operator->() const noexcept { return m_conn; }
    [[nodiscard]] Conn& get() const noexcept { return *m_conn; }
    /// True while a connection is held.
    explicit operator bool() const noexcept { return m_slot != nullptr; }
    /// The pool's id for this connection (stable for its lifetime); 0 when none is held.
    [[nodiscard]] std::uint64_t id() const noexcept;
    /// Returns the connection now.
    void release() noexcept {
      if (m_slot) basic_pool::release_slot(m_slot);
      m_slot = nullptr;
      m_conn = nullptr;
    }

   private:
    friend class basic_pool;
    handle(slot* s, Conn* c) noexcept : m_slot(s), m_conn(c) {}
    slot* m_slot = nullptr;  // knows its pool
    Conn* m_conn = nullptr;  // the slot's connection, cached so that using it needs no pool internals
  };

  /// Validates the options and starts the maintenance thread (which opens min_size
  /// connections in the background).
  basic_pool(pool_options options, std::shared_ptr<pool_factory<Conn>> factory, observer* obs = nullptr,
             time_source now = {});

  /// Stops maintenance, wakes waiters (they get usage_error), closes idle connections.
  /// Connections still out are closed when returned; their handles stay valid.
  ~basic_pool();

  basic_pool(const basic_pool&) = delete;
  basic_pool& operator=(const basic_pool&) = delete;

  /// Borrows a connection, waiting up to acquire_timeout. Throws pool_timeout at the deadline,
  /// pool_exhausted when max_waiters are already queued, or the connect error when this caller
  /// had to open a connection and could not. `context` (a string literal, e.g. an operation
  /// name) is reported by leak detection.
  [[nodiscard]] handle acquire(const char* context = nullptr);
  /// Same with an explicit deadline.
  [[nodiscard]] handle acquire_until(clock::time_point deadline, const char* context = nullptr);

  /// A snapshot of the state and counters.
  [[nodiscard]] pool_stats stats() const;
  /// The options in effect.
  [[nodiscard]] const pool_options& options() const noexcept;
  /// Runs one maintenance pass now (also done every health_check_interval).
  void maintain();

 private:
  static void release_slot(slot* s) noexcept;

  // Outlives the pool while handles are out; who deletes it, and why it is not
  // reference-counted, is written above basic_pool::state (src/pool/pool_state.hpp).
  state* m_state = nullptr;
};

class connection;
// Compiled once in the library (src/pool/basic_pool.cpp); including this header never instantiates it.
extern template class basic_pool<connection>;

}  // namespace steadypg
