#include "steadypg/client.hpp"

#include "commit_resolver.hpp"
#include "connection_factory.hpp"
#include "hosts.hpp"
#include "topology.hpp"
#include "health_monitor.hpp"
#include "notify_listener.hpp"
#include "query_cache.hpp"
#include "slow_plan_capture.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <thread>

#include "error_builder.hpp"
#include "retry_policy.hpp"
#include "verified_commit.hpp"

namespace steadypg {

namespace {

// The settings of each pooled connection: the client's DSN, parsed and validated once.
connection_options pooled_connection_options(const client_options& o) {
  connection_options c = o.connection;
  c.dsn = o.dsn;
  return c;
}

// A half-open breaker's probe must have time to connect: at least twice the connect timeout.
breaker_options breaker_settings(const client_options& o) {
  breaker_options b = o.resilience.breaker;
  b.probe_timeout = std::max(b.probe_timeout, o.connection.connect_timeout * 2);
  return b;
}

std::vector<std::string> host_labels(const std::vector<internal::host_endpoint>& hosts) {
  std::vector<std::string> labels;
  for (const auto& h : hosts) labels.push_back(h.label);
  return labels;
}

}  // namespace

client::client(client_options options, observer* obs)
    : m_options((options.validate(), std::move(options))),
      m_registry(std::make_unique<observe::registry>()),
      m_metrics(m_options.observe.metrics_enabled
                    ? std::make_unique<observe::client_metrics>(*m_registry, m_options.observe.slow_query_threshold,
                                                                host_labels(internal::split_hosts(m_options.dsn)))
                    : nullptr),
      m_fanout(m_metrics ? std::make_unique<observer_tee>(m_metrics.get(), obs) : nullptr),
      m_observer(m_fanout ? m_fanout.get() : obs),
      m_budget(m_options.resilience.budget) {
  m_default_route = m_options.cluster.default_route;
  if (m_default_route == route::primary) {
    if (auto r = internal::route_of_session_attrs(m_options.dsn)) m_default_route = *r;
  }
  const auto endpoints = internal::split_hosts(m_options.dsn);
  std::vector<internal::topology::host_spec> specs;
  m_hosts.reserve(endpoints.size());
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    connection_options c = pooled_connection_options(m_options);
    c.dsn = endpoints[i].dsn;
    host_slot h;
    h.index = i;
    h.label = endpoints[i].label;
    h.dsn = endpoints[i].dsn;
    h.breaker = std::make_unique<circuit_breaker>(breaker_settings(m_options), m_observer);
    h.pool = std::make_unique<pool_type>(m_options.pool, std::make_shared<internal::connection_factory>(c, m_observer),
                                         m_observer);
    m_hosts.push_back(std::move(h));
    specs.push_back({endpoints[i].label, std::move(c)});
  }
  if (m_hosts.size() > 1 || m_options.cluster.probe_single_host) {
    // A good probe lets an open breaker try again at once (calls resume as soon as the
    // server accepts connections, not at the end of the open period).
    m_topology = std::make_unique<internal::topology>(std::move(specs), m_options.cluster, m_observer,
                                                      [this](std::size_t i) { m_hosts[i].breaker->reachable(); });
  }
  if (m_metrics) {
    // Live state, read when the metrics are rendered.
    m_metrics->watch_pool([this] { return pool_statistics(); });
    m_metrics->watch_breaker([this] { return primary_slot().breaker->state(); });
    if (m_topology) watch_topology();
  }
  start_cache();
  m_health_monitor = std::make_unique<internal::health_monitor>([this] { return health_check().status; },
                                                                m_options.pool.health_check_interval, m_observer);
  if (m_options.observe.explain_slow_queries) {
    m_plan_capture =
        std::make_unique<internal::slow_plan_capture>([this] { return acquire("explain_slow_query"); }, m_slow_queries,
                                                      m_observer, m_options.observe.explain_slow_interval);
  }
}

client::~client() = default;

client::pooled_connection client::acquire(const char* context) {
  if (!m_topology) return m_hosts.front().pool->acquire(context);
  call_info info{context ? context : "acquire", {}, false, false, std::nullopt, nullptr, nullptr};
  return route_call(info, clock::now()).pool->acquire(context);
}

