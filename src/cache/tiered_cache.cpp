// The two-level cache: the in-process LRU in front of a shared backend (docs/cache.md).
//
// A local copy is the shared level's bytes with two version lists in front: the local versions
// of its tags when the shared level was asked (taken before asking, so an invalidation that
// lands in between makes the copy invalid), and the shared versions the shared level returned
// with it (what the query cache judges the entry by, as if it had asked the shared level).

#include <fmt/format.h>

#include <cstring>

#include "cache_rules.hpp"
#include "steadypg/cache.hpp"

namespace steadypg {

namespace {

void put_u64s(std::string& out, const std::vector<std::uint64_t>& v) {
  const auto n = static_cast<std::uint32_t>(v.size());
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(std::uint64_t));
}

bool take_u64s(std::string_view& in, std::vector<std::uint64_t>& v) {
  std::uint32_t n = 0;
  if (in.size() < sizeof n) return false;
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  if (in.size() / sizeof(std::uint64_t) < n) return false;
  v.resize(n);
  std::memcpy(v.data(), in.data(), n * sizeof(std::uint64_t));
  in.remove_prefix(n * sizeof(std::uint64_t));
  return true;
}

// The shared level's entry is still worth keeping: its tags have not moved since its query
// started (a dead entry kept locally would be read and rejected until the copy expires).
bool versions_match(std::string_view value, const std::vector<std::uint64_t>& shared_versions) {
  const auto entry = internal::decode_entry(value);
  return entry && entry->first.versions == shared_versions;
}

}  // namespace

tiered_cache::tiered_cache(std::shared_ptr<cache_backend> shared, std::size_t local_max_bytes,
                           std::chrono::milliseconds local_ttl,
                           std::function<std::chrono::steady_clock::time_point()> now)
    : m_shared(std::move(shared)), m_local(local_max_bytes, std::move(now)), m_local_ttl(local_ttl) {
  if (!m_shared) throw config_error("tiered_cache needs a shared level (e.g. steadypg::redis::make_cache(url))");
  if (local_ttl < std::chrono::milliseconds(1) || local_ttl > std::chrono::hours(1)) {
    throw config_error(fmt::format("cache.local_ttl = {} ms is out of range: expected 1 ms – 1 h", local_ttl.count()));
  }
  m_name = "local+" + std::string(m_shared->name());
}

tiered_cache::~tiered_cache() = default;

std::optional<std::string> tiered_cache::get(const std::string& key, std::span<const std::string> tags,
                                             std::vector<std::uint64_t>& versions) {
  std::vector<std::uint64_t> local_now;
  if (auto copy = m_local.get(key, tags, local_now)) {
    std::string_view in = *copy;
    std::vector<std::uint64_t> stamped;
    if (take_u64s(in, stamped) && stamped == local_now && take_u64s(in, versions) && versions.size() == tags.size()) {
      m_local_hits.fetch_add(1, std::memory_order_relaxed);
      return std::string(in);
    }
    m_local.erase(key);
  }
  // local_now was read before the shared level is asked: a local invalidation from here on
  // leaves the copy stamped with older versions, and so invalid.
  auto value = m_shared->get(key, tags, versions);
  if (value && versions_match(*value, versions)) {
    std::string copy;
    copy.reserve(value->size() + 8 + (local_now.size() + versions.size()) * sizeof(std::uint64_t));
    put_u64s(copy, local_now);
    put_u64s(copy, versions);
    copy.append(*value);
    m_local.put(key, std::move(copy), m_local_ttl);
  }
  return value;
}

void tiered_cache::tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) {
  m_shared->tag_versions(tags, versions);
}

void tiered_cache::put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) {
  // The next get copies the new value with the shared level's versions of that moment.
  m_local.erase(key);
  m_shared->put(key, std::move(value), lifetime);
}

void tiered_cache::bump_tags(std::span<const std::string> tags) {
  m_local.bump_tags(tags);  // first, and even when the shared level fails
  m_shared->bump_tags(tags);
}

std::optional<std::string> tiered_cache::try_lock(const std::string& key, std::chrono::milliseconds hold) {
  return m_shared->try_lock(key, hold);
}

void tiered_cache::unlock(const std::string& key, const std::string& token) { m_shared->unlock(key, token); }

std::uint64_t tiered_cache::bytes() const noexcept { return m_local.bytes(); }
std::uint64_t tiered_cache::entries() const noexcept { return m_local.entries(); }

void tiered_cache::clear() {
  m_local.clear();
  m_shared->clear();
}

std::vector<std::string> tiered_cache::startup_warnings() { return m_shared->startup_warnings(); }

}  // namespace steadypg
