#include <gtest/gtest.h>

#include "steadypg/error.hpp"
#include "steadypg/sqlstate.hpp"

#include "error_builder.hpp"

using namespace steadypg;

namespace {

struct outcome_case {
  const char* sqlstate;
  failure_kind kind;
  request_facts facts;
  outcome expected;
};

constexpr request_facts sent{true, false, false};
constexpr request_facts not_sent_facts{false, false, false};
constexpr request_facts commit{true, true, true};
constexpr request_facts in_tx{true, false, true};

}  // namespace

TEST(sqlstate, classes) {
  EXPECT_EQ(classify_sqlstate("23505"), sqlstate_class::integrity_constraint_violation);
  EXPECT_EQ(classify_sqlstate("40001"), sqlstate_class::transaction_rollback);
  EXPECT_EQ(classify_sqlstate("08006"), sqlstate_class::connection_exception);
  EXPECT_EQ(classify_sqlstate("57P01"), sqlstate_class::operator_intervention);
  EXPECT_EQ(classify_sqlstate("42P01"), sqlstate_class::syntax_error_or_access_rule);
  EXPECT_EQ(classify_sqlstate("0A000"), sqlstate_class::feature_not_supported);
  EXPECT_EQ(classify_sqlstate("XX000"), sqlstate_class::internal_error);
  EXPECT_EQ(classify_sqlstate(""), sqlstate_class::unknown);
  EXPECT_EQ(classify_sqlstate("2350"), sqlstate_class::unknown);
  EXPECT_EQ(classify_sqlstate("ZZ000"), sqlstate_class::unknown);
  EXPECT_EQ(to_string(sqlstate_class::data_exception), "data_exception");
  EXPECT_EQ(to_string(sqlstate_class::unknown), "unknown");
}

TEST(sqlstate, outcome_table) {
  const outcome_case cases[] = {
      // Nothing reached the server: always safe.
      {"", failure_kind::connection_lost, not_sent_facts, outcome::not_sent},
      {"", failure_kind::timeout, not_sent_facts, outcome::not_sent},
      {"53300", failure_kind::connect_failed, not_sent_facts, outcome::not_sent},
      {"57P03", failure_kind::connect_failed, not_sent_facts, outcome::not_sent},
      {"", failure_kind::usage, sent, outcome::not_sent},
      // The server rolled the work back.
      {"40001", failure_kind::server_error, sent, outcome::rolled_back},
      {"40P01", failure_kind::server_error, sent, outcome::rolled_back},
      {"55P03", failure_kind::server_error, sent, outcome::rolled_back},
      {"40001", failure_kind::server_error, commit, outcome::rolled_back},
      // Read-only server.
      {"25006", failure_kind::server_error, sent, outcome::wrong_host},
      // Lost after sending.
      {"", failure_kind::connection_lost, sent, outcome::indeterminate},
      {"08006", failure_kind::server_error, sent, outcome::indeterminate},
      {"57P01", failure_kind::server_error, sent, outcome::indeterminate},
      {"57P02", failure_kind::server_error, sent, outcome::indeterminate},
      {"", failure_kind::timeout, sent, outcome::indeterminate},
      {"", failure_kind::connection_lost, commit, outcome::indeterminate},
      {"57P01", failure_kind::server_error, commit, outcome::indeterminate},
      // Inside an open transaction before COMMIT: nothing can have committed.
      {"", failure_kind::connection_lost, in_tx, outcome::rolled_back},
      {"57P01", failure_kind::server_error, in_tx, outcome::rolled_back},
      {"", failure_kind::timeout, in_tx, outcome::rolled_back},
      // Definite errors.
      {"23505", failure_kind::server_error, sent, outcome::fatal},
      {"23503", failure_kind::server_error, commit, outcome::fatal},
      {"22021", failure_kind::server_error, sent, outcome::fatal},
      {"22P02", failure_kind::server_error, sent, outcome::fatal},
      {"42601", failure_kind::server_error, sent, outcome::fatal},
      {"42P01", failure_kind::server_error, sent, outcome::fatal},
      {"28P01", failure_kind::server_error, sent, outcome::fatal},
      {"57014", failure_kind::server_error, sent, outcome::fatal},
      {"53300", failure_kind::server_error, sent, outcome::fatal},
      {"XX000", failure_kind::server_error, sent, outcome::fatal},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(classify_outcome(c.sqlstate, c.kind, c.facts), c.expected)
        << "sqlstate=" << c.sqlstate << " kind=" << static_cast<int>(c.kind) << " sent=" << c.facts.bytes_sent
        << " commit=" << c.facts.commit_sent << " in_tx=" << c.facts.in_transaction;
  }
}

