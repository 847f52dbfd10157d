#include "steadypg/retry.hpp"

#include "check.hpp"

#include <fmt/format.h>

#include "steadypg/error.hpp"

namespace steadypg {

void retry_options::validate() const {
  using internal::check_range;
  check_range("retry_options.max_retries", max_retries, internal::ranges::max_retries);
  check_range("retry_options.base_delay", base_delay, internal::ranges::retry_delay);
  check_range("retry_options.max_delay", max_delay, {base_delay.count(), 3600000, " ms"}, " (≥ base_delay)");
  check_range("retry_options.min_attempt_time", min_attempt_time, {0, 600000, " ms"});
}

std::chrono::nanoseconds backoff_ceiling(const retry_options& o, int attempt) {
  const auto cap = std::chrono::duration_cast<std::chrono::nanoseconds>(o.max_delay);
  const auto base = std::chrono::duration_cast<std::chrono::nanoseconds>(o.base_delay);
  if (base.count() <= 0) return std::chrono::nanoseconds{0};
  if (attempt < 0) attempt = 0;
  // base·2^attempt without overflow: stop doubling once past the cap.
  auto v = base;
  for (int i = 0; i < attempt && v < cap; ++i) v *= 2;
  return std::min(v, cap);
}

std::chrono::nanoseconds full_jitter_delay(const retry_options& o, int attempt, std::uint64_t random64) {
  const auto ceiling = backoff_ceiling(o, attempt).count();
  if (ceiling <= 0) return std::chrono::nanoseconds{0};
  // Uniform in [0, ceiling] from 64 random bits.
  const auto unit = static_cast<double>(random64 >> 11) * 0x1.0p-53;  // [0, 1)
  return std::chrono::nanoseconds{static_cast<std::int64_t>(unit * static_cast<double>(ceiling + 1))};
}

void retry_budget_options::validate() const {
  using internal::check_range;
  check_range("retry_budget_options.ratio", ratio, 0.0, 1.0);
  check_range("retry_budget_options.min_per_second", min_per_second, {0, 1000000});
  check_range("retry_budget_options.window", window, {1000, 3600000, " ms"});
}

retry_budget::retry_budget(retry_budget_options options, time_source now)
    : m_options(options),
      m_now(std::move(now)),
      m_bucket_width(std::chrono::duration_cast<clock::duration>(options.window) / k_buckets) {
  m_options.validate();
}

std::int64_t retry_budget::epoch_now() const noexcept {
  const auto t = m_now ? m_now() : clock::now();
  return t.time_since_epoch() / m_bucket_width;
}

retry_budget::bucket& retry_budget::current() noexcept {
  const std::int64_t e = epoch_now();
  bucket& b = m_buckets[static_cast<std::size_t>(e % k_buckets)];
  std::int64_t seen = b.epoch.load(std::memory_order_acquire);
  if (seen != e && b.epoch.compare_exchange_strong(seen, e)) {
    // First touch of this bucket in a new window slot: forget what it held.
    b.deposits.store(0, std::memory_order_relaxed);
    b.withdrawals.store(0, std::memory_order_relaxed);
  }
  return b;
}

void retry_budget::totals(std::uint64_t& deposits, std::uint64_t& withdrawals) const noexcept {
  const std::int64_t e = epoch_now();
  deposits = withdrawals = 0;
  for (const auto& b : m_buckets) {
    const std::int64_t be = b.epoch.load(std::memory_order_acquire);
    if (be > e - k_buckets && be <= e) {
      deposits += b.deposits.load(std::memory_order_relaxed);
      withdrawals += b.withdrawals.load(std::memory_order_relaxed);
    }
  }
}

void retry_budget::record_success() noexcept {
  // Successes are batched per thread: the shared counter sees one update per 16 calls, so
  // the hot path does not bounce a cache line between threads. (A thread that switches to
  // another budget drops at most 15 deposits: the budget is an estimate anyway.)
  struct batch {
    const retry_budget* owner = nullptr;
    std::uint32_t pending = 0;
  };
  thread_local batch t;
  if (t.owner != this) {
    t.owner = this;
    t.pending = 0;
  }
  if (++t.pending < 16) return;
  current().deposits.fetch_add(t.pending, std::memory_order_relaxed);
  t.pending = 0;
}

double retry_budget::available() const noexcept {
  std::uint64_t d = 0, w = 0;
  totals(d, w);
  const double window_s = std::chrono::duration<double>(m_options.window).count();
  return static_cast<double>(m_options.min_per_second) * window_s + m_options.ratio * static_cast<double>(d) -
         static_cast<double>(w);
}

bool retry_budget::try_spend() noexcept {
  if (available() < 1.0) return false;
  current().withdrawals.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace steadypg
