// Traces through the pure autoscaling controller (src/pool/pool_controller.hpp) with a fake
// clock: one call of step() per simulated second.

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "steadypg/pool.hpp"
#include "pool/pool_controller.hpp"

namespace {

using namespace std::chrono_literals;
using steadypg::internal::controller_decision;
using steadypg::internal::controller_settings;
using steadypg::internal::controller_state;
using steadypg::internal::pool_signals;
using steadypg::internal::scaling_reason;
using clock_type = std::chrono::steady_clock;

// The defaults the pool builds from pool_options (1 s ticks).
controller_settings defaults(std::size_t min_size, std::size_t max_size) {
  controller_settings c;
  c.min_size = min_size;
  c.max_size = max_size;
  return c;
}

struct sim {
  explicit sim(controller_settings c) : cfg(c) {}
  controller_settings cfg;
  controller_state st;
  clock_type::time_point t{std::chrono::hours{1}};
  std::vector<controller_decision> log;

  // One tick: `active` busy of the target, `waiting` queued, healthy 10 ms latency by default.
  controller_decision tick(pool_signals s) {
    t += 1s;
    log.push_back(steadypg::internal::step(cfg, st, s, t));
    return log.back();
  }
  static pool_signals load(std::size_t open, std::size_t active, std::size_t waiting,
                           std::chrono::milliseconds latency = 10ms, std::uint64_t n = 100) {
    pool_signals s;
    s.open = open;
    s.active = active;
    s.waiting = waiting;
    s.wait_p95 = waiting > 0 ? 25ms : 0ms;
    s.latency_sum = latency * static_cast<long>(n);
    s.latency_samples = n;
    s.acquires = n;
    return s;
  }
};

TEST(PoolController, LoadStepGrowsByAQuarterEveryThreeTicksUpToTheCap) {
  sim s(defaults(2, 16));
  std::vector<std::size_t> targets;
  for (int i = 0; i < 40; ++i) {
    const std::size_t target = s.st.target == 0 ? 2 : s.st.target;
    // Everything busy and callers queued: the pool is too small, the server is fine.
    const auto d = s.tick(sim::load(target, target, 20));
    targets.push_back(d.target);
  }
  // 2 → 3 (+1) → 4 (+1) → 5 (+1) → 7 (+2) → 9 (+3) → 12 (+3) → 15 (+4) → 16 (cap)
  const std::vector<std::size_t> grows{3, 4, 5, 7, 9, 12, 15, 16};
  std::vector<std::size_t> seen;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const std::size_t before = i == 0 ? 2 : targets[i - 1];
    if (targets[i] != before) {
      seen.push_back(targets[i]);
      EXPECT_EQ((i + 1) % 3, 0u) << "a grow only every third tick, tick " << i + 1;
    }
  }
  EXPECT_EQ(seen, grows);
  EXPECT_EQ(targets.back(), 16u);
  for (const auto& d : s.log) EXPECT_EQ(d.admission, 0u);
}

// The grow that is due on the tick a stall begins does not happen: that tick's own latency is
// already over twice the long-term level, though the 3 s mean has not crossed it yet.
TEST(PoolController, NoGrowOnATickWhoseLatencyJumps) {
  sim s(defaults(2, 16));
  // Two busy, healthy ticks with callers waiting (the streak builds), then the third one stalls.
  EXPECT_EQ(s.tick(sim::load(2, 2, 20)).target, 2u);
  EXPECT_EQ(s.tick(sim::load(2, 2, 20)).target, 2u);
  const auto d = s.tick(sim::load(2, 2, 20, 45ms));
  EXPECT_FALSE(d.overloaded) << "the 3-tick mean (22 ms) is under 2 × 20 ms (the floor)";
  EXPECT_EQ(d.target, 2u) << "no grow into a latency jump";
  // Healthy again: the streak is still there and the next busy tick grows.
  EXPECT_EQ(s.tick(sim::load(2, 2, 20)).target, 3u);
}

