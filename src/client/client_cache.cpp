// client::query_cached and the cache's invalidation (docs/cache.md).

#include <fmt/format.h>

#include "notify_listener.hpp"
#include "query_cache.hpp"
#include "steadypg/client.hpp"

namespace steadypg {

namespace {
// Depth of client::transaction(fn) on this thread: a cached read there bypasses the cache.
thread_local int t_transaction_depth = 0;
}  // namespace

client::transaction_scope::transaction_scope(client& c) noexcept {
  (void)c;
  ++t_transaction_depth;
}
client::transaction_scope::~transaction_scope() { --t_transaction_depth; }

void client::start_cache() {
  auto& o = m_options.cache;
  o.check_backend();
  if (!o.backend && o.url == "local") o.backend = std::make_shared<local_cache>(o.local_max_bytes);
  if (o.backend && o.url.starts_with("local+redis://") && o.backend->name() == "redis") {
    o.backend = std::make_shared<tiered_cache>(o.backend, o.local_max_bytes, o.local_ttl);
  }
  if (!o.backend) return;
  internal::query_cache::runner run = [this](std::string_view sql, std::span<const param_ref> params, bool read) {
    return this->run({"query_cached", sql, read, false, std::nullopt, nullptr, nullptr},
                     [&](connection& c) { return c.execute_refs(sql, params, true); });
  };
  m_cache = std::make_unique<internal::query_cache>(o, m_metrics ? m_registry.get() : nullptr, std::move(run));
  if (!o.notify_channel.empty()) {
    const std::string channel = o.notify_channel;
    m_cache->set_notifier([this, channel](std::span<const std::string> tags) {
      // Best effort: a lost NOTIFY leaves the other processes to their TTLs.
      try {
        for (const auto& payload : internal::notify_listener::payloads({tags.begin(), tags.end()})) {
          (void)execute("SELECT pg_notify($1, $2)", channel, payload);
        }
      } catch (const error& e) {
        (void)e;
      }
    });
    m_cache_listener = std::make_unique<internal::notify_listener>(
        m_hosts.front().dsn, channel, [this](std::vector<std::string> tags) { m_cache->invalidate_tags(tags, true); },
        [this] { m_cache->invalidate_all(); });
  }
}

result client::execute_cached(std::string_view sql, std::span<const param_ref> params, const cache_policy& policy) {
  auto plain = [&] {
    return run({"query_cached", sql, false, false, std::nullopt, nullptr, nullptr},
               [&](connection& c) { return c.execute_refs(sql, params, true); });
  };
  if (!m_cache) return plain();
  if (t_transaction_depth > 0) {
    m_cache->count_bypass(cache_bypass_reason::transaction);
    return plain();
  }
  return m_cache->fetch(sql, params, policy);
}

void client::cache_after_commit(const std::vector<std::string>& statements) noexcept {
  if (!m_cache) return;
  try {
    for (const auto& sql : statements) m_cache->invalidate_written(sql);
  } catch (...) {
    // Invalidation is best effort past this point (the backend's failure is counted).
  }
}

void client::invalidate_tags(const std::vector<std::string>& tags) {
  if (m_cache) m_cache->invalidate_tags(tags);
}

void client::invalidate_table(std::string_view table) {
  if (m_cache) {
    const std::string t(table);
    m_cache->invalidate_tables(std::span<const std::string>(&t, 1));
  }
}

cache_stats client::cache_statistics() const { return m_cache ? m_cache->stats() : cache_stats{}; }

bool client::cache_listening() const noexcept { return !m_cache_listener || m_cache_listener->listening(); }

}  // namespace steadypg
