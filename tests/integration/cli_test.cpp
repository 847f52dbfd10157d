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

using steadypg::test::cluster_environment;
namespace fs = std::filesystem;

namespace {

struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `program` with `args` and extra environment, capturing stdout and stderr.
run_result run_program(const std::string& program, std::vector<std::string> args,
                       const std::map<std::string, std::string>& env, const std::string& stdin_file) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("steadypg-cli-{}", ::getpid());
  fs::create_directories(dir);
  const fs::path out = dir / "out", err = dir / "err";
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv{const_cast<char*>(program.c_str())};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr) ||
        !std::freopen(stdin_file.c_str(), "r", stdin)) {
      ::_exit(120);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  run_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove_all(dir);
  return r;
}

// Runs the CLI with `args` and extra environment; DATABASE_URL defaults to the test server.
run_result run(std::vector<std::string> args, std::map<std::string, std::string> env = {},
               const std::string& stdin_file = "/dev/null") {
  if (!env.count("DATABASE_URL")) env["DATABASE_URL"] = cluster_environment::dsn();
  return run_program(STEADYPG_CLI_PATH, std::move(args), env, stdin_file);
}

}  // namespace

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
  auto r = run({"ping", "--json"}, {{"DATABASE_URL", "host=127.0.0.1 port=1 user=postgres"},
                                    {"POSTGRESQL_CONNECTION_TIMEOUT", "2000"}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.out.find("\"error\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"sqlstate\":\"08001\""), std::string::npos) << r.out;
}

