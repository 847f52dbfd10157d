// client::batch_execute against the real server while its backends are killed.
//
// A killer thread on its own connection terminates every backend of the batch's client
// (found by application_name) every 200 ms. After the batch the table is checked against
// the report (docs/batch.md, "The report"):
//   - an operation not in report.errors (reported succeeded) is in the table;
//   - a failed operation whose outcome is not indeterminate is not in the table;
//   - no operation is applied twice;
//   - transaction mode: each chunk is in the table whole or not at all;
//   - the report's counts add up, and operations reported timed_out / not_run were not
//     applied.
// What is asserted does not depend on timing; only the figures printed do.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using namespace std::chrono_literals;
using steadypg::test::cluster_environment;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* victim_name = "steadypg_batch_victim";

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// The test server's DSN with the batch client's application_name.
std::string victim_dsn() {
  const std::string& dsn = cluster_environment::dsn();
  if (dsn.rfind("postgres://", 0) == 0 || dsn.rfind("postgresql://", 0) == 0) {
    return dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + "application_name=" + victim_name;
  }
  return dsn + " application_name=" + victim_name;
}

// Client options that keep retrying through the kills: the breaker and the retry budget do
// not dominate, reconnects are quick.
client_options victim_options(int pool_max) {
  client_options o;
  o.dsn = victim_dsn();
  o.pool.max_size = pool_max;
  o.resilience.retry.max_retries = 10;
  o.resilience.retry.base_delay = 10ms;
  o.connection.connect_timeout = 2000ms;
  o.pool.acquire_timeout = 10000ms;
  o.resilience.breaker.failure_threshold = 10000;
  o.resilience.breaker.open_duration = 100ms;
  o.resilience.budget.min_per_second = 1000;
  return o;
}

// Every 200 ms terminates every backend whose application_name is the victim's (never its
// own). Stops when stop() is called or the object is destroyed (also when an assertion
// returns early), and in any case after `max_life`.
class backend_killer {
 public:
  explicit backend_killer(std::chrono::milliseconds period = 200ms, std::chrono::seconds max_life = 240s)
      : m_thread([this, period, max_life] { run(period, max_life); }) {}
  backend_killer(const backend_killer&) = delete;
  backend_killer& operator=(const backend_killer&) = delete;
  ~backend_killer() { stop(); }

  void stop() {
    {
      std::lock_guard lk(m_mutex);
      m_stop = true;
    }
    m_cv.notify_all();
    if (m_thread.joinable()) m_thread.join();
  }

  [[nodiscard]] long kills() const { return m_kills.load(); }

 private:
  void run(std::chrono::milliseconds period, std::chrono::seconds max_life) {
    const auto until = clock_type::now() + max_life;
    std::optional<connection> admin;
    std::unique_lock lk(m_mutex);
    while (!m_stop && clock_type::now() < until) {
      if (m_cv.wait_for(lk, period, [this] { return m_stop; })) break;
      lk.unlock();
      try {
        if (!admin) admin.emplace(cluster_environment::dsn());
        const auto n = admin->query_value<std::int64_t>(
            "SELECT count(*) FILTER (WHERE t) FROM (SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()) s",
            victim_name);
        m_kills += static_cast<long>(n);
      } catch (const std::exception&) {
        admin.reset();  // reconnect on the next round
      }
      lk.lock();
    }
  }

  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_stop = false;
  std::atomic<long> m_kills{0};
  std::thread m_thread;  // last: starts after the members it uses
};

void reset_table(const std::string& table) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS " + table);
  c.execute("CREATE TABLE " + table + " (id bigint PRIMARY KEY)");
}

// What the table holds after a batch of n operations whose operation i inserts id i.
struct table_state {
  std::vector<std::uint32_t> copies;  // rows per id in [0, n)
  std::int64_t rows = 0;
  std::int64_t distinct = 0;
  std::vector<std::int64_t> out_of_range;
};

