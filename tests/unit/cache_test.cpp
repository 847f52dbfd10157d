// The query cache's pure parts: rules, key, entry header, the byte-bounded LRU, and the
// cache's TTL / stale-while-revalidate / single-flight behaviour with a fake database and an
// injectable clock (docs/cache.md).

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <functional>
#include <thread>

#include "cache_rules.hpp"
#include "query_cache.hpp"
#include "sql_scan.hpp"
#include "steadypg/cache.hpp"

namespace {

using namespace std::chrono_literals;
using steadypg::cache_bypass_reason;
using steadypg::internal::statement_facts;

std::optional<cache_bypass_reason> text_rule(std::string_view sql) {
  statement_facts f;
  steadypg::internal::check_text(sql, f);
  return f.bypass;
}

TEST(cache_rules, text_rules_table) {
  struct row {
    const char* sql;
    std::optional<cache_bypass_reason> expected;
  };
  const row rows[] = {
      {"SELECT abs(-1)", std::nullopt},
      {"select * from t where id = $1", std::nullopt},
      {"WITH x AS (SELECT 1) SELECT * FROM x", std::nullopt},
      {"(SELECT 1)", std::nullopt},
      {"VALUES (1)", std::nullopt},
      {"SELECT 'for update' FROM t", std::nullopt},
      {"SELECT * FROM t FOR UPDATE", cache_bypass_reason::locking},
      {"SELECT * FROM t for no key update", cache_bypass_reason::locking},
      {"SELECT * FROM t FOR SHARE", cache_bypass_reason::locking},
      {"SELECT * FROM t FOR KEY SHARE", cache_bypass_reason::locking},
      {"SELECT current_date", cache_bypass_reason::volatile_function},
      {"SELECT CURRENT_TIMESTAMP", cache_bypass_reason::volatile_function},
      {"SELECT current_user", cache_bypass_reason::volatile_function},
      {"SELECT \"current_user\" FROM t", std::nullopt},
      {"INSERT INTO t VALUES (1) RETURNING id", cache_bypass_reason::not_a_query},
      {"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", cache_bypass_reason::not_a_query},
      {"SELECT 1; SELECT 2", cache_bypass_reason::not_a_query},
      {"SELECT 1;", std::nullopt},
      {"BEGIN", cache_bypass_reason::not_a_query},
      {"UPDATE t SET a = 1", cache_bypass_reason::not_a_query},
  };
  for (const auto& r : rows) EXPECT_EQ(text_rule(r.sql), r.expected) << r.sql;
}

TEST(cache_rules, text_collects_called_names) {
  statement_facts f;
  steadypg::internal::check_text("SELECT now(), abs(x), \"Quoted\"(1) FROM t WHERE random() > 0", f);
  EXPECT_EQ(f.functions, (std::vector<std::string>{"now", "abs", "random"}));
}

TEST(cache_rules, plan_rules) {
  {
    statement_facts f;
    steadypg::internal::check_plan(
        R"j([{"Plan": {"Node Type": "Seq Scan", "Relation Name": "accounts", "Schema": "public", )j"
        R"j("Output": ["aid", "nextval('s'::regclass)"]}}])j",
        f);
    EXPECT_FALSE(f.bypass);
    EXPECT_EQ(f.tables, std::vector<std::string>{"accounts"});
    EXPECT_NE(std::find(f.functions.begin(), f.functions.end(), "nextval"), f.functions.end());
  }
  {
    statement_facts f;
    steadypg::internal::check_plan(R"([{"Plan": {"Relation Name": "tmp", "Schema": "pg_temp_3"}}])", f);
    EXPECT_EQ(f.bypass, cache_bypass_reason::temp_table);
  }
  {
    statement_facts f;
    steadypg::internal::check_plan(R"([{"Plan": {"Node Type": "LockRows"}}])", f);
    EXPECT_EQ(f.bypass, cache_bypass_reason::locking);
  }
  {
    statement_facts f;
    steadypg::internal::check_plan(R"([{"Plan": {"Node Type": "ModifyTable"}}])", f);
    EXPECT_EQ(f.bypass, cache_bypass_reason::not_a_query);
  }
}

TEST(cache_rules, written_tables_table) {
  using steadypg::internal::written_tables;
  using v = std::vector<std::string>;
  EXPECT_EQ(written_tables("UPDATE accounts SET b = 1 WHERE id = 2"), v{"accounts"});
  EXPECT_EQ(written_tables("update public.Accounts set b = 1"), v{"accounts"});
  EXPECT_EQ(written_tables("UPDATE \"Mixed\" SET b = 1"), v{"Mixed"});
  EXPECT_EQ(written_tables("INSERT INTO a (x) SELECT x FROM b ON CONFLICT (x) DO UPDATE SET x = 1"), v{"a"});
  EXPECT_EQ(written_tables("DELETE FROM ONLY s.t WHERE true"), v{"t"});
  EXPECT_EQ(written_tables("TRUNCATE TABLE a, b.c"), (v{"a", "c"}));
  EXPECT_EQ(written_tables("MERGE INTO tgt USING src ON true WHEN MATCHED THEN DELETE"), v{"tgt"});
  EXPECT_EQ(written_tables("WITH d AS (DELETE FROM x RETURNING *) INSERT INTO y SELECT * FROM d"), (v{"x", "y"}));
  EXPECT_EQ(written_tables("COPY items FROM STDIN"), v{"items"});
  EXPECT_EQ(written_tables("COPY items TO STDOUT"), v{});
  EXPECT_EQ(written_tables("SELECT * FROM t FOR UPDATE"), v{});
  EXPECT_EQ(written_tables("SELECT 'UPDATE x SET y = 1'"), v{});
  EXPECT_EQ(written_tables("ALTER TABLE IF EXISTS t ADD COLUMN c int"), v{"t"});
}

TEST(cache_rules, normalize_collapses_space_and_comments_outside_strings) {
  using steadypg::internal::normalize_sql;
  EXPECT_EQ(normalize_sql("  SELECT\n  1 -- one\n , 'a  b'  /* c */ "), "SELECT 1 , 'a  b'");
  EXPECT_EQ(normalize_sql("SELECT  $x$ a  b $x$"), "SELECT $x$ a  b $x$");
}

TEST(cache_rules, key_covers_identity_text_and_typed_parameters) {
  using steadypg::internal::cache_key;
  const steadypg::param_ref one{"1", 1, 0, steadypg::oids::int4};
  const steadypg::param_ref one_text{"1", 1, 0, steadypg::oids::text};
  const steadypg::param_ref two{"2", 1, 0, steadypg::oids::int4};
  const steadypg::param_ref null{nullptr, 0, 0, steadypg::oids::int4};
  const steadypg::param_ref empty{"", 0, 0, steadypg::oids::int4};
  const char nul_bytes[] = {'a', '\0', 'b'};
  const steadypg::param_ref nul1{nul_bytes, 3, 1, steadypg::oids::bytea};
  const steadypg::param_ref nul2{nul_bytes, 2, 1, steadypg::oids::bytea};
  auto k = [&](std::string_view id, std::string_view sql, std::initializer_list<steadypg::param_ref> p) {
    return cache_key(id, sql, std::span<const steadypg::param_ref>(p.begin(), p.size()));
  };
  EXPECT_EQ(k("db\nu\npublic", "SELECT $1", {one}), k("db\nu\npublic", "SELECT $1", {one}));
  EXPECT_NE(k("db\nu\npublic", "SELECT $1", {one}), k("db\nu2\npublic", "SELECT $1", {one}));
  EXPECT_NE(k("db\nu\npublic", "SELECT $1", {one}), k("db\nu\ns2", "SELECT $1", {one}));
  EXPECT_NE(k("i", "SELECT $1", {one}), k("i", "SELECT $1", {two}));
  EXPECT_NE(k("i", "SELECT $1", {one}), k("i", "SELECT $1", {one_text}));
  EXPECT_NE(k("i", "SELECT $1", {null}), k("i", "SELECT $1", {empty}));
  EXPECT_NE(k("i", "SELECT $1", {nul1}), k("i", "SELECT $1", {nul2}));
  EXPECT_NE(k("i", "SELECT 1", {}), k("i", "SELECT 2", {}));
}

TEST(cache_rules, entry_header_round_trip_and_judgement) {
  using namespace steadypg::internal;
  entry_header h{1000, 1500, {3, 0, 7}};
  const std::string bytes = encode_entry(h, std::string("pay\0load", 8));
  auto d = decode_entry(bytes);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->first.fresh_until_ms, 1000);
  EXPECT_EQ(d->first.versions, (std::vector<std::uint64_t>{3, 0, 7}));
  EXPECT_EQ(d->second, std::string_view("pay\0load", 8));
  EXPECT_FALSE(decode_entry("junk"));
  EXPECT_FALSE(decode_entry(bytes.substr(0, 30)));
  const std::vector<std::uint64_t> same{3, 0, 7}, bumped{3, 1, 7};
  EXPECT_EQ(judge_entry(h, 999, same), entry_state::fresh);
  EXPECT_EQ(judge_entry(h, 1000, same), entry_state::stale);
  EXPECT_EQ(judge_entry(h, 1499, same), entry_state::stale);
  EXPECT_EQ(judge_entry(h, 1500, same), entry_state::dead);
  EXPECT_EQ(judge_entry(h, 10, bumped), entry_state::dead);
}

