#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <mutex>
#include <thread>

#include "cluster_env.hpp"
#include "fault_proxy.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::cluster_environment;
using steadypg::test::connect;

namespace {

struct counting_observer : observer {
  std::atomic<int> retries{0}, budget_exhausted{0}, transitions_to_open{0}, transitions_to_closed{0}, rejected{0},
      connect_failures{0}, indeterminate_commits{0}, cancels{0};
  void on_retry(const steadypg::retry_report&) noexcept override { ++retries; }
  void on_retry_budget_exhausted(std::string_view) noexcept override { ++budget_exhausted; }
  void on_breaker_transition(breaker_state, breaker_state to) noexcept override {
    if (to == breaker_state::open) ++transitions_to_open;
    if (to == breaker_state::closed) ++transitions_to_closed;
  }
  void on_breaker_rejected() noexcept override { ++rejected; }
  void on_pool_connect_failed(const error&) noexcept override { ++connect_failures; }
  void on_indeterminate_commit(std::string_view) noexcept override { ++indeterminate_commits; }
  void on_cancel_sent() noexcept override { ++cancels; }
};

client_options fast_options(int pool_max = 2) {
  client_options o;
  o.dsn = cluster_environment::dsn();
  o.pool.max_size = pool_max;
  o.resilience.retry.base_delay = 20ms;
  o.resilience.retry.max_retries = 5;
  o.connection.connect_timeout = 1000ms;
  o.resilience.breaker.failure_threshold = 5;
  o.resilience.breaker.open_duration = 500ms;
  return o;
}

// Terminates, once, the backend running a statement that matches `pattern`.
std::thread kill_when_running(const std::string& pattern, std::atomic<bool>& killed) {
  return std::thread([pattern, &killed] {
    auto admin = connect();
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
      auto pid = admin.query_value<std::optional<int>>(
          "SELECT max(pid) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
          pattern);
      if (pid) {
        std::this_thread::sleep_for(100ms);  // let it get well into the statement
        (void)admin.query_value<bool>("SELECT pg_terminate_backend($1, 5000)", *pid);
        killed = true;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
  });
}

}  // namespace

TEST(resilience, terminated_idle_connection_is_invisible) {
  counting_observer obs;
  client db(fast_options(1), &obs);
  const int pid = db.query_value<int>("SELECT pg_backend_pid()");
  EXPECT_TRUE(connect().query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pid));
  std::this_thread::sleep_for(200ms);
  db.execute("CREATE TABLE IF NOT EXISTS rf_after_kill (x int)");  // not idempotent, still fine
  EXPECT_NE(db.query_value<int>("SELECT pg_backend_pid()"), pid);
  EXPECT_EQ(db.pool_statistics().closed_broken, 1u);
}

TEST(resilience, killed_non_idempotent_insert_is_not_retried) {
  counting_observer obs;
  client db(fast_options(), &obs);
  db.execute("CREATE TABLE IF NOT EXISTS rf_once (id int)");
  db.execute("TRUNCATE rf_once");
  std::atomic<bool> killed{false};
  auto killer = kill_when_running("INSERT INTO rf_once%", killed);
  try {
    db.execute("INSERT INTO rf_once SELECT 1 FROM pg_sleep(2)");
    FAIL() << "the insert survived its backend";
  } catch (const connection_error& e) {
    EXPECT_EQ(e.outcome(), outcome::indeterminate) << e.what();
    EXPECT_EQ(e.attempts(), 1);
  }
  killer.join();
  EXPECT_TRUE(killed);
  EXPECT_EQ(obs.retries.load(), 0);
  EXPECT_LE(db.query_value<int64_t>("SELECT count(*) FROM rf_once"), 1);
}

TEST(resilience, killed_idempotent_statement_is_retried) {
  counting_observer obs;
  client db(fast_options(), &obs);
  db.execute("CREATE TABLE IF NOT EXISTS rf_upsert (id int PRIMARY KEY, v int)");
  db.execute("TRUNCATE rf_upsert");
  std::atomic<bool> killed{false};
  auto killer = kill_when_running("INSERT INTO rf_upsert%", killed);
  auto r = db.execute(
      statement{"INSERT INTO rf_upsert SELECT 1, 7 FROM pg_sleep(1) ON CONFLICT (id) DO NOTHING"}.idempotent());
  killer.join();
  EXPECT_TRUE(killed);
  EXPECT_GE(obs.retries.load(), 1);
  EXPECT_EQ(db.query_value<int64_t>("SELECT count(*) FROM rf_upsert"), 1);
}

