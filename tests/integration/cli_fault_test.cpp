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
  // One call, on the one host of the DSN (the host label is "host:port").
  const auto one_ok_call = [](const std::string& prom) {
    const auto at = prom.find("\npostgresql_queries_total{outcome=\"ok\",host=\"");
    return at != std::string::npos && prom.substr(prom.find('}', at), 4) == "} 1\n";
  };
  EXPECT_TRUE(one_ok_call(text)) << text;
  // ping too: its round trip is counted like any call.
  r = run({"--metrics-out", metrics.string(), "ping"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(one_ok_call(read_file(metrics)));
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
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"copy", "t", "--file", "in.csv", "--to", out.string()},
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
  { std::ofstream(out) << "keep\n"; }
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
  auto r = run_on_terminal(
      {"copy", "--query", "SELECT g, repeat('p', 50) FROM generate_series(1, 200000) g", "--to", out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("MiB/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("copied 200000 rows from the query to " + out.string()), std::string::npos) << r.out;
  std::uintmax_t expected = 0;
  for (int g = 1; g <= 200000; ++g) expected += std::to_string(g).size() + 52;
  EXPECT_EQ(fs::file_size(out), expected) << "every row";
  fs::remove(out);
}
