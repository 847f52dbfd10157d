#include "commit_resolver.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <thread>

#include "connection_factory.hpp"
#include "error_builder.hpp"

namespace steadypg::internal {

namespace {

using clock = std::chrono::steady_clock;

enum class status { committed, aborted, in_progress, unknown };

// One question on an open connection to the right server.
status ask(connection& conn, std::uint64_t xid) {
  try {
    const auto s =
        conn.query_value<std::optional<std::string>>("SELECT pg_xact_status($1::text::xid8)", std::to_string(xid));
    if (!s) return status::unknown;  // too old: the commit log no longer covers it
    if (*s == "committed") return status::committed;
    if (*s == "aborted") return status::aborted;
    if (*s == "in progress") return status::in_progress;
    return status::unknown;
  } catch (const sql_error& e) {
    // 22023 "transaction ID … is in the future": the server restarted without any trace of it
    // (no WAL record of it survived), so it cannot have committed.
    if (e.sqlstate() == "22023" && e.server().message.find("in the future") != std::string::npos) {
      return status::aborted;
    }
    if (e.poisons_connection()) throw;
    return status::unknown;
  }
}

void pause_until(clock::time_point t, std::chrono::milliseconds step) {
  const auto now = clock::now();
  if (now < t) std::this_thread::sleep_for(std::min<clock::duration>(t - now, step));
}

}  // namespace

commit_resolution resolve_commit(const in_doubt_commit& c, open_connection open, const resolver_settings& s,
                                 std::string* why) noexcept {
  std::optional<connection> conn;
  std::string last_failure;
  const auto unknown = [&](std::string reason) {
    if (why != nullptr) *why = std::move(reason);
    return commit_resolution::unknown;
  };
  const auto out_of_time = [&] {
    return unknown(last_failure.empty() ? std::string("no answer before the deadline")
                                        : "no answer before the deadline (" + last_failure + ")");
  };
  while (true) {
    try {
      if (!conn || conn->is_broken()) {
        conn.reset();
        if (clock::now() >= s.until) return out_of_time();
        conn.emplace(open(s.until));
        // A different cluster, or the same one on another timeline (a failover happened): the
        // number may name another transaction there.
        const auto id = conn->identify();
        if (!id) return unknown("the server that answers cannot say which cluster and timeline it is");
        if (id->system_identifier != c.server.system_identifier) {
          return unknown("the server that answers now is another cluster (system identifier " +
                         std::to_string(id->system_identifier) + ", the transaction ran on " +
                         std::to_string(c.server.system_identifier) + ")");
        }
        if (id->timeline != c.server.timeline) {
          return unknown("the server that answers now is on timeline " + std::to_string(id->timeline) +
                         ", the transaction ran on timeline " + std::to_string(c.server.timeline) +
                         ": a failover happened, and the id may name another transaction there");
        }
      }
      conn->set_deadline(s.until);
      switch (ask(*conn, c.xid)) {
        case status::committed: return commit_resolution::committed;
        case status::aborted: return commit_resolution::aborted;
        case status::unknown: return unknown("the server no longer knows the transaction id (too old)");
        case status::in_progress: last_failure = "still in progress"; break;  // may still be committing
      }
    } catch (const error& e) {
      conn.reset();  // not reachable now (down, restarting, breaker open): try again until the deadline
      last_failure = e.what();
    } catch (...) {
      return unknown("the resolver failed");
    }
    if (clock::now() + s.poll_interval >= s.until) return out_of_time();
    pause_until(clock::now() + s.poll_interval, s.poll_interval);
  }
}

connection open_through_breaker(const connection_options& options, const circuit_breaker* breaker,
                                clock::time_point until) {
  // While the breaker is open nothing connects, resolution included. Once it lets calls through
  // again the resolver does not compete with the calls for the half-open probes: it makes one
  // connection per poll interval at most, and a probe's verdict is the calls' to give.
  if (breaker != nullptr) {
    const auto state = breaker->state();
    const auto admits = breaker->admits_at();
    if (state == breaker_state::forced_open || (state == breaker_state::open && admits && *admits > clock::now())) {
      throw error_builder(failure_kind::connect_failed, outcome::not_sent)
          .operation("resolve commit")
          .build<circuit_open>("the circuit breaker is open");
    }
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now());
  auto c = connection_factory(options).connect(std::max(left, std::chrono::milliseconds{1}));
  return std::move(*c);
}

}  // namespace steadypg::internal