table_state read_table(const std::string& table, std::size_t n) {
  auto c = steadypg::test::connect();
  table_state t;
  t.copies.assign(n, 0);
  const auto counts = c.execute("SELECT count(*), count(DISTINCT id) FROM " + table);
  for (auto [rows, distinct] : counts.rows<std::int64_t, std::int64_t>()) {
    t.rows = rows;
    t.distinct = distinct;
  }
  const auto rs = c.execute("SELECT id FROM " + table);
  for (auto [id] : rs.rows<std::int64_t>()) {
    if (id < 0 || static_cast<std::size_t>(id) >= n) {
      t.out_of_range.push_back(id);
    } else {
      ++t.copies[static_cast<std::size_t>(id)];
    }
  }
  return t;
}

std::string describe(const batch_error& e) {
  std::ostringstream s;
  s << e.index << " (" << to_string(e.reason) << "/" << to_string(e.outcome);
  if (!e.sqlstate.empty()) s << " " << e.sqlstate;
  s << ": " << e.message.substr(0, 80) << ")";
  return s.str();
}

// Up to `max` entries of `items`, then how many there are.
std::string sample(const std::vector<std::string>& items, std::size_t max = 20) {
  std::ostringstream s;
  for (std::size_t i = 0; i < items.size() && i < max; ++i) s << (i ? ", " : "") << items[i];
  if (items.size() > max) s << ", … (" << items.size() << " in all)";
  return s.str();
}

// Errors of a report by operation index (nullptr: reported succeeded).
std::vector<const batch_error*> errors_by_index(const batch_report& r, std::size_t n) {
  std::vector<const batch_error*> by(n, nullptr);
  for (const auto& e : r.errors) {
    if (e.index < n && by[e.index] == nullptr) by[e.index] = &e;
  }
  return by;
}

// The report's own counts: every operation succeeded or failed, each failure listed once.
void expect_coherent_report(const batch_report& r, std::size_t n) {
  EXPECT_EQ(r.stats.total, n);
  EXPECT_EQ(r.stats.succeeded + r.errors.size(), n)
      << "succeeded " << r.stats.succeeded << ", errors " << r.errors.size();
  EXPECT_EQ(r.stats.succeeded + r.stats.failed, n);
  EXPECT_EQ(r.stats.failed, r.errors.size());
  EXPECT_LE(r.stats.processed, n);
  EXPECT_GE(r.stats.processed, r.stats.succeeded);
  std::vector<std::string> out_of_range, repeated, unordered, no_outcome;
  std::vector<bool> seen(n, false);
  std::size_t timed_out = 0;
  for (std::size_t k = 0; k < r.errors.size(); ++k) {
    const auto& e = r.errors[k];
    if (e.reason == batch_failure::timed_out) ++timed_out;
    if (e.outcome == outcome::ok) no_outcome.push_back(describe(e));
    if (k > 0 && r.errors[k - 1].index > e.index) unordered.push_back(std::to_string(e.index));
    if (e.index >= n) {
      out_of_range.push_back(std::to_string(e.index));
      continue;
    }
    if (seen[e.index]) repeated.push_back(std::to_string(e.index));
    seen[e.index] = true;
  }
  EXPECT_TRUE(out_of_range.empty()) << "errors for operations that do not exist: " << sample(out_of_range);
  EXPECT_TRUE(repeated.empty()) << "operations listed twice in errors: " << sample(repeated);
  EXPECT_TRUE(unordered.empty()) << "errors not sorted by index at: " << sample(unordered);
  EXPECT_TRUE(no_outcome.empty()) << "errors whose outcome is ok: " << sample(no_outcome);
  EXPECT_EQ(r.stats.timed_out, timed_out);
  EXPECT_EQ(r.timed_out, timed_out > 0);
}

struct run_figures {
  double seconds = 0;
  long kills = 0;
  std::size_t succeeded = 0;
  std::map<std::string, std::size_t> errors;  // by reason/outcome
  std::size_t succeeded_missing = 0, failed_present = 0, duplicated = 0, torn_chunks = 0;
};

