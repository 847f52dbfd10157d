// A COMMIT whose reply is lost is resolved by asking the server (docs/resilience.md#resolving-a-lost-commit):
// committed → the call succeeds, aborted → fn runs again, otherwise indeterminate_commit with the
// transaction id. Faults are real: the TCP fault proxy, terminated backends, a killed postmaster,
// a stopped server, and a second server standing in for a failover.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "cluster_env.hpp"
#include "fault_proxy.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::cluster_environment;
using steadypg::test::connect;
using clock_type = std::chrono::steady_clock;

namespace {

struct resolution_observer : observer {
  std::atomic<int> committed{0}, aborted{0}, unknown{0}, indeterminate{0}, retries{0};
  void on_commit_resolved(const commit_resolution_report& r) noexcept override {
    if (r.result == commit_resolution::committed) ++committed;
    if (r.result == commit_resolution::aborted) ++aborted;
    if (r.result == commit_resolution::unknown) ++unknown;
  }
  void on_indeterminate_commit(std::string_view) noexcept override { ++indeterminate; }
  void on_retry(const retry_report&) noexcept override { ++retries; }
};

client_options fast_options(std::string dsn, std::size_t pool_max = 1) {
  client_options o;
  o.dsn = std::move(dsn);
  o.pool.max_size = pool_max;
  o.resilience.retry.base_delay = 20ms;
  o.resilience.retry.max_retries = 5;
  o.connection.connect_timeout = 1000ms;
  o.resilience.breaker.open_duration = 300ms;
  return o;
}

// A table whose inserts make COMMIT wait `cr.commit_sleep` seconds (a deferred constraint
// trigger runs inside COMMIT, before the commit record is written): a window to hit.
void make_slow_commit_table(connection& c, const std::string& table) {
  c.execute(fmt::format("DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (id int)", table));
  c.execute(
      "CREATE OR REPLACE FUNCTION cr_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "PERFORM pg_sleep(coalesce(nullif(current_setting('cr.commit_sleep', true), ''), '0')::float8); "
      "RETURN NULL; END $$");
  c.execute(
      fmt::format("CREATE CONSTRAINT TRIGGER {0}_slow AFTER INSERT ON {0} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                  "EXECUTE FUNCTION cr_slow_commit()",
                  table));
}

// Waits (at most 10 s) until backend `pid` runs COMMIT.
bool wait_in_commit(int pid) {
  auto admin = connect();
  const auto until = clock_type::now() + 10s;
  while (clock_type::now() < until) {
    if (admin.query_value<bool>(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = 'COMMIT'",
            pid)) {
      return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

std::int64_t count_rows(const std::string& table) {
  return connect().query_value<std::int64_t>(fmt::format("SELECT count(*) FROM {}", table));
}

// Starts the cluster again, trying a few times (a killed postmaster's backends may still be
// leaving).
void start_again(steadypg::testing::temp_cluster& cluster) {
  for (int i = 0;; ++i) {
    try {
      cluster.start();
      return;
    } catch (const std::exception&) {
      if (i >= 10) throw;
      std::this_thread::sleep_for(500ms);
    }
  }
}

}  // namespace

TEST(commit_resolution, a_lost_reply_after_the_server_committed_is_a_success) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_committed; CREATE TABLE cr_committed (id int)");
  proxy.lose_commit_reply();
  int runs = 0;
  EXPECT_NO_THROW(db.transaction([&](transaction& tx) {
    ++runs;
    tx.execute("INSERT INTO cr_committed VALUES (1)");
  }));
  EXPECT_EQ(runs, 1) << "a transaction that committed is not run again";
  EXPECT_EQ(proxy.times_seen("COMMIT"), 1) << "COMMIT is never resent";
  EXPECT_EQ(count_rows("cr_committed"), 1);
  EXPECT_EQ(obs.indeterminate.load(), 1) << "the reply was lost";
  EXPECT_EQ(obs.committed.load(), 1);
  EXPECT_EQ(obs.aborted.load() + obs.unknown.load(), 0);
  ASSERT_NE(db.metric_events(), nullptr);
  EXPECT_EQ(db.metric_events()->commit_resolutions(commit_resolution::committed), 1u);
  EXPECT_NE(db.metrics().render_prometheus().find("postgresql_commit_resolutions_total{result=\"committed\"} 1"),
            std::string::npos);
  std::printf("[ metrics  ] lost reply after commit: committed=%d aborted=%d unknown=%d\n", obs.committed.load(),
              obs.aborted.load(), obs.unknown.load());
}

// The id comes back with the first write, before COMMIT is sent: even when nothing at all of
// COMMIT's round trip comes back, the outcome can be asked.
TEST(commit_resolution, the_id_is_learnt_with_the_first_write_so_a_wholly_lost_commit_round_trip_resolves) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_early; CREATE TABLE cr_early (id int)");
  proxy.cut_reply_after("COMMIT");
  int runs = 0;
  EXPECT_NO_THROW(db.transaction([&](transaction& tx) {
    ++runs;
    EXPECT_EQ(tx.query_value<std::int64_t>("SELECT count(*) FROM cr_early"), 0);
    tx.execute("INSERT INTO cr_early VALUES ($1)", 1);
    tx.execute("INSERT INTO cr_early VALUES ($1)", 2);
  }));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(count_rows("cr_early"), 2);
  EXPECT_EQ(obs.committed.load(), 1);
  EXPECT_EQ(obs.unknown.load(), 0) << "nothing of COMMIT's round trip came back, yet the id was known";
}

// Text of several statements cannot carry the question; COMMIT's round trip asks then.
TEST(commit_resolution, statements_that_cannot_carry_the_question_leave_it_to_commit) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_multi; CREATE TABLE cr_multi (id int)");
  proxy.lose_commit_reply();
  int runs = 0;
  EXPECT_NO_THROW(db.transaction([&](transaction& tx) {
    ++runs;
    tx.execute("INSERT INTO cr_multi VALUES (1); INSERT INTO cr_multi VALUES (2)");
  }));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(count_rows("cr_multi"), 2);
  EXPECT_EQ(obs.committed.load(), 1);
  EXPECT_EQ(proxy.times_seen("pg_current_xact_id_if_assigned"), 1) << "asked once, with COMMIT";
}

