#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
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

/// Turns events into log lines: retries, budget, breaker transitions, indeterminate commits,
/// connect failures, leaks, failed calls (info) and slow calls (warn, with the statement
/// truncated, duration, rows, the pool and breaker, and parameters only when the client has
/// log_parameters on). The client keeps the ring buffer of recent slow queries
/// (client::recent_slow_queries()).
class log_observer final : public observer {
 public:
  explicit log_observer(logger& log);

  void on_pool_connect_failed(const error& e) noexcept override;
  void on_pool_acquire_timeout(std::chrono::nanoseconds waited) noexcept override;
  void on_pool_leak_suspected(const leak_report& r) noexcept override;
  void on_retry(const retry_report& r) noexcept override;
  void on_retry_budget_exhausted(std::string_view op) noexcept override;
  void on_breaker_transition(breaker_state from, breaker_state to) noexcept override;
  void on_indeterminate_commit(std::string_view op) noexcept override;
  void on_commit_resolved(const commit_resolution_report& report) noexcept override;
  void on_slow_query_plan(const slow_plan_report& report) noexcept override;
  void on_call_finished(const call_report& r) noexcept override;
  void on_batch_finished(const batch_summary& b) noexcept override;
  void on_health_changed(health_status from, health_status to) noexcept override;
  void on_topology_changed(const topology_change& change) noexcept override;
  void on_pooler_suspected(std::string_view evidence) noexcept override;
  void on_pool_scaling(const pool_scaling_report& r) noexcept override;

 private:
  logger& m_log;
};

}  // namespace steadypg::observe
