// steadypg behind a real PgBouncer 1.18 (pool_mode=transaction, default_pool_size=2) in front
// of the suite's throwaway PostgreSQL: what works with pooler=transaction, and controls that
// show what breaks without it.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli_run.hpp"
#include "cluster_env.hpp"
#include "pgbouncer_process.hpp"
#include "steadypg/steadypg.hpp"

namespace {

using namespace std::chrono_literals;
using steadypg::test::cluster_environment;
using clock_type = std::chrono::steady_clock;

// A raw libpq connection (controls and PgBouncer's admin console).
struct raw_conn {
  explicit raw_conn(const std::string& dsn) : c(PQconnectdb(dsn.c_str())) {
    if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(std::string("connect: ") + PQerrorMessage(c));
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);
  }
  ~raw_conn() { PQfinish(c); }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;
  // The first row's `column` of `sql`; throws on failure.
  std::string value(const std::string& sql, int column = 0) {
    PGresult* r = PQexec(c, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string v;
    const bool ok = st == PGRES_TUPLES_OK && PQntuples(r) > 0;
    if (ok) v = PQgetvalue(r, 0, column);
    const std::string err = PQresultErrorMessage(r);
    PQclear(r);
    if (!ok) throw std::runtime_error(sql + ": " + err);
    return v;
  }
  void run(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    const auto st = PQresultStatus(r);
    const std::string err = PQresultErrorMessage(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw std::runtime_error(sql + ": " + err);
  }
  PGconn* c;
};

// Prints one measured figure for the notes (flushed: the CLI tests fork).
[[gnu::format(printf, 1, 2)]] void figure(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::printf("[figures] ");
  std::vprintf(format, args);
  std::printf("\n");
  std::fflush(stdout);
  va_end(args);
}

class pgbouncer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (cluster_environment::cluster() == nullptr) return;
    s_bouncer = std::make_unique<steadypg::test::pgbouncer_process>(cluster_environment::cluster()->port());
  }
  static void TearDownTestSuite() { s_bouncer.reset(); }
  void SetUp() override {
    if (!s_bouncer) GTEST_SKIP() << "needs the embedded server (STEADYPG_TEST_DSN is set)";
  }

  static steadypg::client_options through_bouncer(steadypg::pooler_mode mode, std::size_t pool_max) {
    auto o = steadypg::test::client_options_for(pool_max);
    o.dsn = s_bouncer->dsn();
    o.connection.pooler = mode;
    o.resilience.retry.max_retries = 0;  // a failure here is a finding, not something to hide
    return o;
  }
  static steadypg::connection_options connection_through_bouncer(steadypg::pooler_mode mode) {
    steadypg::connection_options o;
    o.dsn = s_bouncer->dsn();
    o.pooler = mode;
    return o;
  }
  // total_xact_count of database postgres in SHOW STATS.
  static long long xact_count() {
    raw_conn admin(s_bouncer->admin_dsn());
    PGresult* r = PQexec(admin.c, "SHOW STATS");
    long long n = -1;
    const int col = PQfnumber(r, "total_xact_count");
    for (int i = 0; i < PQntuples(r) && col >= 0; ++i) {
      if (std::string(PQgetvalue(r, i, 0)) == "postgres") n = std::stoll(PQgetvalue(r, i, col));
    }
    PQclear(r);
    return n;
  }
  // The lines of PgBouncer's log since `from` that warn about the protocol.
  static std::string protocol_warnings(std::size_t from) {
    const std::string log = s_bouncer->log();
    std::string found;
    std::size_t pos = std::min(from, log.size());
    while (pos < log.size()) {
      const std::size_t eol = std::min(log.find('\n', pos), log.size());
      const std::string line = log.substr(pos, eol - pos);
      if (line.find("WARNING") != std::string::npos || line.find("not linked") != std::string::npos ||
          line.find("ERROR") != std::string::npos) {
        found += line + "\n";
      }
      pos = eol + 1;
    }
    return found;
  }

  static inline std::unique_ptr<steadypg::test::pgbouncer_process> s_bouncer;
};

// ---------------------------------------------------------------------------------------------

