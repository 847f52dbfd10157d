#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/connection.hpp"

namespace steadypg {

/// Transaction isolation levels.
enum class isolation_level { read_committed, repeatable_read, serializable };

/// How a transaction block starts.
struct transaction_options {
  /// Isolation level; nullopt keeps the session default.
  std::optional<isolation_level> isolation = std::nullopt;
  /// READ ONLY: writes fail with 25006.
  bool read_only = false;
  /// DEFERRABLE (only meaningful with serializable + read_only).
  bool deferrable = false;
  /// Where client::transaction(fn) runs it on a multi-host client; unset: the client's
  /// cluster.default_route. A replica route runs BEGIN READ ONLY there.
  std::optional<steadypg::route> route = std::nullopt;
  /// Fetch the transaction's id in the round trip of COMMIT (a pipelined
  /// `SELECT pg_current_xact_id_if_assigned()` just before it), so that when the reply to COMMIT
  /// is lost, indeterminate_commit carries the id and the server's identity and the outcome can
  /// be asked of the server (docs/resilience.md#resolving-a-lost-commit). No extra round trip;
  /// the server's identity is asked once per connection. Ignored for read_only transactions
  /// (nothing to resolve). client::transaction() turns it on unless
  /// resilience_options::resolve_commits is off. Default false.
  bool fetch_xid = false;
};

/// An open transaction block on one connection. Rolls back in its destructor unless
/// commit() or rollback() ran. Movable, not copyable.
class transaction {
 public:
  /// Sends BEGIN with the options; throws usage_error if a transaction is already open.
  explicit transaction(connection& conn, const transaction_options& options = {});
  ~transaction();
  transaction(transaction&& other) noexcept;
  transaction& operator=(transaction&&) = delete;
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  /// Runs a statement inside the transaction.
  template <bindable... Args>
  result execute(const statement& st, const Args&... args) {
    return execute_with(st.sql(), st.may_prepare(), args...);
  }
  /// Runs a statement inside the transaction.
  template <bindable... Args>
  result execute(std::string_view sql, const Args&... args) {
    return execute_with(sql, true, args...);
  }
  /// Runs a statement that returns one value.
  template <typename T, bindable... Args>
  [[nodiscard]] T query_value(std::string_view sql, const Args&... args) {
    return execute(sql, args...).template as<T>();
  }

  /// Sends COMMIT. If the block had failed, the server rolls back instead and this throws
  /// sql_error (25P02). A connection lost while COMMIT is in flight throws indeterminate_commit
  /// (with the transaction's id when fetch_xid was on and the id had arrived).
  /// With fetch_xid, the id is learnt as early as it exists: each statement run through this
  /// object until the transaction has one carries a pipelined
  /// `SELECT pg_current_xact_id_if_assigned()` in its own round trip, so that the first write
  /// brings the id back and COMMIT goes out as a plain COMMIT. Only when the id is not known by
  /// then (statements that could not carry the question, or ran on conn() directly) does COMMIT
  /// carry it, in its own round trip.
  void commit();
  /// Sends ROLLBACK.
  void rollback();
  /// True until commit() or rollback().
  [[nodiscard]] bool active() const noexcept { return m_conn != nullptr && m_active; }
  /// The connection the transaction runs on.
  [[nodiscard]] connection& conn() const noexcept { return *m_conn; }
  /// Keeps the text of every statement execute() runs in `sink` (null: none), for the client's
  /// query cache, which invalidates the tables they wrote once COMMIT succeeded.
  void record_statements(std::vector<std::string>* sink) noexcept { m_statements = sink; }

 private:
  void check_active() const;
  void commit_fetching_xid();
  void commit_with_known_xid();
  template <typename... Args>
  result execute_with(std::string_view sql, bool may_prepare, const Args&... args) {
    check_active();
    if (m_statements) m_statements->emplace_back(sql);
    if (!m_fetch_xid || m_xid) return m_conn->execute_with(sql, may_prepare, args...);
    return internal::with_params(
        [&](std::span<const param_ref> refs) { return execute_noting_xid(sql, refs, may_prepare); }, args...);
  }
  /// The statement, and in the same round trip whether the transaction has an id yet.
  result execute_noting_xid(std::string_view sql, std::span<const param_ref> params, bool may_prepare);
  connection* m_conn;
  bool m_active = false;
  bool m_fetch_xid = false;
  std::optional<std::uint64_t> m_xid;  // the transaction's id, once a statement brought it
  // Requests the connection had started when a statement last answered "no id yet" (0: not
  // answered, or something ran since without asking).
  std::uint64_t m_no_xid_at = 0;
  std::vector<std::string>* m_statements = nullptr;
};

}  // namespace steadypg
