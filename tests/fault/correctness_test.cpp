// The promises hostile testing broke, each against the real server with a real fault:
// writes reported done that never committed, NUL bytes that shorten a statement, rows that
// fail their whole chunk, calls that hang on a silent server, logins retried, and batches that
// burn through an open breaker.

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fmt/format.h>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using namespace std::string_view_literals;
using steadypg::test::cluster_environment;
using steadypg::test::connect;

namespace {

client_options options() {
  auto o = steadypg::test::client_options_for(4);
  o.connection.connect_timeout = 2000ms;
  return o;
}

// A table whose commits take `commit_sleep` seconds: a deferred constraint trigger runs at
// commit, after each statement's result has been sent. A backend killed during that sleep
// has sent the statement's CommandComplete but never commits it.
void make_slow_commit_table(connection& c, const std::string& name, const std::string& commit_sleep) {
  c.execute(fmt::format("DROP TABLE IF EXISTS {}", name));
  c.execute(fmt::format("CREATE TABLE {} (id int PRIMARY KEY)", name));
  c.execute(
      fmt::format("CREATE OR REPLACE FUNCTION {0}_slow() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN PERFORM pg_sleep({1}); RETURN NULL; END$$",  // {1} may use NEW.id
                  name, commit_sleep));
  c.execute(
      fmt::format("CREATE CONSTRAINT TRIGGER {0}_at_commit AFTER INSERT ON {0} DEFERRABLE INITIALLY DEFERRED "
                  "FOR EACH ROW EXECUTE FUNCTION {0}_slow()",
                  name));
}

// Terminates every backend (but the killer's own) that sleeps inside a commit, `times` times.
std::thread kill_sleeping_commits(std::atomic<int>& killed, int times = 1) {
  return std::thread([&killed, times] {
    auto admin = connect();
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (killed.load() < times && std::chrono::steady_clock::now() < until) {
      const auto n = admin.query_value<int64_t>(
          "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
          "WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid() AND query NOT LIKE '%pg_stat_activity%'");
      killed += static_cast<int>(n);
      std::this_thread::sleep_for(20ms);
    }
  });
}

std::set<int> ids_in(connection& c, const std::string& table) {
  std::set<int> out;
  const auto rs = c.execute(fmt::format("SELECT id FROM {}", table));
  for (auto [id] : rs.rows<int>()) out.insert(id);
  return out;
}

// The backends of the client under test (application_name set in its DSN).
std::vector<int> backends_of(connection& admin, const std::string& app) {
  std::vector<int> out;
  const auto rs = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app);
  for (auto [pid] : rs.rows<int>()) out.push_back(pid);
  return out;
}

batch_options bopts(std::size_t size, std::size_t concurrency, batch_mode mode, std::chrono::milliseconds timeout) {
  batch_options b;
  b.batch_size = size;
  b.concurrency = concurrency;
  b.mode = mode;
  b.timeout = timeout;
  return b;
}

std::string dsn_with_app(const std::string& app) { return cluster_environment::dsn() + " application_name=" + app; }

}  // namespace

// ---- 1. A statement's result is not its commit ---------------------------------------------

TEST(correctness, pipeline_await_sync_reports_a_lost_commit) {
  auto admin = connect();
  make_slow_commit_table(admin, "ct_pipe", "30");
  auto c = connect();
  std::atomic<int> killed{0};
  auto killer = kill_sleeping_commits(killed);
  bool threw = false;
  {
    pipeline p(c);
    p.send("INSERT INTO ct_pipe VALUES (1)");
    p.sync();
    (void)p.get_result();  // its CommandComplete arrives before the commit
    try {
      p.await_sync();
    } catch (const connection_error& e) {
      threw = true;
      EXPECT_EQ(e.outcome(), outcome::indeterminate) << e.what();
    }
  }
  killer.join();
  EXPECT_TRUE(threw) << "await_sync returned although the backend died before committing";
  EXPECT_EQ(ids_in(admin, "ct_pipe").size(), 0u);
}

