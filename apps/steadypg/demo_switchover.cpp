// `steadypg demo`, step 7: a primary and a replica behind one multi-host client; the primary
// is switched over under load. Reads go to the replica and never stop, writes wait for the new
// primary, and no acknowledged write is lost.

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "demo.hpp"
#include "steadypg/testing/temp_replica_set.hpp"

namespace steadypg::cli::demo_parts {

namespace {

// Successful reads and writes per host in the current tick.
class host_ticks final : public observer {
 public:
  void on_call_finished(const call_report& r) noexcept override {
    if (r.failure != nullptr || r.host_index < 0 || r.host_index > 1) return;
    auto& slot = r.operation == "write" ? m_writes : m_reads;
    slot[static_cast<std::size_t>(r.host_index)].fetch_add(1, std::memory_order_relaxed);
  }
  std::array<std::uint64_t, 2> take_reads() { return take(m_reads); }
  std::array<std::uint64_t, 2> take_writes() { return take(m_writes); }

 private:
  static std::array<std::uint64_t, 2> take(std::array<std::atomic<std::uint64_t>, 2>& a) {
    return {a[0].exchange(0), a[1].exchange(0)};
  }
  std::array<std::atomic<std::uint64_t>, 2> m_reads{}, m_writes{};
};

}  // namespace

void demo::step_switchover() {
  m_out.step(7, "Switchover: a primary and a replica; the primary is switched over under load",
             "Reads go to the replica and never stop; writes wait for the new primary; no acknowledged write is lost.");
  if (!m_cluster) {
    m_out.line("skipped: this needs embedded servers (the demo never stops a server it did not start)");
    m_report["switchover"] = {{"skipped", true}};
    return;
  }
  const auto t_setup = clock_type::now();
  testing::temp_replica_set_options so;
  so.replicas = 1;
  so.settings = {{"max_connections", "40"}};
  testing::temp_replica_set set(so);
  const std::string p0 = fmt::format("127.0.0.1:{}", set.node(0).port());
  const std::string p1 = fmt::format("127.0.0.1:{}", set.node(1).port());
  m_out.line(fmt::format("started a primary on {} and a streaming replica on {} in {:.1f} s", p0, p1,
                         ms_between(t_setup, clock_type::now()) / 1000.0));
  host_ticks ticks;
  observer_tee events(&m_log_observer, &ticks);
  client_options o = m_options;
  o.dsn = set.dsn();
  o.pool.min_size = 0;
  o.cluster.probe_interval = std::chrono::milliseconds(250);
  client db(o, &events);
  (void)db.execute("CREATE TABLE demo_writes (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");
  // Reads carry the token of the CREATE: a replica serves them once it has the table.
  const write_token created = db.commit_token();
  const auto topo = db.topology();
  m_out.line(
      fmt::format("topology: {} {}, {} {}", p0, to_string(topo.hosts[0].role), p1, to_string(topo.hosts[1].role)));

  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> next_id{1};
  std::mutex mu;
  std::set<std::int64_t> acked, unknown;
  std::uint64_t read_errors = 0, write_failures = 0;
  std::string first_read_error;
  clock_type::time_point last_ack{};
  double longest_write_gap_ms = 0;
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&] {
      while (!stop) {
        const auto id = next_id.fetch_add(1);
        try {
          (void)db.execute(statement{"INSERT INTO demo_writes (id) VALUES ($1)"}.name("write").timeout(
                               std::chrono::milliseconds(3000)),
                           id);
          std::lock_guard lk(mu);
          const auto now = clock_type::now();
          if (last_ack != clock_type::time_point{}) {
            longest_write_gap_ms = std::max(longest_write_gap_ms, ms_between(last_ack, now));
          }
          last_ack = now;
          acked.insert(id);
        } catch (const error& e) {
          std::lock_guard lk(mu);
          if (e.outcome() == outcome::indeterminate || e.is_indeterminate_commit()) {
            unknown.insert(id);
          } else {
            ++write_failures;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  }
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&] {
      while (!stop) {
        try {
          (void)db.execute(
              statement{"SELECT count(*) FROM demo_writes"}.route(route::prefer_replica).after(created).name("read"));
        } catch (const error& e) {
          std::lock_guard lk(mu);
          if (read_errors++ == 0) first_read_error = e.what();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  // The switchover, from this thread (the servers die with the thread that started them):
  // stop the primary cleanly (its WAL reaches the replica first), promote the replica, make
  // the old primary a replica of the new one.
  json_doc timeline = json_doc::array();
  const auto t0 = clock_type::now();
  m_out.line(fmt::format("per second, A = {} (the primary), B = {} (the replica):", p0, p1));
  m_out.line("         reads            writes");
  m_out.line("  t      A       B        A      B     event");
  std::string event;
  bool switched = false, rejoined = false;
  double switch_ms = 0;
  for (int tick = 1; tick <= 9; ++tick) {
    check_interrupted();
    std::this_thread::sleep_until(t0 + std::chrono::seconds(tick));
    if (tick == 3 && !switched) {
      const auto s0 = clock_type::now();
      set.stop(0);
      set.promote(1);
      switch_ms = ms_between(s0, clock_type::now());
      switched = true;
      event = fmt::format("switchover: A stopped, B promoted ({:.0f} ms)", switch_ms);
    } else if (tick == 5 && !rejoined) {
      set.make_replica_of(0, 1);
      rejoined = true;
      event = "A rejoined as a replica of B";
    }
    const auto r = ticks.take_reads();
    const auto w = ticks.take_writes();
    m_out.line(fmt::format("{:>3}s {:>6}  {:>6}   {:>6} {:>6}     {}", tick, r[0], r[1], w[0], w[1], event));
    timeline.push_back({{"t", tick},
                        {"reads", {{p0, r[0]}, {p1, r[1]}}},
                        {"writes", {{p0, w[0]}, {p1, w[1]}}},
                        {"event", event.empty() ? json_doc(nullptr) : json_doc(event)}});
    event.clear();
  }
  stop = true;
  for (auto& t : threads) t.join();
  const auto after = db.topology();
  std::set<std::int64_t> rows;
  for (const auto row : db.execute("SELECT id FROM demo_writes")) rows.insert(row[0].as<std::int64_t>());
  std::size_t lost = 0, committed_unknown = 0;
  for (auto id : acked) lost += rows.count(id) == 0;
  for (auto id : unknown) committed_unknown += rows.count(id);
  m_out.line(fmt::format("topology now: {} {}, {} {}; primary {}", p0, to_string(after.hosts[0].role), p1,
                         to_string(after.hosts[1].role), after.primary ? after.hosts[*after.primary].label : "none"));
  m_out.line(
      fmt::format("writes: {} acknowledged, all {} on the new primary ({} lost); {} in doubt ({} committed); "
                  "{} refused before they were sent; longest wait between acknowledged writes {:.0f} ms",
                  acked.size(), acked.size() - lost, lost, unknown.size(), committed_unknown, write_failures,
                  longest_write_gap_ms));
  m_out.line(fmt::format("reads: {} failed{}", read_errors, read_errors ? " (first: " + first_read_error + ")" : ""));
  expect(lost == 0, "an acknowledged write is missing after the switchover");
  expect(read_errors == 0, "reads failed during the switchover");
  expect(after.primary == std::optional<std::size_t>{1}, "the promoted replica is not the primary");
  m_report["switchover"] = {{"acknowledged", acked.size()},
                            {"lost", lost},
                            {"unknown", unknown.size()},
                            {"unknown_committed", committed_unknown},
                            {"refused", write_failures},
                            {"read_errors", read_errors},
                            {"longest_write_gap_ms", std::lround(longest_write_gap_ms)},
                            {"switch_ms", std::lround(switch_ms)},
                            {"primary_after", after.primary ? json_doc(after.hosts[*after.primary].label) : nullptr},
                            {"timeline", timeline}};
}

}  // namespace steadypg::cli::demo_parts
