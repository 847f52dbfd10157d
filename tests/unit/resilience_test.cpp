#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "steadypg/circuit_breaker.hpp"
#include "steadypg/error.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/retry.hpp"

#include "error_builder.hpp"

using namespace steadypg;
using namespace std::chrono_literals;

namespace {

struct fake_clock {
  std::atomic<std::int64_t> offset_ns{0};
  std::chrono::steady_clock::time_point base = std::chrono::steady_clock::now();
  void advance(std::chrono::nanoseconds d) { offset_ns += d.count(); }
  std::function<std::chrono::steady_clock::time_point()> source() {
    return [this] { return base + std::chrono::nanoseconds(offset_ns.load()); };
  }
};

struct transitions : observer {
  std::mutex mu;
  std::vector<std::pair<breaker_state, breaker_state>> seen;
  std::atomic<int> rejected{0};
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override {
    std::lock_guard lk(mu);
    seen.emplace_back(from, to);
  }
  void on_breaker_rejected() noexcept override { ++rejected; }
};

breaker_options quick_breaker() {
  breaker_options o;
  o.failure_threshold = 3;
  o.open_duration = 1000ms;
  o.half_open_probes = 2;
  o.probe_timeout = 500ms;
  return o;
}

}  // namespace

TEST(backoff, full_jitter_stays_within_bounds) {
  retry_options o;
  o.base_delay = 100ms;
  o.max_delay = 2000ms;
  std::mt19937_64 rng(42);
  for (int attempt = 0; attempt < 70; ++attempt) {
    const auto ceiling = backoff_ceiling(o, attempt);
    EXPECT_EQ(ceiling, std::min<std::chrono::nanoseconds>(100ms * (1LL << std::min(attempt, 20)), 2000ms));
    for (int i = 0; i < 200; ++i) {
      const auto d = full_jitter_delay(o, attempt, rng());
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d, ceiling);
    }
  }
  EXPECT_EQ(full_jitter_delay(o, 0, 0), 0ns);
  EXPECT_EQ(full_jitter_delay(o, 3, ~std::uint64_t{0}), backoff_ceiling(o, 3));
  // Same random draws, same delays.
  std::mt19937_64 a(7), b(7);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(full_jitter_delay(o, i, a()), full_jitter_delay(o, i, b()));
  // Jitter is real: draws differ and spread over the range.
  std::mt19937_64 r(1);
  std::chrono::nanoseconds lo = 1h, hi = 0ns;
  for (int i = 0; i < 1000; ++i) {
    const auto d = full_jitter_delay(o, 2, r());
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 40ms);
  EXPECT_GT(hi, 360ms);
  o.base_delay = 0ms;
  EXPECT_EQ(full_jitter_delay(o, 5, r()), 0ns);
}

TEST(backoff, options_are_validated) {
  retry_options o;
  o.max_retries = 101;
  EXPECT_THROW(o.validate(), config_error);
  o = {};
  o.max_delay = 10ms;
  o.base_delay = 20ms;
  EXPECT_THROW(o.validate(), config_error);
}

TEST(retry_budget, floor_plus_share_of_successes) {
  fake_clock clk;
  retry_budget_options o;
  o.ratio = 0.1;
  o.min_per_second = 2;
  o.window = 10s;
  retry_budget b(o, clk.source());
  // The floor: 2/s × 10 s = 20 retries with no successes at all.
  int granted = 0;
  while (b.try_spend()) ++granted;
  EXPECT_EQ(granted, 20);
  // 160 successes add 16 more (successes are counted in batches of 16 per thread).
  for (int i = 0; i < 160; ++i) b.record_success();
  granted = 0;
  while (b.try_spend()) ++granted;
  EXPECT_EQ(granted, 16);
  // Everything expires after the window.
  clk.advance(11s);
  EXPECT_DOUBLE_EQ(b.available(), 20.0);
  granted = 0;
  while (b.try_spend()) ++granted;
  EXPECT_EQ(granted, 20);
}

