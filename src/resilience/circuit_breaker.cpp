#include "steadypg/circuit_breaker.hpp"

#include "check.hpp"

#include <fmt/format.h>

#include "steadypg/error.hpp"
#include "steadypg/observer.hpp"

namespace steadypg {

std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
    case breaker_state::forced_open: return "forced_open";
  }
  return "unknown";
}

breaker_verdict breaker_verdict_of(const error& e) noexcept {
  // Raised here, before or instead of an answer: the caller, the data, the batch's own
  // deadline (origin client), the pool and the breaker itself.
  if (!e.counts_for_breaker()) return breaker_verdict::no_answer;
  if (is_health_failure(e.sqlstate(), e.kind())) return breaker_verdict::unhealthy;
  // What is left is an answer: a server error report (kind server_error) or a refused login.
  return breaker_verdict::healthy;
}

void breaker_options::validate() const {
  using internal::check_range;
  check_range("breaker_options.failure_threshold", failure_threshold, internal::ranges::breaker_threshold);
  check_range("breaker_options.open_duration", open_duration, internal::ranges::breaker_open);
  check_range("breaker_options.half_open_probes", half_open_probes, {1, 10000});
  check_range("breaker_options.probe_timeout", probe_timeout, {1, 3600000, " ms"});
}

circuit_breaker::circuit_breaker(breaker_options options, observer* obs, time_source now)
    : m_options(options), m_observer(obs), m_now(std::move(now)) {
  m_options.validate();
}

breaker_state circuit_breaker::state() const noexcept { return m_state.load(std::memory_order_acquire); }

void circuit_breaker::transition(breaker_state to, clock::time_point t) {
  const breaker_state from = m_state.load(std::memory_order_relaxed);
  if (from == to) return;
  m_state.store(to, std::memory_order_release);
  if (to == breaker_state::open || to == breaker_state::forced_open) m_opened_at = t;
  if (to == breaker_state::half_open) {
    m_half_open_at = t;
    m_probes_in_flight = 0;
  }
  if (to == breaker_state::closed) m_consecutive_failures.store(0, std::memory_order_relaxed);
  if (m_observer) m_observer->on_breaker_transition(from, to);
}

circuit_breaker::permit circuit_breaker::acquire() {
  if (m_state.load(std::memory_order_acquire) == breaker_state::closed) return permit::normal;
  std::lock_guard lk(m_mutex);
  const auto t = now();
  switch (m_state.load(std::memory_order_relaxed)) {
    case breaker_state::closed: return permit::normal;
    case breaker_state::forced_open: break;
    case breaker_state::open:
      if (t - m_opened_at >= m_options.open_duration) {
        transition(breaker_state::half_open, t);
        ++m_probes_in_flight;
        return permit::probe;
      }
      break;
    case breaker_state::half_open:
      // A probe that hangs must not keep the breaker half-open forever.
      if (t - m_half_open_at >= m_options.probe_timeout) {
        transition(breaker_state::open, t);
        break;
      }
      if (m_probes_in_flight < m_options.half_open_probes) {
        ++m_probes_in_flight;
        return permit::probe;
      }
      break;
  }
  const auto st = m_state.load(std::memory_order_relaxed);
  std::string msg;
  if (st == breaker_state::forced_open) {
    msg = "circuit breaker is forced open; call reset() to close it";
  } else if (st == breaker_state::half_open) {
    msg = "circuit breaker is half-open and its probe calls are in flight; failing fast";
  } else {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(m_options.open_duration - (t - m_opened_at));
    msg = fmt::format("circuit breaker is open after {} consecutive failures; failing fast (next probe in {} ms)",
                      m_options.failure_threshold, std::max<long long>(left.count(), 0));
  }
  if (m_observer) m_observer->on_breaker_rejected();
  throw circuit_open(std::move(msg), failure_kind::connect_failed, outcome::not_sent);
}

void circuit_breaker::on_success(permit p) noexcept {
  if (p == permit::normal) {
    // Write only when there is something to clear: no shared-line traffic on the hot path.
    if (m_consecutive_failures.load(std::memory_order_relaxed) != 0) {
      m_consecutive_failures.store(0, std::memory_order_relaxed);
    }
    return;
  }
  std::lock_guard lk(m_mutex);
  if (m_state.load(std::memory_order_relaxed) == breaker_state::half_open) transition(breaker_state::closed, now());
}

void circuit_breaker::on_failure(permit p) noexcept {
  std::lock_guard lk(m_mutex);
  const auto t = now();
  const auto st = m_state.load(std::memory_order_relaxed);
  if (p == permit::probe) {
    if (st == breaker_state::half_open) transition(breaker_state::open, t);
    return;
  }
  const int n = m_consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (st == breaker_state::closed && n >= m_options.failure_threshold) transition(breaker_state::open, t);
}

void circuit_breaker::reachable() noexcept {
  if (m_state.load(std::memory_order_acquire) != breaker_state::open) return;
  std::lock_guard lk(m_mutex);
  if (m_state.load(std::memory_order_relaxed) == breaker_state::open) transition(breaker_state::half_open, now());
}

void circuit_breaker::release(permit p) noexcept {
  if (p == permit::normal) return;
  std::lock_guard lk(m_mutex);
  if (m_state.load(std::memory_order_relaxed) == breaker_state::half_open && m_probes_in_flight > 0) {
    --m_probes_in_flight;
  }
}

void circuit_breaker::record(permit p, breaker_verdict v) noexcept {
  switch (v) {
    case breaker_verdict::healthy: on_success(p); return;
    case breaker_verdict::unhealthy: on_failure(p); return;
    case breaker_verdict::no_answer: release(p); return;
  }
}

std::optional<circuit_breaker::clock::time_point> circuit_breaker::admits_at() const {
  std::lock_guard lk(m_mutex);
  const auto t = now();
  switch (m_state.load(std::memory_order_relaxed)) {
    case breaker_state::closed: return t;
    case breaker_state::open: return std::max(t, m_opened_at + m_options.open_duration);
    case breaker_state::half_open:
      return std::min(t + std::chrono::milliseconds(50), std::max(t, m_half_open_at + m_options.probe_timeout));
    case breaker_state::forced_open: return std::nullopt;
  }
  return std::nullopt;
}

void circuit_breaker::force_open() {
  std::lock_guard lk(m_mutex);
  transition(breaker_state::forced_open, now());
}

void circuit_breaker::reset() {
  std::lock_guard lk(m_mutex);
  transition(breaker_state::closed, now());
  m_consecutive_failures.store(0, std::memory_order_relaxed);
}

}  // namespace steadypg
