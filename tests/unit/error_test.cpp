// Errors are immutable and answer the pipeline's questions with predicates (docs/errors.md).

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

#include "error_builder.hpp"
#include "steadypg/error.hpp"
#include "steadypg/pipeline.hpp"

using namespace steadypg;
using internal::error_builder;

namespace {

constexpr request_facts sent{true, false, false};
constexpr request_facts commit{true, true, true};

server_error_fields fields_of(const char* state) {
  server_error_fields f;
  f.sqlstate = state;
  f.message = "from the server";
  return f;
}

struct error_row {
  const char* what;
  std::function<void()> raise;
  error_origin origin;
  bool reached_server;
  bool counts_for_breaker;
  bool indeterminate_commit;
};

// One of each error the library raises, raised the way it raises it.
const std::vector<error_row>& errors() {
  static const std::vector<error_row> rows = {
      {"connect failed",
       [] {
         throw error_builder(failure_kind::connect_failed, outcome::not_sent)
             .operation("connect")
             .broken()
             .build<connection_error>("could not connect");
       },
       error_origin::connection, false, true, false},
      {"login refused",
       [] {
         throw error_builder(failure_kind::connect_failed, outcome::fatal)
             .fields(fields_of("28P01"))
             .operation("connect")
             .build<connection_error>("password authentication failed");
       },
       error_origin::connection, false, true, false},
      {"connect timeout",
       [] {
         throw error_builder(failure_kind::connect_failed, outcome::not_sent)
             .operation("connect")
             .build<timeout_error>("could not connect within 10 ms");
       },
       error_origin::connection, false, true, false},
      {"dead pooled connection",
       [] { throw error_builder(failure_kind::connection_lost, outcome::not_sent).build<connection_error>("closed"); },
       error_origin::connection, false, true, false},
      {"lost while running", [] { internal::throw_connection_lost("lost", "execute", sent); }, error_origin::connection,
       true, true, false},
      {"lost COMMIT", [] { internal::throw_connection_lost("lost", "commit", commit); }, error_origin::connection, true,
       true, true},
      {"57P01 lost COMMIT", [] { internal::throw_server_error(fields_of("57P01"), "commit", commit, true); },
       error_origin::connection, true, true, true},
      {"57P01", [] { internal::throw_server_error(fields_of("57P01"), "execute", sent, true); },
       error_origin::connection, true, true, false},
      {"statement timeout with cancel",
       [] {
         throw error_builder(failure_kind::timeout, outcome::rolled_back)
             .cancel_sent()
             .build<timeout_error>("timed out");
       },
       error_origin::connection, true, true, false},
      {"23505", [] { internal::throw_server_error(fields_of("23505"), "execute", sent, false); }, error_origin::server,
       true, true, false},
      {"40001", [] { internal::throw_server_error(fields_of("40001"), "execute", sent, false); }, error_origin::server,
       true, true, false},
      {"40P01", [] { internal::throw_server_error(fields_of("40P01"), "execute", sent, false); }, error_origin::server,
       true, true, false},
      {"57014", [] { internal::throw_server_error(fields_of("57014"), "execute", sent, false); }, error_origin::server,
       true, true, false},
      {"42601", [] { internal::throw_server_error(fields_of("42601"), "execute", sent, false); }, error_origin::server,
       true, true, false},
      {"pipeline_aborted", [] { throw pipeline_aborted(); }, error_origin::server, false, true, false},
      {"pool_timeout", [] { throw pool_timeout("acquire timed out", failure_kind::timeout, outcome::not_sent); },
       error_origin::pool, false, false, false},
      {"pool_exhausted", [] { throw pool_exhausted("too many waiters", failure_kind::timeout, outcome::not_sent); },
       error_origin::pool, false, false, false},
      {"circuit_open", [] { throw circuit_open("open", failure_kind::connect_failed, outcome::not_sent); },
       error_origin::breaker, false, false, false},
      {"batch deadline",
       [] {
         throw error_builder(failure_kind::timeout, outcome::not_sent)
             .origin(error_origin::client)
             .build<timeout_error>("the batch timeout passed");
       },
       error_origin::client, false, false, false},
      {"callable ended the transaction",
       [] {
         throw error_builder(failure_kind::usage, outcome::indeterminate)
             .build<indeterminate_commit>("a callable ended the chunk's transaction");
       },
       error_origin::client, true, false, true},
      {"usage_error", [] { throw usage_error("wrong number of parameters"); }, error_origin::client, false, false,
       false},
      {"conversion_error", [] { throw conversion_error("not an integer"); }, error_origin::client, true, false, false},
      {"config_error", [] { throw config_error("bad option"); }, error_origin::client, false, false, false},
  };
  return rows;
}

}  // namespace

