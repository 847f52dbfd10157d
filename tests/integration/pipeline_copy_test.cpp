#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::test::cluster_environment;

using steadypg::test::connect;

TEST(pipeline, results_arrive_in_order) {
  auto c = connect();
  pipeline p(c);
  EXPECT_EQ(c.status(), connection_status::active);
  EXPECT_THROW((void)c.execute("SELECT 1"), usage_error);
  for (int i = 0; i < 100; ++i) p.send("SELECT $1::int * 2", i);
  p.sync();
  EXPECT_EQ(p.pending(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(p.get_result().as<int>(), i * 2);
  EXPECT_EQ(p.pending(), 0u);
  p.finish();
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 9"), 9);
}

TEST(pipeline, errors_are_isolated_per_sync_group) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE pu (id int PRIMARY KEY)");
  {
    pipeline p(c);
    for (int i : {1, 2, 1, 3}) {
      p.send("INSERT INTO pu VALUES ($1)", i);
      p.sync();  // each statement stands alone
    }
    EXPECT_NO_THROW((void)p.get_result());
    EXPECT_NO_THROW((void)p.get_result());
    EXPECT_THROW((void)p.get_result(), unique_violation);
    EXPECT_NO_THROW((void)p.get_result());
  }
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM pu"), 3);
  {
    pipeline p(c);
    p.send("INSERT INTO pu VALUES ($1)", 10);
    p.send("INSERT INTO pu VALUES ($1)", 1);   // fails
    p.send("INSERT INTO pu VALUES ($1)", 11);  // aborted with it
    p.sync();
    EXPECT_NO_THROW((void)p.get_result());
    EXPECT_THROW((void)p.get_result(), unique_violation);
    EXPECT_THROW((void)p.get_result(), pipeline_aborted);
  }
  // One sync group is one implicit transaction: all three rolled back.
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM pu WHERE id >= 10"), 0);
  EXPECT_EQ(c.status(), connection_status::idle);
}

TEST(pipeline, results_without_sync_and_destructor_drains) {
  auto c = connect();
  {
    pipeline p(c);
    p.send("SELECT 1");
    EXPECT_EQ(p.get_result().as<int>(), 1);  // a flush request is sent for us
    p.send("SELECT 2");
    p.send("SELECT pg_sleep(0.05)");
    // Leaving with results outstanding: the destructor collects them.
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 3"), 3);
}

TEST(pipeline, many_statements_do_not_deadlock) {
  auto c = connect();
  pipeline p(c);
  const std::string padding(2000, 'p');
  constexpr int n = 20000;
  for (int i = 0; i < n; ++i) p.send("SELECT $1::int, $2::text", i, padding);
  p.sync();
  int64_t sum = 0;
  for (int i = 0; i < n; ++i) sum += p.get_result()[0][0].as<int64_t>();
  EXPECT_EQ(sum, int64_t{n} * (n - 1) / 2);
}

TEST(copy, round_trips_awkward_values) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE ck (id int, t text, b bytea, n int)");
  const std::vector<std::string> awkward{"tab\there", "new\nline", "cr\rreturn",  "back\\slash",
                                         "\\N",       "quote'\"",  "comma,semi;", "unicode ✓ 日本",
                                         "",          "\\.",       "end\\"};
  {
    copy_in cp(c, "ck", {"id", "t", "b", "n"});
    for (std::size_t i = 0; i < awkward.size(); ++i) {
      cp.write_row(static_cast<int>(i), awkward[i], bytes{std::byte{0}, std::byte{'\t'}, std::byte{0xff}},
                   std::optional<int>{});
    }
    EXPECT_EQ(cp.rows_written(), awkward.size());
    EXPECT_EQ(cp.finish(), awkward.size());
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  auto rs = c.execute("SELECT id, t, b, n FROM ck ORDER BY id");
  ASSERT_EQ(rs.size(), awkward.size());
  for (auto [id, t, b, n] : rs.rows<int, std::string, bytes, std::optional<int>>()) {
    EXPECT_EQ(t, awkward[static_cast<std::size_t>(id)]);
    EXPECT_EQ(b, (bytes{std::byte{0}, std::byte{'\t'}, std::byte{0xff}}));
    EXPECT_EQ(n, std::nullopt);
  }
}

TEST(copy, csv_distinguishes_empty_from_null) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cc (a text, b text)");
  {
    copy_in cp(c, "cc", {"a", "b"}, copy_format::csv);
    cp.write_row(std::string(""), std::optional<std::string>{});
    cp.write_row(std::string("x,\"y\"\nz"), std::string("w"));
    EXPECT_EQ(cp.finish(), 2u);
  }
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cc WHERE a = '' AND b IS NULL"), 1);
  EXPECT_EQ(c.query_value<std::string>("SELECT a FROM cc WHERE b = 'w'"), "x,\"y\"\nz");
}

TEST(copy, bad_row_aborts_everything_with_line_number) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cb (id int PRIMARY KEY)");
  copy_in cp(c, "cb");
  cp.write_raw("1\n2\nthree\n4\n");
  try {
    (void)cp.finish();
    FAIL();
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "22P02");
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cb"), 0);
}

