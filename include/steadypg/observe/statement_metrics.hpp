#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "steadypg/observe/metrics.hpp"

namespace steadypg::observe {

/// Per-statement metrics by statement *name* (statement{…}.name(), never its SQL text):
/// postgresql_statement_duration_seconds{name} and postgresql_statement_errors_total{name}.
/// At most `max_names` names get series of their own (the first ones seen; series are never
/// dropped, so a counter never goes backwards); calls of any further name count under
/// name="other". Thread-safe.
class statement_metrics {
 public:
  /// One statement's totals, for the slowest-statements table of the dashboard.
  struct entry {
    std::string name;
    std::uint64_t calls = 0;
    std::uint64_t errors = 0;
    double total_seconds = 0;
    double max_seconds = 0;
    double p95_seconds = 0;  ///< estimated from the buckets
  };

  statement_metrics(registry& reg, std::size_t max_names = 100);

  /// Records one finished call of the statement `name` (non-empty).
  void record(std::string_view name, double seconds, bool failed) noexcept;
  /// Every name seen (and "other" once used), unordered.
  [[nodiscard]] std::vector<entry> entries() const;
  /// The label used for names past the cap.
  static constexpr std::string_view overflow_name = "other";

 private:
  struct slot {
    histogram* duration = nullptr;
    counter* errors = nullptr;
    std::atomic<double> max_seconds{0.0};
  };
  slot& slot_for(std::string_view name);

  registry& m_registry;
  std::size_t m_max_names;
  mutable std::mutex m_mutex;
  std::unordered_map<std::string, std::unique_ptr<slot>> m_slots;
};

}  // namespace steadypg::observe
