#include "retry_policy.hpp"

namespace steadypg::internal {

error_facts error_facts_of(const error& e) noexcept {
  return {e.outcome(), e.kind(), e.origin(), e.is_indeterminate_commit(), breaker_verdict_of(e), e.resolution()};
}

std::string_view to_string(retry_reason r) noexcept {
  switch (r) {
    case retry_reason::retry: return "retry";
    case retry_reason::retry_at_once: return "retry_at_once";
    case retry_reason::fail_over: return "fail_over";
    case retry_reason::disabled: return "disabled";
    case retry_reason::breaker_rejected: return "breaker_rejected";
    case retry_reason::indeterminate_commit: return "indeterminate_commit";
    case retry_reason::not_safe: return "not_safe";
    case retry_reason::attempts_exhausted: return "attempts_exhausted";
    case retry_reason::budget_exhausted: return "budget_exhausted";
    case retry_reason::deadline: return "deadline";
  }
  return "unknown";
}

namespace {

// Whether sending the request again cannot apply it twice and may succeed (DESIGN §4).
bool safe_to_resend(const error_facts& e, const call_facts& call) noexcept {
  switch (e.outcome) {
    case outcome::not_sent:
      // Nothing reached the server — but a pool timeout or a refusal on this side (usage,
      // a batch's own deadline) would only repeat.
      return e.origin != error_origin::pool && e.origin != error_origin::client;
    case outcome::rolled_back: return true;  // the server undid it (a whole transaction re-runs fn)
    case outcome::indeterminate: return call.idempotent;
    case outcome::wrong_host:
    case outcome::fatal:
    case outcome::ok: return false;
  }
  return false;
}

}  // namespace

retry_decision decide_retry(const error_facts& e, const call_facts& call, const attempt_facts& at,
                            const retry_options& retry, bool enabled) noexcept {
  retry_decision d;
  d.breaker = e.breaker;
  auto give_up = [&](retry_reason why) {
    d.reason = why;
    return d;
  };
  if (!enabled) return give_up(retry_reason::disabled);
  if (e.origin == error_origin::breaker) return give_up(retry_reason::breaker_rejected);
  // The server said the lost COMMIT did not commit: nothing of the attempt remains.
  const bool aborted = e.indeterminate_commit && e.resolution == commit_resolution::aborted;
  if (e.indeterminate_commit && !aborted) return give_up(retry_reason::indeterminate_commit);
  if (e.outcome == outcome::wrong_host) {
    // The statement did not commit (a read-only server refused it); the topology finds the
    // new primary, so the one retry needs neither backoff nor budget.
    if (!call.may_fail_over) return give_up(retry_reason::not_safe);
    if (at.time_left && retry.min_attempt_time >= *at.time_left) return give_up(retry_reason::deadline);
    d.retry = true;
    d.reason = retry_reason::fail_over;
    return d;
  }
  if (!aborted && !safe_to_resend(e, call)) return give_up(retry_reason::not_safe);
  if (at.attempt >= retry.max_retries) return give_up(retry_reason::attempts_exhausted);

  const bool at_once = at.attempt == 0 && e.outcome == outcome::not_sent && e.kind == failure_kind::connection_lost;
  std::chrono::nanoseconds delay{0};
  if (!at_once) {
    if (!at.budget_available) return give_up(retry_reason::budget_exhausted);
    delay = full_jitter_delay(retry, at.attempt, at.random64);
  }
  // Never sleep past the deadline, nor start an attempt that cannot finish.
  if (at.time_left && delay + retry.min_attempt_time >= *at.time_left) return give_up(retry_reason::deadline);

  d.retry = true;
  d.spend_budget = !at_once;
  d.delay = delay;
  d.reason = at_once ? retry_reason::retry_at_once : retry_reason::retry;
  return d;
}

}  // namespace steadypg::internal