result client::execute(std::string_view sql, const param_list& params) {
  call_info info{"execute", sql, false, false, std::nullopt, &describe_param_list, &params};
  info.bind = [](const void* p, param_list& out) { out = *static_cast<const param_list*>(p); };
  return run(info, [&](connection& c) { return c.execute(sql, params); });
}

result client::execute(const statement& st, const param_list& params) {
  return run({st.name().empty() ? "execute" : st.name().c_str(), st.sql(), st.is_idempotent(), false, deadline_of(st),
              &describe_param_list, &params, st.target_route(), st.read_after(),
              [](const void* p, param_list& out) { out = *static_cast<const param_list*>(p); }},
             [&](connection& c) { return c.execute(st.sql(), params); });
}

void client::ping() {
  run({"ping", {}, true, false, std::nullopt, nullptr, nullptr}, [](connection& c) { c.ping(); });
}

call_context client::context_now(const host_slot* host) const noexcept {
  call_context c;
  const host_slot& h = host ? *host : m_hosts.front();
  const auto st = h.pool->stats();
  c.pool_active = static_cast<int>(st.active);
  c.pool_idle = static_cast<int>(st.idle);
  c.pool_waiting = static_cast<int>(st.waiting);
  c.breaker = to_string(h.breaker->state());
  return c;
}

void client::finished(const call_info& info, const host_slot* host, clock::duration d, int attempts, std::uint64_t rows,
                      const error* failure) noexcept {
  const bool slow = d >= m_options.observe.slow_query_threshold;
  if (!slow && m_observer == nullptr) return;  // the common case costs one comparison
  call_report r{info.operation, info.sql, d, attempts, rows, failure};
  if (host) {
    r.host = host->label;
    r.host_index = static_cast<int>(host->index);
  }
  if (failure != nullptr || slow) r.context = context_now(host);
  std::string params;
  if (slow) {
    r.slow = true;
    try {
      if (m_options.observe.log_parameters && info.describe != nullptr) params = info.describe(info.args);
    } catch (...) {
      // Out of memory while rendering parameters: the record goes without them.
    }
    r.params = params;
  }
  if (m_observer) m_observer->on_call_finished(r);
  if (slow) m_slow_queries.record(r);
  // The plan is made off this thread: here the statement is only queued (once per interval).
  // Without a way to copy the arguments (`bind`), a statement with arguments is not explained.
  if (slow && m_plan_capture && failure == nullptr && !info.sql.empty() && !info.transaction &&
      (info.args == nullptr || info.bind != nullptr)) {
    try {
      param_list p;
      if (info.bind != nullptr) info.bind(info.args, p);
      (void)m_plan_capture->submit(info.sql, std::move(p));
    } catch (...) {
      // A value that cannot be copied: no plan for this call.
    }
  }
}

pool_stats client::pool_statistics() const {
  if (m_hosts.size() == 1) return m_hosts.front().pool->stats();
  pool_stats sum;
  for (const auto& h : m_hosts) sum += h.pool->stats();
  return sum;
}

connection_info_report client::connection_info() {
  connection_info_report r;
  auto rs =
      execute(statement{"SELECT current_setting('server_version'), "
                        "extract(epoch FROM now() - pg_postmaster_start_time())::bigint, "
                        "count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'idle'), count(*), "
                        "current_setting('max_connections')::bigint "
                        "FROM pg_stat_activity WHERE datname = current_database()"}
                  .idempotent()
                  .name("connection_info"));
  auto [version, uptime, active, idle, total, max] =
      rs[0].as<std::string, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>();
  r.server.version = version;
  r.server.uptime_seconds = uptime;
  r.server.connections = {active, idle, total, max};
  r.pool = pool_statistics();
  r.recent_slow_queries = m_slow_queries.recent();
  r.topology = topology();
  if (m_metrics) {
    const auto& h = m_metrics->query_durations();
    r.performance.queries = m_metrics->queries();
    r.performance.avg_query_ms = h.count() ? h.sum() / static_cast<double>(h.count()) * 1000.0 : 0.0;
    r.performance.p95_query_ms = h.quantile(0.95) * 1000.0;
    r.performance.slow_queries = m_metrics->slow_queries();
  }
  return r;
}

