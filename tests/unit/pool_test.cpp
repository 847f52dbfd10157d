#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "pool/basic_pool_impl.hpp"  // the pool instantiated with fakes
#include "steadypg/pool.hpp"

using namespace steadypg;
using namespace std::chrono_literals;

namespace {

struct fake_conn {
  int id = 0;
  bool alive = true;
  bool broken = false;
  bool in_tx = false;
};

struct fake_factory : pool_factory<fake_conn> {
  std::atomic<int> created{0};
  std::atomic<int> validations{0};
  std::atomic<int> rollbacks{0};
  std::atomic<bool> fail_connect{false};
  std::atomic<bool> refuse_login{false};
  std::atomic<int> attempts{0};
  std::atomic<bool> rollback_fails{false};
  std::chrono::milliseconds connect_delay{0};
  std::atomic<int> connecting_now{0};
  std::atomic<int> max_connecting{0};

  std::unique_ptr<fake_conn> connect(std::chrono::milliseconds) override {
    const int now = ++connecting_now;
    int seen = max_connecting.load();
    while (now > seen && !max_connecting.compare_exchange_weak(seen, now)) {
    }
    if (connect_delay.count() > 0) std::this_thread::sleep_for(connect_delay);
    --connecting_now;
    ++attempts;
    if (refuse_login) {
      server_error_fields f;
      f.sqlstate = "28P01";
      throw connection_error("password authentication failed", failure_kind::connect_failed, outcome::fatal, f);
    }
    if (fail_connect)
      throw connection_error("simulated connect failure", failure_kind::connect_failed, outcome::not_sent);
    auto c = std::make_unique<fake_conn>();
    c->id = ++created;
    return c;
  }
  bool quick_check(fake_conn& c) noexcept override { return c.alive; }
  bool validate(fake_conn& c, std::chrono::milliseconds) noexcept override {
    ++validations;
    return c.alive;
  }
  reset_result reset(fake_conn& c) noexcept override {
    if (c.broken) return reset_result::broken;
    if (c.in_tx) {
      ++rollbacks;
      if (rollback_fails) return reset_result::failed;
      c.in_tx = false;
    }
    return reset_result::ok;
  }
};

struct fake_clock {
  std::atomic<std::int64_t> offset_ns{0};
  std::chrono::steady_clock::time_point base = std::chrono::steady_clock::now();
  void advance(std::chrono::nanoseconds d) { offset_ns += d.count(); }
  basic_pool<fake_conn>::time_source source() {
    return [this] { return base + std::chrono::nanoseconds(offset_ns.load()); };
  }
};

struct recording_observer : observer {
  std::mutex mu;
  std::vector<close_reason> closed;
  std::vector<leak_report> leaks;
  std::vector<std::string> leak_contexts;
  std::atomic<int> acquired{0}, released{0}, timeouts{0}, rejected{0}, created{0}, connect_failed{0};
  void on_pool_acquired(std::chrono::nanoseconds) noexcept override { ++acquired; }
  void on_pool_released(std::chrono::nanoseconds) noexcept override { ++released; }
  void on_pool_connection_created(std::chrono::nanoseconds) noexcept override { ++created; }
  void on_pool_connect_failed(const error&) noexcept override { ++connect_failed; }
  void on_pool_connection_closed(close_reason r) noexcept override {
    std::lock_guard lk(mu);
    closed.push_back(r);
  }
  void on_pool_acquire_timeout(std::chrono::nanoseconds) noexcept override { ++timeouts; }
  void on_pool_rejected() noexcept override { ++rejected; }
  void on_pool_leak_suspected(const leak_report& r) noexcept override {
    std::lock_guard lk(mu);
    leaks.push_back(r);
    leak_contexts.emplace_back(r.context);
  }
  std::size_t closed_count(close_reason r) {
    std::lock_guard lk(mu);
    return static_cast<std::size_t>(std::count(closed.begin(), closed.end(), r));
  }
};

pool_options small(std::size_t max) {
  pool_options o;
  o.max_size = max;
  o.acquire_timeout = 2000ms;
  o.quick_check_after_idle = std::chrono::milliseconds::max();
  o.validate_after_idle = std::chrono::milliseconds::max();
  o.health_check_interval = 3600s;  // maintenance driven by the tests
  return o;
}

template <typename Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (p()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return p();
}

}  // namespace