std::string summary(const run_figures& f) {
  std::ostringstream s;
  s << f.seconds << " s, " << f.kills << " backends killed, " << f.succeeded << " succeeded; errors:";
  for (const auto& [k, v] : f.errors) s << " " << k << "=" << v;
  s << "; violations: succeeded-but-missing " << f.succeeded_missing << ", failed-but-applied " << f.failed_present
    << ", duplicated " << f.duplicated;
  if (f.torn_chunks) s << ", torn chunks " << f.torn_chunks;
  return s.str();
}

// "i (chunk k: m failed from j, reason/outcome)": where operation i stands in its chunk.
std::string with_chunk(std::size_t i, std::size_t batch_size, const std::vector<const batch_error*>& by) {
  const std::size_t begin = i / batch_size * batch_size;
  const std::size_t end = std::min(by.size(), begin + batch_size);
  const batch_error* first = nullptr;
  std::size_t failed = 0;
  for (std::size_t k = begin; k < end; ++k) {
    if (by[k] == nullptr) continue;
    ++failed;
    if (first == nullptr) first = by[k];
  }
  std::ostringstream s;
  s << i << " (chunk " << i / batch_size << ": ";
  if (first == nullptr) {
    s << "no failures)";
  } else {
    s << failed << " failed from " << first->index << ", " << to_string(first->reason) << "/"
      << to_string(first->outcome) << ")";
  }
  return s.str();
}

// The table against the report for a batch where operation i inserts id i.
run_figures check_against_table(const batch_report& r, const table_state& t, std::size_t n, std::size_t batch_size,
                                bool atomic_chunks) {
  run_figures f;
  f.succeeded = r.stats.succeeded;
  for (const auto& e : r.errors) {
    ++f.errors[std::string(to_string(e.reason)) + "/" + std::string(to_string(e.outcome))];
  }
  const auto by = errors_by_index(r, n);
  std::vector<std::string> missing, applied, twice;
  for (std::size_t i = 0; i < n; ++i) {
    if (t.copies[i] > 1) twice.push_back(std::to_string(i) + " ×" + std::to_string(t.copies[i]));
    if (by[i] == nullptr) {
      if (t.copies[i] == 0) missing.push_back(with_chunk(i, batch_size, by));
    } else if (by[i]->outcome != outcome::indeterminate && t.copies[i] > 0) {
      applied.push_back(describe(*by[i]));
    }
  }
  f.succeeded_missing = missing.size();
  f.failed_present = applied.size();
  f.duplicated = twice.size();
  EXPECT_TRUE(missing.empty()) << missing.size()
                               << " operations reported succeeded (not in report.errors) are not in the table: "
                               << sample(missing);
  EXPECT_TRUE(applied.empty()) << applied.size()
                               << " operations reported failed with an outcome other than indeterminate are in "
                                  "the table: "
                               << sample(applied);
  EXPECT_TRUE(twice.empty()) << "ids present more than once: " << sample(twice);
  EXPECT_EQ(t.rows, t.distinct) << "rows " << t.rows << ", distinct ids " << t.distinct;
  std::vector<std::string> stray;
  for (auto id : t.out_of_range) stray.push_back(std::to_string(id));
  EXPECT_TRUE(stray.empty()) << "ids no operation inserts: " << sample(stray);

  if (atomic_chunks) {
    // Transaction mode: chunk k is operations [k·size, (k+1)·size), all or nothing.
    std::vector<std::string> torn;
    for (std::size_t begin = 0; begin < n; begin += batch_size) {
      const std::size_t end = std::min(n, begin + batch_size);
      std::size_t present = 0;
      for (std::size_t i = begin; i < end; ++i) present += t.copies[i] > 0;
      if (present != 0 && present != end - begin) {
        torn.push_back("chunk " + std::to_string(begin / batch_size) + " (" + std::to_string(present) + "/" +
                       std::to_string(end - begin) + " present)");
      }
    }
    f.torn_chunks = torn.size();
    EXPECT_TRUE(torn.empty()) << "transaction chunks applied in part: " << sample(torn);
  }
  return f;
}

batch_operation insert_op(const std::string& table, std::size_t i) {
  return batch_operation("INSERT INTO " + table + " (id) VALUES ($1)", static_cast<std::int64_t>(i));
}