TEST(retry_budget, concurrent_spending_stays_near_the_formula) {
  retry_budget_options o;
  o.ratio = 0.1;
  o.min_per_second = 10;
  o.window = 10s;
  retry_budget b(o);
  for (int i = 0; i < 1600; ++i) b.record_success();
  std::atomic<int> granted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (b.try_spend()) ++granted;
      }
    });
  }
  for (auto& t : ts) t.join();
  const int allowed = 10 * 10 + 160;  // floor × window + ratio × successes
  EXPECT_GE(granted.load(), allowed);
  EXPECT_LE(granted.load(), allowed + 8) << "at most one extra per concurrent spender";
}

TEST(circuit_breaker, opens_after_consecutive_failures_only) {
  fake_clock clk;
  transitions obs;
  circuit_breaker b(quick_breaker(), &obs, clk.source());
  EXPECT_EQ(b.state(), breaker_state::closed);
  b.on_failure(b.acquire());
  b.on_failure(b.acquire());
  b.on_success(b.acquire());  // a success in between resets the count
  b.on_failure(b.acquire());
  b.on_failure(b.acquire());
  EXPECT_EQ(b.state(), breaker_state::closed);
  b.on_failure(b.acquire());
  EXPECT_EQ(b.state(), breaker_state::open);
  ASSERT_EQ(obs.seen.size(), 1u);
  EXPECT_EQ(obs.seen[0], std::make_pair(breaker_state::closed, breaker_state::open));
}

TEST(circuit_breaker, open_rejects_at_once_then_half_open_probes) {
  fake_clock clk;
  transitions obs;
  circuit_breaker b(quick_breaker(), &obs, clk.source());
  for (int i = 0; i < 3; ++i) b.on_failure(b.acquire());
  ASSERT_EQ(b.state(), breaker_state::open);
  try {
    (void)b.acquire();
    FAIL() << "an open breaker let a call through";
  } catch (const circuit_open& e) {
    EXPECT_EQ(e.outcome(), outcome::not_sent);
    EXPECT_NE(std::string(e.what()).find("next probe in"), std::string::npos) << e.what();
  }
  EXPECT_EQ(obs.rejected.load(), 1);
  clk.advance(999ms);
  EXPECT_THROW((void)b.acquire(), circuit_open);
  clk.advance(2ms);
  // Exactly half_open_probes probes; the next caller is rejected, not queued.
  const auto p1 = b.acquire();
  const auto p2 = b.acquire();
  EXPECT_EQ(p1, circuit_breaker::permit::probe);
  EXPECT_EQ(p2, circuit_breaker::permit::probe);
  EXPECT_EQ(b.state(), breaker_state::half_open);
  EXPECT_THROW((void)b.acquire(), circuit_open);
  b.on_success(p1);
  EXPECT_EQ(b.state(), breaker_state::closed);
  b.on_failure(p2);  // a late result after the transition changes nothing
  EXPECT_EQ(b.state(), breaker_state::closed);
  std::lock_guard lk(obs.mu);
  ASSERT_EQ(obs.seen.size(), 3u);
  EXPECT_EQ(obs.seen[1], std::make_pair(breaker_state::open, breaker_state::half_open));
  EXPECT_EQ(obs.seen[2], std::make_pair(breaker_state::half_open, breaker_state::closed));
}

TEST(circuit_breaker, failed_probe_reopens) {
  fake_clock clk;
  circuit_breaker b(quick_breaker(), nullptr, clk.source());
  for (int i = 0; i < 3; ++i) b.on_failure(b.acquire());
  clk.advance(1001ms);
  b.on_failure(b.acquire());
  EXPECT_EQ(b.state(), breaker_state::open);
  EXPECT_THROW((void)b.acquire(), circuit_open) << "open for a full open_duration again";
  clk.advance(1001ms);
  b.on_success(b.acquire());
  EXPECT_EQ(b.state(), breaker_state::closed);
}