TEST(error_predicates, each_error_answers_the_pipelines_questions) {
  for (const auto& r : errors()) {
    try {
      r.raise();
      FAIL() << r.what << " did not throw";
    } catch (const error& e) {
      EXPECT_EQ(e.origin(), r.origin) << r.what << ": " << to_string(e.origin());
      EXPECT_EQ(e.reached_server(), r.reached_server) << r.what;
      EXPECT_EQ(e.counts_for_breaker(), r.counts_for_breaker) << r.what;
      EXPECT_EQ(e.is_indeterminate_commit(), r.indeterminate_commit) << r.what;
      EXPECT_EQ(e.is_indeterminate_commit(), dynamic_cast<const indeterminate_commit*>(&e) != nullptr) << r.what;
      EXPECT_EQ(e.origin() == error_origin::pool, dynamic_cast<const pool_timeout*>(&e) != nullptr) << r.what;
      EXPECT_EQ(e.origin() == error_origin::breaker, dynamic_cast<const circuit_open*>(&e) != nullptr) << r.what;
    }
  }
}

TEST(error_predicates, cancel_sent_only_when_the_connection_delivered_one) {
  const auto without = error_builder(failure_kind::timeout, outcome::indeterminate).build<timeout_error>("t");
  const auto with =
      error_builder(failure_kind::timeout, outcome::indeterminate).cancel_sent().build<timeout_error>("t");
  EXPECT_FALSE(without.cancel_sent());
  EXPECT_TRUE(with.cancel_sent());
  // A layer that turns the timeout into its own error keeps the fact.
  const auto carried = error_builder::from(with).outcome(outcome::fatal).build<timeout_error>(with.what());
  EXPECT_TRUE(carried.cancel_sent());
  EXPECT_EQ(carried.outcome(), outcome::fatal);
  EXPECT_FALSE(pool_timeout("acquire timed out", failure_kind::timeout, outcome::not_sent).cancel_sent());
}

// What the retry layer adds goes into a new error of the same dynamic type; the caught one
// is never changed.
TEST(error_immutability, call_facts_make_a_copy_of_the_same_type) {
  for (const auto& r : errors()) {
    try {
      r.raise();
      FAIL() << r.what << " did not throw";
    } catch (const error& e) {
      const std::string operation_before = e.operation();
      try {
        error_builder::raise_with_call_facts(e, {"batch", 4, {{"40001", "first", outcome::rolled_back}}, true, {}, {}});
        FAIL() << r.what << ": no rethrow";
      } catch (const error& copy) {
        EXPECT_EQ(typeid(copy), typeid(e)) << r.what << ": " << typeid(copy).name();
        EXPECT_STREQ(copy.what(), e.what()) << r.what;
        EXPECT_EQ(copy.attempts(), 4) << r.what;
        ASSERT_EQ(copy.earlier_attempts().size(), 1u) << r.what;
        EXPECT_EQ(copy.earlier_attempts()[0].sqlstate, "40001") << r.what;
        EXPECT_TRUE(copy.budget_exhausted()) << r.what;
        EXPECT_EQ(copy.operation(), operation_before.empty() ? std::string("batch") : operation_before) << r.what;
        EXPECT_EQ(copy.sqlstate(), e.sqlstate()) << r.what;
        EXPECT_EQ(copy.kind(), e.kind()) << r.what;
        EXPECT_EQ(copy.outcome(), e.outcome()) << r.what;
        EXPECT_EQ(copy.origin(), e.origin()) << r.what;
        EXPECT_EQ(copy.poisons_connection(), e.poisons_connection()) << r.what;
        EXPECT_EQ(copy.cancel_sent(), e.cancel_sent()) << r.what;
        EXPECT_EQ(copy.is_indeterminate_commit(), e.is_indeterminate_commit()) << r.what;
      }
      EXPECT_EQ(e.attempts(), 1) << r.what;
      EXPECT_TRUE(e.earlier_attempts().empty()) << r.what;
      EXPECT_FALSE(e.budget_exhausted()) << r.what;
      EXPECT_EQ(e.operation(), operation_before) << r.what;
    }
  }
}

TEST(error_immutability, subclasses_stay_catchable_after_the_rethrow) {
  auto rethrown = [](const std::function<void()>& raise) {
    try {
      raise();
    } catch (const error& e) {
      error_builder::raise_with_call_facts(e, {"transaction", 2, {}, false, {}, {}});
    }
  };
  EXPECT_THROW(rethrown([] { internal::throw_connection_lost("lost", "commit", commit); }), indeterminate_commit);
  EXPECT_THROW(rethrown([] { internal::throw_server_error(fields_of("40001"), "execute", sent, false); }),
               serialization_failure);
  EXPECT_THROW(rethrown([] { internal::throw_server_error(fields_of("23505"), "execute", sent, false); }),
               unique_violation);
  EXPECT_THROW(rethrown([] { throw pool_exhausted("full", failure_kind::timeout, outcome::not_sent); }),
               pool_exhausted);
  EXPECT_THROW(rethrown([] { throw pool_exhausted("full", failure_kind::timeout, outcome::not_sent); }), pool_timeout);
  EXPECT_THROW(rethrown([] { throw pipeline_aborted(); }), pipeline_aborted);
  EXPECT_THROW(rethrown([] { throw usage_error("bad"); }), usage_error);
}