TEST(resilience, serialization_conflicts_rerun_the_transaction) {
  counting_observer obs;
  client db(fast_options(4), &obs);
  db.execute(
      "DROP TABLE IF EXISTS rf_skew; CREATE TABLE rf_skew (id int PRIMARY KEY, v int); "
      "INSERT INTO rf_skew VALUES (1, 0), (2, 0)");
  std::barrier sync(2);
  std::atomic<int> runs{0};
  auto worker = [&](int id) {
    bool first = true;
    db.transaction(
        [&](transaction& tx) {
          ++runs;
          (void)tx.query_value<int64_t>("SELECT sum(v) FROM rf_skew");
          if (std::exchange(first, false)) sync.arrive_and_wait();  // both have read
          tx.execute("UPDATE rf_skew SET v = v + 1 WHERE id = $1", id);
        },
        {.isolation = isolation_level::serializable});
  };
  std::thread a(worker, 1), b(worker, 2);
  a.join();
  b.join();
  EXPECT_GE(runs.load(), 3) << "one of the two ran again";
  EXPECT_GE(obs.retries.load(), 1);
  EXPECT_EQ(db.query_value<int64_t>("SELECT sum(v) FROM rf_skew"), 2);
}

TEST(resilience, deadlock_reruns_the_transaction) {
  counting_observer obs;
  client db(fast_options(4), &obs);
  db.execute(
      "DROP TABLE IF EXISTS rf_dead; CREATE TABLE rf_dead (id int PRIMARY KEY, v int); "
      "INSERT INTO rf_dead VALUES (1, 0), (2, 0)");
  std::barrier sync(2);
  std::atomic<int> runs{0};
  auto worker = [&](int first_id, int second_id) {
    bool first = true;
    db.transaction([&](transaction& tx) {
      ++runs;
      tx.execute("SET LOCAL deadlock_timeout = '100ms'");
      tx.execute("UPDATE rf_dead SET v = v + 1 WHERE id = $1", first_id);
      if (std::exchange(first, false)) sync.arrive_and_wait();  // both hold their first lock
      tx.execute("UPDATE rf_dead SET v = v + 1 WHERE id = $1", second_id);
    });
  };
  std::thread a(worker, 1, 2), b(worker, 2, 1);
  a.join();
  b.join();
  EXPECT_EQ(runs.load(), 3) << "exactly the deadlock victim ran again";
  EXPECT_EQ(db.query_value<int64_t>("SELECT sum(v) FROM rf_dead"), 4);
}

TEST(resilience, lock_timeout_reruns_the_transaction) {
  counting_observer obs;
  client db(fast_options(2), &obs);
  db.execute(
      "DROP TABLE IF EXISTS rf_lock; CREATE TABLE rf_lock (id int PRIMARY KEY, v int); "
      "INSERT INTO rf_lock VALUES (1, 0)");
  auto holder = connect();
  auto held = holder.begin();
  held.execute("SELECT * FROM rf_lock WHERE id = 1 FOR UPDATE");
  std::thread release([&] {
    std::this_thread::sleep_for(300ms);
    held.commit();
  });
  std::atomic<int> runs{0};
  db.transaction([&](transaction& tx) {
    ++runs;
    tx.execute("SET LOCAL lock_timeout = '50ms'");
    tx.execute("UPDATE rf_lock SET v = v + 1 WHERE id = 1");
  });
  release.join();
  EXPECT_GE(runs.load(), 2);
  EXPECT_EQ(db.query_value<int>("SELECT v FROM rf_lock WHERE id = 1"), 1);
}