TEST(circuit_breaker, hung_probe_does_not_leave_it_half_open) {
  fake_clock clk;
  transitions obs;
  circuit_breaker b(quick_breaker(), &obs, clk.source());
  for (int i = 0; i < 3; ++i) b.on_failure(b.acquire());
  clk.advance(1001ms);
  (void)b.acquire();  // a probe that never reports back
  (void)b.acquire();
  EXPECT_EQ(b.state(), breaker_state::half_open);
  clk.advance(501ms);
  EXPECT_THROW((void)b.acquire(), circuit_open);
  EXPECT_EQ(b.state(), breaker_state::open);
  clk.advance(1001ms);
  b.on_success(b.acquire());
  EXPECT_EQ(b.state(), breaker_state::closed);
}

TEST(circuit_breaker, released_probe_closes_nothing_and_frees_its_slot) {
  fake_clock clk;
  transitions obs;
  breaker_options o = quick_breaker();
  o.half_open_probes = 1;
  circuit_breaker b(o, &obs, clk.source());
  for (int i = 0; i < 3; ++i) b.on_failure(b.acquire());
  clk.advance(1001ms);
  const auto p = b.acquire();
  ASSERT_EQ(p, circuit_breaker::permit::probe);
  EXPECT_THROW((void)b.acquire(), circuit_open) << "the one probe slot is taken";
  b.release(p);  // e.g. the probe timed out waiting for a pooled connection
  EXPECT_EQ(b.state(), breaker_state::half_open);
  const auto again = b.acquire();  // the slot is free again: another caller probes
  EXPECT_EQ(again, circuit_breaker::permit::probe);
  b.record(again, breaker_verdict::no_answer);
  EXPECT_EQ(b.state(), breaker_state::half_open);
  b.record(b.acquire(), breaker_verdict::healthy);
  EXPECT_EQ(b.state(), breaker_state::closed);
  std::lock_guard lk(obs.mu);
  ASSERT_EQ(obs.seen.size(), 3u);  // closed→open, open→half_open, half_open→closed: none from release
  EXPECT_EQ(obs.seen[2], std::make_pair(breaker_state::half_open, breaker_state::closed));
}

TEST(circuit_breaker, released_normal_permit_keeps_the_failure_streak) {
  fake_clock clk;
  circuit_breaker b(quick_breaker(), nullptr, clk.source());
  b.on_failure(b.acquire());
  b.on_failure(b.acquire());
  b.release(b.acquire());
  b.record(b.acquire(), breaker_verdict::no_answer);
  EXPECT_EQ(b.state(), breaker_state::closed);
  b.record(b.acquire(), breaker_verdict::unhealthy);
  EXPECT_EQ(b.state(), breaker_state::open) << "three failures in a row; the releases between them do not count";
}

