#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace steadypg::testing {

/// Options for a throwaway PostgreSQL server.
struct temp_cluster_options {
  /// Where the cluster lives; empty creates a fresh directory under $TMPDIR (or /tmp).
  /// The server's data is in `dir/data`, its Unix socket and log in `dir`.
  std::filesystem::path dir;
  /// Keep the directory (and a running server, after detach()) when the object dies.
  bool keep = false;
  /// Reuse an existing data directory in `dir` instead of requiring a fresh one.
  bool reuse = false;
  /// Directory of initdb/postgres; empty: $STEADYPG_PG_BINDIR, else the newest
  /// /usr/lib/postgresql/*/bin, else `pg_config --bindir`.
  std::filesystem::path bin_dir;
  /// Loopback TCP port; 0 picks a free one.
  int port = 0;
  /// Sets a password for the `postgres` superuser and requires it (scram-sha-256) over TCP;
  /// the Unix socket stays trust. Empty: trust everywhere.
  std::string password;
  /// Extra `-c name=value` server settings.
  std::vector<std::pair<std::string, std::string>> settings;
  /// How long start() waits for the server to accept connections.
  std::chrono::milliseconds start_timeout{60000};
  /// Stop the server if the process that started it dies (not for a detached sandbox).
  /// Linux ties this to the *thread* that started the server: call the constructor, start()
  /// and restart() from a thread that outlives the server (or turn this off).
  bool die_with_parent = true;
  /// Make the server replication-ready: wal_level=replica, max_wal_senders and
  /// max_replication_slots 10, hot_standby on, wal_keep_size 256MB (a stopped or paused
  /// standby can catch up), wal_log_hints and full_page_writes on (for pg_rewind),
  /// synchronous_commit on (a commit is in the WAL a standby receives when it returns), and
  /// `replication` lines in pg_hba.conf for 127.0.0.1 and the Unix socket (same
  /// authentication as ordinary connections). `settings` still override these.
  bool replication = false;
  /// Make this server a streaming standby of the server at this key=value DSN: its data
  /// directory is a `pg_basebackup -R -X stream` copy of that server instead of a fresh
  /// initdb (the password, if any, must be the primary's). Implies `replication`.
  std::string standby_of;
  /// The server's cluster_name: the application_name its WAL receiver shows in the
  /// primary's pg_stat_replication. Empty: none.
  std::string name;
};

/// An embedded throwaway PostgreSQL: initdb into a fresh directory, start `postgres` on
/// 127.0.0.1:<free port> and a Unix socket in the directory, wait until ready; stop and
/// delete everything on destruction (also when a test fails or throws).
/// Works as root: the server runs as the unprivileged `postgres` user, which owns the
/// directory. Never touches any other server.
class temp_cluster {
 public:
  /// Creates and starts the cluster; throws std::runtime_error with the server log on failure.
  explicit temp_cluster(temp_cluster_options options = {});
  ~temp_cluster();
  temp_cluster(const temp_cluster&) = delete;
  temp_cluster& operator=(const temp_cluster&) = delete;

  /// A key=value DSN over TCP loopback (host=127.0.0.1 port=… user=postgres dbname=postgres).
  [[nodiscard]] std::string dsn() const;
  /// The same over the Unix socket in dir().
  [[nodiscard]] std::string socket_dsn() const;
  /// The TCP port.
  [[nodiscard]] int port() const noexcept { return m_port; }
  /// The cluster directory.
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return m_options.dir; }
  /// The postmaster pid, 0 when stopped.
  [[nodiscard]] int pid() const noexcept { return m_pid; }
  /// True when the postmaster is running.
  [[nodiscard]] bool running() const;

  /// Fast shutdown (SIGINT: active sessions are terminated); waits until the server is gone.
  void stop();
  /// Starts a stopped server on the same port and waits until it accepts connections.
  void start();
  /// stop() then start().
  void restart();
  /// Crash-like stop (SIGQUIT: immediate shutdown, no checkpoint); start() recovers.
  void kill();
  /// Makes this server a streaming standby of the server at `primary_dsn` (key=value) and
  /// starts it: stops it if it runs, rewinds it onto that server with `pg_rewind -R` (its
  /// history may have diverged, as an old primary's does after a failover), or takes a fresh
  /// base backup when rewinding fails. Needs `replication` (or `standby_of`) on both servers.
  void rebuild_as_standby_of(const std::string& primary_dsn);
  /// Leaves the server running and the directory in place when this object dies.
  void detach() noexcept;
  /// The tail of the server log (for diagnostics).
  [[nodiscard]] std::string log_tail(std::size_t max_bytes = 4000) const;

  /// Stops a server started (and detached) earlier in `dir`; returns false if none ran.
  static bool stop_in(const std::filesystem::path& dir);
  /// The postmaster pid of a server in `dir` (from postmaster.pid), 0 when none runs.
  static int running_pid_in(const std::filesystem::path& dir);

 private:
  void init_data();
  void base_backup(const std::string& primary_dsn);
  [[nodiscard]] bool replication_ready() const noexcept {
    return m_options.replication || !m_options.standby_of.empty();
  }
  void launch();
  void wait_ready();
  void signal_and_wait(int sig, std::chrono::milliseconds patience);
  temp_cluster_options m_options;
  int m_port = 0;
  int m_pid = 0;
  bool m_created_dir = false;
  bool m_detached = false;
};

}  // namespace steadypg::testing
