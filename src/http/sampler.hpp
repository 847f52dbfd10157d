#pragma once

// The snapshot behind /api/snapshot and /health: one thread reads the client's metrics every
// sample interval (in-process atomics), another probes the server (health_check every interval,
// pg_stat_activity every server interval on a connection of its own, so that the dashboard's
// figures do not count its own queries).

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "json_parts.hpp"
#include "steadypg/client.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/http/server.hpp"

namespace steadypg::http::internal {

/// Latency percentiles (ms) of the calls that finished between two readings of a histogram's
/// cumulative buckets; nullopt when none did. Upper bound of the bucket the rank falls in.
struct percentiles {
  double p50 = 0, p95 = 0, p99 = 0;
};
using bucket_counts = std::array<std::uint64_t, observe::histogram::bounds.size() + 1>;
[[nodiscard]] std::optional<percentiles> percentiles_between(const bucket_counts& before, const bucket_counts& after);

class sampler {
 public:
  sampler(client& db, const options& opts);
  ~sampler();
  sampler(const sampler&) = delete;
  sampler& operator=(const sampler&) = delete;

  /// The last snapshot as JSON text.
  [[nodiscard]] std::string snapshot() const;
  /// The last health report (taken by the probe thread); nullopt before the first one.
  [[nodiscard]] std::optional<health_report> health() const;
  void stop() noexcept;

 private:
  void sample_loop();
  void probe_loop();
  void sample_once();
  void read_server_facts();
  [[nodiscard]] json hosts_section(const health_report* h) const;

  client& m_db;
  options m_options;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_stopping = false;
  bool m_sample_now = false;  // the probe saw the health change

  // Guarded by m_mutex.
  std::string m_snapshot = "{}";
  std::optional<health_report> m_health;
  std::chrono::system_clock::time_point m_health_at;
  json m_server = nullptr;  // the server-side facts, or {"error": …}

  // The sample thread's own state.
  bool m_have_previous = false;
  std::chrono::steady_clock::time_point m_previous_at;
  std::uint64_t m_previous_queries = 0, m_previous_errors = 0, m_previous_retries = 0, m_previous_timeouts = 0;
  bucket_counts m_previous_buckets{};

  // The probe thread's own connection for pg_stat_activity.
  std::optional<connection> m_facts_conn;

  std::thread m_sample_thread;
  std::thread m_probe_thread;
};

}  // namespace steadypg::http::internal
