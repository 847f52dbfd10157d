// The retry rule (src/retry_policy.hpp) as a table: every outcome × kind × origin the library
// produces, idempotent or not, in a transaction or not, at each attempt, with and without
// budget, with and without a deadline. A change to any row of the rule fails a case here.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "retry_policy.hpp"
#include "error_builder.hpp"

using namespace steadypg;
using namespace steadypg::internal;
using namespace std::chrono_literals;

namespace {

enum class expect { no, yes, at_once };  // not retried / retried after a backoff / retried at once, free

struct rule_row {
  const char* what;
  outcome out;
  failure_kind kind;
  error_origin origin;
  bool commit_in_doubt;
  breaker_verdict verdict;
  expect plain;          // statement without idempotent()
  expect idempotent;     // statement{…}.idempotent()
  retry_reason refusal;  // why it is not retried, where it is not
};

constexpr auto no = expect::no;
constexpr auto yes = expect::yes;
constexpr auto at_once = expect::at_once;
constexpr auto healthy = breaker_verdict::healthy;
constexpr auto unhealthy = breaker_verdict::unhealthy;
constexpr auto no_answer = breaker_verdict::no_answer;
constexpr auto not_safe = retry_reason::not_safe;

// Every outcome × kind with the origin that kind has by default, then the errors whose origin
// is set by their class or by the layer that raised them.
const std::vector<rule_row> k_rules = {
    // what                                outcome                 kind                           origin doubt  breaker
    // plain    idempotent  refusal
    {"not_sent server_error", outcome::not_sent, failure_kind::server_error, error_origin::server, false, healthy, yes,
     yes, not_safe},
    {"not_sent connect_failed", outcome::not_sent, failure_kind::connect_failed, error_origin::connection, false,
     unhealthy, yes, yes, not_safe},
    {"not_sent connection_lost (pooled)", outcome::not_sent, failure_kind::connection_lost, error_origin::connection,
     false, unhealthy, at_once, at_once, not_safe},
    {"not_sent timeout", outcome::not_sent, failure_kind::timeout, error_origin::connection, false, unhealthy, yes, yes,
     not_safe},
    {"not_sent usage", outcome::not_sent, failure_kind::usage, error_origin::client, false, no_answer, no, no,
     not_safe},
    {"rolled_back server_error", outcome::rolled_back, failure_kind::server_error, error_origin::server, false, healthy,
     yes, yes, not_safe},
    {"rolled_back connect_failed", outcome::rolled_back, failure_kind::connect_failed, error_origin::connection, false,
     unhealthy, yes, yes, not_safe},
    {"rolled_back connection_lost", outcome::rolled_back, failure_kind::connection_lost, error_origin::connection,
     false, unhealthy, yes, yes, not_safe},
    {"rolled_back timeout (57014 ours)", outcome::rolled_back, failure_kind::timeout, error_origin::connection, false,
     unhealthy, yes, yes, not_safe},
    {"rolled_back usage", outcome::rolled_back, failure_kind::usage, error_origin::client, false, no_answer, yes, yes,
     not_safe},
    {"indeterminate server_error", outcome::indeterminate, failure_kind::server_error, error_origin::server, false,
     unhealthy, no, yes, not_safe},
    {"indeterminate connect_failed", outcome::indeterminate, failure_kind::connect_failed, error_origin::connection,
     false, unhealthy, no, yes, not_safe},
    {"indeterminate connection_lost", outcome::indeterminate, failure_kind::connection_lost, error_origin::connection,
     false, unhealthy, no, yes, not_safe},
    {"indeterminate timeout", outcome::indeterminate, failure_kind::timeout, error_origin::connection, false, unhealthy,
     no, yes, not_safe},
    {"indeterminate usage", outcome::indeterminate, failure_kind::usage, error_origin::client, false, no_answer, no,
     yes, not_safe},
    {"wrong_host server_error", outcome::wrong_host, failure_kind::server_error, error_origin::server, false, healthy,
     no, no, not_safe},
    {"wrong_host connect_failed", outcome::wrong_host, failure_kind::connect_failed, error_origin::connection, false,
     unhealthy, no, no, not_safe},
    {"wrong_host connection_lost", outcome::wrong_host, failure_kind::connection_lost, error_origin::connection, false,
     unhealthy, no, no, not_safe},
    {"wrong_host timeout", outcome::wrong_host, failure_kind::timeout, error_origin::connection, false, unhealthy, no,
     no, not_safe},
    {"wrong_host usage", outcome::wrong_host, failure_kind::usage, error_origin::client, false, no_answer, no, no,
     not_safe},
    {"fatal server_error", outcome::fatal, failure_kind::server_error, error_origin::server, false, healthy, no, no,
     not_safe},
    {"fatal connect_failed (login)", outcome::fatal, failure_kind::connect_failed, error_origin::connection, false,
     healthy, no, no, not_safe},
    {"fatal connection_lost (copy_to)", outcome::fatal, failure_kind::connection_lost, error_origin::connection, false,
     unhealthy, no, no, not_safe},
    {"fatal timeout (copy_to)", outcome::fatal, failure_kind::timeout, error_origin::connection, false, unhealthy, no,
     no, not_safe},
    {"fatal usage (conversion)", outcome::fatal, failure_kind::usage, error_origin::client, false, no_answer, no, no,
     not_safe},
    {"ok server_error", outcome::ok, failure_kind::server_error, error_origin::server, false, healthy, no, no,
     not_safe},
    {"ok connect_failed", outcome::ok, failure_kind::connect_failed, error_origin::connection, false, unhealthy, no, no,
     not_safe},
    {"ok connection_lost", outcome::ok, failure_kind::connection_lost, error_origin::connection, false, unhealthy, no,
     no, not_safe},
    {"ok timeout", outcome::ok, failure_kind::timeout, error_origin::connection, false, unhealthy, no, no, not_safe},
    {"ok usage", outcome::ok, failure_kind::usage, error_origin::client, false, no_answer, no, no, not_safe},
    // Origins set by the class or the layer.
    {"pool_timeout / pool_exhausted", outcome::not_sent, failure_kind::timeout, error_origin::pool, false, no_answer,
     no, no, not_safe},
    {"batch deadline", outcome::not_sent, failure_kind::timeout, error_origin::client, false, no_answer, no, no,
     not_safe},
    {"circuit_open", outcome::not_sent, failure_kind::connect_failed, error_origin::breaker, false, no_answer, no, no,
     retry_reason::breaker_rejected},
    {"57P01 ended the session", outcome::indeterminate, failure_kind::server_error, error_origin::connection, false,
     unhealthy, no, yes, not_safe},
    {"57P01 ended it inside a tx", outcome::rolled_back, failure_kind::server_error, error_origin::connection, false,
     unhealthy, yes, yes, not_safe},
    {"pipeline_aborted", outcome::not_sent, failure_kind::server_error, error_origin::server, false, healthy, yes, yes,
     not_safe},
    // A lost COMMIT is never resent, idempotent or not.
    {"indeterminate_commit (lost)", outcome::indeterminate, failure_kind::connection_lost, error_origin::connection,
     true, unhealthy, no, no, retry_reason::indeterminate_commit},
    {"indeterminate_commit (57P01)", outcome::indeterminate, failure_kind::server_error, error_origin::connection, true,
     unhealthy, no, no, retry_reason::indeterminate_commit},
    {"indeterminate_commit (callable)", outcome::indeterminate, failure_kind::usage, error_origin::client, true,
     no_answer, no, no, retry_reason::indeterminate_commit},
};

// A lost COMMIT the server was asked about (src/client/commit_resolver.hpp): unknown (and
// committed, which never reaches the rule: the call succeeded) stays in doubt; aborted means
// nothing of the attempt remains, so it runs again like a connection lost before COMMIT.
struct resolved_row {
  rule_row row;
  commit_resolution resolution;
};
const std::vector<resolved_row> k_resolved = {
    {{"indeterminate_commit resolved unknown", outcome::indeterminate, failure_kind::connection_lost,
      error_origin::connection, true, unhealthy, no, no, retry_reason::indeterminate_commit},
     commit_resolution::unknown},
    {{"indeterminate_commit not asked", outcome::indeterminate, failure_kind::connection_lost, error_origin::connection,
      true, unhealthy, no, no, retry_reason::indeterminate_commit},
     commit_resolution::none},
    {{"indeterminate_commit resolved aborted", outcome::indeterminate, failure_kind::connection_lost,
      error_origin::connection, true, unhealthy, yes, yes, not_safe},
     commit_resolution::aborted},
    {{"indeterminate_commit (57P01) resolved aborted", outcome::indeterminate, failure_kind::server_error,
      error_origin::connection, true, unhealthy, yes, yes, not_safe},
     commit_resolution::aborted},
};

retry_options options() {
  retry_options o;
  o.max_retries = 3;
  o.base_delay = 100ms;
  o.max_delay = 1s;
  o.min_attempt_time = 20ms;
  return o;
}

constexpr std::uint64_t k_draw = std::numeric_limits<std::uint64_t>::max() / 2;  // about half the ceiling

// The deadlines tried for each case, relative to what the retry would need (its delay plus
// min_attempt_time).
enum class deadline_case { none, ample, one_short_of_need, exactly_need, just_past_need };

std::optional<std::chrono::nanoseconds> time_left(deadline_case c, std::chrono::nanoseconds need) {
  switch (c) {
    case deadline_case::none: return std::nullopt;
    case deadline_case::ample: return std::chrono::nanoseconds(1h);
    case deadline_case::one_short_of_need: return need - 1ns;
    case deadline_case::exactly_need: return need;
    case deadline_case::just_past_need: return need + 1ns;
  }
  return std::nullopt;
}

bool deadline_allows(deadline_case c) {
  return c == deadline_case::none || c == deadline_case::ample || c == deadline_case::just_past_need;
}

std::string describe(const rule_row& r, bool idem, bool tx, int attempt, bool budget, deadline_case dl) {
  return std::string(r.what) + (idem ? " idempotent" : " plain") + (tx ? " transaction" : "") +
         " attempt=" + std::to_string(attempt) + (budget ? " budget" : " no-budget") +
         " deadline=" + std::to_string(static_cast<int>(dl));
}

// Every combination of call and attempt for one row; returns the number of cases checked.
int check_row(const rule_row& r, commit_resolution resolution) {
  const auto o = options();
  int cases = 0;
  const error_facts e{r.out, r.kind, r.origin, r.commit_in_doubt, r.verdict, resolution};
  for (bool idem : {false, true}) {
    const expect want = idem ? r.idempotent : r.plain;
    for (bool tx : {false, true}) {
      for (int attempt = 0; attempt <= o.max_retries; ++attempt) {
        for (bool budget : {true, false}) {
          for (auto dl : {deadline_case::none, deadline_case::ample, deadline_case::one_short_of_need,
                          deadline_case::exactly_need, deadline_case::just_past_need}) {
            // A dead pooled connection is retried at once only on the first attempt.
            const bool free = want == expect::at_once && attempt == 0;
            const auto delay = free ? 0ns : full_jitter_delay(o, attempt, k_draw);
            const attempt_facts at{attempt, time_left(dl, delay + o.min_attempt_time), budget, k_draw};
            const auto d = decide_retry(e, {idem, tx}, at, o, true);
            const auto label = describe(r, idem, tx, attempt, budget, dl);
            ++cases;
            EXPECT_EQ(d.breaker, r.verdict) << label;

            // The rule in its order: safety, attempt limit, budget (not for a free retry), deadline.
            retry_reason reason = retry_reason::retry;
            if (want == expect::no) {
              reason = r.refusal;
            } else if (attempt >= o.max_retries) {
              reason = retry_reason::attempts_exhausted;
            } else if (!free && !budget) {
              reason = retry_reason::budget_exhausted;
            } else if (!deadline_allows(dl)) {
              reason = retry_reason::deadline;
            } else {
              reason = free ? retry_reason::retry_at_once : retry_reason::retry;
            }
            const bool retried = reason == retry_reason::retry || reason == retry_reason::retry_at_once;
            EXPECT_EQ(d.reason, reason) << label << ": got " << to_string(d.reason);
            EXPECT_EQ(d.retry, retried) << label;
            EXPECT_EQ(d.spend_budget, retried && !free) << label;
            EXPECT_EQ(d.delay, retried ? delay : 0ns) << label;
          }
        }
      }
    }
  }
  return cases;
}

}  // namespace