TEST(pool, acquire_release_and_reuse) {
  auto f = std::make_shared<fake_factory>();
  basic_pool<fake_conn> pool(small(2), f);
  int first = 0;
  {
    auto h = pool.acquire();
    first = h->id;
    EXPECT_EQ(pool.stats().active, 1u);
  }
  auto s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(s.total, 1u);
  auto h = pool.acquire();
  EXPECT_EQ(h->id, first) << "an idle connection is reused";
  EXPECT_EQ(f->created.load(), 1);
  h.release();
  EXPECT_FALSE(h);
  s = pool.stats();
  EXPECT_EQ(s.acquire_count, 2u);
  EXPECT_EQ(s.release_count, 2u);
  EXPECT_EQ(s.connections_created, 1u);
  EXPECT_EQ(s.max, 2u);
}

TEST(pool, bounded_and_times_out) {
  auto f = std::make_shared<fake_factory>();
  recording_observer obs;
  auto o = small(2);
  o.acquire_timeout = 150ms;
  basic_pool<fake_conn> pool(o, f, &obs);
  auto a = pool.acquire();
  auto b = pool.acquire();
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)pool.acquire();
    FAIL() << "a third connection was handed out";
  } catch (const pool_timeout& e) {
    EXPECT_NE(std::string(e.what()).find("150 ms"), std::string::npos) << e.what();
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 150ms + 2000ms);
  EXPECT_EQ(f->created.load(), 2);
  EXPECT_EQ(pool.stats().acquire_timeouts, 1u);
  EXPECT_EQ(pool.stats().waiting, 0u);
  EXPECT_EQ(obs.timeouts.load(), 1);
}

TEST(pool, waiter_cap_rejects_at_once) {
  auto f = std::make_shared<fake_factory>();
  recording_observer obs;
  auto o = small(1);
  o.max_waiters = 1;
  o.acquire_timeout = 3000ms;
  basic_pool<fake_conn> pool(o, f, &obs);
  auto held = pool.acquire();
  std::thread waiter([&] { auto h = pool.acquire(); });
  ASSERT_TRUE(eventually([&] { return pool.stats().waiting == 1; }));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)pool.acquire(), pool_exhausted);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms) << "rejected without waiting";
  EXPECT_EQ(pool.stats().rejections, 1u);
  EXPECT_EQ(obs.rejected.load(), 1);
  held.release();
  waiter.join();
}

TEST(pool, fifo_fairness) {
  auto f = std::make_shared<fake_factory>();
  basic_pool<fake_conn> pool(small(1), f);
  auto held = pool.acquire();
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      auto h = pool.acquire();
      std::lock_guard lk(mu);
      order.push_back(i);
    });
    ASSERT_TRUE(eventually([&] { return pool.stats().waiting == static_cast<std::size_t>(i + 1); }));
  }
  held.release();
  for (auto& t : threads) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(pool.stats().acquires_waited, 7u);  // the six, plus the first (it had to open a connection)
  EXPECT_GT(pool.stats().acquire_wait_total.count(), 0);
}

TEST(pool, lifetime_expiry_replaces_connections) {
  auto f = std::make_shared<fake_factory>();
  fake_clock clk;
  recording_observer obs;
  auto o = small(2);
  o.max_lifetime = 1000ms;
  o.lifetime_jitter = 0.0;
  basic_pool<fake_conn> pool(o, f, &obs, clk.source());
  int first = pool.acquire()->id;
  clk.advance(999ms);
  EXPECT_EQ(pool.acquire()->id, first);
  clk.advance(2ms);
  auto h = pool.acquire();
  EXPECT_NE(h->id, first) << "an expired connection is replaced, not handed out";
  EXPECT_EQ(pool.stats().closed_lifetime, 1u);
  // Expiry is also enforced on release.
  clk.advance(1001ms);
  h.release();
  EXPECT_EQ(pool.stats().closed_lifetime, 2u);
  EXPECT_EQ(pool.stats().idle, 0u);
  EXPECT_EQ(obs.closed_count(close_reason::lifetime), 2u);
}

