#pragma once

// Private: what became of a COMMIT whose reply was lost, asked of the server it went to.
// PostgreSQL keeps every transaction's fate in its commit log: pg_xact_status(xid8) answers
// committed, aborted or in progress. The answer means something only from the same server
// (system identifier) on the same timeline: after a failover the new primary may have given the
// same number to another transaction. client::run() calls this for an indeterminate_commit that
// carries the transaction's id (src/core/transaction.cpp fetches it in COMMIT's round trip).

#include <chrono>
#include <cstdint>

#include "function_ref.hpp"
#include "steadypg/circuit_breaker.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/error.hpp"

namespace steadypg::internal {

/// A COMMIT whose reply was lost: the transaction's id and the server it was sent to.
struct in_doubt_commit {
  std::uint64_t xid = 0;
  server_identity server;
};

/// How to ask.
struct resolver_settings {
  /// Nothing is asked after this; what is not known by then is unknown.
  std::chrono::steady_clock::time_point until;
  /// Pause between tries while the server cannot be reached or the transaction is still in
  /// progress (its backend may be finishing the commit).
  std::chrono::milliseconds poll_interval{50};
};

/// Opens a fresh connection to the host the call used, connecting by `until` at the latest;
/// throws steadypg::error (connection_error, timeout_error, circuit_open) when it cannot.
using open_connection = function_ref<connection(std::chrono::steady_clock::time_point until)>;

/// What the server says of `c`: committed, aborted, or unknown (no answer by `s.until`, a
/// different server or timeline, an id the server no longer knows). Never throws for the
/// server's failures; a server that has no record of the id at all (it is "in the future": the
/// server crashed and forgot every trace of it) did not commit it: aborted.
/// `why`, when given, receives the reason of an unknown outcome in a few words.
[[nodiscard]] commit_resolution resolve_commit(const in_doubt_commit& c, open_connection open,
                                               const resolver_settings& s, std::string* why = nullptr) noexcept;

/// A connection for resolve_commit that keeps the breaker's rules: circuit_open while `breaker`
/// (if any) is open; otherwise connects with `options` within both its connect_timeout and
/// `until`. It takes no half-open probe permit (those are the calls' to use).
[[nodiscard]] connection open_through_breaker(const connection_options& options, const circuit_breaker* breaker,
                                              std::chrono::steady_clock::time_point until);

}  // namespace steadypg::internal
