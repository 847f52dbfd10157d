// Pipeline mode: batch_size statements per round trip, each with its own sync point.

#include <fmt/format.h>

#include <exception>
#include <optional>

#include "batch_executor.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/pipeline.hpp"

namespace steadypg::internal {

void batch_executor::run_pipeline(std::size_t begin, const chunk_view& v, worker_state& w) {
  if (stopped()) return;
  const auto& ops = v.ops;
  std::size_t done = 0;  // operations of the chunk with a known outcome; a retry resumes here
  const call_runner::call info{"batch", {}, false, m_deadline, nullptr, m_o.route};
  bool counted = false;
  while (true) {
    try {
      m_runner.run(info, [&](connection& c) {
        while (done < ops.size()) {
          if (v.skip[done]) {
            ++done;
            continue;
          }
          if (ops[done].is_call()) {
            bound_by_deadline(c);
            run_call(c, begin + done, ops[done], w);
            ++done;
            continue;
          }
          std::size_t end = done;
          while (end < ops.size() && !ops[end].is_call()) ++end;
          bound_by_deadline(c);
          warm(c, v, done, end);
          pipeline p(c);
          for (std::size_t i = done; i < end; ++i) {
            if (v.skip[i]) continue;
            try {
              p.send(ops[i].sql(), ops[i].params());
              p.sync();
            } catch (const error& e) {
              // Nothing of this pipeline went out yet (preparing its first statement failed):
              // the chunk can start again elsewhere.
              if (p.pending() == 0 && p.syncs_pending() == 0 && e.outcome() == outcome::not_sent) throw;
              // Nothing can be read back: what was queued may have reached the server.
              mark_in_doubt(w, begin, v, done, i + 1, e);
              done = i + 1;
              if (done < ops.size()) throw_resumable(e, outcome::not_sent);
              throw;
            }
          }
          while (done < end) {
            if (v.skip[done]) {
              ++done;
              continue;
            }
            bool have_result = false;
            std::optional<result> r;
            try {
              try {
                r.emplace(p.get_result());
                have_result = true;
              } catch (const sql_error& e) {
                // The statement failed on its own; its implicit transaction rolled back.
                fail(w, begin + done, info_of(e));
                ++done;
                try {
                  p.await_sync();
                } catch (const sql_error&) {
                  // Its group was already aborted: nothing more to learn.
                }
                continue;
              }
              try {
                p.await_sync();
              } catch (const sql_error& e) {
                // Its commit failed at the sync point (a deferred constraint, a serialization
                // failure): rolled back, and the session goes on.
                fail(w, begin + done, info_of(e));
                ++done;
                continue;
              }
            } catch (const error& e) {
              if (have_result) {
                fail(w, begin + done,
                     {e.sqlstate(),
                      fmt::format("the connection was lost before the statement's commit was confirmed: {}", e.what()),
                      outcome::indeterminate, e.kind() == failure_kind::timeout});
                ++done;
              }
              if (server_ended_session(e)) {
                // The rest never ran: resume it on another connection.
                if (done < ops.size()) throw_resumable(e, outcome::rolled_back);
                throw;
              }
              mark_in_doubt(w, begin, v, done, end, e);
              done = end;
              if (done < ops.size()) throw_resumable(e, outcome::not_sent);
              throw;
            }
            succeed(begin + done, &*r);
            ++done;
          }
          p.finish();
        }
      });
    } catch (const circuit_open& e) {
      if (wait_for_breaker(counted, ops.size() - done)) continue;
      fail_rest(w, begin, v, done, info_of(e));
    } catch (const error& e) {
      abort_on_login_refusal(e);
      fail_rest(w, begin, v, done, info_of(e));
    } catch (const std::exception& e) {
      fail_rest(w, begin, v, done, {"", e.what(), outcome::indeterminate, false});
    }
    return;
  }
}

void batch_executor::run_call(connection& c, std::size_t index, const batch_operation& op, worker_state& w) {
  const auto before = c.request_count();
  try {
    op.callable()(c);
    if (c.status() == connection_status::in_transaction || c.status() == connection_status::failed_transaction) {
      (void)c.execute("ROLLBACK");
      fail(w, index,
           {"",
            "the callable left a transaction block open; it was rolled back (in pipeline mode each operation "
            "runs in autocommit: use transaction mode for a transaction)",
            outcome::rolled_back, false});
      return;
    }
    succeed(index, nullptr);
  } catch (const sql_error& e) {
    if (e.poisons_connection() || !c.is_idle()) throw_call_failure(c, before, e);
    // Statements it ran before the failing one may have committed.
    fail(w, index, c.request_count() > before + 1 ? info_of(e, outcome::indeterminate) : info_of(e));
  } catch (const error& e) {
    throw_call_failure(c, before, e);
  } catch (const std::exception& e) {
    if (!c.is_idle()) throw;
    fail(w, index, {"", e.what(), outcome::fatal, false});
  }
}

void batch_executor::mark_in_doubt(worker_state& w, std::size_t begin, const chunk_view& v, std::size_t from,
                                   std::size_t to, const error& e) {
  const failure_info f{e.sqlstate(),
                       fmt::format("outcome unknown: the connection was lost after the statement was sent: {}",
                                   e.what()),
                       outcome::indeterminate, e.kind() == failure_kind::timeout};
  for (std::size_t i = from; i < to; ++i) {
    if (!v.skip[i]) fail(w, begin + i, f);
  }
}

void batch_executor::fail_rest(worker_state& w, std::size_t begin, const chunk_view& v, std::size_t from,
                               const failure_info& f) {
  for (std::size_t i = from; i < v.ops.size(); ++i) {
    if (!v.skip[i]) fail(w, begin + i, f);
  }
}

}  // namespace steadypg::internal
