#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

namespace steadypg {

/// Retry policy (docs/resilience.md). Plain aggregate; validate() throws config_error.
struct retry_options {
  /// Retries after the first attempt. Default 3 (POSTGRESQL_MAX_RETRIES); 0–100.
  int max_retries = 3;
  /// Backoff base: attempt n sleeps U(0, min(max_delay, base_delay·2^n)). Default 1000 ms
  /// (POSTGRESQL_RETRY_DELAY); 0–600000 ms.
  std::chrono::milliseconds base_delay{1000};
  /// Backoff cap. Default 30 s; ≥ base_delay.
  std::chrono::milliseconds max_delay{30000};
  /// Never start an attempt with less than this left before the deadline. Default 20 ms.
  std::chrono::milliseconds min_attempt_time{20};

  /// Throws config_error naming the field.
  void validate() const;
};

/// Full-jitter exponential backoff: U(0, min(cap, base·2^attempt)); attempt counts from 0.
/// Never overflows (large attempts saturate at the cap).
[[nodiscard]] std::chrono::nanoseconds full_jitter_delay(const retry_options& o, int attempt, std::uint64_t random64);

/// The upper bound of full_jitter_delay for `attempt` (for tests and docs).
[[nodiscard]] std::chrono::nanoseconds backoff_ceiling(const retry_options& o, int attempt);

/// Retry budget options (Finagle RetryBudget semantics).
struct retry_budget_options {
  /// Share of recent successes that may be retried. Default 0.1; 0–1.
  double ratio = 0.1;
  /// Retries always allowed per second of the window, whatever the successes. Default 10.
  int min_per_second = 10;
  /// How long deposits and withdrawals count. Default 10 s; ≥ 1 s.
  std::chrono::milliseconds window{10000};

  void validate() const;
};

/// A thread-safe retry budget: over the last `window`, retries ≤ min_per_second·window +
/// ratio·successes. Lock-free: per-tenth-of-window buckets of atomic counters.
class retry_budget {
 public:
  using clock = std::chrono::steady_clock;
  using time_source = std::function<clock::time_point()>;

  explicit retry_budget(retry_budget_options options = {}, time_source now = {});

  /// Records a successful call (a deposit).
  void record_success() noexcept;
  /// Takes one retry from the budget; false when it is spent.
  [[nodiscard]] bool try_spend() noexcept;
  /// Retries still allowed now.
  [[nodiscard]] double available() const noexcept;
  [[nodiscard]] const retry_budget_options& options() const noexcept { return m_options; }

 private:
  static constexpr int k_buckets = 10;
  struct bucket {
    std::atomic<std::int64_t> epoch{-1};
    std::atomic<std::uint64_t> deposits{0};
    std::atomic<std::uint64_t> withdrawals{0};
  };
  bucket& current() noexcept;
  std::int64_t epoch_now() const noexcept;
  void totals(std::uint64_t& deposits, std::uint64_t& withdrawals) const noexcept;

  retry_budget_options m_options;
  time_source m_now;
  clock::duration m_bucket_width;
  std::array<bucket, k_buckets> m_buckets;
};

}  // namespace steadypg