TEST(local_cache, stays_within_its_byte_bound_and_evicts_least_recently_used) {
  steadypg::local_cache c(4096);
  std::vector<std::uint64_t> v;
  const std::string value(1000, 'x');
  c.put("a", value, 60s);
  c.put("b", value, 60s);
  c.put("c", value, 60s);
  EXPECT_TRUE(c.get("a", {}, v));  // a is now the most recently used
  c.put("d", value, 60s);          // evicts b
  EXPECT_LE(c.bytes(), 4096u);
  EXPECT_TRUE(c.get("a", {}, v));
  EXPECT_FALSE(c.get("b", {}, v));
  EXPECT_TRUE(c.get("d", {}, v));
  c.put("huge", std::string(5000, 'y'), 60s);  // larger than the bound: not stored, nothing evicted
  EXPECT_FALSE(c.get("huge", {}, v));
  EXPECT_TRUE(c.get("a", {}, v));
  EXPECT_THROW(steadypg::local_cache(10), steadypg::config_error);
}

TEST(local_cache, expires_by_its_clock_and_versions_tags) {
  auto now = std::chrono::steady_clock::time_point{} + 1h;
  steadypg::local_cache c(1 << 20, [&] { return now; });
  std::vector<std::uint64_t> v;
  const std::vector<std::string> tags{"table:a", "x"};
  c.put("k", "v", 100ms);
  ASSERT_TRUE(c.get("k", tags, v));
  EXPECT_EQ(v, (std::vector<std::uint64_t>{0, 0}));
  c.bump_tags(std::vector<std::string>{"x"});
  c.tag_versions(tags, v);
  EXPECT_EQ(v, (std::vector<std::uint64_t>{0, 1}));
  now += 100ms;
  EXPECT_FALSE(c.get("k", tags, v));
  EXPECT_EQ(c.entries(), 0u);
}

