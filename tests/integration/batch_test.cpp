#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::cluster_environment;

namespace {

client_options options() { return steadypg::test::client_options_for(6); }

void reset_table(connection& c) {
  c.execute("DROP TABLE IF EXISTS batch_t");
  c.execute("CREATE TABLE batch_t (k int PRIMARY KEY, i int NOT NULL)");
  c.execute("INSERT INTO batch_t VALUES (-1, -1)");  // the key every 100th operation collides with
}

std::set<int> indices_in_table(connection& c) {
  std::set<int> out;
  const auto rs = c.execute("SELECT i FROM batch_t WHERE k >= 0");
  for (auto [i] : rs.rows<int>()) out.insert(i);
  return out;
}

// Peak resident set of this process so far, in KiB.
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

}  // namespace

TEST(batch, unique_violations_are_isolated_in_every_mode) {
  auto c = steadypg::test::connect();
  client db(options());
  constexpr int n = 10000;
  std::vector<batch_operation> ops;
  ops.reserve(n);
  for (int i = 0; i < n; ++i) ops.emplace_back("INSERT INTO batch_t (k, i) VALUES ($1, $2)", i % 100 == 99 ? -1 : i, i);

  for (auto mode : {batch_mode::independent, batch_mode::pipeline, batch_mode::transaction}) {
    SCOPED_TRACE(std::string(to_string(mode)));
    reset_table(c);
    std::size_t last_progress = 0;
    int progress_calls = 0;
    batch_options o;
    o.batch_size = 10;
    o.concurrency = 4;
    o.timeout = 120s;
    o.mode = mode;
    o.on_progress = [&](const batch_progress& p) {
      EXPECT_GE(p.processed, last_progress);
      EXPECT_EQ(p.total, static_cast<std::size_t>(n));
      last_progress = p.processed;
      ++progress_calls;
    };
    const auto report = db.batch_execute(ops, o);
    EXPECT_EQ(progress_calls, n / 10) << "one call per chunk";
    EXPECT_EQ(last_progress, static_cast<std::size_t>(n));
    EXPECT_EQ(report.stats.total, static_cast<std::size_t>(n));
    EXPECT_EQ(report.stats.processed, static_cast<std::size_t>(n));
    EXPECT_FALSE(report.timed_out);
    const auto in_table = indices_in_table(c);

    if (mode != batch_mode::transaction) {
      ASSERT_EQ(report.errors.size(), 100u);
      for (std::size_t j = 0; j < report.errors.size(); ++j) {
        const auto& e = report.errors[j];
        EXPECT_EQ(e.index, j * 100 + 99);
        EXPECT_EQ(e.sqlstate, "23505");
        EXPECT_EQ(e.reason, batch_failure::failed);
        EXPECT_NE(e.message.find("duplicate key"), std::string::npos) << e.message;
      }
      EXPECT_EQ(report.stats.succeeded, 9900u);
      EXPECT_EQ(report.stats.failed, 100u);
      EXPECT_DOUBLE_EQ(report.stats.success_rate, 0.99);
      ASSERT_EQ(in_table.size(), 9900u) << "every other row committed exactly once";
      for (int i = 0; i < n; ++i) EXPECT_EQ(in_table.count(i), i % 100 == 99 ? 0u : 1u) << i;
    } else {
      // Chunks of 10 are all-or-nothing: the chunk holding each failing operation rolls back.
      ASSERT_EQ(report.errors.size(), 1000u);
      std::set<std::size_t> failed;
      for (const auto& e : report.errors) {
        failed.insert(e.index);
        ASSERT_TRUE(e.chunk.has_value());
        EXPECT_EQ(*e.chunk, e.index / 10);
        ASSERT_TRUE(e.cause.has_value());
        EXPECT_EQ(*e.cause, e.index / 10 * 10 + 9) << "the report names the operation that failed the chunk";
        if (e.index % 100 == 99) {
          EXPECT_EQ(e.reason, batch_failure::failed);
          EXPECT_EQ(e.sqlstate, "23505");
        } else {
          EXPECT_EQ(e.reason, batch_failure::rolled_back);
        }
      }
      EXPECT_EQ(report.stats.succeeded, 9000u);
      for (int i = 0; i < n; ++i) {
        const bool chunk_failed = i % 100 >= 90;
        EXPECT_EQ(failed.count(static_cast<std::size_t>(i)), chunk_failed ? 1u : 0u) << i;
        EXPECT_EQ(in_table.count(i), chunk_failed ? 0u : 1u) << "the report matches the table: " << i;
      }
    }
  }
  const std::string metrics = db.metrics().render_prometheus();
  EXPECT_NE(metrics.find("postgresql_batch_operations_total 30000"), std::string::npos);
  EXPECT_NE(metrics.find("postgresql_batch_errors_total 1200"), std::string::npos);
  EXPECT_NE(metrics.find("postgresql_batch_duration_seconds_count 3"), std::string::npos);
}