TEST(circuit_breaker, verdict_of_each_error) {
  auto server = [](const char* state) {
    server_error_fields f;
    f.sqlstate = state;
    f.message = "from the server";
    return sql_error("from the server", failure_kind::server_error, outcome::fatal, f);
  };
  server_error_fields login;
  login.sqlstate = "28P01";
  struct row {
    const char* what;
    std::function<void()> raise;
    breaker_verdict want;
  };
  const std::vector<row> table = {
      {"pool_timeout", [] { throw pool_timeout("acquire timed out", failure_kind::timeout, outcome::not_sent); },
       breaker_verdict::no_answer},
      {"pool_exhausted", [] { throw pool_exhausted("too many waiters", failure_kind::timeout, outcome::not_sent); },
       breaker_verdict::no_answer},
      {"usage_error", [] { throw usage_error("wrong number of parameters"); }, breaker_verdict::no_answer},
      {"config_error", [] { throw config_error("bad option"); }, breaker_verdict::no_answer},
      {"conversion_error", [] { throw conversion_error("not an integer"); }, breaker_verdict::no_answer},
      {"circuit_open", [] { throw circuit_open("open", failure_kind::connect_failed, outcome::not_sent); },
       breaker_verdict::no_answer},
      {"batch deadline", [] { throw timeout_error("batch deadline", failure_kind::usage, outcome::not_sent); },
       breaker_verdict::no_answer},
      {"batch deadline (as the batch raises it)",
       [] {
         throw internal::error_builder(failure_kind::timeout, outcome::not_sent)
             .origin(error_origin::client)
             .build<timeout_error>("the batch timeout passed");
       },
       breaker_verdict::no_answer},
      {"server ended the session (57P01, broken)",
       [] {
         server_error_fields f;
         f.sqlstate = "57P01";
         internal::throw_server_error(f, "execute", {true, false, false}, true);
       },
       breaker_verdict::unhealthy},
      {"indeterminate_commit",
       [] {
         internal::throw_connection_lost("lost", "commit", {true, true, true});
       },
       breaker_verdict::unhealthy},
      {"23505", [&] { throw server("23505"); }, breaker_verdict::healthy},
      {"42P01", [&] { throw server("42P01"); }, breaker_verdict::healthy},
      {"40001", [&] { throw server("40001"); }, breaker_verdict::healthy},
      {"57014", [&] { throw server("57014"); }, breaker_verdict::healthy},
      {"refused login",
       [&] { throw connection_error("password", failure_kind::connect_failed, outcome::fatal, login); },
       breaker_verdict::healthy},
      {"57P01", [&] { throw server("57P01"); }, breaker_verdict::unhealthy},
      {"53300", [&] { throw server("53300"); }, breaker_verdict::unhealthy},
      {"connect failed", [] { throw connection_error("refused", failure_kind::connect_failed, outcome::not_sent); },
       breaker_verdict::unhealthy},
      {"connection lost", [] { throw connection_error("lost", failure_kind::connection_lost, outcome::indeterminate); },
       breaker_verdict::unhealthy},
      {"our timeout", [] { throw timeout_error("query timed out", failure_kind::timeout, outcome::indeterminate); },
       breaker_verdict::unhealthy},
  };
  for (const auto& r : table) {
    try {
      r.raise();
      FAIL() << r.what << " did not throw";
    } catch (const error& e) {
      EXPECT_EQ(breaker_verdict_of(e), r.want) << r.what;
    }
  }
}

TEST(circuit_breaker, manual_force_open_and_reset) {
  fake_clock clk;
  transitions obs;
  circuit_breaker b(quick_breaker(), &obs, clk.source());
  b.force_open();
  EXPECT_EQ(b.state(), breaker_state::forced_open);
  clk.advance(1h);
  EXPECT_THROW((void)b.acquire(), circuit_open) << "forced open never probes";
  b.reset();
  EXPECT_EQ(b.state(), breaker_state::closed);
  EXPECT_EQ(b.acquire(), circuit_breaker::permit::normal);
  std::lock_guard lk(obs.mu);
  ASSERT_EQ(obs.seen.size(), 2u);
  EXPECT_EQ(obs.seen[0].second, breaker_state::forced_open);
  EXPECT_EQ(obs.seen[1].second, breaker_state::closed);
}

TEST(circuit_breaker, concurrent_failures_trip_exactly_once) {
  transitions obs;
  breaker_options o = quick_breaker();
  o.failure_threshold = 50;
  circuit_breaker b(o, &obs);
  std::vector<std::thread> ts;
  for (int t = 0; t < 16; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        try {
          b.on_failure(b.acquire());
        } catch (const circuit_open&) {
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(b.state(), breaker_state::open);
  std::lock_guard lk(obs.mu);
  EXPECT_EQ(obs.seen.size(), 1u);
}

TEST(circuit_breaker, options_are_validated) {
  breaker_options o;
  o.failure_threshold = 0;
  EXPECT_THROW(circuit_breaker{o}, config_error);
  o = {};
  o.open_duration = 10ms;
  EXPECT_THROW(circuit_breaker{o}, config_error);
}
