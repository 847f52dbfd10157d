#include "topology.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "steadypg/observer.hpp"
#include "steadypg/result.hpp"

namespace steadypg::internal {

using namespace std::chrono_literals;

namespace {

constexpr auto fast_interval = 100ms;  // after an error or a change, for fast_window
constexpr auto fast_window = 1s;

}  // namespace

std::string_view probe_query() noexcept {
  // One statement, one round trip. The timeline of a primary is in its current WAL file's
  // name (pg_walfile_name fails during recovery, hence the CASE); a standby reports the
  // timeline it receives, else the one its recovery ends on.
  return "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')::bool, "
         "((CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) "
         "ELSE pg_current_wal_lsn() END) - '0/0'::pg_lsn)::bigint, "
         "extract(epoch FROM pg_last_xact_replay_timestamp())::float8, "
         "extract(epoch FROM clock_timestamp())::float8, "
         "CASE WHEN pg_is_in_recovery() THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), "
         "(SELECT min_recovery_end_timeline FROM pg_control_recovery()), 0) "
         "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END";
}

struct topology::host {
  explicit host(host_spec s) : spec(std::move(s)) {}
  host_spec spec;
  std::unique_ptr<connection> conn;  // the probe's own; only its thread touches it
  probe_sample last;
  bool probed = false;
  bool available = false;
  bool needs_two = false;  // failed since it was last available: two good probes bring it back
  int good_streak = 0;
  bool lagging = false;
  int lag_ok_streak = 0;
  bool suspect_write = false;        // a call got 25006 here; the next probe says what it is
  clock::time_point lsn_moved_at{};  // when its WAL or replay position last changed
  bool wake = false;
  std::optional<double> lag_seconds;
  std::optional<std::int64_t> lag_bytes;
  clock::time_point next_due{};
  clock::time_point fast_until{};
  host_role published = host_role::unknown;
};

topology::topology(std::vector<host_spec> hosts, const cluster_options& options, observer* obs,
                   std::function<void(std::size_t)> on_reachable)
    : m_options(options), m_observer(obs), m_on_reachable(std::move(on_reachable)), m_started(clock::now()) {
  for (auto& spec : hosts) {
    // A probe never waits longer than probe_timeout, and gives a hung server little time for a cancel.
    spec.options.connect_timeout = options.probe_timeout;
    spec.options.query_timeout = options.probe_timeout;
    spec.options.statement_timeout = std::chrono::milliseconds{0};
    spec.options.cancel_timeout = std::min<std::chrono::milliseconds>(options.probe_timeout, 200ms);
    spec.options.cancel_wait = std::min<std::chrono::milliseconds>(options.probe_timeout, 200ms);
    spec.options.statement_cache_capacity = 0;
    m_hosts.push_back(std::make_unique<host>(std::move(spec)));
  }
  auto first = std::make_shared<topology_snapshot>();
  first->hosts.resize(m_hosts.size());
  m_snapshot = std::move(first);
  m_published.store(m_snapshot, std::memory_order_release);
  m_threads.reserve(m_hosts.size());
  for (std::size_t i = 0; i < m_hosts.size(); ++i) m_threads.emplace_back([this, i] { run(i); });
}

topology::~topology() {
  {
    std::lock_guard lk(m_mutex);
    m_stop = true;
  }
  m_wake.notify_all();
  m_changed.notify_all();
  for (auto& t : m_threads) t.join();
}

std::shared_ptr<const topology_snapshot> topology::snapshot() const {
  return m_published.load(std::memory_order_acquire);
}

void topology::run(std::size_t i) {
  host& h = *m_hosts[i];
  std::unique_lock lk(m_mutex);
  while (!m_stop) {
    m_wake.wait_until(lk, h.next_due, [&] { return m_stop || h.wake || clock::now() >= h.next_due; });
    if (m_stop) break;
    h.wake = false;
    lk.unlock();
    probe_sample s = probe(h);
    const bool ok = s.ok;
    if (m_observer) {
      probe_report r;
      r.host_index = i;
      r.host = h.spec.label;
      r.duration =
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double, std::milli>(s.probe_ms));
      r.ok = s.ok;
      r.error = s.error;
      m_observer->on_host_probed(r);
    }
    std::vector<std::function<void()>> events;
    lk.lock();
    apply(i, std::move(s));
    publish(events);
    const auto now = clock::now();
    h.next_due = now + (now < h.fast_until ? std::chrono::milliseconds(fast_interval) : m_options.probe_interval);
    lk.unlock();
    for (auto& e : events) e();
    if (ok && m_on_reachable) m_on_reachable(i);
    lk.lock();
  }
}

