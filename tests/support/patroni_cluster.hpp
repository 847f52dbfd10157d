#pragma once

// A throwaway Patroni cluster on loopback for tests and the demo: one etcd and `nodes`
// Patroni-managed PostgreSQL servers, all on free 127.0.0.1 ports, all in one temporary
// directory, started and torn down by the test itself.

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace steadypg::test {

/// Options for a throwaway Patroni cluster.
struct patroni_cluster_options {
  /// PostgreSQL nodes, each under its own Patroni. Default 3, range 1–5.
  std::size_t nodes = 3;
  /// Patroni's synchronous_mode (bootstrap DCS setting): a commit is acknowledged only once a
  /// synchronous standby has it, so a failover loses no acknowledged write. Default off.
  bool synchronous_mode = false;
  /// Leader lock time to live, seconds (Patroni `ttl`). Default 20, range 5–300.
  int ttl = 20;
  /// Seconds between Patroni's HA loop runs (`loop_wait`). Default 2, range 1–60.
  int loop_wait = 2;
  /// Seconds Patroni retries DCS and PostgreSQL operations (`retry_timeout`). Default 5,
  /// range 1–300. Patroni wants loop_wait + 2 × retry_timeout ≤ ttl.
  int retry_timeout = 5;
  /// Bound on the whole start: etcd up, a leader and nodes − 1 streaming replicas.
  /// Default 90000 ms, range 5000–600000 ms.
  std::chrono::milliseconds start_timeout{90000};
  /// Directory of the PostgreSQL server binaries; empty: $STEADYPG_PG_BINDIR, else the
  /// newest /usr/lib/postgresql/*/bin.
  std::filesystem::path bin_dir;
  /// Extra PostgreSQL parameters for every node (Patroni's postgresql.parameters).
  std::vector<std::pair<std::string, std::string>> parameters;

  /// Throws std::invalid_argument when a field is out of range.
  void validate() const;
};

/// One etcd 3.4 and `nodes` Patroni 3 instances on loopback. As root, every process runs as
/// the unprivileged `postgres` user. The constructor returns once there is a leader and
/// nodes − 1 streaming replicas; destruction kills every process the fixture started (Patroni,
/// the postmasters it started, found through postmaster.pid, their children, etcd) and removes
/// the directory, also when a test fails or throws. Nodes are named node0, node1, …
class patroni_cluster {
 public:
  /// Starts etcd and the nodes; throws std::runtime_error with the logs on failure, or when
  /// patroni or etcd is not installed (see unavailable_reason()).
  explicit patroni_cluster(patroni_cluster_options options = {});
  ~patroni_cluster();
  patroni_cluster(const patroni_cluster&) = delete;
  patroni_cluster& operator=(const patroni_cluster&) = delete;

  /// Why this machine cannot run the fixture (a missing binary), or an empty string.
  [[nodiscard]] static std::string unavailable_reason();

  /// Number of nodes.
  [[nodiscard]] std::size_t size() const noexcept { return m_nodes.size(); }
  /// Patroni's member name of node `i` ("node<i>").
  [[nodiscard]] std::string name(std::size_t i) const;
  /// A multi-host key=value DSN of every node's PostgreSQL in node order:
  /// `host=127.0.0.1,… port=P0,P1,… user=postgres dbname=postgres` (loopback is trust).
  [[nodiscard]] std::string dsn() const;
  /// A key=value DSN of node `i` alone.
  [[nodiscard]] std::string node_dsn(std::size_t i) const;
  /// PostgreSQL port of node `i`.
  [[nodiscard]] int pg_port(std::size_t i) const;
  /// Patroni REST API port of node `i`.
  [[nodiscard]] int rest_port(std::size_t i) const;
  /// etcd's client port.
  [[nodiscard]] int etcd_port() const noexcept { return m_etcd_client_port; }
  /// The fixture's directory (one folder per node, etcd's data, the logs).
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return m_dir; }

  /// The node whose REST API answers `GET /primary` with 200 (it runs as primary and holds
  /// the leader lock), or nullopt when none does.
  [[nodiscard]] std::optional<std::size_t> leader() const;
  /// Each node's role from its REST API (`GET /patroni`): "leader", "replica", Patroni's state
  /// while not running ("starting", "stopped", "creating replica", …), or "down" when the API
  /// does not answer.
  [[nodiscard]] std::vector<std::string> roles() const;
  /// True when there is a leader and every other node is a running replica streaming from it.
  [[nodiscard]] bool healthy() const;
  /// Waits until healthy(); throws std::runtime_error with the logs after `timeout`.
  void wait_healthy(std::chrono::milliseconds timeout);

  /// Planned switchover (`patronictl switchover --leader … --candidate … --force`); returns
  /// once node `to` is the confirmed leader, throws std::runtime_error after `timeout`.
  void switchover(std::size_t from, std::size_t to, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  /// Crash of node `i`: kill -9 of its Patroni, then of its postmaster; returns when both are gone.
  void kill_node(std::size_t i);
  /// Planned stop of node `i`: SIGTERM to its Patroni, which stops PostgreSQL (fast shutdown)
  /// and gives up the leader lock at once, so a replica takes over within a loop or two.
  /// Returns when both are gone (SIGKILL after `timeout`).
  void stop_node(std::size_t i, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Starts Patroni for node `i` again (after kill_node or stop_node); returns once its REST API answers.
  /// It rejoins as a replica (rewinding if it has to); wait for that with wait_for().
  void start_node(std::size_t i);
  /// Polls `pred` every 100 ms until it returns true (true) or `timeout` passes (false).
  /// A predicate that throws counts as false.
  bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) const;
  /// Runs patronictl with this cluster's configuration and the given arguments; returns its
  /// output. Throws std::runtime_error when it fails or takes longer than `timeout`.
  std::string patronictl(const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

  /// The tail of node `i`'s Patroni log (PostgreSQL's own log lines included).
  [[nodiscard]] std::string logs(std::size_t i, std::size_t max_bytes = 8000) const;
  /// The tail of etcd's log.
  [[nodiscard]] std::string etcd_logs(std::size_t max_bytes = 4000) const;
  /// Patroni's pid for node `i`, 0 when it is not running.
  [[nodiscard]] int patroni_pid(std::size_t i) const;
  /// The postmaster pid of node `i` from its postmaster.pid, 0 when none runs.
  [[nodiscard]] int postmaster_pid(std::size_t i) const;

 private:
  struct node_state {
    int pg_port = 0;
    int rest_port = 0;
    int patroni_pid = 0;
    std::filesystem::path dir;
  };
  void start_etcd();
  void write_config(std::size_t i) const;
  void spawn_patroni(std::size_t i);
  void teardown() noexcept;
  [[nodiscard]] std::string all_logs() const;
  [[nodiscard]] const node_state& at(std::size_t i) const;
  patroni_cluster_options m_options;
  std::filesystem::path m_dir;
  std::vector<node_state> m_nodes;
  int m_etcd_pid = 0;
  int m_etcd_client_port = 0;
  int m_etcd_peer_port = 0;
};

}  // namespace steadypg::test