TEST(resilience, deadline_cancels_on_the_server_and_keeps_the_connection) {
  counting_observer obs;
  client db(fast_options(1), &obs);
  const int pid = db.query_value<int>("SELECT pg_backend_pid()");
  const auto start = std::chrono::steady_clock::now();
  try {
    db.execute(statement{"SELECT pg_sleep(10)"}.timeout(200ms));
    FAIL() << "pg_sleep(10) finished within 200 ms";
  } catch (const query_canceled& e) {
    // The server-side statement_timeout derived from the deadline stopped it.
    EXPECT_EQ(e.sqlstate(), "57014");
  } catch (const timeout_error& e) {
    EXPECT_EQ(e.kind(), failure_kind::timeout);  // the client-side backstop with a cancel
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 150ms) << "the server stops it at 90 % of the deadline";
  EXPECT_LT(elapsed, 2000ms);
  // Same with only the client-side deadline: a real cancel request stops it.
  {
    auto c = db.acquire();
    c->set_statement_timeout(0ms);
    c->set_query_timeout(200ms);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(c->execute("SELECT pg_sleep(10)"), timeout_error);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2000ms);
    c->set_query_timeout(0ms);
  }
  EXPECT_EQ(connect().query_value<int64_t>("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                                           pid),
            0)
      << "the server stopped the statement";
  EXPECT_EQ(db.query_value<int>("SELECT pg_backend_pid()"), pid) << "the same connection serves the next query";
  EXPECT_EQ(db.pool_statistics().closed_broken, 0u);
}

TEST(resilience, fatal_errors_are_never_retried) {
  counting_observer obs;
  client db(fast_options(), &obs);
  db.execute("CREATE TABLE IF NOT EXISTS rf_fatal (id int PRIMARY KEY)");
  db.execute("INSERT INTO rf_fatal VALUES (1) ON CONFLICT DO NOTHING");
  EXPECT_THROW(db.execute(statement{"INSERT INTO rf_fatal VALUES (1)"}.idempotent()), unique_violation);
  EXPECT_THROW(db.execute(statement{"SELEC 1"}.idempotent()), sql_error);
  try {
    db.execute(statement{"SELECT 1/0"}.idempotent());
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "22012");
    EXPECT_EQ(e.attempts(), 1);
  }
  EXPECT_EQ(obs.retries.load(), 0);
  EXPECT_EQ(db.breaker().state(), breaker_state::closed) << "the server answered: it is healthy";
}

