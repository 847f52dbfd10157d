// The pure parts of multi-host support: splitting a DSN into hosts, the route table, write
// tokens, and the host choice over a topology snapshot.

#include <gtest/gtest.h>

#include <map>

#include "hosts.hpp"
#include "router.hpp"
#include "steadypg/cluster.hpp"
#include "steadypg/config.hpp"
#include "steadypg/dsn.hpp"
#include "steadypg/error.hpp"
#include "steadypg/route.hpp"

namespace steadypg {
namespace {

using internal::choose_host;
using internal::host_view;
using internal::route_failure;
using internal::split_hosts;
using internal::topology_snapshot;

TEST(cluster_hosts, a_key_value_dsn_with_three_hosts_gives_three_single_host_dsns) {
  auto hosts = split_hosts("host=a,b,c port=5432,5433,5434 dbname=app user=svc target_session_attrs=read-write");
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0].label, "a:5432");
  EXPECT_EQ(hosts[1].label, "b:5433");
  EXPECT_EQ(hosts[2].label, "c:5434");
  for (const auto& h : hosts) {
    EXPECT_EQ(h.dsn.find("target_session_attrs"), std::string::npos) << h.dsn;
    EXPECT_NE(h.dsn.find("dbname=app"), std::string::npos) << h.dsn;
    EXPECT_NE(h.dsn.find("user=svc"), std::string::npos) << h.dsn;
    EXPECT_EQ(h.dsn.find(','), std::string::npos) << h.dsn;
  }
  EXPECT_NE(hosts[1].dsn.find("host=b "), std::string::npos);
  EXPECT_NE(hosts[1].dsn.find("port=5433"), std::string::npos);
}

TEST(cluster_hosts, a_url_with_two_hosts_and_one_port_list_entry_per_host) {
  auto hosts = split_hosts("postgresql://u:secret@10.0.0.1:5432,10.0.0.2:6432/db?target_session_attrs=any");
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].label, "10.0.0.1:5432");
  EXPECT_EQ(hosts[1].label, "10.0.0.2:6432");
  EXPECT_NE(hosts[1].dsn.find("password=secret"), std::string::npos);
  EXPECT_NE(hosts[1].dsn.find("dbname=db"), std::string::npos);
}

TEST(cluster_hosts, one_port_applies_to_every_host_and_values_are_quoted) {
  auto hosts = split_hosts(R"(host=a,b port=7000 password='it\'s x' application_name='a b')");
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].label, "a:7000");
  EXPECT_EQ(hosts[1].label, "b:7000");
  EXPECT_NE(hosts[0].dsn.find("application_name='a b'"), std::string::npos) << hosts[0].dsn;
  EXPECT_NE(hosts[0].dsn.find(R"(password='it\'s x')"), std::string::npos) << hosts[0].dsn;
  // What libpq reads back is the original value.
  auto again = split_hosts(hosts[0].dsn);
  EXPECT_EQ(again[0].dsn, hosts[0].dsn);
}

TEST(cluster_hosts, a_single_host_dsn_is_kept_as_it_is) {
  const std::string dsn = "host=127.0.0.1 port=5499 dbname=postgres target_session_attrs=read-write";
  auto hosts = split_hosts(dsn);
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].dsn, dsn);
  EXPECT_EQ(hosts[0].label, "127.0.0.1:5499");
}

TEST(cluster_hosts, target_session_attrs_picks_the_default_route) {
  EXPECT_EQ(internal::route_of_session_attrs("host=a,b target_session_attrs=prefer-standby"), route::prefer_replica);
  EXPECT_EQ(internal::route_of_session_attrs("host=a,b target_session_attrs=standby"), route::replica);
  EXPECT_EQ(internal::route_of_session_attrs("host=a,b target_session_attrs=read-write"), route::primary);
  EXPECT_EQ(internal::route_of_session_attrs("host=a,b target_session_attrs=any"), route::any);
  EXPECT_EQ(internal::route_of_session_attrs("host=a,b"), std::nullopt);
}

