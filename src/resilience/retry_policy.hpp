#pragma once

// Private: the retry rule of docs/resilience.md as a pure function. client::retry_after
// gathers its inputs (reading the clock, the budget and the random source) and applies the
// decision (breaker, budget, events, sleep); the rule itself reads and changes nothing.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "steadypg/circuit_breaker.hpp"
#include "steadypg/error.hpp"
#include "steadypg/retry.hpp"

namespace steadypg::internal {

/// What the rule needs to know of a failed attempt.
struct error_facts {
  steadypg::outcome outcome = outcome::fatal;
  failure_kind kind = failure_kind::server_error;
  error_origin origin = error_origin::server;
  bool indeterminate_commit = false;                     ///< error::is_indeterminate_commit()
  breaker_verdict breaker = breaker_verdict::no_answer;  ///< breaker_verdict_of(e)
  /// For a lost COMMIT: what the server said of it when asked (src/client/commit_resolver.hpp).
  commit_resolution resolution = commit_resolution::none;
};
/// The facts of `e`.
[[nodiscard]] error_facts error_facts_of(const error& e) noexcept;

/// What the rule needs to know of the call.
struct call_facts {
  bool idempotent = false;   ///< statement{…}.idempotent(): safe to send again when the outcome is unknown
  bool transaction = false;  ///< a whole transaction(fn); its outcome already says whether COMMIT was sent
  /// A primary-routed call of a multi-host client that has not failed over yet: 25006
  /// (wrong_host) means the host was demoted and nothing committed, so it runs once more on the
  /// new primary.
  bool may_fail_over = false;
};

/// Where the call stands after the failed attempt.
struct attempt_facts {
  int attempt = 0;                                    ///< the attempt that failed, from 0
  std::optional<std::chrono::nanoseconds> time_left;  ///< until the call's deadline; none without one
  bool budget_available = true;                       ///< the retry budget has a retry to give
  std::uint64_t random64 = 0;                         ///< the random draw for the backoff's jitter
};

/// Why the rule decided as it did.
enum class retry_reason {
  retry,                 ///< retried after a full-jitter backoff, spending one retry of the budget
  retry_at_once,         ///< a pooled connection found dead before anything was sent: free and immediate
  fail_over,             ///< 25006 on a primary-routed call: once, at once, free of budget, on the new primary
  disabled,              ///< resilience_options.enabled is false: one attempt
  breaker_rejected,      ///< circuit_open: the breaker decides, not the retry layer
  indeterminate_commit,  ///< COMMIT may have been applied: never resent
  not_safe,              ///< sending it again could apply it twice, or would only repeat the failure
  attempts_exhausted,    ///< max_retries retries were made
  budget_exhausted,      ///< the retry budget is spent
  deadline               ///< the backoff plus min_attempt_time would not fit before the deadline
};
/// A short stable name ("not_safe").
[[nodiscard]] std::string_view to_string(retry_reason r) noexcept;

/// The decision for one failed attempt.
struct retry_decision {
  bool retry = false;
  bool spend_budget = false;                             ///< the retry takes one retry from the budget
  std::chrono::nanoseconds delay{0};                     ///< backoff to sleep before the next attempt
  breaker_verdict breaker = breaker_verdict::no_answer;  ///< what the breaker records for the attempt
  retry_reason reason = retry_reason::not_safe;
};

/// The retry rule (docs/resilience.md), in order: disabled, a breaker rejection or a lost
/// COMMIT give up — except a lost COMMIT the server says aborted, which counts as rolled_back
/// (a transaction(fn) runs fn again, as for a connection lost before COMMIT); wrong_host (25006)
/// is retried once, at once and free, when the call may fail over (and time is left), else
/// given up; then the outcome decides whether sending again is safe (not_sent: unless the pool
/// or this side refused it; rolled_back: yes; indeterminate: only when idempotent; otherwise
/// no); then at most `retry.max_retries` retries; a pooled connection found dead before sending
/// is retried at once, free of budget, on the first attempt; every other retry needs the budget
/// and sleeps full_jitter_delay(retry, attempt, random64); none is made that would sleep past
/// the deadline or leave less than min_attempt_time for the attempt.
[[nodiscard]] retry_decision decide_retry(const error_facts& e, const call_facts& call, const attempt_facts& at,
                                          const retry_options& retry, bool enabled) noexcept;

}  // namespace steadypg::internal