TEST(correctness, a_pipelined_commit_whose_reply_is_lost_is_an_indeterminate_commit) {
  auto admin = connect();
  make_slow_commit_table(admin, "ct_pcommit", "30");
  auto c = connect();
  std::atomic<int> killed{0};
  auto killer = kill_sleeping_commits(killed);
  bool indeterminate = false;
  {
    pipeline p(c);
    p.send("BEGIN");
    p.send("INSERT INTO ct_pcommit VALUES (1)");
    p.send("COMMIT");
    p.sync();
    try {
      (void)p.get_result();  // BEGIN
      (void)p.get_result();  // INSERT
      (void)p.get_result();  // COMMIT: the backend dies while committing
      p.await_sync();
    } catch (const indeterminate_commit& e) {
      indeterminate = true;
      EXPECT_EQ(e.outcome(), outcome::indeterminate) << e.what();
    } catch (const error& e) {
      ADD_FAILURE() << "a lost COMMIT reply must be indeterminate_commit, not: " << e.what();
    }
  }
  killer.join();
  EXPECT_TRUE(indeterminate);
}

TEST(correctness, pipeline_finish_reports_a_lost_commit) {
  auto admin = connect();
  make_slow_commit_table(admin, "ct_finish", "30");
  auto c = connect();
  std::atomic<int> killed{0};
  auto killer = kill_sleeping_commits(killed);
  pipeline p(c);
  p.send("INSERT INTO ct_finish VALUES (1)");
  p.sync();
  (void)p.get_result();
  EXPECT_THROW(p.finish(), connection_error);
  killer.join();
  EXPECT_EQ(ids_in(admin, "ct_finish").size(), 0u);
}

TEST(correctness, pipeline_batch_never_reports_an_uncommitted_write_as_succeeded) {
  auto admin = connect();
  make_slow_commit_table(admin, "ct_batch", "30");
  auto o = options();
  o.resilience.retry.max_retries = 0;
  client db(o);
  std::vector<batch_operation> ops;
  for (int i = 0; i < 5; ++i) ops.emplace_back("INSERT INTO ct_batch VALUES ($1)", i);
  std::atomic<int> killed{0};
  auto killer = kill_sleeping_commits(killed);
  const auto report = db.batch_execute(ops, bopts(5, 1, batch_mode::pipeline, 60s));
  killer.join();
  ASSERT_GE(killed.load(), 1);
  const auto in_table = ids_in(admin, "ct_batch");
  std::set<std::size_t> failed;
  for (const auto& e : report.errors) {
    failed.insert(e.index);
    if (e.outcome != outcome::indeterminate) {
      EXPECT_EQ(in_table.count(static_cast<int>(e.index)), 0u) << "reported " << to_string(e.outcome) << " but applied";
    }
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (!failed.count(i)) {
      EXPECT_EQ(in_table.count(static_cast<int>(i)), 1u) << "operation " << i << " reported succeeded";
    }
  }
  // The first statement's commit was cut off: unknown, not succeeded.
  ASSERT_FALSE(report.errors.empty());
  EXPECT_EQ(report.errors[0].index, 0u);
  EXPECT_EQ(report.errors[0].outcome, outcome::indeterminate);
  EXPECT_GE(report.stats.unknown, 1u);
}

TEST(correctness, pipeline_batch_resumes_what_a_terminated_session_never_ran) {
  // A session ended by the server (FATAL 57P01) processed nothing after what it answered: the
  // operations after the cut are run on another connection, not reported as failed.
  auto admin = connect();
  make_slow_commit_table(admin, "ct_resume", "CASE WHEN NEW.id = 0 THEN 30 ELSE 0 END");  // only the first is slow
  auto o = options();
  o.resilience.retry.max_retries = 3;
  client db(o);
  std::vector<batch_operation> ops;
  for (int i = 0; i < 6; ++i) ops.emplace_back("INSERT INTO ct_resume VALUES ($1)", i);
  std::atomic<int> killed{0};
  auto killer = kill_sleeping_commits(killed);
  const auto report = db.batch_execute(ops, bopts(6, 1, batch_mode::pipeline, 60s));
  killer.join();
  const auto in_table = ids_in(admin, "ct_resume");
  std::set<std::size_t> failed;
  for (const auto& e : report.errors) {
    failed.insert(e.index);
    if (e.outcome != outcome::indeterminate) {
      EXPECT_EQ(in_table.count(static_cast<int>(e.index)), 0u);
    }
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (!failed.count(i)) {
      EXPECT_EQ(in_table.count(static_cast<int>(i)), 1u) << i;
    }
  }
  // Only the statement whose commit was cut off is in doubt; the others ran again.
  EXPECT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.stats.succeeded, 5u);
}