TEST(retry_policy, every_row_of_the_rule) {
  int cases = 0;
  for (const auto& r : k_rules) cases += check_row(r, commit_resolution::none);
  EXPECT_EQ(cases, static_cast<int>(k_rules.size()) * 2 * 2 * 4 * 2 * 5);
}

TEST(retry_policy, a_lost_commit_the_server_says_aborted_runs_again) {
  int cases = 0;
  for (const auto& r : k_resolved) cases += check_row(r.row, r.resolution);
  EXPECT_EQ(cases, static_cast<int>(k_resolved.size()) * 2 * 2 * 4 * 2 * 5);
}

TEST(retry_policy, disabled_is_one_attempt_whatever_the_error) {
  const auto o = options();
  for (const auto& r : k_rules) {
    const error_facts e{r.out, r.kind, r.origin, r.commit_in_doubt, r.verdict, commit_resolution::none};
    for (bool idem : {false, true}) {
      const auto d = decide_retry(e, {idem, false}, {0, std::nullopt, true, k_draw}, o, false);
      EXPECT_FALSE(d.retry) << r.what;
      EXPECT_FALSE(d.spend_budget) << r.what;
      EXPECT_EQ(d.reason, retry_reason::disabled) << r.what;
      EXPECT_EQ(d.breaker, r.verdict) << r.what << ": the breaker still hears of it";
    }
  }
}

