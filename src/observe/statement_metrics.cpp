#include "steadypg/observe/statement_metrics.hpp"

#include <algorithm>

namespace steadypg::observe {

namespace {
constexpr const char* duration_help = "Duration of calls of a named statement (its name, never its SQL text)";
constexpr const char* errors_help = "Failed calls of a named statement";
}  // namespace

statement_metrics::statement_metrics(registry& reg, std::size_t max_names) : m_registry(reg), m_max_names(max_names) {}

statement_metrics::slot& statement_metrics::slot_for(std::string_view name) {
  // Called with m_mutex held.
  if (auto it = m_slots.find(std::string(name)); it != m_slots.end()) return *it->second;
  std::string key(name);
  if (m_slots.size() >= m_max_names) {
    key = overflow_name;
    if (auto it = m_slots.find(key); it != m_slots.end()) return *it->second;
  }
  auto s = std::make_unique<slot>();
  s->duration = &m_registry.add_histogram("postgresql_statement_duration_seconds", duration_help, {{"name", key}});
  s->errors = &m_registry.add_counter("postgresql_statement_errors_total", errors_help, {{"name", key}});
  return *m_slots.emplace(std::move(key), std::move(s)).first->second;
}

void statement_metrics::record(std::string_view name, double seconds, bool failed) noexcept {
  if (name.empty()) return;
  try {
    slot* s = nullptr;
    {
      std::lock_guard lk(m_mutex);
      s = &slot_for(name);
    }
    s->duration->observe(seconds);
    if (failed) s->errors->inc();
    double seen = s->max_seconds.load(std::memory_order_relaxed);
    while (seconds > seen && !s->max_seconds.compare_exchange_weak(seen, seconds, std::memory_order_relaxed)) {
    }
  } catch (...) {
    // Out of memory for a new name: the call stays counted in the client-wide families.
  }
}

std::vector<statement_metrics::entry> statement_metrics::entries() const {
  std::vector<entry> out;
  std::lock_guard lk(m_mutex);
  out.reserve(m_slots.size());
  for (const auto& [name, s] : m_slots) {
    out.push_back({name, s->duration->count(), s->errors->value(), s->duration->sum(),
                   s->max_seconds.load(std::memory_order_relaxed), s->duration->quantile(0.95)});
  }
  return out;
}

}  // namespace steadypg::observe
