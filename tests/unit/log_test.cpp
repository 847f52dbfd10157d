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
  const log_field fields[] = {{"op", std::string_view("execute")}, {"attempt", std::int64_t{2}},
                              {"duration_ms", 1.5}, {"ok", false}, {"sql", std::string_view("SELECT \"x\"\n")}};
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

TEST(log, slow_queries_are_logged_kept_and_reported) {
  std::FILE* f = std::tmpfile();
  json_logger log(f, log_level::info);
  log_observer obs(log, 100ms, 3);
  int called = 0;
  obs.on_slow_query([&](const slow_query& q) {
    ++called;
    EXPECT_GE(q.duration_ms, 100.0);
  });
  const std::string long_sql = "SELECT " + std::string(2000, 'x');
  for (int i = 0; i < 5; ++i) obs.on_call_finished({"execute", long_sql, 150ms + i * 1ms, 1, 7, nullptr});
  obs.on_call_finished({"execute", "SELECT 1", 5ms, 1, 1, nullptr});  // fast: ignored
  EXPECT_EQ(called, 5);
  const auto recent = obs.recent_slow_queries();
  ASSERT_EQ(recent.size(), 3u) << "bounded ring buffer";
  EXPECT_DOUBLE_EQ(recent.back().duration_ms, 154.0);
  EXPECT_EQ(recent.back().sql.size(), 500u) << "statement text is truncated";
  EXPECT_EQ(recent.back().rows, 7u);
  const auto text = contents(f);
  EXPECT_NE(text.find("\"msg\":\"slow query\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"duration_ms\":150"), std::string::npos) << text;
  std::fclose(f);
}

TEST(log, failures_carry_context) {
  std::FILE* f = std::tmpfile();
  json_logger log(f, log_level::info);
  log_observer obs(log, 1000ms);
  server_error_fields fields;
  fields.sqlstate = "22012";
  fields.message = "division by zero";
  sql_error e("division by zero (SQLSTATE 22012)", fields, outcome::fatal);
  call_report rep{"execute", "SELECT 1/0", 2ms, 1, 0, &e};
  rep.pool_active = 1;
  rep.pool_idle = 2;
  rep.pool_waiting = 0;
  rep.breaker = "closed";
  obs.on_call_finished(rep);
  obs.on_breaker_transition(breaker_state::closed, breaker_state::open);
  const auto text = contents(f);
  EXPECT_NE(text.find("\"op\":\"execute\",\"attempt\":1,\"duration_ms\":2,\"sqlstate\":\"22012\",\"outcome\":\"fatal\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"pool_active\":1,\"pool_idle\":2,\"pool_waiting\":0,\"breaker\":\"closed\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"breaker\":\"open\""), std::string::npos) << text;
  std::fclose(f);
}