TEST_F(pgbouncer, transaction_mode_runs_parameterized_calls_from_8_threads_without_errors) {
  steadypg::client db{through_bouncer(steadypg::pooler_mode::transaction, 8)};
  constexpr int threads = 8;
  constexpr int per_thread = 10000;
  const auto stop_at = clock_type::now() + 50s;  // a bound, not an expectation
  std::atomic<long> ok{0}, errors{0};
  std::mutex mu;
  std::string first_error;
  const auto t0 = clock_type::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread && clock_type::now() < stop_at; ++i) {
        try {
          // Every tenth call has a deadline: its statement_timeout rides in the same round trip.
          const int v = i % 10 == 0 ? db.query_value<int>(steadypg::statement{"SELECT $1::int + $2"}.timeout(10s), i, t)
                                    : db.query_value<int>("SELECT $1::int + $2", i, t);
          if (v == i + t) {
            ++ok;
          } else {
            ++errors;
          }
        } catch (const std::exception& e) {
          ++errors;
          std::lock_guard lk(mu);
          if (first_error.empty()) first_error = e.what();
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  figure("pooler=transaction: %ld calls ok, %ld errors in %.1f s (%.0f calls/s)", ok.load(), errors.load(), secs,
         static_cast<double>(ok.load()) / secs);
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(ok.load(), threads * per_thread) << "the time bound cut the run short";
}

TEST_F(pgbouncer, control_named_prepared_statements_fail_with_26000) {
  // The same workload through steadypg with pooler=none: named prepared statements, and
  // another client takes the server session in between.
  // Every connection names its first statement steadypg_1, so on a shared server session the
  // name is missing (26000), taken (42P05), or another client's statement (a wrong answer).
  {
    steadypg::client db{through_bouncer(steadypg::pooler_mode::none, 8)};
    const auto stop_at = clock_type::now() + 20s;
    std::atomic<long> missing{0}, taken{0}, wrong{0}, calls{0}, other{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 8; ++t) {
      pool.emplace_back([&, t] {
        // One text per thread: a statement of another thread answers differently.
        const std::string sql = fmt::format("SELECT $1::int + {}", t);
        for (int i = 0; i < 2000 && clock_type::now() < stop_at && missing.load() + taken.load() < 50; ++i) {
          ++calls;
          try {
            if (db.query_value<int>(sql, i) != i + t) ++wrong;
          } catch (const steadypg::error& e) {
            ++(e.sqlstate() == "26000" ? missing : e.sqlstate() == "42P05" ? taken : other);
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    figure(
        "control, steadypg with pooler=none: of %ld calls %ld failed with 26000, %ld with 42P05, %ld returned another "
        "client's answer (%ld other errors)",
        calls.load(), missing.load(), taken.load(), wrong.load(), other.load());
    EXPECT_GE(missing.load() + taken.load() + wrong.load(), 1);
  }
  // And with libpq alone, one statement name per client.
  constexpr int threads = 8;
  const auto stop_at = clock_type::now() + 20s;
  std::atomic<long> missing{0}, calls{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      raw_conn c(s_bouncer->dsn());
      const std::string name = fmt::format("s{}", t);
      PGresult* p = PQprepare(c.c, name.c_str(), "SELECT $1::int + 1", 1, nullptr);
      PQclear(p);
      for (int i = 0; i < 2000 && clock_type::now() < stop_at && missing.load() < 50; ++i) {
        const std::string v = std::to_string(i);
        const char* values[] = {v.c_str()};
        PGresult* r = PQexecPrepared(c.c, name.c_str(), 1, values, nullptr, nullptr, 0);
        const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state != nullptr && std::string(state) == "26000") ++missing;
        ++calls;
        PQclear(r);
      }
    });
  }
  for (auto& th : pool) th.join();
  figure("control, libpq PQprepare/PQexecPrepared: %ld of %ld calls failed with 26000", missing.load(), calls.load());
  EXPECT_GE(missing.load(), 1);
}

TEST_F(pgbouncer, a_call_deadline_cancels_on_the_server_and_leaves_no_setting_behind) {
  steadypg::client db{through_bouncer(steadypg::pooler_mode::transaction, 2)};
  for (const bool with_params : {false, true}) {
    const auto t0 = clock_type::now();
    try {
      if (with_params) {
        (void)db.execute(steadypg::statement{"SELECT pg_sleep($1)"}.timeout(100ms), 0.5);
      } else {
        (void)db.execute(steadypg::statement{"SELECT pg_sleep(0.5)"}.timeout(100ms));
      }
      ADD_FAILURE() << "pg_sleep(0.5) finished within a 100 ms deadline";
    } catch (const steadypg::error& e) {
      const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
      figure("deadline 100 ms on pg_sleep(0.5)%s: SQLSTATE %s after %.3f s", with_params ? " ($1)" : "",
             e.sqlstate().c_str(), secs);
      EXPECT_EQ(e.sqlstate(), "57014") << e.what();
      EXPECT_GE(secs, 0.08);
      EXPECT_LE(secs, 0.2);
    }
  }
  // A transaction: SET LOCAL after BEGIN.
  {
    steadypg::connection c(connection_through_bouncer(steadypg::pooler_mode::transaction));
    c.set_statement_timeout(100ms);
    auto tx = c.begin();
    const auto t0 = clock_type::now();
    EXPECT_THROW((void)tx.execute("SELECT pg_sleep(0.5)"), steadypg::query_canceled);
    EXPECT_LE(clock_type::now() - t0, 200ms);
  }
  // Both server sessions of the pool, held at once by two other clients: the server default.
  raw_conn a(s_bouncer->dsn()), b(s_bouncer->dsn());
  a.run("BEGIN");
  b.run("BEGIN");
  const auto pid_a = a.value("SELECT pg_backend_pid()");
  const auto pid_b = b.value("SELECT pg_backend_pid()");
  EXPECT_NE(pid_a, pid_b);
  EXPECT_EQ(a.value("SHOW statement_timeout"), "0");
  EXPECT_EQ(b.value("SHOW statement_timeout"), "0");
  a.run("COMMIT");
  b.run("COMMIT");
}

TEST_F(pgbouncer, control_a_session_set_leaks_into_other_clients) {
  // What a session SET does behind PgBouncer (why steadypg never sends one there).
  raw_conn a(s_bouncer->dsn());
  a.run("SET statement_timeout = '1234ms'");
  raw_conn b(s_bouncer->dsn()), c(s_bouncer->dsn());
  b.run("BEGIN");
  c.run("BEGIN");
  const bool leaked = b.value("SHOW statement_timeout") == "1234ms" || c.value("SHOW statement_timeout") == "1234ms";
  b.run("COMMIT");
  c.run("COMMIT");
  EXPECT_TRUE(leaked);
  a.run("RESET statement_timeout");  // clean up the server session for the other tests
}

TEST_F(pgbouncer, show_stats_counts_one_transaction_per_autocommit_call) {
  auto o = through_bouncer(steadypg::pooler_mode::transaction, 2);
  o.connection.statement_timeout = 30s;  // configured default: rides with every statement
  // The one known extra: a connection idle longer than validate_after_idle (default 1 s) is
  // pinged before it is handed out, which PgBouncer counts as a transaction. Out of the way here.
  o.pool.validate_after_idle = 60s;
  steadypg::client db{o};
  db.ping();  // the pool's first connection exists before counting
  std::this_thread::sleep_for(2200ms);
  const long long before = xact_count();
  constexpr int n = 1000;
  for (int i = 0; i < n; ++i) {
    if (i % 2 == 0) {
      (void)db.query_value<int>("SELECT $1::int", i);
    } else {
      (void)db.query_value<int>(steadypg::statement{"SELECT $1::int"}.timeout(5s), i);
    }
  }
  std::this_thread::sleep_for(2200ms);  // stats_period=1: totals roll up every second
  const long long after = xact_count();
  figure("SHOW STATS: %d autocommit calls raised total_xact_count by %lld (%lld -> %lld)", n, after - before, before,
         after);
  EXPECT_EQ(after - before, n) << "hidden SET, DISCARD or other round trips";
}

TEST_F(pgbouncer, a_transaction_mode_batch_failing_at_row_50_matches_the_table) {
  raw_conn direct(cluster_environment::dsn());
  direct.run("DROP TABLE IF EXISTS pgb_batch; CREATE TABLE pgb_batch (id int PRIMARY KEY, v int NOT NULL)");
  const std::size_t log_from = s_bouncer->log().size();
  steadypg::client db{through_bouncer(steadypg::pooler_mode::transaction, 4)};
  std::vector<steadypg::batch_operation> ops;
  for (int i = 0; i < 100; ++i) {
    if (i == 50) {
      ops.emplace_back("INSERT INTO pgb_batch (id, v) VALUES ($1, NULL)", i);
    } else {
      ops.emplace_back("INSERT INTO pgb_batch (id, v) VALUES ($1, $1)", i);
    }
  }
  steadypg::batch_options bo;
  bo.batch_size = 100;
  bo.concurrency = 1;
  bo.mode = steadypg::batch_mode::transaction;
  auto tx = db.batch_execute(ops, bo);
  EXPECT_EQ(tx.stats.succeeded, 0u);
  EXPECT_EQ(tx.stats.failed, 100u);
  ASSERT_FALSE(tx.errors.empty());
  bool culprit = false;
  for (const auto& e : tx.errors) culprit |= e.index == 50 && e.sqlstate == "23502";
  EXPECT_TRUE(culprit);
  EXPECT_EQ(direct.value("SELECT count(*) FROM pgb_batch"), "0");
  // Pipeline mode: a sync point per operation, the failing one alone rolls back.
  bo.concurrency = 2;
  bo.mode = steadypg::batch_mode::pipeline;
  auto pl = db.batch_execute(ops, bo);
  EXPECT_EQ(pl.stats.succeeded, 99u);
  ASSERT_EQ(pl.errors.size(), 1u);
  EXPECT_EQ(pl.errors[0].index, 50u);
  EXPECT_EQ(direct.value("SELECT count(*) FROM pgb_batch"), "99");
  // A transaction-mode chunk past the batch deadline: the server ends it (SET LOCAL after BEGIN).
  direct.run("TRUNCATE pgb_batch");
  std::vector<steadypg::batch_operation> slow;
  slow.emplace_back("INSERT INTO pgb_batch (id, v) VALUES ($1, $1)", 1);
  slow.emplace_back("SELECT pg_sleep(2)");
  bo.mode = steadypg::batch_mode::transaction;
  bo.timeout = 500ms;
  const auto t0 = clock_type::now();
  auto late = db.batch_execute(slow, bo);
  EXPECT_LE(clock_type::now() - t0, 1500ms);
  EXPECT_EQ(late.stats.succeeded, 0u);
  bool server_cancelled = false;
  for (const auto& e : late.errors) server_cancelled |= e.sqlstate == "57014";
  EXPECT_TRUE(server_cancelled) << (late.errors.empty() ? "" : late.errors[0].message);
  EXPECT_EQ(direct.value("SELECT count(*) FROM pgb_batch"), "0");
  // COPY through PgBouncer.
  direct.run("TRUNCATE pgb_batch");
  const auto rows = db.copy_from("pgb_batch", {"id", "v"}, [](steadypg::copy_in& copy) {
    for (int i = 0; i < 1000; ++i) copy.write_row(i, i);
  });
  EXPECT_EQ(rows, 1000u);
  EXPECT_EQ(direct.value("SELECT count(*) FROM pgb_batch"), "1000");
  EXPECT_EQ(protocol_warnings(log_from), "");
}

TEST_F(pgbouncer, a_copy_failing_mid_stream_leaves_pgbouncer_usable) {
  raw_conn direct(cluster_environment::dsn());
  direct.run("DROP TABLE IF EXISTS pgb_copy; CREATE TABLE pgb_copy (id int PRIMARY KEY, v int NOT NULL)");
  const std::size_t log_from = s_bouncer->log().size();
  steadypg::client db{through_bouncer(steadypg::pooler_mode::transaction, 2)};
  for (int round = 0; round < 5; ++round) {
    EXPECT_THROW((void)db.copy_from("pgb_copy", {"id", "v"},
                                    [](steadypg::copy_in& copy) {
                                      for (int i = 0; i < 50000; ++i) {
                                        if (i == 100) {
                                          copy.write_row(i, std::optional<int>{});
                                        } else {
                                          copy.write_row(i, i);
                                        }
                                      }
                                    }),
                 steadypg::sql_error);
    // Both server sessions still serve other clients.
    std::vector<std::thread> users;
    std::atomic<int> ok{0};
    for (int t = 0; t < 2; ++t) {
      users.emplace_back([&] {
        for (int i = 0; i < 10; ++i) ok += db.query_value<int>("SELECT 1");
      });
    }
    for (auto& u : users) u.join();
    EXPECT_EQ(ok.load(), 20);
  }
  EXPECT_EQ(direct.value("SELECT count(*) FROM pgb_copy"), "0");
  raw_conn admin(s_bouncer->admin_dsn());
  EXPECT_EQ(admin.value("SHOW POOLS", 5), "0") << "a server session stuck active";  // sv_active
  EXPECT_EQ(protocol_warnings(log_from), "");
}

TEST_F(pgbouncer, options_in_the_dsn_is_a_configuration_error_before_connecting) {
  auto o = through_bouncer(steadypg::pooler_mode::transaction, 1);
  o.dsn += " options='-c statement_timeout=100'";
  try {
    steadypg::client db{o};
    ADD_FAILURE() << "accepted options= with pooler=transaction";
  } catch (const steadypg::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("PgBouncer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("options"), std::string::npos) << e.what();
  }
  // The same through the environment and the CLI: exit 2, nothing dialled.
  const auto r = steadypg::test::cli::run(
      {"ping"}, {{"DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres?options=-c%20statement_timeout%3D100"},
                 {"POSTGRESQL_POOLER", "transaction"}});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("PgBouncer"), std::string::npos) << r.err;
  const auto bad = steadypg::test::cli::run({"ping"}, {{"POSTGRESQL_POOLER", "transactions"}});
  EXPECT_EQ(bad.exit_code, 2) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("POSTGRESQL_POOLER"), std::string::npos) << bad.err;
  // With pooler=none PgBouncer's own refusal comes back as a clear, non-retried error.
  steadypg::connection_options direct = connection_through_bouncer(steadypg::pooler_mode::none);
  direct.dsn += " options='-c statement_timeout=100'";
  try {
    steadypg::connection c(direct);
    ADD_FAILURE() << "PgBouncer accepted options=";
  } catch (const steadypg::connection_error& e) {
    EXPECT_NE(std::string(e.what()).find("POSTGRESQL_POOLER"), std::string::npos) << e.what();
    EXPECT_EQ(e.outcome(), steadypg::outcome::fatal);
  }
}

TEST_F(pgbouncer, pgbouncer_refusals_are_connection_failures_that_count_for_the_breaker) {
  steadypg::test::pgbouncer_options po;
  po.default_pool_size = 1;
  po.max_client_conn = 2;
  po.settings = {{"query_wait_timeout", "1"}};
  steadypg::test::pgbouncer_process small(cluster_environment::cluster()->port(), po);
  auto o = through_bouncer(steadypg::pooler_mode::transaction, 1);
  o.dsn = small.dsn();
  o.resilience.breaker.failure_threshold = 2;
  steadypg::client db{o};
  // The only server session is held by another client: PgBouncer gives up on the query.
  raw_conn holder(small.dsn());
  holder.run("BEGIN");
  (void)holder.value("SELECT 1");
  try {
    (void)db.execute("SELECT 1");
    ADD_FAILURE() << "no query_wait_timeout";
  } catch (const steadypg::connection_error& e) {
    EXPECT_EQ(e.sqlstate(), "08P01") << e.what();
    EXPECT_NE(std::string(e.what()).find("query_wait_timeout"), std::string::npos) << e.what();
    EXPECT_EQ(e.outcome(), steadypg::outcome::indeterminate) << e.what();  // sent; PgBouncer may have forwarded it
    EXPECT_TRUE(e.poisons_connection());
  }
  // Two clients already: PgBouncer refuses the login.
  raw_conn second(small.dsn());
  try {
    (void)db.execute("SELECT 1");
    ADD_FAILURE() << "max_client_conn did not refuse";
  } catch (const steadypg::connection_error& e) {
    EXPECT_EQ(e.sqlstate(), "08P01") << e.what();
    EXPECT_NE(std::string(e.what()).find("no more connections allowed"), std::string::npos) << e.what();
    EXPECT_EQ(e.outcome(), steadypg::outcome::not_sent) << e.what();  // retryable
  }
  EXPECT_EQ(db.breaker().state(), steadypg::breaker_state::open);
  EXPECT_THROW((void)db.execute("SELECT 1"), steadypg::circuit_open);
  holder.run("COMMIT");
}

TEST_F(pgbouncer, statement_mode_runs_calls_with_deadlines_and_refuses_transactions) {
  steadypg::test::pgbouncer_options po;
  po.pool_mode = "statement";
  steadypg::test::pgbouncer_process stmt(cluster_environment::cluster()->port(), po);
  const std::size_t log_from = stmt.log().size();
  auto o = through_bouncer(steadypg::pooler_mode::statement, 4);
  o.dsn = stmt.dsn();
  steadypg::client db{o};
  std::vector<std::thread> users;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    users.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        if (db.query_value<int>(steadypg::statement{"SELECT $1::int + $2"}.timeout(5s), i, t) == i + t) ++ok;
      }
    });
  }
  for (auto& u : users) u.join();
  EXPECT_EQ(ok.load(), 400);
  EXPECT_THROW(db.transaction([](steadypg::transaction&) {}), steadypg::usage_error);
  EXPECT_THROW((void)db.execute("BEGIN"), steadypg::usage_error);
  std::vector<steadypg::batch_operation> ops;
  for (int i = 0; i < 100; ++i) ops.emplace_back("SELECT $1::int", i);
  steadypg::batch_options bo;
  bo.batch_size = 50;
  bo.mode = steadypg::batch_mode::pipeline;
  EXPECT_EQ(db.batch_execute(ops, bo).stats.succeeded, 100u);
  // PgBouncer says nothing about it: its log has no warning, and no session was ended.
  const std::string log = stmt.log().substr(log_from);
  EXPECT_EQ(log.find("WARNING"), std::string::npos) << log;
  EXPECT_EQ(log.find("transaction blocks not allowed"), std::string::npos) << log;
}

