#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "steadypg/error.hpp"
#include "steadypg/circuit_breaker.hpp"
#include "steadypg/observe/log.hpp"

using namespace steadypg;
using namespace steadypg::observe;
using namespace std::chrono_literals;

namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  return out;
}

}  // namespace

TEST(log, json_lines_have_the_fixed_fields_first) {
  std::FILE* f = std::tmpfile();
  json_logger log(f, log_level::debug);
  const log_field fields[] = {{"op", std::string_view("execute")},
                              {"attempt", std::int64_t{2}},
                              {"duration_ms", 1.5},
                              {"ok", false},
                              {"sql", std::string_view("SELECT \"x\"\n")}};
  log.log(log_level::warn, "client", "something \"quoted\"", fields);
  const auto text = contents(f);
  EXPECT_EQ(text.rfind("{\"ts\":\"", 0), 0u) << text;
  EXPECT_NE(text.find("\"level\":\"warn\",\"msg\":\"something \\\"quoted\\\"\",\"component\":\"client\",\"op\":"
                      "\"execute\",\"attempt\":2,\"duration_ms\":1.5,\"ok\":false,\"sql\":\"SELECT \\\"x\\\"\\n\"}\n"),
            std::string::npos)
      << text;
  std::fclose(f);
}

TEST(log, levels_and_rate_limiting) {
  std::FILE* f = std::tmpfile();
  text_logger log(f, log_level::info);
  log.log(log_level::debug, "c", "hidden");
  for (int i = 0; i < 100; ++i) log.log(log_level::error, "pool", "could not open a connection");
  log.log(log_level::info, "c", "info lines are not rate-limited");
  log.log(log_level::info, "c", "info lines are not rate-limited");
  const auto text = contents(f);
  EXPECT_EQ(text.find("hidden"), std::string::npos);
  std::size_t n = 0;
  for (std::size_t p = 0; (p = text.find("could not open", p)) != std::string::npos; ++p) ++n;
  EXPECT_EQ(n, 1u) << "repeated identical errors are rate-limited: " << text;
  std::size_t infos = 0;
  for (std::size_t p = 0; (p = text.find("not rate-limited", p)) != std::string::npos; ++p) ++infos;
  EXPECT_EQ(infos, 2u);
  std::fclose(f);
}

TEST(log, slow_calls_are_logged_with_context_and_params_only_when_given) {
  std::FILE* f = std::tmpfile();
  json_logger log(f, log_level::info);
  log_observer obs(log);
  const std::string long_sql = "SELECT " + std::string(2000, 'x');
  call_report slow{"execute", long_sql, 150ms, 1, 7, nullptr};
  slow.slow = true;
  slow.context = {3, 1, 0, "closed"};
  obs.on_call_finished(slow);
  call_report with_params{"execute", "SELECT $1", 200ms, 2, 1, nullptr};
  with_params.slow = true;
  with_params.params = "$1='secret-ish'";
  obs.on_call_finished(with_params);
  obs.on_call_finished({"execute", "SELECT 1", 5ms, 1, 1, nullptr});  // not slow: no line
  const auto text = contents(f);
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_EQ(lines, 2u) << text;
  EXPECT_NE(text.find("\"msg\":\"slow query\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"duration_ms\":150"), std::string::npos) << text;
  EXPECT_NE(text.find("\"rows\":7"), std::string::npos) << text;
  EXPECT_NE(text.find("\"pool_active\":3,\"pool_idle\":1,\"pool_waiting\":0,\"breaker\":\"closed\""), std::string::npos)
      << text;
  EXPECT_NE(text.find("\"sql\":\"SELECT " + std::string(493, 'x') + "\""), std::string::npos)
      << "statement text is truncated to 500 bytes";
  EXPECT_EQ(text.find(std::string(494, 'x')), std::string::npos);
  EXPECT_NE(text.find("\"params\":\"$1='secret-ish'\""), std::string::npos) << text;
  EXPECT_EQ(text.substr(0, text.find('\n')).find("params"), std::string::npos)
      << "a line without parameter values has no params field";
  std::fclose(f);
}

TEST(log, retries_carry_context) {
  std::FILE* f = std::tmpfile();
  json_logger log(f, log_level::info);
  log_observer obs(log);
  retry_report r;
  r.operation = "execute";
  r.reason = "not_sent";
  r.sqlstate = "08006";
  r.attempt = 2;
  r.delay = 12ms;
  r.context = {2, 0, 5, "half_open"};
  obs.on_retry(r);
  const auto text = contents(f);
  EXPECT_NE(text.find(
                "\"op\":\"execute\",\"attempt\":2,\"reason\":\"not_sent\",\"sqlstate\":\"08006\",\"delay_ms\":12"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"pool_active\":2,\"pool_idle\":0,\"pool_waiting\":5,\"breaker\":\"half_open\""),
            std::string::npos)
      << text;
  std::fclose(f);
}

TEST(log, failures_carry_context) {
  std::FILE* f = std::tmpfile();
  json_logger log(f, log_level::info);
  log_observer obs(log);
  server_error_fields fields;
  fields.sqlstate = "22012";
  fields.message = "division by zero";
  sql_error e("division by zero (SQLSTATE 22012)", failure_kind::server_error, outcome::fatal, fields);
  call_report rep{"execute", "SELECT 1/0", 2ms, 1, 0, &e};
  rep.context = {1, 2, 0, "closed"};
  obs.on_call_finished(rep);
  obs.on_breaker_transition(breaker_state::closed, breaker_state::open);
  const auto text = contents(f);
  EXPECT_NE(text.find(
                "\"op\":\"execute\",\"attempt\":1,\"duration_ms\":2,\"sqlstate\":\"22012\",\"outcome\":\"fatal\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"pool_active\":1,\"pool_idle\":2,\"pool_waiting\":0,\"breaker\":\"closed\""), std::string::npos)
      << text;
  EXPECT_NE(text.find("\"breaker\":\"open\""), std::string::npos) << text;
  std::fclose(f);
}