// ---- 2. NUL bytes ----------------------------------------------------------------------------

TEST(correctness, nul_in_sql_text_is_a_usage_error_and_sends_nothing) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_nul");
  c.execute("CREATE TABLE ct_nul (id int)");
  c.execute("INSERT INTO ct_nul SELECT generate_series(1, 10)");
  const std::string_view bad("DELETE FROM ct_nul\0 WHERE id = 1", 32);
  EXPECT_THROW(c.execute(bad), usage_error);
  EXPECT_THROW(c.execute(bad, 1), usage_error);
  {
    pipeline p(c);
    EXPECT_THROW(p.send(bad), usage_error);
  }
  client db(options());
  EXPECT_THROW(db.execute(bad), usage_error);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_nul"), 10);
  // The batch: that operation fails alone, before anything of its chunk is sent.
  for (auto mode : {batch_mode::independent, batch_mode::pipeline, batch_mode::transaction}) {
    std::vector<batch_operation> ops;
    ops.emplace_back("INSERT INTO ct_nul VALUES (100)");
    ops.emplace_back(std::string(bad));
    ops.emplace_back("INSERT INTO ct_nul VALUES (101)");
    const auto r = db.batch_execute(ops, bopts(3, 1, mode, 30s));
    ASSERT_EQ(r.errors.size(), 1u) << to_string(mode);
    EXPECT_EQ(r.errors[0].index, 1u);
    EXPECT_EQ(r.errors[0].outcome, outcome::not_sent);
    EXPECT_NE(r.errors[0].message.find("NUL"), std::string::npos) << r.errors[0].message;
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_nul WHERE id BETWEEN 1 AND 10"), 10) << to_string(mode);
    c.execute("DELETE FROM ct_nul WHERE id >= 100");
  }
}

TEST(correctness, nul_in_a_copy_field_fails_that_row_only) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_copy");
  c.execute("CREATE TABLE ct_copy (id int, t text)");
  copy_in copy(c, "ct_copy", {"id", "t"});
  copy.write_row(1, "one");
  EXPECT_THROW(copy.write_row(2, std::string("t\0wo", 4)), usage_error);
  copy.write_row(3, "three");
  EXPECT_EQ(copy.finish(), 2u);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_copy"), 2);
  EXPECT_THROW(copy_in(c, std::string_view("ct_copy\0; DROP TABLE ct_copy", 28)), usage_error);
  EXPECT_TRUE(c.is_idle());
}

// ---- 3. A row the client cannot build fails alone ------------------------------------------

TEST(correctness, a_row_with_too_few_fields_fails_alone_in_every_mode) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_rows");
  c.execute("CREATE TABLE ct_rows (id int PRIMARY KEY, name text NOT NULL)");
  client db(options());
  for (auto mode : {batch_mode::independent, batch_mode::pipeline, batch_mode::transaction}) {
    c.execute("TRUNCATE ct_rows");
    std::vector<batch_operation> ops;
    for (int i = 0; i < 5; ++i) {
      param_list p;
      p.add(i);
      if (i != 2) p.add("row " + std::to_string(i));  // row 2 has one field too few
      ops.emplace_back("INSERT INTO ct_rows VALUES ($1, $2)", std::move(p));
    }
    const auto r = db.batch_execute(ops, bopts(5, 1, mode, 30s));
    ASSERT_EQ(r.errors.size(), 1u) << to_string(mode);
    EXPECT_EQ(r.errors[0].index, 2u);
    EXPECT_EQ(r.errors[0].outcome, outcome::not_sent);
    EXPECT_EQ(r.stats.succeeded, 4u);
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_rows"), 4) << to_string(mode);
  }
  // An operation that cannot even be made fails alone too.
  c.execute("TRUNCATE ct_rows");
  const auto r = db.batch_execute(
      5,
      [](std::size_t i) {
        if (i == 3) throw std::runtime_error("bad input on line 4");
        return batch_operation("INSERT INTO ct_rows VALUES ($1, 'x')", static_cast<int>(i));
      },
      bopts(5, 1, batch_mode::pipeline, 30s));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].index, 3u);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_rows"), 4);
}