TEST_F(pgbouncer, session_only_features_are_refused_naming_the_pooler_mode) {
  steadypg::client db{through_bouncer(steadypg::pooler_mode::transaction, 1)};
  for (const char* sql : {"LISTEN steadypg_events", "SELECT pg_advisory_lock(42)", "SET search_path = public",
                          "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "PREPARE p AS SELECT 1"}) {
    try {
      (void)db.execute(sql);
      ADD_FAILURE() << sql << " was not refused";
    } catch (const steadypg::usage_error& e) {
      EXPECT_NE(std::string(e.what()).find("pooler=transaction"), std::string::npos) << e.what();
    }
  }
  // What stays allowed.
  EXPECT_EQ(db.query_value<bool>("SELECT pg_try_advisory_xact_lock(42)"), true);
  db.transaction([](steadypg::transaction& tx) { (void)tx.execute("SET LOCAL search_path = public"); });
  steadypg::connection stmt(connection_through_bouncer(steadypg::pooler_mode::statement));
  EXPECT_THROW((void)stmt.begin(), steadypg::usage_error);
}

namespace {

struct suspicion_counter final : steadypg::observer {
  void on_pooler_suspected(std::string_view evidence) noexcept override {
    ++count;
    std::lock_guard lk(mu);
    last = std::string(evidence);
  }
  std::atomic<int> count{0};
  std::mutex mu;
  std::string last;
};

struct capture_logger final : steadypg::observe::logger {
  void write(steadypg::observe::log_level l, std::string_view, std::string_view msg,
             std::span<const steadypg::observe::log_field>) override {
    if (l == steadypg::observe::log_level::warn && msg.find("pooler") != std::string_view::npos) ++warnings;
  }
  std::atomic<int> warnings{0};
};

}  // namespace

TEST_F(pgbouncer, pooler_none_behind_pgbouncer_is_reported_once_and_changes_nothing) {
  capture_logger log;
  steadypg::observe::log_observer log_obs(log);
  suspicion_counter counter;
  steadypg::observer_tee tee(&log_obs, &counter);
  steadypg::client db{through_bouncer(steadypg::pooler_mode::none, 2), &tee};
  // Two concurrent clients of the pool (the simple protocol: nothing prepared, nothing fails).
  std::thread other([&] {
    for (int i = 0; i < 50; ++i) (void)db.query_value<int>("SELECT 2");
  });
  for (int i = 0; i < 50; ++i) (void)db.query_value<int>("SELECT 1");
  other.join();
  EXPECT_EQ(counter.count.load(), 1);
  EXPECT_EQ(log.warnings.load(), 1);
  EXPECT_NE(db.metrics().render_prometheus().find("postgresql_pooler_suspected 1"), std::string::npos);
  {
    std::lock_guard lk(counter.mu);
    figure("detection: %s", counter.last.c_str());
  }
  // A direct client sees nothing.
  suspicion_counter direct_counter;
  auto direct = steadypg::test::client_options_for(1);
  steadypg::client plain{direct, &direct_counter};
  plain.ping();
  EXPECT_EQ(direct_counter.count.load(), 0);
  EXPECT_NE(plain.metrics().render_prometheus().find("postgresql_pooler_suspected 0"), std::string::npos);
}

TEST_F(pgbouncer, cancels_through_pgbouncer_end_only_their_own_query) {
  // A second client loops short sleeps on the same two server sessions the whole time.
  std::atomic<bool> done{false};
  std::atomic<long> bystander_calls{0}, bystander_cancelled{0}, bystander_errors{0};
  std::thread bystander([&] {
    steadypg::connection b(connection_through_bouncer(steadypg::pooler_mode::transaction));
    while (!done.load()) {
      try {
        (void)b.execute("SELECT pg_sleep(0.05)");
        ++bystander_calls;
      } catch (const steadypg::query_canceled&) {
        ++bystander_cancelled;
      } catch (const std::exception&) {
        ++bystander_errors;
      }
    }
  });
  raw_conn direct(cluster_environment::dsn());
  steadypg::connection victim(connection_through_bouncer(steadypg::pooler_mode::transaction));
  constexpr int rounds = 100;
  int cancelled_in_time = 0, delivered = 0;
  double slowest = 0;
  const auto stop_at = clock_type::now() + 60s;
  for (int i = 0; i < rounds && clock_type::now() < stop_at; ++i) {
    std::atomic<bool> finished{false};
    std::string outcome;
    clock_type::time_point ended;
    std::thread runner([&] {
      try {
        (void)victim.execute("SELECT pg_sleep(10)");
        outcome = "finished";
      } catch (const steadypg::query_canceled&) {
        outcome = "57014";
      } catch (const std::exception& e) {
        outcome = e.what();
      }
      ended = clock_type::now();
      finished = true;
    });
    // Cancel once the sleep runs on the server (seen directly in pg_stat_activity).
    const auto wait_until = clock_type::now() + 5s;
    while (clock_type::now() < wait_until &&
           direct.value("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND state = "
                        "'active'") == "0") {
      std::this_thread::sleep_for(2ms);
    }
    const auto sent = clock_type::now();
    delivered += victim.cancel() ? 1 : 0;
    const auto give_up = clock_type::now() + 2s;
    while (!finished.load() && clock_type::now() < give_up) std::this_thread::sleep_for(1ms);
    if (!finished.load()) {
      // Do not leave a 10 s sleep behind: end it directly.
      direct.run("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)'");
    }
    runner.join();
    const double secs = std::chrono::duration<double>(ended - sent).count();
    slowest = std::max(slowest, secs);
    if (outcome == "57014" && secs < 1.0) ++cancelled_in_time;
    EXPECT_EQ(outcome, "57014") << "round " << i;
  }
  done = true;
  bystander.join();
  figure(
      "cancel: %d of %d cancels delivered, %d ended their own pg_sleep(10) with 57014 within 1 s "
      "(slowest %.3f s); bystander: %ld calls, %ld cancelled, %ld other errors",
      delivered, rounds, cancelled_in_time, slowest, bystander_calls.load(), bystander_cancelled.load(),
      bystander_errors.load());
  EXPECT_EQ(cancelled_in_time, rounds);
  EXPECT_EQ(bystander_cancelled.load(), 0);
  EXPECT_EQ(bystander_errors.load(), 0);
  EXPECT_GT(bystander_calls.load(), 0);
}

TEST_F(pgbouncer, a_client_side_timeout_cancels_through_pgbouncer_and_keeps_the_connection) {
  // No server-side timeout: the client's own deadline sends the cancel request.
  auto o = connection_through_bouncer(steadypg::pooler_mode::transaction);
  o.query_timeout = 200ms;
  steadypg::connection c(o);
  for (int i = 0; i < 5; ++i) {
    try {
      (void)c.execute("SELECT pg_sleep(5)");
      ADD_FAILURE() << "no timeout";
    } catch (const steadypg::timeout_error& e) {
      EXPECT_TRUE(e.cancel_sent()) << e.what();
    }
    EXPECT_TRUE(c.is_idle());
    EXPECT_EQ(c.query_value<int>("SELECT 7"), 7);
  }
}

// The same select bench direct to the server and through PgBouncer, and pgbench through
// PgBouncer, in one run: figures for the notes, and no errors behind PgBouncer.
TEST_F(pgbouncer, bench_select_through_pgbouncer_next_to_direct_and_pgbench) {
  namespace fs = std::filesystem;
  std::string pgbench;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "pgbench")) pgbench = (e.path() / "bin" / "pgbench").string();
  }
  if (pgbench.empty()) GTEST_SKIP() << "no pgbench (postgresql-contrib)";
  namespace cli = steadypg::test::cli;
  const auto init = cli::run({"bench", "--init", "--scale", "1"});
  ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  const std::vector<std::string> args{"--json", "bench", "--workload", "select", "--clients", "4", "--seconds", "3"};
  const auto direct = cli::run(args);
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  const auto through = cli::run(args, {{"DATABASE_URL", s_bouncer->dsn()}, {"POSTGRESQL_POOLER", "transaction"}});
  ASSERT_EQ(through.exit_code, 0) << through.err;
  const auto d = nlohmann::json::parse(direct.out);
  const auto b = nlohmann::json::parse(through.out);
  EXPECT_EQ(b["errors"].get<long>(), 0);
  EXPECT_GT(b["ops"].get<long>(), 0);
  const auto pg = cli::run_program(pgbench,
                                   {"-n", "-S", "-M", "extended", "-c", "4", "-j", "4", "-T", "3", "-h", "127.0.0.1",
                                    "-p", std::to_string(s_bouncer->port()), "-U", "postgres", "postgres"},
                                   {}, "/dev/null");
  ASSERT_EQ(pg.exit_code, 0) << pg.out << pg.err;
  double pg_tps = 0;
  if (const auto at = pg.out.find("tps = "); at != std::string::npos) pg_tps = std::stod(pg.out.substr(at + 6));
  const double dv = d["ops_per_s"].get<double>(), bv = b["ops_per_s"].get<double>();
  figure(
      "bench select, 4 clients, 3 s: direct %.0f ops/s; through PgBouncer (pooler=transaction) %.0f ops/s, "
      "p50 %.3f ms, p99 %.3f ms (%.2f of direct); pgbench -S -M extended through PgBouncer %.0f tps (steadypg "
      "%.2f of it)",
      dv, bv, b["p50_ms"].get<double>(), b["p99_ms"].get<double>(), bv / dv, pg_tps, pg_tps > 0 ? bv / pg_tps : 0.0);
  EXPECT_GT(pg_tps, 0);
}

}  // namespace
