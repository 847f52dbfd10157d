#include "sampler.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "steadypg/error.hpp"
#include "steadypg/observe/statement_metrics.hpp"

namespace steadypg::http::internal {

namespace {

using std::chrono::duration;
using std::chrono::steady_clock;
using std::chrono::system_clock;

double unix_seconds(system_clock::time_point t) { return duration<double>(t.time_since_epoch()).count(); }

json or_null(const std::optional<double>& v) { return v ? json(round3(*v)) : json(nullptr); }

// A host's availability for the dashboard's badge.
std::string_view availability(health_status s) {
  switch (s) {
    case health_status::healthy: return "available";
    case health_status::degraded: return "degraded";
    case health_status::unhealthy: return "unavailable";
  }
  return "unavailable";
}

// The slowest named statements (by mean duration), at most `n`.
json slowest_statements(const observe::client_metrics* m, std::size_t n) {
  json out = json::array();
  if (m == nullptr) return out;
  auto entries = m->statements().entries();
  std::erase_if(entries, [](const auto& e) { return e.calls == 0; });
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.total_seconds / static_cast<double>(a.calls) > b.total_seconds / static_cast<double>(b.calls);
  });
  if (entries.size() > n) entries.resize(n);
  for (const auto& e : entries) {
    out.push_back({{"name", e.name},
                   {"calls", e.calls},
                   {"errors", e.errors},
                   {"avg_ms", round3(e.total_seconds / static_cast<double>(e.calls) * 1000.0)},
                   {"p95_ms", round3(e.p95_seconds * 1000.0)},
                   {"max_ms", round3(e.max_seconds * 1000.0)}});
  }
  return out;
}

}  // namespace

std::optional<percentiles> percentiles_between(const bucket_counts& before, const bucket_counts& after) {
  const std::uint64_t total = after.back() - before.back();
  if (total == 0) return std::nullopt;
  auto at = [&](double q) {
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
    for (std::size_t i = 0; i < observe::histogram::bounds.size(); ++i) {
      if (after[i] - before[i] >= rank) return observe::histogram::bounds[i] * 1000.0;
    }
    // Past the last bound (> 10 s): the last bound is all the buckets can say.
    return observe::histogram::bounds.back() * 1000.0;
  };
  return percentiles{at(0.50), at(0.95), at(0.99)};
}

sampler::sampler(client& db, const options& opts) : m_db(db), m_options(opts) {
  sample_once();
  m_sample_thread = std::thread([this] { sample_loop(); });
  m_probe_thread = std::thread([this] { probe_loop(); });
}

sampler::~sampler() { stop(); }

void sampler::stop() noexcept {
  {
    std::lock_guard lk(m_mutex);
    m_stopping = true;
  }
  m_wake.notify_all();
  if (m_sample_thread.joinable()) m_sample_thread.join();
  if (m_probe_thread.joinable()) m_probe_thread.join();
}

std::string sampler::snapshot() const {
  std::lock_guard lk(m_mutex);
  return m_snapshot;
}

std::optional<health_report> sampler::health() const {
  std::lock_guard lk(m_mutex);
  return m_health;
}

void sampler::sample_loop() {
  std::unique_lock lk(m_mutex);
  auto next = steady_clock::now() + m_options.sample_interval;
  while (true) {
    m_wake.wait_until(lk, next, [this] { return m_stopping || m_sample_now; });
    if (m_stopping) return;
    m_sample_now = false;
    lk.unlock();
    sample_once();
    lk.lock();
    // Early (the health changed) or on time: the next one an interval after this one.
    next = steady_clock::now() + m_options.sample_interval;
  }
}

void sampler::probe_loop() {
  auto next_facts = steady_clock::now();
  std::unique_lock lk(m_mutex);
  while (!m_stopping) {
    lk.unlock();
    health_report h;
    try {
      // While the breaker is not closed the probe stays out of its way: a ping would spend the
      // half-open probe permit the application's calls are waiting for.
      const breaker_state b = m_db.breaker().state();
      if (b == breaker_state::closed) {
        h = m_db.health_check();
      } else {
        h.status = b == breaker_state::half_open ? health_status::degraded : health_status::unhealthy;
        h.breaker = b;
        h.threshold_ms = static_cast<double>(m_db.options().observe.slow_query_threshold.count());
        h.reason = fmt::format("circuit breaker {}", to_string(b));
      }
    } catch (const std::exception& e) {
      h.status = health_status::unhealthy;
      h.reason = "health check failed";
      h.error = e.what();
    }
    const bool facts_due = steady_clock::now() >= next_facts;
    if (facts_due) {
      read_server_facts();
      next_facts = steady_clock::now() + m_options.server_sample_interval;
    }
    lk.lock();
    // A change of health is shown at once, not at the next sample.
    const bool changed = !m_health || m_health->status != h.status;
    m_health = std::move(h);
    m_health_at = system_clock::now();
    if (changed) {
      m_sample_now = true;
      m_wake.notify_all();
    }
    m_wake.wait_for(lk, m_options.sample_interval, [this] { return m_stopping; });
  }
}

