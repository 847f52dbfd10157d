#include <list>
#include <mutex>
#include <unordered_map>

#include "steadypg/cache.hpp"

namespace steadypg {

namespace {
// What an entry costs beyond its key and value: list node, map slot, expiry.
constexpr std::size_t entry_overhead = 96;
}  // namespace

struct local_cache::state {
  struct entry {
    std::string key;
    std::string value;
    std::chrono::steady_clock::time_point expires;
  };
  std::function<std::chrono::steady_clock::time_point()> now;
  mutable std::mutex mutex;
  std::list<entry> lru;  // most recently used first
  std::unordered_map<std::string_view, std::list<entry>::iterator> index;
  std::unordered_map<std::string, std::uint64_t> tags;
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> count{0};

  static std::size_t cost(const entry& e) noexcept { return e.key.size() + e.value.size() + entry_overhead; }
  void erase(std::list<entry>::iterator it) {
    bytes.fetch_sub(cost(*it), std::memory_order_relaxed);
    count.fetch_sub(1, std::memory_order_relaxed);
    index.erase(it->key);
    lru.erase(it);
  }
  void versions_of(std::span<const std::string> names, std::vector<std::uint64_t>& out) const {
    out.clear();
    out.reserve(names.size());
    for (const auto& t : names) {
      auto it = tags.find(t);
      out.push_back(it == tags.end() ? 0 : it->second);
    }
  }
};

local_cache::local_cache(std::size_t max_bytes, std::function<std::chrono::steady_clock::time_point()> now)
    : m_max_bytes(max_bytes), m_state(std::make_unique<state>()) {
  if (max_bytes < 1024) throw config_error("local_cache max_bytes must be at least 1024");
  m_state->now = now ? std::move(now) : [] { return std::chrono::steady_clock::now(); };
}

local_cache::~local_cache() = default;

std::optional<std::string> local_cache::get(const std::string& key, std::span<const std::string> tags,
                                            std::vector<std::uint64_t>& versions) {
  std::lock_guard lock(m_state->mutex);
  m_state->versions_of(tags, versions);
  auto it = m_state->index.find(key);
  if (it == m_state->index.end()) return std::nullopt;
  if (it->second->expires <= m_state->now()) {
    m_state->erase(it->second);
    return std::nullopt;
  }
  m_state->lru.splice(m_state->lru.begin(), m_state->lru, it->second);
  return it->second->value;
}

void local_cache::tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) {
  std::lock_guard lock(m_state->mutex);
  m_state->versions_of(tags, versions);
}

void local_cache::put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) {
  state::entry e{key, std::move(value), m_state->now() + lifetime};
  const std::size_t cost = state::cost(e);
  if (cost > m_max_bytes) return;  // would evict everything and still not fit
  std::lock_guard lock(m_state->mutex);
  if (auto it = m_state->index.find(key); it != m_state->index.end()) m_state->erase(it->second);
  while (!m_state->lru.empty() && m_state->bytes.load(std::memory_order_relaxed) + cost > m_max_bytes) {
    m_state->erase(std::prev(m_state->lru.end()));
  }
  m_state->lru.push_front(std::move(e));
  m_state->index.emplace(m_state->lru.front().key, m_state->lru.begin());
  m_state->bytes.fetch_add(cost, std::memory_order_relaxed);
  m_state->count.fetch_add(1, std::memory_order_relaxed);
}

void local_cache::erase(const std::string& key) {
  std::lock_guard lock(m_state->mutex);
  if (auto it = m_state->index.find(key); it != m_state->index.end()) m_state->erase(it->second);
}

void local_cache::bump_tags(std::span<const std::string> tags) {
  std::lock_guard lock(m_state->mutex);
  for (const auto& t : tags) ++m_state->tags[t];
}

std::uint64_t local_cache::bytes() const noexcept { return m_state->bytes.load(std::memory_order_relaxed); }
std::uint64_t local_cache::entries() const noexcept { return m_state->count.load(std::memory_order_relaxed); }

void local_cache::clear() {
  std::lock_guard lock(m_state->mutex);
  // Versions only grow: an entry stamped before the clear can never become valid again.
  for (auto& [name, v] : m_state->tags) ++v;
  m_state->index.clear();
  m_state->lru.clear();
  m_state->bytes.store(0, std::memory_order_relaxed);
  m_state->count.store(0, std::memory_order_relaxed);
}

}  // namespace steadypg