TEST(cluster_route, names_round_trip_and_unknown_names_are_refused) {
  for (route r : {route::primary, route::read_write, route::prefer_replica, route::replica, route::any}) {
    EXPECT_EQ(parse_route(to_string(r)), r);
  }
  EXPECT_EQ(parse_route("standby"), std::nullopt);
  EXPECT_EQ(parse_route(""), std::nullopt);
}

TEST(cluster_route, write_tokens_use_the_pg_lsn_text_form) {
  write_token t{(std::uint64_t{0x16} << 32) | 0xB374D848u};
  EXPECT_EQ(t.text(), "16/B374D848");
  EXPECT_EQ(write_token::parse("16/B374D848")->lsn, t.lsn);
  EXPECT_EQ(write_token::parse("0/0")->lsn, 0u);
  for (const char* bad : {"", "/", "16/", "/1", "x/1", "1/2/3", "1 /2", "123456789/0"}) {
    EXPECT_FALSE(write_token::parse(bad).has_value()) << bad;
  }
}

TEST(cluster_config, the_route_and_the_probe_settings_come_from_the_environment) {
  std::map<std::string, std::string, std::less<>> env{{"POSTGRESQL_ROUTE", "prefer_replica"},
                                                      {"POSTGRESQL_MAX_REPLICA_LAG", "0"},
                                                      {"POSTGRESQL_PROBE_INTERVAL", "250"}};
  auto lookup = [&](std::string_view k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto o = client_options::from_env(lookup);
  EXPECT_EQ(o.cluster.default_route, route::prefer_replica);
  EXPECT_EQ(o.cluster.max_replica_lag.count(), 0);
  EXPECT_EQ(o.cluster.probe_interval.count(), 250);
  env["POSTGRESQL_ROUTE"] = "standby";
  try {
    (void)client_options::from_env(lookup);
    FAIL() << "an unknown route was accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("POSTGRESQL_ROUTE=\"standby\" is invalid: expected one of primary"),
              std::string::npos)
        << e.what();
  }
  env["POSTGRESQL_ROUTE"] = "replica";
  env["POSTGRESQL_PROBE_INTERVAL"] = "50";
  EXPECT_THROW((void)client_options::from_env(lookup), config_error);
  client_options direct;
  direct.cluster.probe_timeout = std::chrono::milliseconds{0};
  EXPECT_THROW(direct.validate(), config_error);
}

// A snapshot from roles: 'P' primary, 'R' replica, 'L' lagging, 'O' read-only primary,
// 'U' unavailable; lsn per host.
topology_snapshot snapshot_of(std::string_view roles, std::vector<std::uint64_t> lsns = {}) {
  topology_snapshot s;
  s.initialized = true;
  for (std::size_t i = 0; i < roles.size(); ++i) {
    host_view v;
    switch (roles[i]) {
      case 'P':
        v.role = host_role::primary;
        v.writable = true;
        v.timeline = 1;
        break;
      case 'R': v.role = host_role::replica; break;
      case 'L': v.role = host_role::lagging; break;
      case 'O': v.role = host_role::read_only_primary; break;
      default: v.role = host_role::unavailable; break;
    }
    v.lsn = i < lsns.size() ? lsns[i] : 0;
    if (v.writable) {
      ++s.primaries;
      s.primary = i;
    }
    s.hosts.push_back(v);
  }
  if (s.primaries != 1) s.primary.reset();
  return s;
}

TEST(cluster_router, writes_go_to_the_primary_or_fail_without_one) {
  auto s = snapshot_of("RPR");
  for (route r : {route::primary, route::read_write}) {
    auto c = choose_host(s, r, {}, 7);
    EXPECT_EQ(c.host, 1u);
    EXPECT_TRUE(c.fallback.empty());
  }
  auto none = snapshot_of("RUR");
  auto c = choose_host(none, route::primary, {}, 0);
  EXPECT_FALSE(c.host);
  EXPECT_EQ(c.failure, route_failure::no_primary);
}