// One batch of n inserts into `table` under the killer; checks the invariants, returns
// the figures.
run_figures run_under_kills(const std::string& table, std::size_t n, const batch_options& o) {
  reset_table(table);
  client_options co = victim_options(static_cast<int>(o.concurrency) + 1);
  client db(co);
  const auto t0 = clock_type::now();
  batch_report report;
  long kills = 0;
  {
    backend_killer killer;
    report = db.batch_execute(
        n, [&table](std::size_t i) { return insert_op(table, i); }, o);
    killer.stop();
    kills = killer.kills();
  }
  const double seconds = seconds_since(t0);
  EXPECT_GT(kills, 0) << "no backend of the batch was killed: the run proves nothing";
  expect_coherent_report(report, n);
  const auto t = read_table(table, n);
  auto f = check_against_table(report, t, n, o.batch_size, o.mode == batch_mode::transaction);
  f.seconds = seconds;
  f.kills = kills;
  return f;
}

batch_options kill_batch(batch_mode mode, std::size_t batch_size, std::size_t concurrency) {
  batch_options o;
  o.mode = mode;
  o.batch_size = batch_size;
  o.concurrency = concurrency;
  o.timeout = 120s;
  return o;
}

// Runs the same batch repeatedly: at least once, at most `runs` times, no new run after
// `budget`. Prints how many runs broke an invariant.
void repeat_under_kills(const char* label, const std::string& table, std::size_t n, const batch_options& o, int runs,
                        std::chrono::seconds budget) {
  const auto t0 = clock_type::now();
  int failing = 0;
  int done = 0;
  for (int run = 1; run <= runs; ++run) {
    if (run > 1 && clock_type::now() - t0 > budget) break;
    SCOPED_TRACE(std::string(label) + " run " + std::to_string(run));
    const int failures_before = ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
    const auto f = run_under_kills(table, n, o);
    const int failures_after = ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
    failing += failures_after != failures_before;
    ++done;
    std::printf("[ figures  ] %s run %d: %zu operations, %s\n", label, run, n, summary(f).c_str());
    std::fflush(stdout);
  }
  std::printf("[ figures  ] %s: %d of %d runs broke an invariant, %.1f s in all\n", label, failing, done,
              seconds_since(t0));
}

}  // namespace

// Pipeline mode: what the report calls succeeded is in the table, what it calls failed (and
// not indeterminate) is not, nothing twice. Repeated: a lost acknowledgement is rare per run.
TEST(batch_fault, pipeline_loses_no_acknowledged_write_under_backend_kills) {
  repeat_under_kills("pipeline", "bf_pipeline", 200000, kill_batch(batch_mode::pipeline, 500, 2), 25, 45s);
}

// Same with three connections.
TEST(batch_fault, pipeline_with_three_connections_loses_no_acknowledged_write) {
  repeat_under_kills("pipeline c3", "bf_pipeline3", 200000, kill_batch(batch_mode::pipeline, 500, 3), 15, 25s);
}

// Transaction mode: the same, and every chunk is applied whole or not at all.
TEST(batch_fault, transaction_mode_loses_no_acknowledged_write_under_backend_kills) {
  repeat_under_kills("transaction", "bf_transaction", 500000, kill_batch(batch_mode::transaction, 100, 3), 5, 15s);
}

// Independent mode: each operation on its own through the resilience pipeline.
TEST(batch_fault, independent_mode_loses_no_acknowledged_write_under_backend_kills) {
  repeat_under_kills("independent", "bf_independent", 50000, kill_batch(batch_mode::independent, 100, 3), 4, 10s);
}