TEST(copy, destructor_aborts_and_loads_nothing) {
  auto c = connect();
  (void)c.execute("CREATE TEMP TABLE cd (id int)");
  {
    copy_in cp(c, "cd");
    for (int i = 0; i < 100000; ++i) cp.write_row(i);
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM cd"), 0);
  copy_in cp(c, "cd");
  for (int i = 0; i < 100000; ++i) cp.write_row(i);
  EXPECT_EQ(cp.finish(), 100000u);
  EXPECT_EQ(c.query_value<int64_t>("SELECT sum(id) FROM cd"), int64_t{100000} * 99999 / 2);
}

TEST(copy, unknown_table_is_a_clear_error) {
  auto c = connect();
  EXPECT_THROW(copy_in(c, "no_such_table"), sql_error);
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);
}

// ---- COPY … TO STDOUT ----

namespace {

std::string copy_all(connection& c, const copy_source& source, const copy_options& options = {},
                     std::uint64_t* rows = nullptr) {
  copy_out out(c, source, options);
  std::string data;
  while (auto chunk = out.next()) data.append(*chunk);
  if (rows) *rows = out.rows();
  return data;
}

// Peak resident set of this process, in KiB; reset_peak_rss() starts it again from the current
// resident set (so that an earlier test's peak cannot hide this one's).
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}
long current_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

const std::vector<std::string> awkward_text{"tab\there", "new\nline", "cr\rreturn",  "back\\slash",
                                            "\\N",       "quote'\"",  "comma,semi;", "unicode ✓ 日本",
                                            "",          "\\.",       "end\\",       "  spaced  ",
                                            "\"",        "NULL"};

void load_awkward(connection& c, const std::string& table) {
  (void)c.execute(fmt::format("CREATE TEMP TABLE {} (id int, t text, b bytea, n text)", table));
  copy_in cp(c, table, {"id", "t", "b", "n"});
  for (std::size_t i = 0; i < awkward_text.size(); ++i) {
    const auto id = static_cast<int>(i);
    cp.write_row(id, awkward_text[i], bytes{std::byte{0}, std::byte{'\t'}, std::byte{'\n'}, std::byte{0xff}},
                 i % 2 ? std::optional<std::string>{} : std::optional<std::string>{awkward_text[i]});
  }
  cp.write_row(100, std::optional<std::string>{}, std::optional<bytes>{}, std::string(""));
  (void)cp.finish();
}

}  // namespace

