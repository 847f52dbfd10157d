// Transaction mode: each chunk is one transaction, all or nothing; re-run on serialization
// failures, deadlocks and connections lost before COMMIT.

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <optional>

#include "batch_executor.hpp"
#include "error_builder.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/pipeline.hpp"
#include "steadypg/transaction.hpp"

namespace steadypg::internal {

void batch_executor::run_transaction(std::size_t chunk, std::size_t begin, const chunk_view& v, worker_state& w) {
  if (stopped()) return;
  const auto& ops = v.ops;
  std::optional<std::size_t> failed_at;
  failure_info cause;
  std::vector<std::optional<result>> results;
  const call_runner::call info{"batch", {}, true, m_deadline, nullptr, m_o.route};
  const bool has_calls = std::any_of(ops.begin(), ops.end(), [](const batch_operation& op) { return op.is_call(); });
  std::size_t live = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) live += !v.skip[i];
  if (live == 0) return;
  bool counted = false;
  while (true) {
    resolution_tracker track{*this, live};
    try {
      m_runner.run(info, [&](connection& c) {
        track.begin_attempt();
        failed_at.reset();
        results.assign(m_o.keep_results ? ops.size() : 0, std::nullopt);
        try {
          run_chunk_attempt(c, v, has_calls, results, failed_at, cause);
        } catch (const error& e) {
          track.lost(e);
          throw;
        }
      });
      track.done();
    } catch (const circuit_open& e) {
      if (wait_for_breaker(counted, live)) continue;
      fail_chunk(w, chunk, begin, v, info_of(e));
      return;
    } catch (const error& e) {
      abort_on_login_refusal(e);
      fail_chunk(w, chunk, begin, v, info_of(e));
      return;
    } catch (const std::exception& e) {
      fail_chunk(w, chunk, begin, v, {"", e.what(), outcome::rolled_back, false});
      return;
    }
    break;
  }
  if (!failed_at) {
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (v.skip[i]) continue;
      succeed(begin + i, m_o.keep_results && results[i] ? &*results[i] : nullptr);
    }
    return;
  }
  const std::size_t culprit = begin + *failed_at;
  const auto culprit_reason = reason_for(cause, batch_failure::failed);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (v.skip[i]) continue;
    if (begin + i == culprit) {
      fail(w, culprit, cause, chunk, culprit, culprit_reason);
    } else {
      // Rolled back with its chunk; when the deadline stopped the chunk, that is its reason.
      fail(w, begin + i,
           {"", fmt::format("rolled back with chunk {}: operation {} failed", chunk, culprit), outcome::rolled_back,
            false},
           chunk, culprit,
           culprit_reason == batch_failure::timed_out ? batch_failure::timed_out : batch_failure::rolled_back);
    }
  }
}

void batch_executor::run_chunk_attempt(connection& c, const chunk_view& v, bool has_calls,
                                       std::vector<std::optional<result>>& results,
                                       std::optional<std::size_t>& failed_at, failure_info& cause) {
  const auto& ops = v.ops;
  if (!has_calls) {
    run_pipelined_transaction(c, v, results, failed_at, cause);
    return;
  }
  transaction_options to;
  to.fetch_xid = m_o.verify_commit;
  steadypg::transaction tx(c, to);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (v.skip[i]) continue;
    try {
      if (ops[i].is_call()) {
        ops[i].callable()(c);
        const auto st = c.status();
        if (st != connection_status::in_transaction && st != connection_status::failed_transaction) {
          // It committed or rolled back the chunk's transaction itself: what ran before it
          // may be in the database, what follows would run outside any transaction.
          throw internal::error_builder(failure_kind::usage, outcome::indeterminate)
              .operation("batch")
              .build<indeterminate_commit>(
                  "a callable ended the chunk's transaction itself (COMMIT or ROLLBACK inside a transaction "
                  "mode batch); what ran before it may or may not be in the database");
        }
      } else {
        result r = c.execute(ops[i].sql(), ops[i].params());
        if (m_o.keep_results) results[i] = std::move(r);
      }
    } catch (const sql_error& e) {
      // Serialization failures, deadlocks and lost connections re-run the chunk.
      if (e.outcome() == outcome::rolled_back || e.poisons_connection() || c.is_broken()) throw;
      failed_at = i;
      cause = info_of(e);
      return;  // the transaction rolls back
    }
  }
  tx.commit();
}

