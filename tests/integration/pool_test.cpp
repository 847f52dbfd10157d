#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::cluster_environment;
using steadypg::test::connect;

namespace {

client_options options(int max) {
  client_options o;
  o.dsn = cluster_environment::dsn();
  o.pool.max_size = max;
  o.pool.acquire_timeout = 30000ms;
  return o;
}

struct leak_observer : observer {
  std::mutex mu;
  std::vector<std::string> contexts;
  std::atomic<int> closed_broken{0};
  void on_pool_leak_suspected(const leak_report& r) noexcept override {
    std::lock_guard lk(mu);
    contexts.emplace_back(r.context);
  }
  void on_pool_connection_closed(close_reason r) noexcept override {
    if (r == close_reason::broken) ++closed_broken;
  }
};

int64_t sessions_named(const std::string& app) {
  return connect().query_value<int64_t>("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app);
}

}  // namespace

TEST(client_pool, sixty_four_threads_on_four_connections) {
  client db(options(4));
  constexpr int threads = 64, ops = 2000;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> ts;
  const auto deadline = std::chrono::steady_clock::now() + 120s;  // bound the run on a slow machine
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < ops && std::chrono::steady_clock::now() < deadline; ++i) {
        try {
          if (db.query_value<int>("SELECT $1::int + $2::int", t, i) != t + i) ++wrong;
        } catch (const std::exception&) {
          ++failed;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto s = db.pool_statistics();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(s.acquire_count, s.release_count);
  EXPECT_EQ(s.acquire_count, static_cast<std::uint64_t>(threads * ops));
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.waiting, 0u);
  EXPECT_LE(s.total, 4u);
  EXPECT_LE(s.connections_created, 4u);
}

TEST(client_pool, acquire_timeout_is_a_pool_timeout) {
  auto o = options(1);
  o.pool.acquire_timeout = 200ms;
  client db(o);
  auto held = db.acquire();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW((void)db.query_value<int>("SELECT 1"), pool_timeout);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 2200ms);
  EXPECT_EQ(db.pool_statistics().acquire_timeouts, 1u);
  held.release();
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1);
}

TEST(client_pool, terminated_idle_backend_is_replaced_invisibly) {
  leak_observer obs;
  client db(options(1), &obs);
  const int pid = db.query_value<int>("SELECT pg_backend_pid()");
  EXPECT_TRUE(connect().query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pid));
  std::this_thread::sleep_for(250ms);  // idle past quick_check_after_idle (100 ms)
  int new_pid = 0;
  EXPECT_NO_THROW(new_pid = db.query_value<int>("SELECT pg_backend_pid()"));
  EXPECT_NE(new_pid, pid);
  EXPECT_EQ(db.pool_statistics().closed_broken, 1u);
  EXPECT_EQ(obs.closed_broken.load(), 1);
}

TEST(client_pool, returned_inside_a_transaction_is_rolled_back) {
  client db(options(1));
  db.execute("CREATE TABLE IF NOT EXISTS pool_tx (x int)");
  {
    auto c = db.acquire();
    c->execute("BEGIN");
    c->execute("INSERT INTO pool_tx VALUES (1)");
    // returned without COMMIT
  }
  auto c = db.acquire();
  EXPECT_EQ(c->status(), connection_status::idle);
  EXPECT_EQ(c->query_value<int64_t>("SELECT count(*) FROM pool_tx"), 0);
  EXPECT_EQ(db.pool_statistics().closed_reset_failed, 0u);
  {
    auto tx = c->begin();
    EXPECT_THROW(tx.execute("SELECT 1/0"), sql_error);
    EXPECT_THROW(tx.commit(), sql_error);  // 25P02: the failed block is rolled back, not committed
  }
}

TEST(client_pool, failed_transaction_block_is_reset_too) {
  client db(options(1));
  {
    auto c = db.acquire();
    c->execute("BEGIN");
    EXPECT_THROW(c->execute("SELECT 1/0"), sql_error);
    EXPECT_EQ(c->status(), connection_status::failed_transaction);
  }
  EXPECT_EQ(db.query_value<int>("SELECT 5"), 5);
  EXPECT_EQ(db.pool_statistics().total, 1u);
}

TEST(client_pool, leak_detection_fires) {
  leak_observer obs;
  auto o = options(2);
  o.pool.leak_detection_threshold = 100ms;
  client db(o, &obs);
  {
    auto c = db.acquire("batch-import");
    c->execute("SELECT pg_sleep(0.4)");
  }
  std::lock_guard lk(obs.mu);
  ASSERT_EQ(obs.contexts.size(), 1u);
  EXPECT_EQ(obs.contexts[0], "batch-import");
}