TEST(copy_out, round_trips_what_copy_in_loads_byte_for_byte) {
  auto c = connect();
  load_awkward(c, "ro");
  const std::uint64_t n = awkward_text.size() + 1;
  const std::vector<std::string> cols{"id", "t", "b", "n"};
  int round = 0;
  for (auto format : {copy_format::text, copy_format::csv}) {
    for (bool header : {false, true}) {
      SCOPED_TRACE(fmt::format("{} header={}", format == copy_format::csv ? "csv" : "text", header));
      const copy_options o{format, header};
      std::uint64_t rows = 0;
      const std::string first = copy_all(c, copy_source::table("ro", cols), o, &rows);
      EXPECT_EQ(rows, n);
      if (header) {
        EXPECT_EQ(first.substr(0, 9), format == copy_format::csv ? "id,t,b,n\n" : "id\tt\tb\tn\n");
      }
      // Load it again: the same values, and the same bytes when copied out once more.
      const std::string again = fmt::format("ro_{}", ++round);
      (void)c.execute(fmt::format("CREATE TEMP TABLE {} (id int, t text, b bytea, n text)", again));
      copy_in in(c, again, cols, format, header);
      in.write_raw(first);
      EXPECT_EQ(in.finish(), n);
      EXPECT_EQ(copy_all(c, copy_source::table(again, cols), o), first);
      EXPECT_EQ(c.query_value<int64_t>(fmt::format("SELECT count(*) FROM (SELECT * FROM ro EXCEPT SELECT * FROM {}) d "
                                                   "",
                                                   again)),
                0);
      EXPECT_EQ(c.query_value<int64_t>(
                    fmt::format("SELECT count(*) FROM (SELECT * FROM {} EXCEPT SELECT * FROM ro) d", again)),
                0);
      EXPECT_EQ(c.query_value<int64_t>(fmt::format("SELECT count(*) FROM {} WHERE t IS NULL AND n = ''", again)), 1);
      EXPECT_EQ(c.status(), connection_status::idle);
    }
  }
  // Some columns, in the order asked for.
  EXPECT_EQ(copy_all(c, copy_source::table("ro", {"n", "id"}), {copy_format::csv, false}).substr(0, 11),
            "tab\there,0\n");
}

TEST(copy_out, a_query_is_a_source) {
  auto c = connect();
  std::uint64_t rows = 0;
  EXPECT_EQ(copy_all(c,
                     copy_source::query("SELECT g AS id, 'x' || g AS name, NULL::int AS n FROM generate_series(1, 3) g"
                                        " -- a trailing comment\n ; "),
                     {}, &rows),
            "1\tx1\t\\N\n2\tx2\t\\N\n3\tx3\t\\N\n");
  EXPECT_EQ(rows, 3u);
  EXPECT_EQ(copy_all(c, copy_source::query("VALUES (1, 'a,b'), (2, '')"), {copy_format::csv, true}),
            "column1,column2\n1,\"a,b\"\n2,\"\"\n");
  EXPECT_EQ(copy_all(c, copy_source::query("SELECT 1 WHERE false"), {}, &rows), "");
  EXPECT_EQ(rows, 0u);
  EXPECT_EQ(c.status(), connection_status::idle);
}

TEST(copy_out, a_large_table_streams_in_bounded_memory) {
  auto c = connect();
  const int n = sanitized ? 200000 : 1500000;
  (void)c.execute(fmt::format(
      "CREATE TEMP TABLE big AS SELECT g AS id, md5(g::text) AS a, repeat('x', 40) AS b FROM generate_series(1, {}) g",
      n));
  const bool reset = reset_peak_rss();
  const long before = reset ? current_rss_kib() : peak_rss_kib();
  copy_out out(c, copy_source::table("big"));
  std::uint64_t bytes = 0, chunks = 0;
  std::size_t largest = 0;
  while (auto chunk = out.next()) {
    bytes += chunk->size();
    largest = std::max(largest, chunk->size());
    ++chunks;
  }
  const long after = peak_rss_kib();
  EXPECT_EQ(out.rows(), static_cast<std::uint64_t>(n));
  EXPECT_EQ(out.bytes_read(), bytes);
  EXPECT_GT(bytes, static_cast<std::uint64_t>(n) * 80) << "every row came through";
  std::printf(
      "[ figures  ] COPY TO of %d rows (%.1f MiB in %llu chunks, largest %zu bytes): peak RSS %ld KiB -> %ld "
      "KiB (+%ld KiB)%s\n",
      n, static_cast<double>(bytes) / (1 << 20), static_cast<unsigned long long>(chunks), largest, before, after,
      after - before, reset ? "" : " (peak not resettable)");
  if (!sanitized) {
    EXPECT_LT(after - before, 16 * 1024) << "memory does not grow with the result";
  }
  EXPECT_EQ(c.status(), connection_status::idle);
}