TEST(batch, concurrency_bounds_the_busy_backends) {
  client db(options());
  auto monitor = steadypg::test::connect();
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> most{0};
  std::thread sampler([&] {
    while (!done) {
      const auto busy = monitor.query_value<std::int64_t>(
          "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
          "AND query LIKE 'SELECT pg_sleep(0.05) -- concurrency%'");
      if (busy > most) most = busy;
      std::this_thread::sleep_for(5ms);
    }
  });
  std::vector<batch_operation> ops;
  for (int i = 0; i < 30; ++i) ops.emplace_back("SELECT pg_sleep(0.05) -- concurrency");
  batch_options o;
  o.batch_size = 2;
  o.concurrency = 3;
  const auto report = db.batch_execute(ops, o);
  done = true;
  sampler.join();
  EXPECT_EQ(report.stats.succeeded, 30u);
  EXPECT_LE(most.load(), 3) << "at most `concurrency` connections busy at once";
  EXPECT_GE(most.load(), 2) << "and they do run side by side";
  EXPECT_LE(db.pool_statistics().total, 3u);
}

TEST(batch, timeout_returns_in_time_and_leaves_nothing_running) {
  for (auto mode : {batch_mode::independent, batch_mode::pipeline, batch_mode::transaction}) {
    SCOPED_TRACE(std::string(to_string(mode)));
    client db(options());
    std::vector<batch_operation> ops;
    ops.emplace_back("SELECT 1");
    ops.emplace_back("SELECT pg_sleep(30) -- batch timeout");
    for (int i = 0; i < 20; ++i) ops.emplace_back("SELECT pg_sleep(0.05)");
    batch_options o;
    o.batch_size = 2;
    o.concurrency = 1;
    o.timeout = 400ms;
    o.mode = mode;
    const auto start = std::chrono::steady_clock::now();
    const auto report = db.batch_execute(ops, o);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, 5s) << "the call never hangs";
    EXPECT_TRUE(report.timed_out);
    // The server's statement_timeout (derived from the deadline) or the client-side deadline
    // stops the sleeper; at most one more 50 ms statement fits before the deadline.
    EXPECT_LE(report.stats.succeeded, mode == batch_mode::transaction ? 0u : 2u);
    EXPECT_GE(report.stats.failed, 20u);
    EXPECT_EQ(report.stats.timed_out, report.stats.failed) << "every failure is the deadline's";
    EXPECT_EQ(report.stats.failed, report.stats.total - report.stats.succeeded);
    ASSERT_FALSE(report.errors.empty());
    const auto& sleeper = report.errors[mode == batch_mode::transaction ? 1 : 0];
    EXPECT_EQ(sleeper.index, 1u);
    EXPECT_EQ(sleeper.reason, batch_failure::timed_out) << sleeper.message;
    EXPECT_EQ(report.errors.back().index, 21u);
    EXPECT_EQ(report.errors.back().reason, batch_failure::timed_out);
    // The statement was stopped on the server, not left running.
    auto c = steadypg::test::connect();
    std::int64_t running = 1;
    for (int i = 0; i < 20 && running > 0; ++i) {
      running = c.query_value<std::int64_t>(
          "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30) -- "
          "batch%'");
      if (running > 0) std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(running, 0);
    EXPECT_EQ(db.query_value<int>("SELECT 3"), 3) << "the client is still usable";
  }
}

