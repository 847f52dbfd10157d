#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster_env.hpp"
#include "steadypg/connection.hpp"

#include "cli_run.hpp"

using namespace steadypg::test::cli;

TEST(cli, ping_ok_and_json) {
  auto r = run({"ping"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ok: round trip"), std::string::npos);
  r = run({"ping", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"ok\":true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"latency_ms\":"), std::string::npos) << r.out;
  r = run({"--json", "--dsn", cluster_environment::dsn(), "ping"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(cli, ping_unreachable_exits_3) {
  auto r = run({"ping", "--json"},
               {{"DATABASE_URL", "host=127.0.0.1 port=1 user=postgres"}, {"POSTGRESQL_CONNECTION_TIMEOUT", "2000"}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.out.find("\"error\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"sqlstate\":\"08001\""), std::string::npos) << r.out;
}

TEST(cli, exec_json_fields) {
  auto r =
      run({"exec", "--json", "SELECT $1::int AS a, $2::text AS b, NULL::int AS c, true AS d", "-p", "7", "-p", "x y"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"columns\":[\"a\",\"b\",\"c\",\"d\"],\"rows\":[[7,\"x y\",null,true]],\"command\":\"SELECT 1\","
            "\"rows_affected\":1}\n");
}

TEST(cli, exec_writes_and_reports_rows_affected) {
  ASSERT_EQ(run({"exec", "CREATE TABLE IF NOT EXISTS cli_t (id int, v text)"}).exit_code, 0);
  auto r = run({"exec", "--json", "INSERT INTO cli_t SELECT g, $1 FROM generate_series(1, 4) g", "-p", "v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"command\":\"INSERT 0 4\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"rows_affected\":4"), std::string::npos) << r.out;
  r = run({"exec", "INSERT INTO cli_t VALUES ($1, $2)", "-p", "9", "-p", "NULL-ME", "--null", "NULL-ME"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run({"exec", "SELECT count(*) FROM cli_t WHERE id = 9 AND v IS NULL"});
  EXPECT_EQ(r.out, "count\n1\n");  // not a terminal: tab-separated with a header
}

TEST(cli, exec_sql_error_exits_1) {
  auto r = run({"exec", "--json", "SELECT 1/0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("\"sqlstate\":\"22012\""), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("division by zero"), std::string::npos) << r.err;
}

TEST(cli, exec_wrong_parameter_count_exits_2) {
  auto r = run({"exec", "SELECT $1::int + $2::int", "-p", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("wrong number of parameters"), std::string::npos) << r.err;
}

TEST(cli, log_format_json_lines) {
  auto r = run({"--log-format", "json", "--log-level", "debug", "exec", "SELECT 1"});
  ASSERT_EQ(r.exit_code, 0);
  std::istringstream lines(r.err);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u) << line;
    EXPECT_NE(line.find("\"level\":"), std::string::npos) << line;
    EXPECT_NE(line.find("\"component\":\"cli\""), std::string::npos) << line;
  }
  EXPECT_GE(n, 2);
}

TEST(cli, every_bad_env_value_exits_2_naming_it) {
  const char* vars[] = {"POSTGRESQL_MAX_RETRIES",
                        "POSTGRESQL_RETRY_DELAY",
                        "POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD",
                        "POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT",
                        "POSTGRESQL_CONNECTION_TIMEOUT",
                        "POSTGRESQL_METRICS_ENABLED",
                        "POSTGRESQL_SLOW_QUERY_THRESHOLD",
                        "POSTGRESQL_HEALTH_CHECK_INTERVAL",
                        "POSTGRESQL_POOL_MIN",
                        "POSTGRESQL_POOL_MAX",
                        "POSTGRESQL_ACQUIRE_TIMEOUT",
                        "POSTGRESQL_STATEMENT_TIMEOUT",
                        "POSTGRESQL_BATCH_SIZE",
                        "POSTGRESQL_BATCH_CONCURRENCY",
                        "POSTGRESQL_BATCH_TIMEOUT",
                        "POSTGRESQL_STATEMENT_CACHE_SIZE"};
  for (const char* var : vars) {
    for (const char* value : {"abc", "-1", "", "99999999999999999999", "10ms"}) {
      auto r = run({"ping"}, {{var, value}});
      EXPECT_EQ(r.exit_code, 2) << var << "=" << value;
      EXPECT_NE(r.err.find(var), std::string::npos) << r.err;
      EXPECT_NE(r.err.find(std::string("\"") + value + "\""), std::string::npos) << r.err;
    }
  }
}

TEST(cli, malformed_dsn_exits_2_without_password) {
  auto r = run({"--dsn", "host=localhost password topsecret99", "ping"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.find("topsecret99"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("topsecret99"), std::string::npos) << r.out;
  r = run({"ping", "--json"}, {{"DATABASE_URL", "postgresql://u:topsecret99@[::1/db"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.find("topsecret99"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("topsecret99"), std::string::npos) << r.out;
}

TEST(cli, usage_errors_exit_2) {
  EXPECT_EQ(run({}).exit_code, 2);
  EXPECT_EQ(run({"nonsense"}).exit_code, 2);
  EXPECT_EQ(run({"exec"}).exit_code, 2);
  EXPECT_EQ(run({"--log-format", "xml", "ping"}).exit_code, 2);
  EXPECT_EQ(run({"sandbox", "explode"}).exit_code, 2);
  EXPECT_EQ(run({"--help"}).exit_code, 0);
}

TEST(cli, sandbox_start_status_stop) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("steadypg-sbx-test-{}", ::getpid());
  fs::remove_all(dir);
  auto r = run({"sandbox", "start", "--dir", dir.string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"dsn\":\"host=127.0.0.1 port="), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"pid\":"), std::string::npos);
  EXPECT_NE(r.out.find(fmt::format("\"dir\":\"{}\"", dir.string())), std::string::npos) << r.out;
  r = run({"sandbox", "status", "--dir", dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dsn = r.out.substr(0, r.out.find('\n'));
  r = run({"--dsn", dsn, "exec", "SELECT 40 + 2"});
  EXPECT_EQ(r.out, "?column?\n42\n");
  // start again: idempotent, same server
  auto again = run({"sandbox", "start", "--dir", dir.string()});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.out.substr(0, again.out.find('\n')), dsn);
  r = run({"sandbox", "stop", "--dir", dir.string(), "--json"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("\"stopped\":true"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_EQ(run({"sandbox", "status", "--dir", dir.string()}).exit_code, 3);
  EXPECT_EQ(run({"--dsn", dsn, "ping"}, {{"POSTGRESQL_CONNECTION_TIMEOUT", "1000"}}).exit_code, 3);
}

TEST(cli, bench_init_and_workloads) {
  auto r = run({"bench", "--init", "--scale", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("\"initialized\":true"), std::string::npos) << r.out;
  for (const char* workload : {"select", "pipeline", "insert"}) {
    r = run({"bench", "--json", "--workload", workload, "--clients", "2", "--seconds", "2"});
    ASSERT_EQ(r.exit_code, 0) << workload << ": " << r.err << r.out;
    for (const char* field : {"\"workload\":", "\"clients\":2", "\"ops\":", "\"errors\":0",
                              "\"ops_per_s\":", "\"p50_ms\":", "\"p99_ms\":", "\"timeline\":[{\"t\":1,"}) {
      EXPECT_NE(r.out.find(field), std::string::npos) << workload << " lacks " << field << ": " << r.out;
    }
    EXPECT_EQ(r.out.find("\"ops\":0,"), std::string::npos) << r.out;
  }
  r = run({"exec", "SELECT count(*) > 0 FROM pgbench_history"});
  EXPECT_EQ(r.out, "?column?\nt\n");
}

TEST(cli, bench_keeps_going_through_an_outage) {
  auto* cluster = cluster_environment::cluster();
  if (cluster == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  ASSERT_EQ(run({"bench", "--init", "--scale", "1"}).exit_code, 0);
  run_result r;
  std::thread bench([&] {
    r = run({"bench", "--json", "--workload", "select", "--clients", "2", "--seconds", "6"},
            {{"POSTGRESQL_CONNECTION_TIMEOUT", "500"},
             {"POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", "500"},
             {"POSTGRESQL_RETRY_DELAY", "50"}});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  cluster->stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  cluster->start();
  bench.join();
  EXPECT_EQ(r.exit_code, 1) << "errors were counted: " << r.err;
  EXPECT_NE(r.out.find("\"timeline\""), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"errors\":0,\"ops_per_s\""), std::string::npos) << "the outage shows up as errors: " << r.out;
  // It recovered: the last second has successful operations again.
  const auto last = r.out.rfind("{\"t\":6,\"ops\":");
  ASSERT_NE(last, std::string::npos) << r.out;
  EXPECT_EQ(r.out.substr(last).find("\"ops\":0,"), std::string::npos) << r.out.substr(last);
}

TEST(cli, metrics_out_writes_prometheus_text) {
  ASSERT_EQ(run({"bench", "--init", "--scale", "1"}).exit_code, 0);
  const fs::path file = fs::temp_directory_path() / fmt::format("steadypg-cli-metrics-{}.prom", ::getpid());
  auto r = run({"--metrics-out", file.string(), "bench", "--clients", "1", "--seconds", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string text = read_file(file);
  EXPECT_NE(text.find("# TYPE postgresql_queries_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("postgresql_slow_query_total"), std::string::npos);
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    EXPECT_EQ(std::system(fmt::format("promtool check metrics < {}", file.string()).c_str()), 0) << text;
  }
  fs::remove(file);
  r = run({"--metrics-out", "/nonexistent-dir/x.prom", "ping"});
  EXPECT_EQ(r.exit_code, 2) << "an unwritable file is reported";
}

TEST(cli, health_and_info) {
  auto r = run({"health", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  for (const char* f :
       {"\"status\":\"healthy\"", "\"latency_ms\":", "\"threshold_ms\":", "\"breaker\":\"closed\"", "\"error\":null"}) {
    EXPECT_NE(r.out.find(f), std::string::npos) << f << " in " << r.out;
  }
  r = run({"info", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"\"server\":{\"version\":", "\"uptime_seconds\":", "\"connections\":{\"active\":",
                        "\"pool\":{\"active\":", "\"waiting\":", "\"performance\":{\"queries\":", "\"avg_query_ms\":",
                        "\"p95_query_ms\":", "\"slow_queries\":"}) {
    EXPECT_NE(r.out.find(f), std::string::npos) << f << " in " << r.out;
  }
  r = run({"health", "--json"},
          {{"DATABASE_URL", "host=127.0.0.1 port=1 user=postgres"}, {"POSTGRESQL_CONNECTION_TIMEOUT", "500"}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.out.find("\"status\":\"unhealthy\""), std::string::npos) << r.out;
}

TEST(cli, failing_auth_never_prints_the_password) {
  steadypg::testing::temp_cluster_options o;
  o.password = "right-pw";
  steadypg::testing::temp_cluster secured(o);
  const std::string secret = "Wr0ngP4ssw0rd-xyzzy";
  const std::string dsn =
      fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres password={}", secured.port(), secret);
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--log-format", "json", "--log-level", "debug", "health", "--json"},
        std::vector<std::string>{"--log-level", "debug", "info"},
        std::vector<std::string>{"--log-level", "debug", "ping", "--json"},
        std::vector<std::string>{"--log-format", "json", "--log-level", "debug", "exec", "SELECT 1"}}) {
    auto r = run(args, {{"DATABASE_URL", dsn}});
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find("password authentication failed"), std::string::npos) << r.err;
    std::istringstream lines(r.out + r.err);
    for (std::string line; std::getline(lines, line);) {
      EXPECT_EQ(line.find(secret), std::string::npos) << "password leaked: " << line;
    }
  }
}

TEST(cli, slow_queries_are_logged) {
  auto r = run({"--log-format", "json", "--log-level", "info", "bench", "--workload", "select", "--clients", "1",
                "--seconds", "1"},
               {{"POSTGRESQL_SLOW_QUERY_THRESHOLD", "1"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Warm-up queries (preparing, connecting) exceed 1 ms at least once.
  EXPECT_NE(r.err.find("\"msg\":\"slow query\""), std::string::npos) << r.err.substr(0, 2000);
  EXPECT_NE(r.err.find("\"sql\":\"SELECT "), std::string::npos) << r.err.substr(0, 2000);
  EXPECT_NE(r.err.find("\"duration_ms\":"), std::string::npos);
}

TEST(cli, batch_from_a_statement_file) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_batch");
  c.execute("CREATE TABLE cli_batch (id int PRIMARY KEY, v text)");
  temp_file f("batch.sql",
              "-- seed rows\n"
              "INSERT INTO cli_batch VALUES (1, 'a')\n"
              "\n"
              "INSERT INTO cli_batch VALUES (2, 'b')\n"
              "INSERT INTO cli_batch VALUES (1, 'dup')\n"
              "SELECT 1/0\n"
              "INSERT INTO cli_batch VALUES (3, 'c')\n");
  for (const char* mode : {"independent", "pipeline", "transaction"}) {
    SCOPED_TRACE(mode);
    c.execute("TRUNCATE cli_batch");
    // One connection, so that line 2 surely runs before its duplicate on line 5 (chunks on
    // several connections run in no particular order).
    auto r =
        run({"--json", "batch", "--file", f.path.string(), "--mode", mode, "--batch-size", "2", "--concurrency", "1"});
    EXPECT_EQ(r.exit_code, 1) << "some operations failed: " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const auto& st = j.at("stats");
    EXPECT_EQ(st.at("processed"), 5);
    const bool tx = std::string(mode) == "transaction";
    // Transaction mode, chunks of 2: [line 2, line 4] commit, [line 5, line 6] roll back, [line 7] commits.
    EXPECT_EQ(st.at("succeeded"), 3);
    EXPECT_EQ(st.at("failed"), 2);
    EXPECT_DOUBLE_EQ(st.at("success_rate").get<double>(), 0.6);
    EXPECT_TRUE(st.contains("duration_ms"));
    const auto& errors = j.at("errors");
    ASSERT_EQ(errors.size(), 2u) << r.out;
    EXPECT_EQ(errors[0].at("index"), 5) << "line numbers count every line";
    EXPECT_EQ(errors[0].at("sqlstate"), "23505");
    EXPECT_EQ(errors[1].at("index"), 6);
    EXPECT_EQ(errors[1].at("sqlstate"), tx ? "" : "22012");
    EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_batch"), 3);
  }
  auto r = run({"batch", "--file", "/nonexistent/file.sql"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"batch"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run({"batch", "--file", f.path.string(), "--mode", "fast"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST(cli, batch_binds_csv_records_to_a_template) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_csv");
  c.execute("CREATE TABLE cli_csv (id int PRIMARY KEY, v text)");
  temp_file f(
      "rows.csv",
      "id,v\n1,plain\n2,\"comma, and \"\"quote\"\"\"\n3,\n4,\"\"\n1,duplicate\n5,\"two\nlines\"\nnot-a-number,x\n");
  auto r = run({"--json", "batch", "--sql", "INSERT INTO cli_csv VALUES ($1, $2)", "--csv", f.path.string(), "--header",
                "--mode", "pipeline", "--concurrency", "2"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("stats").at("succeeded"), 5);
  EXPECT_EQ(j.at("stats").at("failed"), 2);
  const auto& errors = j.at("errors");
  ASSERT_EQ(errors.size(), 2u) << r.out;
  EXPECT_EQ(errors[0].at("index"), 6) << "the CSV line the record starts on";
  EXPECT_EQ(errors[0].at("sqlstate"), "23505");
  EXPECT_EQ(errors[1].at("index"), 9) << "after a record spanning two lines";
  EXPECT_EQ(errors[1].at("sqlstate"), "22P02");
  const auto rs = c.execute("SELECT id, v FROM cli_csv ORDER BY id");
  std::vector<std::pair<int, std::optional<std::string>>> got;
  for (auto [id, v] : rs.rows<int, std::optional<std::string>>()) got.emplace_back(id, v);
  const std::vector<std::pair<int, std::optional<std::string>>> want = {
      {1, "plain"}, {2, "comma, and \"quote\""}, {3, std::nullopt}, {4, ""}, {5, "two\nlines"}};
  EXPECT_EQ(got, want);
  // "-" reads the CSV from standard input.
  temp_file piped("piped.csv", "10,piped\n");
  r = run({"--json", "batch", "--sql", "INSERT INTO cli_csv VALUES ($1, $2)", "--csv", "-"}, {}, piped.path.string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(c.query_value<std::string>("SELECT v FROM cli_csv WHERE id = 10"), "piped");
  temp_file broken("broken.csv", "1,\"never closed\n");
  r = run({"batch", "--sql", "SELECT $1, $2", "--csv", broken.path.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unterminated quoted field"), std::string::npos) << r.err;
}

TEST(cli, copy_loads_a_file_and_reports_a_bad_line) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_copy");
  c.execute("CREATE TABLE cli_copy (id int, v text)");
  std::string csv = "id,v\n";
  for (int i = 0; i < 5000; ++i) csv += fmt::format("{},\"row {}, \"\"quoted\"\"\"\n", i, i);
  temp_file f("copy.csv", csv);
  auto r = run({"--json", "copy", "cli_copy", "--file", f.path.string(), "--format", "csv", "--header"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("rows"), 5000);
  EXPECT_GT(j.at("duration_ms").get<double>(), 0.0);
  EXPECT_GT(j.at("rows_per_s").get<double>(), 0.0);
  EXPECT_EQ(c.query_value<std::string>("SELECT v FROM cli_copy WHERE id = 42"), "row 42, \"quoted\"");
  temp_file bad("bad.txt", "1\tone\n2\ttwo\nthree\tthree\n");
  r = run({"--json", "copy", "cli_copy", "--file", bad.path.string()});
  EXPECT_EQ(r.exit_code, 1);
  const auto e = nlohmann::json::parse(r.out).at("error");
  EXPECT_EQ(e.at("sqlstate"), "22P02");
  EXPECT_NE(e.at("message").get<std::string>().find("line 3"), std::string::npos) << r.out;
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_copy"), 5000) << "nothing of the bad file loaded";
  // "-" streams standard input.
  temp_file more("more.txt", "9001\tfrom stdin\n9002\t\\N\n");
  r = run({"--json", "copy", "cli_copy", "--file", "-"}, {}, more.path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("rows"), 2);
  EXPECT_EQ(c.query_value<std::string>("SELECT v FROM cli_copy WHERE id = 9001"), "from stdin");
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_copy WHERE id = 9002 AND v IS NULL"), 1);
}

TEST(cli, demo_tells_the_whole_story_against_its_own_server) {
  auto r = run({"--json", "demo"}, {{"DATABASE_URL", ""}});
  ASSERT_EQ(r.exit_code, 0) << r.out.substr(0, 3000) << r.err.substr(0, 3000);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j.at("ok").get<bool>()) << j.at("problems").dump();
  EXPECT_TRUE(j.at("server").at("embedded").get<bool>());
  EXPECT_GT(j.at("workload").at("ops").get<long>(), 0);
  EXPECT_EQ(j.at("batch").at("stats").at("failed"), 5);
  EXPECT_EQ(j.at("batch").at("errors").size(), 5u);
  const auto& outage = j.at("outage");
  EXPECT_GT(outage.at("rejected_by_breaker").get<long>(), 0) << "the open breaker failed calls fast";
  EXPECT_GT(outage.at("breaker_closed_ms").get<long>(), outage.at("server_started_ms").get<long>());
  const auto& resolved = outage.at("in_doubt_resolved");
  EXPECT_GE(resolved.at("committed").get<long>() + resolved.at("aborted").get<long>(), 1)
      << "the COMMIT in flight when the server stopped was resolved by asking it";
  EXPECT_EQ(resolved.at("unknown").get<long>(), 0);
  EXPECT_EQ(j.at("slow_query").at("counted"), 1);
  const auto& cache = j.at("cache");
  EXPECT_GE(cache.at("hit_ratio").get<double>(), 0.9);
  EXPECT_EQ(cache.at("invalidated_read").at("after").get<std::int64_t>(),
            cache.at("invalidated_read").at("before").get<std::int64_t>() + 1);
  if (cache.at("backend") == "redis") {
    EXPECT_EQ(cache.at("reads_with_redis_down"), 100);
  }
  EXPECT_EQ(j.at("health").at("status"), "healthy");
  for (const char* seed : {"postgresql_slow_query_total", "postgresql_batch_operations_total",
                           "postgresql_batch_errors_total", "postgresql_batch_duration_seconds_count"}) {
    EXPECT_TRUE(j.at("metrics").contains(seed)) << seed;
  }
  EXPECT_EQ(j.at("metrics").at("postgresql_batch_operations_total"), 30000);
  const auto& sw = j.at("switchover");
  EXPECT_GT(sw.at("acknowledged").get<long>(), 0);
  EXPECT_EQ(sw.at("lost"), 0) << "an acknowledged write was lost in the switchover";
  EXPECT_EQ(sw.at("read_errors"), 0);
  EXPECT_EQ(sw.at("unknown_committed").get<long>() <= sw.at("unknown").get<long>(), true);
  EXPECT_TRUE(sw.at("primary_after").is_string());
  EXPECT_LT(j.at("duration_s").get<double>(), 120.0);
}

TEST(cli, demo_against_a_given_server_skips_the_outage_and_cleans_up) {
  auto r = run({"demo"});
  ASSERT_EQ(r.exit_code, 0) << r.out.substr(0, 3000) << r.err.substr(0, 3000);
  EXPECT_NE(r.out.find("[6/8] Health, info and metrics"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped: this needs the embedded server"), std::string::npos);
  EXPECT_NE(r.out.find("[7/8] Switchover"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[8/8] Query cache"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("UPDATE committed through the client"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped: this needs embedded servers"), std::string::npos);
  EXPECT_NE(r.out.find("everything behaved as described"), std::string::npos);
  auto c = steadypg::test::connect();
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'steadypg_demo_%'"), 0)
      << "the demo drops the schema it created";
}

TEST(cli, bad_dsn_values_exit_2_before_connecting) {
  const std::pair<const char*, const char*> cases[] = {
      {"host=127.0.0.1 port=abc user=postgres", "port=\\\"abc\\\""},
      {"host=127.0.0.1 port=99999999 user=postgres", "port=\\\"99999999\\\""},
      {"host=127.0.0.1 port=5432 sslmode=bogus", "sslmode=\\\"bogus\\\""},
      {"postgresql://u@127.0.0.1:abc/db", "port=\\\"abc\\\""},
      {"host=127.0.0.1 connect_timeout=xyz", "connect_timeout=\\\"xyz\\\""},
      {"host=127.0.0.1 target_session_attrs=bogus", "target_session_attrs=\\\"bogus\\\""},
      {"host=127.0.0.1 keepalives=x", "keepalives=\\\"x\\\""},
      {"host=127.0.0.1 gssencmode=bogus", "gssencmode=\\\"bogus\\\""},
      {"host=127.0.0.1,127.0.0.1 port=1,2,3", "3 ports for 2 hosts"},
  };
  for (const auto& [dsn, needle] : cases) {
    const auto started = std::chrono::steady_clock::now();
    auto r = run({"ping", "--json"}, {{"DATABASE_URL", dsn}});
    EXPECT_EQ(r.exit_code, 2) << dsn << ": " << r.out << r.err;
    EXPECT_NE(r.out.find(needle), std::string::npos) << dsn << ": " << r.out;
    EXPECT_EQ(r.out.find("08001"), std::string::npos) << dsn << ": " << r.out;
    EXPECT_EQ(r.err.find("retry"), std::string::npos) << dsn << ": " << r.err;
    // No connect attempt, no backoff: a config error is immediate.
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2)) << dsn;
    r = run({"--dsn", dsn, "ping"});
    EXPECT_EQ(r.exit_code, 2) << dsn << ": " << r.err;
  }
}

TEST(cli, dsn_flag_wins_over_a_malformed_database_url) {
  for (const char* bad :
       {"postgresql://u:pw@[::1/db", "host=127.0.0.1 hots=x", "host=127.0.0.1 port=abc", "not a dsn"}) {
    auto r = run({"--dsn", cluster_environment::dsn(), "ping"}, {{"DATABASE_URL", bad}});
    EXPECT_EQ(r.exit_code, 0) << bad << ": " << r.err;
    r = run({"ping"}, {{"DATABASE_URL", bad}});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
  }
  // Other variables are still read and checked with --dsn.
  auto r = run({"--dsn", cluster_environment::dsn(), "ping"},
               {{"DATABASE_URL", "not a dsn"}, {"POSTGRESQL_MAX_RETRIES", "-0"}});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("POSTGRESQL_MAX_RETRIES"), std::string::npos) << r.err;
}
