#include "query_cache.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "sql_scan.hpp"

namespace steadypg {

std::string_view to_string(cache_bypass_reason r) noexcept {
  switch (r) {
    case cache_bypass_reason::not_a_query: return "not_a_query";
    case cache_bypass_reason::transaction: return "transaction";
    case cache_bypass_reason::locking: return "locking";
    case cache_bypass_reason::volatile_function: return "volatile_function";
    case cache_bypass_reason::temp_table: return "temp_table";
    case cache_bypass_reason::too_large: return "too_large";
    case cache_bypass_reason::error: return "error";
    case cache_bypass_reason::no_backend: return "no_backend";
  }
  return "unknown";
}

double cache_stats::hit_ratio() const noexcept {
  const double served = static_cast<double>(hits + stale);
  const double all = served + static_cast<double>(misses + bypass + errors);
  return all > 0 ? served / all : 0.0;
}

namespace internal {

namespace {

constexpr auto thirty_days = std::chrono::milliseconds(30LL * 24 * 3600 * 1000);
// The tag every entry carries: invalidate_all() bumps it.
const std::string all_tag = "*";

// A text[] literal of names: {"a","b"} (every element quoted, \ and " escaped).
std::string text_array(const std::vector<std::string>& names) {
  std::string out = "{";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('"');
    for (char c : names[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

}  // namespace

query_cache::query_cache(cache_options options, observe::registry* metrics, runner run)
    : m_options(std::move(options)), m_run(std::move(run)) {
  m_stats.backend = std::string(m_options.backend->name());
  if (metrics) {
    const std::string name = "postgresql_cache_requests_total";
    const std::string help = "Cached calls by what the cache did";
    m_hit = &metrics->add_counter(name, help, {{"result", "hit"}});
    m_miss = &metrics->add_counter(name, help, {{"result", "miss"}});
    m_stale = &metrics->add_counter(name, help, {{"result", "stale"}});
    m_bypass = &metrics->add_counter(name, help, {{"result", "bypass"}});
    m_error = &metrics->add_counter(name, help, {{"result", "error"}});
    for (std::size_t i = 0; i < cache_bypass_reason_count; ++i) {
      m_bypass_reason[i] =
          &metrics->add_counter("postgresql_cache_bypass_total", "Cached calls that went to the database, by reason",
                                {{"reason", std::string(to_string(static_cast<cache_bypass_reason>(i)))}});
    }
    m_invalidations = &metrics->add_counter("postgresql_cache_invalidations_total", "Cache tags invalidated");
    auto backend = m_options.backend;
    metrics->add_gauge_callback("postgresql_cache_bytes", "Bytes held by the in-process cache", {},
                                [backend] { return static_cast<double>(backend->bytes()); });
    m_refresh_duration = &metrics->add_histogram("postgresql_cache_refresh_duration_seconds",
                                                 "Time to run a cached statement on a miss or a refresh");
  }
  for (const auto& w : m_options.backend->startup_warnings()) warn(w);
}

query_cache::~query_cache() {
  {
    std::lock_guard lock(m_refresh_mutex);
    m_stopping = true;
  }
  m_refresh_cv.notify_all();
  if (m_refresh_thread.joinable()) m_refresh_thread.join();
}

std::int64_t query_cache::now_ms() const {
  const auto now = m_options.now ? m_options.now() : std::chrono::system_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
}

void query_cache::count(std::uint64_t& stat, observe::counter* c) noexcept {
  {
    std::lock_guard lock(m_stats_mutex);
    ++stat;
  }
  if (c) c->inc();
}

void query_cache::count_bypass(cache_bypass_reason reason) noexcept {
  const auto i = static_cast<std::size_t>(reason);
  {
    std::lock_guard lock(m_stats_mutex);
    ++m_stats.bypass;
    ++m_stats.bypass_by_reason[i];
  }
  if (m_bypass) m_bypass->inc();
  if (m_bypass_reason[i]) m_bypass_reason[i]->inc();
}

cache_stats query_cache::stats() const {
  std::lock_guard lock(m_stats_mutex);
  cache_stats s = m_stats;
  s.bytes = m_options.backend->bytes();
  s.entries = m_options.backend->entries();
  return s;
}

void query_cache::warn(std::string_view text) noexcept {
  try {
    if (m_options.warn) {
      m_options.warn(text);
    } else {
      std::fprintf(stderr, "steadypg cache: %.*s\n", static_cast<int>(text.size()), text.data());
    }
  } catch (...) {
  }
}

void query_cache::backend_failed(const std::exception& e) noexcept {
  count(m_stats.errors, m_error);
  // At most one line per second, however many calls fail.
  const auto now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
  auto last = m_last_warn_ms.load(std::memory_order_relaxed);
  if (now - last >= 1000 && m_last_warn_ms.compare_exchange_strong(last, now)) {
    try {
      warn(fmt::format("{} backend failed, answering from the database: {}", m_options.backend->name(), e.what()));
    } catch (...) {
    }
  }
}

const std::string& query_cache::identity() {
  std::lock_guard lock(m_identity_mutex);
  if (!m_have_identity) {
    auto r = m_run("SELECT current_database(), current_user, current_setting('search_path')", {}, true);
    m_identity = fmt::format("{}\n{}\n{}", r[0][0].text(), r[0][1].text(), r[0][2].text());
    m_have_identity = true;
  }
  return m_identity;
}

std::shared_ptr<const query_cache::facts_entry> query_cache::facts_of(const std::string& normalized,
                                                                      std::string_view sql,
                                                                      std::span<const param_ref> params) {
  {
    std::lock_guard lock(m_facts_mutex);
    if (auto it = m_facts.find(normalized); it != m_facts.end()) return it->second;
  }
  auto e = std::make_shared<facts_entry>();
  check_text(normalized, e->facts);
  if (!e->facts.bypass) {
    const auto plan = m_run(fmt::format("EXPLAIN (VERBOSE, FORMAT JSON) {}", sql), params, true);
    std::string text;
    for (const auto& row : plan) text.append(row[0].text());
    check_plan(text, e->facts);
  }
  if (!e->facts.bypass && !e->facts.functions.empty()) {
    const std::string names = text_array(e->facts.functions);
    const param_ref p{names.c_str(), static_cast<int>(names.size()), 0, oids::text_array};
    auto r = m_run("SELECT count(*) FROM pg_catalog.pg_proc WHERE proname = ANY($1::text[]) AND provolatile <> 'i'",
                   std::span<const param_ref>(&p, 1), true);
    if (r[0][0].as<std::int64_t>() > 0) e->facts.bypass = cache_bypass_reason::volatile_function;
  }
  for (const auto& t : e->facts.tables) e->tags.push_back(table_tag(t));
  e->tags.push_back(all_tag);
  std::lock_guard lock(m_facts_mutex);
  if (m_facts.size() >= 4096) m_facts.clear();  // bounded; facts are cheap to find again
  return m_facts.emplace(normalized, std::move(e)).first->second;
}

result query_cache::fetch(std::string_view sql, std::span<const param_ref> params, const cache_policy& policy) {
  policy.validate();
  const std::string normalized = normalize_sql(sql);
  std::shared_ptr<const facts_entry> facts;
  std::string key;
  try {
    facts = facts_of(normalized, sql, params);
    if (facts->facts.bypass) {
      count_bypass(*facts->facts.bypass);
      return m_run(sql, params, false);
    }
    key = cache_key(identity(), normalized, params);
  } catch (const sql_error&) {
    // The statement itself is wrong (EXPLAIN failed): run it, so the caller gets its own error.
    count_bypass(cache_bypass_reason::error);
    return m_run(sql, params, false);
  }
  std::vector<std::string> tags = facts->tags;
  for (const auto& t : policy.tags) tags.push_back(t);
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  facts_entry with_tags{facts->facts, tags};

  if (m_has_pending.load(std::memory_order_acquire) && !deliver_pending()) {
    return m_run(sql, params, true);  // counted as an error by deliver_pending
  }
  std::vector<std::uint64_t> versions;
  try {
    auto stored = m_options.backend->get(key, tags, versions);
    if (stored) {
      if (auto entry = decode_entry(*stored)) {
        const auto state = judge_entry(entry->first, now_ms(), versions);
        const bool failure = is_serialized_error(entry->second);
        if (failure && policy.negative_ttl.count() == 0) {
          // A remembered failure answers only calls that ask for negative caching: a miss.
        } else if (state == entry_state::fresh && failure) {
          auto fields = deserialize_error(entry->second);
          count(m_stats.hits, m_hit);
          {
            std::lock_guard lock(m_stats_mutex);
            ++m_stats.negative_hits;
          }
          throw_server_error(std::move(fields), "query_cached", request_facts{.bytes_sent = true}, false);
        } else if (state == entry_state::fresh) {
          auto r = deserialize_result(entry->second);
          count(m_stats.hits, m_hit);
          return r;
        } else if (state == entry_state::stale && !failure) {
          auto r = deserialize_result(entry->second);
          count(m_stats.stale, m_stale);
          refresh_later(std::string(sql), params, policy, key, std::make_shared<const facts_entry>(with_tags));
          return r;
        }
      }
    }
  } catch (const cache_unavailable& e) {
    backend_failed(e);
    return m_run(sql, params, true);
  }

  // A miss. Identical concurrent misses in this process run the query once.
  std::shared_ptr<flight> f;
  bool leader = false;
  {
    std::unique_lock lock(m_flights_mutex);
    auto it = m_flights.find(key);
    if (it == m_flights.end()) {
      f = std::make_shared<flight>();
      m_flights.emplace(key, f);
      leader = true;
    } else {
      f = it->second;
      m_flight_done.wait(lock, [&] { return f->done; });
    }
  }
  if (!leader) {
    if (f->value) {
      count(m_stats.hits, m_hit);
      return *f->value;
    }
    // The leader failed: this call runs on its own (and gets its own answer or error).
    count_bypass(cache_bypass_reason::error);
    return m_run(sql, params, true);
  }
  auto finish = [&](std::optional<result> value) {
    std::lock_guard lock(m_flights_mutex);
    f->value = std::move(value);
    f->done = true;
    m_flights.erase(key);
    m_flight_done.notify_all();
  };
  try {
    bool stored = false;
    result r = run_and_store(sql, params, policy, key, with_tags, versions, stored);
    finish(r);
    return r;
  } catch (...) {
    finish(std::nullopt);
    throw;
  }
}

result query_cache::run_and_store(std::string_view sql, std::span<const param_ref> params, const cache_policy& policy,
                                  const std::string& key, const facts_entry& facts,
                                  const std::vector<std::uint64_t>& versions, bool& stored) {
  auto& backend = *m_options.backend;
  std::optional<std::string> token;
  bool backend_ok = true;
  if (backend.shared()) {
    // Across processes: one refreshes under a lock; the others wait briefly for its value.
    try {
      token = backend.try_lock(key, m_options.lock_hold);
      if (!token) {
        {
          std::lock_guard lock(m_stats_mutex);
          ++m_stats.lock_waits;
        }
        const auto until = std::chrono::steady_clock::now() + m_options.lock_wait;
        std::vector<std::uint64_t> now_versions;
        while (std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          auto v = backend.get(key, facts.tags, now_versions);
          if (!v) continue;
          auto entry = decode_entry(*v);
          if (entry && judge_entry(entry->first, now_ms(), now_versions) == entry_state::fresh) {
            auto r = deserialize_result(entry->second);
            count(m_stats.hits, m_hit);
            return r;
          }
        }
      }
    } catch (const cache_unavailable& e) {
      backend_failed(e);
      backend_ok = false;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  result r;
  try {
    r = m_run(sql, params, true);
  } catch (const error& e) {
    const bool remember = policy.negative_ttl.count() > 0 && backend_ok && e.kind() == failure_kind::server_error &&
                          negative_cacheable(e.sqlstate());
    if (remember) {
      entry_header h;
      h.fresh_until_ms = now_ms() + policy.negative_ttl.count();
      h.stale_until_ms = h.fresh_until_ms;  // a failure is never served stale
      h.versions = versions;
      try {
        backend.put(key, encode_entry(h, serialize_error(e.server())), policy.negative_ttl);
        stored = true;
        count(m_stats.misses, m_miss);
      } catch (const cache_unavailable& ue) {
        backend_failed(ue);
      }
    } else {
      count_bypass(cache_bypass_reason::error);  // errors are not cached
    }
    if (token) {
      try {
        backend.unlock(key, *token);
      } catch (const cache_unavailable&) {
      }
    }
    throw;
  }
  if (m_refresh_duration) {
    m_refresh_duration->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (!backend_ok) return r;  // already counted as an error
  std::string payload = serialize_result(r);
  if (payload.size() > policy.max_result_bytes) {
    count_bypass(cache_bypass_reason::too_large);
  } else {
    entry_header h;
    const auto now = now_ms();
    h.fresh_until_ms = now + policy.ttl.count();
    h.stale_until_ms = h.fresh_until_ms + policy.stale_while_revalidate.count();
    h.versions = versions;
    try {
      backend.put(key, encode_entry(h, payload), policy.ttl + policy.stale_while_revalidate);
      stored = true;
      count(m_stats.misses, m_miss);
    } catch (const cache_unavailable& e) {
      backend_failed(e);
    }
  }
  if (token) {
    try {
      backend.unlock(key, *token);
    } catch (const cache_unavailable& e) {
      (void)e;  // the lock expires by itself
    }
  }
  return r;
}

void query_cache::refresh_later(std::string sql, std::span<const param_ref> params, cache_policy policy,
                                std::string key, std::shared_ptr<const facts_entry> facts) {
  auto owned = std::make_shared<owned_params>();
  for (const auto& p : params) {
    owned->values.push_back(p.data ? std::optional<std::string>(std::string(p.data, static_cast<std::size_t>(p.length)))
                                   : std::nullopt);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& v = owned->values[i];
    owned->refs.push_back({v ? v->c_str() : nullptr, params[i].length, params[i].format, params[i].type});
  }
  std::lock_guard lock(m_refresh_mutex);
  if (m_stopping || m_refreshing.contains(key)) return;  // one refresh per key at a time
  m_refreshing.emplace(key, true);
  m_refresh_jobs.push_back([this, sql = std::move(sql), owned, policy = std::move(policy), key, facts] {
    try {
      std::vector<std::uint64_t> versions;
      m_options.backend->tag_versions(facts->tags, versions);
      bool stored = false;
      (void)run_and_store(sql, owned->refs, policy, key, *facts, versions, stored);
    } catch (const std::exception& e) {
      (void)e;  // the stale value expires; the next call runs the query itself
    }
    std::lock_guard done(m_refresh_mutex);
    m_refreshing.erase(key);
  });
  start_worker();
  m_refresh_cv.notify_one();
}

void query_cache::refresh_loop() {
  std::unique_lock lock(m_refresh_mutex);
  while (true) {
    m_refresh_cv.wait(lock, [&] { return m_stopping || !m_refresh_jobs.empty() || !m_notify_jobs.empty(); });
    // Notifications first, and all of them even when stopping (other processes rely on them).
    if (!m_notify_jobs.empty()) {
      auto tags = std::move(m_notify_jobs.front());
      m_notify_jobs.pop_front();
      lock.unlock();
      try {
        m_notify(tags);
      } catch (...) {
      }
      lock.lock();
      continue;
    }
    if (m_stopping) return;
    auto job = std::move(m_refresh_jobs.front());
    m_refresh_jobs.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

bool query_cache::deliver_pending() noexcept {
  std::lock_guard lock(m_pending_mutex);
  if (m_pending.empty()) return true;
  try {
    m_options.backend->bump_tags(m_pending);
    m_pending.clear();
    m_has_pending.store(false, std::memory_order_release);
    return true;
  } catch (const cache_unavailable& e) {
    backend_failed(e);
  } catch (const std::exception& e) {
    backend_failed(e);
  }
  return false;
}

void query_cache::invalidate_tags(std::span<const std::string> tags, bool from_peer) {
  if (tags.empty()) return;
  try {
    m_options.backend->bump_tags(tags);
  } catch (const cache_unavailable& e) {
    backend_failed(e);
    // Kept for later: the backend is not read again before it has taken them.
    std::lock_guard lock(m_pending_mutex);
    for (const auto& t : tags) {
      if (std::find(m_pending.begin(), m_pending.end(), t) == m_pending.end()) m_pending.push_back(t);
    }
    if (m_pending.size() > 1024) m_pending.assign(1, all_tag);  // too many: everything goes
    m_has_pending.store(true, std::memory_order_release);
  }
  {
    std::lock_guard lock(m_stats_mutex);
    m_stats.invalidations += tags.size();
  }
  if (m_invalidations) m_invalidations->inc(tags.size());
  if (!from_peer && m_notify) {
    // Sent from the worker thread: the write's own connection may still be borrowed here (a
    // pool of one would wait for itself), and the write need not wait for the NOTIFY.
    std::vector<std::string> copy(tags.begin(), tags.end());
    std::lock_guard lock(m_refresh_mutex);
    m_notify_jobs.push_back(std::move(copy));
    start_worker();
    m_refresh_cv.notify_one();
  }
}

void query_cache::start_worker() {
  if (!m_refresh_thread.joinable()) m_refresh_thread = std::thread([this] { refresh_loop(); });
}

void query_cache::invalidate_tables(std::span<const std::string> tables) {
  std::vector<std::string> tags;
  for (const auto& t : tables) {
    // "schema.name" or "name": the tag is the bare name, lower-cased unless quoted.
    std::string bare = t;
    const auto tokens = sql_tokens(t);
    if (!tokens.empty() && tokens.back().word) bare = tokens.back().text;
    tags.push_back(table_tag(bare));
  }
  invalidate_tags(tags);
}

void query_cache::invalidate_written(std::string_view sql) {
  const auto tables = written_tables(sql);
  if (tables.empty()) return;
  std::vector<std::string> tags;
  for (const auto& t : tables) tags.push_back(table_tag(t));
  invalidate_tags(tags);
}

void query_cache::invalidate_all() { invalidate_tags(std::span<const std::string>(&all_tag, 1), true); }

}  // namespace internal

void cache_policy::validate() const {
  if (ttl < std::chrono::milliseconds(1) || ttl > internal::thirty_days) {
    throw config_error(fmt::format("cache_policy.ttl = {} ms is out of range: expected 1 ms – 30 days", ttl.count()));
  }
  if (stale_while_revalidate < std::chrono::milliseconds(0) || stale_while_revalidate > internal::thirty_days) {
    throw config_error(fmt::format("cache_policy.stale_while_revalidate = {} ms is out of range: expected 0 – 30 days",
                                   stale_while_revalidate.count()));
  }
  if (negative_ttl < std::chrono::milliseconds(0) || negative_ttl > std::chrono::hours(1)) {
    throw config_error(
        fmt::format("cache_policy.negative_ttl = {} ms is out of range: expected 0 – 1 h", negative_ttl.count()));
  }
  if (max_result_bytes < 1 || max_result_bytes > (std::size_t{512} << 20)) {
    throw config_error(
        fmt::format("cache_policy.max_result_bytes = {} is out of range: expected 1 B – 512 MiB", max_result_bytes));
  }
}

void cache_options::check_backend() const {
  const bool two_level = url.starts_with("local+redis://");
  if ((url.starts_with("redis://") || two_level) &&
      (!backend || (backend->name() != "redis" && backend->name() != "local+redis"))) {
    throw config_error(fmt::format(
        "cache.url is a {} URL but no Redis backend was given (POSTGRESQL_CACHE_URL): the core library does "
        "not link hiredis; build one with steadypg::redis::make_cache(url) from steadypg::redis and set "
        "cache.backend",
        two_level ? "local+redis://" : "redis://"));
  }
}

void cache_options::validate() const {
  defaults.validate();
  if (!url.empty() && url != "local" && !url.starts_with("redis://") && !url.starts_with("local+redis://")) {
    throw config_error(
        fmt::format("cache.url = \"{}\" is not a cache URL: expected local, redis://host:port[/db] or "
                    "local+redis://host:port[/db] (POSTGRESQL_CACHE_URL)",
                    url.find('@') == std::string::npos ? url : "…" + url.substr(url.rfind('@'))));
  }
  if (local_ttl < std::chrono::milliseconds(1) || local_ttl > std::chrono::hours(1)) {
    throw config_error(fmt::format("cache.local_ttl = {} ms is out of range: expected 1 ms – 1 h", local_ttl.count()));
  }
  if (local_max_bytes < 1024) {
    throw config_error(
        fmt::format("cache.local_max_bytes = {} is out of range: expected at least 1024", local_max_bytes));
  }
  if (lock_wait < std::chrono::milliseconds(0) || lock_wait > std::chrono::milliseconds(60000)) {
    throw config_error(fmt::format("cache.lock_wait = {} ms is out of range: expected 0–60000", lock_wait.count()));
  }
  if (lock_hold < std::chrono::milliseconds(1) || lock_hold > std::chrono::milliseconds(600000)) {
    throw config_error(fmt::format("cache.lock_hold = {} ms is out of range: expected 1–600000", lock_hold.count()));
  }
  for (char c : notify_channel) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      throw config_error(
          fmt::format("cache.notify_channel = \"{}\" must be a lower-case identifier (letters, digits, _)",
                      notify_channel));
    }
  }
}

}  // namespace steadypg