TEST(PoolController, GrowthStopsAtTheServerCap) {
  sim s(defaults(2, 16));
  for (int i = 0; i < 60; ++i) {
    auto sig = sim::load(s.st.target == 0 ? 2 : s.st.target, s.st.target == 0 ? 2 : s.st.target, 30);
    sig.server_cap = 10;
    const auto d = s.tick(sig);
    EXPECT_LE(d.target, 10u);
  }
  EXPECT_EQ(s.st.target, 10u);
  // The server takes more again: growth resumes up to max_size.
  for (int i = 0; i < 30; ++i) {
    auto sig = sim::load(s.st.target, s.st.target, 30);
    sig.server_cap = 40;
    (void)s.tick(sig);
  }
  EXPECT_EQ(s.st.target, 16u);
  // The cap falls under the target: the target follows at once and idle excess is closed.
  auto sig = sim::load(16, 4, 0);
  sig.server_cap = 6;
  const auto d = s.tick(sig);
  EXPECT_EQ(d.target, 6u);
  EXPECT_EQ(d.close_idle, 10u);
  ASSERT_FALSE(d.events.empty());
  EXPECT_EQ(d.events.front().reason, scaling_reason::server_cap);
}

TEST(PoolController, UtilisationBetweenHalfAndSeventyPercentChangesNothing) {
  sim s(defaults(2, 16));
  s.st.target = 10;
  for (int i = 0; i < 300; ++i) {
    const std::size_t active = i % 2 == 0 ? 5 : 7;  // 0.5 … 0.7
    const auto d = s.tick(sim::load(10, active, 0));
    EXPECT_EQ(d.target, 10u) << "tick " << i;
    EXPECT_TRUE(d.events.empty());
    EXPECT_EQ(d.close_idle, 0u);
  }
}

TEST(PoolController, ThirtyIdleSecondsShrinkOneATickToMinSizeNeverBelow) {
  sim s(defaults(2, 16));
  s.st.target = 8;
  std::size_t open = 8;
  int first_shrink = 0;
  for (int i = 1; i <= 120; ++i) {
    const auto d = s.tick(sim::load(open, 0, 0, 10ms, 0));
    if (d.target < open && first_shrink == 0) first_shrink = i;
    EXPECT_LE(d.close_idle, 1u);
    open -= d.close_idle;
    EXPECT_GE(d.target, 2u);
  }
  EXPECT_EQ(first_shrink, 30);
  EXPECT_EQ(s.st.target, 2u);
  EXPECT_EQ(open, 2u);
}

TEST(PoolController, NoShrinkWithinSixtySecondsOfAGrowNoGrowWithinFiveOfAShrink) {
  sim s(defaults(1, 16));
  s.st.target = 4;
  for (int i = 0; i < 3; ++i) (void)s.tick(sim::load(4, 4, 5));
  ASSERT_EQ(s.st.target, 5u);
  const auto grown_at = s.t;
  int shrink_tick = 0;
  for (int i = 0; i < 120 && shrink_tick == 0; ++i) {
    if (s.tick(sim::load(5, 0, 0, 10ms, 0)).target < 5) shrink_tick = i + 1;
  }
  EXPECT_GE(s.t - grown_at, 60s);
  EXPECT_EQ(shrink_tick, 60);
  // Right after that shrink, a load spike may not grow the target for 5 s.
  const auto shrunk_at = s.t;
  while (s.st.target <= 4) {
    (void)s.tick(sim::load(s.st.target, s.st.target, 5));
    ASSERT_LT(s.t - shrunk_at, 30s);
  }
  EXPECT_GE(s.t - shrunk_at, 5s);
}

