// The query cache against a real PostgreSQL (with pg_stat_statements, to see what reached the
// server) and a real redis-server started by the test (docs/cache.md).

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "redis_process.hpp"
#include "steadypg/client.hpp"
#include "steadypg/redis/cache.hpp"
#include "steadypg/testing/temp_cluster.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;

std::unique_ptr<steadypg::testing::temp_cluster> g_cluster;
std::string g_self;  // this binary, for the second process of the stampede test

std::string g_dsn;  // the cluster's (in the second process: the parent's, from its arguments)

const std::string& dsn() { return g_dsn; }

steadypg::client_options options(std::shared_ptr<steadypg::cache_backend> backend, std::string extra_dsn = {}) {
  steadypg::client_options o;
  o.dsn = dsn() + extra_dsn;
  o.pool.max_size = 8;
  o.resilience.retry.base_delay = 10ms;
  o.cache.backend = std::move(backend);
  return o;
}

// Calls of `sql` the server has run (pg_stat_statements).
std::int64_t server_calls(steadypg::client& admin, std::string_view sql) {
  return admin.query_value<std::int64_t>(
      "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query = $1", sql);
}

class cache_db : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    steadypg::client admin(options(nullptr));
    admin.execute(R"sql(
      CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
      DROP TABLE IF EXISTS cache_types, kv, owned CASCADE;
      CREATE TABLE cache_types (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, f8 float8, f4 float4, b bool, t text,
                                by bytea, ts timestamptz, ia int4[], ta text[], n numeric, j jsonb);
      INSERT INTO cache_types VALUES
        (1, 1, -2, 9000000000, 1.5, 0.25, true, 'héllo, "world"', '\x00ff0041'::bytea, '2024-01-02 03:04:05.678+00',
         '{1,NULL,3}', '{"a b",NULL,"c\"d"}', 12345.6789, '{"k": [1, null]}'),
        (2, NULL, NULL, NULL, 'NaN', '-Infinity', NULL, '', '\x'::bytea, NULL, '{}', NULL, NULL, 'null'),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
      CREATE TABLE kv (k int PRIMARY KEY, v text);
      INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g;
      DROP SCHEMA IF EXISTS s1 CASCADE; DROP SCHEMA IF EXISTS s2 CASCADE;
      CREATE SCHEMA s1; CREATE SCHEMA s2;
      CREATE TABLE s1.which (v text); INSERT INTO s1.which VALUES ('s1');
      CREATE TABLE s2.which (v text); INSERT INTO s2.which VALUES ('s2');
      DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cache_r1') THEN CREATE ROLE cache_r1 LOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cache_r2') THEN CREATE ROLE cache_r2 LOGIN; END IF;
      END $$;
      CREATE TABLE owned (owner name, v text);
      INSERT INTO owned VALUES ('cache_r1', 'one'), ('cache_r2', 'two');
      ALTER TABLE owned ENABLE ROW LEVEL SECURITY;
      CREATE POLICY mine ON owned USING (owner = current_user);
      GRANT SELECT ON owned TO cache_r1, cache_r2;
      GRANT USAGE ON SCHEMA s1, s2 TO cache_r1, cache_r2;
      CREATE SEQUENCE IF NOT EXISTS slow_runs;
      CREATE TABLE IF NOT EXISTS stampede (k int PRIMARY KEY); INSERT INTO stampede VALUES (1) ON CONFLICT DO NOTHING;
      -- Declared IMMUTABLE so that it may be cached; counts its runs in a sequence (outside any transaction).
      CREATE SEQUENCE IF NOT EXISTS fail_runs;
      -- Fails for every k, counting its runs (nextval is not rolled back by the error).
      CREATE OR REPLACE FUNCTION failing_counted(k int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
        $$ BEGIN PERFORM nextval('fail_runs'); RAISE EXCEPTION 'no row for %', k USING ERRCODE = 'P0002',
           HINT = 'try another'; END $$;
      CREATE OR REPLACE FUNCTION slow_counted(k int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
        $$ BEGIN PERFORM nextval('slow_runs'); PERFORM pg_sleep(0.3); RETURN k; END $$;
    )sql");
  }
};