TEST(resilience, retry_budget_bounds_retries_during_sustained_failure) {
  counting_observer obs;
  client_options o;
  o.dsn = "host=127.0.0.1 port=1 user=postgres";
  o.connection.connect_timeout = 500ms;
  o.resilience.retry.max_retries = 3;
  o.resilience.retry.base_delay = 0ms;
  o.resilience.breaker.failure_threshold = 10000;  // let every call reach the budget
  // 10 retries per 10 s window: the test ends well inside one window even on a loaded machine.
  o.resilience.budget = {.ratio = 0.1, .min_per_second = 1, .window = std::chrono::seconds(10)};
  client db(o, &obs);
  constexpr int threads = 8, calls = 10;
  std::atomic<int> flagged{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < calls; ++i) {
        try {
          db.execute(statement{"SELECT 1"}.idempotent());
        } catch (const error& e) {
          if (e.budget_exhausted()) ++flagged;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  // No successes: the window allows min_per_second × window = 10 retries (+1 per racing thread).
  EXPECT_LE(obs.retries.load(), 10 + threads);
  EXPECT_GE(obs.retries.load(), 10);
  EXPECT_GT(flagged.load(), 0);
  EXPECT_GT(obs.budget_exhausted.load(), 0);
}

TEST(resilience, restart_under_load_opens_fails_fast_and_recovers) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  counting_observer obs;
  auto o = fast_options(4);
  o.resilience.breaker.open_duration = 1000ms;
  client db(o, &obs);
  const auto read = statement{"SELECT 1"}.idempotent();
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> rejected_ms;
  std::atomic<long> ok{0}, failed{0};
  std::atomic<std::int64_t> first_success_after_ready_ns{-1};
  std::atomic<std::int64_t> ready_at_ns{0};
  auto worker = [&] {
    while (!stop) {
      const auto t0 = std::chrono::steady_clock::now();
      try {
        (void)db.query_value<int>(read);
        ++ok;
        const auto ready = ready_at_ns.load();
        if (ready != 0) {
          std::int64_t expected = -1;
          first_success_after_ready_ns.compare_exchange_strong(
              expected, std::chrono::steady_clock::now().time_since_epoch().count() - ready);
        }
      } catch (const circuit_open& e) {
        // Calls the open breaker turned away on their first attempt (others retried first).
        if (e.attempts() == 1) {
          std::lock_guard lk(mu);
          rejected_ms.push_back(
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::this_thread::sleep_for(5ms);
      } catch (const error&) {
        ++failed;
        std::this_thread::sleep_for(5ms);
      }
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) ts.emplace_back(worker);
  std::this_thread::sleep_for(1s);
  cluster->stop();
  std::this_thread::sleep_for(3s);
  const int connect_failures_while_down = obs.connect_failures.load();
  cluster->start();
  ready_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (first_success_after_ready_ns.load() < 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : ts) t.join();

  EXPECT_GE(obs.transitions_to_open.load(), 1) << "the breaker opened during the outage";
  EXPECT_GE(obs.transitions_to_closed.load(), 1) << "a probe closed it after the restart";
  EXPECT_EQ(db.breaker().state(), breaker_state::closed);
  ASSERT_FALSE(rejected_ms.empty());
  std::sort(rejected_ms.begin(), rejected_ms.end());
  const double p99 = rejected_ms[rejected_ms.size() * 99 / 100];
  EXPECT_LT(p99, 5.0) << "rejected calls fail fast";
  // While open, calls do not try to connect: about one probe per open period, not 4 threads × retries.
  EXPECT_LT(connect_failures_while_down, 40);
  ASSERT_GE(first_success_after_ready_ns.load(), 0) << "reads succeed again after the restart";
  const double recovery_ms = static_cast<double>(first_success_after_ready_ns.load()) / 1e6;
  EXPECT_LT(recovery_ms, 3000.0);
  std::printf(
      "[ metrics  ] outage: %zu rejected calls, p99 %.3f ms; %d connect failures while down; "
      "server ready → first success %.0f ms; %ld ok, %ld failed\n",
      rejected_ms.size(), p99, connect_failures_while_down, recovery_ms, ok.load(), failed.load());
}

TEST(resilience, lost_commit_reply_is_indeterminate_and_never_resent) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  counting_observer obs;
  auto o = fast_options(1);
  o.dsn = proxy.dsn();
  // Without asking the server (tests/fault/commit_resolution_test.cpp has it on, where this
  // transaction is resolved as committed).
  o.resilience.resolve_commits = false;
  client db(o, &obs);
  db.execute("DROP TABLE IF EXISTS rf_lost; CREATE TABLE rf_lost (id int)");
  proxy.cut_reply_after("COMMIT");
  std::atomic<int> runs{0};
  try {
    db.transaction([&](transaction& tx) {
      ++runs;
      tx.execute("INSERT INTO rf_lost VALUES (1)");
    });
    FAIL() << "the COMMIT reply was lost, yet the transaction reported success";
  } catch (const indeterminate_commit& e) {
    EXPECT_EQ(e.outcome(), outcome::indeterminate);
    EXPECT_EQ(e.attempts(), 1);
  }
  EXPECT_EQ(runs.load(), 1) << "fn is not re-run after COMMIT was sent";
  EXPECT_EQ(proxy.times_seen("COMMIT"), 1) << "COMMIT is never resent";
  EXPECT_EQ(obs.indeterminate_commits.load(), 1);
  EXPECT_EQ(obs.retries.load(), 0);
  EXPECT_LE(connect().query_value<int64_t>("SELECT count(*) FROM rf_lost"), 1) << "exactly once or not at all";
}

TEST(resilience, black_holed_server_times_out_and_drops_the_connection) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  counting_observer obs;
  auto o = fast_options(1);
  o.dsn = proxy.dsn();
  client db(o, &obs);
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1);
  proxy.black_hole(true);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(db.execute(statement{"SELECT 2"}.timeout(300ms)), timeout_error);
  // The cancel goes to the real server (it cannot reach the statement), the drain times out
  // after cancel_wait, and the connection is dropped rather than reused.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
  proxy.black_hole(false);
  EXPECT_EQ(db.query_value<int>("SELECT 3"), 3);
  EXPECT_EQ(db.pool_statistics().closed_broken, 1u);
}
