#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/error.hpp"
#include "steadypg/params.hpp"
#include "steadypg/result.hpp"

namespace steadypg {

/// How one cached call may be answered (client::query_cached; docs/cache.md).
struct cache_policy {
  /// How long an entry is fresh. Default 60 s, range 1 ms – 30 days.
  std::chrono::milliseconds ttl{60000};
  /// After ttl, how long the old value may still be served while one background refresh runs.
  /// Default 0 (off), range 0 – 30 days.
  std::chrono::milliseconds stale_while_revalidate{0};
  /// Negative caching: how long a failure of the statement itself is remembered and raised
  /// again without reaching the server (the same exception type, SQLSTATE and fields). Only
  /// errors the data decides are kept — SQLSTATE classes 22 (data exception), 2F, 38, 39
  /// (routine exceptions) and P0 (PL/pgSQL RAISE) —, invalidated like results; never a lost
  /// connection, a timeout, a cancel, a lock or a serialization failure. Default 0 (off), range
  /// 0 – 1 h.
  std::chrono::milliseconds negative_ttl{0};
  /// Tags of your own (invalidate_tags() drops every entry carrying one); the tables the
  /// statement reads are added as "table:<name>".
  std::vector<std::string> tags{};
  /// Results whose serialised size exceeds this are not stored (bypass "too_large").
  /// Default 1 MiB, range 1 B – 512 MiB.
  std::size_t max_result_bytes = std::size_t{1} << 20;

  /// Throws config_error naming the field.
  void validate() const;
};

/// Why a cached call went to the database without the cache.
enum class cache_bypass_reason : std::uint8_t {
  not_a_query,        ///< not a plain read (INSERT … RETURNING, DDL, several statements, transaction control)
  transaction,        ///< inside an explicit transaction
  locking,            ///< FOR UPDATE / FOR SHARE
  volatile_function,  ///< calls a function that is not IMMUTABLE (now(), random(), nextval(), current_*)
  temp_table,         ///< reads a temporary table
  too_large,          ///< result over max_result_bytes
  error,              ///< the statement failed (errors are not cached)
  no_backend,         ///< the client has no cache configured
};
/// Number of bypass reasons.
inline constexpr std::size_t cache_bypass_reason_count = 8;
/// "not_a_query", "transaction", … (the `reason` label).
[[nodiscard]] std::string_view to_string(cache_bypass_reason r) noexcept;

/// A cache backend failed (Redis down, timed out, a protocol error). The query cache catches it
/// and answers from the database; it never reaches a caller of query_cached.
class cache_unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where entries and tag versions live: the in-process LRU (local_cache) or Redis
/// (steadypg::redis::make_cache, a separate library). Thread-safe. Failures throw
/// cache_unavailable.
///
/// Invalidation is by tag version: each tag has a counter that invalidate bumps, and an entry
/// carries the versions of its tags at the time its query started; it is valid while they are
/// all unchanged. Counters never expire, so a tag can never be forgotten before the entries
/// that point to it.
class cache_backend {
 public:
  virtual ~cache_backend() = default;
  /// The value stored under `key` (nullopt when there is none) and, in `versions`, the current
  /// version of each of `tags` (0 for a tag never invalidated); one round trip where possible.
  virtual std::optional<std::string> get(const std::string& key, std::span<const std::string> tags,
                                         std::vector<std::uint64_t>& versions) = 0;
  /// The current versions of `tags` alone.
  virtual void tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) = 0;
  /// Stores `value` under `key` for `lifetime`.
  virtual void put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) = 0;
  /// Bumps the version of each tag.
  virtual void bump_tags(std::span<const std::string> tags) = 0;
  /// Cross-process refresh lock on `key`: a token when taken, nullopt when another holds it.
  /// The in-process backend has no other process to exclude and always grants it.
  virtual std::optional<std::string> try_lock(const std::string& key, std::chrono::milliseconds hold) {
    (void)key, (void)hold;
    return std::string("local");
  }
  /// Releases the lock if `token` still holds it.
  virtual void unlock(const std::string& key, const std::string& token) { (void)key, (void)token; }
  /// True when other processes share this backend (a waiting process polls it for the value).
  [[nodiscard]] virtual bool shared() const noexcept { return false; }
  /// Bytes held (the in-process LRU; 0 when unknown).
  [[nodiscard]] virtual std::uint64_t bytes() const noexcept { return 0; }
  /// Entries held (0 when unknown).
  [[nodiscard]] virtual std::uint64_t entries() const noexcept { return 0; }
  /// Drops every entry (tag versions too, for the in-process LRU). For tests and after a lost
  /// invalidation channel.
  virtual void clear() = 0;
  /// Problems worth a warning at startup (e.g. Redis evicting with an allkeys-* policy).
  [[nodiscard]] virtual std::vector<std::string> startup_warnings() { return {}; }
  /// "local", "redis".
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
};