TEST(sqlstate, health_failures) {
  EXPECT_TRUE(is_health_failure("", failure_kind::connect_failed));
  EXPECT_TRUE(is_health_failure("", failure_kind::connection_lost));
  EXPECT_TRUE(is_health_failure("", failure_kind::timeout));
  EXPECT_TRUE(is_health_failure("57P01", failure_kind::server_error));
  EXPECT_TRUE(is_health_failure("57P03", failure_kind::server_error));
  EXPECT_TRUE(is_health_failure("53300", failure_kind::server_error));
  EXPECT_TRUE(is_health_failure("08006", failure_kind::server_error));
  EXPECT_FALSE(is_health_failure("23505", failure_kind::server_error));
  EXPECT_FALSE(is_health_failure("42601", failure_kind::server_error));
  EXPECT_FALSE(is_health_failure("40001", failure_kind::server_error));
  EXPECT_FALSE(is_health_failure("", failure_kind::usage));
}

TEST(error, server_error_mapping) {
  auto raise = [](const char* code, bool broken, request_facts facts = sent) {
    server_error_fields f;
    f.sqlstate = code;
    f.message = "boom";
    f.detail = "some detail";
    internal::throw_server_error(f, "execute", facts, broken);
  };
  EXPECT_THROW(raise("23505", false), unique_violation);
  EXPECT_THROW(raise("40001", false), serialization_failure);
  EXPECT_THROW(raise("40P01", false), deadlock_detected);
  EXPECT_THROW(raise("57014", false), query_canceled);
  EXPECT_THROW(raise("42601", false), sql_error);
  EXPECT_THROW(raise("57P01", true), connection_error);
  EXPECT_THROW(raise("57P01", true, commit), indeterminate_commit);
  try {
    raise("23505", false);
  } catch (const error& e) {
    EXPECT_EQ(e.sqlstate(), "23505");
    EXPECT_EQ(e.operation(), "execute");
    EXPECT_EQ(e.outcome(), outcome::fatal);
    EXPECT_FALSE(e.is_transient());
    EXPECT_FALSE(e.poisons_connection());
    EXPECT_EQ(e.server().detail, "some detail");
    EXPECT_NE(std::string(e.what()).find("SQLSTATE 23505"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("DETAIL: some detail"), std::string::npos);
  }
  try {
    raise("57P01", true);
  } catch (const error& e) {
    EXPECT_TRUE(e.poisons_connection());
    EXPECT_TRUE(e.is_transient());
  }
}

TEST(error, lost_connection_and_attempts) {
  try {
    internal::throw_connection_lost("server closed the connection", "commit", commit);
    FAIL() << "no throw";
  } catch (const indeterminate_commit& e) {
    EXPECT_EQ(e.outcome(), outcome::indeterminate);
    EXPECT_TRUE(e.poisons_connection());
    EXPECT_NE(std::string(e.what()).find("may or may not have committed"), std::string::npos);
  }
  try {
    internal::throw_connection_lost("server closed the connection", "execute", in_tx);
    FAIL() << "no throw";
  } catch (const connection_error& e) {
    EXPECT_EQ(e.outcome(), outcome::rolled_back);
    EXPECT_EQ(e.attempts(), 1);
    // The retry layer adds its facts to a copy of the same type; the caught error is unchanged.
    try {
      internal::error_builder::raise_with_call_facts(e, {"transaction",
                                                         3,
                                                         {{"57P01", "first", outcome::indeterminate},
                                                          {"", "second", outcome::not_sent}},
                                                         true,
                                                         {},
                                                         {}});
      FAIL() << "no throw";
    } catch (const connection_error& copy) {
      EXPECT_EQ(copy.attempts(), 3);
      ASSERT_EQ(copy.earlier_attempts().size(), 2u);
      EXPECT_EQ(copy.earlier_attempts()[0].sqlstate, "57P01");
      EXPECT_TRUE(copy.budget_exhausted());
      EXPECT_EQ(copy.operation(), "execute") << "the error's own operation wins";
      EXPECT_EQ(copy.outcome(), outcome::rolled_back);
      EXPECT_STREQ(copy.what(), e.what());
    }
    EXPECT_EQ(e.attempts(), 1);
    EXPECT_TRUE(e.earlier_attempts().empty());
    EXPECT_FALSE(e.budget_exhausted());
  }
}