probe_sample topology::probe(host& h) {
  probe_sample s;
  const auto t0 = clock::now();
  try {
    if (h.conn && h.conn->is_broken()) h.conn.reset();
    if (!h.conn) h.conn = std::make_unique<connection>(h.spec.options);
    auto r = h.conn->execute(statement{probe_query()}.unprepared());
    auto [recovery, read_only, lsn, replay, now, timeline] =
        r[0].as<bool, bool, std::int64_t, std::optional<double>, double, int>();
    s.in_recovery = recovery;
    s.read_only = read_only;
    s.lsn = static_cast<std::uint64_t>(std::max<std::int64_t>(lsn, 0));
    s.replay_epoch = replay;
    s.now_epoch = now;
    s.timeline = timeline;
    s.ok = true;
  } catch (const std::exception& e) {
    s.error = e.what();
    if (h.conn) h.conn.reset();  // the next probe connects afresh
  }
  s.probe_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  return s;
}

void topology::apply(std::size_t i, probe_sample s) {
  host& h = *m_hosts[i];
  const auto now = clock::now();
  h.probed = true;
  if (!s.ok) {
    h.available = false;
    h.needs_two = true;
    h.good_streak = 0;
    h.fast_until = now + fast_window;
    h.last.ok = false;
    h.last.error = std::move(s.error);
    h.last.probe_ms = s.probe_ms;
    h.lag_seconds.reset();
    h.lag_bytes.reset();
    return;
  }
  h.suspect_write = false;
  ++h.good_streak;
  if (!h.available && h.good_streak >= (h.needs_two ? 2 : 1)) {
    h.available = true;
    h.needs_two = false;
  }
  if (!h.last.ok || s.lsn != h.last.lsn || h.lsn_moved_at == clock::time_point{}) h.lsn_moved_at = now;
  h.last = std::move(s);
  h.lag_seconds.reset();
  h.lag_bytes.reset();
  if (!h.last.in_recovery) {
    h.lagging = false;
    h.lag_ok_streak = 0;
    return;
  }
  // The reference is the writable host with the highest timeline, else the freshest replica.
  const probe_sample* ref = nullptr;
  for (const auto& o : m_hosts) {
    if (!o->available || !o->last.ok || o->last.in_recovery || o->last.read_only) continue;
    if (ref == nullptr || o->last.timeline > ref->timeline) ref = &o->last;
  }
  if (ref == nullptr) {
    for (const auto& o : m_hosts) {
      if (!o->available || !o->last.ok || !o->last.in_recovery) continue;
      if (ref == nullptr || o->last.lsn > ref->lsn) ref = &o->last;
    }
  }
  if (ref != nullptr) {
    h.lag_bytes = ref->lsn > h.last.lsn ? static_cast<std::int64_t>(ref->lsn - h.last.lsn) : 0;
    if (ref->lsn <= h.last.lsn) {
      h.lag_seconds = 0.0;  // caught up: a quiet database never looks lagged
    } else if (h.last.replay_epoch) {
      h.lag_seconds = std::max(0.0, h.last.now_epoch - *h.last.replay_epoch);
    } else {
      // Behind, and nothing replayed since it started (no replay timestamp yet): as long as
      // its replay position has not moved.
      h.lag_seconds = std::chrono::duration<double>(now - h.lsn_moved_at).count();
    }
  }
  const double limit = std::chrono::duration<double>(m_options.max_replica_lag).count();
  if (limit <= 0) {
    h.lagging = false;
    return;
  }
  if (h.lag_seconds && *h.lag_seconds > limit) {
    h.lagging = true;
    h.lag_ok_streak = 0;
  } else if (h.lagging) {
    if (!h.lag_seconds || *h.lag_seconds < limit / 2) {
      if (++h.lag_ok_streak >= 3) {
        h.lagging = false;
        h.lag_ok_streak = 0;
      }
    } else {
      h.lag_ok_streak = 0;
    }
  }
}

