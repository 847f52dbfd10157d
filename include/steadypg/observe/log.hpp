#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "steadypg/observer.hpp"

namespace steadypg::observe {

/// Log levels, least to most severe.
enum class log_level { debug, info, warn, error };
/// "debug", "info", "warn", "error".
[[nodiscard]] std::string_view to_string(log_level l) noexcept;

/// One context field of a log line (op, attempt, duration_ms, sqlstate, pool_active …).
struct log_field {
  std::string_view key;
  std::variant<std::string_view, std::int64_t, double, bool> value;
};

/// Where log lines go. Implementations must be thread-safe. Passwords must never be passed
/// in (the library only ever logs redacted DSNs).
class logger {
 public:
  explicit logger(log_level min = log_level::info) : m_min(min) {}
  virtual ~logger() = default;
  /// Whether a line at `l` would be written.
  [[nodiscard]] bool enabled(log_level l) const noexcept { return l >= m_min; }
  /// Writes one line (subject to the level and to rate limiting of repeated errors).
  void log(log_level l, std::string_view component, std::string_view msg, std::span<const log_field> fields = {});

 protected:
  /// Formats and writes one line.
  virtual void write(log_level l, std::string_view component, std::string_view msg,
                     std::span<const log_field> fields) = 0;

 private:
  log_level m_min;
  std::mutex m_mutex;  // rate limiting of identical warn/error lines: at most one per second
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> m_recent;
};

/// One JSON object per line: {"ts","level","msg","component", then the fields}.
class json_logger final : public logger {
 public:
  explicit json_logger(std::FILE* out = stderr, log_level min = log_level::info) : logger(min), m_out(out) {}

 protected:
  void write(log_level l, std::string_view component, std::string_view msg, std::span<const log_field> fields) override;

 private:
  std::FILE* m_out;
  std::mutex m_mutex;
};

/// Human-readable lines: `2026-…Z warn  client: msg key=value …`.
class text_logger final : public logger {
 public:
  explicit text_logger(std::FILE* out = stderr, log_level min = log_level::info) : logger(min), m_out(out) {}

 protected:
  void write(log_level l, std::string_view component, std::string_view msg, std::span<const log_field> fields) override;

 private:
  std::FILE* m_out;
  std::mutex m_mutex;
};

/// A slow call, as kept in the ring buffer and passed to the callback.
struct slow_query {
  std::chrono::system_clock::time_point at;
  std::string operation;
  std::string sql;  ///< truncated to 500 characters
  double duration_ms = 0;
  std::uint64_t rows = 0;
  int attempts = 1;
  bool failed = false;
};

/// Turns events into log lines (retries, budget, breaker transitions, indeterminate commits,
/// connect failures, leaks, failed calls) and flags slow queries: a warning line, a bounded
/// ring buffer of the most recent ones, and an optional callback.
class log_observer final : public observer {
 public:
  log_observer(logger& log, std::chrono::milliseconds slow_query_threshold, std::size_t keep_slow = 64);

  /// Called for every slow query (from the thread that ran it; must not throw).
  void on_slow_query(std::function<void(const slow_query&)> callback);
  /// The most recent slow queries, oldest first.
  [[nodiscard]] std::vector<slow_query> recent_slow_queries() const;

  void on_pool_connect_failed(const error& e) noexcept override;
  void on_pool_acquire_timeout(std::chrono::nanoseconds waited) noexcept override;
  void on_pool_leak_suspected(const leak_report& r) noexcept override;
  void on_retry(std::string_view op, std::string_view reason, int attempt, std::chrono::nanoseconds delay) noexcept override;
  void on_retry_budget_exhausted(std::string_view op) noexcept override;
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override;
  void on_indeterminate_commit(std::string_view op) noexcept override;
  void on_call_finished(const call_report& r) noexcept override;
  void on_health_changed(int from, int to) noexcept override;

 private:
  logger& m_log;
  std::chrono::nanoseconds m_threshold;
  std::size_t m_keep;
  mutable std::mutex m_mutex;
  std::deque<slow_query> m_slow;
  std::function<void(const slow_query&)> m_callback;
};

}  // namespace steadypg::observe
