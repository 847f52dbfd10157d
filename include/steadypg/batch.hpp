#pragma once

// Batch execution: many operations, a bounded number of connections, per-operation error
// isolation, a deadline for the whole batch, progress and a report. Run by
// client::batch_execute (see client.hpp); docs/batch.md explains the modes.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "steadypg/params.hpp"
#include "steadypg/result.hpp"
#include "steadypg/sqlstate.hpp"
#include "steadypg/route.hpp"

namespace steadypg {

class connection;

/// How a batch runs its operations.
enum class batch_mode {
  /// Each operation is its own call through the resilience pipeline (retried when safe);
  /// a failure affects only itself.
  independent,
  /// Operations go out in libpq pipeline mode, batch_size per round trip, each followed by
  /// its own sync point so each one still succeeds or fails alone. The fast path.
  pipeline,
  /// Each chunk of batch_size operations runs in one transaction: all or nothing. A failure
  /// rolls the chunk back; serialization failures and deadlocks re-run the chunk.
  transaction
};
/// "independent", "pipeline", "transaction".
[[nodiscard]] std::string_view to_string(batch_mode m) noexcept;
/// The mode named `name`, or nullopt.
[[nodiscard]] std::optional<batch_mode> parse_batch_mode(std::string_view name) noexcept;

/// One operation of a batch: a statement with parameters, or a callable that uses the
/// borrowed connection.
///
///     std::vector<steadypg::batch_operation> ops;
///     ops.emplace_back("INSERT INTO t(id, name) VALUES ($1, $2)", 1, "one");
///     ops.push_back(steadypg::batch_operation::call([](steadypg::connection& c) { c.execute("…"); }));
class batch_operation {
 public:
  /// A statement; the arguments bind to $1…$n like execute()'s.
  template <bindable... Args>
  explicit batch_operation(std::string sql, const Args&... args) : m_sql(std::move(sql)) {
    (m_params.add(args), ...);
  }
  /// A statement with run-time parameters.
  batch_operation(std::string sql, param_list params) : m_sql(std::move(sql)), m_params(std::move(params)) {}
  /// A callable run with the batch's connection: in a transaction chunk it runs inside the
  /// transaction; in pipeline mode between pipeline round trips. It must not keep the
  /// connection. Its sql() is `label`.
  static batch_operation call(std::function<void(connection&)> fn, std::string label = "call") {
    batch_operation op(std::move(label));
    op.m_fn = std::move(fn);
    return op;
  }

  [[nodiscard]] const std::string& sql() const noexcept { return m_sql; }
  [[nodiscard]] const param_list& params() const noexcept { return m_params; }
  [[nodiscard]] bool is_call() const noexcept { return static_cast<bool>(m_fn); }
  [[nodiscard]] const std::function<void(connection&)>& callable() const noexcept { return m_fn; }

 private:
  std::string m_sql;
  param_list m_params;
  std::function<void(connection&)> m_fn;
};

/// Where a batch stands (for the progress callback).
struct batch_progress {
  std::size_t processed = 0;  ///< operations finished (succeeded or failed)
  std::size_t total = 0;
  std::size_t succeeded = 0;
  std::size_t failed = 0;
};

/// Settings of one batch. A client's defaults are client_options::batch (POSTGRESQL_BATCH_SIZE,
/// _CONCURRENCY, _TIMEOUT); the values here are those variables' defaults.
struct batch_options {
  /// Operations per chunk: per pipeline round trip, per transaction, per unit of work a
  /// connection takes. Default 10, range 1–1000000. POSTGRESQL_BATCH_SIZE.
  std::size_t batch_size = 10;
  /// At most this many connections busy at once. Default 3, range 1–1024.
  /// POSTGRESQL_BATCH_CONCURRENCY.
  std::size_t concurrency = 3;
  /// Deadline for the whole batch. Default 30000 ms, range 1–86400000 ms.
  /// POSTGRESQL_BATCH_TIMEOUT. On expiry statements in flight are cancelled on
  /// the server and the operations not finished are reported as timed out.
  std::chrono::milliseconds timeout{30000};
  batch_mode mode = batch_mode::independent;
  /// Stop starting new chunks after the first failure (the rest is reported as not run).
  bool stop_on_error = false;
  /// Keep each successful operation's result in batch_report::results (memory grows with
  /// the batch; off by default).
  bool keep_results = false;
  /// Where a multi-host client runs the batch's chunks; unset: the client's
  /// cluster.default_route (docs/cluster.md).
  std::optional<steadypg::route> route = std::nullopt;
  /// Make a lost COMMIT resolvable (docs/resilience.md#resolving-a-lost-commit): transaction mode
  /// fetches each chunk's transaction id in its round trip (BEGIN; SELECT pg_current_xact_id();
  /// …; COMMIT) and resolves a chunk whose COMMIT reply was lost as a unit; independent mode runs
  /// each statement as statement{…}.verify_commit() does. Pipeline mode gives up its per-operation
  /// isolation for it: each chunk becomes one transaction, run and resolved as in transaction
  /// mode (one failing operation rolls back its chunk; callables run inside the transaction).
  /// Needs the client's resilience_options::resolve_commits. Default false.
  bool verify_commit = false;
  /// Called after each chunk, from the batch's worker threads, one call at a time, with
  /// `processed` never decreasing. Must not throw.
  std::function<void(const batch_progress&)> on_progress;

