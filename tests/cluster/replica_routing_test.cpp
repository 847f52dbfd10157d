// Routing over a real primary with streaming standbys (steadypg::testing::temp_replica_set):
// roles found by the prober, lag, a stopped replica, split brain after a promotion, a
// read-only primary (25006), fail-over of a write, read-your-writes tokens and read-only
// transactions on replicas.

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "steadypg/client.hpp"
#include "steadypg/testing/temp_replica_set.hpp"

namespace steadypg {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto end = clock_type::now() + limit;
  while (clock_type::now() < end) {
    try {
      if (pred()) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// Counts the calls that ended on each host (by the name of the call).
class host_counter final : public observer {
 public:
  void on_call_finished(const call_report& r) noexcept override {
    std::lock_guard lk(m_mu);
    auto& c = m_counts[std::string(r.operation)][r.host_index];
    (r.failure ? c.second : c.first)++;
  }
  std::pair<int, int> at(const std::string& op, int host) {
    std::lock_guard lk(m_mu);
    return m_counts[op][host];
  }
  void clear() {
    std::lock_guard lk(m_mu);
    m_counts.clear();
  }

 private:
  std::mutex m_mu;
  std::map<std::string, std::map<int, std::pair<int, int>>> m_counts;  // op → host → (ok, failed)
};

client_options options_for(const testing::temp_replica_set& set) {
  client_options o;
  o.dsn = set.dsn();
  o.pool.max_size = 4;
  o.cluster.probe_interval = 200ms;
  o.resilience.retry.base_delay = 10ms;
  return o;
}

testing::temp_replica_set_options one_replica() {
  testing::temp_replica_set_options o;
  o.replicas = 1;
  return o;
}

host_role role_of(client& db, std::size_t i) { return db.topology().hosts.at(i).role; }

TEST(replica_routing, roles_are_found_within_one_probe_and_reads_are_balanced_over_the_replicas) {
  testing::temp_replica_set set;
  host_counter seen;
  auto opts = options_for(set);
  opts.cluster.probe_interval = 1000ms;  // the default: the first round alone must find the roles
  const auto t0 = clock_type::now();
  client db(opts, &seen);
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1);  // waits for the first round only
  const auto t = db.topology();
  EXPECT_LT(clock_type::now() - t0, 1s);
  ASSERT_EQ(t.hosts.size(), 3u);
  EXPECT_EQ(t.hosts[0].role, host_role::primary);
  EXPECT_EQ(t.hosts[1].role, host_role::replica);
  EXPECT_EQ(t.hosts[2].role, host_role::replica);
  EXPECT_EQ(t.primary, std::optional<std::size_t>{0});
  EXPECT_EQ(t.primaries, 1);
  EXPECT_EQ(t.hosts[1].timeline, 1);
  for (int i = 0; i < 40; ++i) {
    EXPECT_TRUE(db.execute(statement{"SELECT pg_is_in_recovery()"}.route(route::replica).name("read")).as<bool>());
  }
  EXPECT_EQ(seen.at("read", 1).first, 20);
  EXPECT_EQ(seen.at("read", 2).first, 20);
  EXPECT_EQ(seen.at("read", 0).first, 0);
  // Writes go to the primary; `any` uses all three.
  (void)db.execute("CREATE TABLE t_roles (id int)");
  for (int i = 0; i < 30; ++i) (void)db.execute(statement{"SELECT 1"}.route(route::any).name("any"));
  for (int h = 0; h < 3; ++h) EXPECT_EQ(seen.at("any", h).first, 10) << h;
  const auto text = db.metrics().render_prometheus();
  EXPECT_NE(text.find(
                fmt::format("postgresql_host_role{{host=\"127.0.0.1:{}\",role=\"replica\"}} 1", set.node(1).port())),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("postgresql_topology_primaries 1"), std::string::npos);
  const auto h = db.health_check();
  EXPECT_EQ(h.status, health_status::healthy) << h.reason;
  EXPECT_EQ(h.hosts.size(), 3u);
}

TEST(replica_routing, a_paused_replica_becomes_lagging_its_reads_move_and_it_returns_after_resume) {
  testing::temp_replica_set set;
  host_counter seen;
  auto opts = options_for(set);
  opts.cluster.max_replica_lag = 1000ms;
  client db(opts, &seen);
  (void)db.execute("CREATE TABLE t_lag (id serial, at timestamptz DEFAULT now())");
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) {
      try {
        (void)db.execute("INSERT INTO t_lag DEFAULT VALUES");
      } catch (const error&) {
      }
      std::this_thread::sleep_for(5ms);  // about 200 rows/s
    }
  });
  set.pause_replay(1);
  EXPECT_TRUE(wait_until([&] { return role_of(db, 1) == host_role::lagging; }, 10s)) << [&] {
    std::string out;
    for (const auto& h : db.topology().hosts) {
      out += fmt::format("{} {} lsn={} lag={} bytes={}; ", h.label, to_string(h.role), h.wal_lsn,
                         h.lag_seconds.value_or(-1), h.lag_bytes.value_or(-1));
    }
    return out;
  }();
  const auto lagged = db.topology().hosts[1];
  EXPECT_GT(lagged.lag_seconds.value_or(0), 1.0);
  EXPECT_GT(lagged.lag_bytes.value_or(0), 0);
  seen.clear();
  for (int i = 0; i < 20; ++i) (void)db.execute(statement{"SELECT 1"}.route(route::replica).name("read"));
  EXPECT_EQ(seen.at("read", 1).first, 0);
  EXPECT_EQ(seen.at("read", 2).first, 20);
  EXPECT_EQ(db.health_check().status, health_status::degraded);
  set.resume_replay(1);
  // Back after three probes under half the limit.
  EXPECT_TRUE(wait_until([&] { return role_of(db, 1) == host_role::replica; }, 10s));
  stop = true;
  writer.join();
  seen.clear();
  for (int i = 0; i < 20; ++i) (void)db.execute(statement{"SELECT 1"}.route(route::replica).name("read"));
  EXPECT_EQ(seen.at("read", 1).first, 10);
  EXPECT_NE(db.metrics().render_prometheus().find(
                "postgresql_topology_changes_total{host=\"127.0.0.1:" + std::to_string(set.node(1).port()) +
                "\",from=\"replica\",to=\"lagging\"} 1"),
            std::string::npos);
}