TEST(pool, lifetime_jitter_spreads_expiry) {
  auto f = std::make_shared<fake_factory>();
  fake_clock clk;
  auto o = small(40);
  o.max_lifetime = 10000ms;
  o.lifetime_jitter = 0.5;
  basic_pool<fake_conn> pool(o, f, nullptr, clk.source());
  {
    std::vector<basic_pool<fake_conn>::handle> hs;
    for (int i = 0; i < 40; ++i) hs.push_back(pool.acquire());
  }
  ASSERT_EQ(pool.stats().idle, 40u);
  clk.advance(7500ms);  // halfway through the jitter window
  pool.maintain();
  const auto expired = pool.stats().closed_lifetime;
  EXPECT_GT(expired, 3u) << "some expire early";
  EXPECT_LT(expired, 37u) << "but not all at once";
  clk.advance(2600ms);
  pool.maintain();
  EXPECT_EQ(pool.stats().closed_lifetime, 40u);
}

TEST(pool, idle_expiry_keeps_min_size) {
  auto f = std::make_shared<fake_factory>();
  fake_clock clk;
  auto o = small(4);
  o.min_size = 1;
  o.idle_timeout = 1000ms;
  o.max_lifetime = 0ms;
  basic_pool<fake_conn> pool(o, f, nullptr, clk.source());
  ASSERT_TRUE(eventually([&] { return pool.stats().total == 1; }));
  {
    std::vector<basic_pool<fake_conn>::handle> hs;
    for (int i = 0; i < 4; ++i) hs.push_back(pool.acquire());
  }
  EXPECT_EQ(pool.stats().idle, 4u);
  clk.advance(999ms);
  pool.maintain();
  EXPECT_EQ(pool.stats().idle, 4u);
  clk.advance(2ms);
  pool.maintain();
  EXPECT_EQ(pool.stats().closed_idle, 3u);
  EXPECT_EQ(pool.stats().total, 1u) << "min_size stays open";
}

TEST(pool, min_size_is_kept_warm) {
  auto f = std::make_shared<fake_factory>();
  auto o = small(5);
  o.min_size = 3;
  o.health_check_interval = 20ms;
  basic_pool<fake_conn> pool(o, f);
  ASSERT_TRUE(eventually([&] { return pool.stats().total == 3 && pool.stats().idle == 3; }));
  // A connection lost is replaced by the maintenance thread.
  {
    auto h = pool.acquire();
    h->broken = true;
  }
  EXPECT_EQ(pool.stats().closed_broken, 1u);
  ASSERT_TRUE(eventually([&] { return pool.stats().total == 3; }));
  EXPECT_EQ(f->created.load(), 4);
}

TEST(pool, broken_connection_is_never_handed_out_again) {
  auto f = std::make_shared<fake_factory>();
  recording_observer obs;
  basic_pool<fake_conn> pool(small(1), f, &obs);
  int id = 0;
  {
    auto h = pool.acquire();
    id = h->id;
    h->broken = true;
  }
  EXPECT_EQ(pool.stats().closed_broken, 1u);
  EXPECT_EQ(pool.stats().total, 0u);
  EXPECT_NE(pool.acquire()->id, id);
  EXPECT_EQ(obs.closed_count(close_reason::broken), 1u);
}

TEST(pool, reset_policy_on_return) {
  auto f = std::make_shared<fake_factory>();
  basic_pool<fake_conn> pool(small(1), f);
  {
    auto h = pool.acquire();
    h->in_tx = true;
  }
  EXPECT_EQ(f->rollbacks.load(), 1);
  EXPECT_EQ(pool.stats().idle, 1u) << "rolled back and kept";
  f->rollback_fails = true;
  {
    auto h = pool.acquire();
    h->in_tx = true;
  }
  EXPECT_EQ(pool.stats().closed_reset_failed, 1u);
  EXPECT_EQ(pool.stats().total, 0u);
}