void expect_identical(const steadypg::result& a, const steadypg::result& b) {
  ASSERT_EQ(a.columns(), b.columns());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a.command(), b.command());
  EXPECT_EQ(a.rows_affected(), b.rows_affected());
  for (std::size_t c = 0; c < a.columns(); ++c) {
    EXPECT_EQ(a.column_name(c), b.column_name(c));
    EXPECT_EQ(a.column_type(c), b.column_type(c));
  }
  for (std::size_t r = 0; r < a.size(); ++r) {
    for (std::size_t c = 0; c < a.columns(); ++c) {
      EXPECT_EQ(a[r][c].is_null(), b[r][c].is_null()) << r << "," << c;
      EXPECT_EQ(a[r][c].text(), b[r][c].text()) << r << "," << c;
    }
  }
}

TEST_F(cache_db, miss_then_hit_is_identical_in_every_column_type_and_does_not_reach_the_server) {
  steadypg::client admin(options(nullptr));
  steadypg::client db(options(std::make_shared<steadypg::local_cache>()));
  const std::string sql = "SELECT * FROM cache_types ORDER BY id";
  const auto before = server_calls(admin, sql);
  const auto plain = db.execute(sql);
  const auto first = db.query_cached(sql);
  const auto second = db.query_cached(sql);
  expect_identical(plain, first);
  expect_identical(plain, second);
  EXPECT_EQ(server_calls(admin, sql) - before, 2);  // execute() and the miss; the hit stayed here
  // Converted values agree too, bytes with their NUL included.
  EXPECT_EQ(second[0]["by"].as<steadypg::bytes>(), plain[0]["by"].as<steadypg::bytes>());
  EXPECT_EQ(second[0]["by"].as<steadypg::bytes>().size(), 4u);
  EXPECT_EQ((second[0]["ta"].as<std::vector<std::optional<std::string>>>()),
            (plain[0]["ta"].as<std::vector<std::optional<std::string>>>()));
  const auto s = db.cache_statistics();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_DOUBLE_EQ(s.hit_ratio(), 0.5);
  EXPECT_GT(s.bytes, 0u);
  EXPECT_NE(db.metrics().render_prometheus().find("postgresql_cache_requests_total{result=\"hit\"} 1"),
            std::string::npos);
}

TEST_F(cache_db, keys_differ_by_parameters_role_and_search_path) {
  auto shared = std::make_shared<steadypg::local_cache>();
  steadypg::client db(options(shared));
  EXPECT_EQ(db.query_cached("SELECT v FROM kv WHERE k = $1", 1).as<std::string>(), "v1");
  EXPECT_EQ(db.query_cached("SELECT v FROM kv WHERE k = $1", 2).as<std::string>(), "v2");
  EXPECT_EQ(db.query_cached("SELECT v FROM kv WHERE k = $1", 1).as<std::string>(), "v1");

  steadypg::client in_s1(options(shared, " options='-c search_path=s1'"));
  steadypg::client in_s2(options(shared, " options='-c search_path=s2'"));
  EXPECT_EQ(in_s1.query_cached("SELECT v FROM which").as<std::string>(), "s1");
  EXPECT_EQ(in_s2.query_cached("SELECT v FROM which").as<std::string>(), "s2");
  EXPECT_EQ(in_s1.query_cached("SELECT v FROM which").as<std::string>(), "s1");

  // Row-level security: the same text answers differently per role.
  steadypg::client r1(options(shared, " user=cache_r1"));
  steadypg::client r2(options(shared, " user=cache_r2"));
  EXPECT_EQ(r1.query_cached("SELECT v FROM public.owned").as<std::string>(), "one");
  EXPECT_EQ(r2.query_cached("SELECT v FROM public.owned").as<std::string>(), "two");
  EXPECT_EQ(r1.query_cached("SELECT v FROM public.owned").as<std::string>(), "one");
  EXPECT_EQ(r1.cache_statistics().hits, 1u);
  EXPECT_EQ(r2.cache_statistics().hits, 0u);
}

