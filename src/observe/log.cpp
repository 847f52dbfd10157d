#include "steadypg/observe/log.hpp"

#include <ctime>
#include <fmt/format.h>

#include "steadypg/circuit_breaker.hpp"
#include "steadypg/health.hpp"
#include "steadypg/error.hpp"

namespace steadypg::observe {
namespace {

std::string timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<int>(c));
        else out.push_back(c);
    }
  }
  out.push_back('"');
}

std::string value_text(const log_field& f, bool json) {
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          if (!json) return std::string(v);
          std::string s;
          append_json_string(s, v);
          return s;
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else {
          return fmt::format("{}", v);
        }
      },
      f.value);
}

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
  }
  return "info";
}

void logger::log(log_level l, std::string_view component, std::string_view msg, std::span<const log_field> fields) {
  if (!enabled(l)) return;
  std::uint64_t suppressed = 0;
  if (l >= log_level::warn) {
    // The same warning or error at most once a second; the next line says how many were dropped.
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(m_mutex);
    // Identical: same level, component and message, and the same statement and error.
    auto key = fmt::format("{}|{}|{}", to_string(l), component, msg);
    for (const auto& f : fields) {
      if (f.key != "op" && f.key != "sql" && f.key != "sqlstate" && f.key != "error") continue;
      if (const auto* v = std::get_if<std::string_view>(&f.value)) {
        key += '|';
        key += *v;
      }
    }
    auto it = m_recent.find(key);
    if (it != m_recent.end() && now - it->second.first < std::chrono::seconds(1)) {
      ++it->second.second;
      return;
    }
    if (it != m_recent.end()) suppressed = it->second.second;
    if (m_recent.size() > 1024) m_recent.clear();
    m_recent[std::move(key)] = {now, 0};
  }
  if (suppressed == 0) {
    write(l, component, msg, fields);
    return;
  }
  std::vector<log_field> more(fields.begin(), fields.end());
  more.push_back({"suppressed", static_cast<std::int64_t>(suppressed)});
  write(l, component, msg, more);
}

void json_logger::write(log_level l, std::string_view component, std::string_view msg,
                        std::span<const log_field> fields) {
  std::string line = "{\"ts\":\"" + timestamp() + "\",\"level\":\"" + std::string(to_string(l)) + "\",\"msg\":";
  append_json_string(line, msg);
  line += ",\"component\":";
  append_json_string(line, component);
  for (const auto& f : fields) {
    line.push_back(',');
    append_json_string(line, f.key);
    line.push_back(':');
    line += value_text(f, true);
  }
  line += "}\n";
  std::lock_guard lk(m_mutex);
  std::fwrite(line.data(), 1, line.size(), m_out);
  std::fflush(m_out);
}

void text_logger::write(log_level l, std::string_view component, std::string_view msg,
                        std::span<const log_field> fields) {
  std::string line = fmt::format("{} {:<5} {}: {}", timestamp(), to_string(l), component, msg);
  for (const auto& f : fields) line += fmt::format(" {}={}", f.key, value_text(f, false));
  line += "\n";
  std::lock_guard lk(m_mutex);
  std::fwrite(line.data(), 1, line.size(), m_out);
  std::fflush(m_out);
}

log_observer::log_observer(logger& log) : m_log(log) {}

namespace {

void add_context(std::vector<log_field>& f, const call_context& c) {
  if (c.pool_active >= 0) {
    f.push_back({"pool_active", static_cast<std::int64_t>(c.pool_active)});
    f.push_back({"pool_idle", static_cast<std::int64_t>(c.pool_idle)});
    f.push_back({"pool_waiting", static_cast<std::int64_t>(c.pool_waiting)});
  }
  if (!c.breaker.empty()) f.push_back({"breaker", c.breaker});
}

}  // namespace

void log_observer::on_pool_connect_failed(const error& e) noexcept {
  try {
    const log_field f[] = {{"sqlstate", std::string_view(e.sqlstate())}, {"error", std::string_view(e.what())}};
    m_log.log(log_level::warn, "pool", "could not open a connection", f);
  } catch (...) {
  }
}

void log_observer::on_pool_acquire_timeout(std::chrono::nanoseconds waited) noexcept {
  try {
    const log_field f[] = {{"duration_ms", ms(waited)}};
    m_log.log(log_level::warn, "pool", "no pooled connection became available in time", f);
  } catch (...) {
  }
}

void log_observer::on_pool_leak_suspected(const leak_report& r) noexcept {
  try {
    const log_field f[] = {{"connection_id", static_cast<std::int64_t>(r.connection_id)},
                           {"held_ms", ms(r.held_for)},
                           {"context", r.context}};
    m_log.log(log_level::warn, "pool", "connection held longer than leak_detection_threshold", f);
  } catch (...) {
  }
}

void log_observer::on_retry(const retry_report& r) noexcept {
  try {
    std::vector<log_field> f{{"op", r.operation},
                             {"attempt", static_cast<std::int64_t>(r.attempt)},
                             {"reason", r.reason},
                             {"sqlstate", r.sqlstate},
                             {"delay_ms", ms(r.delay)}};
    add_context(f, r.context);
    m_log.log(log_level::info, "retry", "retrying", f);
  } catch (...) {
  }
}

void log_observer::on_retry_budget_exhausted(std::string_view op) noexcept {
  try {
    const log_field f[] = {{"op", op}};
    m_log.log(log_level::warn, "retry", "retry budget exhausted; returning the error", f);
  } catch (...) {
  }
}

void log_observer::on_breaker_transition(breaker_state from, breaker_state to) noexcept {
  try {
    const log_field f[] = {{"from", to_string(from)}, {"breaker", to_string(to)}};
    m_log.log(to == breaker_state::closed ? log_level::info : log_level::warn, "breaker",
              "circuit breaker changed state", f);
  } catch (...) {
  }
}