TEST(commit_resolution, with_resolution_off_a_lost_reply_stays_indeterminate) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  auto o = fast_options(proxy.dsn());
  o.resilience.resolve_commits = false;
  client db(o, &obs);
  db.execute("DROP TABLE IF EXISTS cr_off; CREATE TABLE cr_off (id int)");
  proxy.lose_commit_reply();
  try {
    db.transaction([&](transaction& tx) { tx.execute("INSERT INTO cr_off VALUES (1)"); });
    FAIL() << "without resolution a lost COMMIT reply is indeterminate_commit";
  } catch (const indeterminate_commit& e) {
    EXPECT_FALSE(e.xid().has_value()) << "no id is fetched when resolution is off";
    EXPECT_EQ(e.resolution(), commit_resolution::none);
  }
  EXPECT_EQ(obs.committed.load() + obs.aborted.load() + obs.unknown.load(), 0);
}

TEST(commit_resolution, a_backend_killed_inside_commit_is_aborted_and_fn_runs_again) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  {
    auto c = connect();
    make_slow_commit_table(c, "cr_aborted");
  }
  resolution_observer obs;
  client db(fast_options(cluster_environment::dsn()), &obs);
  std::atomic<int> runs{0};
  std::atomic<int> first_pid{0};
  std::thread killer([&] {
    while (first_pid.load() == 0) std::this_thread::sleep_for(1ms);
    if (wait_in_commit(first_pid))
      (void)connect().query_value<bool>("SELECT pg_terminate_backend($1, 5000)", first_pid.load());
  });
  EXPECT_NO_THROW(db.transaction([&](transaction& tx) {
    if (++runs == 1) {
      tx.execute("SET LOCAL cr.commit_sleep = '5'");
      first_pid = tx.conn().backend_pid();
    }
    tx.execute("INSERT INTO cr_aborted VALUES (1)");
  }));
  killer.join();
  EXPECT_EQ(runs.load(), 2) << "the server said the first run did not commit: fn runs again";
  EXPECT_EQ(count_rows("cr_aborted"), 1) << "exactly once";
  EXPECT_EQ(obs.aborted.load(), 1);
  EXPECT_EQ(obs.committed.load() + obs.unknown.load(), 0);
  EXPECT_EQ(obs.retries.load(), 1);
  std::printf("[ metrics  ] backend killed in COMMIT: committed=%d aborted=%d unknown=%d\n", obs.committed.load(),
              obs.aborted.load(), obs.unknown.load());
}