TEST(pool, validation_replaces_dead_idle_connection_invisibly) {
  auto f = std::make_shared<fake_factory>();
  fake_clock clk;
  auto o = small(1);
  o.validate_after_idle = 500ms;
  basic_pool<fake_conn> pool(o, f, nullptr, clk.source());
  int id = 0;
  {
    auto h = pool.acquire();
    id = h->id;
  }
  {
    auto h = pool.acquire();  // idle 0 ms: no ping
    EXPECT_EQ(h->id, id);
    h->alive = false;  // the server ends the session while it sits idle
  }
  EXPECT_EQ(f->validations.load(), 0);
  clk.advance(600ms);
  int replacement = 0;
  {
    auto h = pool.acquire();  // checked, found dead, replaced: no error for the caller
    replacement = h->id;
    EXPECT_NE(replacement, id);
  }
  EXPECT_EQ(pool.stats().closed_broken, 1u);
  EXPECT_EQ(pool.stats().acquire_count, 3u);
  // A live connection idle past validate_after_idle is pinged, and kept.
  clk.advance(600ms);
  EXPECT_EQ(pool.acquire()->id, replacement);
  EXPECT_EQ(f->validations.load(), 1);
}

TEST(pool, leak_detection_reports_holder) {
  auto f = std::make_shared<fake_factory>();
  recording_observer obs;
  auto o = small(2);
  o.leak_detection_threshold = 50ms;
  basic_pool<fake_conn> pool(o, f, &obs);
  std::thread::id holder;
  std::thread t([&] {
    holder = std::this_thread::get_id();
    auto h = pool.acquire("nightly-report");
    ASSERT_TRUE(eventually([&] {
      std::lock_guard lk(obs.mu);
      return !obs.leaks.empty();
    }));
  });
  t.join();
  std::lock_guard lk(obs.mu);
  ASSERT_EQ(obs.leaks.size(), 1u) << "reported once per hold";
  EXPECT_EQ(obs.leak_contexts[0], "nightly-report");
  EXPECT_EQ(obs.leaks[0].acquirer, holder);
  EXPECT_GE(obs.leaks[0].held_for, 50ms);
}

TEST(pool, destroying_the_pool_with_connections_out_is_safe) {
  auto f = std::make_shared<fake_factory>();
  recording_observer obs;
  basic_pool<fake_conn>::handle survivor;
  {
    basic_pool<fake_conn> pool(small(3), f, &obs);
    auto idle_one = pool.acquire();
    survivor = pool.acquire();
    idle_one.release();
  }
  EXPECT_EQ(obs.closed_count(close_reason::pool_closed), 1u);
  EXPECT_TRUE(survivor);
  survivor->id += 0;   // still usable
  survivor.release();  // closed now; the pool's observer is no longer called (it may be gone)
  EXPECT_EQ(obs.closed_count(close_reason::pool_closed), 1u);
  EXPECT_FALSE(survivor);
}

TEST(pool, waiters_are_woken_when_the_pool_closes) {
  auto f = std::make_shared<fake_factory>();
  auto pool = std::make_unique<basic_pool<fake_conn>>(small(1), f);
  auto held = pool->acquire();
  std::atomic<bool> got_error{false};
  std::thread t([&] {
    try {
      (void)pool->acquire();
    } catch (const usage_error&) {
      got_error = true;
    }
  });
  ASSERT_TRUE(eventually([&] { return pool->stats().waiting == 1; }));
  // Destroy on another thread while the waiter waits: it must wake with an error.
  std::thread closer([&] { pool.reset(); });
  closer.join();
  t.join();
  EXPECT_TRUE(got_error);
  held.release();
}

TEST(pool, connect_failure_reaches_the_caller) {
  auto f = std::make_shared<fake_factory>();
  recording_observer obs;
  f->fail_connect = true;
  basic_pool<fake_conn> pool(small(2), f, &obs);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)pool.acquire(), connection_error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms) << "fails fast, not at the acquire deadline";
  EXPECT_EQ(pool.stats().connect_failures, 1u);
  EXPECT_EQ(pool.stats().total, 0u);
  EXPECT_EQ(pool.stats().waiting, 0u);
  EXPECT_EQ(obs.connect_failed.load(), 1);
  f->fail_connect = false;
  EXPECT_NO_THROW((void)pool.acquire());
}

