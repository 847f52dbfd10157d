#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>

namespace steadypg {

class error;
class observer;

/// Circuit breaker states.
enum class breaker_state {
  closed,      ///< calls flow; consecutive health failures are counted
  open,        ///< calls fail at once with circuit_open
  half_open,   ///< a bounded number of probe calls decide: success closes, failure re-opens
  forced_open  ///< opened by hand (force_open()); only reset() closes it
};

/// A short stable name ("closed", "open", "half_open", "forced_open").
[[nodiscard]] std::string_view to_string(breaker_state s) noexcept;

/// What a call's failure says about the server, for the breaker.
enum class breaker_verdict {
  healthy,    ///< the server answered (23xxx, 42xxx, 40001, a refused login …): as good as a success
  unhealthy,  ///< connect error, lost connection, our own timeout, 57P01/57P02/57P03, 53300
  no_answer   ///< raised on this side without an answer: pool timeout, usage, config or conversion
              ///< error, circuit_open, the batch's own deadline; counts neither way
};

/// The breaker's reading of a failed call (a pure function of the error): no_answer unless
/// e.counts_for_breaker(); then unhealthy for a health failure (is_health_failure()), else healthy.
[[nodiscard]] breaker_verdict breaker_verdict_of(const error& e) noexcept;

/// Breaker configuration (docs/resilience.md). Plain aggregate; validate() throws config_error.
struct breaker_options {
  /// Consecutive health failures that open the breaker. Default 5
  /// (POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD); 1–10000.
  int failure_threshold = 5;
  /// How long it stays open before letting probes through. Default 30000 ms
  /// (POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT); 100–3600000 ms.
  std::chrono::milliseconds open_duration{30000};
  /// Probe calls let through while half-open; more callers are rejected. Default 1; ≥ 1.
  int half_open_probes = 1;
  /// A half-open breaker whose probes have not finished after this long opens again (a hung
  /// probe cannot leave it stuck half-open). Default 10000 ms; 1–3600000 ms. A client uses at
  /// least twice its connection.connect_timeout, so that a probe has time to connect.
  std::chrono::milliseconds probe_timeout{10000};

  /// Throws config_error naming the field.
  void validate() const;
};

/// A per-endpoint circuit breaker. Thread-safe; the closed-state hot path is two atomic loads.
/// Every transition is reported through observer::on_breaker_transition.
class circuit_breaker {
 public:
  using clock = std::chrono::steady_clock;
  using time_source = std::function<clock::time_point()>;

  /// What acquire() granted: a normal call or one of the half-open probes.
  enum class permit { normal, probe };

  explicit circuit_breaker(breaker_options options = {}, observer* obs = nullptr, time_source now = {});

  /// Lets a call through, or throws circuit_open at once (no connect attempt, no waiting).
  [[nodiscard]] permit acquire();
  /// The call succeeded (or failed in a way that says the server is healthy: 23xxx, 42xxx …).
  void on_success(permit p) noexcept;
  /// The call failed in a way that says the server is unhealthy (see is_health_failure()).
  void on_failure(permit p) noexcept;
  /// The call ended without an answer from the server (breaker_verdict::no_answer): a probe
  /// permit is given back for another caller; no transition, the failure count is unchanged.
  void release(permit p) noexcept;
  /// on_success, on_failure or release, as `v` says.
  void record(permit p, breaker_verdict v) noexcept;

  /// The current state (an open breaker past open_duration reports half_open only once a
  /// call has moved it there).
  [[nodiscard]] breaker_state state() const noexcept;
  /// True while open or forced open (calls are refused, but for a probe once open_duration ends).
  [[nodiscard]] bool is_open() const noexcept {
    const auto s = state();
    return s == breaker_state::open || s == breaker_state::forced_open;
  }
  /// When acquire() may let a call through again: now while closed; the end of the open
  /// period while open; a little later while half-open (its probes decide); nullopt while
  /// forced open. For callers that would rather wait than fail (batches).
  [[nodiscard]] std::optional<clock::time_point> admits_at() const;
  /// An outside check (a multi-host client's topology prober) reached the server: an open
  /// breaker lets its probe calls through now rather than at the end of open_duration, so that
  /// calls resume as soon as the server accepts connections again. No effect in other states.
  void reachable() noexcept;
  /// Opens it until reset().
  void force_open();
  /// Closes it and clears the failure count.
  void reset();
  [[nodiscard]] const breaker_options& options() const noexcept { return m_options; }

 private:
  void transition(breaker_state to, clock::time_point now);  // lock held
  clock::time_point now() const { return m_now ? m_now() : clock::now(); }

  breaker_options m_options;
  observer* m_observer;
  time_source m_now;
  std::atomic<breaker_state> m_state{breaker_state::closed};
  std::atomic<int> m_consecutive_failures{0};
  mutable std::mutex m_mutex;  // transitions and half-open bookkeeping
  clock::time_point m_opened_at{};
  clock::time_point m_half_open_at{};
  int m_probes_in_flight = 0;
};

}  // namespace steadypg