TEST(batch, empty_batch) {
  client db(options());
  int calls = 0;
  batch_options o;
  o.on_progress = [&](const batch_progress&) { ++calls; };
  const auto report = db.batch_execute(std::span<const batch_operation>{}, o);
  EXPECT_EQ(report.stats.total, 0u);
  EXPECT_EQ(report.stats.failed, 0u);
  EXPECT_DOUBLE_EQ(report.stats.success_rate, 1.0);
  EXPECT_TRUE(report.errors.empty());
  EXPECT_EQ(calls, 0);
  const auto made = db.batch_execute(
      0, [](std::size_t) -> batch_operation { throw std::logic_error("never"); }, o);
  EXPECT_EQ(made.stats.total, 0u);
}

TEST(batch, invalid_options_are_config_errors) {
  client db(options());
  std::vector<batch_operation> ops;
  ops.emplace_back("SELECT 1");
  batch_options o;
  o.batch_size = 0;
  EXPECT_THROW((void)db.batch_execute(ops, o), config_error);
  o = {};
  o.concurrency = 0;
  EXPECT_THROW((void)db.batch_execute(ops, o), config_error);
  o = {};
  o.timeout = 0ms;
  EXPECT_THROW((void)db.batch_execute(ops, o), config_error);
  EXPECT_EQ(parse_batch_mode("pipeline"), batch_mode::pipeline);
  EXPECT_EQ(parse_batch_mode("fast"), std::nullopt);
}

TEST(batch, a_million_pipelined_operations_in_bounded_memory) {
  client db(options());
  const std::size_t n = sanitized ? 100000 : 1000000;
  const long before = peak_rss_kib();
  batch_options o;
  o.mode = batch_mode::pipeline;
  o.batch_size = 1000;
  o.concurrency = 2;
  o.timeout = 600s;
  const auto report = db.batch_execute(
      n, [](std::size_t i) { return batch_operation("SELECT $1::int", static_cast<int>(i)); }, o);
  const long after = peak_rss_kib();
  EXPECT_EQ(report.stats.succeeded, n);
  EXPECT_TRUE(report.errors.empty());
  const double ops_per_s = static_cast<double>(n) / std::chrono::duration<double>(report.stats.duration).count();
  std::printf("[ figures  ] %zu pipelined operations: %.0f ops/s, peak RSS %ld KiB -> %ld KiB (+%ld KiB)\n", n,
              ops_per_s, before, after, after - before);
  if (!sanitized) {
    EXPECT_LT(after - before, 64 * 1024) << "memory does not grow with the batch";
  }
}