TEST(replica_routing, a_stopped_replica_sends_prefer_replica_reads_to_the_primary_and_replica_calls_fail_fast) {
  testing::temp_replica_set set(one_replica());
  host_counter seen;
  client db(options_for(set), &seen);
  EXPECT_EQ(db.query_value<int>("SELECT 1"), 1);
  set.stop(1);
  EXPECT_TRUE(wait_until([&] { return role_of(db, 1) == host_role::unavailable; }, 5s));
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(
        db.execute(statement{"SELECT pg_is_in_recovery()"}.route(route::prefer_replica).name("read")).as<bool>());
  }
  EXPECT_EQ(seen.at("read", 0).first, 10);
  const auto t0 = clock_type::now();
  EXPECT_THROW((void)db.execute(statement{"SELECT 1"}.route(route::replica)), no_replica_available);
  EXPECT_LT(clock_type::now() - t0, 100ms);
  EXPECT_NE(db.metrics().render_prometheus().find(
                "postgresql_route_fallbacks_total{from=\"prefer_replica\",to=\"primary\",reason=\"none\"} 10"),
            std::string::npos);
  const auto h = db.health_check();
  EXPECT_EQ(h.status, health_status::degraded) << h.reason;  // the primary is fine
  set.start(1);
  // Two good probes bring it back.
  EXPECT_TRUE(wait_until([&] { return role_of(db, 1) == host_role::replica; }, 10s));
  EXPECT_TRUE(db.execute(statement{"SELECT pg_is_in_recovery()"}.route(route::replica)).as<bool>());
}