// A result of one text column with `value`, built the way libpq builds one.
steadypg::result one_value(const std::string& value) {
  PGresult* r = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
  PGresAttDesc a{const_cast<char*>("v"), 0, 0, 0, steadypg::oids::text, -1, -1};
  PQsetResultAttrs(r, 1, &a);
  PQsetvalue(r, 0, 0, const_cast<char*>(value.data()), static_cast<int>(value.size()));
  return steadypg::result(r);
}

// A fake database: identity, an empty plan, no volatile functions, and a counter for the query.
struct fake_db {
  std::atomic<int> runs{0};
  std::chrono::milliseconds delay{0};
  std::string fail_with;  // a SQLSTATE: the query fails with it
  steadypg::internal::query_cache::runner runner() {
    return [this](std::string_view sql, std::span<const steadypg::param_ref>, bool) -> steadypg::result {
      if (sql.starts_with("SELECT current_database()")) {
        PGresult* r = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
        PGresAttDesc a[3] = {{const_cast<char*>("d"), 0, 0, 0, 25, -1, -1},
                             {const_cast<char*>("u"), 0, 0, 0, 25, -1, -1},
                             {const_cast<char*>("s"), 0, 0, 0, 25, -1, -1}};
        PQsetResultAttrs(r, 3, a);
        for (int i = 0; i < 3; ++i) PQsetvalue(r, 0, i, const_cast<char*>("x"), 1);
        return steadypg::result(r);
      }
      if (sql.starts_with("EXPLAIN")) return one_value(R"([{"Plan": {"Relation Name": "t", "Schema": "public"}}])");
      if (sql.find("pg_proc") != std::string_view::npos) return one_value("0");
      std::this_thread::sleep_for(delay);
      if (!fail_with.empty()) {
        ++runs;
        steadypg::server_error_fields f;
        f.severity = "ERROR";
        f.sqlstate = fail_with;
        f.message = "failed run " + std::to_string(runs.load());
        f.hint = "a hint";
        throw steadypg::sql_error(f.message, steadypg::failure_kind::server_error, steadypg::outcome::fatal, f);
      }
      return one_value(std::to_string(++runs));
    };
  }
};