TEST(commit_resolution, a_postmaster_killed_during_commit_is_resolved_after_crash_recovery) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  {
    auto c = connect();
    make_slow_commit_table(c, "cr_crash");
    c.execute("CHECKPOINT");  // the test server commits asynchronously: make the table survive the crash
  }
  resolution_observer obs;
  auto o = fast_options(cluster_environment::dsn());
  o.resilience.commit_resolution_timeout = 30s;  // crash recovery included
  client db(o, &obs);
  std::atomic<int> runs{0};
  std::atomic<int> first_pid{0};
  std::atomic<bool> done{false};
  std::optional<std::string> failure;
  // The call runs on its own thread: the server must be started again from this one (it dies
  // with the thread that started it).
  std::thread call([&] {
    try {
      db.transaction([&](transaction& tx) {
        // A commit acknowledged before the crash must survive it.
        tx.execute("SET LOCAL synchronous_commit = on");
        if (++runs == 1) {
          tx.execute("SET LOCAL cr.commit_sleep = '0.5'");
          first_pid = tx.conn().backend_pid();
        }
        tx.execute("INSERT INTO cr_crash VALUES (1)");
      });
    } catch (const std::exception& e) {
      failure = e.what();
    }
    done = true;
  });
  while (first_pid.load() == 0 && !done) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(wait_in_commit(first_pid));
  ::kill(cluster->pid(), SIGKILL);  // kill -9 of the postmaster, right after COMMIT was sent
  cluster->kill();                  // reaps it (and anything left)
  std::this_thread::sleep_for(300ms);
  start_again(*cluster);
  call.join();
  EXPECT_FALSE(failure.has_value()) << *failure;
  EXPECT_EQ(obs.committed.load() + obs.aborted.load(), 1) << "resolved either way";
  EXPECT_EQ(obs.unknown.load(), 0);
  EXPECT_EQ(runs.load(), 1 + obs.aborted.load()) << "fn runs again only when the server says aborted";
  EXPECT_EQ(count_rows("cr_crash"), 1) << "exactly once";
  std::printf("[ metrics  ] postmaster killed in COMMIT: committed=%d aborted=%d unknown=%d\n", obs.committed.load(),
              obs.aborted.load(), obs.unknown.load());
}