void topology::publish(std::vector<std::function<void()>>& events) {
  auto snap = std::make_shared<topology_snapshot>();
  snap->hosts.resize(m_hosts.size());
  snap->errors.resize(m_hosts.size());
  bool all_probed = true;
  for (std::size_t i = 0; i < m_hosts.size(); ++i) {
    const host& h = *m_hosts[i];
    host_view& v = snap->hosts[i];
    all_probed = all_probed && h.probed;
    if (!h.probed) {
      v.role = host_role::unknown;
    } else if (!h.available) {
      v.role = host_role::unavailable;
    } else if (h.last.in_recovery) {
      v.role = h.lagging ? host_role::lagging : host_role::replica;
    } else if (h.last.read_only || h.suspect_write) {
      v.role = host_role::read_only_primary;
    } else {
      v.role = host_role::primary;
      v.writable = true;
    }
    v.lsn = h.last.ok ? h.last.lsn : 0;
    v.lag_seconds = h.lag_seconds;
    v.lag_bytes = h.lag_bytes;
    v.timeline = h.last.ok ? h.last.timeline : 0;
    v.probe_ms = h.last.probe_ms;
    snap->errors[i] = h.last.ok ? std::string{} : h.last.error;
  }
  for (std::size_t i = 0; i < m_hosts.size(); ++i) snap->hosts[i].last_error = snap->errors[i];
  // The primary: the one writable host; with several (split brain) the highest timeline, and
  // none on a tie.
  int best_timeline = -1;
  bool tie = false;
  for (std::size_t i = 0; i < snap->hosts.size(); ++i) {
    const auto& v = snap->hosts[i];
    if (!v.writable) continue;
    ++snap->primaries;
    if (v.timeline > best_timeline) {
      best_timeline = v.timeline;
      snap->primary = i;
      tie = false;
    } else if (v.timeline == best_timeline) {
      tie = true;
    }
  }
  if (tie) snap->primary.reset();
  snap->initialized = all_probed;
  snap->generation = ++m_generation;

  const auto now = clock::now();
  bool changed = m_snapshot->primary != snap->primary || m_snapshot->primaries != snap->primaries;
  for (std::size_t i = 0; i < m_hosts.size(); ++i) {
    host& h = *m_hosts[i];
    const host_role to = snap->hosts[i].role;
    if (to == h.published) continue;
    const host_role from = h.published;
    h.published = to;
    changed = true;
    if (m_observer == nullptr) continue;
    std::string reason;
    if (to == host_role::unavailable) {
      reason = h.last.error.empty() ? "a call lost its connection" : h.last.error;
    } else if (to == host_role::lagging && h.lag_seconds) {
      reason = fmt::format("replay lag {:.1f} s", *h.lag_seconds);
    } else if (to == host_role::read_only_primary) {
      reason = h.suspect_write ? "a write got 25006 (read-only)" : "not in recovery but read-only";
    }
    events.emplace_back(
        [this, label = h.spec.label, from, to, primaries = snap->primaries, reason = std::move(reason)] {
          topology_change c;
          c.host = label;
          c.from = to_string(from);
          c.to = to_string(to);
          c.primaries = primaries;
          c.reason = reason;
          m_observer->on_topology_changed(c);
        });
  }
  m_snapshot = std::move(snap);
  m_published.store(m_snapshot, std::memory_order_release);
  if (changed) speed_up(now + fast_window);
  m_changed.notify_all();
}

void topology::speed_up(clock::time_point until) {
  const auto soon = clock::now() + fast_interval;
  for (auto& h : m_hosts) {
    h->fast_until = std::max(h->fast_until, until);
    if (h->next_due > soon) h->next_due = soon;
  }
  m_wake.notify_all();
}

std::shared_ptr<const topology_snapshot> topology::wait_for(
    clock::time_point deadline, const std::function<bool(const topology_snapshot&)>& ready) {
  std::unique_lock lk(m_mutex);
  while (true) {
    if (ready(*m_snapshot) || m_stop) return m_snapshot;
    const auto now = clock::now();
    if (now >= deadline) return m_snapshot;
    speed_up(std::min(deadline, now + fast_window));
    m_changed.wait_until(lk, std::min(deadline, now + fast_interval));
  }
}

void topology::report_failure(std::size_t i, std::string_view why) {
  std::vector<std::function<void()>> events;
  {
    std::lock_guard lk(m_mutex);
    host& h = *m_hosts[i];
    if (h.available) {
      h.available = false;
      h.needs_two = true;
      h.good_streak = 0;
      h.last.error.assign(why);
      h.wake = true;
      h.fast_until = clock::now() + fast_window;
      publish(events);
    }
  }
  for (auto& e : events) e();
}

void topology::report_read_only(std::size_t i) {
  std::vector<std::function<void()>> events;
  {
    std::lock_guard lk(m_mutex);
    host& h = *m_hosts[i];
    if (!h.suspect_write) {
      h.suspect_write = true;
      h.wake = true;
      publish(events);
    }
  }
  for (auto& e : events) e();
}

}  // namespace steadypg::internal