TEST(copy_out, errors_are_sql_errors_and_the_connection_stays_usable) {
  auto c = connect();
  EXPECT_THROW(copy_out(c, copy_source::query("SELECT nope FROM nowhere")), sql_error);
  EXPECT_EQ(c.status(), connection_status::idle);
  try {
    copy_out out(c, copy_source::table("no_such_table"));
    FAIL();
  } catch (const sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "42P01");
    EXPECT_FALSE(e.poisons_connection());
  }
  EXPECT_EQ(c.query_value<int>("SELECT 1"), 1);
  // An error after rows were sent: once data was handed out the error is final.
  {
    copy_out out(c, copy_source::query("SELECT 1 / (g - 50000) FROM generate_series(1, 100000) g"));
    try {
      while (out.next()) {
      }
      FAIL();
    } catch (const sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "22012");
      EXPECT_GT(out.bytes_read(), 0u);
      EXPECT_EQ(e.outcome(), outcome::fatal) << "the caller already has part of the data";
    }
    EXPECT_FALSE(out.active());
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 2"), 2);
  // A NUL byte is a usage error, before any request.
  const auto requests = c.request_count();
  EXPECT_THROW(copy_out(c, copy_source::query(std::string("SELECT 1\0; DROP TABLE x", 23))), usage_error);
  EXPECT_THROW(copy_out(c, copy_source::table(std::string("ro\0x", 4))), usage_error);
  EXPECT_THROW(copy_out(c, copy_source::table("pg_class", {std::string("oid\0", 4)})), usage_error);
  EXPECT_EQ(c.request_count(), requests);
  // COPY TO through execute() is refused without leaving COPY mode behind.
  EXPECT_THROW((void)c.execute("COPY (SELECT 1) TO STDOUT"), usage_error);
  EXPECT_EQ(c.status(), connection_status::idle);
}

TEST(copy_out, abandoning_mid_stream_leaves_the_connection_idle) {
  auto c = connect();
  const auto source = copy_source::query("SELECT g, repeat('y', 100) FROM generate_series(1, 3000000) g");
  const auto pid = c.backend_pid();
  {
    copy_out out(c, source);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(out.next());
    EXPECT_EQ(c.status(), connection_status::active) << "never idle while libpq is in COPY mode";
    EXPECT_THROW((void)c.execute("SELECT 1"), usage_error);
  }  // destructor: cancel and drain
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int>("SELECT 3"), 3);
  // A sink that throws: the exception propagates and the COPY is abandoned.
  {
    copy_out out(c, source);
    int seen = 0;
    EXPECT_THROW((void)out.read_all([&](std::string_view) {
      if (++seen == 5) throw std::runtime_error("disk full");
    }),
                 std::runtime_error);
    EXPECT_FALSE(out.active());
    EXPECT_EQ(c.status(), connection_status::idle);
  }
  {
    copy_out out(c, source);
    ASSERT_TRUE(out.next());
    out.abort();
    EXPECT_FALSE(out.next());
  }
  EXPECT_EQ(c.status(), connection_status::idle);
  EXPECT_EQ(c.query_value<int64_t>("SELECT count(*) FROM generate_series(1, 10)"), 10);
  EXPECT_EQ(c.backend_pid(), pid) << "the same session, not a new one";
}

