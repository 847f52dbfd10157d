#include <gtest/gtest.h>

#include <libpq-fe.h>

#include <cctype>
#include <fmt/format.h>
#include <map>
#include <tuple>
#include <vector>

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
  EXPECT_EQ(o.resilience.retry.max_retries, 3);
  EXPECT_EQ(o.resilience.retry.base_delay.count(), 1000);
  EXPECT_EQ(o.resilience.breaker.failure_threshold, 5);
  EXPECT_EQ(o.resilience.breaker.open_duration.count(), 30000);
  EXPECT_EQ(o.connection.connect_timeout.count(), 10000);
  EXPECT_TRUE(o.observe.metrics_enabled);
  EXPECT_EQ(o.observe.slow_query_threshold.count(), 1000);
  EXPECT_EQ(o.pool.health_check_interval.count(), 30000);
  EXPECT_EQ(o.pool.min_size, 0);
  EXPECT_EQ(o.pool.max_size, 10);
  EXPECT_EQ(o.pool.acquire_timeout.count(), 5000);
  EXPECT_EQ(o.connection.statement_timeout.count(), 0);
  EXPECT_EQ(o.batch.batch_size, 10);
  EXPECT_EQ(o.batch.concurrency, 3);
  EXPECT_EQ(o.batch.timeout.count(), 30000);
  EXPECT_EQ(o.connection.statement_cache_capacity, 256);
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
  EXPECT_EQ(o.resilience.retry.max_retries, 7);
  EXPECT_EQ(o.resilience.retry.base_delay.count(), 250);
  EXPECT_EQ(o.resilience.breaker.failure_threshold, 9);
  EXPECT_EQ(o.resilience.breaker.open_duration.count(), 1500);
  EXPECT_EQ(o.connection.connect_timeout.count(), 2500);
  EXPECT_FALSE(o.observe.metrics_enabled);
  EXPECT_EQ(o.observe.slow_query_threshold.count(), 40);
  EXPECT_EQ(o.pool.health_check_interval.count(), 1000);
  EXPECT_EQ(o.pool.min_size, 2);
  EXPECT_EQ(o.pool.max_size, 20);
  EXPECT_EQ(o.pool.acquire_timeout.count(), 100);
  EXPECT_EQ(o.connection.statement_timeout.count(), 60000);
  EXPECT_EQ(o.batch.batch_size, 500);
  EXPECT_EQ(o.batch.concurrency, 8);
  EXPECT_EQ(o.batch.timeout.count(), 90000);
  EXPECT_EQ(o.connection.statement_cache_capacity, 0);
}

TEST(config, bounds_are_inclusive) {
  EXPECT_EQ(load({{"POSTGRESQL_MAX_RETRIES", "0"}}).resilience.retry.max_retries, 0);
  EXPECT_EQ(load({{"POSTGRESQL_MAX_RETRIES", "100"}}).resilience.retry.max_retries, 100);
  EXPECT_EQ(load({{"POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", "100"}}).resilience.breaker.open_duration.count(), 100);
  EXPECT_EQ(load({{"POSTGRESQL_BATCH_CONCURRENCY", "1024"}}).batch.concurrency, 1024);
  EXPECT_TRUE(load({{"POSTGRESQL_METRICS_ENABLED", "1"}}).observe.metrics_enabled);
  EXPECT_FALSE(load({{"POSTGRESQL_METRICS_ENABLED", "0"}}).observe.metrics_enabled);
  EXPECT_FALSE(load({}).observe.log_parameters);
  EXPECT_TRUE(load({{"POSTGRESQL_LOG_PARAMETERS", "true"}}).observe.log_parameters);
}