struct cache_fixture : ::testing::Test {
  std::chrono::system_clock::time_point now = std::chrono::system_clock::time_point{} + 1000h;
  fake_db db;
  std::unique_ptr<steadypg::internal::query_cache> cache;
  void make(std::shared_ptr<steadypg::cache_backend> backend = std::make_shared<steadypg::local_cache>()) {
    steadypg::cache_options o;
    o.backend = std::move(backend);
    o.now = [this] { return now; };
    cache = std::make_unique<steadypg::internal::query_cache>(o, nullptr, db.runner());
  }
  std::string read(const steadypg::cache_policy& p) {
    return std::string(cache->fetch("SELECT v FROM t", {}, p)[0][0].text());
  }
};

TEST_F(cache_fixture, ttl_expires_by_the_injected_clock) {
  make();
  const steadypg::cache_policy p{.ttl = 1000ms};
  EXPECT_EQ(read(p), "1");
  EXPECT_EQ(read(p), "1");
  now += 999ms;
  EXPECT_EQ(read(p), "1");
  now += 1ms;
  EXPECT_EQ(read(p), "2");
  const auto s = cache->stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_DOUBLE_EQ(s.hit_ratio(), 0.5);
}

TEST_F(cache_fixture, stale_while_revalidate_serves_the_old_value_while_one_refresh_runs) {
  make();
  const steadypg::cache_policy p{.ttl = 1000ms, .stale_while_revalidate = 5000ms};
  EXPECT_EQ(read(p), "1");
  now += 1500ms;
  db.delay = 200ms;
  EXPECT_EQ(read(p), "1");  // stale, refresh started
  EXPECT_EQ(read(p), "1");  // still stale: the one refresh has not finished
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (db.runs < 2 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(db.runs.load(), 2);  // one refresh for two stale reads
  EXPECT_EQ(read(p), "2");
  EXPECT_EQ(cache->stats().stale, 2u);
  now += 7000ms;  // past ttl + stale window: a plain miss
  db.delay = 0ms;
  EXPECT_EQ(read(p), "3");
}

TEST_F(cache_fixture, identical_concurrent_misses_run_once) {
  make();
  db.delay = 300ms;
  std::vector<std::thread> threads;
  std::atomic<int> ones{0};
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&] {
      if (read({}) == "1") ++ones;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(db.runs.load(), 1);
  EXPECT_EQ(ones.load(), 32);
}

TEST_F(cache_fixture, tags_invalidate_and_table_names_map_to_tags) {
  make();
  EXPECT_EQ(read({}), "1");
  EXPECT_EQ(read({}), "1");
  cache->invalidate_written("UPDATE public.t SET v = 2");
  EXPECT_EQ(read({}), "2");
  cache->invalidate_written("UPDATE other SET v = 2");
  EXPECT_EQ(read({}), "2");
  const std::vector<std::string> mine{"mine"};
  EXPECT_EQ(read({.tags = mine}), "3");  // other tags: another entry
  cache->invalidate_tags(mine);
  EXPECT_EQ(read({.tags = mine}), "4");
  cache->invalidate_all();
  EXPECT_EQ(read({}), "5");
}

TEST_F(cache_fixture, negative_ttl_remembers_errors_the_data_decides_and_nothing_else) {
  make();
  db.fail_with = "22012";  // division_by_zero
  auto failure = [&](const steadypg::cache_policy& p) {
    try {
      (void)read(p);
    } catch (const steadypg::sql_error& e) {
      EXPECT_EQ(e.sqlstate(), db.fail_with);
      EXPECT_EQ(e.server().hint, "a hint");
      return e.server().message;
    }
    ADD_FAILURE() << "no error";
    return std::string();
  };
  EXPECT_EQ(failure({}), "failed run 1");  // off by default: every call runs
  EXPECT_EQ(failure({}), "failed run 2");
  const steadypg::cache_policy p{.negative_ttl = 500ms};
  EXPECT_EQ(failure(p), "failed run 3");
  EXPECT_EQ(failure(p), "failed run 3");  // remembered
  EXPECT_EQ(cache->stats().negative_hits, 1u);
  now += 500ms;
  EXPECT_EQ(failure(p), "failed run 4");  // expired
  cache->invalidate_written("UPDATE t SET v = 1");
  EXPECT_EQ(failure(p), "failed run 5");  // invalidated like a result
  db.fail_with.clear();
  now += 500ms;
  EXPECT_EQ(read(p), "6");
  for (const char* transient : {"40001", "40P01", "57014", "53300", "55P03", "42501"}) {
    db.fail_with = transient;
    const int before = db.runs;
    cache->invalidate_all();
    (void)failure(p);
    (void)failure(p);
    EXPECT_EQ(db.runs, before + 2) << transient << " must not be remembered";
  }
  EXPECT_THROW((steadypg::cache_policy{.negative_ttl = -1ms}.validate()), steadypg::config_error);
}

TEST(cache_rules, errors_round_trip_with_every_field) {
  steadypg::server_error_fields f{"ERROR", "P0001", "boom", "detail", "hint", 7, "iq", "ctx", "s", "t", "c", "d", "k"};
  f.message.push_back('\0');
  const auto g = steadypg::internal::deserialize_error(steadypg::internal::serialize_error(f));
  EXPECT_EQ(g.sqlstate, f.sqlstate);
  EXPECT_EQ(g.message, f.message);
  EXPECT_EQ(g.position, 7);
  EXPECT_EQ(g.constraint, "k");
  EXPECT_THROW((void)steadypg::internal::deserialize_error("SPE1\x05"), steadypg::cache_unavailable);
  EXPECT_TRUE(steadypg::internal::negative_cacheable("22012"));
  EXPECT_TRUE(steadypg::internal::negative_cacheable("P0001"));
  EXPECT_FALSE(steadypg::internal::negative_cacheable("40001"));
  EXPECT_FALSE(steadypg::internal::negative_cacheable("08006"));
}

// A backend that always fails: the cache answers from the database and counts errors.
class broken_backend final : public steadypg::cache_backend {
 public:
  std::optional<std::string> get(const std::string&, std::span<const std::string>,
                                 std::vector<std::uint64_t>&) override {
    throw steadypg::cache_unavailable("down");
  }
  void tag_versions(std::span<const std::string>, std::vector<std::uint64_t>&) override {
    throw steadypg::cache_unavailable("down");
  }
  void put(const std::string&, std::string, std::chrono::milliseconds) override {
    throw steadypg::cache_unavailable("down");
  }
  void bump_tags(std::span<const std::string>) override { throw steadypg::cache_unavailable("down"); }
  void clear() override {}
  [[nodiscard]] std::string_view name() const noexcept override { return "broken"; }
};

TEST_F(cache_fixture, a_failing_backend_never_fails_the_call) {
  make(std::make_shared<broken_backend>());
  EXPECT_EQ(read({}), "1");
  EXPECT_EQ(read({}), "2");
  EXPECT_EQ(cache->stats().errors, 2u);
  EXPECT_NO_THROW(cache->invalidate_written("DELETE FROM t"));
}

// A shared level for the two-level cache: a local_cache behind a counter, which can fail and
// can run something in the middle of a get (an invalidation racing the copy).
class counting_shared final : public steadypg::cache_backend {
 public:
  steadypg::local_cache store{1 << 20};
  std::atomic<int> gets{0};
  std::atomic<bool> down{false};
  std::function<void()> after_get;  // run once, when armed, after the value was read
  bool armed = false;
  std::optional<std::string> get(const std::string& key, std::span<const std::string> tags,
                                 std::vector<std::uint64_t>& versions) override {
    ++gets;
    if (down) throw steadypg::cache_unavailable("down");
    auto v = store.get(key, tags, versions);
    if (armed) {
      armed = false;
      after_get();
    }
    return v;
  }
  void tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) override {
    if (down) throw steadypg::cache_unavailable("down");
    store.tag_versions(tags, versions);
  }
  void put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) override {
    if (down) throw steadypg::cache_unavailable("down");
    store.put(key, std::move(value), lifetime);
  }
  void bump_tags(std::span<const std::string> tags) override {
    if (down) throw steadypg::cache_unavailable("down");
    store.bump_tags(tags);
  }
  void clear() override { store.clear(); }
  [[nodiscard]] bool shared() const noexcept override { return true; }
  [[nodiscard]] std::string_view name() const noexcept override { return "redis"; }
};