TEST(PoolController, OverloadFreezesGrowthAndLowersAdmissionThenRecoversByOne) {
  sim s(defaults(2, 32));
  s.st.target = 10;
  for (int i = 0; i < 30; ++i) (void)s.tick(sim::load(10, 5, 0));  // healthy: 10 ms
  // The server stalls: hold times jump to 800 ms while every caller waits.
  std::vector<std::size_t> admission;
  for (int i = 0; i < 6; ++i) {
    const auto d = s.tick(sim::load(10, 10, 40, 800ms, 10));
    EXPECT_TRUE(d.overloaded);
    EXPECT_EQ(d.target, 10u) << "growth frozen";
    admission.push_back(d.admission);
  }
  EXPECT_EQ(admission, (std::vector<std::size_t>{10, 9, 8, 7, 6, 5}));
  // Healthy again; the 3 s window still holds slow ticks at first, then +1 a tick.
  std::vector<std::size_t> after;
  for (int i = 0; i < 12; ++i) after.push_back(s.tick(sim::load(10, 5, 0)).admission);
  std::size_t prev = 5;
  bool lifted = false;
  for (auto a : after) {
    if (a == 0) {
      lifted = true;
      break;
    }
    EXPECT_TRUE(a == prev || a == prev + 1 || (a < prev && a >= prev * 9 / 10)) << a << " after " << prev;
    prev = a;
  }
  EXPECT_TRUE(lifted) << "the limit is lifted once it reaches the target";
  // The long-term level was frozen during the burst: it still says 20 ms (floor over 10 ms).
  EXPECT_NEAR(s.st.long_latency_ms, 20.0, 0.01);
}

TEST(PoolController, TimeoutRateOverFivePercentIsOverload) {
  sim s(defaults(2, 32));
  s.st.target = 8;
  auto sig = sim::load(8, 8, 10);
  sig.acquires = 90;
  sig.timeouts = 10;
  const auto d = s.tick(sig);
  EXPECT_TRUE(d.overloaded);
  EXPECT_EQ(d.admission, 8u);
  auto ok = sim::load(8, 8, 10);
  ok.acquires = 100;
  ok.timeouts = 4;
  controller_state fresh;
  fresh.target = 8;
  EXPECT_FALSE(steadypg::internal::step(s.cfg, fresh, ok, s.t).overloaded);
}

TEST(PoolController, ReserveAfterACallerWaitedReserveTimeoutUnderTheCap) {
  auto cfg = defaults(2, 16);
  cfg.reserve_size = 2;
  cfg.reserve_timeout = 1s;
  cfg.grow_ticks = 1000;  // keep the target where it is
  sim s(cfg);
  s.st.target = 4;
  auto sig = sim::load(4, 4, 3);
  sig.oldest_wait = 500ms;
  EXPECT_EQ(s.tick(sig).reserve, 0u);
  sig.oldest_wait = 1200ms;
  EXPECT_EQ(s.tick(sig).reserve, 2u);
  sig.server_cap = 5;
  EXPECT_EQ(s.tick(sig).reserve, 1u);
}

TEST(PoolOptions, AutoscalingDefaultsAndValidation) {
  steadypg::pool_options o;
  EXPECT_EQ(o.mode, steadypg::pool_mode::fixed);
  EXPECT_EQ(o.scale_interval, 1s);
  EXPECT_EQ(o.scale_down_after, 30s);
  EXPECT_EQ(o.scale_down_hold, 60s);
  EXPECT_EQ(o.scale_up_hold, 5s);
  EXPECT_EQ(o.reserve_size, 0u);
  EXPECT_EQ(o.reserve_timeout, 2s);
  EXPECT_EQ(o.server_cap_margin, 5u);
  EXPECT_EQ(o.server_cap_refresh, 15s);
  EXPECT_NO_THROW(o.validate());
  o.reserve_size = 11;
  EXPECT_THROW(o.validate(), steadypg::config_error);
  o.reserve_size = 0;
  o.scale_interval = 0ms;
  EXPECT_THROW(o.validate(), steadypg::config_error);
  EXPECT_EQ(steadypg::parse_pool_mode("adaptive"), steadypg::pool_mode::adaptive);
  EXPECT_EQ(steadypg::parse_pool_mode("observe"), steadypg::pool_mode::observe);
  EXPECT_FALSE(steadypg::parse_pool_mode("Adaptive").has_value());
}

}  // namespace
