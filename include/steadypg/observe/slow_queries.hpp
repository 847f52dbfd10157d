#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/observer.hpp"

namespace steadypg {

/// A slow call as kept by a client (client::recent_slow_queries()) and passed to its callback
/// (client::on_slow_query()).
struct slow_query {
  std::chrono::system_clock::time_point at;
  std::string operation;
  std::string sql;     ///< truncated to 500 bytes
  std::string params;  ///< only with observe.log_parameters; "" otherwise
  double duration_ms = 0;
  std::uint64_t rows = 0;
  int attempts = 1;
  bool failed = false;
  /// With observe.explain_slow_queries: the plan's one-line summary ("Seq Scan on t, cost
  /// 3967.00, est rows 40"), filled in shortly after the call by a background EXPLAIN; "" until
  /// then, or when the statement was EXPLAINed within the interval already.
  std::string plan;
  /// With the plan: the rules' findings, "rule: evidence" each.
  std::vector<std::string> plan_findings;
};

namespace observe {

/// The most recent slow calls (a bounded ring) and a callback for each new one. A client
/// feeds it the calls it finds slower than observe.slow_query_threshold; thread-safe.
class slow_query_log {
 public:
  /// Keeps at most `capacity` records (the oldest go first).
  explicit slow_query_log(std::size_t capacity = 64) : m_capacity(capacity) {}

  /// Records a slow call and passes it to the callback, from the calling thread, after the
  /// lock is released. Never throws (out of memory loses the record, not the call).
  void record(const call_report& report) noexcept;
  /// The records, oldest first.
  [[nodiscard]] std::vector<slow_query> recent() const;
  /// Attaches a plan to the most recent record of `sql` (as recorded: truncated) that has none.
  void attach_plan(std::string_view sql, std::string plan, std::vector<std::string> findings) noexcept;
  /// Replaces the callback (empty removes it). It must not throw; keep it short.
  void on_slow(std::function<void(const slow_query&)> callback);

 private:
  std::size_t m_capacity;
  mutable std::mutex m_mutex;
  std::deque<slow_query> m_ring;
  std::function<void(const slow_query&)> m_callback;
};

}  // namespace observe
}  // namespace steadypg
