#pragma once

#include <string_view>
#include <type_traits>
#include <utility>

#include "steadypg/config.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/pool.hpp"
#include "steadypg/transaction.hpp"

namespace steadypg {

/// The thread-safe entry point: owns a pool of connections and borrows one per call.
///
///     steadypg::client db{steadypg::client_options::from_env()};
///     auto n = db.query_value<int64_t>("SELECT count(*) FROM users WHERE age > $1", 40);
///     db.transaction([&](steadypg::transaction& tx) { tx.execute(…); tx.execute(…); });
class client {
 public:
  using pool_type = basic_pool<connection>;
  /// A borrowed connection (RAII: returned to the pool when destroyed).
  using pooled_connection = pool_type::handle;

  /// Builds the pool from `options` (pool_min/max, acquire_timeout, connection_timeout,
  /// statement_timeout, statement_cache_size, health_check_interval). `obs` receives events.
  explicit client(client_options options, observer* obs = nullptr);
  /// Same, with full control over the pool; `pool.min_size`/`max_size` etc. win over `options`.
  client(client_options options, pool_options pool, observer* obs = nullptr);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Borrows a connection for several statements. `context` is reported by leak detection.
  [[nodiscard]] pooled_connection acquire(const char* context = nullptr);

  /// Runs one statement on a pooled connection.
  template <bindable... Args>
  result execute(std::string_view sql, const Args&... args) {
    auto c = acquire("execute");
    return c->execute(sql, args...);
  }
  /// Runs one statement on a pooled connection.
  template <bindable... Args>
  result execute(const statement& st, const Args&... args) {
    auto c = acquire("execute");
    return c->execute(st, args...);
  }
  /// Runs a statement with run-time parameters.
  result execute(std::string_view sql, const param_list& params);
  /// Runs a statement that returns one row with one column and converts it.
  template <typename T, bindable... Args>
  [[nodiscard]] T query_value(std::string_view sql, const Args&... args) {
    return execute(sql, args...).template as<T>();
  }

  /// Runs `fn(steadypg::transaction&)` in a transaction on one pooled connection and commits
  /// when it returns; an exception rolls back and propagates. Returns what `fn` returns.
  template <typename Fn>
  auto transaction(Fn&& fn, const transaction_options& options = {})
      -> std::invoke_result_t<Fn&, steadypg::transaction&> {
    using R = std::invoke_result_t<Fn&, steadypg::transaction&>;
    auto c = acquire("transaction");
    steadypg::transaction tx(*c, options);
    if constexpr (std::is_void_v<R>) {
      fn(tx);
      tx.commit();
    } else {
      R r = fn(tx);
      tx.commit();
      return r;
    }
  }

  /// One round trip on a pooled connection.
  void ping();
  /// Pool counters.
  [[nodiscard]] pool_stats pool_statistics() const;
  /// The options in effect.
  [[nodiscard]] const client_options& options() const noexcept { return m_options; }
  /// The pool (for stats and explicit acquire with a deadline).
  [[nodiscard]] pool_type& pool() noexcept { return *m_pool; }

 private:
  client_options m_options;
  std::unique_ptr<pool_type> m_pool;
};

/// The pool settings a client derives from client_options.
[[nodiscard]] pool_options pool_options_from(const client_options& options);

}  // namespace steadypg