TEST(commit_resolution, a_server_down_past_the_deadline_leaves_the_xid_to_check_later) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  {
    auto c = connect();
    make_slow_commit_table(c, "cr_down");
  }
  resolution_observer obs;
  auto o = fast_options(cluster_environment::dsn());
  o.resilience.commit_resolution_timeout = 1000ms;
  client db(o, &obs);
  std::atomic<int> first_pid{0};
  std::atomic<int> runs{0};
  std::optional<std::uint64_t> xid;
  std::optional<server_identity> server;
  commit_resolution resolution = commit_resolution::none;
  bool in_doubt = false;
  std::thread call([&] {
    try {
      db.transaction([&](transaction& tx) {
        ++runs;
        tx.execute("SET LOCAL cr.commit_sleep = '5'");
        first_pid = tx.conn().backend_pid();
        tx.execute("INSERT INTO cr_down VALUES (1)");
      });
    } catch (const indeterminate_commit& e) {
      in_doubt = true;
      xid = e.xid();
      server = e.commit_server();
      resolution = e.resolution();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected indeterminate_commit, got: " << e.what();
    }
  });
  while (first_pid.load() == 0) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(wait_in_commit(first_pid));
  const auto stopped = clock_type::now();
  cluster->stop();  // the server goes down with COMMIT in flight and stays down
  call.join();
  EXPECT_GE(clock_type::now() - stopped, 900ms) << "resolution kept trying until its deadline";
  start_again(*cluster);
  ASSERT_TRUE(in_doubt);
  EXPECT_EQ(runs.load(), 1) << "never replayed";
  EXPECT_EQ(resolution, commit_resolution::unknown);
  ASSERT_TRUE(xid.has_value()) << "the error carries the transaction id";
  ASSERT_TRUE(server.has_value());
  auto c = connect();
  EXPECT_EQ(c.identify(), server) << "the same server, to ask later";
  const auto status = c.query_value<std::string>("SELECT pg_xact_status($1::text::xid8)", std::to_string(*xid));
  const auto rows = count_rows("cr_down");
  EXPECT_EQ(status, rows == 1 ? "committed" : "aborted") << "the status agrees with the table";
  EXPECT_EQ(obs.unknown.load(), 1);
  std::printf("[ metrics  ] server down past the deadline: committed=%d aborted=%d unknown=%d; later status %s\n",
              obs.committed.load(), obs.aborted.load(), obs.unknown.load(), status.c_str());
}

TEST(commit_resolution, a_different_server_at_resolution_time_stays_in_doubt_and_is_never_replayed) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  // The second server stands in for a failover: a reconnect to "the same address" reaches a
  // server that did not run the transaction.
  steadypg::testing::temp_cluster other;
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_moved; CREATE TABLE cr_moved (id int)");
  {
    steadypg::connection b(other.dsn());
    b.execute("CREATE TABLE cr_moved (id int)");
  }
  proxy.retarget(other.port());  // the pooled connection stays on the first server
  proxy.lose_commit_reply();
  int runs = 0;
  try {
    db.transaction([&](transaction& tx) {
      ++runs;
      tx.execute("INSERT INTO cr_moved VALUES (1)");
    });
    FAIL() << "the reconnect reached another server: the outcome cannot be known there";
  } catch (const indeterminate_commit& e) {
    EXPECT_EQ(e.resolution(), commit_resolution::unknown);
    EXPECT_TRUE(e.xid().has_value());
  }
  EXPECT_EQ(runs, 1) << "never replayed";
  EXPECT_EQ(count_rows("cr_moved"), 1) << "it committed on the first server";
  steadypg::connection b(other.dsn());
  EXPECT_EQ(b.query_value<std::int64_t>("SELECT count(*) FROM cr_moved"), 0);
  EXPECT_EQ(obs.unknown.load(), 1);
}