TEST_F(cache_db, a_committed_write_invalidates_and_a_rolled_back_one_does_not) {
  steadypg::client db(options(std::make_shared<steadypg::local_cache>()));
  const std::string read = "SELECT v FROM kv WHERE k = $1";
  EXPECT_EQ(db.query_cached(read, 10).as<std::string>(), "v10");
  EXPECT_EQ(db.query_cached(read, 10).as<std::string>(), "v10");
  EXPECT_EQ(db.cache_statistics().hits, 1u);

  db.execute("UPDATE kv SET v = 'new10' WHERE k = 10");
  EXPECT_EQ(db.query_cached(read, 10).as<std::string>(), "new10");
  EXPECT_EQ(db.cache_statistics().misses, 2u);

  const auto invalidations = db.cache_statistics().invalidations;
  EXPECT_THROW(db.transaction([](steadypg::transaction& tx) {
    tx.execute("UPDATE kv SET v = 'never' WHERE k = 10");
    throw std::runtime_error("roll back");
  }),
               std::runtime_error);
  EXPECT_EQ(db.cache_statistics().invalidations, invalidations);
  EXPECT_EQ(db.query_cached(read, 10).as<std::string>(), "new10");
  EXPECT_EQ(db.cache_statistics().hits, 2u);

  db.transaction([](steadypg::transaction& tx) { tx.execute("UPDATE public.kv SET v = 'tx10' WHERE k = 10"); });
  EXPECT_GT(db.cache_statistics().invalidations, invalidations);
  EXPECT_EQ(db.query_cached(read, 10).as<std::string>(), "tx10");

  // Inside transaction(fn) the cache is bypassed.
  db.transaction([&](steadypg::transaction&) { (void)db.query_cached(read, 10); });
  EXPECT_EQ(db.cache_statistics().bypass_by_reason[static_cast<int>(steadypg::cache_bypass_reason::transaction)], 1u);
  db.execute("UPDATE kv SET v = 'v10' WHERE k = 10");
}

// The backend of one process: "local", or a Redis URL with the local level in front
// (local+redis://…, built as the client builds it).
std::shared_ptr<steadypg::cache_backend> backend_for(const std::string& kind) {
  if (kind == "local") return std::make_shared<steadypg::local_cache>();
  return std::make_shared<steadypg::tiered_cache>(steadypg::redis::make_cache(kind));
}

std::int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The writer of the cross-process NOTIFY test: waits until `start_ms`, commits an UPDATE through
// a client with its own cache on `channel`, writes the wall time just after the commit to
// `out`, and exits once its client (and so its NOTIFY) is done.
int notify_writer(const std::string& kind, const std::string& channel, std::int64_t start_ms, const std::string& out) {
  auto o = options(backend_for(kind));
  o.cache.notify_channel = channel;
  std::int64_t committed = 0;
  {
    steadypg::client db(o);
    std::this_thread::sleep_until(std::chrono::system_clock::time_point(std::chrono::milliseconds(start_ms)));
    db.execute("UPDATE kv SET v = 'other20' WHERE k = 20");
    committed = wall_us();
  }
  std::FILE* f = std::fopen(out.c_str(), "w");
  if (f == nullptr) return 2;
  std::fprintf(f, "%lld\n", static_cast<long long>(committed));
  std::fclose(f);
  return 0;
}

