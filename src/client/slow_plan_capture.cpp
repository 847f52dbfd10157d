#include "slow_plan_capture.hpp"

#include <fmt/format.h>

#include "steadypg/plan.hpp"

namespace steadypg::internal {

namespace {
// Statements remembered for the once-per-interval rule, at most (the oldest are forgotten).
constexpr std::size_t max_remembered = 1024;

std::string summary_of(const plan::explained_plan& p) {
  const plan::node& r = p.root;
  std::string s = fmt::format("{}, cost {:.2f}, est rows {:.0f}", r.label(), r.total_cost, r.planned_rows);
  // The costliest scan under the root says where the time is likely to go.
  const plan::node* scan = nullptr;
  for (const plan::node* n : p.nodes()) {
    if (n != &r && !n->relation.empty() && (scan == nullptr || n->total_cost > scan->total_cost)) scan = n;
  }
  if (scan != nullptr) s += fmt::format("; {} (cost {:.2f})", scan->label(), scan->total_cost);
  return s;
}
}  // namespace

slow_plan_capture::slow_plan_capture(std::function<basic_pool<connection>::handle()> acquire,
                                     observe::slow_query_log& log, observer* events, std::chrono::milliseconds interval,
                                     std::size_t queue_capacity)
    : m_acquire(std::move(acquire)),
      m_log(log),
      m_observer(events),
      m_interval(interval),
      m_capacity(queue_capacity),
      m_thread([this] { loop(); }) {}

slow_plan_capture::~slow_plan_capture() {
  {
    std::lock_guard lk(m_mutex);
    m_stop = true;
  }
  m_wake.notify_all();
  m_thread.join();
}

bool slow_plan_capture::submit(std::string_view sql, param_list params) noexcept {
  try {
    const auto now = clock::now();
    {
      std::lock_guard lk(m_mutex);
      if (m_stop) return false;
      std::string key(sql);
      if (auto it = m_last.find(key); it != m_last.end() && now - it->second < m_interval) return false;
      if (m_queue.size() >= m_capacity) {
        ++m_dropped;
        return false;
      }
      if (m_last.size() >= max_remembered) {
        for (auto it = m_last.begin(); it != m_last.end();) {
          it = now - it->second >= m_interval ? m_last.erase(it) : std::next(it);
        }
        if (m_last.size() >= max_remembered) m_last.erase(m_last.begin());
      }
      m_last[key] = now;
      m_queue.push_back({std::move(key), std::move(params)});
    }
    m_wake.notify_one();
    return true;
  } catch (...) {
    return false;  // out of memory: no plan for this one
  }
}

void slow_plan_capture::loop() {
  while (true) {
    job j;
    {
      std::unique_lock lk(m_mutex);
      m_wake.wait(lk, [&] { return m_stop || !m_queue.empty(); });
      if (m_stop) return;
      j = std::move(m_queue.front());
      m_queue.pop_front();
    }
    try {
      auto conn = m_acquire();
      plan::explain_options o;
      o.check_foreign_keys = false;  // one EXPLAIN, nothing else, on the borrowed connection
      const auto report = plan::explain(conn.get(), j.sql, j.params, o);
      std::vector<std::string> findings;
      for (const auto& f : report.findings) findings.push_back(fmt::format("{}: {}", f.rule, f.evidence));
      const std::string summary = summary_of(report.plan);
      m_log.attach_plan(j.sql, summary, findings);
      if (m_observer != nullptr) m_observer->on_slow_query_plan({j.sql, summary, findings});
      std::lock_guard lk(m_mutex);
      ++m_explained;
    } catch (const std::exception& e) {
      // A statement EXPLAIN does not take (a COPY, a SET …) or a server that went away: the
      // slow-query record stays without a plan and says why.
      const std::string summary = fmt::format("(no plan: {})", std::string_view(e.what()).substr(0, 200));
      m_log.attach_plan(j.sql, summary, {});
      if (m_observer != nullptr) m_observer->on_slow_query_plan({j.sql, summary, {}});
      std::lock_guard lk(m_mutex);
      ++m_failed;
    }
  }
}

std::uint64_t slow_plan_capture::explained() const noexcept {
  std::lock_guard lk(m_mutex);
  return m_explained;
}
std::uint64_t slow_plan_capture::dropped() const noexcept {
  std::lock_guard lk(m_mutex);
  return m_dropped;
}
std::uint64_t slow_plan_capture::failed() const noexcept {
  std::lock_guard lk(m_mutex);
  return m_failed;
}

}  // namespace steadypg::internal
