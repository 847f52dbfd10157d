#pragma once

// The engine behind client::batch_execute: chunks of batch_size operations taken by up to
// `concurrency` worker threads, each chunk run in the batch's mode on a connection of the
// client's pool, through the client's resilience pipeline (a call_runner). docs/batch.md
// describes the behaviour. The parts live in
//   batch_executor.cpp     the workers, the chunks' pre-checks, the deadline and the breaker,
//                          what is recorded per operation, and the report;
//   batch_independent.cpp  independent mode;
//   batch_pipeline.cpp     pipeline mode;
//   batch_transaction.cpp  transaction mode, and pipeline mode with verify_commit (a chunk
//                          whose lost COMMIT is resolved as a unit is one transaction).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "call_runner.hpp"
#include "steadypg/batch.hpp"
#include "steadypg/error.hpp"

namespace steadypg::internal {

/// What is kept of an error that fails several operations.
struct failure_info {
  std::string sqlstate;
  std::string message;
  outcome result = outcome::fatal;
  bool timeout = false;  ///< a timeout (client-side, or 57014): near the deadline it is the batch's
};

/// The error's SQLSTATE, message and outcome.
[[nodiscard]] failure_info info_of(const error& e);
/// The same with outcome `o`.
[[nodiscard]] failure_info info_of(const error& e, outcome o);

/// The connection failed in the middle of a pipelined chunk. When the server said why (a
/// FATAL message with a SQLSTATE, e.g. 57P01 from pg_terminate_backend) the stream ended
/// cleanly: it processed nothing after what it answered, so statements without a result were
/// never run. Anything else (a reset socket, a timeout) leaves them in doubt.
[[nodiscard]] bool server_ended_session(const error& e);

/// Rethrown so that the call runner takes the rest of the chunk to a new connection: nothing
/// of what is left was applied.
[[noreturn]] void throw_resumable(const error& e, outcome o);

/// One batch. Built and run once: batch_executor(…).execute().
class batch_executor {
 public:
  /// `options` must be valid. The operations are `ops` when `make` is null, otherwise
  /// `(*make)(i)` for i in [0, count). Everything passed must outlive execute().
  batch_executor(call_runner& runner, const batch_options& options, std::size_t count,
                 std::span<const batch_operation> ops, const std::function<batch_operation(std::size_t)>* make);
  batch_executor(const batch_executor&) = delete;
  batch_executor& operator=(const batch_executor&) = delete;

  /// Runs every operation and reports each one's outcome (never throws for an operation's failure).
  [[nodiscard]] batch_report execute();

 private:
  using clock = call_runner::clock;
  static constexpr std::uint8_t pending = 0, ok = 1, failed = 2;

  struct worker_state {
    std::vector<batch_error> errors;
    std::vector<batch_operation> storage;  // operations made on demand for the current chunk
    std::vector<char> skip;                // per operation of the chunk: rejected before sending
  };

  // One chunk's operations and which of them were rejected before anything was sent.
  struct chunk_view {
    std::span<const batch_operation> ops;
    const std::vector<char>& skip;
  };

  // batch_executor.cpp
  bool stopped() const noexcept { return m_stop.load(std::memory_order_relaxed); }
  // Takes chunks until none is left, the deadline passed or the batch was stopped.
  void work(worker_state& w);
  // Makes (when on demand) and checks the chunk's operations. One that cannot be made or
  // could not be sent as it is (a NUL byte, a wrong parameter count) fails alone, now, with
  // outcome not_sent, and is left out of its chunk.
  std::span<const batch_operation> chunk_ops(std::size_t begin, std::size_t end, worker_state& w);
  // The time left as a client-side timeout; throws timeout_error when none is left (before
  // anything of the step is sent).
  void bound_by_deadline(connection& c) const;
  // An open breaker: wait until it lets calls through again rather than failing the rest of
  // the batch at once. False when it will not within the deadline (or is forced open).
  bool wait_for_breaker(bool& counted, std::size_t ops_waiting);
  // A refused login stops the whole batch: every other operation would be refused the same way
  // (and repeated attempts can lock the account).
  void abort_on_login_refusal(const error& e);
  // Prepares the statement most of [from, to) share so that the pipeline sends it by name.
  static void warm(connection& c, const chunk_view& v, std::size_t from, std::size_t to);
  // A callable failed after it had started (call from a catch block): when its earlier
  // statements ran, what they did is not known to the report (they may have committed), so the
  // failure becomes one a retry must not repeat; otherwise the error goes on as it is.
  [[noreturn]] static void throw_call_failure(const connection& c, std::uint64_t before, const error& e);
  // A failure at or near the deadline (the server's statement_timeout is set a little before
  // it) is the batch's timeout.
  batch_failure reason_for(const failure_info& f, batch_failure reason) const;
  void succeed(std::size_t index, result* r);
  void fail(worker_state& w, std::size_t index, const failure_info& f, std::optional<std::size_t> chunk = {},
            std::optional<std::size_t> cause = {}, batch_failure reason = batch_failure::failed);
  // Calls on_progress (after each chunk).
  void progress();
  // The errors of every worker and of the operations never started, the counts, the event.
  batch_report report(std::vector<worker_state>& states);