  /// Throws config_error naming the field when a value is out of range.
  void validate() const;
};

/// Why an operation of a batch did not succeed.
enum class batch_failure {
  failed,       ///< it ran and failed (the error is its own)
  rolled_back,  ///< transaction mode (pipeline with verify_commit): another operation of its chunk failed
  timed_out,    ///< the batch deadline passed before it finished
  not_run       ///< stop_on_error: an earlier failure stopped the batch
};
/// "failed", "rolled_back", "timed_out", "not_run".
[[nodiscard]] std::string_view to_string(batch_failure f) noexcept;

/// One operation that did not succeed.
struct batch_error {
  std::size_t index = 0;  ///< position in the batch (0-based)
  std::string sqlstate;   ///< "" when there is none (connection lost, timeout, not run)
  std::string message;
  batch_failure reason = batch_failure::failed;
  /// Whether it may have been applied: not_sent (never reached the server, or rejected
  /// before its chunk was sent), rolled_back (the server undid it or never ran it), fatal (it
  /// ran and failed), indeterminate (sent, then the connection was lost before its commit
  /// was confirmed: it may have been applied). Only indeterminate ones may be in the database.
  steadypg::outcome outcome = steadypg::outcome::fatal;
  /// Transaction mode (pipeline with verify_commit): the chunk that was rolled back and the
  /// operation that caused it.
  std::optional<std::size_t> chunk;
  std::optional<std::size_t> cause;
};

/// Counts of a finished batch. Every operation is either succeeded or failed.
struct batch_stats {
  std::size_t total = 0;
  std::size_t processed = 0;  ///< operations that ran (total − not started)
  std::size_t succeeded = 0;
  std::size_t failed = 0;     ///< total − succeeded: errors, rollbacks, timeouts, not run
  std::size_t timed_out = 0;  ///< failed because of the batch deadline
  /// Failed with outcome indeterminate: sent, then the connection was lost (or the deadline
  /// passed) before the commit was confirmed. The only failures that may have been applied.
  std::size_t unknown = 0;
  /// Operations that waited for an open circuit breaker to let calls through again (instead
  /// of failing at once with circuit_open).
  std::size_t breaker_waited = 0;
  /// With verify_commit: operations whose COMMIT reply was lost and which the server said
  /// committed (they succeeded) …
  std::size_t resolved_committed = 0;
  /// … or did not commit (they ran again).
  std::size_t resolved_aborted = 0;
  double success_rate = 1.0;  ///< succeeded / total (1 for an empty batch)
  std::chrono::nanoseconds duration{};
};

/// The result of client::batch_execute.
struct batch_report {
  batch_stats stats;
  /// One entry per operation that did not succeed, by index.
  std::vector<batch_error> errors;
  /// With keep_results: results[i] is operation i's result when it succeeded (and was a
  /// statement); empty otherwise.
  std::vector<std::optional<result>> results;
  bool timed_out = false;  ///< the deadline passed before every operation finished
  bool stopped = false;    ///< stop_on_error stopped it
};

}  // namespace steadypg