TEST(cli, exec_json_fields) {
  auto r = run({"exec", "--json", "SELECT $1::int AS a, $2::text AS b, NULL::int AS c, true AS d", "-p", "7", "-p",
                "x y"});
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
  const char* vars[] = {"POSTGRESQL_MAX_RETRIES",         "POSTGRESQL_RETRY_DELAY",
                        "POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", "POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT",
                        "POSTGRESQL_CONNECTION_TIMEOUT",  "POSTGRESQL_METRICS_ENABLED",
                        "POSTGRESQL_SLOW_QUERY_THRESHOLD", "POSTGRESQL_HEALTH_CHECK_INTERVAL",
                        "POSTGRESQL_POOL_MIN",            "POSTGRESQL_POOL_MAX",
                        "POSTGRESQL_ACQUIRE_TIMEOUT",     "POSTGRESQL_STATEMENT_TIMEOUT",
                        "POSTGRESQL_BATCH_SIZE",          "POSTGRESQL_BATCH_CONCURRENCY",
                        "POSTGRESQL_BATCH_TIMEOUT",       "POSTGRESQL_STATEMENT_CACHE_SIZE"};
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
    for (const char* field : {"\"workload\":", "\"clients\":2", "\"ops\":", "\"errors\":0", "\"ops_per_s\":",
                              "\"p50_ms\":", "\"p99_ms\":", "\"timeline\":[{\"t\":1,"}) {
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
  EXPECT_EQ(r.out.find("\"errors\":0,"), std::string::npos) << "the outage shows up as errors: " << r.out;
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
  for (const char* f : {"\"status\":\"healthy\"", "\"latency_ms\":", "\"threshold_ms\":", "\"breaker\":\"closed\"",
                        "\"error\":null"}) {
    EXPECT_NE(r.out.find(f), std::string::npos) << f << " in " << r.out;
  }
  r = run({"info", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"\"server\":{\"version\":", "\"uptime_seconds\":", "\"connections\":{\"active\":",
                        "\"pool\":{\"active\":", "\"waiting\":", "\"performance\":{\"queries\":", "\"avg_query_ms\":",
                        "\"p95_query_ms\":", "\"slow_queries\":"}) {
    EXPECT_NE(r.out.find(f), std::string::npos) << f << " in " << r.out;
  }
  r = run({"health", "--json"}, {{"DATABASE_URL", "host=127.0.0.1 port=1 user=postgres"},
                                 {"POSTGRESQL_CONNECTION_TIMEOUT", "500"}});
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
  for (std::vector<std::string> args : {std::vector<std::string>{"--log-format", "json", "--log-level", "debug",
                                                                   "health", "--json"},
                                        std::vector<std::string>{"--log-level", "debug", "info"},
                                        std::vector<std::string>{"--log-level", "debug", "ping", "--json"},
                                        std::vector<std::string>{"--log-format", "json", "--log-level", "debug",
                                                                   "exec", "SELECT 1"}}) {
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

namespace {

// A file in the temp directory that is removed at the end of the scope.
struct temp_file {
  explicit temp_file(const std::string& name, const std::string& content)
      : path(fs::temp_directory_path() / fmt::format("steadypg-{}-{}", ::getpid(), name)) {
    std::ofstream(path, std::ios::binary) << content;
  }
  ~temp_file() { fs::remove(path); }
  fs::path path;
};

}  // namespace

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
    auto r = run({"--json", "batch", "--file", f.path.string(), "--mode", mode, "--batch-size", "2", "--concurrency",
                  "1"});
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
  temp_file f("rows.csv", "id,v\n1,plain\n2,\"comma, and \"\"quote\"\"\"\n3,\n4,\"\"\n1,duplicate\n5,\"two\nlines\"\nnot-a-number,x\n");
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
  EXPECT_EQ(j.at("slow_query").at("counted"), 1);
  EXPECT_EQ(j.at("health").at("status"), "healthy");
  for (const char* seed : {"postgresql_slow_query_total", "postgresql_batch_operations_total",
                           "postgresql_batch_errors_total", "postgresql_batch_duration_seconds_count"}) {
    EXPECT_TRUE(j.at("metrics").contains(seed)) << seed;
  }
  EXPECT_EQ(j.at("metrics").at("postgresql_batch_operations_total"), 30000);
  EXPECT_LT(j.at("duration_s").get<double>(), 120.0);
}

TEST(cli, demo_against_a_given_server_skips_the_outage_and_cleans_up) {
  auto r = run({"demo"});
  ASSERT_EQ(r.exit_code, 0) << r.out.substr(0, 3000) << r.err.substr(0, 3000);
  EXPECT_NE(r.out.find("[6/6] Health, info and metrics"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped: this needs the embedded server"), std::string::npos);
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

namespace {

std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out.push_back(static_cast<char>(c));
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string quote_conninfo(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

}  // namespace

namespace {

// psql, to compare the CLI with what the server's own client prints.
std::string psql_path() {
  if (const char* dir = std::getenv("STEADYPG_PG_BINDIR"); dir && *dir && fs::exists(fs::path(dir) / "psql")) {
    return (fs::path(dir) / "psql").string();
  }
  std::vector<fs::path> found;
  if (fs::exists("/usr/lib/postgresql")) {
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql")) {
      if (fs::exists(e.path() / "bin" / "psql")) found.push_back(e.path() / "bin" / "psql");
    }
  }
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return std::stoi(a.parent_path().parent_path().filename().string()) <
           std::stoi(b.parent_path().parent_path().filename().string());
  });
  if (!found.empty()) return found.back().string();
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    if (fs::exists(fs::path(dir) / "psql")) return (fs::path(dir) / "psql").string();
  }
  return {};
}

// The value of `SELECT expr` as `psql -At` prints it (without the final newline).
std::string psql_value(const std::string& psql, const std::string& expr) {
  auto r = run_program(psql, {"-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", cluster_environment::dsn(), "-c",
                              "SELECT " + expr},
                       {{"PGCLIENTENCODING", "UTF8"}}, "/dev/null");
  EXPECT_EQ(r.exit_code, 0) << expr << ": " << r.err;
  EXPECT_TRUE(r.out.ends_with("\n")) << r.out;
  return r.out.substr(0, r.out.size() - 1);
}

// `steadypg --json exec "SELECT expr AS v"` as one document for a one-row, one-column result.
std::string exec_json_document(const std::string& cell) {
  return "{\"columns\":[\"v\"],\"rows\":[[" + cell + "]],\"command\":\"SELECT 1\",\"rows_affected\":1}\n";
}

}  // namespace

TEST(cli, passwords_with_special_characters_never_reach_the_output) {
  // Every piece of the password carries the marker "Kp", so any fragment that shows up is a leak.
  const std::string password = "Kp0?Kp1@Kp2:Kp3/Kp4#Kp5%Kp6&Kp7=Kp8'Kp9\\KpA KpB";
  steadypg::testing::temp_cluster_options o;
  o.password = password;
  steadypg::testing::temp_cluster secured(o);
  const std::string host = fmt::format("127.0.0.1:{}", secured.port());
  const std::string kv = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres password={}",
                                     secured.port(), quote_conninfo(password));
  const std::string uri = fmt::format("postgresql://postgres:{}@{}/postgres", percent_encode(password), host);
  // libpq reads the user info up to the first '@', so '?', ':', '#', '&', '=', ''' and '\' may stay unencoded.
  const std::string raw_uri =
      fmt::format("postgresql://postgres:Kp0?Kp1:Kp2#Kp3&Kp4=Kp5'Kp6\\Kp7@{}/postgres", host);
  auto check = [](const run_result& r, const std::string& what) {
    std::istringstream lines(r.out + r.err);
    for (std::string line; std::getline(lines, line);) {
      EXPECT_EQ(line.find("Kp"), std::string::npos) << what << ": password leaked: " << line;
    }
  };
  for (const auto& dsn : {kv, uri}) {
    for (const std::string format : {"text", "json"}) {
      auto r = run({"--log-format", format, "--log-level", "debug", "ping"}, {{"DATABASE_URL", dsn}});
      EXPECT_EQ(r.exit_code, 0) << dsn << ": " << r.err;  // the password is right: the DSN was read as written
      EXPECT_NE(r.err.find("connecting"), std::string::npos) << r.err;
      check(r, dsn);
      r = run({"--log-format", format, "--log-level", "debug", "--dsn", dsn, "ping", "--json"});
      EXPECT_EQ(r.exit_code, 0) << dsn << ": " << r.err;
      check(r, dsn);
    }
    // A config error in the same string is reported without the password.
    const std::string bad = dsn + (dsn.starts_with("postgresql") ? "?connect_timeout=x" : " connect_timeout=x");
    auto r = run({"--log-level", "debug", "ping", "--json"}, {{"DATABASE_URL", bad}});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    check(r, dsn);
  }
  // A wrong password written with unencoded specials: refused by the server, still not shown.
  auto r = run({"--log-format", "json", "--log-level", "debug", "ping", "--json"}, {{"DATABASE_URL", raw_uri}});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("password authentication failed"), std::string::npos) << r.err;
  check(r, raw_uri);
  // Unquoted, the password ends at the space: libpq cannot parse the rest, and none of it is shown.
  r = run({"--log-level", "debug", "ping"},
          {{"DATABASE_URL", fmt::format("host=127.0.0.1 port={} user=postgres password=Kp0?Kp1 KpB",
                                        secured.port())}});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  check(r, "unquoted");
}