TEST(retry_policy, backoff_is_full_jitter_from_the_draw) {
  const auto o = options();
  const error_facts lost{outcome::rolled_back,       failure_kind::connection_lost, error_origin::connection, false,
                         breaker_verdict::unhealthy, commit_resolution::none};
  // The draw spans [0, ceiling]: 0 sleeps nothing, the largest draw sleeps about the ceiling.
  for (int attempt = 0; attempt < o.max_retries; ++attempt) {
    const auto low = decide_retry(lost, {}, {attempt, std::nullopt, true, 0}, o, true);
    const auto high = decide_retry(lost, {}, {attempt, std::nullopt, true, ~std::uint64_t{0}}, o, true);
    EXPECT_EQ(low.delay, 0ns) << attempt;
    EXPECT_LE(high.delay, backoff_ceiling(o, attempt)) << attempt;
    EXPECT_GE(high.delay, backoff_ceiling(o, attempt) * 99 / 100) << attempt;
  }
  EXPECT_EQ(backoff_ceiling(o, 0), std::chrono::nanoseconds(100ms));
  EXPECT_EQ(backoff_ceiling(o, 2), std::chrono::nanoseconds(400ms));
}

TEST(retry_policy, max_retries_zero_never_retries) {
  auto o = options();
  o.max_retries = 0;
  const error_facts dead{outcome::not_sent,          failure_kind::connection_lost, error_origin::connection, false,
                         breaker_verdict::unhealthy, commit_resolution::none};
  const auto d = decide_retry(dead, {}, {0, std::nullopt, true, k_draw}, o, true);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.reason, retry_reason::attempts_exhausted);
}

