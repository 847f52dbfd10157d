// A failover between COMMIT and its resolution (docs/resilience.md#resolving-a-lost-commit): the
// reply to COMMIT is lost on the old primary, a standby is promoted, and the reconnect to the same
// address reaches the new primary. It is the same cluster (same system identifier) on a new
// timeline, where the transaction id may name another transaction: the outcome stays unknown,
// and the transaction is never run again.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "fault_proxy.hpp"
#include "steadypg/steadypg.hpp"
#include "steadypg/testing/temp_replica_set.hpp"

using namespace std::chrono_literals;
using namespace steadypg;
using steadypg::testing::temp_replica_set;
using steadypg::testing::temp_replica_set_options;

namespace {

struct resolution_observer : observer {
  std::atomic<int> committed{0}, aborted{0}, unknown{0};
  std::string reason;
  void on_commit_resolved(const commit_resolution_report& r) noexcept override {
    reason = r.reason;
    if (r.result == commit_resolution::committed) ++committed;
    if (r.result == commit_resolution::aborted) ++aborted;
    if (r.result == commit_resolution::unknown) ++unknown;
  }
};

std::int64_t count_on(temp_replica_set& set, std::size_t i, const std::string& sql) {
  return connection(set.node(i).dsn()).query_value<std::int64_t>(sql);
}

}  // namespace

TEST(commit_failover, a_failover_between_commit_and_resolution_stays_in_doubt_and_is_never_replayed) {
  temp_replica_set_options so;
  so.replicas = 1;
  temp_replica_set set(so);
  {
    connection c(set.node(0).dsn());
    c.execute("CREATE TABLE cf_moved (id int)");
  }
  set.wait_caught_up(1);

  steadypg::test::fault_proxy proxy(set.node(0).port());
  resolution_observer obs;
  client_options o;
  o.dsn = proxy.dsn();
  o.pool.max_size = 1;
  o.connection.connect_timeout = 1000ms;
  o.resilience.retry.base_delay = 20ms;
  client db(o, &obs);
  proxy.lose_commit_reply();
  int runs = 0;
  std::optional<std::uint64_t> xid;
  try {
    db.transaction([&](transaction& tx) {
      ++runs;
      tx.execute("INSERT INTO cf_moved VALUES ($1)", 1);
      // The failover, before COMMIT: the standby becomes a primary on a new timeline, and new
      // connections to the address reach it; the transaction's own connection stays on the old one.
      set.promote(1);
      proxy.retarget(set.node(1).port());
    });
    FAIL() << "the server that answers after the failover cannot tell what became of the transaction";
  } catch (const indeterminate_commit& e) {
    EXPECT_EQ(e.resolution(), commit_resolution::unknown);
    ASSERT_TRUE(e.xid().has_value()) << "the id is in the error, for a later check";
    xid = e.xid();
    EXPECT_NE(std::string(e.what()).find("a failover happened"), std::string::npos) << e.what();
    std::printf("[ metrics  ] failover between COMMIT and resolution: %s\n", e.what());
  }
  EXPECT_EQ(runs, 1) << "never replayed";
  EXPECT_EQ(obs.unknown.load(), 1);
  EXPECT_NE(obs.reason.find("timeline 2"), std::string::npos) << obs.reason;
  EXPECT_EQ(obs.committed.load() + obs.aborted.load(), 0);
  EXPECT_EQ(count_on(set, 0, "SELECT count(*) FROM cf_moved"), 1) << "it committed on the old primary";
  EXPECT_EQ(count_on(set, 1, "SELECT count(*) FROM cf_moved"), 0) << "after the new primary had left it";
  ASSERT_TRUE(xid.has_value());
  // The old primary, asked directly, knows the answer the client could not get.
  connection old(set.node(0).dsn());
  EXPECT_EQ(old.query_value<std::string>(fmt::format("SELECT pg_xact_status('{}'::xid8)", *xid)), "committed");
}