// The bank-transfer invariant under random backend kills and two restarts: balances sum to a
// constant, every acknowledged transfer is in the ledger exactly once, nothing that failed
// with a known outcome is there, and (restarts being shorter than the resolution timeout) no
// transfer is left unknown. 8 threads for 20 s (STEADYPG_SOAK_SECONDS=60 for a longer soak; 20 s
// keeps the suite's time in bounds and already sees hundreds of kills).
TEST(commit_resolution, bank_transfers_stay_exact_under_kills_and_restarts) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  constexpr int accounts = 20;
  constexpr std::int64_t opening = 1000;
  constexpr int threads = 8;
  // STEADYPG_SOAK_SECONDS runs it longer (e.g. 60, as the soak).
  const char* soak = std::getenv("STEADYPG_SOAK_SECONDS");
  const auto run_for = std::chrono::seconds(soak != nullptr ? std::clamp(std::atoi(soak), 5, 600) : 20);
  {
    auto c = connect();
    c.execute(
        "DROP TABLE IF EXISTS cr_accounts, cr_ledger; "
        "CREATE TABLE cr_accounts (id int PRIMARY KEY, balance bigint NOT NULL); "
        "CREATE TABLE cr_ledger (transfer_id bigint PRIMARY KEY, src int, dst int, amount int)");
    c.execute(fmt::format("INSERT INTO cr_accounts SELECT g, {} FROM generate_series(1, {}) g", opening, accounts));
    // COMMIT takes a few ms (a deferred trigger), so that kills often land inside it.
    c.execute(
        "CREATE OR REPLACE FUNCTION cr_ledger_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_sleep(0.003); RETURN NULL; END $$");
    c.execute(
        "CREATE CONSTRAINT TRIGGER cr_ledger_slow AFTER INSERT ON cr_ledger DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION cr_ledger_commit()");
  }
  resolution_observer obs;
  auto o = fast_options(cluster_environment::dsn(), threads);
  o.connection.application_name = "cr_soak";
  o.resilience.retry.max_retries = 10;
  client db(o, &obs);
  std::mutex mu;
  std::set<std::int64_t> acknowledged, failed_known, unknown;
  std::atomic<bool> stop{false};
  std::atomic<long> kills{0};
  auto worker = [&](int t) {
    std::mt19937 rng(static_cast<unsigned>(t) * 7919u);
    for (std::int64_t n = 0; !stop; ++n) {
      const std::int64_t id = std::int64_t{t} * 10'000'000 + n;
      const int src = static_cast<int>(rng() % accounts) + 1;
      const int dst = src % accounts + 1;
      const int amount = static_cast<int>(rng() % 50) + 1;
      try {
        db.transaction([&](transaction& tx) {
          tx.execute("UPDATE cr_accounts SET balance = balance - $1 WHERE id = $2", amount, src);
          tx.execute("UPDATE cr_accounts SET balance = balance + $1 WHERE id = $2", amount, dst);
          tx.execute("INSERT INTO cr_ledger VALUES ($1, $2, $3, $4)", id, src, dst, amount);
        });
        std::lock_guard lk(mu);
        acknowledged.insert(id);
      } catch (const error& e) {
        {
          std::lock_guard lk(mu);
          (e.outcome() == outcome::indeterminate ? unknown : failed_known).insert(id);
          if (e.outcome() == outcome::indeterminate) std::printf("[ unknown  ] %s\n", e.what());
        }
        std::this_thread::sleep_for(5ms);  // the server is down or restarting: do not spin
      }
    }
  };
  std::thread killer([&] {
    std::mt19937 rng(42);
    std::optional<connection> admin;
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 60));
      try {
        if (!admin || admin->is_broken()) admin.emplace(cluster_environment::dsn());
        kills += admin->query_value<std::int64_t>(
            "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity WHERE application_name = "
            "'cr_soak' AND state = 'active' ORDER BY random() LIMIT 1) s");
      } catch (const error&) {
        admin.reset();  // the server is restarting
      }
    }
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  const auto t0 = clock_type::now();
  int restarts = 0;
  for (auto at : {run_for / 3, run_for * 2 / 3}) {
    std::this_thread::sleep_until(t0 + at);
    cluster->stop();
    std::this_thread::sleep_for(1s);
    start_again(*cluster);
    ++restarts;
  }
  std::this_thread::sleep_until(t0 + run_for);
  stop = true;
  for (auto& th : pool) th.join();
  killer.join();

  auto c = connect();
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT sum(balance) FROM cr_accounts"), accounts * opening)
      << "balances sum to a constant";
  std::map<std::int64_t, std::int64_t> in_ledger;
  const auto ledger = c.execute("SELECT transfer_id, count(*) FROM cr_ledger GROUP BY 1");
  for (auto [id, n] : ledger.rows<std::int64_t, std::int64_t>()) in_ledger[id] = n;
  long missing = 0, duplicated = 0, applied_failures = 0, unknown_applied = 0;
  for (auto id : acknowledged) {
    const auto it = in_ledger.find(id);
    if (it == in_ledger.end()) ++missing;
    else if (it->second != 1) ++duplicated;
  }
  for (auto id : failed_known) applied_failures += in_ledger.count(id) > 0;
  for (auto id : unknown) unknown_applied += in_ledger.count(id) > 0;
  EXPECT_EQ(missing, 0) << "every acknowledged transfer is in the ledger";
  EXPECT_EQ(duplicated, 0) << "exactly once";
  EXPECT_EQ(applied_failures, 0) << "a transfer that failed with a known outcome was not applied";
  EXPECT_EQ(static_cast<long>(in_ledger.size()), static_cast<long>(acknowledged.size()) + unknown_applied);
  // The server was never down longer than the resolution timeout, and the id of every transfer
  // is known before its COMMIT is sent (it comes back with the first UPDATE), so every lost
  // COMMIT is resolved.
  EXPECT_EQ(unknown.size(), 0u) << "every lost COMMIT is resolved";
  EXPECT_EQ(restarts, 2);
  EXPECT_GT(kills.load(), 50) << "the kills happened";
  EXPECT_GT(obs.committed.load() + obs.aborted.load(), 0) << "some kills landed inside COMMIT and were resolved";
  std::printf(
      "[ metrics  ] bank transfers, %d threads, %lld s, %d restarts, %ld backend kills: %zu acknowledged, %zu failed "
      "(not applied), %zu unknown; lost COMMITs resolved committed=%d aborted=%d unknown=%d; ledger rows %zu, "
      "missing %ld, duplicated %ld\n",
      threads, static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(run_for).count()), restarts,
      kills.load(), acknowledged.size(), failed_known.size(), unknown.size(), obs.committed.load(), obs.aborted.load(),
      obs.unknown.load(), in_ledger.size(), missing, duplicated);
}

