#pragma once

// Private: a COMMIT whose reply may be lost, made resolvable (docs/resilience.md#resolving-a-lost-commit).
// Both the transaction's COMMIT and a statement run with statement{…}.verify_commit() fetch the
// transaction's id in the same round trip; src/client/commit_resolver.hpp asks the server later.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "steadypg/connection.hpp"
#include "steadypg/error.hpp"
#include "steadypg/params.hpp"

namespace steadypg::internal {

/// Runs `sql` as a transaction of its own in one round trip: BEGIN, SELECT pg_current_xact_id(),
/// the statement, a flush request, COMMIT and the sync point, pipelined. `out` receives the
/// statement's result when it arrives (before COMMIT's answer), so that a caller told later that
/// the COMMIT took effect has it. A lost reply to COMMIT throws indeterminate_commit carrying the
/// id and the server's identity; an error of the statement rolls back and is thrown as it is.
/// Without the server's identity (connection::identify()) it runs as a plain statement.
void execute_verified(connection& c, std::string_view sql, std::span<const param_ref> params,
                      std::optional<result>& out);

/// Throws what a COMMIT lost with `e` means: rolled_back when the server ended the session
/// before answering the id (it never reached COMMIT), otherwise indeterminate_commit carrying
/// `xid` and `server` (when known).
[[noreturn]] void raise_lost_commit(const indeterminate_commit& e, bool id_answered, std::optional<std::uint64_t> xid,
                                    std::optional<server_identity> server);

}  // namespace steadypg::internal