// The report's counts add up under kills, and what it reports as timed out or not run was
// not applied (unless its outcome is indeterminate) — with the deadline passing mid-batch,
// and with stop_on_error.
TEST(batch_fault, report_counts_are_coherent_and_unrun_operations_unapplied) {
  struct scenario {
    const char* name;
    batch_mode mode;
    std::size_t batch_size;
    std::chrono::milliseconds timeout;
    bool stop_on_error;
  };
  const scenario scenarios[] = {
      {"pipeline, deadline mid-batch", batch_mode::pipeline, 500, 800ms, false},
      {"transaction, deadline mid-batch", batch_mode::transaction, 100, 300ms, false},
      {"independent, deadline mid-batch", batch_mode::independent, 100, 800ms, false},
      {"pipeline, stop_on_error", batch_mode::pipeline, 500, 60000ms, true},
      {"transaction, stop_on_error", batch_mode::transaction, 100, 60000ms, true},
  };
  constexpr std::size_t n = 200000;
  const std::string table = "bf_report";
  for (const auto& s : scenarios) {
    SCOPED_TRACE(s.name);
    reset_table(table);
    client_options co = victim_options(4);
    client db(co);
    batch_options o = kill_batch(s.mode, s.batch_size, 3);
    o.timeout = s.timeout;
    o.stop_on_error = s.stop_on_error;
    batch_report report;
    long kills = 0;
    const auto t0 = clock_type::now();
    {
      backend_killer killer;
      // The last operation sleeps past the deadline, so the deadline passes however fast the
      // rest goes (it would insert its id only if it finished, which it cannot in time).
      report = db.batch_execute(
          n,
          [&table, &s](std::size_t i) {
            if (!s.stop_on_error && i == n - 1) {
              return batch_operation("INSERT INTO " + table + " (id) SELECT $1 FROM pg_sleep(60)",
                                     static_cast<std::int64_t>(i));
            }
            return insert_op(table, i);
          },
          o);
      killer.stop();
      kills = killer.kills();
    }
    const double seconds = seconds_since(t0);
    EXPECT_LT(std::chrono::duration<double>(report.stats.duration).count(),
              std::chrono::duration<double>(s.timeout).count() + 10.0)
        << "the batch returns within its timeout plus the cancel's bound";
    expect_coherent_report(report, n);

    const auto t = read_table(table, n);
    std::map<std::string, std::size_t> counts;
    std::vector<std::string> applied_unrun, unrun_sent, stray_not_run;
    std::size_t timed_out_indeterminate_present = 0;
    for (const auto& e : report.errors) {
      ++counts[std::string(to_string(e.reason)) + "/" + std::string(to_string(e.outcome))];
      if (e.index >= n) continue;
      const bool present = t.copies[e.index] > 0;
      if (e.reason == batch_failure::not_run) {
        if (e.outcome != outcome::not_sent) unrun_sent.push_back(describe(e));
        if (!s.stop_on_error) stray_not_run.push_back(describe(e));
        if (present) applied_unrun.push_back(describe(e));
      } else if (e.reason == batch_failure::timed_out) {
        if (e.outcome != outcome::indeterminate) {
          if (present) applied_unrun.push_back(describe(e));
        } else if (present) {
          ++timed_out_indeterminate_present;  // sent, then cut off: may have been applied
        }
      }
    }
    EXPECT_TRUE(applied_unrun.empty()) << applied_unrun.size()
                                       << " operations reported timed_out/not_run (outcome not indeterminate) are in "
                                          "the table: "
                                       << sample(applied_unrun);
    EXPECT_TRUE(unrun_sent.empty()) << "not_run operations whose outcome is not not_sent: " << sample(unrun_sent);
    EXPECT_TRUE(stray_not_run.empty()) << "not_run without stop_on_error: " << sample(stray_not_run);
    if (s.stop_on_error) {
      EXPECT_EQ(report.stopped, !report.errors.empty());
    } else {
      EXPECT_FALSE(report.stopped);
      EXPECT_TRUE(report.timed_out) << "the deadline passed before " << n << " inserts finished";
      EXPECT_GT(report.stats.timed_out, 0u);
    }
    std::ostringstream c;
    for (const auto& [k, v] : counts) c << " " << k << "=" << v;
    std::printf(
        "[ figures  ] %s: %.1f s, %ld backends killed, %zu succeeded, processed %zu, stopped %d, "
        "timed_out %zu (indeterminate and applied: %zu); errors:%s\n",
        s.name, seconds, kills, report.stats.succeeded, report.stats.processed, int(report.stopped),
        report.stats.timed_out, timed_out_indeterminate_present, c.str().c_str());
    std::fflush(stdout);
  }
}
