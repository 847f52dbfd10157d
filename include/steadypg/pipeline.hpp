#pragma once

#include <array>
#include <cstddef>
#include <string_view>
#include <tuple>

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
  /// Marks a sync point: statements before it are one implicit transaction unless inside
  /// BEGIN…COMMIT, and an error aborts only the rest of its own sync group.
  void sync();
  /// The result of the oldest statement not yet collected. Throws sql_error when that
  /// statement failed, and sql_error with SQLSTATE "" and the message "pipeline aborted"
  /// when an earlier statement of the same sync group failed.
  result get_result();
  /// Statements sent whose results were not collected yet.
  [[nodiscard]] std::size_t pending() const noexcept { return m_pending; }
  /// Collects everything outstanding (errors are discarded) and leaves pipeline mode.
  void finish();

 private:
  connection* m_conn;
  std::size_t m_pending = 0;      // statements whose results are not collected
  std::size_t m_syncs = 0;        // sync markers not yet consumed
  bool m_unsynced_sends = false;  // statements sent since the last sync/flush request
  int m_sends_since_flush = 0;
  bool m_active = false;
};

/// Thrown by pipeline::get_result() for a statement skipped because an earlier one failed.
class pipeline_aborted : public sql_error {
 public:
  pipeline_aborted();
};

}  // namespace steadypg
