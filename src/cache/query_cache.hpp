#pragma once

// Private: the query cache behind client::query_cached (docs/cache.md). It knows nothing of the
// client: statements run through a `runner` the client gives it (its resilience pipeline).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cache_rules.hpp"
#include "steadypg/cache.hpp"
#include "steadypg/observe/metrics.hpp"

namespace steadypg::internal {

class query_cache {
 public:
  /// Runs `sql` with `params` on the database (the client's pipeline); `read` when the statement
  /// is known to be a plain read (then it may be retried like an idempotent one).
  using runner = std::function<result(std::string_view sql, std::span<const param_ref> params, bool read)>;

  /// `options.backend` must be set. `metrics` (may be null) gets the postgresql_cache_* families.
  query_cache(cache_options options, observe::registry* metrics, runner run);
  ~query_cache();
  query_cache(const query_cache&) = delete;
  query_cache& operator=(const query_cache&) = delete;

  /// The result of `sql` with `params`, from the cache when it may be; never fails because of
  /// the backend (its errors are counted and the database answers).
  result fetch(std::string_view sql, std::span<const param_ref> params, const cache_policy& policy);
  /// Bumps `tags` (and calls the notifier, unless `from_peer`).
  void invalidate_tags(std::span<const std::string> tags, bool from_peer = false);
  /// Bumps the tags of `tables` (bare or schema-qualified names).
  void invalidate_tables(std::span<const std::string> tables);
  /// Invalidates what the statements of `sql` write (after their COMMIT).
  void invalidate_written(std::string_view sql);
  /// Drops everything (a lost invalidation channel: notifications may have been missed).
  void invalidate_all();
  /// Called with the tags of every local invalidation (the client NOTIFYs them).
  void set_notifier(std::function<void(std::span<const std::string>)> notify) { m_notify = std::move(notify); }
  /// Counts a call that did not use the cache.
  void count_bypass(cache_bypass_reason reason) noexcept;
  [[nodiscard]] cache_stats stats() const;
  [[nodiscard]] cache_backend& backend() noexcept { return *m_options.backend; }

 private:
  struct facts_entry {
    statement_facts facts;
    std::vector<std::string> tags;  // sorted, "*" included
  };
  struct flight {
    bool done = false;
    std::optional<result> value;
  };
  struct owned_params {
    std::vector<std::optional<std::string>> values;
    std::vector<param_ref> refs;
  };

  std::shared_ptr<const facts_entry> facts_of(const std::string& normalized, std::string_view sql,
                                              std::span<const param_ref> params);
  const std::string& identity();
  result run_and_store(std::string_view sql, std::span<const param_ref> params, const cache_policy& policy,
                       const std::string& key, const facts_entry& facts, const std::vector<std::uint64_t>& versions,
                       bool& stored);
  void refresh_later(std::string sql, std::span<const param_ref> params, cache_policy policy, std::string key,
                     std::shared_ptr<const facts_entry> facts);
  void refresh_loop();
  void start_worker();  // with m_refresh_mutex held
  void backend_failed(const std::exception& e) noexcept;
  void warn(std::string_view text) noexcept;
  std::int64_t now_ms() const;
  void count(std::uint64_t& stat, observe::counter* c) noexcept;

  cache_options m_options;
  runner m_run;
  std::function<void(std::span<const std::string>)> m_notify;

  // Invalidations the backend could not take (it was down): delivered before the backend is
  // read again; until then calls go to the database, so that a write committed during an
  // outage is never hidden by an entry that outlived it.
  bool deliver_pending() noexcept;
  std::mutex m_pending_mutex;
  std::vector<std::string> m_pending;
  std::atomic<bool> m_has_pending{false};

  std::mutex m_identity_mutex;
  std::string m_identity;
  bool m_have_identity = false;

  std::mutex m_facts_mutex;
  std::unordered_map<std::string, std::shared_ptr<const facts_entry>> m_facts;

  std::mutex m_flights_mutex;
  std::condition_variable m_flight_done;
  std::unordered_map<std::string, std::shared_ptr<flight>> m_flights;

  // Background refreshes (stale_while_revalidate): one worker, one refresh per key at a time.
  std::mutex m_refresh_mutex;
  std::condition_variable m_refresh_cv;
  std::deque<std::function<void()>> m_refresh_jobs;
  std::deque<std::vector<std::string>> m_notify_jobs;  // tags to NOTIFY
  std::unordered_map<std::string, bool> m_refreshing;
  bool m_stopping = false;
  std::thread m_refresh_thread;

  mutable std::mutex m_stats_mutex;
  cache_stats m_stats;
  std::atomic<std::int64_t> m_last_warn_ms{0};

  observe::counter* m_hit = nullptr;
  observe::counter* m_miss = nullptr;
  observe::counter* m_stale = nullptr;
  observe::counter* m_bypass = nullptr;
  observe::counter* m_error = nullptr;
  observe::counter* m_invalidations = nullptr;
  observe::counter* m_bypass_reason[cache_bypass_reason_count] = {};
  observe::histogram* m_refresh_duration = nullptr;
};

}  // namespace steadypg::internal