/// The in-process backend: an LRU bounded in bytes (keys, values and bookkeeping counted).
class local_cache final : public cache_backend {
 public:
  /// At most `max_bytes` (default 64 MiB, at least 1 KiB). `now` is the clock entries expire by
  /// (injectable for tests).
  explicit local_cache(std::size_t max_bytes = std::size_t{64} << 20,
                       std::function<std::chrono::steady_clock::time_point()> now = {});
  ~local_cache() override;
  local_cache(const local_cache&) = delete;
  local_cache& operator=(const local_cache&) = delete;

  std::optional<std::string> get(const std::string& key, std::span<const std::string> tags,
                                 std::vector<std::uint64_t>& versions) override;
  void tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) override;
  void put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) override;
  void bump_tags(std::span<const std::string> tags) override;
  [[nodiscard]] std::uint64_t bytes() const noexcept override;
  [[nodiscard]] std::uint64_t entries() const noexcept override;
  void clear() override;
  [[nodiscard]] std::string_view name() const noexcept override { return "local"; }
  /// Drops the entry under `key`, if any.
  void erase(const std::string& key);
  /// The byte bound.
  [[nodiscard]] std::size_t max_bytes() const noexcept { return m_max_bytes; }

 private:
  struct state;
  std::size_t m_max_bytes;
  std::unique_ptr<state> m_state;
};

/// Two levels: an in-process LRU in front of a shared backend (Redis). A hit in the local level
/// costs no round trip; everything else (misses, stores, locks, tag versions) goes to the shared
/// level.
///
/// A local copy is kept for at most `local_ttl` and is valid while the tags it was read with keep
/// their local versions: this process's own invalidations bump them at once, and other
/// processes' writes reach them through the client's NOTIFY channel
/// (cache_options::notify_channel). Without that channel a write made by another process is
/// seen here after at most `local_ttl` (docs/cache.md). While the shared level is down, valid
/// local copies are still served; the rest bypass as with the shared level alone.
class tiered_cache final : public cache_backend {
 public:
  /// `shared` must not be null. `local_max_bytes` bounds the local level (default 64 MiB, at
  /// least 1 KiB); `local_ttl` how long a local copy is kept (1 ms – 1 h, default 1 s). `now` is
  /// the local level's clock (injectable for tests).
  explicit tiered_cache(std::shared_ptr<cache_backend> shared, std::size_t local_max_bytes = std::size_t{64} << 20,
                        std::chrono::milliseconds local_ttl = std::chrono::milliseconds(1000),
                        std::function<std::chrono::steady_clock::time_point()> now = {});
  ~tiered_cache() override;
  tiered_cache(const tiered_cache&) = delete;
  tiered_cache& operator=(const tiered_cache&) = delete;

  std::optional<std::string> get(const std::string& key, std::span<const std::string> tags,
                                 std::vector<std::uint64_t>& versions) override;
  void tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) override;
  void put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) override;
  void bump_tags(std::span<const std::string> tags) override;
  std::optional<std::string> try_lock(const std::string& key, std::chrono::milliseconds hold) override;
  void unlock(const std::string& key, const std::string& token) override;
  [[nodiscard]] bool shared() const noexcept override { return true; }
  [[nodiscard]] std::uint64_t bytes() const noexcept override;
  [[nodiscard]] std::uint64_t entries() const noexcept override;
  void clear() override;
  [[nodiscard]] std::vector<std::string> startup_warnings() override;
  /// "local+redis" (for a Redis shared level), or "local+" and the shared level's name.
  [[nodiscard]] std::string_view name() const noexcept override { return m_name; }
  /// Calls answered by the local level without reaching the shared one.
  [[nodiscard]] std::uint64_t local_hits() const noexcept { return m_local_hits.load(std::memory_order_relaxed); }
  /// The shared level.
  [[nodiscard]] cache_backend& shared_level() noexcept { return *m_shared; }

 private:
  std::shared_ptr<cache_backend> m_shared;
  local_cache m_local;
  std::chrono::milliseconds m_local_ttl;
  std::string m_name;
  std::atomic<std::uint64_t> m_local_hits{0};
};