  // batch_independent.cpp
  void run_independent(std::size_t begin, const chunk_view& v, worker_state& w);

  // batch_pipeline.cpp
  // Pipeline mode: each statement is sent with its own sync point, so each is its own
  // implicit transaction. A statement has succeeded only when its sync point has been
  // confirmed: its result arrives before the server commits it.
  void run_pipeline(std::size_t begin, const chunk_view& v, worker_state& w);
  // A callable inside a pipeline chunk: its own SQL errors are its own failure. It runs in
  // autocommit and must leave no transaction open (what it left open is rolled back).
  void run_call(connection& c, std::size_t index, const batch_operation& op, worker_state& w);
  // Statements [from, to) of the chunk were sent and nothing is known of them.
  void mark_in_doubt(worker_state& w, std::size_t begin, const chunk_view& v, std::size_t from, std::size_t to,
                     const error& e);
  void fail_rest(worker_state& w, std::size_t begin, const chunk_view& v, std::size_t from, const failure_info& f);

  // batch_transaction.cpp
  void run_transaction(std::size_t chunk, std::size_t begin, const chunk_view& v, worker_state& w);
  // The whole chunk failed with one error and no culprit of its own: rolled back with it
  // unless the error says the commit may have happened.
  void fail_chunk(worker_state& w, std::size_t chunk, std::size_t begin, const chunk_view& v, const failure_info& f);
  // One attempt at the chunk on `c`: pipelined when it has no callables, otherwise statement by
  // statement in a transaction.
  void run_chunk_attempt(connection& c, const chunk_view& v, bool has_calls,
                         std::vector<std::optional<result>>& results, std::optional<std::size_t>& failed_at,
                         failure_info& cause);
  // BEGIN, the statements and COMMIT in one round trip. COMMIT's own result arrives only
  // after the commit, so it alone confirms the chunk.
  void run_pipelined_transaction(connection& c, const chunk_view& v, std::vector<std::optional<result>>& results,
                                 std::optional<std::size_t>& failed_at, failure_info& cause);

  // verify_commit: how the client's pipeline resolved a lost COMMIT of one unit (an operation,
  // a chunk of `ops` operations). Call begin_attempt() as an attempt starts, lost() when it
  // ends with a lost COMMIT carrying its id, and done() once the call returned.
  struct resolution_tracker {
    batch_executor& ex;
    std::size_t ops;
    bool pending = false;
    void begin_attempt() noexcept {
      if (pending) ex.m_resolved_aborted.fetch_add(ops, std::memory_order_relaxed);  // it runs again
      pending = false;
    }
    void lost(const error& e) noexcept { pending = e.is_indeterminate_commit() && e.xid().has_value(); }
    void done() noexcept {
      if (pending) ex.m_resolved_committed.fetch_add(ops, std::memory_order_relaxed);  // it returned: committed
      pending = false;
    }
  };

  call_runner& m_runner;
  const batch_options& m_o;
  std::size_t m_count;
  std::span<const batch_operation> m_ops;
  const std::function<batch_operation(std::size_t)>* m_make;
  std::vector<std::uint8_t> m_state;  // per operation; each index is written by one worker
  std::vector<std::optional<result>> m_results;
  clock::time_point m_start, m_deadline;
  std::atomic<std::size_t> m_next_chunk{0};
  std::atomic<bool> m_stop{false};
  std::atomic<std::size_t> m_succeeded{0}, m_failed{0}, m_breaker_waited{0};
  std::atomic<std::size_t> m_resolved_committed{0}, m_resolved_aborted{0};  // verify_commit
  std::mutex m_make_mutex;
  std::mutex m_progress_mutex;
  std::mutex m_abort_mutex;
  std::string m_abort_message;  // set once, before m_stop, when a login was refused
};

}  // namespace steadypg::internal