TEST(cluster_router, replicas_are_balanced_round_robin_and_skip_lagging_down_and_open_breakers) {
  auto s = snapshot_of("PRLRUO");
  std::map<std::size_t, int> seen;
  for (std::uint64_t turn = 0; turn < 30; ++turn) ++seen[*choose_host(s, route::replica, {}, turn).host];
  EXPECT_EQ(seen.size(), 3u);  // hosts 1, 3 and the read-only primary 5
  EXPECT_EQ(seen[1], 10);
  EXPECT_EQ(seen[3], 10);
  EXPECT_EQ(seen[5], 10);
  const internal::host_mask open = (1U << 3) | (1U << 5);
  for (std::uint64_t turn = 0; turn < 5; ++turn) EXPECT_EQ(choose_host(s, route::replica, {}, turn, open).host, 1u);
}

TEST(cluster_router, prefer_replica_falls_back_to_the_primary_and_says_why) {
  auto c = choose_host(snapshot_of("PUU"), route::prefer_replica, {}, 0);
  EXPECT_EQ(c.host, 0u);
  EXPECT_EQ(c.fallback, "none");
  c = choose_host(snapshot_of("PLL"), route::prefer_replica, {}, 0);
  EXPECT_EQ(c.host, 0u);
  EXPECT_EQ(c.fallback, "lag");
  c = choose_host(snapshot_of("UUR"), route::prefer_replica, {}, 0);
  EXPECT_EQ(c.host, 2u);
  c = choose_host(snapshot_of("UUU"), route::prefer_replica, {}, 0);
  EXPECT_EQ(c.failure, route_failure::no_primary);
}

TEST(cluster_router, replica_fails_fast_when_none_qualifies) {
  auto c = choose_host(snapshot_of("PUL"), route::replica, {}, 0);
  EXPECT_FALSE(c.host);
  EXPECT_EQ(c.failure, route_failure::no_replica);
  EXPECT_EQ(c.fallback, "lag");
}

TEST(cluster_router, a_write_token_keeps_reads_off_replicas_that_have_not_replayed_it) {
  auto s = snapshot_of("PRR", {500, 300, 450});
  EXPECT_EQ(choose_host(s, route::replica, write_token{400}, 0).host, 2u);
  EXPECT_EQ(choose_host(s, route::replica, write_token{400}, 1).host, 2u);
  auto c = choose_host(s, route::prefer_replica, write_token{480}, 0);
  EXPECT_EQ(c.host, 0u);
  EXPECT_EQ(c.fallback, "token");
  c = choose_host(s, route::replica, write_token{480}, 0);
  EXPECT_EQ(c.failure, route_failure::no_replica);
}

TEST(cluster_router, any_uses_every_serving_host_but_not_a_split_brain_loser) {
  auto s = snapshot_of("PRP");  // two writable hosts: the snapshot elects none
  s.hosts[2].timeline = 2;
  s.primary = 2;  // the higher timeline won
  std::map<std::size_t, int> seen;
  for (std::uint64_t turn = 0; turn < 10; ++turn) ++seen[*choose_host(s, route::any, {}, turn).host];
  EXPECT_EQ(seen.count(0), 0u);
  EXPECT_EQ(seen[1], 5);
  EXPECT_EQ(seen[2], 5);
  EXPECT_EQ(choose_host(s, route::primary, {}, 0).host, 2u);
}

}  // namespace
TEST(cluster_hosts, dsn_values_are_quoted_only_when_libpq_needs_it) {
  EXPECT_EQ(dsn_value("app"), "app");
  EXPECT_EQ(dsn_value(""), "''");
  EXPECT_EQ(dsn_value("a b"), "'a b'");
  EXPECT_EQ(dsn_value(R"(it's)"), R"('it\'s')");
  EXPECT_EQ(dsn_value(R"(back\slash)"), R"('back\\slash')");
  EXPECT_EQ(dsn_value("tab\there"), "'tab\there'");
  // libpq reads back what was quoted: split_hosts quotes again what libpq parsed.
  const std::string secret = R"( it's a \ secret )";
  auto hosts = split_hosts("host=a,b password=" + dsn_value(secret));
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_NE(hosts[1].dsn.find("password=" + dsn_value(secret)), std::string::npos) << hosts[1].dsn;
}

}  // namespace steadypg