TEST(config, every_bad_value_names_variable_value_and_range) {
  const char* vars[] = {"POSTGRESQL_MAX_RETRIES",
                        "POSTGRESQL_RETRY_DELAY",
                        "POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD",
                        "POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT",
                        "POSTGRESQL_CONNECTION_TIMEOUT",
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
  o.pool.max_size = 0;
  EXPECT_THROW(o.validate(), config_error);
  o = client_options{};
  o.resilience.retry.max_retries = -1;
  EXPECT_THROW(o.validate(), config_error);
  o = client_options{};
  o.pool.min_size = 11;
  EXPECT_THROW(o.validate(), config_error);
}

namespace {

std::string validate_error(const client_options& o) {
  try {
    o.validate();
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

template <typename Options>
std::string component_error(const Options& o) {
  try {
    o.validate();
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(config, every_variable_lands_in_its_part_of_the_tree) {
  // One variable at a time, set to a value other than its default: exactly the member the
  // documentation names changes, nothing else.
  const client_options d;
  const auto o = load({{"POSTGRESQL_MAX_RETRIES", "7"}});
  EXPECT_EQ(o.resilience.retry.max_retries, 7);
  EXPECT_EQ(load({{"POSTGRESQL_RETRY_DELAY", "250"}}).resilience.retry.base_delay.count(), 250);
  EXPECT_EQ(load({{"POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", "9"}}).resilience.breaker.failure_threshold, 9);
  EXPECT_EQ(load({{"POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", "4000"}}).resilience.breaker.open_duration.count(), 4000);
  EXPECT_EQ(load({{"POSTGRESQL_CONNECTION_TIMEOUT", "3000"}}).connection.connect_timeout.count(), 3000);
  EXPECT_EQ(load({{"POSTGRESQL_STATEMENT_TIMEOUT", "9000"}}).connection.statement_timeout.count(), 9000);
  EXPECT_EQ(load({{"POSTGRESQL_STATEMENT_CACHE_SIZE", "0"}}).connection.statement_cache_capacity, 0u);
  EXPECT_EQ(load({{"POSTGRESQL_POOL_MIN", "2"}}).pool.min_size, 2u);
  EXPECT_EQ(load({{"POSTGRESQL_POOL_MAX", "20"}}).pool.max_size, 20u);
  EXPECT_EQ(load({{"POSTGRESQL_ACQUIRE_TIMEOUT", "700"}}).pool.acquire_timeout.count(), 700);
  EXPECT_EQ(load({{"POSTGRESQL_HEALTH_CHECK_INTERVAL", "5000"}}).pool.health_check_interval.count(), 5000);
  EXPECT_EQ(load({{"POSTGRESQL_BATCH_SIZE", "64"}}).batch.batch_size, 64u);
  EXPECT_EQ(load({{"POSTGRESQL_BATCH_CONCURRENCY", "5"}}).batch.concurrency, 5u);
  EXPECT_EQ(load({{"POSTGRESQL_BATCH_TIMEOUT", "1500"}}).batch.timeout.count(), 1500);
  EXPECT_EQ(load({{"POSTGRESQL_SLOW_QUERY_THRESHOLD", "80"}}).observe.slow_query_threshold.count(), 80);
  EXPECT_FALSE(load({{"POSTGRESQL_METRICS_ENABLED", "false"}}).observe.metrics_enabled);
  EXPECT_TRUE(load({{"POSTGRESQL_LOG_PARAMETERS", "1"}}).observe.log_parameters);
  // One knob, one member: the retry variable left everything else at its default.
  EXPECT_EQ(o.pool.max_size, d.pool.max_size);
  EXPECT_EQ(o.resilience.retry.base_delay, d.resilience.retry.base_delay);
  EXPECT_EQ(o.connection.connect_timeout, d.connection.connect_timeout);
  // A base delay above the default cap raises the cap (the range allows 600000 ms).
  const auto slow = load({{"POSTGRESQL_RETRY_DELAY", "60000"}});
  EXPECT_EQ(slow.resilience.retry.max_delay.count(), 60000);
}

TEST(config, validate_names_the_field_by_its_path_and_its_variable) {
  client_options o;
  o.pool.max_size = 0;
  EXPECT_EQ(validate_error(o),
            "pool.max_size = 0 is out of range: expected an integer in 1–10000 (POSTGRESQL_POOL_MAX)");
  o = {};
  o.connection.connect_timeout = std::chrono::milliseconds(50);
  EXPECT_EQ(validate_error(o),
            "connection.connect_timeout = 50 ms is out of range: expected an integer in "
            "100–600000 ms (POSTGRESQL_CONNECTION_TIMEOUT)");
  o = {};
  o.resilience.retry.max_retries = 101;
  EXPECT_NE(validate_error(o).find("resilience.retry.max_retries = 101"), std::string::npos);
  o = {};
  o.pool.min_size = 11;
  EXPECT_NE(validate_error(o).find("pool.min_size = 11 is out of range: must not exceed pool.max_size (10)"),
            std::string::npos);
  // Knobs without a variable are checked by their component, in the same format.
  o = {};
  o.pool.lifetime_jitter = 0.9;
  EXPECT_EQ(validate_error(o), "pool_options.lifetime_jitter = 0.9 is out of range: expected a number in 0–0.5");
  o = {};
  o.resilience.budget.window = std::chrono::milliseconds(10);
  EXPECT_NE(validate_error(o).find("retry_budget_options.window = 10 ms is out of range"), std::string::npos);
  o = {};
  o.connection.cancel_timeout = std::chrono::milliseconds(0);
  EXPECT_NE(validate_error(o).find("connection_options.cancel_timeout = 0 ms is out of range"), std::string::npos);
  // A client connects to client_options::dsn only.
  o = {};
  o.connection.dsn = "host=elsewhere";
  EXPECT_NE(validate_error(o).find("leave connection.dsn empty"), std::string::npos);
  // And the DSN is part of validation.
  o = {};
  o.dsn = "host=db port=abc";
  EXPECT_NE(validate_error(o).find("port=\"abc\" is invalid"), std::string::npos);
}

TEST(config, every_component_uses_one_message_format) {
  const std::string format = " is out of range: expected ";
  pool_options p;
  p.max_waiters = 0;  // 0 would reject every waiter
  EXPECT_NE(component_error(p).find("pool_options.max_waiters = 0" + format), std::string::npos);
  retry_options r;
  r.max_delay = std::chrono::milliseconds(5);
  EXPECT_NE(component_error(r).find("retry_options.max_delay = 5 ms" + format), std::string::npos);
  breaker_options b;
  b.half_open_probes = 0;
  EXPECT_NE(component_error(b).find("breaker_options.half_open_probes = 0" + format), std::string::npos);
  batch_options bo;
  bo.concurrency = 2000;
  EXPECT_EQ(component_error(bo), "batch_options.concurrency = 2000" + format + "an integer in 1–1024");
  connection_options c;
  c.statement_cache_capacity = 200000;
  EXPECT_NE(component_error(c).find("connection_options.statement_cache_capacity = 200000" + format),
            std::string::npos);
  observe_options ob;
  ob.slow_query_threshold = std::chrono::milliseconds(0);
  EXPECT_NE(component_error(ob).find("observe_options.slow_query_threshold = 0 ms" + format), std::string::npos);
  resilience_options re;
  re.retry.max_retries = -1;
  EXPECT_NE(component_error(re).find("retry_options.max_retries = -1" + format), std::string::npos);
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
  // What libpq read, in libpq's keyword order, with the secrets replaced; URIs stay URIs.
  EXPECT_EQ(redact_dsn("host=db user=app password=s3cr3t dbname=x"), "user=app password=**** dbname=x host=db");
  EXPECT_EQ(redact_dsn("host=db password='s3 cr\\'3t' dbname=x"), "password=**** dbname=x host=db");
  EXPECT_EQ(redact_dsn("password = s3cr3t host=db"), "password=**** host=db");
  EXPECT_EQ(redact_dsn("host=db sslpassword=s3cr3t application_name='my app'"),
            "host=db application_name='my app' sslpassword=****");
  EXPECT_EQ(redact_dsn("postgresql://app:s3cr3t@db:5432/x"), "postgresql://app:****@db:5432/x");
  EXPECT_EQ(redact_dsn("postgres://app@db/x"), "postgres://app@db/x");
  EXPECT_EQ(redact_dsn("postgresql://db/x?user=app&password=s3cr3t&sslmode=require"),
            "postgresql://app:****@db/x?sslmode=require");
  EXPECT_EQ(redact_dsn("postgresql://a:b:c@h"), "postgresql://a:****@h");
  EXPECT_EQ(redact_dsn("postgresql://a:s3?cr3t@h/x"), "postgresql://a:****@h/x");
  EXPECT_EQ(redact_dsn("postgresql://u@[::1]:5432,h2:5433/x?target_session_attrs=read-write"),
            "postgresql://u@[::1]:5432,h2:5433/x?target_session_attrs=read-write");
  EXPECT_EQ(redact_dsn("postgresql://%2Ftmp/x"), "postgresql://%2Ftmp/x");
  EXPECT_EQ(redact_dsn("host=db"), "host=db");
  EXPECT_EQ(redact_dsn(""), "");
  // A database name that is itself a connection string (libpq takes it literally here).
  EXPECT_EQ(redact_dsn("host=db dbname='postgresql://u:s3cr3t@h/x'"), "dbname=postgresql://u:****@h/x host=db");
  EXPECT_EQ(redact_dsn("postgresql://db/user%3Dx%20password%3Ds3cr3t"), "postgresql://db/user%3Dx%20password%3D****");
  // Not parseable: only the well-formed, non-secret start is shown.
  EXPECT_EQ(redact_dsn("host=db password=s3 cr3t"), "host=db password=****");
  EXPECT_EQ(redact_dsn("host=db hots=x password=s3cr3t"), "host=db hots=****");
  EXPECT_EQ(redact_dsn("postgresql://a:s3@cr3t@h/x"), "postgresql://****@h/x");
}

namespace {

std::string dsn_error(const std::string& dsn) {
  try {
    validate_dsn(dsn);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(config, dsn_values_libpq_checks_only_when_connecting_are_config_errors) {
  // {DSN, text the message must contain: the keyword with its value, then the accepted values}
  const std::tuple<const char*, const char*, const char*> cases[] = {
      {"host=127.0.0.1 port=abc", "port=\"abc\"", "1–65535"},
      {"host=127.0.0.1 port=99999999", "port=\"99999999\"", "1–65535"},
      {"host=127.0.0.1 port=0", "port=\"0\"", "1–65535"},
      {"host=127.0.0.1 port=-5432", "port=\"-5432\"", "1–65535"},
      {"host=a,b port=5432,x", "port=\"5432,x\"", "1–65535"},
      {"postgresql://u@127.0.0.1:abc/db", "port=\"abc\"", "1–65535"},
      {"postgresql://u@127.0.0.1:5432,127.0.0.1:70000/db", "port=\"5432,70000\"", "1–65535"},
      {"host=h sslmode=bogus", "sslmode=\"bogus\"", "disable, allow, prefer, require, verify-ca, verify-full"},
      {"host=h sslmode=Require", "sslmode=\"Require\"", "verify-full"},
      {"postgresql://h/db?sslmode=", "sslmode=\"\"", "verify-full"},
      {"host=h gssencmode=always", "gssencmode=\"always\"", "disable, prefer, require"},
      {"host=h channel_binding=maybe", "channel_binding=\"maybe\"", "disable, prefer, require"},
      {"host=h target_session_attrs=bogus", "target_session_attrs=\"bogus\"",
       "any, read-write, read-only, primary, standby, prefer-standby"},
      {"host=h connect_timeout=xyz", "connect_timeout=\"xyz\"", "an integer"},
      {"host=h connect_timeout=", "connect_timeout=\"\"", "an integer"},
      {"host=h connect_timeout=99999999999", "connect_timeout=\"99999999999\"", "an integer"},
      {"postgresql://h/db?connect_timeout=1.5", "connect_timeout=\"1.5\"", "an integer"},
      {"host=h keepalives=x", "keepalives=\"x\"", "an integer"},
      {"host=h keepalives_idle=10s", "keepalives_idle=\"10s\"", "an integer"},
      {"host=h keepalives_interval=+-1", "keepalives_interval=\"+-1\"", "an integer"},
      {"host=h keepalives_count=0x10", "keepalives_count=\"0x10\"", "an integer"},
      {"host=h tcp_user_timeout=soon", "tcp_user_timeout=\"soon\"", "an integer"},
      {"host=h ssl_min_protocol_version=TLSv9", "ssl_min_protocol_version=\"TLSv9\"", "TLSv1.2"},
      {"host=h ssl_max_protocol_version=ssl3", "ssl_max_protocol_version=\"ssl3\"", "TLSv1.3"},
      {"host=h ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2", "ssl_min_protocol_version",
       "ssl_max_protocol_version"},
      {"hostaddr=db.example", "hostaddr=\"db.example\"", "numeric"},
      {"host=a,b,c port=1,2", "port", "3 hosts"},
      {"postgresql://a:1,b:2/db?port=1,2,3", "port", "2 hosts"},
      {"host=a hostaddr=127.0.0.1,127.0.0.2", "host", "hostaddr"},
  };
  for (const auto& [dsn, keyword, accepted] : cases) {
    const std::string msg = dsn_error(dsn);
    ASSERT_FALSE(msg.empty()) << dsn << " was accepted";
    EXPECT_NE(msg.find(keyword), std::string::npos) << dsn << ": " << msg;
    EXPECT_NE(msg.find(accepted), std::string::npos) << dsn << ": " << msg;
    EXPECT_NE(msg.find("invalid connection string"), std::string::npos) << msg;
    // The same through the environment and through validate().
    EXPECT_THROW((void)load({{"DATABASE_URL", dsn}}), config_error) << dsn;
    client_options o;
    o.dsn = dsn;
    EXPECT_THROW(o.validate(), config_error) << dsn;
  }
}

TEST(config, dsn_values_libpq_accepts_stay_accepted) {
  for (const char* dsn : {"host=h port=5432",
                          "host=h port=1",
                          "host=h port=65535",
                          "host=h port=+5432",
                          "host=h port=' 5432 '",
                          "host=h port=",
                          "host=a,b port=5432",
                          "host=a,b port=5432,5433",
                          "host=a,b port=,5433",
                          "host=a,b,c",
                          "port=5433",
                          "hostaddr=127.0.0.1,::1 port=1,2",
                          "host=a,b hostaddr=127.0.0.1,",
                          "postgresql://u@a:5432,b/db",
                          "postgresql://u@[::1]:5432/db?target_session_attrs=read-write",
                          "host=h connect_timeout=-1 keepalives=0 keepalives_idle=0 tcp_user_timeout=-5",
                          "host=h connect_timeout=' 10 ' keepalives=1 keepalives_idle=30 keepalives_interval=5 "
                          "keepalives_count=3 tcp_user_timeout=0",
                          "host=h sslmode=disable",
                          "host=h sslmode=allow",
                          "host=h sslmode=prefer",
                          "host=h sslmode=require",
                          "host=h sslmode=verify-ca",
                          "host=h sslmode=verify-full",
                          "host=h gssencmode=disable",
                          "host=h gssencmode=prefer",
                          "host=h channel_binding=require",
                          "host=h target_session_attrs=any",
                          "host=h target_session_attrs=read-only",
                          "host=h target_session_attrs=primary",
                          "host=h target_session_attrs=standby",
                          "host=h target_session_attrs=prefer-standby",
                          "host=h ssl_min_protocol_version=tlsv1.2",
                          "host=h ssl_min_protocol_version=TLSv1.2 ssl_max_protocol_version=TLSv1.3",
                          "host=h ssl_max_protocol_version=",
                          "postgresql://h/db%40x",
                          ""}) {
    EXPECT_EQ(dsn_error(dsn), "") << dsn;
  }
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

namespace {

// A password whose every segment carries the marker "Kp": any piece of it that shows up is a leak.
std::string marked_password(std::string_view specials) {
  std::string pw = "Kp0";
  for (char c : specials) pw += std::string(1, c) + "Kp" + std::string(1, static_cast<char>('a' + pw.size() % 26));
  return pw;
}

std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out.push_back(static_cast<char>(c));
    else {
      static constexpr char hex[] = "0123456789ABCDEF";
      out += {'%', hex[c >> 4], hex[c & 15]};
    }
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

// Every way a password can be written in a DSN libpq parses, for one password.
std::vector<std::string> dsns_with_password(const std::string& pw) {
  std::vector<std::string> v{
      "host=db user=app password=" + quote_conninfo(pw) + " dbname=x",
      "host=db sslpassword=" + quote_conninfo(pw) + " dbname=x",
      "password = " + quote_conninfo(pw) + " host=db",
      "postgresql://app:" + percent_encode(pw) + "@db:5432/x",
      "postgres://app:" + percent_encode(pw) + "@db/x?sslmode=require",
      "postgresql://db/x?user=app&password=" + percent_encode(pw) + "&sslmode=require",
      "postgresql://db/x?sslpassword=" + percent_encode(pw),
  };
  if (pw.find_first_of(" '\\") == std::string::npos) v.push_back("host=db password=" + pw + " dbname=x");
  // In the user info libpq takes everything up to the first '@' (or '/'), '%' starts an escape.
  if (pw.find_first_of("@/%") == std::string::npos) v.push_back("postgresql://app:" + pw + "@db:5432/x");
  return v;
}

}  // namespace

TEST(config, redact_dsn_hides_passwords_with_every_special_character) {
  const std::string specials = "?@:/#%&='\\ ";
  std::vector<std::string> passwords{marked_password(specials)};
  for (char c : specials) passwords.push_back(marked_password(std::string(1, c)));
  for (const auto& pw : passwords) {
    for (const auto& dsn : dsns_with_password(pw)) {
      const std::string shown = redact_dsn(dsn);
      EXPECT_EQ(shown.find("Kp"), std::string::npos) << dsn << " -> " << shown;
      EXPECT_NE(shown.find("****"), std::string::npos) << dsn << " -> " << shown;
      EXPECT_NE(shown.find("db"), std::string::npos) << dsn << " -> " << shown;
      // A DSN that is otherwise wrong reports the error without the password.
      const bool has_query = dsn.find('?', dsn.rfind('/')) != std::string::npos;  // after the path, not in user info
      const std::string bad = !dsn.starts_with("postgres") ? dsn + " port=abc"
                              : has_query                  ? dsn + "&port=abc"
                                                           : dsn + "?port=abc";
      const std::string msg = dsn_error(bad);
      EXPECT_NE(msg.find("port=\"abc\""), std::string::npos) << bad << ": " << msg;
      EXPECT_EQ(msg.find("Kp"), std::string::npos) << bad << ": " << msg;
    }
  }
}

TEST(config, redact_dsn_keeps_everything_else_as_libpq_reads_it) {
  // The redacted form parses to the same options, with "****" for each secret.
  for (const auto& dsn : dsns_with_password(marked_password("?@:/#%&='\\ "))) {
    const std::string shown = redact_dsn(dsn);
    char* err = nullptr;
    PQconninfoOption* before = PQconninfoParse(dsn.c_str(), &err);
    PQconninfoOption* after = PQconninfoParse(shown.c_str(), &err);
    ASSERT_NE(before, nullptr) << dsn;
    ASSERT_NE(after, nullptr) << shown;
    for (int i = 0; before[i].keyword != nullptr; ++i) {
      const std::string keyword = before[i].keyword;
      ASSERT_EQ(keyword, after[i].keyword);
      const bool secret = keyword == "password" || keyword == "sslpassword";
      if (before[i].val == nullptr) {
        EXPECT_EQ(after[i].val, nullptr) << keyword << " in " << shown;
      } else {
        ASSERT_NE(after[i].val, nullptr) << keyword << " in " << shown;
        EXPECT_EQ(std::string(after[i].val), secret ? "****" : before[i].val) << keyword << " in " << shown;
      }
    }
    PQconninfoFree(before);
    PQconninfoFree(after);
  }
}

TEST(config, redact_dsn_hides_what_libpq_cannot_parse) {
  const char* cases[] = {
      "host=db password=Kp1 Kp2 dbname=x",    // an unquoted space: libpq stops at "Kp2"
      "host=db password='Kp1 Kp2",            // unterminated quote
      "host=db password Kp1",                 // no '='
      "host=db Password=Kp1",                 // not a keyword libpq knows
      "host=db pasword=Kp1 sslmode=require",  // nor this one
      "postgresql://u:Kp1@Kp2@db/x",          // an unencoded '@' in the password
      "postgresql://u:Kp1/Kp2@db/x",          // an unencoded '/' in the password
      "postgresql://u:Kp1%zzKp2@db/x",        // a broken escape
      "postgresql://u:Kp1@[::1/x",            // broken IPv6 host
      "postgresql://u:Kp1/K?p2@db/x",         // '/' and '?' unencoded
      "POSTGRESQL://u:Kp1@db/x",              // libpq only knows the lower-case scheme
      "postgresql:/u:Kp1@db/x",               // one slash
      "postgresql://db/x?password=Kp1&nope",  // a query parameter without '='
  };
  for (const char* dsn : cases) {
    const std::string shown = redact_dsn(dsn);
    EXPECT_EQ(shown.find("Kp"), std::string::npos) << dsn << " -> " << shown;
    const std::string msg = dsn_error(dsn);
    EXPECT_FALSE(msg.empty()) << dsn << " was accepted";
    EXPECT_EQ(msg.find("Kp"), std::string::npos) << dsn << ": " << msg;
  }
}

TEST(config, pooler_mode_is_read_and_validated) {
  EXPECT_EQ(load({}).connection.pooler, pooler_mode::none);
  EXPECT_EQ(load({{"POSTGRESQL_POOLER", "transaction"}}).connection.pooler, pooler_mode::transaction);
  EXPECT_EQ(load({{"POSTGRESQL_POOLER", "statement"}}).connection.pooler, pooler_mode::statement);
  EXPECT_EQ(load({{"POSTGRESQL_POOLER", "session"}}).connection.pooler, pooler_mode::session);
  EXPECT_EQ(load({{"POSTGRESQL_POOLER", "none"}}).connection.pooler, pooler_mode::none);
  for (const char* bad : {"", "Transaction", "pgbouncer", "transaction ", "1"}) {
    EXPECT_EQ(error_of({{"POSTGRESQL_POOLER", bad}}),
              fmt::format("POSTGRESQL_POOLER=\"{}\" is invalid: expected one of none, session, transaction, statement",
                          bad));
  }
  client_options o;
  o.connection.pooler = static_cast<pooler_mode>(7);
  EXPECT_THROW(o.validate(), config_error);
}

TEST(config, pool_mode_is_read_and_validated) {
  EXPECT_EQ(load({}).pool.mode, pool_mode::fixed);
  EXPECT_EQ(load({{"POSTGRESQL_POOL_MODE", "adaptive"}}).pool.mode, pool_mode::adaptive);
  EXPECT_EQ(load({{"POSTGRESQL_POOL_MODE", "observe"}}).pool.mode, pool_mode::observe);
  EXPECT_EQ(load({{"POSTGRESQL_POOL_MODE", "fixed"}}).pool.mode, pool_mode::fixed);
  for (const char* bad : {"", "Adaptive", "auto", "adaptive ", "1"}) {
    EXPECT_EQ(error_of({{"POSTGRESQL_POOL_MODE", bad}}),
              fmt::format("POSTGRESQL_POOL_MODE=\"{}\" is invalid: expected one of fixed, adaptive, observe", bad));
  }
}

TEST(config, startup_parameters_pgbouncer_rejects_are_refused_with_a_pooler) {
  const std::string with_options = "host=h dbname=d options='-c statement_timeout=100'";
  EXPECT_NO_THROW((void)load({{"DATABASE_URL", with_options}}));
  for (const char* mode : {"session", "transaction", "statement"}) {
    const auto msg = error_of({{"DATABASE_URL", with_options}, {"POSTGRESQL_POOLER", mode}});
    EXPECT_NE(msg.find("dsn (DATABASE_URL) sets options="), std::string::npos) << msg;
    EXPECT_NE(msg.find("PgBouncer"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fmt::format("POSTGRESQL_POOLER) = {}", mode)), std::string::npos) << msg;
  }
  const auto uri = error_of(
      {{"DATABASE_URL", "postgresql://u:secret@h/d?options=-c%20geqo%3Doff"}, {"POSTGRESQL_POOLER", "transaction"}});
  EXPECT_NE(uri.find("options="), std::string::npos) << uri;
  EXPECT_EQ(uri.find("secret"), std::string::npos) << uri;
  EXPECT_NO_THROW(
      (void)load({{"DATABASE_URL", "host=h dbname=d application_name=svc"}, {"POSTGRESQL_POOLER", "transaction"}}));
  connection_options c;
  c.dsn = "host=h replication=database";
  c.pooler = pooler_mode::transaction;
  EXPECT_THROW(c.validate(), config_error);
  c.pooler = pooler_mode::none;
  EXPECT_NO_THROW(c.validate());
}
