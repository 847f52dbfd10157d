#include "batch_executor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <random>
#include <thread>

#include "connection_impl.hpp"
#include "error_builder.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/observer.hpp"

namespace steadypg::internal {

failure_info info_of(const error& e) {
  return {e.sqlstate(), e.what(), e.outcome(), e.kind() == failure_kind::timeout || e.sqlstate() == "57014"};
}

failure_info info_of(const error& e, outcome o) {
  auto f = info_of(e);
  f.result = o;
  return f;
}

bool server_ended_session(const error& e) {
  return !e.sqlstate().empty() && e.kind() != failure_kind::timeout && e.poisons_connection();
}

void throw_resumable(const error& e, outcome o) {
  throw error_builder(failure_kind::connection_lost, o)
      .fields(e.server())
      .operation("batch")
      .broken()
      .build<connection_error>(e.what());
}

namespace {

// A login the server refused: every later connect would be refused the same way.
bool is_login_refusal(const error& e) {
  return e.kind() == failure_kind::connect_failed && is_login_rejection(e.sqlstate());
}

}  // namespace

batch_executor::batch_executor(call_runner& runner, const batch_options& o, std::size_t count,
                               std::span<const batch_operation> ops,
                               const std::function<batch_operation(std::size_t)>* make)
    : m_runner(runner), m_o(o), m_count(count), m_ops(ops), m_make(make), m_state(count, pending) {
  if (o.keep_results) m_results.resize(count);
}

batch_report batch_executor::execute() {
  m_start = clock::now();
  m_deadline = m_start + m_o.timeout;
  const std::size_t chunks = (m_count + m_o.batch_size - 1) / m_o.batch_size;
  const std::size_t workers = std::min(m_o.concurrency, chunks);
  std::vector<worker_state> states(std::max<std::size_t>(workers, 1));
  if (workers > 1) {
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    for (std::size_t i = 1; i < workers; ++i) threads.emplace_back([this, &states, i] { work(states[i]); });
    work(states[0]);
    for (auto& t : threads) t.join();
  } else if (workers == 1) {
    work(states[0]);
  }
  return report(states);
}

void batch_executor::work(worker_state& w) {
  while (!stopped()) {
    const std::size_t chunk = m_next_chunk.fetch_add(1);
    const std::size_t begin = chunk * m_o.batch_size;
    if (begin >= m_count) return;
    if (clock::now() >= m_deadline) return;  // the rest is reported as timed out
    const std::size_t end = std::min(begin + m_o.batch_size, m_count);
    const auto ops = chunk_ops(begin, end, w);
    const chunk_view view{ops, w.skip};
    switch (m_o.mode) {
      case batch_mode::independent: run_independent(begin, view, w); break;
      case batch_mode::pipeline:
        // verify_commit: a lost COMMIT is resolved per chunk, so the chunk is one transaction,
        // run (and resolved) as transaction mode runs it.
        if (m_o.verify_commit) {
          run_transaction(chunk, begin, view, w);
        } else {
          run_pipeline(begin, view, w);
        }
        break;
      case batch_mode::transaction: run_transaction(chunk, begin, view, w); break;
    }
    progress();
  }
}

std::span<const batch_operation> batch_executor::chunk_ops(std::size_t begin, std::size_t end, worker_state& w) {
  const std::size_t n = end - begin;
  w.skip.assign(n, 0);
  std::span<const batch_operation> ops;
  if (m_make == nullptr) {
    ops = m_ops.subspan(begin, n);
  } else {
    w.storage.clear();
    w.storage.reserve(n);
    std::lock_guard lk(m_make_mutex);
    for (std::size_t i = begin; i < end; ++i) {
      try {
        w.storage.push_back((*m_make)(i));
      } catch (const std::exception& e) {
        w.storage.push_back(batch_operation::call([](connection&) {}, "unmade"));
        w.skip[i - begin] = 1;
        fail(w, i, {"", fmt::format("could not make the operation: {}", e.what()), outcome::not_sent, false});
      }
    }
    ops = w.storage;
  }
  // Pipelined statements always go through the extended protocol, which binds exactly
  // $1…$n; independent ones without parameters may be several statements (simple protocol).
  const bool extended_always = m_o.mode != batch_mode::independent;
  for (std::size_t i = 0; i < n; ++i) {
    if (w.skip[i] || ops[i].is_call()) continue;
    try {
      const auto refs = ops[i].params().refs();
      connection_impl::check_sql(ops[i].sql());
      connection_impl::check_params(refs);
      if (extended_always || !refs.empty()) {
        check_param_count(placeholder_count(ops[i].sql()), refs.size());
      }
      // Each operation is its own transaction (pipeline) or part of its chunk's (transaction):
      // one that opens or ends a transaction itself would make the report lie.
      if (extended_always && is_transaction_control(ops[i].sql())) {
        throw usage_error(
            fmt::format("transaction control ({}) is not allowed in a {} mode batch: the batch runs "
                        "each {} in a transaction of its own",
                        ops[i].sql().substr(0, 40), to_string(m_o.mode),
                        m_o.mode == batch_mode::pipeline && !m_o.verify_commit ? "operation" : "chunk"));
      }
    } catch (const error& e) {
      w.skip[i] = 1;
      fail(w, begin + i, info_of(e, outcome::not_sent));
    }
  }
  return ops;
}

void batch_executor::bound_by_deadline(connection& c) const {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(m_deadline - clock::now());
  // The batch's own deadline, not a server failure: no retry, nothing for the breaker.
  if (left.count() <= 0) {
    throw error_builder(failure_kind::timeout, outcome::not_sent)
        .origin(error_origin::client)
        .operation("batch")
        .build<timeout_error>("the batch timeout passed");
  }
  c.set_query_timeout(left);
}

bool batch_executor::wait_for_breaker(bool& counted, std::size_t ops_waiting) {
  const auto at = m_runner.breaker_admits_at();
  if (!at || *at >= m_deadline) return false;
  if (!counted) {
    counted = true;
    m_breaker_waited.fetch_add(ops_waiting, std::memory_order_relaxed);
  }
  // Spread the workers a little so that they do not all knock at once.
  static thread_local std::minstd_rand jitter{std::random_device{}()};
  const auto until = *at + std::chrono::milliseconds(jitter() % 20);
  while (!stopped()) {
    const auto now = clock::now();
    if (now >= until) return now < m_deadline;
    std::this_thread::sleep_for(std::min<clock::duration>(until - now, std::chrono::milliseconds(100)));
  }
  return false;
}

void batch_executor::abort_on_login_refusal(const error& e) {
  if (!is_login_refusal(e)) return;
  {
    std::lock_guard lk(m_abort_mutex);
    if (m_abort_message.empty()) m_abort_message = fmt::format("not run: the server refused the login: {}", e.what());
  }
  m_stop.store(true, std::memory_order_relaxed);
}

void batch_executor::warm(connection& c, const chunk_view& v, std::size_t from, std::size_t to) {
  std::size_t first = from;
  while (first < to && v.skip[first]) ++first;
  if (to - first < 2) return;
  const auto& sql = v.ops[first].sql();
  std::size_t same = 0;
  for (std::size_t i = first; i < to; ++i) same += !v.skip[i] && v.ops[i].sql() == sql;
  if (same * 2 < to - first) return;
  try {
    c.prepare(sql, v.ops[first].params());
  } catch (const sql_error& e) {
    if (e.poisons_connection() || !c.is_idle()) throw;
    // A statement the server rejects fails per operation below.
  }
}

void batch_executor::throw_call_failure(const connection& c, std::uint64_t before, const error& e) {
  const bool ran_earlier = c.request_count() > before + 1;
  if (!ran_earlier || e.outcome() == outcome::indeterminate) throw;
  throw error_builder(e.kind() == failure_kind::server_error ? failure_kind::connection_lost : e.kind(),
                      outcome::indeterminate)
      .fields(e.server())
      .operation("batch")
      .broken(e.poisons_connection())
      .build<connection_error>(fmt::format("the callable failed after some of its statements had run: {}", e.what()));
}

batch_failure batch_executor::reason_for(const failure_info& f, batch_failure reason) const {
  if (reason != batch_failure::failed) return reason;
  const auto now = clock::now();
  const auto margin = std::max<clock::duration>(m_o.timeout / 8, std::chrono::milliseconds(50));
  if (now >= m_deadline || (f.timeout && now >= m_deadline - margin)) return batch_failure::timed_out;
  return reason;
}

void batch_executor::succeed(std::size_t index, result* r) {
  m_state[index] = ok;
  m_succeeded.fetch_add(1, std::memory_order_relaxed);
  if (r != nullptr && m_o.keep_results) m_results[index] = std::move(*r);
}

void batch_executor::fail(worker_state& w, std::size_t index, const failure_info& f, std::optional<std::size_t> chunk,
                          std::optional<std::size_t> cause, batch_failure reason) {
  reason = reason_for(f, reason);
  m_state[index] = failed;
  m_failed.fetch_add(1, std::memory_order_relaxed);
  w.errors.push_back({index, f.sqlstate, f.message, reason, f.result, chunk, cause});
  if (m_o.stop_on_error) m_stop.store(true, std::memory_order_relaxed);
}

void batch_executor::progress() {
  if (!m_o.on_progress) return;
  std::lock_guard lk(m_progress_mutex);
  batch_progress p;
  p.total = m_count;
  p.succeeded = m_succeeded.load(std::memory_order_relaxed);
  p.failed = m_failed.load(std::memory_order_relaxed);
  // Both counters only grow, and reads under the mutex are ordered: processed never decreases.
  p.processed = p.succeeded + p.failed;
  m_o.on_progress(p);
}

batch_report batch_executor::report(std::vector<worker_state>& states) {
  batch_report r;
  const bool timed_out = clock::now() >= m_deadline;
  std::size_t errors = 0;
  for (const auto& s : states) errors += s.errors.size();
  r.errors.reserve(errors);
  for (auto& s : states) std::move(s.errors.begin(), s.errors.end(), std::back_inserter(r.errors));
  std::size_t not_started = 0;
  const bool aborted = !m_abort_message.empty();
  for (std::size_t i = 0; i < m_count; ++i) {
    if (m_state[i] != pending) continue;
    ++not_started;
    const auto reason = (m_stop.load() && !timed_out) || aborted ? batch_failure::not_run : batch_failure::timed_out;
    std::string message = aborted                            ? m_abort_message
                          : reason == batch_failure::not_run ? "not run: an earlier operation failed"
                                                             : "not run: the batch timeout passed";
    r.errors.push_back({i, "", std::move(message), reason, outcome::not_sent, std::nullopt, std::nullopt});
  }
  std::sort(r.errors.begin(), r.errors.end(),
            [](const batch_error& a, const batch_error& b) { return a.index < b.index; });
  auto& st = r.stats;
  st.total = m_count;
  st.succeeded = m_succeeded.load();
  st.failed = m_count - st.succeeded;
  st.processed = m_count - not_started;
  st.timed_out = static_cast<std::size_t>(std::count_if(r.errors.begin(), r.errors.end(), [](const batch_error& e) {
    return e.reason == batch_failure::timed_out;
  }));
  st.unknown = static_cast<std::size_t>(std::count_if(r.errors.begin(), r.errors.end(), [](const batch_error& e) {
    return e.outcome == outcome::indeterminate;
  }));
  st.breaker_waited = m_breaker_waited.load();
  st.resolved_committed = m_resolved_committed.load();
  st.resolved_aborted = m_resolved_aborted.load();
  st.success_rate = m_count == 0 ? 1.0 : static_cast<double>(st.succeeded) / static_cast<double>(m_count);
  st.duration = clock::now() - m_start;
  r.timed_out = st.timed_out > 0;
  r.stopped = m_stop.load();
  r.results = std::move(m_results);
  if (auto* events = m_runner.events()) {
    events->on_batch_finished({to_string(m_o.mode), st.total, st.succeeded, st.failed, st.duration, r.timed_out});
  }
  return r;
}

}  // namespace steadypg::internal