TEST(commit_resolution, a_verified_statement_whose_commit_reply_is_lost_returns_its_result) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_stmt; CREATE TABLE cr_stmt (id int PRIMARY KEY)");
  proxy.lose_commit_reply();
  result r;
  ASSERT_NO_THROW(r = db.execute(statement{"INSERT INTO cr_stmt VALUES ($1) RETURNING id"}.verify_commit(), 7));
  ASSERT_EQ(r.size(), 1u) << "the statement's own answer arrived before COMMIT's was lost";
  EXPECT_EQ(std::get<0>(r[0].as<int>()), 7);
  EXPECT_EQ(proxy.times_seen("COMMIT"), 1);
  EXPECT_EQ(count_rows("cr_stmt"), 1);
  EXPECT_EQ(obs.committed.load(), 1);
  // Without the reply lost it is one round trip and an ordinary result; an error is the statement's.
  EXPECT_EQ(db.execute(statement{"INSERT INTO cr_stmt VALUES ($1)"}.verify_commit(), 8).rows_affected(), 1u);
  EXPECT_THROW(db.execute(statement{"INSERT INTO cr_stmt VALUES ($1)"}.verify_commit(), 8), unique_violation);
  EXPECT_EQ(count_rows("cr_stmt"), 2);
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1) << "the connection is usable after the failed block";
}

TEST(commit_resolution, a_transaction_mode_batch_chunk_is_resolved_as_a_unit) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_batch; CREATE TABLE cr_batch (id int PRIMARY KEY)");
  std::vector<batch_operation> ops;
  for (int i = 0; i < 5; ++i) ops.emplace_back("INSERT INTO cr_batch VALUES ($1)", i);
  proxy.lose_commit_reply();
  batch_options bo;
  bo.batch_size = 5;
  bo.concurrency = 1;
  bo.mode = batch_mode::transaction;
  bo.verify_commit = true;
  const auto report = db.batch_execute(ops, bo);
  EXPECT_EQ(report.stats.succeeded, 5u);
  EXPECT_EQ(report.stats.unknown, 0u);
  EXPECT_EQ(report.stats.resolved_committed, 5u);
  EXPECT_EQ(report.stats.resolved_aborted, 0u);
  EXPECT_EQ(proxy.times_seen("COMMIT"), 1);
  EXPECT_EQ(count_rows("cr_batch"), 5);
  EXPECT_EQ(obs.committed.load(), 1) << "one resolution for the chunk";
  std::printf("[ metrics  ] batch chunk with a lost COMMIT reply: resolved_committed=%zu resolved_aborted=%zu\n",
              report.stats.resolved_committed, report.stats.resolved_aborted);
}