TEST(replica_routing, promoting_a_standby_while_the_primary_runs_is_a_split_brain_and_writes_go_to_the_new_timeline) {
  testing::temp_replica_set set(one_replica());
  client db(options_for(set));
  (void)db.execute("CREATE TABLE t_split (id int)");
  set.wait_caught_up(1);
  set.promote(1);
  EXPECT_TRUE(wait_until([&] { return db.topology().primaries == 2; }, 5s));
  const auto t = db.topology();
  EXPECT_EQ(t.primary, std::optional<std::size_t>{1});
  EXPECT_EQ(t.hosts[1].timeline, 2);
  EXPECT_EQ(t.hosts[0].timeline, 1);
  (void)db.execute("INSERT INTO t_split VALUES (1)");
  connection on_new(set.node(1).dsn());
  EXPECT_EQ(on_new.execute("SELECT count(*) FROM t_split").as<std::int64_t>(), 1);
  connection on_old(set.node(0).dsn());
  EXPECT_EQ(on_old.execute("SELECT count(*) FROM t_split").as<std::int64_t>(), 0);
  EXPECT_NE(db.metrics().render_prometheus().find("postgresql_topology_primaries 2"), std::string::npos);
  EXPECT_EQ(db.health_check().status, health_status::degraded);
}

TEST(replica_routing, a_read_only_primary_is_demoted_and_writes_fail_with_no_primary_until_it_is_writable_again) {
  testing::temp_replica_set set(one_replica());
  client db(options_for(set));
  (void)db.execute("CREATE TABLE t_ro (id int)");
  connection admin(set.node(0).dsn());
  (void)admin.execute("ALTER SYSTEM SET default_transaction_read_only = on");
  (void)admin.execute("SELECT pg_reload_conf()");
  // The next write may still go to the old primary. A session applies a reload only after its
  // next statement, so a pooled one may still accept it; else 25006, fail-over, no primary.
  int first_committed = 0;
  try {
    (void)db.execute(statement{"INSERT INTO t_ro VALUES (1)"}.timeout(1500ms));
    first_committed = 1;
  } catch (const no_primary_available& e) {
    EXPECT_EQ(e.outcome(), outcome::not_sent);
  } catch (const error& e) {
    EXPECT_EQ(e.sqlstate(), "25006") << e.what();
  }
  EXPECT_TRUE(wait_until([&] { return role_of(db, 0) == host_role::read_only_primary; }, 5s));
  EXPECT_THROW((void)db.execute(statement{"INSERT INTO t_ro VALUES (2)"}.timeout(500ms)), no_primary_available);
  // Reads still work: the read-only primary serves them like a replica.
  EXPECT_EQ(db.execute(statement{"SELECT count(*) FROM t_ro"}.route(route::prefer_replica)).as<std::int64_t>(),
            first_committed);
  (void)admin.execute("ALTER SYSTEM RESET default_transaction_read_only");
  (void)admin.execute("SELECT pg_reload_conf()");
  EXPECT_TRUE(wait_until([&] { return db.topology().primary == std::optional<std::size_t>{0}; }, 5s));
  (void)db.execute("INSERT INTO t_ro VALUES (3)");
  EXPECT_EQ(admin.execute("SELECT count(*) FROM t_ro").as<std::int64_t>(), 1 + first_committed);
}

