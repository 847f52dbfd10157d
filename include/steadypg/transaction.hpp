#pragma once

#include <optional>
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
    check_active();
    if (m_statements) m_statements->emplace_back(st.sql());
    return m_conn->execute(st, args...);
  }
  /// Runs a statement inside the transaction.
  template <bindable... Args>
  result execute(std::string_view sql, const Args&... args) {
    check_active();
    if (m_statements) m_statements->emplace_back(sql);
    return m_conn->execute(sql, args...);
  }
  /// Runs a statement that returns one value.
  template <typename T, bindable... Args>
  [[nodiscard]] T query_value(std::string_view sql, const Args&... args) {
    return execute(sql, args...).template as<T>();
  }

  /// Sends COMMIT. If the block had failed, the server rolls back instead and this throws
  /// sql_error (25P02). A connection lost while COMMIT is in flight throws indeterminate_commit
  /// (with the transaction's id when fetch_xid was on and the id had arrived).
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
  connection* m_conn;
  bool m_active = false;
  bool m_fetch_xid = false;
  std::vector<std::string>* m_statements = nullptr;
};

}  // namespace steadypg