TEST(copy_out, a_backend_terminated_mid_stream_is_a_connection_error) {
  auto c = connect();
  auto killer = connect();
  copy_out out(c, copy_source::query("SELECT g, repeat('z', 100) FROM generate_series(1, 20000000) g"));
  ASSERT_TRUE(out.next());
  ASSERT_TRUE(killer.query_value<bool>("SELECT pg_terminate_backend($1)", c.backend_pid()));
  try {
    while (out.next()) {
    }
    FAIL() << "the COPY ended normally";
  } catch (const connection_error& e) {
    EXPECT_TRUE(e.poisons_connection());
    EXPECT_EQ(e.outcome(), outcome::fatal);
  }
  EXPECT_FALSE(out.active());
  EXPECT_TRUE(c.is_broken());
  EXPECT_THROW((void)c.execute("SELECT 1"), connection_error);
}

TEST(copy_out, a_silent_server_times_out_instead_of_hanging) {
  connection_options o;
  o.dsn = cluster_environment::dsn();
  o.query_timeout = std::chrono::milliseconds(300);
  connection c(o);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_THROW(
      {
        copy_out out(c,
                     copy_source::query(
                         "SELECT g, pg_sleep(CASE WHEN g = 2000 THEN 60 ELSE 0 END) FROM generate_series(1, 3000) g"));
        while (out.next()) {
        }
      },
      timeout_error);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_NE(c.status(), connection_status::active) << "idle again or closed, never left in COPY mode";
}

TEST(copy_out, client_copy_to_streams_and_does_not_restart_after_data) {
  client_options o;
  o.dsn = cluster_environment::dsn();
  o.pool.max_size = 1;
  o.resilience.retry.base_delay = std::chrono::milliseconds(10);
  client db(o);
  std::string got;
  EXPECT_EQ(db.copy_to(copy_source::query("SELECT g, g * g FROM generate_series(1, 4) g"),
                       [&](std::string_view chunk) { got += chunk; }, {copy_format::csv, true}),
            4u);
  EXPECT_EQ(got, "g,?column?\n1,1\n2,4\n3,9\n4,16\n");

  // A sink that throws: its exception, unchanged, one attempt; the connection goes back idle.
  const int pid = db.query_value<int>("SELECT pg_backend_pid()");
  int calls = 0;
  EXPECT_THROW(db.copy_to(copy_source::query("SELECT g FROM generate_series(1, 1000000) g"),
                          [&](std::string_view) {
                            ++calls;
                            throw std::runtime_error("no space left");
                          }),
               std::runtime_error);
  EXPECT_EQ(calls, 1) << "not restarted";
  EXPECT_EQ(db.query_value<int>("SELECT pg_backend_pid()"), pid) << "the abandoned session was reusable";

  // The backend terminated mid-stream: connection_error, not retried, not handed out again.
  auto killer = connect();
  int first_rows = 0;
  int victim = 0;
  try {
    (void)db.copy_to(copy_source::query(
                         "SELECT pg_backend_pid(), g, repeat('k', 100) FROM generate_series(1, 20000000) g"),
                     [&](std::string_view chunk) {
                       if (victim == 0) {
                         victim = std::stoi(std::string(chunk.substr(0, chunk.find('\t'))));
                         (void)killer.query_value<bool>("SELECT pg_terminate_backend($1)", victim);
                       }
                       if (chunk.find("\t1\t") != std::string_view::npos) ++first_rows;
                     });
    FAIL() << "the COPY ended normally";
  } catch (const connection_error& e) {
    EXPECT_EQ(e.outcome(), outcome::fatal);
    EXPECT_EQ(e.attempts(), 1) << "data had reached the sink: never restarted";
  }
  EXPECT_EQ(first_rows, 1) << "the first row was delivered once";
  ASSERT_EQ(victim, pid);
  EXPECT_NE(db.query_value<int>("SELECT pg_backend_pid()"), victim) << "the dead session is not handed out again";
  EXPECT_EQ(db.pool_statistics().total, 1u);
}