// Runs this binary as another process with `args`; its exit status (-1 when it had to be killed
// after 30 s).
int run_child(const std::vector<std::string>& child_args) {
  std::vector<std::string> args{g_self};
  args.insert(args.end(), child_args.begin(), child_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = -1;
  if (posix_spawn(&child, g_self.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(10ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A write committed by another process reaches this process's local cache through NOTIFY:
// the next read misses within 100 ms of the commit.
void expect_notify_across_processes(const std::string& kind) {
  SCOPED_TRACE(kind);
  const std::string channel = "steadypg_cache_test";
  auto o = options(backend_for(kind));
  o.cache.notify_channel = channel;
  steadypg::client reader(o);
  for (int i = 0; i < 500 && !reader.cache_listening(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(reader.cache_listening());
  const std::string read = "SELECT v FROM kv WHERE k = $1";
  ASSERT_EQ(reader.query_cached(read, 20).as<std::string>(), "v20");
  ASSERT_EQ(reader.query_cached(read, 20).as<std::string>(), "v20");
  const auto hits_before = reader.cache_statistics().hits;
  EXPECT_EQ(hits_before, 1u);

  const auto start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            (std::chrono::system_clock::now() + 1500ms).time_since_epoch())
                            .count();
  const auto out = std::filesystem::temp_directory_path() / ("steadypg-notify-" + std::to_string(getpid()));
  std::int64_t seen_us = 0;
  std::thread poll([&] {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      if (reader.query_cached(read, 20).as<std::string>() == "other20") {
        seen_us = wall_us();
        return;
      }
      std::this_thread::sleep_for(1ms);
    }
  });
  const int rc = run_child({"--notify-writer", dsn(), kind, channel, std::to_string(start_ms), out.string()});
  poll.join();
  EXPECT_EQ(rc, 0);
  std::int64_t committed_us = 0;
  if (std::FILE* f = std::fopen(out.c_str(), "r")) {
    long long v = 0;
    if (std::fscanf(f, "%lld", &v) == 1) committed_us = v;
    std::fclose(f);
  }
  std::filesystem::remove(out);
  ASSERT_GT(committed_us, 0);
  ASSERT_GT(seen_us, 0) << "the other process's write was never seen";
  const double took_ms = static_cast<double>(seen_us - committed_us) / 1000.0;
  std::printf("%s: another process's commit seen after %.1f ms\n", kind == "local" ? "local" : "local+redis", took_ms);
  EXPECT_LT(took_ms, 100.0);
  EXPECT_GT(reader.cache_statistics().hits, hits_before);  // it was answering from the cache meanwhile
  reader.execute("UPDATE kv SET v = 'v20' WHERE k = 20");
}

TEST_F(cache_db, notify_invalidates_another_processs_local_cache_within_100_ms) {
  expect_notify_across_processes("local");
}

TEST_F(cache_db, notify_invalidates_another_processs_local_level_in_front_of_redis_within_100_ms) {
  steadypg::test::redis_process redis;
  expect_notify_across_processes(redis.url());
}

// Redis's count of GET calls (INFO commandstats).
std::int64_t redis_gets(const steadypg::test::redis_process& redis) {
  const auto info = redis.command({"INFO", "commandstats"});
  const auto at = info.find("cmdstat_get:calls=");
  return at == std::string::npos ? 0 : std::stoll(info.substr(at + 18));
}

TEST_F(cache_db, local_level_in_front_of_redis_answers_without_a_round_trip_and_shares_misses) {
  steadypg::test::redis_process redis;
  auto o = options(steadypg::redis::make_cache(redis.url()));
  o.cache.url = "local+" + redis.url();  // the client puts the local level in front
  steadypg::client db(o);
  steadypg::client other(options(steadypg::redis::make_cache(redis.url())));  // Redis alone
  EXPECT_EQ(db.cache_statistics().backend, "local+redis");
  const std::string read = "SELECT v FROM kv WHERE k = $1";
  EXPECT_EQ(other.query_cached(read, 50).as<std::string>(), "v50");  // stored in Redis by another client
  const auto gets = redis_gets(redis);
  EXPECT_EQ(db.query_cached(read, 50).as<std::string>(), "v50");  // from Redis, copied locally
  for (int i = 0; i < 20; ++i) EXPECT_EQ(db.query_cached(read, 50).as<std::string>(), "v50");
  EXPECT_EQ(redis_gets(redis), gets + 1);  // one round trip for 21 hits
  EXPECT_EQ(db.cache_statistics().hits, 21u);
  EXPECT_EQ(db.cache_statistics().misses, 0u);
  db.execute("UPDATE kv SET v = 't50' WHERE k = 50");  // invalidates both levels
  EXPECT_EQ(db.query_cached(read, 50).as<std::string>(), "t50");
  EXPECT_EQ(other.query_cached(read, 50).as<std::string>(), "t50");  // Redis saw the invalidation too
  db.execute("UPDATE kv SET v = 'v50' WHERE k = 50");
}

TEST_F(cache_db, negative_ttl_raises_a_remembered_error_without_reaching_the_server) {
  steadypg::client db(options(std::make_shared<steadypg::local_cache>()));
  steadypg::client admin(options(nullptr));
  auto runs = [&] {
    return admin.query_value<std::int64_t>("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fail_runs");
  };
  const std::string q = "SELECT failing_counted(k) FROM kv WHERE k = $1";
  auto fails = [&](const steadypg::cache_policy& p) {
    try {
      (void)db.query_cached(q, p, 7);
    } catch (const steadypg::sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "P0002");
      EXPECT_EQ(e.server().message, "no row for 7");
      EXPECT_EQ(e.server().hint, "try another");
      return;
    }
    ADD_FAILURE() << "no error";
  };
  const auto before = runs();
  const steadypg::cache_policy remember{.negative_ttl = 10s};
  for (int i = 0; i < 3; ++i) fails(remember);
  EXPECT_EQ(runs() - before, 1);  // the server ran it once
  EXPECT_EQ(db.cache_statistics().negative_hits, 2u);
  db.execute("UPDATE kv SET v = v WHERE k = 7");  // a committed write to its table forgets it
  fails(remember);
  EXPECT_EQ(runs() - before, 2);
  fails({});  // without negative_ttl, errors are not cached
  fails({});
  EXPECT_EQ(runs() - before, 4);
}

TEST_F(cache_db, volatile_locking_temporary_and_oversized_bypass_and_immutable_is_cached) {
  auto o = options(std::make_shared<steadypg::local_cache>());
  o.pool.max_size = 1;  // one session: the temporary table is visible to the cached call
  steadypg::client db(o);
  using r = steadypg::cache_bypass_reason;
  auto bypassed = [&](r reason) { return db.cache_statistics().bypass_by_reason[static_cast<int>(reason)]; };
  (void)db.query_cached("SELECT now()");
  (void)db.query_cached("SELECT random()");
  (void)db.query_cached("SELECT v FROM kv WHERE k = 1 FOR UPDATE");
  (void)db.query_cached("SELECT nextval('slow_runs') * 0");
  (void)db.query_cached("SELECT current_timestamp");
  EXPECT_EQ(bypassed(r::volatile_function), 4u);
  EXPECT_EQ(bypassed(r::locking), 1u);
  db.execute("CREATE TEMP TABLE scratch (x int); INSERT INTO scratch VALUES (1)");
  (void)db.query_cached("SELECT x FROM scratch");
  EXPECT_EQ(bypassed(r::temp_table), 1u);
  (void)db.query_cached("SELECT repeat('x', 5000)", steadypg::cache_policy{.max_result_bytes = 1000});
  EXPECT_EQ(bypassed(r::too_large), 1u);
  (void)db.query_cached("INSERT INTO kv VALUES (1000, 'x') RETURNING k");
  EXPECT_EQ(bypassed(r::not_a_query), 1u);
  db.execute("DELETE FROM kv WHERE k = 1000");
  EXPECT_THROW((void)db.query_cached("SELECT no_such_column FROM kv"), steadypg::sql_error);
  EXPECT_EQ(db.cache_statistics().hits, 0u);
  EXPECT_EQ(db.query_cached("SELECT abs(-1)").as<int>(), 1);
  EXPECT_EQ(db.query_cached("SELECT abs(-1)").as<int>(), 1);
  EXPECT_EQ(db.cache_statistics().hits, 1u);
}

TEST_F(cache_db, a_redis_url_without_a_redis_backend_is_a_configuration_error) {
  auto o = options(nullptr);
  o.cache.url = "redis://127.0.0.1:1/0";
  EXPECT_THROW(steadypg::client{o}, steadypg::config_error);
  o.cache.url = "local";
  steadypg::client db(o);
  EXPECT_TRUE(db.cache_enabled());
}

// ---- Redis ----

TEST_F(cache_db, redis_hit_survives_a_stop_and_resumes_after_a_restart) {
  steadypg::test::redis_process redis;
  std::vector<std::string> warnings;
  std::mutex warnings_mutex;
  auto o = options(steadypg::redis::make_cache(redis.url()));
  o.cache.warn = [&](std::string_view w) {
    std::lock_guard lock(warnings_mutex);
    warnings.emplace_back(w);
  };
  steadypg::client db(o);
  const std::string read = "SELECT v FROM kv WHERE k = $1";
  EXPECT_EQ(db.query_cached(read, 30).as<std::string>(), "v30");
  EXPECT_EQ(db.query_cached(read, 30).as<std::string>(), "v30");
  EXPECT_EQ(db.cache_statistics().hits, 1u);

  redis.stop();
  for (int i = 0; i < 50; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(db.query_cached(read, 30 + i % 3).as<std::string>(), "v" + std::to_string(30 + i % 3));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  }
  EXPECT_GT(db.cache_statistics().errors, 0u);
  {
    std::lock_guard lock(warnings_mutex);
    EXPECT_FALSE(warnings.empty());
    EXPECT_LT(warnings.size(), 5u);  // at most one line per second
  }

  redis.start();  // empty: no persistence
  const auto until = std::chrono::steady_clock::now() + 5s;
  std::uint64_t hits = db.cache_statistics().hits;
  while (std::chrono::steady_clock::now() < until && db.cache_statistics().hits == hits) {
    (void)db.query_cached(read, 30);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(db.cache_statistics().hits, hits);
  EXPECT_FALSE(redis.command({"KEYS", "steadypg:v:*"}).empty());
}

TEST_F(cache_db, redis_committed_write_invalidates_through_tag_versions) {
  steadypg::test::redis_process redis;
  steadypg::client db(options(steadypg::redis::make_cache(redis.url())));
  const std::string read = "SELECT v FROM kv WHERE k = $1";
  EXPECT_EQ(db.query_cached(read, 40).as<std::string>(), "v40");
  db.execute("UPDATE kv SET v = 'r40' WHERE k = 40");
  EXPECT_EQ(db.query_cached(read, 40).as<std::string>(), "r40");
  EXPECT_EQ(redis.command({"GET", "steadypg:tag:table:kv"}), "1");
  EXPECT_EQ(redis.command({"TTL", "steadypg:tag:table:kv"}), "-1");  // tags never expire
  db.execute("UPDATE kv SET v = 'v40' WHERE k = 40");
}

TEST_F(cache_db, redis_evicting_allkeys_is_warned_about) {
  steadypg::test::redis_process redis({"--maxmemory-policy", "allkeys-lru"});
  auto backend = steadypg::redis::make_cache(redis.url());
  const auto w = backend->startup_warnings();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("allkeys-lru"), std::string::npos);
  steadypg::test::redis_process fine;
  EXPECT_TRUE(steadypg::redis::make_cache(fine.url())->startup_warnings().empty());
  EXPECT_THROW((void)steadypg::redis::make_cache("redis://:secret@127.0.0.1:notaport/0"), steadypg::config_error);
  try {
    (void)steadypg::redis::make_cache("redis://:secret@127.0.0.1:notaport/0");
  } catch (const steadypg::config_error& e) {
    EXPECT_EQ(std::string(e.what()).find("secret"), std::string::npos);
  }
}

// 32 threads on one cold key whose query takes 300 ms, started at `start_ms` (system clock).
int stampede(const std::string& redis_url, std::int64_t start_ms) {
  auto o = options(steadypg::redis::make_cache(redis_url));
  o.pool.max_size = 4;
  steadypg::client db(o);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  const auto start = std::chrono::system_clock::time_point(std::chrono::milliseconds(start_ms));
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&] {
      std::this_thread::sleep_until(start);
      try {
        if (db.query_cached("SELECT slow_counted(k) FROM stampede WHERE k = $1", 1).as<int>() != 1) ++wrong;
      } catch (const std::exception&) {
        ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  return wrong.load();
}

TEST_F(cache_db, sixty_four_threads_in_two_processes_on_one_cold_key_run_it_once) {
  steadypg::test::redis_process redis;
  steadypg::client admin(options(nullptr));
  const auto runs_before =
      admin.query_value<std::int64_t>("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM slow_runs");
  const auto start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            (std::chrono::system_clock::now() + 1500ms).time_since_epoch())
                            .count();
  std::vector<std::string> args{g_self, "--stampede-child", redis.url(), std::to_string(start_ms), dsn()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = -1;
  ASSERT_EQ(posix_spawn(&child, g_self.c_str(), nullptr, nullptr, argv.data(), environ), 0);
  const int wrong_here = stampede(redis.url(), start_ms);
  int status = 0;
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      FAIL() << "the second process did not finish";
    }
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(wrong_here, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto runs =
      admin.query_value<std::int64_t>("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM slow_runs") -
      runs_before;
  std::printf("stampede: 64 threads in 2 processes, the server ran the query %lld time(s)\n",
              static_cast<long long>(runs));
  EXPECT_EQ(runs, 1);
}

}  // namespace

int main(int argc, char** argv) {
  g_self = argv[0];
  if (argc == 7 && std::string_view(argv[1]) == "--notify-writer") {
    g_dsn = argv[2];
    return notify_writer(argv[3], argv[4], std::stoll(argv[5]), argv[6]);
  }
  if (argc == 5 && std::string_view(argv[1]) == "--stampede-child") {
    // The second process of the stampede test, on the parent's server.
    g_dsn = argv[4];
    return stampede(argv[2], std::stoll(argv[3])) == 0 ? 0 : 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  steadypg::testing::temp_cluster_options co;
  co.settings = {{"shared_preload_libraries", "pg_stat_statements"}, {"pg_stat_statements.track", "top"}};
  g_cluster = std::make_unique<steadypg::testing::temp_cluster>(co);
  g_dsn = g_cluster->dsn();
  const int rc = RUN_ALL_TESTS();
  g_cluster.reset();
  return rc;
}
