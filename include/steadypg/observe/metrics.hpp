#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace steadypg::observe {

/// Label pairs of one series, e.g. {{"state", "idle"}}. Keep label values to small, fixed
/// sets: SQL text is never a label.
using labels = std::vector<std::pair<std::string, std::string>>;

/// A monotonically increasing count. Lock-free.
class counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { m_value.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t value() const noexcept { return m_value.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> m_value{0};
};

/// A value that goes up and down. Lock-free.
class gauge {
 public:
  void set(double v) noexcept { m_value.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept { m_value.fetch_add(v, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return m_value.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> m_value{0.0};
};

/// Fixed-bucket histogram in seconds (the buckets of docs/metrics.md). Lock-free; no allocation per
/// observation.
class histogram {
 public:
  static constexpr std::array<double, 14> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
  void observe(double seconds) noexcept;
  /// Cumulative count of observations ≤ bounds[i]; i == bounds.size() is +Inf.
  [[nodiscard]] std::uint64_t cumulative(std::size_t i) const noexcept;
  [[nodiscard]] std::uint64_t count() const noexcept { return m_count.load(std::memory_order_relaxed); }
  [[nodiscard]] double sum() const noexcept { return m_sum.load(std::memory_order_relaxed); }
  /// The q-quantile (0–1) estimated from the buckets (upper bound of the bucket it falls in).
  [[nodiscard]] double quantile(double q) const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> m_buckets{};
  std::atomic<std::uint64_t> m_count{0};
  std::atomic<double> m_sum{0.0};
};

/// Metric types.
enum class metric_type { counter, gauge, histogram };

/// A set of metric families with stable addresses; rendering walks them in registration order.
class registry {
 public:
  /// A counter series (created on first use; later calls return the same one).
  counter& add_counter(const std::string& name, const std::string& help, const labels& l = {});
  /// A gauge series.
  gauge& add_gauge(const std::string& name, const std::string& help, const labels& l = {});
  /// A gauge whose value is read at render time.
  void add_gauge_callback(const std::string& name, const std::string& help, const labels& l,
                          std::function<double()> read);
  /// A histogram series.
  histogram& add_histogram(const std::string& name, const std::string& help, const labels& l = {});

  /// Prometheus text exposition format 0.0.4.
  [[nodiscard]] std::string render_prometheus() const;
  /// OpenMetrics 1.0 text (counters' families without `_total`, ends with `# EOF`).
  [[nodiscard]] std::string render_openmetrics() const;
  /// A JSON object {name: [{labels:{…}, value|buckets…}]} for programs.
  [[nodiscard]] std::string render_json() const;

 private:
  struct series {
    labels l;
    std::unique_ptr<counter> c;
    std::unique_ptr<gauge> g;
    std::unique_ptr<histogram> h;
    std::function<double()> read;
  };
  struct family {
    std::string name;
    std::string help;
    metric_type type;
    std::vector<std::unique_ptr<series>> items;
  };
  series& find_or_add(const std::string& name, const std::string& help, metric_type type, const labels& l);
  std::string render(bool openmetrics) const;

  mutable std::mutex m_mutex;  // registration and rendering only, never per increment
  std::vector<std::unique_ptr<family>> m_families;
};

/// Escapes a label value for the text formats: backslash, double quote and newline.
[[nodiscard]] std::string escape_label_value(std::string_view v);

}  // namespace steadypg::observe