TEST(correctness, transaction_chunk_members_say_rolled_back_with_the_culprit) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_tx");
  c.execute("CREATE TABLE ct_tx (id int PRIMARY KEY)");
  c.execute("INSERT INTO ct_tx VALUES (3)");
  client db(options());
  std::vector<batch_operation> ops;
  for (int i = 0; i < 5; ++i) ops.emplace_back("INSERT INTO ct_tx VALUES ($1)", i);
  const auto r = db.batch_execute(ops, bopts(5, 1, batch_mode::transaction, 30s));
  ASSERT_EQ(r.errors.size(), 5u);
  for (const auto& e : r.errors) {
    ASSERT_TRUE(e.cause.has_value());
    EXPECT_EQ(*e.cause, 3u);
    if (e.index == 3) {
      EXPECT_EQ(e.sqlstate, "23505");
      EXPECT_EQ(e.reason, batch_failure::failed);
    } else {
      EXPECT_EQ(e.reason, batch_failure::rolled_back) << e.index;
      EXPECT_EQ(e.outcome, outcome::rolled_back);
      EXPECT_EQ(e.message.find("duplicate key"), std::string::npos) << e.message;
    }
  }
}

// ---- 5. A silent server ----------------------------------------------------------------------

TEST(correctness, statement_timeout_ends_a_call_on_a_silent_server) {
  if (cluster_environment::cluster() == nullptr) GTEST_SKIP() << "needs the embedded server";
  auto admin = connect();
  auto o = options();
  o.dsn = dsn_with_app("ct_silent");
  o.connection.statement_timeout = 500ms;
  o.resilience.retry.max_retries = 0;
  client db(o);
  (void)db.query_value<int>("SELECT 1");  // a pooled connection exists
  const auto pids = backends_of(admin, "ct_silent");
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_EQ(::kill(pids[0], SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    (void)db.query_value<int>("SELECT 2");
    ADD_FAILURE() << "a stopped backend answered";
  } catch (const timeout_error& e) {
    EXPECT_EQ(e.outcome(), outcome::indeterminate);
  } catch (const error& e) {
    ADD_FAILURE() << "unexpected: " << e.what();
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  ::kill(pids[0], SIGCONT);
  (void)admin.query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pids[0]);
  // 500 ms + the 1 s backstop + at most the cancel's 2 s bound, with room for a busy machine.
  EXPECT_LT(took, 15s);
  EXPECT_EQ(db.query_value<int>("SELECT 3"), 3);  // a new connection
}

TEST(correctness, keepalive_defaults_apply_and_the_dsn_wins) {
  connection_options co;
  co.dsn = cluster_environment::dsn();
  connection a(co);
  auto setting = [](connection& c, const char* key) {
    std::string v;
    PQconninfoOption* opts = PQconninfo(c.native_handle());
    for (auto* o = opts; o && o->keyword; ++o) {
      if (std::string_view(o->keyword) == key && o->val) v = o->val;
    }
    PQconninfoFree(opts);
    return v;
  };
  EXPECT_EQ(setting(a, "keepalives_idle"), "15");
  EXPECT_EQ(setting(a, "tcp_user_timeout"), "30000");
  co.dsn += " keepalives_idle=42 tcp_user_timeout=0";
  connection b(co);
  EXPECT_EQ(setting(b, "keepalives_idle"), "42");
  EXPECT_EQ(setting(b, "tcp_user_timeout"), "0");
}

// ---- 6. A refused login is fatal -------------------------------------------------------------

TEST(correctness, wrong_password_is_tried_once_and_opens_no_breaker) {
  steadypg::testing::temp_cluster_options to;
  to.password = "right-pw";
  steadypg::testing::temp_cluster secured(to);
  auto o = options();
  o.dsn = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres password=wrong-pw", secured.port());
  o.resilience.breaker.failure_threshold = 2;
  o.resilience.retry.max_retries = 5;
  client db(o);
  for (int i = 0; i < 4; ++i) {
    try {
      db.ping();
      ADD_FAILURE() << "logged in with a wrong password";
    } catch (const connection_error& e) {
      EXPECT_EQ(e.sqlstate(), "28P01") << e.what();
      EXPECT_EQ(e.outcome(), outcome::fatal);
      EXPECT_EQ(e.attempts(), 1);
    }
  }
  EXPECT_EQ(db.breaker().state(), breaker_state::closed);
  // A batch stops at the first refusal instead of trying every operation.
  std::vector<batch_operation> ops;
  for (int i = 0; i < 50; ++i) ops.emplace_back("SELECT $1::int", i);
  const auto r = db.batch_execute(ops, bopts(5, 2, batch_mode::independent, 30s));
  EXPECT_EQ(r.stats.succeeded, 0u);
  EXPECT_TRUE(r.stopped);
  std::size_t not_run = 0;
  for (const auto& e : r.errors) not_run += e.reason == batch_failure::not_run;
  EXPECT_GE(not_run, 40u);
  // Each attempt leaves one line in the server log: 4 pings + at most one per worker.
  const auto log = secured.log_tail(1 << 20);
  std::size_t attempts = 0;
  for (std::size_t p = 0; (p = log.find("password authentication failed", p)) != std::string::npos; ++p) ++attempts;
  EXPECT_LE(attempts, 4u + 2u) << log;

  o.dsn = fmt::format("host=127.0.0.1 port={} user=postgres dbname=no_such_db password=right-pw", secured.port());
  client missing(o);
  try {
    missing.ping();
    ADD_FAILURE();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.sqlstate(), "3D000") << e.what();
    EXPECT_EQ(e.attempts(), 1);
  }
}