void sampler::read_server_facts() {
  json facts;
  try {
    if (!m_facts_conn || m_facts_conn->is_broken()) {
      m_facts_conn.reset();
      connection_options o = m_db.options().connection;
      o.dsn = m_db.options().dsn;
      o.application_name = "steadypg-monitor";
      o.connect_timeout = std::chrono::milliseconds(2000);
      o.query_timeout = std::chrono::milliseconds(2000);
      o.statement_cache_capacity = 0;
      m_facts_conn.emplace(o);
    }
    // Client backends only, as pgwatch's "backends" metric counts them.
    auto rs = m_facts_conn->execute(
        "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'idle'), "
        "count(*) FILTER (WHERE state LIKE 'idle in transaction%'), "
        "count(*) FILTER (WHERE wait_event_type IN ('Lock', 'LWLock', 'BufferPin')), count(*), "
        "coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float8, "
        "current_setting('max_connections')::bigint, "
        "current_setting('superuser_reserved_connections')::bigint "
        "FROM pg_stat_activity WHERE backend_type = 'client backend'");
    auto [active, idle, idle_tx, waiting, total, longest, max_conn, reserved] =
        rs[0]
            .as<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, double, std::int64_t,
                std::int64_t>();
    facts = {{"sampled_at", unix_seconds(system_clock::now())},
             {"sessions",
              {{"active", active},
               {"idle", idle},
               {"idle_in_transaction", idle_tx},
               {"waiting", waiting},
               {"total", total}}},
             {"longest_transaction_seconds", round3(longest)},
             {"max_connections", max_conn},
             {"headroom", std::max<std::int64_t>(0, max_conn - reserved - total)}};
  } catch (const std::exception& e) {
    m_facts_conn.reset();
    facts = {{"sampled_at", unix_seconds(system_clock::now())}, {"error", e.what()}};
  }
  std::lock_guard lk(m_mutex);
  m_server = std::move(facts);
}

json sampler::hosts_section(const health_report* h) const {
  const auto t = m_db.topology();
  json hosts = json::array();
  for (std::size_t i = 0; i < t.hosts.size(); ++i) {
    const auto& x = t.hosts[i];
    std::string_view status = "unknown";
    if (h != nullptr) {
      status = availability(h->status);
      for (const auto& hh : h->hosts) {
        if (hh.host == x.label) status = availability(hh.status);
      }
    }
    hosts.push_back({{"host", x.label},
                     {"role", std::string(to_string(x.role))},
                     {"status", std::string(status)},
                     {"primary", t.primary && *t.primary == i},
                     {"lag_seconds", or_null(x.lag_seconds)},
                     {"lag_bytes", x.lag_bytes ? json(*x.lag_bytes) : json(nullptr)},
                     // A host that is not probed: the sampler's own ping.
                     {"probe_ms", round3(!t.probing && h != nullptr ? h->latency_ms : x.probe_ms)},
                     {"breaker", x.breaker}});
    if (!x.last_error.empty()) hosts.back()["error"] = x.last_error;
    if (!t.probing && h != nullptr && !h->error.empty()) hosts.back()["error"] = h->error;
  }
  return hosts;
}

