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
  auto r = run_program(psql,
                       {"-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", cluster_environment::dsn(), "-c", "SELECT " + expr},
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
  const std::string kv = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres password={}", secured.port(),
                                     quote_conninfo(password));
  const std::string uri = fmt::format("postgresql://postgres:{}@{}/postgres", percent_encode(password), host);
  // libpq reads the user info up to the first '@', so '?', ':', '#', '&', '=', ''' and '\' may stay unencoded.
  const std::string raw_uri = fmt::format("postgresql://postgres:Kp0?Kp1:Kp2#Kp3&Kp4=Kp5'Kp6\\Kp7@{}/postgres", host);
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
          {{"DATABASE_URL", fmt::format("host=127.0.0.1 port={} user=postgres password=Kp0?Kp1 KpB", secured.port())}});
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
  EXPECT_EQ(r.out,
            "{\"columns\":[\"a\",\"b\",\"c\",\"d\"],\"rows\":[[null,null,null,\"null\"]],\"command\":\"SELECT 1\","
            "\"rows_affected\":1}\n");
  // Several rows and columns stay one valid document.
  r = run(
      {"--json", "exec",
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
  r = run_on_terminal({"exec",
                       "SELECT 'NULL'::text AS a, NULL::text AS b, E'x\\ny\\\\' AS c, '∅' AS d, "
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