struct tiered_fixture : cache_fixture {
  std::chrono::steady_clock::time_point local_now = std::chrono::steady_clock::time_point{} + 1h;
  std::shared_ptr<counting_shared> shared = std::make_shared<counting_shared>();
  std::shared_ptr<steadypg::tiered_cache> tiered;
  void SetUp() override {
    tiered = std::make_shared<steadypg::tiered_cache>(shared, 1 << 20, 1000ms, [this] { return local_now; });
    make(tiered);
  }
};

TEST_F(tiered_fixture, a_local_copy_answers_without_reaching_the_shared_level) {
  EXPECT_EQ(tiered->name(), "local+redis");
  EXPECT_EQ(read({}), "1");  // miss: the shared level is asked, then stored in
  const int after_miss = shared->gets;
  EXPECT_EQ(read({}), "1");  // copied from the shared level
  EXPECT_EQ(shared->gets, after_miss + 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(read({}), "1");
  EXPECT_EQ(shared->gets, after_miss + 1);  // all local
  EXPECT_EQ(tiered->local_hits(), 5u);
  EXPECT_EQ(cache->stats().hits, 6u);
  EXPECT_GT(tiered->bytes(), 0u);
}

TEST_F(tiered_fixture, own_invalidations_are_seen_at_once_and_other_processes_within_local_ttl) {
  EXPECT_EQ(read({}), "1");
  EXPECT_EQ(read({}), "1");
  cache->invalidate_written("UPDATE t SET v = 0");  // this process: local and shared levels
  EXPECT_EQ(read({}), "2");
  EXPECT_EQ(read({}), "2");
  EXPECT_EQ(read({}), "2");
  // Another process's write reaches only the shared level (no NOTIFY channel here): the local
  // copy may answer until local_ttl, and not after.
  shared->store.bump_tags(std::vector<std::string>{"table:t"});
  EXPECT_EQ(read({}), "2");
  local_now += 1000ms;
  EXPECT_EQ(read({}), "3");
}

TEST_F(tiered_fixture, an_invalidation_racing_the_copy_leaves_it_invalid) {
  EXPECT_EQ(read({}), "1");
  // A write lands after the shared level answered and before the copy is kept.
  shared->after_get = [this] { tiered->bump_tags(std::vector<std::string>{"table:t"}); };
  shared->armed = true;
  EXPECT_EQ(read({}), "1");  // the read began before the write: the old value is a fair answer
  EXPECT_EQ(read({}), "2");  // but the copy kept meanwhile is not trusted
  const int gets = shared->gets;
  EXPECT_EQ(read({}), "2");
  EXPECT_EQ(read({}), "2");
  EXPECT_EQ(shared->gets, gets + 1);  // copied once, then local
}

TEST_F(tiered_fixture, a_refreshed_entry_replaces_the_local_copy) {
  const steadypg::cache_policy p{.ttl = 1000ms};
  EXPECT_EQ(read(p), "1");
  EXPECT_EQ(read(p), "1");
  now += 1000ms;  // expired by the entry's own ttl (judged on every local hit)
  EXPECT_EQ(read(p), "2");
  EXPECT_EQ(read(p), "2");
  EXPECT_EQ(read(p), "2");
}

TEST_F(tiered_fixture, a_shared_level_outage_keeps_valid_local_copies_and_never_fails_a_call) {
  EXPECT_EQ(read({}), "1");
  EXPECT_EQ(read({}), "1");
  shared->down = true;
  EXPECT_EQ(read({}), "1");  // the local copy is still valid
  const std::vector<std::string> mine{"mine"};
  EXPECT_EQ(read({.tags = mine}), "2");  // no copy: the database answers
  EXPECT_EQ(read({.tags = mine}), "3");
  EXPECT_GE(cache->stats().errors, 2u);
  EXPECT_NO_THROW(cache->invalidate_written("UPDATE t SET v = 0"));  // the local level is bumped anyway
  EXPECT_EQ(read({}), "4");
  shared->down = false;
  EXPECT_EQ(read({}), "5");
  EXPECT_EQ(read({}), "5");
}

TEST_F(cache_fixture, an_invalidation_the_backend_missed_is_delivered_before_it_is_read_again) {
  auto shared = std::make_shared<counting_shared>();
  make(shared);
  EXPECT_EQ(read({}), "1");
  EXPECT_EQ(read({}), "1");
  shared->down = true;
  EXPECT_NO_THROW(cache->invalidate_written("UPDATE t SET v = 0"));  // committed; the bump is lost
  EXPECT_EQ(read({}), "2");                                          // the database answers
  shared->down = false;
  const int gets = shared->gets;
  EXPECT_EQ(read({}), "3");  // the old entry is never served: the bump went first
  EXPECT_EQ(read({}), "3");
  EXPECT_EQ(shared->gets, gets + 2);
  EXPECT_EQ(cache->stats().hits, 2u);
}

TEST(tiered_cache, validates_its_settings) {
  EXPECT_THROW(steadypg::tiered_cache(nullptr), steadypg::config_error);
  EXPECT_THROW(steadypg::tiered_cache(std::make_shared<counting_shared>(), 1 << 20, 0ms), steadypg::config_error);
  steadypg::cache_options o;
  o.url = "local+redis://127.0.0.1:6390/0";
  EXPECT_NO_THROW(o.validate());
  EXPECT_THROW(o.check_backend(), steadypg::config_error);
  o.backend = std::make_shared<counting_shared>();
  EXPECT_NO_THROW(o.check_backend());
  o.local_ttl = 0ms;
  EXPECT_THROW(o.validate(), steadypg::config_error);
}

TEST(cache_policy, validate_names_the_field) {
  EXPECT_THROW((steadypg::cache_policy{.ttl = 0ms}.validate()), steadypg::config_error);
  EXPECT_THROW((steadypg::cache_policy{.stale_while_revalidate = -1ms}.validate()), steadypg::config_error);
  EXPECT_THROW((steadypg::cache_policy{.max_result_bytes = 0}.validate()), steadypg::config_error);
  steadypg::cache_options o;
  o.url = "memcached://x";
  EXPECT_THROW(o.validate(), steadypg::config_error);
  o.url = "redis://127.0.0.1:6390/0";
  EXPECT_NO_THROW(o.validate());
  EXPECT_THROW(o.check_backend(), steadypg::config_error);
}

}  // namespace
