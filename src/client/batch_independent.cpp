// Independent mode: each operation is its own call through the client's resilience
// pipeline, retried when that is safe; a failure affects only itself.

#include <exception>

#include <optional>

#include "batch_executor.hpp"
#include "steadypg/connection.hpp"
#include "verified_commit.hpp"

namespace steadypg::internal {

void batch_executor::run_independent(std::size_t begin, const chunk_view& v, worker_state& w) {
  for (std::size_t i = 0; i < v.ops.size(); ++i) {
    if (v.skip[i]) continue;
    bool counted = false;
    while (true) {
      if (stopped() || clock::now() >= m_deadline) return;
      const auto& op = v.ops[i];
      const call_runner::call info{"batch",  op.sql(), false, m_deadline, op.is_call() ? nullptr : &op.params(),
                                   m_o.route};
      try {
        if (op.is_call()) {
          m_runner.run(info, [&](connection& c) {
            const auto before = c.request_count();
            try {
              op.callable()(c);
            } catch (const error& e) {
              throw_call_failure(c, before, e);
            }
          });
          succeed(begin + i, nullptr);
        } else if (m_o.verify_commit) {
          // A transaction of its own whose id comes with COMMIT: the pipeline resolves a lost reply.
          std::optional<result> out;
          resolution_tracker track{*this, 1};
          const auto refs = op.params().refs();
          m_runner.run(info, [&](connection& c) {
            track.begin_attempt();
            try {
              execute_verified(c, op.sql(), refs, out);
            } catch (const error& e) {
              track.lost(e);
              throw;
            }
          });
          track.done();
          succeed(begin + i, out ? &*out : nullptr);
        } else {
          result r = m_runner.run_statement(info, [&](connection& c) { return c.execute(op.sql(), op.params()); });
          succeed(begin + i, &r);
        }
      } catch (const circuit_open& e) {
        if (wait_for_breaker(counted, 1)) continue;
        fail(w, begin + i, info_of(e));
      } catch (const error& e) {
        abort_on_login_refusal(e);
        fail(w, begin + i, info_of(e));
      } catch (const std::exception& e) {
        fail(w, begin + i, {"", e.what(), outcome::fatal, false});
      }
      break;
    }
  }
}

}  // namespace steadypg::internal