TEST(pool, a_failed_connect_wakes_the_next_waiter) {
  // Many callers, a connect limit of 2 and a server that refuses: every caller gets the
  // connect error (each queued caller is woken to try in turn), none waits out its deadline.
  auto f = std::make_shared<fake_factory>();
  f->fail_connect = true;
  f->connect_delay = 5ms;
  auto o = small(10);
  o.connecting_limit = 2;
  o.acquire_timeout = 3000ms;
  basic_pool<fake_conn> pool(o, f);
  std::atomic<int> connect_errors{0}, timeouts{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 5; ++k) {
        try {
          (void)pool.acquire();
        } catch (const pool_timeout&) {
          ++timeouts;
        } catch (const connection_error&) {
          ++connect_errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(timeouts.load(), 0) << "a queued caller was left asleep after a failed connect";
  EXPECT_EQ(connect_errors.load(), 40);
  EXPECT_EQ(pool.stats().waiting, 0u);
}

TEST(pool, connecting_limit_is_respected) {
  auto f = std::make_shared<fake_factory>();
  f->connect_delay = 30ms;
  auto o = small(10);
  o.connecting_limit = 2;
  basic_pool<fake_conn> pool(o, f);
  std::vector<std::thread> threads;
  for (int i = 0; i < 10; ++i) {
    threads.emplace_back([&] {
      auto h = pool.acquire();
      std::this_thread::sleep_for(100ms);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(f->max_connecting.load(), 2);
  EXPECT_GE(f->max_connecting.load(), 1);
  EXPECT_LE(pool.stats().total, 10u);
}

TEST(pool, many_threads_few_connections_counters_add_up) {
  auto f = std::make_shared<fake_factory>();
  auto o = small(4);
  o.acquire_timeout = 30000ms;
  basic_pool<fake_conn> pool(o, f);
  constexpr int threads = 64, ops = 2000;
  std::atomic<int> in_use{0}, max_in_use{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < ops; ++i) {
        auto h = pool.acquire();
        const int now = ++in_use;
        int seen = max_in_use.load();
        while (now > seen && !max_in_use.compare_exchange_weak(seen, now)) {
        }
        --in_use;
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto s = pool.stats();
  EXPECT_EQ(s.acquire_count, static_cast<std::uint64_t>(threads * ops));
  EXPECT_EQ(s.release_count, s.acquire_count);
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.waiting, 0u);
  EXPECT_LE(s.total, 4u);
  EXPECT_EQ(s.idle, s.total);
  EXPECT_LE(max_in_use.load(), 4);
  EXPECT_LE(f->created.load(), 4);
}

TEST(pool, options_are_validated) {
  auto f = std::make_shared<fake_factory>();
  auto bad = [&](auto mutate) {
    auto o = small(2);
    mutate(o);
    EXPECT_THROW(basic_pool<fake_conn>(o, f), config_error);
  };
  bad([](pool_options& o) { o.max_size = 0; });
  bad([](pool_options& o) { o.min_size = 3; });
  bad([](pool_options& o) { o.acquire_timeout = 0ms; });
  bad([](pool_options& o) { o.connecting_limit = 0; });
  bad([](pool_options& o) { o.lifetime_jitter = 0.9; });
  bad([](pool_options& o) { o.validation_timeout = 0ms; });
  try {
    auto o = small(2);
    o.min_size = 5;
    basic_pool<fake_conn> p(o, f);
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("min_size"), std::string::npos) << e.what();
  }
}

TEST(pool, a_refused_login_stops_background_logins_until_a_caller_connects) {
  auto f = std::make_shared<fake_factory>();
  f->refuse_login = true;
  fake_clock clk;
  auto o = small(4);
  o.min_size = 2;
  basic_pool<fake_conn> pool(o, f, nullptr, clk.source());
  ASSERT_TRUE(eventually([&] { return f->attempts.load() >= 1; }));
  // The prefill may have started more than one login before the first refusal came back.
  std::this_thread::sleep_for(100ms);
  const int after_refusal = f->attempts.load();
  EXPECT_LE(after_refusal, 2);
  for (int i = 0; i < 5; ++i) pool.maintain();
  EXPECT_EQ(f->attempts.load(), after_refusal) << "the prefill tried to log in again after a refusal";
  EXPECT_THROW((void)pool.acquire(), connection_error);  // a caller still gets its own attempt
  EXPECT_EQ(f->attempts.load(), after_refusal + 1);
  f->refuse_login = false;
  { auto h = pool.acquire(); }  // the password was fixed: a caller's connect succeeds
  pool.maintain();
  EXPECT_TRUE(eventually([&] { return pool.stats().total >= 2; }));
}