TEST(batch, terminated_backend_mid_batch_applies_nothing_twice) {
  auto c = steadypg::test::connect();
  for (auto mode : {batch_mode::pipeline, batch_mode::independent, batch_mode::transaction}) {
    SCOPED_TRACE(std::string(to_string(mode)));
    c.execute("DROP TABLE IF EXISTS batch_kill");
    c.execute("CREATE TABLE batch_kill (k int PRIMARY KEY)");
    client db(options());
    constexpr int n = 20000;
    std::vector<batch_operation> ops;
    ops.reserve(n);
    for (int i = 0; i < n; ++i) ops.emplace_back("INSERT INTO batch_kill VALUES ($1)", i);
    std::atomic<bool> killed{false};
    std::mutex kill_mutex;
    batch_options o;
    o.mode = mode;
    o.batch_size = 100;
    o.concurrency = 2;
    o.timeout = 120s;
    o.on_progress = [&](const batch_progress& p) {
      if (p.processed < 4000 || killed.exchange(true)) return;
      std::lock_guard lk(kill_mutex);
      auto killer = steadypg::test::connect();
      (void)killer.execute(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
          "AND pid <> pg_backend_pid() AND pid <> $1 AND backend_type = 'client backend'",
          c.query_value<int>("SELECT pg_backend_pid()"));
    };
    const auto report = db.batch_execute(ops, o);
    ASSERT_TRUE(killed.load());
    EXPECT_EQ(report.stats.succeeded + report.stats.failed, static_cast<std::size_t>(n));
    std::set<int> present;
    const auto rs = c.execute("SELECT k FROM batch_kill");
    for (auto [k] : rs.rows<int>()) present.insert(k);
    std::vector<bool> failed(n, false);
    for (const auto& e : report.errors) {
      failed[e.index] = true;
      EXPECT_NE(e.sqlstate, "23505") << "operation " << e.index << " was applied twice";
      if (e.outcome != outcome::indeterminate) {
        EXPECT_EQ(present.count(static_cast<int>(e.index)), 0u) << "reported failed but applied: " << e.index;
      }
    }
    for (int i = 0; i < n; ++i) {
      if (!failed[i]) {
        EXPECT_EQ(present.count(i), 1u) << "reported succeeded but missing: " << i;
      }
    }
    EXPECT_GT(report.stats.succeeded, 4000u) << "the batch carried on after the kill";
    std::printf("[ figures  ] %s: backends killed after 4000 operations: %zu succeeded, %zu failed\n",
                std::string(to_string(mode)).c_str(), report.stats.succeeded, report.stats.failed);
  }
}

TEST(batch, transaction_mode_reruns_a_chunk_on_serialization_failure) {
  auto c = steadypg::test::connect();
  reset_table(c);
  client db(options());
  std::atomic<int> runs{0};
  std::vector<batch_operation> ops;
  for (int i = 0; i < 4; ++i) ops.emplace_back("INSERT INTO batch_t (k, i) VALUES ($1, $1)", i);
  ops.push_back(batch_operation::call([&](connection& conn) {
    if (runs.fetch_add(1) == 0) conn.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$");
  }));
  batch_options o;
  o.mode = batch_mode::transaction;
  o.batch_size = 5;
  const auto report = db.batch_execute(ops, o);
  EXPECT_TRUE(report.errors.empty()) << report.errors.front().message;
  EXPECT_EQ(runs.load(), 2) << "the whole chunk ran again";
  EXPECT_EQ(indices_in_table(c), (std::set<int>{0, 1, 2, 3}));
}