void sampler::sample_once() {
  const auto now = steady_clock::now();
  const observe::client_metrics* m = m_db.metric_events();
  std::uint64_t queries = 0, errors = 0, retries = 0, timeouts = 0;
  bucket_counts buckets{};
  if (m != nullptr) {
    queries = m->queries();
    errors = m->query_errors();
    retries = m->retries();
    timeouts = m->acquire_timeouts();
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] = m->query_durations().cumulative(i);
  }
  std::optional<health_report> health;
  std::optional<system_clock::time_point> health_at;
  json server;
  {
    std::lock_guard lk(m_mutex);
    health = m_health;
    if (health) health_at = m_health_at;
    server = m_server;
  }

  const double dt = m_have_previous ? duration<double>(now - m_previous_at).count() : 0.0;
  auto rate = [&](std::uint64_t cur, std::uint64_t prev) {
    return dt > 0 && cur >= prev ? round3(static_cast<double>(cur - prev) / dt) : 0.0;
  };
  const std::uint64_t calls = m_have_previous && queries >= m_previous_queries ? queries - m_previous_queries : 0;
  const std::uint64_t failed = m_have_previous && errors >= m_previous_errors ? errors - m_previous_errors : 0;
  std::optional<percentiles> p;
  if (m_have_previous) p = percentiles_between(m_previous_buckets, buckets);

  const pool_stats pool = m_db.pool_statistics();
  json doc{{"ts", unix_seconds(system_clock::now())},
           {"interval_seconds", round3(dt)},
           {"metrics_enabled", m != nullptr},
           {"qps", rate(queries, m_previous_queries)},
           {"errors_per_second", rate(errors, m_previous_errors)},
           {"error_ratio", calls > 0 ? round3(static_cast<double>(failed) / static_cast<double>(calls)) : 0.0},
           {"latency_ms", p ? json{{"p50", p->p50}, {"p95", p->p95}, {"p99", p->p99}}
                            : json{{"p50", nullptr}, {"p95", nullptr}, {"p99", nullptr}}},
           {"queries_total", queries},
           {"errors_total", errors},
           {"retries_per_second", rate(retries, m_previous_retries)},
           {"pool",
            {{"active", pool.active},
             {"idle", pool.idle},
             {"total", pool.total},
             {"waiting", pool.waiting},
             {"max", pool.max},
             {"acquire_timeouts_total", pool.acquire_timeouts},
             {"acquire_timeouts_per_second", rate(timeouts, m_previous_timeouts)},
             // Autoscaling (pool.mode adaptive or observe): the controller's target, the
             // admission limit while overloaded (0: none) and the server cap (0: not measured).
             {"mode", std::string(to_string(pool.mode))},
             {"target", pool.target_size},
             {"admission_limit", pool.admission_limit},
             {"server_cap", pool.server_cap},
             {"overload_rejections_total", pool.overload_rejections}}},
           {"breaker", std::string(to_string(m_db.breaker().state()))}};
  if (health) {
    doc["health"] = {{"status", std::string(to_string(health->status))},
                     {"reason", health->reason},
                     {"error", health->error.empty() ? json(nullptr) : json(health->error)},
                     {"latency_ms", round3(health->latency_ms)},
                     {"checked_at", unix_seconds(*health_at)}};
  } else {
    doc["health"] = nullptr;
  }
  doc["hosts"] = hosts_section(health ? &*health : nullptr);
  doc["slowest_statements"] = slowest_statements(m, 10);
  doc["server"] = std::move(server);
  if (m_db.cache_enabled()) {
    const cache_stats c = m_db.cache_statistics();
    doc["cache"] = {{"backend", c.backend}, {"hit_ratio", round3(c.hit_ratio())},
                    {"hits", c.hits},       {"misses", c.misses},
                    {"stale", c.stale},     {"bypass", c.bypass},
                    {"errors", c.errors},   {"bytes", c.bytes},
                    {"entries", c.entries}, {"invalidations", c.invalidations}};
  } else {
    doc["cache"] = nullptr;
  }
  // The latest slow calls (newest first), with their plans when observe.explain_slow_queries
  // is on.
  {
    json recent = json::array();
    auto slow = m_db.recent_slow_queries();
    for (auto it = slow.rbegin(); it != slow.rend() && recent.size() < 5; ++it) {
      recent.push_back({{"at", unix_seconds(it->at)},
                        {"operation", it->operation},
                        {"sql", it->sql.substr(0, 160)},
                        {"duration_ms", round3(it->duration_ms)},
                        {"failed", it->failed},
                        {"plan", it->plan},
                        {"plan_findings", it->plan_findings}});
    }
    doc["recent_slow_queries"] = std::move(recent);
  }

  std::string text = dump(doc);
  {
    std::lock_guard lk(m_mutex);
    m_snapshot = std::move(text);
  }
  m_have_previous = true;
  m_previous_at = now;
  m_previous_queries = queries;
  m_previous_errors = errors;
  m_previous_retries = retries;
  m_previous_timeouts = timeouts;
  m_previous_buckets = buckets;
}

}  // namespace steadypg::http::internal
