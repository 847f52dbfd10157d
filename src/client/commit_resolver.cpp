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

commit_resolution resolve_commit(const in_doubt_commit& c, open_connection open, const resolver_settings& s) noexcept {
  std::optional<connection> conn;
  while (true) {
    try {
      if (!conn || conn->is_broken()) {
        conn.reset();
        if (clock::now() >= s.until) return commit_resolution::unknown;
        conn.emplace(open(s.until));
        // A different cluster, or the same one on another timeline (a failover happened): the
        // number may name another transaction there.
        const auto id = conn->identify();
        if (!id || *id != c.server) return commit_resolution::unknown;
      }
      conn->set_deadline(s.until);
      switch (ask(*conn, c.xid)) {
        case status::committed: return commit_resolution::committed;
        case status::aborted: return commit_resolution::aborted;
        case status::unknown: return commit_resolution::unknown;
        case status::in_progress: break;  // its backend may still be committing: ask again
      }
    } catch (const error&) {
      conn.reset();  // not reachable now (down, restarting, breaker open): try again until the deadline
    } catch (...) {
      return commit_resolution::unknown;
    }
    if (clock::now() + s.poll_interval >= s.until) return commit_resolution::unknown;
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