// ---- 11. Batches wait for an open breaker --------------------------------------------------

TEST(correctness, batch_waits_through_an_outage_instead_of_failing_fast) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded server";
  auto admin = connect();
  admin.execute("DROP TABLE IF EXISTS ct_outage");
  admin.execute("CREATE TABLE ct_outage (id int PRIMARY KEY)");
  auto o = options();
  o.resilience.breaker.failure_threshold = 3;
  o.resilience.breaker.open_duration = 300ms;
  o.connection.connect_timeout = 1000ms;
  o.resilience.retry.max_retries = 3;
  client db(o);
  constexpr int n = 3000;
  std::atomic<bool> started{false};
  batch_report r;
  // The batch runs on a thread of its own: the server must be restarted from this thread,
  // which outlives it (the embedded server stops with the thread that started it).
  std::thread batch([&] {
    r = db.batch_execute(
        n,
        [&](std::size_t i) {
          started = true;
          return batch_operation("INSERT INTO ct_outage SELECT $1 FROM pg_sleep(0.001)", static_cast<int>(i));
        },
        bopts(20, 2, batch_mode::pipeline, 60s));
  });
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!started.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(300ms);
  cluster->stop();
  std::this_thread::sleep_for(1500ms);
  cluster->start();
  batch.join();
  auto after = connect();
  const auto in_table = ids_in(after, "ct_outage");
  std::set<std::size_t> failed;
  for (const auto& e : r.errors) {
    failed.insert(e.index);
    if (e.outcome != outcome::indeterminate) {
      EXPECT_EQ(in_table.count(static_cast<int>(e.index)), 0u);
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!failed.count(static_cast<std::size_t>(i))) {
      EXPECT_EQ(in_table.count(i), 1u) << i;
    }
  }
  EXPECT_GT(r.stats.breaker_waited, 0u);
  // Only what was in flight when the server went away may fail; the rest waits and runs.
  EXPECT_LT(r.stats.failed, static_cast<std::size_t>(n / 10)) << r.stats.failed << " failed";
}

// ---- 12. Pipelines prepare on first use -----------------------------------------------------