/// The client's cache settings (client_options::cache).
struct cache_options {
  /// Where entries live; null: query_cached() runs every call on the database (bypass
  /// "no_backend"). Build one with std::make_shared<local_cache>() or
  /// steadypg::redis::make_cache(url) (library steadypg::redis).
  std::shared_ptr<cache_backend> backend;
  /// POSTGRESQL_CACHE_URL as read by from_env(): "local" makes the client build a local_cache; a
  /// redis:// URL needs a backend built by steadypg::redis (the client refuses a redis:// URL
  /// without one with config_error, since the core does not link hiredis); local+redis://… takes
  /// the same Redis backend and puts a local level in front of it (tiered_cache). Empty: off.
  std::string url;
  /// With url local+redis://… (a local level in front of the given Redis backend, see
  /// tiered_cache): how long a local copy is kept. Default 1000 ms, range 1 ms – 1 h.
  std::chrono::milliseconds local_ttl{1000};
  /// The in-process LRU's bound (url local, and the local level of local+redis://…). Default
  /// 64 MiB, at least 1 KiB.
  std::size_t local_max_bytes = std::size_t{64} << 20;
  /// Defaults for calls that give no policy.
  cache_policy defaults;
  /// Cross-process invalidation: the client NOTIFYs this channel with the tags it invalidates
  /// and LISTENs on it, bumping its own backend's tags for other processes' writes. Empty: off.
  std::string notify_channel;
  /// How long a process waits for another process's refresh of the same key before running
  /// the query itself. Default 1000 ms, range 0–60000 ms.
  std::chrono::milliseconds lock_wait{1000};
  /// How long a refresh lock is held at most (the refresher's crash frees the key after this).
  /// Default 10000 ms, range 1–600000 ms.
  std::chrono::milliseconds lock_hold{10000};
  /// Receives warnings (backend errors, at most one line per second; startup warnings). Empty:
  /// stderr.
  std::function<void(std::string_view)> warn;
  /// The wall clock entries are stamped with (injectable for tests).
  std::function<std::chrono::system_clock::time_point()> now;

  /// Throws config_error naming the field.
  void validate() const;
  /// Throws config_error when `url` is redis:// and `backend` is not a Redis backend.
  void check_backend() const;
};

/// What the cache did so far (client::cache_statistics()).
struct cache_stats {
  std::uint64_t hits = 0;           ///< answered from the cache, fresh
  std::uint64_t misses = 0;         ///< ran on the database and stored
  std::uint64_t stale = 0;          ///< answered with a stale value while a refresh ran
  std::uint64_t bypass = 0;         ///< ran on the database without the cache (see bypass_by_reason)
  std::uint64_t errors = 0;         ///< the backend failed; answered from the database
  std::uint64_t negative_hits = 0;  ///< of hits: a remembered failure raised again (negative_ttl)
  std::uint64_t invalidations = 0;  ///< tags invalidated
  std::uint64_t lock_waits = 0;     ///< a miss that waited for another process's refresh
  std::uint64_t bytes = 0;          ///< bytes held by the backend (local LRU)
  std::uint64_t entries = 0;        ///< entries held by the backend (local LRU)
  std::uint64_t bypass_by_reason[cache_bypass_reason_count] = {};
  std::string backend;  ///< "local", "redis", "" when off
  /// (hits + stale) / (hits + stale + misses + bypass + errors); 0 before the first call.
  [[nodiscard]] double hit_ratio() const noexcept;
};

/// Serialises a result faithfully (columns, table/column ids, type oids, modifiers, formats,
/// values with their lengths — NUL bytes included —, NULLs and the command tag).
[[nodiscard]] std::string serialize_result(const result& r);
/// The result serialize_result() was given; throws cache_unavailable for damaged bytes.
[[nodiscard]] result deserialize_result(std::string_view bytes);

}  // namespace steadypg
