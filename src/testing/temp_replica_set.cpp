#include "steadypg/testing/temp_replica_set.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fmt/format.h>
#include <functional>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "steadypg/connection.hpp"
#include "steadypg/dsn.hpp"
#include "steadypg/error.hpp"

namespace fs = std::filesystem;

namespace steadypg::testing {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// A SQL string literal (standard_conforming_strings is on).
std::string sql_literal(const std::string& v) {
  std::string out = "'";
  for (const char c : v) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// The timeline a node writes (a primary: the pgwatch method, from the current WAL file's
// name) or receives (a standby).
constexpr const char* k_timeline_sql =
    "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT max(received_tli) FROM pg_stat_wal_receiver) "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END";

// A short-lived session for the fixture's own queries, bounded on both ends.
connection admin_connection(const std::string& dsn) {
  connection_options o;
  o.dsn = dsn;
  o.connect_timeout = 5s;
  o.statement_timeout = 30s;
  o.application_name = "steadypg_replica_set";
  o.statement_cache_capacity = 0;
  return connection(o);
}

void check_node(std::size_t i, std::size_t size) {
  if (i >= size) throw std::out_of_range(fmt::format("temp_replica_set: no node {} (there are {})", i, size));
}

std::string node_name(std::size_t i) { return fmt::format("node{}", i); }

// Polls `probe` until it returns true or `timeout` passes; a probe that throws (a node that
// is restarting) counts as false. Returns the last error for the failure message.
bool poll_until(const std::function<bool()>& probe, std::chrono::milliseconds timeout, std::string& last_error) {
  const auto until = clock_type::now() + timeout;
  for (;;) {
    try {
      if (probe()) return true;
    } catch (const std::exception& e) {
      last_error = e.what();
    }
    if (clock_type::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace

void temp_replica_set_options::validate() const {
  if (replicas > 8) throw std::invalid_argument(fmt::format("temp_replica_set: replicas {} is over 8", replicas));
  if (start_timeout < 1s || start_timeout > 600s) {
    throw std::invalid_argument(
        fmt::format("temp_replica_set: start_timeout {} ms is out of range 1000–600000", start_timeout.count()));
  }
}

temp_replica_set::temp_replica_set(temp_replica_set_options options) : m_options(std::move(options)) {
  m_options.validate();
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = fmt::format("{}/steadypg-rs-XXXXXX", (tmp && *tmp) ? tmp : "/tmp");
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "temp_replica_set: mkdtemp " + templ);
  }
  m_dir = templ;
  try {
    // The servers run as `postgres` when we are root: they must be able to reach their directories.
    if (::geteuid() == 0) {
      if (const passwd* pw = ::getpwnam("postgres"); pw != nullptr) {
        if (::chown(m_dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
          throw std::system_error(errno, std::generic_category(), "temp_replica_set: chown " + m_dir.string());
        }
      }
    }
    auto node_options = [&](std::size_t i) {
      temp_cluster_options o;
      o.dir = m_dir / node_name(i);
      o.bin_dir = m_options.bin_dir;
      o.password = m_options.password;
      o.settings = m_options.settings;
      o.start_timeout = m_options.start_timeout;
      o.die_with_parent = m_options.die_with_parent;
      o.replication = true;
      o.name = node_name(i);
      return o;
    };
    m_nodes.push_back(std::make_unique<temp_cluster>(node_options(0)));
    for (std::size_t i = 1; i <= m_options.replicas; ++i) {
      auto o = node_options(i);
      o.standby_of = m_nodes[0]->dsn();
      m_nodes.push_back(std::make_unique<temp_cluster>(std::move(o)));
    }
    for (std::size_t i = 1; i < m_nodes.size(); ++i) wait_streaming(i, 0, m_options.start_timeout);
  } catch (...) {
    while (!m_nodes.empty()) m_nodes.pop_back();
    std::error_code ec;
    fs::remove_all(m_dir, ec);
    throw;
  }
}

temp_replica_set::~temp_replica_set() {
  // Standbys first: the primary's shutdown then waits for no WAL sender.
  while (!m_nodes.empty()) m_nodes.pop_back();
  std::error_code ec;
  fs::remove_all(m_dir, ec);
}

temp_cluster& temp_replica_set::node(std::size_t i) {
  check_node(i, m_nodes.size());
  return *m_nodes[i];
}

const temp_cluster& temp_replica_set::node(std::size_t i) const {
  check_node(i, m_nodes.size());
  return *m_nodes[i];
}

std::string temp_replica_set::dsn() const {
  std::string hosts;
  std::string ports;
  for (const auto& n : m_nodes) {
    if (!hosts.empty()) {
      hosts += ',';
      ports += ',';
    }
    hosts += "127.0.0.1";
    ports += std::to_string(n->port());
  }
  std::string d = fmt::format("host={} port={} user=postgres dbname=postgres", hosts, ports);
  if (!m_options.password.empty()) d += " password=" + dsn_value(m_options.password);
  return d;
}

std::string temp_replica_set::url() const {
  std::string hosts;
  for (const auto& n : m_nodes) {
    if (!hosts.empty()) hosts += ',';
    hosts += fmt::format("127.0.0.1:{}", n->port());
  }
  std::string u = fmt::format("postgresql://{}/postgres?user=postgres", hosts);
  if (!m_options.password.empty()) {
    std::string enc;
    for (const unsigned char c : m_options.password) {
      if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
        enc += static_cast<char>(c);
      } else {
        enc += fmt::format("%{:02X}", c);
      }
    }
    u += "&password=" + enc;
  }
  return u;
}

std::string temp_replica_set::admin_dsn(std::size_t i) const {
  std::string d = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres", m_nodes.at(i)->port());
  if (!m_options.password.empty()) d += " password=" + dsn_value(m_options.password);
  return d;
}

void temp_replica_set::promote(std::size_t i) {
  auto& n = node(i);
  const auto wait_s = std::chrono::duration_cast<std::chrono::seconds>(m_options.start_timeout).count();
  auto c = admin_connection(admin_dsn(i));
  if (!c.query_value<bool>(fmt::format("SELECT pg_promote(true, {})", wait_s))) {
    throw std::runtime_error(
        fmt::format("temp_replica_set: node {} was not promoted within {} s:\n{}", i, wait_s, n.log_tail()));
  }
  std::string err;
  if (!poll_until([&] { return !admin_connection(admin_dsn(i)).query_value<bool>("SELECT pg_is_in_recovery()"); },
                  m_options.start_timeout, err)) {
    throw std::runtime_error(
        fmt::format("temp_replica_set: node {} is still in recovery after pg_promote ({})", i, err));
  }
  // The control file names the new timeline only after a checkpoint (pg_rewind and
  // pg_control_checkpoint() read it there).
  (void)admin_connection(admin_dsn(i)).execute("CHECKPOINT");
  m_primary = i;
}

void temp_replica_set::pause_replay(std::size_t i) {
  auto c = admin_connection(admin_dsn(i));
  (void)c.execute("SELECT pg_wal_replay_pause()");
  std::string err;
  if (!poll_until([&] { return c.query_value<std::string>("SELECT pg_get_wal_replay_pause_state()") == "paused"; },
                  m_options.start_timeout, err)) {
    throw std::runtime_error(fmt::format("temp_replica_set: replay on node {} did not pause ({})", i, err));
  }
}

void temp_replica_set::resume_replay(std::size_t i) {
  auto c = admin_connection(admin_dsn(i));
  (void)c.execute("SELECT pg_wal_replay_resume()");
  std::string err;
  if (!poll_until([&] { return c.query_value<std::string>("SELECT pg_get_wal_replay_pause_state()") == "not paused"; },
                  m_options.start_timeout, err)) {
    throw std::runtime_error(fmt::format("temp_replica_set: replay on node {} did not resume ({})", i, err));
  }
}

void temp_replica_set::stop(std::size_t i) { node(i).stop(); }

void temp_replica_set::start(std::size_t i) { node(i).start(); }

void temp_replica_set::kill(std::size_t i) { node(i).kill(); }

void temp_replica_set::wait_caught_up(std::size_t i, std::chrono::milliseconds timeout) {
  (void)node(i);
  const auto until = clock_type::now() + timeout;
  // The upstream: the node whose port the WAL receiver streams from, else the primary.
  std::size_t upstream = m_primary;
  {
    auto c = admin_connection(admin_dsn(i));
    const auto port = c.query_value<std::optional<int>>(
        "SELECT max(sender_port) FROM pg_stat_wal_receiver WHERE status = 'streaming'");
    for (std::size_t k = 0; port && k < m_nodes.size(); ++k) {
      if (m_nodes[k]->port() == *port) upstream = k;
    }
  }
  if (upstream == i) throw std::runtime_error(fmt::format("temp_replica_set: node {} is not a standby", i));
  const auto target = admin_connection(admin_dsn(upstream))
                          .query_value<std::string>(
                              "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                              "ELSE pg_current_wal_lsn() END::text");
  std::string err;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now());
  std::optional<connection> c;
  if (!poll_until(
          [&] {
            if (!c) c.emplace(admin_connection(admin_dsn(i)));
            try {
              return c->query_value<std::optional<bool>>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target)
                  .value_or(false);
            } catch (...) {
              c.reset();
              throw;
            }
          },
          std::max(left, std::chrono::milliseconds(0)), err)) {
    throw std::runtime_error(
        fmt::format("temp_replica_set: node {} did not replay up to {} of node {} within {} ms{}:\n{}", i, target,
                    upstream, timeout.count(), err.empty() ? "" : " (" + err + ")", m_nodes[i]->log_tail(3000)));
  }
}

void temp_replica_set::wait_streaming(std::size_t i, std::size_t j, std::chrono::milliseconds timeout) {
  (void)node(i);
  (void)node(j);
  std::string err;
  const bool ok = poll_until(
      [&] {
        auto up = admin_connection(admin_dsn(j));
        if (up.query_value<std::int64_t>(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
                node_name(i)) == 0) {
          return false;
        }
        return admin_connection(admin_dsn(i)).query_value<bool>("SELECT pg_is_in_recovery()");
      },
      timeout, err);
  if (!ok) {
    throw std::runtime_error(fmt::format("temp_replica_set: node {} does not stream from node {} after {} ms{}:\n{}", i,
                                         j, timeout.count(), err.empty() ? "" : " (" + err + ")",
                                         m_nodes[i]->log_tail(2000)));
  }
}

void temp_replica_set::make_replica_of(std::size_t i, std::size_t j) {
  auto& n = node(i);
  (void)node(j);
  if (i == j) throw std::invalid_argument("temp_replica_set: a node cannot replicate from itself");
  bool in_recovery = false;
  if (n.running()) {
    try {
      in_recovery = admin_connection(admin_dsn(i)).query_value<bool>("SELECT pg_is_in_recovery()");
    } catch (const error&) {
    }
  }
  if (in_recovery) {
    // A standby follows a new upstream without a restart (primary_conninfo is reloadable, and
    // recovery_target_timeline 'latest' follows a promotion) unless its history diverged,
    // which its startup process reports in the log.
    const std::size_t log_before = n.log_tail(std::string::npos).size();
    auto c = admin_connection(admin_dsn(i));
    (void)c.execute("ALTER SYSTEM SET primary_conninfo = " + sql_literal(admin_dsn(j)));
    (void)c.execute("SELECT pg_reload_conf()");
    bool diverged = false;
    std::string err;
    const bool follows = poll_until(
        [&] {
          const std::string log = n.log_tail(std::string::npos);
          if (log.size() > log_before &&
              log.find("forked off current database system timeline", log_before) != std::string::npos) {
            diverged = true;
            return true;
          }
          // Streaming is not enough: a diverged standby streams the old timeline up to the
          // fork point first. It follows once it receives j's timeline.
          const auto upstream_tli = admin_connection(admin_dsn(j)).query_value<std::optional<int>>(k_timeline_sql);
          const auto received_tli = admin_connection(admin_dsn(i))
                                        .query_value<std::optional<int>>(
                                            "SELECT max(received_tli) FROM pg_stat_wal_receiver WHERE status = "
                                            "'streaming' AND sender_port = $1",
                                            m_nodes[j]->port());
          return upstream_tli && received_tli && *upstream_tli == *received_tli;
        },
        std::min<std::chrono::milliseconds>(m_options.start_timeout, 15s), err);
    if (follows && !diverged) return;
  }
  // pg_rewind reads the source's timeline from its control file, which a promotion updates
  // only at the next checkpoint.
  (void)admin_connection(admin_dsn(j)).execute("CHECKPOINT");
  n.rebuild_as_standby_of(admin_dsn(j));
  wait_streaming(i, j, m_options.start_timeout);
}

}  // namespace steadypg::testing