// The facts the rule reads come from the error, as each layer raises it.
TEST(retry_policy, facts_of_each_error) {
  struct row {
    const char* what;
    std::function<void()> raise;
    error_origin origin;
    bool commit_in_doubt;
  };
  const std::vector<row> table = {
      {"pool_timeout", [] { throw pool_timeout("acquire timed out", failure_kind::timeout, outcome::not_sent); },
       error_origin::pool, false},
      {"pool_exhausted", [] { throw pool_exhausted("too many waiters", failure_kind::timeout, outcome::not_sent); },
       error_origin::pool, false},
      {"circuit_open", [] { throw circuit_open("open", failure_kind::connect_failed, outcome::not_sent); },
       error_origin::breaker, false},
      {"usage_error", [] { throw usage_error("bad"); }, error_origin::client, false},
      {"conversion_error", [] { throw conversion_error("bad"); }, error_origin::client, false},
      {"config_error", [] { throw config_error("bad"); }, error_origin::client, false},
      {"lost",
       [] {
         throw_connection_lost("lost", "execute", {true, false, false});
       },
       error_origin::connection, false},
      {"lost COMMIT",
       [] {
         throw_connection_lost("lost", "commit", {true, true, true});
       },
       error_origin::connection, true},
      {"23505",
       [] {
         server_error_fields f;
         f.sqlstate = "23505";
         throw_server_error(f, "execute", {true, false, false}, false);
       },
       error_origin::server, false},
      {"57P01 broken",
       [] {
         server_error_fields f;
         f.sqlstate = "57P01";
         throw_server_error(f, "execute", {true, false, false}, true);
       },
       error_origin::connection, false},
  };
  for (const auto& r : table) {
    try {
      r.raise();
      FAIL() << r.what;
    } catch (const error& e) {
      const auto f = error_facts_of(e);
      EXPECT_EQ(f.origin, r.origin) << r.what;
      EXPECT_EQ(f.indeterminate_commit, r.commit_in_doubt) << r.what;
      EXPECT_EQ(f.outcome, e.outcome()) << r.what;
      EXPECT_EQ(f.kind, e.kind()) << r.what;
      EXPECT_EQ(f.breaker, breaker_verdict_of(e)) << r.what;
    }
  }
}

