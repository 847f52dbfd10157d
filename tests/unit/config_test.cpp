#include <gtest/gtest.h>

#include <map>

#include "steadypg/config.hpp"
#include "steadypg/error.hpp"

using namespace steadypg;

namespace {

client_options load(const std::map<std::string, std::string>& env) {
  return client_options::from_env([&](std::string_view name) -> std::optional<std::string> {
    auto it = env.find(std::string(name));
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

std::string error_of(const std::map<std::string, std::string>& env) {
  try {
    (void)load(env);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(config, defaults) {
  const auto o = load({});
  EXPECT_EQ(o.dsn, "");
  EXPECT_EQ(o.max_retries, 3);
  EXPECT_EQ(o.retry_delay.count(), 1000);
  EXPECT_EQ(o.circuit_breaker_threshold, 5);
  EXPECT_EQ(o.circuit_breaker_timeout.count(), 30000);
  EXPECT_EQ(o.connection_timeout.count(), 10000);
  EXPECT_TRUE(o.metrics_enabled);
  EXPECT_EQ(o.slow_query_threshold.count(), 1000);
  EXPECT_EQ(o.health_check_interval.count(), 30000);
  EXPECT_EQ(o.pool_min, 0);
  EXPECT_EQ(o.pool_max, 10);
  EXPECT_EQ(o.acquire_timeout.count(), 5000);
  EXPECT_EQ(o.statement_timeout.count(), 0);
  EXPECT_EQ(o.batch_size, 10);
  EXPECT_EQ(o.batch_concurrency, 3);
  EXPECT_EQ(o.batch_timeout.count(), 30000);
  EXPECT_EQ(o.statement_cache_size, 256);
}

TEST(config, every_variable_is_read) {
  const auto o = load({{"DATABASE_URL", "postgresql://u:p@localhost:5433/db"},
                       {"POSTGRESQL_MAX_RETRIES", "7"},
                       {"POSTGRESQL_RETRY_DELAY", "250"},
                       {"POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", "9"},
                       {"POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", "1500"},
                       {"POSTGRESQL_CONNECTION_TIMEOUT", "2500"},
                       {"POSTGRESQL_METRICS_ENABLED", "false"},
                       {"POSTGRESQL_SLOW_QUERY_THRESHOLD", "40"},
                       {"POSTGRESQL_HEALTH_CHECK_INTERVAL", "1000"},
                       {"POSTGRESQL_POOL_MIN", "2"},
                       {"POSTGRESQL_POOL_MAX", "20"},
                       {"POSTGRESQL_ACQUIRE_TIMEOUT", "100"},
                       {"POSTGRESQL_STATEMENT_TIMEOUT", "60000"},
                       {"POSTGRESQL_BATCH_SIZE", "500"},
                       {"POSTGRESQL_BATCH_CONCURRENCY", "8"},
                       {"POSTGRESQL_BATCH_TIMEOUT", "90000"},
                       {"POSTGRESQL_STATEMENT_CACHE_SIZE", "0"}});
  EXPECT_EQ(o.dsn, "postgresql://u:p@localhost:5433/db");
  EXPECT_EQ(o.max_retries, 7);
  EXPECT_EQ(o.retry_delay.count(), 250);
  EXPECT_EQ(o.circuit_breaker_threshold, 9);
  EXPECT_EQ(o.circuit_breaker_timeout.count(), 1500);
  EXPECT_EQ(o.connection_timeout.count(), 2500);
  EXPECT_FALSE(o.metrics_enabled);
  EXPECT_EQ(o.slow_query_threshold.count(), 40);
  EXPECT_EQ(o.health_check_interval.count(), 1000);
  EXPECT_EQ(o.pool_min, 2);
  EXPECT_EQ(o.pool_max, 20);
  EXPECT_EQ(o.acquire_timeout.count(), 100);
  EXPECT_EQ(o.statement_timeout.count(), 60000);
  EXPECT_EQ(o.batch_size, 500);
  EXPECT_EQ(o.batch_concurrency, 8);
  EXPECT_EQ(o.batch_timeout.count(), 90000);
  EXPECT_EQ(o.statement_cache_size, 0);
}

TEST(config, bounds_are_inclusive) {
  EXPECT_EQ(load({{"POSTGRESQL_MAX_RETRIES", "0"}}).max_retries, 0);
  EXPECT_EQ(load({{"POSTGRESQL_MAX_RETRIES", "100"}}).max_retries, 100);
  EXPECT_EQ(load({{"POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", "100"}}).circuit_breaker_timeout.count(), 100);
  EXPECT_EQ(load({{"POSTGRESQL_BATCH_CONCURRENCY", "1024"}}).batch_concurrency, 1024);
  EXPECT_TRUE(load({{"POSTGRESQL_METRICS_ENABLED", "1"}}).metrics_enabled);
  EXPECT_FALSE(load({{"POSTGRESQL_METRICS_ENABLED", "0"}}).metrics_enabled);
  EXPECT_FALSE(load({}).log_parameters);
  EXPECT_TRUE(load({{"POSTGRESQL_LOG_PARAMETERS", "true"}}).log_parameters);
}

TEST(config, every_bad_value_names_variable_value_and_range) {
  const char* vars[] = {"POSTGRESQL_MAX_RETRIES",          "POSTGRESQL_RETRY_DELAY",
                        "POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", "POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT",
                        "POSTGRESQL_CONNECTION_TIMEOUT",   "POSTGRESQL_SLOW_QUERY_THRESHOLD",
                        "POSTGRESQL_HEALTH_CHECK_INTERVAL", "POSTGRESQL_POOL_MIN",
                        "POSTGRESQL_POOL_MAX",             "POSTGRESQL_ACQUIRE_TIMEOUT",
                        "POSTGRESQL_STATEMENT_TIMEOUT",    "POSTGRESQL_BATCH_SIZE",
                        "POSTGRESQL_BATCH_CONCURRENCY",    "POSTGRESQL_BATCH_TIMEOUT",
                        "POSTGRESQL_STATEMENT_CACHE_SIZE"};
  const char* bad[] = {"abc", "-1", "", "99999999999999999999", "10ms", " 5", "5 ", "1.5", "0x10", "+-3", "999999999"};
  for (const char* var : vars) {
    for (const char* value : bad) {
      const std::string msg = error_of({{var, value}});
      ASSERT_FALSE(msg.empty()) << var << "=" << value << " was accepted";
      EXPECT_NE(msg.find(var), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::string("\"") + value + "\""), std::string::npos) << msg;
      EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
    }
  }
}

TEST(config, out_of_range_values) {
  EXPECT_NE(error_of({{"POSTGRESQL_MAX_RETRIES", "101"}}).find("0–100"), std::string::npos);
  EXPECT_NE(error_of({{"POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", "0"}}).find("1–10000"), std::string::npos);
  EXPECT_NE(error_of({{"POSTGRESQL_CONNECTION_TIMEOUT", "99"}}).find("100–600000 ms"), std::string::npos);
  EXPECT_NE(error_of({{"POSTGRESQL_POOL_MAX", "0"}}).find("1–10000"), std::string::npos);
  EXPECT_NE(error_of({{"POSTGRESQL_BATCH_CONCURRENCY", "1025"}}).find("1–1024"), std::string::npos);
  EXPECT_NE(error_of({{"POSTGRESQL_BATCH_SIZE", "0"}}).find("POSTGRESQL_BATCH_SIZE"), std::string::npos);
  EXPECT_NE(error_of({{"POSTGRESQL_POOL_MIN", "5"}, {"POSTGRESQL_POOL_MAX", "4"}}).find("must not exceed"),
            std::string::npos);
}

TEST(config, bad_booleans) {
  for (const char* var : {"POSTGRESQL_METRICS_ENABLED", "POSTGRESQL_LOG_PARAMETERS"}) {
    for (const char* v : {"yes", "", "2", "on", "truee"}) {
      const auto msg = error_of({{var, v}});
      EXPECT_NE(msg.find(var), std::string::npos) << v;
      EXPECT_NE(msg.find("true, false, 1 or 0"), std::string::npos) << msg;
    }
  }
}

TEST(config, validate_catches_code_changes) {
  client_options o;
  o.validate();
  o.pool_max = 0;
  EXPECT_THROW(o.validate(), config_error);
  o = client_options{};
  o.max_retries = -1;
  EXPECT_THROW(o.validate(), config_error);
  o = client_options{};
  o.pool_min = 11;
  EXPECT_THROW(o.validate(), config_error);
}

TEST(config, dsn_forms) {
  EXPECT_EQ(load({{"DATABASE_URL", "host=localhost port=5432 dbname=app user=u password=p"}}).dsn,
            "host=localhost port=5432 dbname=app user=u password=p");
  EXPECT_EQ(load({{"DATABASE_URL", "postgres://localhost/app?sslmode=disable"}}).dsn,
            "postgres://localhost/app?sslmode=disable");
}

TEST(config, malformed_dsn_never_echoes_password) {
  const std::pair<const char*, const char*> cases[] = {
      {"host=localhost password hunter2secret", "hunter2secret"},
      {"host=localhost password='hunter2secret", "hunter2secret"},
      {"postgresql://user:hunter2secret@[::1/db", "hunter2secret"},
      {"postgresql://user:hunter2secret@localhost/db?bogus=1", "hunter2secret"},
      {"postgresql://localhost/db?password=hunter2secret&nope=1", "hunter2secret"},
      {"host=localhost hots=x password=hunter2secret", "hunter2secret"},
  };
  for (const auto& [dsn, secret] : cases) {
    const auto msg = error_of({{"DATABASE_URL", dsn}});
    ASSERT_FALSE(msg.empty()) << dsn;
    EXPECT_EQ(msg.find(secret), std::string::npos) << msg;
    EXPECT_NE(msg.find("invalid connection string"), std::string::npos) << msg;
  }
}

TEST(config, redact_dsn_both_forms) {
  EXPECT_EQ(redact_dsn("host=db user=app password=s3cr3t dbname=x"), "host=db user=app password=**** dbname=x");
  EXPECT_EQ(redact_dsn("host=db password='s3 cr\\'3t' dbname=x"), "host=db password=**** dbname=x");
  EXPECT_EQ(redact_dsn("password = s3cr3t host=db"), "password = **** host=db");
  EXPECT_EQ(redact_dsn("postgresql://app:s3cr3t@db:5432/x"), "postgresql://app:****@db:5432/x");
  EXPECT_EQ(redact_dsn("postgres://app@db/x"), "postgres://app@db/x");
  EXPECT_EQ(redact_dsn("postgresql://db/x?user=app&password=s3cr3t&sslmode=require"),
            "postgresql://db/x?user=app&password=****&sslmode=require");
  EXPECT_EQ(redact_dsn("postgresql://a:b:c@h"), "postgresql://a:****@h");
  EXPECT_EQ(redact_dsn("host=db"), "host=db");
  EXPECT_EQ(redact_dsn(""), "");
}

TEST(config, integer_variables_reject_any_sign_even_on_zero) {
  for (const char* var : {"POSTGRESQL_MAX_RETRIES", "POSTGRESQL_RETRY_DELAY", "POSTGRESQL_POOL_MIN",
                          "POSTGRESQL_STATEMENT_TIMEOUT", "POSTGRESQL_STATEMENT_CACHE_SIZE", "POSTGRESQL_POOL_MAX"}) {
    for (const char* value : {"-0", "+0", "-00", "+1", "+10", "\t1", "1\n", "1 0", "٣"}) {
      const std::string msg = error_of({{var, value}});
      ASSERT_FALSE(msg.empty()) << var << "=" << value << " was accepted";
      EXPECT_NE(msg.find(var), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::string("\"") + value + "\""), std::string::npos) << msg;
      EXPECT_NE(msg.find("expected an integer in"), std::string::npos) << msg;
    }
    EXPECT_NO_THROW((void)load({{var, "1"}})) << var;
    EXPECT_NO_THROW((void)load({{var, "0010"}})) << var;  // leading zeros are still plain digits
  }
}
