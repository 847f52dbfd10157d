#pragma once

#include <array>
#include <cstddef>
#include <string_view>
#include <tuple>
#include <deque>

#include "steadypg/connection.hpp"

namespace steadypg {

/// libpq pipeline mode on one connection: send many statements, then collect their results
/// in order, with far fewer round trips. RAII: the destructor drains what is outstanding and
/// leaves pipeline mode.
///
///     steadypg::pipeline p{conn};
///     p.send("INSERT INTO t VALUES ($1)", 1);
///     p.send("INSERT INTO t VALUES ($1)", 2);
///     p.sync();
///     auto r1 = p.get_result();   // throws sql_error if statement 1 failed
///     auto r2 = p.get_result();   // throws pipeline_aborted if an earlier one failed in the same sync group
///     p.await_sync();             // now both are committed
///
/// A statement's result is not its commit: outside BEGIN…COMMIT, the statements of a sync
/// group commit when the server processes the sync point, after their results were sent.
/// Only await_sync() (or finish()) returning says they did; a connection lost before that
/// leaves them in doubt (connection_error with outcome indeterminate).
///
/// A statement text the connection has not prepared yet is prepared when it is sent at the
/// start of a pipeline (one extra round trip, once per connection), so that every later
/// statement of that text goes by name and shares one plan.
class pipeline {
 public:
  /// Enters pipeline mode; the connection must be idle or in a transaction.
  explicit pipeline(connection& conn);
  ~pipeline();
  pipeline(const pipeline&) = delete;
  pipeline& operator=(const pipeline&) = delete;

  /// Queues a statement (unnamed, extended protocol).
  template <bindable... Args>
  void send(std::string_view sql, const Args&... args) {
    internal::with_params([&](std::span<const param_ref> refs) { send_refs(sql, refs); }, args...);
  }
  /// Queues a statement with run-time parameters.
  void send(std::string_view sql, const param_list& params);
  /// Queues a statement with already converted parameters.
  void send_refs(std::string_view sql, std::span<const param_ref> params);
  /// Asks the server to send the results of what was queued so far without waiting for a sync
  /// point, so that they arrive even when a later statement of the same round trip is slow or
  /// its reply is lost. Costs no round trip (the request goes out with the next flush).
  void flush_request();
  /// Marks a sync point: statements before it are one implicit transaction unless inside
  /// BEGIN…COMMIT, and an error aborts only the rest of its own sync group.
  void sync();
  /// The result of the oldest statement not yet collected. Throws sql_error when that
  /// statement failed, and sql_error with SQLSTATE "" and the message "pipeline aborted"
  /// when an earlier statement of the same sync group failed. A success here is not yet a
  /// commit (see await_sync()).
  result get_result();
  /// Waits for the oldest sync point not yet confirmed; every result before it must have been
  /// collected. When it returns, the server has processed the sync: the group's statements
  /// outside an explicit transaction block are committed. Throws connection_error (outcome
  /// indeterminate) when the connection is lost first, timeout_error at the deadline.
  void await_sync();
  /// Statements sent whose results were not collected yet.
  [[nodiscard]] std::size_t pending() const noexcept { return m_pending; }
  /// Sync points sent and not yet confirmed.
  [[nodiscard]] std::size_t syncs_pending() const noexcept { return m_syncs; }
  /// Collects everything outstanding (statement errors are discarded), waits for every sync
  /// point and leaves pipeline mode. Throws connection_error when the connection was lost
  /// before every sync point was confirmed: what those groups did is unknown.
  void finish();

 private:
  void lost();                                           // the connection failed: the pipeline is over
  [[noreturn]] void out_of_step(std::string_view what);  // closes the connection and throws
  void consumed_statement() noexcept;
  // Flushes what is queued; when that finds the connection lost, the pipeline is over.
  void flush_or_lost(const std::optional<std::chrono::steady_clock::time_point>& until);
  // The next result of the stream, never null (the caller owns it). The pipeline is over and
  // this throws when the connection is lost, at the deadline, or when nothing comes where a
  // result was due (`missing` says what was due).
  [[nodiscard]] pg_result* next_in_stream(const std::optional<std::chrono::steady_clock::time_point>& until,
                                          std::string_view missing);
  connection* m_conn;
  std::size_t m_pending = 0;         // statements whose results are not collected
  std::size_t m_syncs = 0;           // sync markers not yet consumed (= m_groups.size())
  std::size_t m_unsynced = 0;        // statements sent since the last sync, not collected
  std::deque<std::size_t> m_groups;  // per pending sync: its statements not collected yet
  bool m_unsynced_sends = false;     // statements sent since the last sync/flush request
  bool m_open_group = false;         // statements sent since the last sync
  int m_sends_since_flush = 0;
  bool m_active = false;
};

/// Thrown by pipeline::get_result() for a statement skipped because an earlier one failed.
class pipeline_aborted : public sql_error {
 public:
  pipeline_aborted();
  /// Internal (see error).
  pipeline_aborted(std::string message, internal::error_details details);

 private:
  [[noreturn]] void raise_with(internal::error_details details) const override;
};

}  // namespace steadypg