TEST(retry_policy, a_read_only_server_fails_over_once_at_once_and_free_for_primary_routed_calls) {
  const auto o = options();
  const error_facts e{outcome::wrong_host, failure_kind::server_error, error_origin::server, false,
                      breaker_verdict::healthy};
  for (bool tx : {false, true}) {
    for (bool idem : {false, true}) {
      for (int attempt = 0; attempt <= o.max_retries + 1; ++attempt) {
        for (bool budget : {true, false}) {
          const attempt_facts at{attempt, std::nullopt, budget, k_draw};
          call_facts call{idem, tx, true};
          auto d = decide_retry(e, call, at, o, true);
          // Neither the attempt limit nor the budget applies: the statement did not commit and
          // the topology names the new primary.
          EXPECT_TRUE(d.retry);
          EXPECT_EQ(d.reason, retry_reason::fail_over);
          EXPECT_EQ(d.delay, 0ns);
          EXPECT_FALSE(d.spend_budget);
          EXPECT_EQ(d.breaker, breaker_verdict::healthy);
          call.may_fail_over = false;  // the call failed over already, or is routed to a replica
          d = decide_retry(e, call, at, o, true);
          EXPECT_FALSE(d.retry);
          EXPECT_EQ(d.reason, retry_reason::not_safe);
        }
      }
    }
  }
  // Not when the deadline leaves no time for the attempt, nor when resilience is off.
  EXPECT_EQ(decide_retry(e, {false, false, true}, {0, 10ms, true, k_draw}, o, true).reason, retry_reason::deadline);
  EXPECT_EQ(decide_retry(e, {false, false, true}, {0, std::nullopt, true, k_draw}, o, false).reason,
            retry_reason::disabled);
  // Other outcomes are untouched by may_fail_over.
  const error_facts lost{outcome::indeterminate, failure_kind::connection_lost, error_origin::connection, false,
                         breaker_verdict::unhealthy};
  EXPECT_EQ(decide_retry(lost, {false, false, true}, {0, std::nullopt, true, k_draw}, o, true).reason,
            retry_reason::not_safe);
}

// What the client's resolution found travels on the error it gives up with, and the rule reads it.
TEST(retry_policy, the_resolution_of_a_lost_commit_is_a_fact_of_its_error) {
  const server_identity server{42, 3};
  const auto lost = error_builder(failure_kind::connection_lost, outcome::indeterminate)
                        .operation("commit")
                        .broken()
                        .in_doubt_commit(77, server)
                        .build<indeterminate_commit>("lost");
  EXPECT_EQ(lost.xid(), std::optional<std::uint64_t>(77));
  EXPECT_EQ(lost.commit_server(), std::optional<server_identity>(server));
  EXPECT_EQ(lost.resolution(), commit_resolution::none);
  EXPECT_EQ(error_facts_of(lost).resolution, commit_resolution::none);
  for (auto r : {commit_resolution::unknown, commit_resolution::aborted}) {
    try {
      error_builder::raise_with_call_facts(lost, {"transaction", 1, {}, false, r, {}});
    } catch (const indeterminate_commit& e) {
      EXPECT_EQ(e.resolution(), r);
      EXPECT_EQ(e.xid(), std::optional<std::uint64_t>(77)) << "the id stays";
      const auto f = error_facts_of(e);
      EXPECT_EQ(f.resolution, r);
      const auto d = decide_retry(f, {false, true}, {0, std::nullopt, true, k_draw}, options(), true);
      EXPECT_EQ(d.retry, r == commit_resolution::aborted) << to_string(r);
    }
  }
}