result client::execute_verified(const call_info& info, const statement& st, std::span<const param_ref> params) {
  std::optional<result> out;
  run(info, [&](connection& c) { internal::execute_verified(c, st.sql(), params, out); });
  return out ? std::move(*out) : result{};  // committed, but the statement's own answer was lost
}

std::string client::describe_param_list(const void* params) {
  return describe_params(static_cast<const param_list*>(params)->refs());
}

std::optional<client::clock::time_point> client::deadline_of(const statement& st) {
  if (auto t = st.call_timeout()) return clock::now() + *t;
  return std::nullopt;
}

// Not inlined: GCC 12 at -O2, inlining it into run() within this file, takes the optional
// deadline of a call without one for an uninitialized read (a false -Wmaybe-uninitialized).
[[gnu::noinline]] client::pooled_connection client::acquire_for(host_slot& host, const call_info& info) {
  auto until = clock::now() + host.pool->options().acquire_timeout;
  if (info.deadline && *info.deadline < until) until = *info.deadline;
  return host.pool->acquire_until(until, info.operation);
}

client::timeout_scope::timeout_scope(connection& c, const std::optional<clock::time_point>& deadline,
                                     std::chrono::milliseconds session_default) {
  if (!deadline) {
    // Back to the configured default if an earlier call with a deadline changed it.
    if (c.statement_timeout() != session_default) c.set_statement_timeout(session_default);
    return;
  }
  auto left =
      std::max(std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock::now()), std::chrono::milliseconds{1});
  // The server stops the statement a little before the deadline (statement_timeout); the
  // client-side timeout with a cancel request is the backstop. The SET is skipped while the
  // session's value is already within a quarter of what is wanted. A configured
  // statement_timeout shorter than the deadline stays in force.
  auto server = std::max(left * 9 / 10, std::chrono::milliseconds{1});
  if (session_default.count() > 0 && session_default < server) {
    server = session_default;
    left = std::min(left, statement_timeout_backstop(session_default));
  }
  m_conn = &c;
  m_saved = c.options().query_timeout;
  m_saved_deadline = c.deadline();
  // Every request of the attempt ends by the deadline, however many it makes.
  c.set_deadline(m_saved_deadline && *m_saved_deadline < *deadline ? m_saved_deadline : deadline);
  c.set_query_timeout(left);  // first, so that the SET below is bounded too
  const auto current = c.statement_timeout();
  if (current.count() == 0 || current > server || current < server * 3 / 4) {
    try {
      c.set_statement_timeout(server);
    } catch (...) {
      c.set_query_timeout(m_saved);
      c.set_deadline(m_saved_deadline);
      throw;
    }
  }
}

client::timeout_scope::~timeout_scope() {
  if (m_conn) {
    m_conn->set_query_timeout(m_saved);
    m_conn->set_deadline(m_saved_deadline);
  }
}

void client::succeeded(const call_info& info, const host_slot& host,
                       const std::optional<circuit_breaker::permit>& permit, clock::time_point started, int attempt,
                       std::uint64_t rows) noexcept {
  if (permit) host.breaker->on_success(*permit);
  if (m_options.resilience.enabled) m_budget.record_success();
  // An autocommit statement that succeeded has committed: the tables it wrote are invalidated.
  if (m_cache && !info.transaction && !info.sql.empty()) cache_after_commit({std::string(info.sql)});
  finished(info, &host, clock::now() - started, attempt + 1, rows, nullptr);
}

namespace {

thread_local std::mt19937_64 t_rng{std::random_device{}()};

}  // namespace

commit_resolution client::resolve_lost_commit(const call_info& info, const error& e, host_slot& host,
                                              std::string* why_unknown) {
  const auto t0 = clock::now();
  internal::resolver_settings s;
  s.until = info.deadline ? *info.deadline : t0 + m_options.resilience.commit_resolution_timeout;
  // The host the call used; the resolver checks that it is still the same server and timeline.
  connection_options target = pooled_connection_options(m_options);
  target.dsn = host.dsn;
  const circuit_breaker* breaker = m_options.resilience.enabled ? host.breaker.get() : nullptr;
  std::string why;
  const auto result = internal::resolve_commit(
      {*e.xid(), *e.commit_server()},
      [&](clock::time_point until) { return internal::open_through_breaker(target, breaker, until); }, s, &why);
  if (m_observer) m_observer->on_commit_resolved({info.operation, result, *e.xid(), clock::now() - t0, why});
  if (why_unknown != nullptr) *why_unknown = std::move(why);
  return result;
}

