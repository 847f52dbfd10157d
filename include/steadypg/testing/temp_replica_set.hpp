#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "steadypg/testing/temp_cluster.hpp"

namespace steadypg::testing {

/// Options for a throwaway primary with streaming standbys.
struct temp_replica_set_options {
  /// Streaming standbys next to the primary. Default 2, range 0–8.
  std::size_t replicas = 2;
  /// As temp_cluster_options::password: required over TCP on every node, also by the
  /// standbys' replication connections. Empty: trust everywhere.
  std::string password;
  /// Extra `-c name=value` server settings for every node.
  std::vector<std::pair<std::string, std::string>> settings;
  /// Bound on each node's start and on each wait for a standby to stream. Default 60000 ms,
  /// range 1000–600000 ms.
  std::chrono::milliseconds start_timeout{60000};
  /// Directory of the server binaries; empty: as temp_cluster_options::bin_dir.
  std::filesystem::path bin_dir;
  /// As temp_cluster_options::die_with_parent (tied to the constructing thread).
  bool die_with_parent = true;

  /// Throws std::invalid_argument when a field is out of range.
  void validate() const;
};

/// A throwaway primary and `replicas` hot standbys, each a temp_cluster on its own loopback
/// port: node 0 is the primary (initdb, replication-ready), nodes 1… are `pg_basebackup -R
/// -X stream` copies of it. The constructor returns once every standby streams from the
/// primary (pg_stat_replication) and answers queries; destruction stops every node and
/// removes every directory, also when a test fails or throws.
class temp_replica_set {
 public:
  /// Starts the primary and the standbys; throws std::runtime_error (with the server log)
  /// when a node does not come up within start_timeout.
  explicit temp_replica_set(temp_replica_set_options options = {});
  ~temp_replica_set();
  temp_replica_set(const temp_replica_set&) = delete;
  temp_replica_set& operator=(const temp_replica_set&) = delete;

  /// Number of nodes (the primary and the standbys).
  [[nodiscard]] std::size_t size() const noexcept { return m_nodes.size(); }
  /// Node `i` (0 is the initial primary); throws std::out_of_range.
  [[nodiscard]] temp_cluster& node(std::size_t i);
  /// Node `i`, read-only; throws std::out_of_range.
  [[nodiscard]] const temp_cluster& node(std::size_t i) const;
  /// The node this set made primary last: 0, or the last one promote() was called for.
  [[nodiscard]] std::size_t primary() const noexcept { return m_primary; }
  /// The directory that holds every node's directory.
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return m_dir; }

  /// A multi-host key=value DSN naming every node in order:
  /// `host=127.0.0.1,127.0.0.1,… port=P0,P1,… user=postgres dbname=postgres` (+ password).
  [[nodiscard]] std::string dsn() const;
  /// The same as a URL: `postgresql://127.0.0.1:P0,127.0.0.1:P1,…/postgres?user=postgres`.
  [[nodiscard]] std::string url() const;

  /// Promotes standby `i` (pg_promote, wait => true) and returns once it is out of recovery.
  /// The other nodes are left as they are: a running old primary makes a split brain.
  void promote(std::size_t i);
  /// Pauses WAL replay on standby `i`; returns once pg_get_wal_replay_pause_state() says
  /// 'paused'. WAL is still received, only not applied: the standby falls behind.
  void pause_replay(std::size_t i);
  /// Resumes WAL replay on standby `i`; returns once the state says 'not paused'.
  void resume_replay(std::size_t i);
  /// Stops node `i` (fast shutdown). Same as node(i).stop().
  void stop(std::size_t i);
  /// Starts node `i` on its port again. Same as node(i).start().
  void start(std::size_t i);
  /// Crash-like stop of node `i` (immediate shutdown). Same as node(i).kill().
  void kill(std::size_t i);
  /// Waits until standby `i` has replayed everything its upstream (the node it streams from,
  /// else primary()) had written when the call began; throws std::runtime_error on timeout.
  void wait_caught_up(std::size_t i, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Waits until node `j` shows standby `i` as streaming in pg_stat_replication; throws
  /// std::runtime_error on timeout.
  void wait_streaming(std::size_t i, std::size_t j, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Makes node `i` a standby of node `j` and waits until it streams from it: a running
  /// standby is pointed at `j` (primary_conninfo, reload); any other node (an old primary, a
  /// stopped node) is rewound with pg_rewind, or copied anew, and started.
  void make_replica_of(std::size_t i, std::size_t j);

 private:
  [[nodiscard]] std::string admin_dsn(std::size_t i) const;
  temp_replica_set_options m_options;
  std::filesystem::path m_dir;
  std::vector<std::unique_ptr<temp_cluster>> m_nodes;
  std::size_t m_primary = 0;
};

}  // namespace steadypg::testing