TEST(correctness, pipeline_prepares_a_new_statement_once) {
  auto c = connect();
  const auto before = c.cache_stats();
  for (int round = 0; round < 3; ++round) {
    pipeline p(c);
    for (int i = 0; i < 10; ++i) p.send("SELECT $1::int + 1", i);
    p.sync();
    for (int i = 0; i < 10; ++i) EXPECT_EQ(p.get_result().as<int>(), i + 1);
    p.finish();
  }
  const auto after = c.cache_stats();
  EXPECT_EQ(after.misses - before.misses, 1u);
  EXPECT_EQ(after.size, before.size + 1);
  EXPECT_EQ(c.query_value<int64_t>(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1'"),
            1);
  // A text the server rejects still fails as its statement's result, and the pipeline goes on.
  pipeline p(c);
  p.send("SELEKT 1");
  p.sync();
  p.send("SELECT 2");
  p.sync();
  EXPECT_THROW(p.get_result(), sql_error);
  EXPECT_EQ(p.get_result().as<int>(), 2);
  p.finish();
}

// ---- What a hostile review found ------------------------------------------------------------

TEST(correctness, a_commit_that_fails_at_the_sync_point_fails_that_operation_only) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_deferred, ct_after");
  c.execute("CREATE TABLE ct_deferred (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)");
  c.execute("INSERT INTO ct_deferred VALUES (1)");
  c.execute("CREATE TABLE ct_after (id int)");
  client db(options());
  std::vector<batch_operation> ops;
  ops.emplace_back("INSERT INTO ct_deferred VALUES (1)");  // fails when it commits, at its sync point
  for (int i = 0; i < 3; ++i) ops.emplace_back("INSERT INTO ct_after VALUES ($1)", i);
  const auto r = db.batch_execute(ops, bopts(4, 1, batch_mode::pipeline, 30s));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].index, 0u);
  EXPECT_EQ(r.errors[0].sqlstate, "23505");
  EXPECT_EQ(r.errors[0].outcome, outcome::fatal);
  EXPECT_EQ(r.stats.succeeded, 3u);
  // Each of the others exactly once: nothing was sent again.
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_after"), 3);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(DISTINCT id) FROM ct_after"), 3);
  // The pipeline itself: await_sync reports the failed commit and the session goes on.
  pipeline p(c);
  p.send("INSERT INTO ct_deferred VALUES (1)");
  p.sync();
  p.send("SELECT 42");
  p.sync();
  (void)p.get_result();
  EXPECT_THROW(p.await_sync(), unique_violation);
  EXPECT_EQ(p.get_result().as<int>(), 42);
  p.await_sync();
  p.finish();
  EXPECT_TRUE(c.is_idle());
}

TEST(correctness, a_flush_that_times_out_in_a_pipeline_closes_instead_of_hanging) {
  connection_options co;
  co.dsn = cluster_environment::dsn();
  co.query_timeout = 1000ms;
  connection c(co);
  c.execute("DROP TABLE IF EXISTS ct_flush");
  c.execute("CREATE TABLE ct_flush (v text)");
  const std::string big(1 << 20, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  bool timed_out = false;
  try {
    pipeline p(c);
    p.send("SELECT pg_sleep(3)");
    p.sync();
    for (int i = 0; i < 30; ++i) {
      p.send("INSERT INTO ct_flush VALUES ($1)", big);
      p.sync();
    }
    while (p.pending() > 0) (void)p.get_result();
    p.finish();
  } catch (const timeout_error&) {
    timed_out = true;
  } catch (const error& e) {
    ADD_FAILURE() << e.what();
  }
  EXPECT_TRUE(timed_out);
  EXPECT_TRUE(c.is_broken()) << "results in flight were never drained into someone else's hands";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
}

TEST(correctness, the_batch_deadline_bounds_a_whole_pipelined_chunk) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_deadline");
  c.execute("CREATE TABLE ct_deadline (id int)");
  client db(options());
  std::vector<batch_operation> ops;
  for (int i = 0; i < 8; ++i) ops.emplace_back("INSERT INTO ct_deadline SELECT $1 FROM pg_sleep(1.5)", i);
  for (auto mode : {batch_mode::pipeline, batch_mode::transaction}) {
    c.execute("TRUNCATE ct_deadline");
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = db.batch_execute(ops, bopts(8, 1, mode, 2000ms));
    const auto took = std::chrono::steady_clock::now() - t0;
    // 2 s plus the cancel's bound (2 s), not 8 × 1.5 s.
    EXPECT_LT(took, 7s) << to_string(mode);
    EXPECT_TRUE(r.timed_out) << to_string(mode);
    EXPECT_LE(r.stats.succeeded, 2u) << to_string(mode);
    const auto in_table = c.query_value<int64_t>("SELECT count(*) FROM ct_deadline");
    EXPECT_GE(in_table, static_cast<int64_t>(r.stats.succeeded)) << to_string(mode);
    EXPECT_LE(in_table, static_cast<int64_t>(r.stats.succeeded + r.stats.unknown)) << to_string(mode);
  }
}