bool client::retry_after(const call_info& info, const error& e, host_slot* host,
                         const std::optional<circuit_breaker::permit>& permit, int attempt, bool& failed_over,
                         std::vector<attempt_error>& earlier, clock::time_point started, bool can_resolve) {
  auto facts = internal::error_facts_of(e);
  std::string resolution_reason;
  if (e.is_indeterminate_commit() && m_observer) m_observer->on_indeterminate_commit(info.operation);
  // A lost COMMIT whose transaction id is known: ask the server before the rule decides.
  if (can_resolve && host != nullptr && e.is_indeterminate_commit() && e.xid() && e.commit_server() &&
      m_options.resilience.resolve_commits) {
    facts.resolution = resolve_lost_commit(info, e, *host, &resolution_reason);
    if (facts.resolution == commit_resolution::committed) {
      if (permit) host->breaker->record(*permit, facts.breaker);
      succeeded(info, *host, std::nullopt, started, attempt, 0);
      return true;
    }
  }
  // The rule reads; this applies: breaker, events, budget, sleep.
  internal::attempt_facts at;
  at.attempt = attempt;
  if (info.deadline) at.time_left = *info.deadline - clock::now();
  at.budget_available = m_options.resilience.enabled && m_budget.available() >= 1.0;
  at.random64 = t_rng();
  const route r = info.route.value_or(m_default_route);
  // 25006 on a primary-routed call of a multi-host client: the host was demoted and the
  // statement did not commit; it may run once more on the new primary.
  const internal::call_facts call{info.idempotent, info.transaction,
                                  m_topology != nullptr && host != nullptr && !failed_over &&
                                      (r == route::primary || r == route::read_write)};
  auto d = internal::decide_retry(facts, call, at, m_options.resilience.retry, m_options.resilience.enabled);
  // Only an answer from the server closes the breaker or clears its failure streak; a pool
  // timeout or a usage error hands a probe permit back without a verdict.
  if (permit && host) host->breaker->record(*permit, d.breaker);
  if (m_topology && host) {
    // What the call saw of the host goes to the prober, which re-probes it at once.
    if (d.breaker == breaker_verdict::unhealthy) m_topology->report_failure(host->index, e.what());
    if (e.outcome() == outcome::wrong_host) m_topology->report_read_only(host->index);
  }
  if (d.reason == internal::retry_reason::fail_over) failed_over = true;
  if (e.cancel_sent() && m_observer) m_observer->on_cancel_sent();
  if (d.spend_budget && !m_budget.try_spend()) {
    // Another caller took the last retry since available() was read.
    at.budget_available = false;
    d = internal::decide_retry(facts, call, at, m_options.resilience.retry, m_options.resilience.enabled);
  }
  if (d.reason == internal::retry_reason::budget_exhausted && m_observer) {
    m_observer->on_retry_budget_exhausted(info.operation);
  }
  if (!d.retry) {
    // The caught error stays as it was; what the call adds goes into a copy of the same type.
    try {
      std::optional<commit_resolution> resolution;
      if (facts.resolution != commit_resolution::none) resolution = facts.resolution;
      internal::error_builder::raise_with_call_facts(e, {info.operation, attempt + 1, std::move(earlier),
                                                         d.reason == internal::retry_reason::budget_exhausted,
                                                         resolution, resolution_reason});
    } catch (const error& final_error) {
      finished(info, host, clock::now() - started, attempt + 1, 0, &final_error);
      throw;
    }
  }
  earlier.push_back({e.sqlstate(), e.what(), e.outcome(), facts.resolution});
  if (m_observer) {
    retry_report r;
    r.operation = info.operation;
    // A lost COMMIT the server says aborted is run again as one that was rolled back.
    r.failed_outcome = facts.resolution == commit_resolution::aborted ? outcome::rolled_back : e.outcome();
    r.reason = to_string(r.failed_outcome);
    r.sqlstate = e.sqlstate();
    r.attempt = attempt + 2;
    r.delay = d.delay;
    r.context = context_now(host);
    m_observer->on_retry(r);
  }
  if (d.delay.count() > 0) std::this_thread::sleep_for(d.delay);
  return false;
}

}  // namespace steadypg