TEST(cli, exec_json_embeds_server_text_exactly) {
  const std::string psql = psql_path();
  ASSERT_FALSE(psql.empty()) << "psql is needed as the reference (set STEADYPG_PG_BINDIR)";
  // Values whose JSON form is the server's text byte for byte.
  const std::vector<std::string> verbatim = {
      "'-9223372036854775808'::int8",
      "9223372036854775807::int8",
      "(-32768)::int2",
      "2147483647::int4",
      "'1234567890123456789012345678901234567890.0123456789'::numeric",
      "'-0.0000000000000000000000000000000000000001'::numeric",
      "'123.4500'::numeric",
      "0.1::float8",
      "1e300::float8",
      "'-0'::float8",
      "'1.5e-7'::float4",
      "'123456789012345678901234567890'::jsonb",
      "'12345678901234567890.12345678901234567890123'::json",
      "'{\"big\": 1e400, \"tiny\": -1E-400}'::jsonb",
      "'[1e400, 2.50]'::json",
      "'{\"a\":1,\"a\":2}'::json",
      "E' {\"a\" :\\t[1,  2,\\n 3] }  '::json",
      "'\"\\u00e9\\ud83d\\ude00 \\u0000 \\\"q\\\" \\\\\"'::json",
      "'\"\\u00e9\\ud83d\\ude00\"'::jsonb",
      "'[[1,[2,[3,[]]]],{},[{\"k\":[null,true,false]}]]'::jsonb",
      "'null'::json",
      "'\"null\"'::jsonb",
      "'{\"\":\"\\u2028 é\"}'::jsonb",
  };
  for (const auto& expr : verbatim) {
    SCOPED_TRACE(expr);
    const std::string text = psql_value(psql, expr);
    ASSERT_FALSE(text.empty());
    auto r = run({"--json", "exec", "SELECT " + expr + " AS v"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, exec_json_document(text));
  }
  // Not JSON numbers: strings holding the server's text.
  for (const std::string expr : {"'NaN'::numeric", "'Infinity'::numeric", "'-Infinity'::numeric", "'NaN'::float4",
                                 "'-Infinity'::float8", "'NULL'::text", "'null'::text"}) {
    SCOPED_TRACE(expr);
    const std::string text = psql_value(psql, expr);
    auto r = run({"--json", "exec", "SELECT " + expr + " AS v"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, exec_json_document(nlohmann::json(text).dump()));
  }
  // SQL NULL of any type is null; JSON null is null too, the text 'null' a string.
  EXPECT_EQ(psql_value(psql, "NULL::jsonb IS NULL, 'null'::jsonb IS NULL"), "t|f");
  auto r = run({"--json", "exec", "SELECT NULL::jsonb AS a, 'null'::jsonb AS b, NULL::int8 AS c, 'null' AS d"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"columns\":[\"a\",\"b\",\"c\",\"d\"],\"rows\":[[null,null,null,\"null\"]],\"command\":\"SELECT 1\","
                   "\"rows_affected\":1}\n");
  // Several rows and columns stay one valid document.
  r = run({"--json", "exec",
           "SELECT g AS \"n\"\"q\", ('{\"g\":' || g || '}')::json AS j, g::numeric / 3 AS d FROM generate_series(1, 3) g"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = nlohmann::ordered_json::parse(r.out);
  EXPECT_EQ(doc.at("columns"), nlohmann::json::array({"n\"q", "j", "d"}));
  EXPECT_EQ(doc.at("rows").size(), 3u);
  EXPECT_EQ(doc.at("rows")[2][1].at("g"), 3);
  EXPECT_NE(r.out.find(",0.33333333333333333333]"), std::string::npos) << r.out;
  EXPECT_EQ(doc.at("command"), "SELECT 3");
  EXPECT_EQ(doc.at("rows_affected"), 3);
}

namespace {

// Runs the CLI with stdout, stderr and stdin on a pseudo-terminal; returns what the terminal
// showed, with the terminal's CR LF line ends turned back into LF.
run_result run_on_terminal(std::vector<std::string> args) {
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (pid == 0) {
    ::setenv("DATABASE_URL", cluster_environment::dsn().c_str(), 1);
    std::vector<char*> argv{const_cast<char*>(STEADYPG_CLI_PATH)};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  run_result r;
  if (pid < 0) return r;
  std::string shown;
  char buf[4096];
  for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;) shown.append(buf, static_cast<std::size_t>(n));
  ::close(master);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  for (std::size_t i = 0; i < shown.size(); ++i) {
    if (shown[i] == '\r' && i + 1 < shown.size() && shown[i + 1] == '\n') continue;
    r.out.push_back(shown[i]);
  }
  return r;
}

}  // namespace

TEST(cli, exec_text_output_tells_null_from_text_and_escapes_like_copy) {
  const std::string select =
      "SELECT 'NULL'::text AS a, NULL::text AS b, E'tab\\there' AS c, E'line\\nbreak\\r' AS d, "
      "E'back\\\\slash' AS e, '\\N' AS f, E'\\x1b[31mred' AS \"g\th\", '' AS i, NULL::int AS j";
  // Not a terminal: COPY text format (\N for NULL; backslash, tab, newline, CR and other
  // control characters escaped), with a header line escaped the same way.
  auto r = run({"exec", select});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "a\tb\tc\td\te\tf\tg\\th\ti\tj\n"
            "NULL\t\\N\ttab\\there\tline\\nbreak\\r\tback\\\\slash\t\\\\N\t\\x1b[31mred\t\t\\N\n");
  // COPY reads the rows back exactly.
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_tsv");
  c.execute("CREATE TABLE cli_tsv (a text, b text, c text, d text, e text, f text, g text, i text, j int)");
  temp_file rows("rows.tsv", r.out.substr(r.out.find('\n') + 1));
  auto copied = run({"copy", "cli_tsv", "--file", rows.path.string()});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  EXPECT_EQ(c.query_value<std::int64_t>(
                "SELECT count(*) FROM cli_tsv WHERE a = 'NULL' AND b IS NULL AND c = E'tab\\there' AND "
                "d = E'line\\nbreak\\r' AND e = E'back\\\\slash' AND f = '\\N' AND g = E'\\x1b[31mred' AND i = '' "
                "AND j IS NULL"),
            1);
  // --null sets the output marker too (and still binds -p values equal to it as NULL).
  r = run({"exec", "SELECT $1::text AS a, 'x' AS b, NULL AS c", "-p", "(nil)", "--null", "(nil)"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a\tb\tc\n(nil)\tx\t(nil)\n");
  // --json is unaffected by --null.
  r = run({"--json", "exec", "SELECT NULL AS c", "--null", "(nil)"});
  EXPECT_EQ(r.out, "{\"columns\":[\"c\"],\"rows\":[[null]],\"command\":\"SELECT 1\",\"rows_affected\":1}\n");

  // On a terminal: an aligned table, ∅ for NULL, control characters and backslashes escaped,
  // and a text ∅ written as \u2205 so that ∅ alone always means NULL.
  r = run_on_terminal({"exec", "SELECT 'NULL'::text AS a, NULL::text AS b, E'x\\ny\\\\' AS c, '∅' AS d, "
                               "E'\\x1b[2J' AS e"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out,
            " a    | b | c      | d      | e      \n"
            "------+---+--------+--------+---------\n"
            " NULL | ∅ | x\\ny\\\\ | \\u2205 | \\x1b[2J\n"
            "(1 row)\n");
  r = run_on_terminal({"exec", "SELECT NULL AS a", "--null", "<null>"});
  EXPECT_EQ(r.out, " a     \n--------\n <null>\n(1 row)\n");
}

TEST(cli, a_directory_or_unreadable_file_is_a_usage_error_naming_it) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("steadypg-cli-dir-{}", ::getpid());
  fs::create_directories(dir);
  const fs::path missing = dir / "missing.sql";
  std::vector<std::vector<std::string>> commands;
  for (const fs::path& p : {dir, missing}) {
    commands.push_back({"batch", "--file", p.string()});
    commands.push_back({"batch", "--sql", "SELECT $1", "--csv", p.string()});
    commands.push_back({"copy", "cli_dir_t", "--file", p.string()});
  }
  temp_file locked("locked.sql", "SELECT 1\n");
  if (::geteuid() != 0) {  // root reads whatever the mode says
    fs::permissions(locked.path, fs::perms::none);
    commands.push_back({"batch", "--file", locked.path.string()});
    commands.push_back({"copy", "cli_dir_t", "--file", locked.path.string()});
  }
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_dir_t");
  c.execute("CREATE TABLE cli_dir_t (v text)");
  for (const auto& args : commands) {
    SCOPED_TRACE(fmt::format("{}", fmt::join(args, " ")));
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find(args.back()), std::string::npos) << "names the path: " << r.err;
    r = run([&] {
      auto a = args;
      a.insert(a.begin(), "--json");
      return a;
    }());
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.out.find(args.back()), std::string::npos) << r.out;
  }
  fs::remove_all(dir);
}

TEST(cli, batch_file_with_a_nul_byte_runs_nothing) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_nul");
  c.execute("CREATE TABLE cli_nul (id int, v text)");
  c.execute("INSERT INTO cli_nul VALUES (1, 'a'), (2, 'b'), (3, 'c')");
  using namespace std::string_literals;
  temp_file f("nul.sql",
              "-- line 1\n"
              "INSERT INTO cli_nul VALUES (4, 'd')\n"
              "\n"
              "DELETE FROM cli_nul\0 WHERE id = 1\n"
              "INSERT INTO cli_nul VALUES (5, 'e')\n"s);
  for (const char* mode : {"independent", "pipeline", "transaction"}) {
    SCOPED_TRACE(mode);
    auto r = run({"batch", "--file", f.path.string(), "--mode", mode});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("line 4"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("NUL"), std::string::npos) << r.err;
    EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_nul"), 3) << "nothing ran";
  }
  // In a comment line, and from standard input, it is refused all the same.
  temp_file comment("nul-comment.sql", "INSERT INTO cli_nul VALUES (6, 'f')\n--\0\n"s);
  auto r = run({"--json", "batch", "--file", "-"}, {}, comment.path.string());
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.out.find("line 2"), std::string::npos) << r.out;
  // A CSV record is bound as text, where a NUL would cut the value short: refused too.
  temp_file csv("nul.csv", "7,ok\n8,\"cut\0here\"\n"s);
  r = run({"batch", "--sql", "INSERT INTO cli_nul VALUES ($1, $2)", "--csv", csv.path.string()});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_nul"), 3) << "nothing ran";
}

TEST(cli, copy_streams_a_named_pipe) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_fifo");
  c.execute("CREATE TABLE cli_fifo (id int, v text)");
  const fs::path fifo = fs::temp_directory_path() / fmt::format("steadypg-cli-fifo-{}", ::getpid());
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // The writer waits (at most 30 s, never forever) for the CLI to open the pipe for reading.
  std::thread writer([&] {
    int fd = -1;
    for (int i = 0; i < 3000 && fd < 0; ++i) {
      fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (fd < 0) return;
    ::fcntl(fd, F_SETFL, 0);
    const std::string data = "1\tone\n2\ttwo\n3\tthree\n";
    EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ::close(fd);
  });
  auto r = run({"--json", "copy", "cli_fifo", "--file", fifo.string()});
  writer.join();
  fs::remove(fifo);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("rows"), 3) << "a pipe cannot seek: it streams like standard input";
  EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_fifo"), 3);
}

namespace {

// The pids of the backends whose application_name is `app`.
std::vector<int> backends_named(const std::string& app) {
  auto c = steadypg::test::connect();
  const auto rs = c.execute("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app);
  std::vector<int> out;
  for (auto [pid] : rs.rows<int>()) out.push_back(pid);
  return out;
}

// Waits (bounded) until a backend named `app` runs a statement containing `text`; its pid or 0.
int wait_for_backend_running(const std::string& app, const std::string& text, std::chrono::seconds patience) {
  auto c = steadypg::test::connect();
  const auto until = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < until) {
    const auto pid = c.query_value<std::optional<int>>(
        "SELECT max(pid) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' "
        "AND position($2 in query) > 0",
        app, text);
    if (pid) return *pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

}  // namespace

TEST(cli, batch_json_reports_each_failures_outcome) {
  auto c = steadypg::test::connect();
  c.execute("DROP TABLE IF EXISTS cli_outcome");
  c.execute("CREATE TABLE cli_outcome (id int PRIMARY KEY, v text)");
  // Line 4 has one field too few: it fails alone, before its chunk is sent; line 5 collides.
  temp_file f("outcome.csv", "1,a\n2,b\n3\n1,dup\n5,e\n");
  for (const std::string mode : {"pipeline", "transaction", "independent"}) {
    c.execute("TRUNCATE cli_outcome");
    auto r = run({"--json", "batch", "--sql", "INSERT INTO cli_outcome VALUES ($1, $2)", "--csv", f.path.string(),
                  "--mode", mode, "--batch-size", "10"});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("stats").at("unknown"), 0) << r.out;
    EXPECT_EQ(j.at("stats").at("breaker_waited"), 0) << r.out;
    for (const auto& e : j.at("errors")) ASSERT_TRUE(e.contains("outcome")) << e;
    const auto& errors = j.at("errors");
    ASSERT_GE(errors.size(), 2u) << r.out;
    const auto short_row = std::find_if(errors.begin(), errors.end(), [](const auto& e) { return e.at("index") == 3; });
    ASSERT_NE(short_row, errors.end()) << mode << ": " << r.out;
    EXPECT_EQ(short_row->at("outcome"), "not_sent") << mode;
    EXPECT_NE(short_row->at("message").get<std::string>().find("wrong number of parameters"), std::string::npos);
    if (mode == "transaction") {
      // The chunk rolled back: the culprit is line 4, the others say so.
      EXPECT_EQ(j.at("stats").at("succeeded"), 0) << r.out;
      for (const auto& e : errors) {
        if (e.at("index") == 3) continue;
        if (e.at("index") == 4) {
          EXPECT_EQ(e.at("sqlstate"), "23505");
          EXPECT_EQ(e.at("outcome"), "fatal");
        } else {
          EXPECT_EQ(e.at("reason"), "rolled_back") << e;
          EXPECT_EQ(e.at("outcome"), "rolled_back") << e;
          EXPECT_EQ(e.at("cause"), 4) << e;
        }
      }
      EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_outcome"), 0);
    } else {
      ASSERT_EQ(errors.size(), 2u) << r.out;
      EXPECT_EQ(errors[0].at("index"), 3);
      EXPECT_EQ(errors[1].at("index"), 4);
      EXPECT_EQ(errors[1].at("outcome"), "fatal");
      EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_outcome"), 3) << mode;
    }
  }
}

TEST(cli, exec_ends_on_a_silent_server_with_statement_timeout) {
  if (cluster_environment::cluster() == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  run_result r;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread cli([&] {
    r = run({"exec", "SELECT 1 FROM pg_sleep(0.5)"},
            {{"DATABASE_URL", cluster_environment::dsn() + " application_name=cli_silent"},
             {"POSTGRESQL_STATEMENT_TIMEOUT", "1000"}});
  });
  const int pid = wait_for_backend_running("cli_silent", "pg_sleep", std::chrono::seconds(20));
  if (pid != 0) ::kill(pid, SIGSTOP);  // the server goes silent mid-statement
  cli.join();
  const auto took = std::chrono::steady_clock::now() - t0;
  if (pid != 0) {
    ::kill(pid, SIGCONT);
    (void)steadypg::test::connect().query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pid);
  }
  ASSERT_NE(pid, 0) << "the statement was never seen running";
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("timed out"), std::string::npos) << r.err;
  // 1 s of statement_timeout, its 1 s backstop, at most 2 s for the cancel: generous room here.
  EXPECT_LT(took, std::chrono::seconds(20));
}

TEST(cli, bench_ends_on_time_while_the_server_is_silent) {
  if (cluster_environment::cluster() == nullptr) GTEST_SKIP() << "needs the embedded cluster";
  ASSERT_EQ(run({"bench", "--init", "--scale", "1"}).exit_code, 0);
  run_result r;
  std::thread bench([&] {
    r = run({"bench", "--json", "--workload", "select", "--clients", "2", "--seconds", "3"},
            {{"DATABASE_URL", cluster_environment::dsn() + " application_name=cli_bench_silent"}});
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (backends_named("cli_bench_silent").size() < 2 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // By now the bench's first login (a connection of its own, closed at once) has gone: what is
  // left are the pool's connections, under load.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const std::vector<int> stopped = backends_named("cli_bench_silent");
  for (int pid : stopped) ::kill(pid, SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  bench.join();
  const auto took = std::chrono::steady_clock::now() - t0;
  for (int pid : stopped) {
    ::kill(pid, SIGCONT);
    (void)steadypg::test::connect().query_value<bool>("SELECT pg_terminate_backend($1, 5000)", pid);
  }
  ASSERT_EQ(stopped.size(), 2u) << "one backend per client";
  EXPECT_EQ(r.exit_code, 1) << "the calls that timed out are errors: " << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GE(j.at("errors").get<int>(), 2) << r.out;
  // The run had at most 2.5 s left: it ends within that plus the 1 s grace and the cancel's bound.
  EXPECT_LT(took, std::chrono::seconds(15));
}

TEST(cli, a_refused_login_is_tried_once_by_every_command) {
  steadypg::testing::temp_cluster_options o;
  o.password = "right-pw";
  steadypg::testing::temp_cluster secured(o);
  const std::string dsn =
      fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres password=wrong-pw", secured.port());
  temp_file data("login.csv", "1,a\n");
  const std::vector<std::vector<std::string>> commands = {
      {"copy", "some_table", "--file", data.path.string(), "--format", "csv"},
      {"batch", "--sql", "SELECT $1, $2", "--csv", data.path.string()},
      {"bench", "--workload", "select", "--clients", "2", "--seconds", "2"},
      {"exec", "SELECT 1"},
      {"ping"}};
  std::size_t seen = 0;
  for (const auto& args : commands) {
    auto r = run(args, {{"DATABASE_URL", dsn}, {"POSTGRESQL_MAX_RETRIES", "5"}, {"POSTGRESQL_RETRY_DELAY", "10"}});
    EXPECT_EQ(r.exit_code, 3) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("password authentication failed"), std::string::npos) << r.err;
    // One login attempt per command: the server logs each one.
    const auto log = secured.log_tail(1 << 20);
    std::size_t n = 0;
    for (std::size_t p = 0; (p = log.find("password authentication failed", p)) != std::string::npos; ++p) ++n;
    EXPECT_EQ(n - seen, 1u) << args[0] << " tried to log in " << (n - seen) << " times";
    seen = n;
  }
}

TEST(cli, exec_goes_through_the_clients_pipeline) {
  const fs::path metrics = fs::temp_directory_path() / fmt::format("steadypg-exec-metrics-{}.prom", ::getpid());
  auto r = run({"--log-format", "json", "--metrics-out", metrics.string(), "exec", "SELECT pg_sleep(0.2)"},
               {{"POSTGRESQL_SLOW_QUERY_THRESHOLD", "50"}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("\"msg\":\"slow query\""), std::string::npos) << r.err;
  const std::string text = read_file(metrics);
  fs::remove(metrics);
  EXPECT_NE(text.find("postgresql_slow_query_total 1"), std::string::npos) << text;
  EXPECT_NE(text.find("postgresql_queries_total{outcome=\"ok\"} 1"), std::string::npos) << text;
  // ping too: its round trip is counted like any call.
  r = run({"--metrics-out", metrics.string(), "ping"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(read_file(metrics).find("postgresql_queries_total{outcome=\"ok\"} 1"), std::string::npos);
  fs::remove(metrics);
}

namespace {

// What COPY TO writes for the table cli_rt (id int, t text, b bytea, n text): the same bytes
// `copy --file` loads, in each format (text escapes; CSV quotes only where it must).
const char* const rt_text =
    "1\ttab\\there\t\\\\x00090aff\t\\N\n"
    "2\tnew\\nline\t\\\\x\tplain\n"
    "3\tcr\\rreturn\t\\N\t\n"
    "4\tback\\\\slash\t\\\\x5c\t\\\\N\n"
    "5\tquote'\"\t\\N\tcomma,semi;\n"
    "6\tunicode ✓ 日本\t\\N\t  spaced  \n"
    "7\t\t\\N\t\\\\.\n"
    "8\t\\N\t\\N\tNULL\n";
const char* const rt_csv =
    "1,tab\there,\\x00090aff,\n"
    "2,\"new\nline\",\\x,plain\n"
    "3,\"cr\rreturn\",,\"\"\n"
    "4,back\\slash,\\x5c,\\N\n"
    "5,\"quote'\"\"\",,\"comma,semi;\"\n"
    "6,unicode ✓ 日本,,  spaced  \n"
    "7,\"\",,\\.\n"
    "8,,,NULL\n";

}  // namespace

TEST(cli, copy_to_round_trips_what_copy_loads_byte_for_byte) {
  auto c = steadypg::test::connect();
  const fs::path out = fs::temp_directory_path() / fmt::format("steadypg-{}-export", ::getpid());
  for (const std::string format : {"text", "csv"}) {
    for (bool header : {false, true}) {
      SCOPED_TRACE(format + (header ? " with header" : ""));
      c.execute("DROP TABLE IF EXISTS cli_rt");
      c.execute("CREATE TABLE cli_rt (id int, t text, b bytea, n text)");
      std::string data = format == "csv" ? rt_csv : rt_text;
      if (header) data = (format == "csv" ? "id,t,b,n\n" : "id\tt\tb\tn\n") + data;
      temp_file in("rt.in", data);
      std::vector<std::string> extra{"--format", format};
      if (header) extra.push_back("--header");
      auto with = [&](std::vector<std::string> args) {
        args.insert(args.end(), extra.begin(), extra.end());
        return args;
      };
      auto r = run(with({"copy", "cli_rt", "--file", in.path.string()}));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      r = run(with({"--json", "copy", "cli_rt", "--to", out.string()}));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const auto j = nlohmann::json::parse(r.out);
      EXPECT_EQ(j.at("rows"), 8);
      EXPECT_EQ(j.at("table"), "cli_rt");
      EXPECT_EQ(j.at("to"), out.string());
      EXPECT_GT(j.at("duration_ms").get<double>(), 0.0);
      EXPECT_GT(j.at("rows_per_s").get<double>(), 0.0);
      EXPECT_EQ(read_file(out), data) << "byte for byte what was loaded";
      // The export loads again to the same values, and exports to the same bytes.
      c.execute("TRUNCATE cli_rt");
      r = run(with({"copy", "cli_rt", "--file", out.string()}));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      r = run(with({"copy", "cli_rt", "--to", "-"}));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, data) << "--to - writes only the data on standard output";
      EXPECT_NE(r.err.find("copied 8 rows"), std::string::npos) << "the summary goes to standard error: " << r.err;
      EXPECT_EQ(c.query_value<std::string>("SELECT t FROM cli_rt WHERE id = 2"), "new\nline");
      EXPECT_EQ(c.query_value<std::string>("SELECT encode(b, 'hex') FROM cli_rt WHERE id = 1"), "00090aff");
      EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_rt WHERE id = 8 AND t IS NULL AND n = 'NULL'"),
                1);
      EXPECT_EQ(c.query_value<std::int64_t>("SELECT count(*) FROM cli_rt WHERE id = 7 AND t = '' AND n = '\\.'"), 1);
    }
  }
  // Some columns, in the order given.
  auto r = run({"copy", "cli_rt", "--columns", "n, id", "--to", "-", "--format", "csv"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 4), ",1\np");
  fs::remove(out);
}

TEST(cli, copy_to_exports_a_query_and_checks_its_arguments) {
  const fs::path out = fs::temp_directory_path() / fmt::format("steadypg-{}-query.csv", ::getpid());
  auto r = run({"copy", "--query", "SELECT g AS id, 'x' || g AS v FROM generate_series(1, 3) g;", "--to", "-",
                "--format", "csv", "--header"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "id,v\n1,x1\n2,x2\n3,x3\n");
  r = run({"--json", "copy", "--query", "SELECT generate_series(1, 1000)", "--to", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("rows"), 1000);
  EXPECT_FALSE(nlohmann::json::parse(r.out).contains("table"));
  const std::string exported = read_file(out);
  EXPECT_EQ(std::count(exported.begin(), exported.end(), '\n'), 1000);
  // Arguments that do not go together: exit 2, nothing runs.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"copy", "t", "--file", "in.csv", "--to", out.string()},
           {"copy", "--query", "SELECT 1"},
           {"copy", "t"},
           {"copy", "--to", out.string()},
           {"copy", "t", "--query", "SELECT 1", "--to", out.string()},
           {"copy", "--query", "SELECT 1", "--columns", "a", "--to", out.string()},
           {"copy", "--file", "in.csv"},
           {"--json", "copy", "t", "--to", "-"}}) {
    r = run(args);
    EXPECT_EQ(r.exit_code, 2) << fmt::format("{}", fmt::join(args, " ")) << ": " << r.err;
  }
  r = run({"--json", "copy", "t", "--to", "-"});
  EXPECT_NE(r.err.find("would mix the report with the data"), std::string::npos) << r.err;
  // An unwritable path: exit 2 naming it, before connecting (the server here is unreachable).
  const std::map<std::string, std::string> unreachable{{"DATABASE_URL", "host=127.0.0.1 port=1 user=postgres"},
                                                       {"POSTGRESQL_CONNECTION_TIMEOUT", "1000"}};
  r = run({"copy", "t", "--to", "/nonexistent-dir/out.csv"}, unreachable);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("/nonexistent-dir/out.csv"), std::string::npos) << r.err;
  r = run({"copy", "t", "--to", fs::temp_directory_path().string()}, unreachable);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
  // Unreachable: exit 3, and no file left behind.
  fs::remove(out);
  r = run({"copy", "--query", "SELECT 1", "--to", out.string()}, unreachable);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // A failed query: exit 1; an existing file stays as it was.
  {
    std::ofstream(out) << "keep\n";
  }
  r = run({"--json", "copy", "--query", "SELECT nope FROM nowhere", "--to", out.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("error").at("sqlstate"), "42P01");
  EXPECT_EQ(read_file(out), "keep\n");
  r = run({"copy", "no_such_table", "--to", out.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  fs::remove(out);
}

TEST(cli, copy_to_shows_progress_on_a_terminal) {
  const fs::path out = fs::temp_directory_path() / fmt::format("steadypg-{}-tty.txt", ::getpid());
  auto r = run_on_terminal({"copy", "--query", "SELECT g, repeat('p', 50) FROM generate_series(1, 200000) g", "--to",
                            out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("MiB/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("copied 200000 rows from the query to " + out.string()), std::string::npos) << r.out;
  std::uintmax_t expected = 0;
  for (int g = 1; g <= 200000; ++g) expected += std::to_string(g).size() + 52;
  EXPECT_EQ(fs::file_size(out), expected) << "every row";
  fs::remove(out);
}
