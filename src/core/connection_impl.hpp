#pragma once

// Private: shared by connection, transaction, pipeline and copy_in. connection_impl is
// defined in connection.cpp (requests), connect.cpp, wire.cpp (the socket loop), cancel.cpp
// and statement_cache.cpp.

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sql_scan.hpp"
#include "steadypg/connection.hpp"

namespace steadypg::internal {

using clock = std::chrono::steady_clock;
using deadline = std::optional<clock::time_point>;

struct pgresult_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, pgresult_deleter>;

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct cached_statement {
  std::string name;
  std::vector<oid> types;
  int param_count = 0;  // what the server says the statement takes
  std::uint64_t last_used = 0;
};

/// Parameter arrays in the layout libpq wants, on the stack for up to 16 parameters.
class param_arrays {
 public:
  explicit param_arrays(std::span<const param_ref> params);
  [[nodiscard]] int size() const noexcept { return m_n; }
  [[nodiscard]] const char* const* values() const noexcept { return m_values; }
  [[nodiscard]] const int* lengths() const noexcept { return m_lengths; }
  [[nodiscard]] const int* formats() const noexcept { return m_formats; }
  [[nodiscard]] const Oid* types() const noexcept { return m_types; }

 private:
  static constexpr std::size_t inline_count = 16;
  int m_n;
  std::array<const char*, inline_count> m_values_inline{};
  std::array<int, inline_count> m_lengths_inline{}, m_formats_inline{};
  std::array<Oid, inline_count> m_types_inline{};
  std::vector<const char*> m_values_heap;
  std::vector<int> m_lengths_heap, m_formats_heap;
  std::vector<Oid> m_types_heap;
  const char** m_values;
  int* m_lengths;
  int* m_formats;
  Oid* m_types;
};

struct connection_impl {
  PGconn* conn = nullptr;  // replaced only under cancel_mutex (cancel() runs on other threads)
  std::mutex cancel_mutex;
  connection_options options;
  request_facts last;
  bool in_pipeline = false;
  bool in_copy = false;
  std::string sql_buf;  // NUL-terminated copy of the statement text, reused
  std::unordered_map<std::string, cached_statement, string_hash, std::equal_to<>> cache;
  std::vector<std::string> to_deallocate;
  std::uint64_t tick = 0;
  std::uint64_t name_counter = 0;
  // Adaptive read-before-poll: under load the answer is often there already, and a poll()
  // would be a wasted syscall; when it keeps not being there, stop trying for a while.
  // Behind a transaction or statement pooler this is not the session's value but the one each
  // request carries (set_config(…, true) or SET LOCAL), since the session is shared.
  std::chrono::milliseconds session_statement_timeout{0};
  std::string pooler_suspicion;  // pooler none: why a pooler seems to be there anyway
  deadline hard_deadline;        // an absolute bound for every request (a call's deadline)
  std::uint64_t requests = 0;    // requests started (begin_request)
  unsigned eager_misses = 0;
  unsigned eager_skip = 0;
  statement_cache_stats stats;
  std::optional<server_identity> identity;  // connection::identify(), asked once
  bool identity_asked = false;

  ~connection_impl();
  /// Connects with `given` (validated): keepalive defaults, then the DSN, within
  /// connect_timeout. Throws connection_error or timeout_error, closed.
  void connect(const connection_options& given);
  void close() noexcept;

  /// True behind a transaction or statement pooler: no session state may be relied on.
  [[nodiscard]] bool shared_sessions() const noexcept { return shares_server_sessions(options.pooler); }
  /// Pooler none: compares the backend that answers with the one named at login (one round
  /// trip at connect) and fills pooler_suspicion.
  void probe_pooler(const deadline& until);
  /// Behind a transaction or statement pooler: throws usage_error naming the mode when `sql`
  /// needs a session of its own (LISTEN, session SET, session advisory locks, WITH HOLD …).
  void refuse_session_features(std::string_view sql) const;
  /// Sends `sql` (extended protocol, unnamed) in pipeline mode after
  /// set_config('statement_timeout', …, true), with one Sync: one round trip, one implicit
  /// transaction, and the setting ends with it. Returns the statement's result or throws.
  result send_with_timeout(std::string_view sql, const param_arrays& params, bool may_commit, const deadline& until);
  /// Inside a transaction block: sends `sql` (prepared as `st` when given, else extended
  /// protocol unnamed) and `SELECT pg_current_xact_id_if_assigned()` (prepared as `tail` when
  /// given) in pipeline mode with one Sync: one round trip. Returns the statement's result or
  /// throws its error; `xid` gets the transaction's id when it has one, and `answered` says
  /// whether the question was answered at all.
  result send_noting_xid(std::string_view sql, const param_arrays& params, const cached_statement* st,
                         const cached_statement* tail, const deadline& until, std::optional<std::uint64_t>& xid,
                         bool& answered);
  /// Throws if the connection cannot take a request now; resets `last`.
  void begin_request(std::string_view op);
  /// The deadline of a request starting now: options.query_timeout from now (none when 0),
  /// and never later than hard_deadline.
  [[nodiscard]] deadline make_deadline() const;
  /// Waits for the socket; false on deadline.
  bool wait_socket(bool for_read, bool for_write, const deadline& until);
  /// Sends everything buffered, reading input meanwhile so the server never blocks.
  void flush(const deadline& until, std::string_view op);
  /// Throws the right error after a failed PQsend*.
  [[noreturn]] void send_failed(std::string_view op);
  /// Next result, or nullptr at the end of a statement's results. `timed_out` is set
  /// (and nullptr returned) when the deadline passes first.
  PGresult* next_result(const deadline& until, bool& timed_out);
  /// Collects every result of the request in flight; returns the last success or throws.
  result collect(std::string_view op, const deadline& until);
  /// The end of collect(): the success, or the error of `failure` / a lost connection.
  result conclude(result_ptr ok, result_ptr failure, std::string_view op);
  /// After a client-side timeout: cancel, drain (unless `can_drain` is false, as in
  /// pipeline mode, where the connection is closed instead), then throw timeout_error.
  [[noreturn]] void handle_timeout(std::string_view op, bool can_drain = true);
  /// Statement name for `sql`, preparing it first when not cached.
  const cached_statement& prepared(std::string_view sql, const param_arrays& params, const deadline& until);
  /// The cached statement for `sql` with these parameter types, or nullptr (never prepares).
  const cached_statement* find_prepared(std::string_view sql, const param_arrays& params);
  /// Sends a cancel request, bounded by options.cancel_timeout; thread-safe.
  bool send_cancel() noexcept;
  /// Runs an internal statement (no parameters) and discards its result.
  void run_internal(const char* sql, const deadline& until, std::string_view op);
  /// Throws usage_error naming the parameter when a text parameter contains a NUL byte.
  static void check_params(std::span<const param_ref> params);
  /// Throws usage_error when SQL text contains a NUL byte: libpq takes C strings, so the
  /// server would run only the text before it (`DELETE FROM t<NUL> WHERE …`).
  static void check_sql(std::string_view sql, std::string_view what = "SQL text");
};

/// Throws usage_error unless `given` parameters match the statement's `expected`.
void check_param_count(int expected, std::size_t given);

/// True when the connection settings come from a service file (service= or PGSERVICE).
bool names_a_service(const std::string& dsn) noexcept;

/// libpq's last error message without the trailing newline.
std::string last_error_message(PGconn* conn);

}  // namespace steadypg::internal