void log_observer::on_indeterminate_commit(std::string_view op) noexcept {
  try {
    const log_field f[] = {{"op", op}};
    m_log.log(log_level::error, "client", "connection lost while COMMIT was in flight; outcome unknown", f);
  } catch (...) {
  }
}

void log_observer::on_commit_resolved(const commit_resolution_report& r) noexcept {
  try {
    const log_field f[] = {{"op", r.operation},
                           {"xid", static_cast<std::int64_t>(r.xid)},
                           {"resolution", to_string(r.result)},
                           {"duration_ms", ms(r.took)},
                           {"reason", r.reason}};
    const char* msg = r.result == commit_resolution::committed ? "lost COMMIT resolved: the transaction committed"
                      : r.result == commit_resolution::aborted
                          ? "lost COMMIT resolved: the transaction did not commit; running it again"
                          : "lost COMMIT could not be resolved; outcome unknown";
    m_log.log(r.result == commit_resolution::unknown ? log_level::error : log_level::warn, "client", msg, f);
  } catch (...) {
  }
}

void log_observer::on_health_changed(health_status from, health_status to) noexcept {
  try {
    const log_field f[] = {{"from", to_string(from)}, {"status", to_string(to)}};
    m_log.log(to == health_status::healthy ? log_level::info : log_level::warn, "health", "database health changed", f);
  } catch (...) {
  }
}

void log_observer::on_topology_changed(const topology_change& c) noexcept {
  try {
    const log_field f[] = {{"host", c.host},
                           {"from", c.from},
                           {"role", c.to},
                           {"primaries", static_cast<std::int64_t>(c.primaries)},
                           {"reason", c.reason}};
    if (c.primaries > 1) {
      m_log.log(log_level::error, "topology", "more than one writable host (split brain)", f);
    } else {
      m_log.log(c.to == "primary" || c.to == "replica" ? log_level::info : log_level::warn, "topology",
                "host role changed", f);
    }
  } catch (...) {
  }
}

void log_observer::on_pool_scaling(const pool_scaling_report& r) noexcept {
  try {
    const std::string from = r.from == 0 && r.what == "admission" ? "none" : std::to_string(r.from);
    const std::string to = r.to == 0 && r.what == "admission" ? "none" : std::to_string(r.to);
    const std::string short_ms = fmt::format("{:.1f}", r.short_latency_ms);
    const std::string long_ms = fmt::format("{:.1f}", r.long_latency_ms);
    const std::string active = std::to_string(r.active), waiting = std::to_string(r.waiting),
                      cap = std::to_string(r.server_cap);
    const log_field f[] = {{"what", r.what},
                           {"direction", r.direction},
                           {"reason", r.reason},
                           {"from", from},
                           {"to", to},
                           {"applied", r.applied ? "true" : "false"},
                           {"short_ms", short_ms},
                           {"long_ms", long_ms},
                           {"pool_active", active},
                           {"pool_waiting", waiting},
                           {"server_cap", cap}};
    m_log.log(log_level::info, "pool", fmt::format("pool {} {} {} → {} ({})", r.what, r.direction, from, to, r.reason),
              f);
  } catch (...) {
  }
}

void log_observer::on_pooler_suspected(std::string_view evidence) noexcept {
  try {
    const log_field f[] = {{"evidence", evidence}};
    m_log.log(log_level::warn, "pool",
              "the server looks like a pooler (PgBouncer?) while POSTGRESQL_POOLER is none; nothing was changed", f);
  } catch (...) {
  }
}

void log_observer::on_call_finished(const call_report& r) noexcept {
  try {
    if (r.failure != nullptr) {
      std::vector<log_field> f{{"op", r.operation},
                               {"attempt", static_cast<std::int64_t>(r.attempts)},
                               {"duration_ms", ms(r.duration)},
                               {"sqlstate", std::string_view(r.failure->sqlstate())},
                               {"outcome", to_string(r.failure->outcome())},
                               {"error", std::string_view(r.failure->what())}};
      add_context(f, r.context);
      m_log.log(log_level::info, "client", "call failed", f);
    }
    if (!r.slow) return;
    std::vector<log_field> f{{"op", r.operation},
                             {"duration_ms", ms(r.duration)},
                             {"rows", static_cast<std::int64_t>(r.rows)},
                             {"attempt", static_cast<std::int64_t>(r.attempts)},
                             {"sql", r.sql.substr(0, 500)}};
    if (!r.params.empty()) f.push_back({"params", r.params});
    add_context(f, r.context);
    m_log.log(log_level::warn, "slow_query", "slow query", f);
  } catch (...) {
  }
}

void log_observer::on_slow_query_plan(const slow_plan_report& r) noexcept {
  try {
    std::string findings;
    for (const auto& f : r.findings) {
      if (!findings.empty()) findings += "; ";
      findings += f;
    }
    const log_field f[] = {{"sql", r.sql.substr(0, 500)}, {"plan", r.plan}, {"findings", std::string_view(findings)}};
    m_log.log(log_level::warn, "slow_query", "slow query plan", f);
  } catch (...) {
  }
}

void log_observer::on_batch_finished(const batch_summary& b) noexcept {
  try {
    const log_field f[] = {{"mode", b.mode},
                           {"total", static_cast<std::int64_t>(b.total)},
                           {"succeeded", static_cast<std::int64_t>(b.succeeded)},
                           {"failed", static_cast<std::int64_t>(b.failed)},
                           {"duration_ms", ms(b.duration)},
                           {"timed_out", b.timed_out}};
    m_log.log(log_level::info, "batch", "batch finished", f);
  } catch (...) {
  }
}

}  // namespace steadypg::observe
