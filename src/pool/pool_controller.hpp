#pragma once

// The autoscaling and overload controller of a pool: a pure function of the pool's state, one
// tick's signals and the time (docs/pool.md, "Autoscaling"). The pool's ticker gathers the
// signals once per scale_interval and applies the decision; nothing here touches a thread, a
// lock or a server, so the unit tests drive it with traces and a fake clock.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace steadypg::internal {

/// The controller's constants, from pool_options (durations already in ticks where a count of
/// ticks is meant).
struct controller_settings {
  std::size_t min_size = 0;
  std::size_t max_size = 10;
  double grow_utilisation = 0.8;                       ///< grow at or above this share of the target busy
  std::chrono::nanoseconds grow_wait_p95{10'000'000};  ///< … and the p95 acquire wait at least this
  int grow_ticks = 3;                                  ///< … for this many ticks in a row
  double shrink_utilisation = 0.3;                     ///< shrink at or below this share busy
  int shrink_ticks = 30;                               ///< … with nobody waiting, this many ticks in a row
  std::chrono::nanoseconds no_shrink_after_grow{std::chrono::seconds{60}};
  std::chrono::nanoseconds no_grow_after_shrink{std::chrono::seconds{5}};
  int short_ticks = 3;                                 ///< short-term latency window
  int long_ticks = 30;                                 ///< long-term latency window (frozen while overloaded)
  double overload_ratio = 2.0;                         ///< short over ratio × long means overloaded
  std::chrono::nanoseconds latency_floor{20'000'000};  ///< the long-term latency is at least this
  double timeout_rate = 0.05;                          ///< more acquire timeouts than this share: overloaded
  double admission_decrease = 0.9;                     ///< the admission limit's factor per overloaded tick
  std::size_t reserve_size = 0;                        ///< extra connections after reserve_timeout
  std::chrono::nanoseconds reserve_timeout{std::chrono::seconds{2}};
};

/// What the pool saw during one tick.
struct pool_signals {
  std::size_t open = 0;                    ///< connections open (idle, busy and parked)
  std::size_t active = 0;                  ///< connections handed out now
  std::size_t waiting = 0;                 ///< callers queued now
  std::size_t connecting = 0;              ///< connects in flight now
  std::chrono::nanoseconds wait_p95{};     ///< 95th percentile of this tick's acquire waits
  std::chrono::nanoseconds oldest_wait{};  ///< how long the first caller in line has waited
  std::chrono::nanoseconds latency_sum{};  ///< hold times finished this tick plus the age of holds still out
  std::uint64_t latency_samples = 0;       ///< how many holds latency_sum covers
  std::uint64_t acquires = 0;              ///< acquires served this tick
  std::uint64_t timeouts = 0;              ///< acquires that timed out this tick
  std::optional<std::size_t> server_cap;   ///< connections the server can give this pool, when known
};

/// Why the controller changed something; also the `reason` label of
/// postgresql_pool_scaling_events_total.
enum class scaling_reason {
  waiters,     ///< target up: busy and callers waited
  idle,        ///< target down: idle for shrink_ticks
  server_cap,  ///< target down: the server cannot take more
  overload,    ///< admission down: the server is the bottleneck
  recovery     ///< admission up (or lifted): latency is back to normal
};
/// "waiters", "idle", "server_cap", "overload", "recovery".
[[nodiscard]] std::string_view to_string(scaling_reason r) noexcept;

/// One change the controller made.
struct scaling_event {
  bool up = false;  ///< direction: "up" or "down"
  scaling_reason reason = scaling_reason::waiters;
  bool admission = false;        ///< the admission limit changed (else the target)
  std::size_t from = 0, to = 0;  ///< 0 for an admission limit means "none"
};

/// What the controller keeps between ticks.
struct controller_state {
  std::size_t target = 0;     ///< 0 before the first tick
  std::size_t admission = 0;  ///< 0: no admission limit
  bool overloaded = false;
  int busy_streak = 0;
  int idle_streak = 0;
  std::optional<std::chrono::steady_clock::time_point> last_grow, last_shrink;
  struct sample {
    std::chrono::nanoseconds sum{};
    std::uint64_t count = 0;
  };
  std::vector<sample> short_window;                  ///< the last short_ticks ticks
  std::vector<sample> long_window;                   ///< the last long_ticks healthy ticks
  double short_latency_ms = 0, long_latency_ms = 0;  ///< the last tick's averages (for logs)
};

/// What to apply after a tick.
struct controller_decision {
  std::size_t target = 0;      ///< connections to hold at most (before the reserve)
  std::size_t admission = 0;   ///< callers allowed to hold a connection at once; 0 none
  std::size_t reserve = 0;     ///< extra connections allowed above target now
  std::size_t close_idle = 0;  ///< idle connections to close now (reason idle_scale_down)
  std::size_t ceiling = 0;     ///< min(max_size, server cap)
  bool overloaded = false;
  std::vector<scaling_event> events;
};

/// One tick: updates `st` and returns what to apply.
[[nodiscard]] controller_decision step(const controller_settings& cfg, controller_state& st, const pool_signals& sig,
                                       std::chrono::steady_clock::time_point now);

}  // namespace steadypg::internal