TEST(client_pool, destroying_the_client_with_connections_out_is_safe) {
  auto db = std::make_unique<client>(options(2));
  auto c = db->acquire();
  const int pid = c->backend_pid();
  db.reset();
  EXPECT_EQ(c->query_value<int>("SELECT pg_backend_pid()"), pid);
  c.release();  // closes it: the pool is gone
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(connect().query_value<int64_t>("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid), 0);
}

TEST(client_pool, transaction_commits_or_rolls_back) {
  client db(options(2));
  db.execute("CREATE TABLE IF NOT EXISTS pool_fn (x int)");
  db.execute("TRUNCATE pool_fn");
  const int n = db.transaction([](transaction& tx) {
    tx.execute("INSERT INTO pool_fn VALUES (1), (2)");
    return tx.query_value<int>("SELECT count(*)::int FROM pool_fn");
  });
  EXPECT_EQ(n, 2);
  EXPECT_THROW(db.transaction([](transaction& tx) {
    tx.execute("INSERT INTO pool_fn VALUES (3)");
    throw std::runtime_error("application error");
  }),
               std::runtime_error);
  EXPECT_EQ(db.query_value<int64_t>("SELECT count(*) FROM pool_fn"), 2);
  EXPECT_EQ(db.pool_statistics().active, 0u);
}

TEST(client_pool, min_size_is_warm_on_the_server) {
  auto o = options(5);
  o.pool.min_size = 3;
  client db(o);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (db.pool_statistics().idle < 3 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(db.pool_statistics().idle, 3u);
  EXPECT_GE(sessions_named("steadypg"), 3);
}

TEST(client_pool, connect_failure_is_reported_fast) {
  client_options o;
  o.dsn = "host=127.0.0.1 port=1 user=postgres";
  o.connection.connect_timeout = 2000ms;
  o.resilience.retry.max_retries = 0;  // the pool's own behaviour, without the retry layer
  client db(o);
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)db.query_value<int>("SELECT 1");
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
  EXPECT_EQ(db.pool_statistics().connect_failures, 1u);
}

namespace {

// Holds the pool's only connection on another thread until release() (or destruction).
class connection_holder {
 public:
  explicit connection_holder(client& db) {
    std::promise<void> held;
    auto ready = held.get_future();
    m_thread = std::thread([this, &db, held = std::move(held)]() mutable {
      auto c = db.acquire();
      held.set_value();
      m_release.get_future().wait();
    });
    ready.wait();
  }
  ~connection_holder() { release(); }
  void release() {
    if (!m_thread.joinable()) return;
    m_release.set_value();
    m_thread.join();
  }

 private:
  std::promise<void> m_release;
  std::thread m_thread;
};

client_options breaker_options_for_test(int threshold) {
  auto o = options(1);
  o.pool.acquire_timeout = 200ms;
  o.resilience.breaker.failure_threshold = threshold;
  o.resilience.breaker.open_duration = 100ms;
  return o;
}

}  // namespace

TEST(client_pool, half_open_probe_that_times_out_in_the_pool_does_not_close_the_breaker) {
  client db(breaker_options_for_test(2));
  ASSERT_EQ(db.query_value<int>("SELECT 1"), 1);  // the one connection exists and is idle
  auto& b = db.breaker();
  for (int i = 0; i < 2; ++i) b.on_failure(b.acquire());
  ASSERT_EQ(b.state(), breaker_state::open);
  std::this_thread::sleep_for(150ms);  // past open_duration: the next call is the probe

  connection_holder holder(db);
  EXPECT_THROW((void)db.query_value<int>("SELECT 1"), pool_timeout);
  EXPECT_EQ(b.state(), breaker_state::half_open) << "a pool timeout is no answer from the server";
  holder.release();

  // The probe permit came back: the next call probes (it is not rejected as circuit_open),
  // and a usage error raised before sending is no verdict either.
  EXPECT_THROW((void)db.execute("SELECT $1::int + $2::int", 1), usage_error);
  EXPECT_EQ(b.state(), breaker_state::half_open) << "a usage error is no answer from the server";

  // An error the server answered with proves it is up.
  EXPECT_THROW((void)db.execute("SELECT * FROM no_such_table_for_the_breaker"), sql_error);
  EXPECT_EQ(b.state(), breaker_state::closed);
}

TEST(client_pool, pool_timeout_does_not_reset_the_breaker_failure_streak) {
  client db(breaker_options_for_test(3));
  ASSERT_EQ(db.query_value<int>("SELECT 1"), 1);
  auto& b = db.breaker();
  b.on_failure(b.acquire());
  b.on_failure(b.acquire());
  {
    connection_holder holder(db);
    EXPECT_THROW((void)db.query_value<int>("SELECT 1"), pool_timeout);
  }
  ASSERT_EQ(b.state(), breaker_state::closed);
  b.on_failure(b.acquire());
  EXPECT_EQ(b.state(), breaker_state::open) << "three health failures in a row, a pool timeout between them";
}