TEST(correctness, transaction_control_cannot_make_a_batch_report_lie) {
  auto c = connect();
  c.execute("DROP TABLE IF EXISTS ct_txctl");
  c.execute("CREATE TABLE ct_txctl (id int)");
  client db(options());
  {
    // Pipeline mode: a BEGIN would hold every later operation in a block the pool rolls back.
    std::vector<batch_operation> ops;
    ops.emplace_back("  /* open */ BEGIN");
    for (int i = 0; i < 3; ++i) ops.emplace_back("INSERT INTO ct_txctl VALUES ($1)", i);
    const auto r = db.batch_execute(ops, bopts(4, 1, batch_mode::pipeline, 30s));
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].index, 0u);
    EXPECT_EQ(r.errors[0].outcome, outcome::not_sent);
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_txctl"), 3);
  }
  {
    // A callable that leaves a transaction open in pipeline mode: rolled back, and said so.
    c.execute("TRUNCATE ct_txctl");
    std::vector<batch_operation> ops;
    ops.push_back(batch_operation::call([](connection& k) {
      k.execute("BEGIN");
      k.execute("INSERT INTO ct_txctl VALUES (100)");
    }));
    ops.emplace_back("INSERT INTO ct_txctl VALUES (1)");
    const auto r = db.batch_execute(ops, bopts(2, 1, batch_mode::pipeline, 30s));
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].index, 0u);
    EXPECT_EQ(r.errors[0].outcome, outcome::rolled_back);
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_txctl WHERE id = 100"), 0);
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_txctl WHERE id = 1"), 1);
  }
  {
    // Transaction mode: a COMMIT inside a chunk would commit half of it.
    c.execute("TRUNCATE ct_txctl");
    std::vector<batch_operation> ops;
    ops.emplace_back("INSERT INTO ct_txctl VALUES (1)");
    ops.emplace_back("COMMIT");
    ops.emplace_back("INSERT INTO ct_txctl VALUES (2)");
    ops.emplace_back("SELECT 1/0");
    const auto r = db.batch_execute(ops, bopts(4, 1, batch_mode::transaction, 30s));
    EXPECT_EQ(r.stats.succeeded, 0u);
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_txctl"), 0) << "nothing of a failed chunk is applied";
    for (const auto& e : r.errors) {
      if (e.index == 1) EXPECT_EQ(e.outcome, outcome::not_sent);
      else EXPECT_NE(e.outcome, outcome::indeterminate);
    }
  }
  {
    // A callable that commits inside a transaction chunk: the report says what ran may be in.
    c.execute("TRUNCATE ct_txctl");
    std::vector<batch_operation> ops;
    ops.emplace_back("INSERT INTO ct_txctl VALUES (1)");
    ops.push_back(batch_operation::call([](connection& k) { k.execute("COMMIT"); }));
    ops.emplace_back("INSERT INTO ct_txctl VALUES (2)");
    const auto r = db.batch_execute(ops, bopts(3, 1, batch_mode::transaction, 30s));
    EXPECT_EQ(r.stats.succeeded, 0u);
    ASSERT_EQ(r.errors.size(), 3u);
    for (const auto& e : r.errors) EXPECT_EQ(e.outcome, outcome::indeterminate) << e.message;
    EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM ct_txctl WHERE id = 2"), 0);
  }
}
