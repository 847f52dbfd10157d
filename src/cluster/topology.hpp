#pragma once

// Private: the topology prober of a multi-host client. One thread per host keeps a dedicated
// connection and probes the host's role every probe_interval (faster after an error or a
// change); the results are published as an immutable snapshot that request paths only read.
// A host that hangs blocks only its own thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "router.hpp"
#include "steadypg/cluster.hpp"
#include "steadypg/connection.hpp"

namespace steadypg {
class observer;
}

namespace steadypg::internal {

/// One probe's findings (the result of probe_query()).
struct probe_sample {
  bool ok = false;
  bool in_recovery = false;
  bool read_only = false;
  std::uint64_t lsn = 0;               ///< current WAL (primary) or last replayed (replica)
  std::optional<double> replay_epoch;  ///< pg_last_xact_replay_timestamp() as Unix seconds
  double now_epoch = 0;                ///< the server's clock
  int timeline = 0;
  double probe_ms = 0;
  std::string error;
};

/// The probe's one statement: recovery, read-only, WAL or replay position, replay time, the
/// server's clock and the timeline.
[[nodiscard]] std::string_view probe_query() noexcept;

class topology {
 public:
  using clock = std::chrono::steady_clock;

  struct host_spec {
    std::string label;           ///< "host:port"
    connection_options options;  ///< with the host's own DSN
  };

  /// Starts one prober thread per host. `on_reachable(i)` runs (on host i's thread, no lock
  /// held) after each good probe: the client lets an open breaker probe at once.
  topology(std::vector<host_spec> hosts, const cluster_options& options, observer* obs,
           std::function<void(std::size_t)> on_reachable);
  /// Stops the threads (each finishes or abandons its probe within probe_timeout).
  ~topology();
  topology(const topology&) = delete;
  topology& operator=(const topology&) = delete;

  /// The latest snapshot (never null).
  [[nodiscard]] std::shared_ptr<const topology_snapshot> snapshot() const;
  /// Waits until `ready(snapshot)` holds or `deadline` passes, asking for fast probes meanwhile;
  /// returns the last snapshot either way.
  std::shared_ptr<const topology_snapshot> wait_for(clock::time_point deadline,
                                                    const std::function<bool(const topology_snapshot&)>& ready);
  /// A call lost its connection to host `i`, or could not connect: it is unavailable until
  /// probed good twice; probing goes fast.
  void report_failure(std::size_t i, std::string_view why);
  /// A primary-routed call got 25006 on host `i`: writes avoid it until a new probe says what it is.
  void report_read_only(std::size_t i);
  [[nodiscard]] std::size_t size() const noexcept { return m_hosts.size(); }
  [[nodiscard]] const cluster_options& options() const noexcept { return m_options; }

 private:
  struct host;
  void run(std::size_t i);
  probe_sample probe(host& h);
  void apply(std::size_t i, probe_sample s);                 // lock held
  void publish(std::vector<std::function<void()>>& events);  // lock held; events run after unlocking
  void speed_up(clock::time_point until);                    // lock held

  cluster_options m_options;
  observer* m_observer;
  std::function<void(std::size_t)> m_on_reachable;
  std::vector<std::unique_ptr<host>> m_hosts;
  mutable std::mutex m_mutex;
  std::condition_variable m_changed;                                  // a snapshot was published
  std::condition_variable m_wake;                                     // a prober thread has work (or must stop)
  std::shared_ptr<const topology_snapshot> m_snapshot;                // under m_mutex
  std::atomic<std::shared_ptr<const topology_snapshot>> m_published;  // the same, for readers without the lock
  std::uint64_t m_generation = 0;
  bool m_stop = false;
  clock::time_point m_started;
  std::vector<std::thread> m_threads;  // last: started once everything else exists
};

}  // namespace steadypg::internal