TEST(replica_routing, a_write_that_meets_a_demoted_primary_fails_over_once_to_the_new_one) {
  testing::temp_replica_set set(one_replica());
  auto opts = options_for(set);
  opts.cluster.probe_interval = 60000ms;  // the client learns of the switch only from the 25006
  client db(opts);
  (void)db.execute("CREATE TABLE t_fo (id int)");
  set.wait_caught_up(1);
  // Past the first second of fast probes; and idle for over validate_after_idle, so the pooled
  // session is pinged before the write, which makes it apply the reload below first.
  std::this_thread::sleep_for(1500ms);
  connection admin(set.node(0).dsn());
  (void)admin.execute("ALTER SYSTEM SET default_transaction_read_only = on");
  (void)admin.execute("SELECT pg_reload_conf()");
  set.promote(1);
  ASSERT_EQ(db.topology().primary, std::optional<std::size_t>{0});  // not probed since
  (void)db.execute(statement{"INSERT INTO t_fo VALUES (1)"}.timeout(5s));
  connection on_new(set.node(1).dsn());
  EXPECT_EQ(on_new.execute("SELECT count(*) FROM t_fo").as<std::int64_t>(), 1);
  EXPECT_EQ(db.topology().primary, std::optional<std::size_t>{1});
  EXPECT_NE(db.metrics().render_prometheus().find("postgresql_operation_retry_total{reason=\"wrong_host\"} 1"),
            std::string::npos);
  // A whole transaction re-runs on the new primary too.
  (void)admin.execute("SELECT 1");
  int runs = 0;
  db.transaction([&](transaction& tx) {
    ++runs;
    (void)tx.execute("INSERT INTO t_fo VALUES (2)");
  });
  EXPECT_EQ(on_new.execute("SELECT count(*) FROM t_fo").as<std::int64_t>(), 2);
  EXPECT_GE(runs, 1);
}

TEST(replica_routing, a_write_token_sends_reads_to_a_replica_only_once_it_has_replayed_the_write) {
  testing::temp_replica_set set(one_replica());
  auto opts = options_for(set);
  opts.cluster.max_replica_lag = 0ms;  // lag alone never excludes: only the token decides
  host_counter seen;
  client db(opts, &seen);
  (void)db.execute("CREATE TABLE t_ryw (id int)");
  set.wait_caught_up(1);
  set.pause_replay(1);
  (void)db.execute("INSERT INTO t_ryw VALUES (1)");
  const auto token = db.commit_token();
  ASSERT_TRUE(token);
  // The replica has not replayed it: the read goes to the primary and sees the row.
  EXPECT_EQ(db.execute(statement{"SELECT count(*) FROM t_ryw"}.route(route::prefer_replica).after(token).name("ryw"))
                .as<std::int64_t>(),
            1);
  EXPECT_EQ(seen.at("ryw", 0).first, 1);
  EXPECT_THROW((void)db.execute(statement{"SELECT 1"}.route(route::replica).after(token)), no_replica_available);
  set.resume_replay(1);
  set.wait_caught_up(1);
  ASSERT_TRUE(wait_until([&] { return db.topology().hosts[1].wal_lsn >= token.lsn; }, 5s));
  EXPECT_EQ(db.execute(statement{"SELECT count(*) FROM t_ryw"}.route(route::replica).after(token).name("ryw"))
                .as<std::int64_t>(),
            1);
  EXPECT_EQ(seen.at("ryw", 1).first, 1);
}

TEST(replica_routing, a_transaction_routed_to_a_replica_runs_read_only_there) {
  testing::temp_replica_set set(one_replica());
  client db(options_for(set));
  (void)db.execute("CREATE TABLE t_rotx (id int)");
  set.wait_caught_up(1);
  const auto in_recovery =
      db.transaction([](transaction& tx) { return tx.execute("SELECT pg_is_in_recovery()").as<bool>(); },
                     {.route = route::replica});
  EXPECT_TRUE(in_recovery);
  try {
    db.transaction([](transaction& tx) { (void)tx.execute("INSERT INTO t_rotx VALUES (1)"); },
                   {.route = route::prefer_replica});
    FAIL() << "a write ran in a read-only transaction";
  } catch (const error& e) {
    EXPECT_EQ(e.sqlstate(), "25006");
  }
  // A batch and a COPY out can be routed too.
  std::vector<batch_operation> ops;
  for (int i = 0; i < 5; ++i) ops.emplace_back("SELECT pg_is_in_recovery()");
  batch_options bo;
  bo.route = route::replica;
  bo.keep_results = true;
  const auto report = db.batch_execute(ops, bo);
  EXPECT_EQ(report.stats.succeeded, 5u);
  ASSERT_EQ(report.results.size(), 5u);
  for (const auto& r : report.results) EXPECT_TRUE(r && r->as<bool>());
}

}  // namespace
}  // namespace steadypg