TEST(batch, pipelined_transaction_chunks_rerun_on_serialization_failure) {
  auto c = steadypg::test::connect();
  reset_table(c);
  c.execute("DROP SEQUENCE IF EXISTS fail_seq");
  c.execute("CREATE SEQUENCE fail_seq");
  c.execute(
      "CREATE OR REPLACE FUNCTION fail_first() RETURNS int AS $$ BEGIN "
      "IF nextval('fail_seq') = 1 THEN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END IF; RETURN 1; "
      "END $$ LANGUAGE plpgsql");
  client db(options());
  std::vector<batch_operation> ops;
  for (int i = 0; i < 6; ++i) ops.emplace_back("INSERT INTO batch_t (k, i) VALUES ($1, $1)", i);
  ops.emplace_back("SELECT fail_first()");
  for (int i = 6; i < 9; ++i) ops.emplace_back("INSERT INTO batch_t (k, i) VALUES ($1, $1)", i);
  batch_options o;
  o.mode = batch_mode::transaction;
  o.batch_size = 10;
  o.keep_results = true;
  const auto report = db.batch_execute(ops, o);
  EXPECT_TRUE(report.errors.empty()) << report.errors.front().message;
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT last_value FROM fail_seq"), 2) << "the chunk ran twice";
  EXPECT_EQ(indices_in_table(c), (std::set<int>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  ASSERT_TRUE(report.results[6].has_value());
  EXPECT_EQ(report.results[6]->as<int>(), 1);
}

TEST(batch, stop_on_error_and_kept_results) {
  client db(options());
  std::vector<batch_operation> ops;
  for (int i = 0; i < 20; ++i) {
    if (i == 7) ops.emplace_back("SELECT 1/0");
    else ops.emplace_back("SELECT $1::int * 2", i);
  }
  batch_options o;
  o.batch_size = 5;
  o.concurrency = 1;
  o.stop_on_error = true;
  o.keep_results = true;
  o.mode = batch_mode::pipeline;
  const auto report = db.batch_execute(ops, o);
  EXPECT_TRUE(report.stopped);
  EXPECT_EQ(report.stats.succeeded, 9u) << "the chunk with the failure finishes; later chunks do not start";
  EXPECT_EQ(report.stats.processed, 10u);
  ASSERT_EQ(report.errors.size(), 11u);
  EXPECT_EQ(report.errors[0].index, 7u);
  EXPECT_EQ(report.errors[0].sqlstate, "22012");
  EXPECT_EQ(report.errors[1].reason, batch_failure::not_run);
  ASSERT_EQ(report.results.size(), 20u);
  ASSERT_TRUE(report.results[3].has_value());
  EXPECT_EQ(report.results[3]->as<int>(), 6);
  EXPECT_FALSE(report.results[7].has_value());
}

TEST(copy, client_copy_from_round_trips_awkward_values) {
  auto c = steadypg::test::connect();
  client db(options());
  const std::vector<std::optional<std::string>> values = {
      "plain", "tab\there",  "new\nline",      "cr\rlf",          "back\\slash",    "\\N", "quote\"s, and commas",
      "",      std::nullopt, "ünïcødé ✓ 日本", "trailing space ", "semi;colon|pipe"};
  for (auto format : {copy_format::text, copy_format::csv}) {
    c.execute("DROP TABLE IF EXISTS copy_t");
    c.execute("CREATE TABLE copy_t (id int PRIMARY KEY, v text)");
    std::vector<std::uint64_t> progress;
    const auto rows = db.copy_from("copy_t", {"id", "v"},
                                   [&](copy_in& copy) {
                                     for (int rep = 0; rep < 1000; ++rep) {
                                       for (std::size_t i = 0; i < values.size(); ++i) {
                                         copy.write_row(static_cast<int>(rep * values.size() + i), values[i]);
                                       }
                                     }
                                   },
                                   {.format = format, .progress = [&](std::uint64_t n) { progress.push_back(n); }});
    EXPECT_EQ(rows, 1000 * values.size());
    EXPECT_EQ(progress, (std::vector<std::uint64_t>{10000}));
    const auto rs = c.execute("SELECT id, v FROM copy_t WHERE id < $1 ORDER BY id", static_cast<int>(values.size()));
    ASSERT_EQ(rs.size(), values.size());
    for (auto [id, v] : rs.rows<int, std::optional<std::string>>()) {
      EXPECT_EQ(v, values[static_cast<std::size_t>(id)]) << "row " << id;
    }
  }
  // A bad row: the server's error names the line, and nothing is loaded.
  c.execute("TRUNCATE copy_t");
  try {
    (void)db.copy_from("copy_t", {"id", "v"}, [](copy_in& copy) {
      copy.write_row(1, std::string("a"));
      copy.write_row(2, std::string("b"));
      copy.write_raw("not-a-number\tc\n");
      copy.write_row(4, std::string("d"));
    });
    ADD_FAILURE() << "the bad row was accepted";
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "22P02");
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM copy_t"), 0);
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1) << "the connection went back to the pool in good shape";
}