TEST(commit_resolution, a_pipeline_mode_batch_chunk_with_verify_commit_is_one_transaction_resolved_as_a_unit) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  steadypg::test::fault_proxy proxy(cluster->port());
  resolution_observer obs;
  client db(fast_options(proxy.dsn()), &obs);
  db.execute("DROP TABLE IF EXISTS cr_pipe; CREATE TABLE cr_pipe (id int PRIMARY KEY)");
  std::vector<batch_operation> ops;
  for (int i = 0; i < 5; ++i) ops.emplace_back("INSERT INTO cr_pipe VALUES ($1)", i);
  proxy.lose_commit_reply();
  batch_options bo;
  bo.batch_size = 5;
  bo.concurrency = 1;
  bo.mode = batch_mode::pipeline;
  bo.verify_commit = true;
  const auto report = db.batch_execute(ops, bo);
  EXPECT_EQ(report.stats.succeeded, 5u);
  EXPECT_EQ(report.stats.unknown, 0u);
  EXPECT_EQ(report.stats.resolved_committed, 5u);
  EXPECT_EQ(report.stats.resolved_aborted, 0u);
  EXPECT_EQ(proxy.times_seen("COMMIT"), 1) << "the chunk's one COMMIT, never resent";
  EXPECT_EQ(count_rows("cr_pipe"), 5);
  EXPECT_EQ(obs.committed.load(), 1) << "one resolution for the chunk";
  std::printf("[ metrics  ] pipeline chunk with a lost COMMIT reply: resolved_committed=%zu resolved_aborted=%zu\n",
              report.stats.resolved_committed, report.stats.resolved_aborted);

  // The chunk is one transaction: an operation that fails rolls back the others of its chunk.
  std::vector<batch_operation> more;
  more.emplace_back("INSERT INTO cr_pipe VALUES ($1)", 10);
  more.emplace_back("INSERT INTO cr_pipe VALUES ($1)", 0);  // a duplicate
  more.emplace_back("INSERT INTO cr_pipe VALUES ($1)", 11);
  bo.batch_size = 3;
  const auto failed = db.batch_execute(more, bo);
  EXPECT_EQ(failed.stats.succeeded, 0u);
  ASSERT_EQ(failed.errors.size(), 3u);
  EXPECT_EQ(failed.errors[1].reason, batch_failure::failed);
  EXPECT_EQ(failed.errors[1].sqlstate, "23505");
  for (const std::size_t i : {0u, 2u}) {
    EXPECT_EQ(failed.errors[i].reason, batch_failure::rolled_back);
    EXPECT_EQ(failed.errors[i].outcome, outcome::rolled_back);
    EXPECT_EQ(failed.errors[i].cause, std::optional<std::size_t>(1));
  }
  EXPECT_EQ(count_rows("cr_pipe"), 5) << "nothing of the failed chunk is in";
}

TEST(commit_resolution, an_independent_batch_operation_killed_in_commit_runs_again) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  {
    auto c = connect();
    make_slow_commit_table(c, "cr_indep");
  }
  resolution_observer obs;
  client db(fast_options(cluster_environment::dsn()), &obs);
  const int pid = db.acquire()->backend_pid();  // the pool's one connection
  std::thread killer([&] {
    if (wait_in_commit(pid)) (void)connect().query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pid);
  });
  // The first operation's COMMIT sleeps (the setting lives in the session, so only the first
  // connection has it) and is killed there.
  (void)db.acquire()->execute("SET cr.commit_sleep = '5'");
  std::vector<batch_operation> ops;
  ops.emplace_back("INSERT INTO cr_indep VALUES ($1)", 1);
  batch_options bo;
  bo.concurrency = 1;
  bo.mode = batch_mode::independent;
  bo.verify_commit = true;
  const auto report = db.batch_execute(ops, bo);
  killer.join();
  EXPECT_EQ(report.stats.succeeded, 1u);
  EXPECT_EQ(report.stats.resolved_aborted, 1u);
  EXPECT_EQ(count_rows("cr_indep"), 1);
  EXPECT_EQ(obs.aborted.load(), 1);
}