void batch_executor::fail_chunk(worker_state& w, std::size_t chunk, std::size_t begin, const chunk_view& v,
                                const failure_info& f) {
  // Stopped by the batch deadline: that is the reason, whatever the outcome.
  if (reason_for(f, batch_failure::failed) == batch_failure::timed_out) {
    for (std::size_t i = 0; i < v.ops.size(); ++i) {
      if (!v.skip[i]) fail(w, begin + i, f, chunk, std::nullopt, batch_failure::timed_out);
    }
    return;
  }
  const auto reason = f.result == outcome::rolled_back ? batch_failure::rolled_back : batch_failure::failed;
  failure_info g = f;
  if (reason == batch_failure::rolled_back && f.result == outcome::rolled_back) {
    g.message = fmt::format("rolled back with chunk {}: {}", chunk, f.message);
  }
  for (std::size_t i = 0; i < v.ops.size(); ++i) {
    if (!v.skip[i]) fail(w, begin + i, g, chunk, std::nullopt, reason);
  }
}

void batch_executor::run_pipelined_transaction(connection& c, const chunk_view& v,
                                               std::vector<std::optional<result>>& results,
                                               std::optional<std::size_t>& failed_at, failure_info& cause) {
  const auto& ops = v.ops;
  bound_by_deadline(c);
  warm(c, v, 0, ops.size());
  std::exception_ptr first_error;
  bool committed = false;
  // verify_commit: the chunk's transaction id comes in the same round trip, so that a lost reply
  // to COMMIT can be resolved for the chunk as a unit.
  const auto server = m_o.verify_commit ? c.identify() : std::nullopt;
  std::optional<std::uint64_t> xid;
  {
    pipeline p(c);
    p.send("BEGIN");
    // Behind a transaction pooler the statement_timeout is the transaction's own.
    const bool local_timeout = shares_server_sessions(c.options().pooler) && c.statement_timeout().count() > 0;
    if (local_timeout) p.send(fmt::format("SET LOCAL statement_timeout = {}", c.statement_timeout().count()));
    if (server) p.send("SELECT pg_current_xact_id()::text");
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (!v.skip[i]) p.send(ops[i].sql(), ops[i].params());
    }
    if (server) p.flush_request();
    p.send("COMMIT");
    p.sync();
    try {
      (void)p.get_result();  // BEGIN
      if (local_timeout) (void)p.get_result();
      if (server) {
        if (const auto text = p.get_result().as<std::optional<std::string>>()) {
          xid = std::strtoull(text->c_str(), nullptr, 10);
        }
      }
      for (std::size_t i = 0; i <= ops.size(); ++i) {  // the statements, then COMMIT
        if (i < ops.size() && v.skip[i]) continue;
        try {
          result r = p.get_result();
          if (i < ops.size() && m_o.keep_results) results[i] = std::move(r);
          if (i == ops.size() && !first_error) committed = true;
        } catch (const pipeline_aborted&) {
          // Skipped after the first failure.
        } catch (const sql_error& e) {
          if (!first_error) {
            first_error = std::current_exception();
            if (i < ops.size()) failed_at = i;
            cause = info_of(e);
          }
        }
      }
      p.finish();
    } catch (const sql_error&) {
      throw;
    } catch (const error& e) {
      if (committed) return;                 // COMMIT answered: the chunk is in, whatever the rest of the stream
      if (first_error && failed_at) return;  // a statement failed: the transaction was aborted
      // No answer to COMMIT. A server that ended the session cleanly never committed;
      // otherwise COMMIT may have been processed.
      if (server_ended_session(e)) throw_resumable(e, outcome::rolled_back);
      throw internal::error_builder(failure_kind::connection_lost, outcome::indeterminate)
          .fields(e.server())
          .operation("batch")
          .broken()
          .in_doubt_commit(xid, xid ? server : std::nullopt)
          .build<indeterminate_commit>(
              fmt::format("connection lost before COMMIT was confirmed; the chunk may or may not have committed: {}",
                          e.what()));
    }
  }
  if (!first_error) return;
  if (!c.is_idle()) (void)c.execute("ROLLBACK");
  try {
    std::rethrow_exception(first_error);
  } catch (const sql_error& e) {
    // Serialization failures and deadlocks re-run the chunk; a failing COMMIT fails it.
    if (e.outcome() == outcome::rolled_back || !failed_at) throw;
  }
}

}  // namespace steadypg::internal
