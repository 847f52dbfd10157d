#include "steadypg/batch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "steadypg/client.hpp"
#include "steadypg/pipeline.hpp"
#include "steadypg/transaction.hpp"
#include "check.hpp"
#include "connection_impl.hpp"
#include "error_builder.hpp"

namespace steadypg {

std::string_view to_string(batch_mode m) noexcept {
  switch (m) {
    case batch_mode::independent: return "independent";
    case batch_mode::pipeline: return "pipeline";
    case batch_mode::transaction: return "transaction";
  }
  return "unknown";
}

std::optional<batch_mode> parse_batch_mode(std::string_view name) noexcept {
  for (auto m : {batch_mode::independent, batch_mode::pipeline, batch_mode::transaction}) {
    if (name == to_string(m)) return m;
  }
  return std::nullopt;
}

std::string_view to_string(batch_failure f) noexcept {
  switch (f) {
    case batch_failure::failed: return "failed";
    case batch_failure::rolled_back: return "rolled_back";
    case batch_failure::timed_out: return "timed_out";
    case batch_failure::not_run: return "not_run";
  }
  return "unknown";
}

void batch_options::validate() const {
  using internal::check_range;
  check_range("batch_options.batch_size", batch_size, internal::ranges::batch_size);
  check_range("batch_options.concurrency", concurrency, internal::ranges::batch_concurrency);
  check_range("batch_options.timeout", timeout, internal::ranges::batch_timeout);
}

namespace {

std::string describe_param_list(const void* p) { return describe_params(static_cast<const param_list*>(p)->refs()); }

// What is kept of an error that fails several operations.
struct failure_info {
  std::string sqlstate;
  std::string message;
  outcome result = outcome::fatal;
  bool timeout = false;
};

failure_info info_of(const error& e) {
  return {e.sqlstate(), e.what(), e.outcome(), e.kind() == failure_kind::timeout || e.sqlstate() == "57014"};
}

failure_info info_of(const error& e, outcome o) {
  auto f = info_of(e);
  f.result = o;
  return f;
}

// A login the server refused: every later connect would be refused the same way.
bool is_login_refusal(const error& e) {
  return e.kind() == failure_kind::connect_failed && is_login_rejection(e.sqlstate());
}

// The connection failed in the middle of a pipelined chunk. When the server said why (a
// FATAL message with a SQLSTATE, e.g. 57P01 from pg_terminate_backend) the stream ended
// cleanly: it processed nothing after what it answered, so statements without a result were
// never run. Anything else (a reset socket, a timeout) leaves them in doubt.
bool server_ended_session(const error& e) {
  return !e.sqlstate().empty() && e.kind() != failure_kind::timeout && e.poisons_connection();
}

// Rethrown so that client::run() takes the rest of the chunk to a new connection: nothing
// of what is left was applied.
[[noreturn]] void throw_resumable(const error& e, outcome o) {
  throw internal::error_builder(failure_kind::connection_lost, o)
      .fields(e.server())
      .operation("batch")
      .broken()
      .build<connection_error>(e.what());
}

}  // namespace

// One batch: chunks of batch_size operations taken by up to `concurrency` workers.
class client::batch_run {
 public:
  batch_run(client& c, const batch_options& o, std::size_t count, std::span<const batch_operation> ops,
            const std::function<batch_operation(std::size_t)>* make)
      : m_client(c), m_o(o), m_count(count), m_ops(ops), m_make(make), m_state(count, pending) {
    if (o.keep_results) m_results.resize(count);
  }

  batch_report execute() {
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

 private:
  static constexpr std::uint8_t pending = 0, ok = 1, failed = 2;

  struct worker_state {
    std::vector<batch_error> errors;
    std::vector<batch_operation> storage;  // operations made on demand for the current chunk
    std::vector<char> skip;                // per operation of the chunk: rejected before sending
  };

  // One chunk's operations and which of them were rejected before anything was sent.
  struct chunk_view {
    std::span<const batch_operation> ops;
    const std::vector<char>& skip;
  };

  bool stopped() const noexcept { return m_stop.load(std::memory_order_relaxed); }

  void work(worker_state& w) {
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
        case batch_mode::pipeline: run_pipeline(begin, view, w); break;
        case batch_mode::transaction: run_transaction(chunk, begin, view, w); break;
      }
      progress();
    }
  }

  // Makes (when on demand) and checks the chunk's operations. One that cannot be made or
  // could not be sent as it is (a NUL byte, a wrong parameter count) fails alone, now, with
  // outcome not_sent, and is left out of its chunk.
  std::span<const batch_operation> chunk_ops(std::size_t begin, std::size_t end, worker_state& w) {
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
        internal::connection_impl::check_sql(ops[i].sql());
        internal::connection_impl::check_params(refs);
        if (extended_always || !refs.empty()) {
          internal::check_param_count(internal::placeholder_count(ops[i].sql()), refs.size());
        }
        // Each operation is its own transaction (pipeline) or part of its chunk's (transaction):
        // one that opens or ends a transaction itself would make the report lie.
        if (extended_always && internal::is_transaction_control(ops[i].sql())) {
          throw usage_error(fmt::format("transaction control ({}) is not allowed in a {} mode batch: the batch runs "
                                        "each {} in a transaction of its own",
                                        ops[i].sql().substr(0, 40), to_string(m_o.mode),
                                        m_o.mode == batch_mode::pipeline ? "operation" : "chunk"));
        }
      } catch (const error& e) {
        w.skip[i] = 1;
        fail(w, begin + i, info_of(e, outcome::not_sent));
      }
    }
    return ops;
  }

  // The time left as a client-side timeout; throws timeout_error when none is left (before
  // anything of the step is sent).
  void bound_by_deadline(connection& c) const {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(m_deadline - clock::now());
    // The batch's own deadline, not a server failure: no retry, nothing for the breaker.
    if (left.count() <= 0) {
      throw internal::error_builder(failure_kind::timeout, outcome::not_sent)
          .origin(error_origin::client)
          .operation("batch")
          .build<timeout_error>("the batch timeout passed");
    }
    c.set_query_timeout(left);
  }

  // An open breaker: wait until it lets calls through again rather than failing the rest of
  // the batch at once. False when it will not within the deadline (or is forced open).
  bool wait_for_breaker(bool& counted, std::size_t ops_waiting) {
    const auto at = m_client.breaker().admits_at();
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

  // A refused login stops the whole batch: every other operation would be refused the same way
  // (and repeated attempts can lock the account).
  void abort_on_login_refusal(const error& e) {
    if (!is_login_refusal(e)) return;
    {
      std::lock_guard lk(m_abort_mutex);
      if (m_abort_message.empty()) m_abort_message = fmt::format("not run: the server refused the login: {}", e.what());
    }
    m_stop.store(true, std::memory_order_relaxed);
  }

  // Prepares the statement most of [from, to) share so that the pipeline sends it by name.
  static void warm(connection& c, const chunk_view& v, std::size_t from, std::size_t to) {
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

  void run_independent(std::size_t begin, const chunk_view& v, worker_state& w) {
    for (std::size_t i = 0; i < v.ops.size(); ++i) {
      if (v.skip[i]) continue;
      bool counted = false;
      while (true) {
        if (stopped() || clock::now() >= m_deadline) return;
        const auto& op = v.ops[i];
        const call_info info{"batch", op.sql(), false, false, m_deadline,
                             op.is_call() ? nullptr : &describe_param_list, &op.params()};
        try {
          if (op.is_call()) {
            m_client.run(info, [&](connection& c) {
              const auto before = c.request_count();
              try {
                op.callable()(c);
              } catch (const error& e) {
                throw_call_failure(c, before, e);
              }
            });
            succeed(begin + i, nullptr);
          } else {
            result r = m_client.run(info, [&](connection& c) { return c.execute(op.sql(), op.params()); });
            succeed(begin + i, &r);
          }
        } catch (const circuit_open& e) {
          if (wait_for_breaker(counted, 1)) continue;
          fail(w, begin + i, info_of(e));
        } catch (const error& e) {
          abort_on_login_refusal(e);
          fail(w, begin + i, info_of(e));
        } catch (const std::exception& e) {
          fail(w, begin + i, {"", e.what(), outcome::fatal, false});
        }
        break;
      }
    }
  }

  // A callable inside a pipeline chunk: its own SQL errors are its own failure. It runs in
  // autocommit and must leave no transaction open (what it left open is rolled back).
  void run_call(connection& c, std::size_t index, const batch_operation& op, worker_state& w) {
    const auto before = c.request_count();
    try {
      op.callable()(c);
      if (c.status() == connection_status::in_transaction || c.status() == connection_status::failed_transaction) {
        (void)c.execute("ROLLBACK");
        fail(w, index,
             {"", "the callable left a transaction block open; it was rolled back (in pipeline mode each operation "
                  "runs in autocommit: use transaction mode for a transaction)",
              outcome::rolled_back, false});
        return;
      }
      succeed(index, nullptr);
    } catch (const sql_error& e) {
      if (e.poisons_connection() || !c.is_idle()) throw_call_failure(c, before, e);
      // Statements it ran before the failing one may have committed.
      fail(w, index, c.request_count() > before + 1 ? info_of(e, outcome::indeterminate) : info_of(e));
    } catch (const error& e) {
      throw_call_failure(c, before, e);
    } catch (const std::exception& e) {
      if (!c.is_idle()) throw;
      fail(w, index, {"", e.what(), outcome::fatal, false});
    }
  }

  // A callable failed after it had started (call from a catch block): when its earlier
  // statements ran, what they did is not known to the report (they may have committed), so the
  // failure becomes one a retry must not repeat; otherwise the error goes on as it is.
  [[noreturn]] static void throw_call_failure(const connection& c, std::uint64_t before, const error& e) {
    const bool ran_earlier = c.request_count() > before + 1;
    if (!ran_earlier || e.outcome() == outcome::indeterminate) throw;
    throw internal::error_builder(e.kind() == failure_kind::server_error ? failure_kind::connection_lost : e.kind(),
                                  outcome::indeterminate)
        .fields(e.server())
        .operation("batch")
        .broken(e.poisons_connection())
        .build<connection_error>(
            fmt::format("the callable failed after some of its statements had run: {}", e.what()));
  }

  // Pipeline mode: each statement is sent with its own sync point, so each is its own
  // implicit transaction. A statement has succeeded only when its sync point has been
  // confirmed: its result arrives before the server commits it.
  void run_pipeline(std::size_t begin, const chunk_view& v, worker_state& w) {
    if (stopped()) return;
    const auto& ops = v.ops;
    std::size_t done = 0;  // operations of the chunk with a known outcome; a retry resumes here
    const call_info info{"batch", {}, false, false, m_deadline, nullptr, nullptr};
    bool counted = false;
    while (true) {
      try {
        m_client.run(info, [&](connection& c) {
          while (done < ops.size()) {
            if (v.skip[done]) {
              ++done;
              continue;
            }
            if (ops[done].is_call()) {
              bound_by_deadline(c);
              run_call(c, begin + done, ops[done], w);
              ++done;
              continue;
            }
            std::size_t end = done;
            while (end < ops.size() && !ops[end].is_call()) ++end;
            bound_by_deadline(c);
            warm(c, v, done, end);
            pipeline p(c);
            for (std::size_t i = done; i < end; ++i) {
              if (v.skip[i]) continue;
              try {
                p.send(ops[i].sql(), ops[i].params());
                p.sync();
              } catch (const error& e) {
                // Nothing of this pipeline went out yet (preparing its first statement failed):
                // the chunk can start again elsewhere.
                if (p.pending() == 0 && p.syncs_pending() == 0 && e.outcome() == outcome::not_sent) throw;
                // Nothing can be read back: what was queued may have reached the server.
                mark_in_doubt(w, begin, v, done, i + 1, e);
                done = i + 1;
                if (done < ops.size()) throw_resumable(e, outcome::not_sent);
                throw;
              }
            }
            while (done < end) {
              if (v.skip[done]) {
                ++done;
                continue;
              }
              bool have_result = false;
              std::optional<result> r;
              try {
                try {
                  r.emplace(p.get_result());
                  have_result = true;
                } catch (const sql_error& e) {
                  // The statement failed on its own; its implicit transaction rolled back.
                  fail(w, begin + done, info_of(e));
                  ++done;
                  try {
                    p.await_sync();
                  } catch (const sql_error&) {
                    // Its group was already aborted: nothing more to learn.
                  }
                  continue;
                }
                try {
                  p.await_sync();
                } catch (const sql_error& e) {
                  // Its commit failed at the sync point (a deferred constraint, a serialization
                  // failure): rolled back, and the session goes on.
                  fail(w, begin + done, info_of(e));
                  ++done;
                  continue;
                }
              } catch (const error& e) {
                if (have_result) {
                  fail(w, begin + done,
                       {e.sqlstate(),
                        fmt::format("the connection was lost before the statement's commit was confirmed: {}", e.what()),
                        outcome::indeterminate, e.kind() == failure_kind::timeout});
                  ++done;
                }
                if (server_ended_session(e)) {
                  // The rest never ran: resume it on another connection.
                  if (done < ops.size()) throw_resumable(e, outcome::rolled_back);
                  throw;
                }
                mark_in_doubt(w, begin, v, done, end, e);
                done = end;
                if (done < ops.size()) throw_resumable(e, outcome::not_sent);
                throw;
              }
              succeed(begin + done, &*r);
              ++done;
            }
            p.finish();
          }
        });
      } catch (const circuit_open& e) {
        if (wait_for_breaker(counted, ops.size() - done)) continue;
        fail_rest(w, begin, v, done, info_of(e));
      } catch (const error& e) {
        abort_on_login_refusal(e);
        fail_rest(w, begin, v, done, info_of(e));
      } catch (const std::exception& e) {
        fail_rest(w, begin, v, done, {"", e.what(), outcome::indeterminate, false});
      }
      return;
    }
  }

  // Statements [from, to) of the chunk were sent and nothing is known of them.
  void mark_in_doubt(worker_state& w, std::size_t begin, const chunk_view& v, std::size_t from, std::size_t to,
                     const error& e) {
    const failure_info f{e.sqlstate(),
                         fmt::format("outcome unknown: the connection was lost after the statement was sent: {}",
                                     e.what()),
                         outcome::indeterminate, e.kind() == failure_kind::timeout};
    for (std::size_t i = from; i < to; ++i) {
      if (!v.skip[i]) fail(w, begin + i, f);
    }
  }

  void fail_rest(worker_state& w, std::size_t begin, const chunk_view& v, std::size_t from, const failure_info& f) {
    for (std::size_t i = from; i < v.ops.size(); ++i) {
      if (!v.skip[i]) fail(w, begin + i, f);
    }
  }

  void run_transaction(std::size_t chunk, std::size_t begin, const chunk_view& v, worker_state& w) {
    if (stopped()) return;
    const auto& ops = v.ops;
    std::optional<std::size_t> failed_at;
    failure_info cause;
    std::vector<std::optional<result>> results;
    const call_info info{"batch", {}, false, true, m_deadline, nullptr, nullptr};
    const bool has_calls = std::any_of(ops.begin(), ops.end(), [](const batch_operation& op) { return op.is_call(); });
    std::size_t live = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) live += !v.skip[i];
    if (live == 0) return;
    bool counted = false;
    while (true) {
      try {
        m_client.run(info, [&](connection& c) {
          failed_at.reset();
          results.assign(m_o.keep_results ? ops.size() : 0, std::nullopt);
          if (!has_calls) {
            run_pipelined_transaction(c, v, results, failed_at, cause);
            return;
          }
          steadypg::transaction tx(c);
          for (std::size_t i = 0; i < ops.size(); ++i) {
            if (v.skip[i]) continue;
            try {
              if (ops[i].is_call()) {
                ops[i].callable()(c);
                const auto st = c.status();
                if (st != connection_status::in_transaction && st != connection_status::failed_transaction) {
                  // It committed or rolled back the chunk's transaction itself: what ran before it
                  // may be in the database, what follows would run outside any transaction.
                  throw internal::error_builder(failure_kind::usage, outcome::indeterminate)
                      .operation("batch")
                      .build<indeterminate_commit>(
                          "a callable ended the chunk's transaction itself (COMMIT or ROLLBACK inside a transaction "
                          "mode batch); what ran before it may or may not be in the database");
                }
              } else {
                result r = c.execute(ops[i].sql(), ops[i].params());
                if (m_o.keep_results) results[i] = std::move(r);
              }
            } catch (const sql_error& e) {
              // Serialization failures, deadlocks and lost connections re-run the chunk.
              if (e.outcome() == outcome::rolled_back || e.poisons_connection() || c.is_broken()) throw;
              failed_at = i;
              cause = info_of(e);
              return;  // the transaction rolls back
            }
          }
          tx.commit();
        });
      } catch (const circuit_open& e) {
        if (wait_for_breaker(counted, live)) continue;
        fail_chunk(w, chunk, begin, v, info_of(e));
        return;
      } catch (const error& e) {
        abort_on_login_refusal(e);
        fail_chunk(w, chunk, begin, v, info_of(e));
        return;
      } catch (const std::exception& e) {
        fail_chunk(w, chunk, begin, v, {"", e.what(), outcome::rolled_back, false});
        return;
      }
      break;
    }
    if (!failed_at) {
      for (std::size_t i = 0; i < ops.size(); ++i) {
        if (v.skip[i]) continue;
        succeed(begin + i, m_o.keep_results && results[i] ? &*results[i] : nullptr);
      }
      return;
    }
    const std::size_t culprit = begin + *failed_at;
    const auto culprit_reason = reason_for(cause, batch_failure::failed);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (v.skip[i]) continue;
      if (begin + i == culprit) {
        fail(w, culprit, cause, chunk, culprit, culprit_reason);
      } else {
        // Rolled back with its chunk; when the deadline stopped the chunk, that is its reason.
        fail(w, begin + i,
             {"", fmt::format("rolled back with chunk {}: operation {} failed", chunk, culprit), outcome::rolled_back,
              false},
             chunk, culprit,
             culprit_reason == batch_failure::timed_out ? batch_failure::timed_out : batch_failure::rolled_back);
      }
    }
  }

  // The whole chunk failed with one error and no culprit of its own: rolled back with it
  // unless the error says the commit may have happened.
  void fail_chunk(worker_state& w, std::size_t chunk, std::size_t begin, const chunk_view& v, const failure_info& f) {
    // Stopped by the batch deadline: that is the reason, whatever the outcome.
    if (reason_for(f, batch_failure::failed) == batch_failure::timed_out) {
      for (std::size_t i = 0; i < v.ops.size(); ++i) {
        if (!v.skip[i]) fail(w, begin + i, f, chunk, std::nullopt, batch_failure::timed_out);
      }
      return;
    }
    const auto reason = f.result == outcome::rolled_back ? batch_failure::rolled_back : batch_failure::failed;
    failure_info g = f;
    if (reason == batch_failure::rolled_back && f.result == outcome::rolled_back) {
      g.message = fmt::format("rolled back with chunk {}: {}", chunk, f.message);
    }
    for (std::size_t i = 0; i < v.ops.size(); ++i) {
      if (!v.skip[i]) fail(w, begin + i, g, chunk, std::nullopt, reason);
    }
  }

  // BEGIN, the statements and COMMIT in one round trip. COMMIT's own result arrives only
  // after the commit, so it alone confirms the chunk.
  void run_pipelined_transaction(connection& c, const chunk_view& v, std::vector<std::optional<result>>& results,
                                 std::optional<std::size_t>& failed_at, failure_info& cause) {
    const auto& ops = v.ops;
    bound_by_deadline(c);
    warm(c, v, 0, ops.size());
    std::exception_ptr first_error;
    bool committed = false;
    {
      pipeline p(c);
      p.send("BEGIN");
      for (std::size_t i = 0; i < ops.size(); ++i) {
        if (!v.skip[i]) p.send(ops[i].sql(), ops[i].params());
      }
      p.send("COMMIT");
      p.sync();
      try {
        (void)p.get_result();  // BEGIN
        for (std::size_t i = 0; i <= ops.size(); ++i) {  // the statements, then COMMIT
          if (i < ops.size() && v.skip[i]) continue;
          try {
            result r = p.get_result();
            if (i < ops.size() && m_o.keep_results) results[i] = std::move(r);
            if (i == ops.size() && !first_error) committed = true;
          } catch (const pipeline_aborted&) {
            // Skipped after the first failure.
          } catch (const sql_error& e) {
            if (!first_error) {
              first_error = std::current_exception();
              if (i < ops.size()) failed_at = i;
              cause = info_of(e);
            }
          }
        }
        p.finish();
      } catch (const sql_error&) {
        throw;
      } catch (const error& e) {
        if (committed) return;  // COMMIT answered: the chunk is in, whatever the rest of the stream
        if (first_error && failed_at) return;  // a statement failed: the transaction was aborted
        // No answer to COMMIT. A server that ended the session cleanly never committed;
        // otherwise COMMIT may have been processed.
        if (server_ended_session(e)) throw_resumable(e, outcome::rolled_back);
        throw internal::error_builder(failure_kind::connection_lost, outcome::indeterminate)
            .fields(e.server())
            .operation("batch")
            .broken()
            .build<indeterminate_commit>(fmt::format(
                "connection lost before COMMIT was confirmed; the chunk may or may not have committed: {}", e.what()));
      }
    }
    if (!first_error) return;
    if (!c.is_idle()) (void)c.execute("ROLLBACK");
    try {
      std::rethrow_exception(first_error);
    } catch (const sql_error& e) {
      // Serialization failures and deadlocks re-run the chunk; a failing COMMIT fails it.
      if (e.outcome() == outcome::rolled_back || !failed_at) throw;
    }
  }

  // A failure at or near the deadline (the server's statement_timeout is set a little before
  // it) is the batch's timeout.
  batch_failure reason_for(const failure_info& f, batch_failure reason) const {
    if (reason != batch_failure::failed) return reason;
    const auto now = clock::now();
    const auto margin = std::max<clock::duration>(m_o.timeout / 8, std::chrono::milliseconds(50));
    if (now >= m_deadline || (f.timeout && now >= m_deadline - margin)) return batch_failure::timed_out;
    return reason;
  }

  void succeed(std::size_t index, result* r) {
    m_state[index] = ok;
    m_succeeded.fetch_add(1, std::memory_order_relaxed);
    if (r != nullptr && m_o.keep_results) m_results[index] = std::move(*r);
  }

  void fail(worker_state& w, std::size_t index, const failure_info& f, std::optional<std::size_t> chunk = {},
            std::optional<std::size_t> cause = {}, batch_failure reason = batch_failure::failed) {
    reason = reason_for(f, reason);
    m_state[index] = failed;
    m_failed.fetch_add(1, std::memory_order_relaxed);
    w.errors.push_back({index, f.sqlstate, f.message, reason, f.result, chunk, cause});
    if (m_o.stop_on_error) m_stop.store(true, std::memory_order_relaxed);
  }

  void progress() {
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

  batch_report report(std::vector<worker_state>& states) {
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
      std::string message = aborted ? m_abort_message
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
    st.timed_out = static_cast<std::size_t>(std::count_if(
        r.errors.begin(), r.errors.end(), [](const batch_error& e) { return e.reason == batch_failure::timed_out; }));
    st.unknown = static_cast<std::size_t>(std::count_if(
        r.errors.begin(), r.errors.end(), [](const batch_error& e) { return e.outcome == outcome::indeterminate; }));
    st.breaker_waited = m_breaker_waited.load();
    st.success_rate = m_count == 0 ? 1.0 : static_cast<double>(st.succeeded) / static_cast<double>(m_count);
    st.duration = clock::now() - m_start;
    r.timed_out = st.timed_out > 0;
    r.stopped = m_stop.load();
    r.results = std::move(m_results);
    if (m_client.m_observer) {
      m_client.m_observer->on_batch_finished(
          {to_string(m_o.mode), st.total, st.succeeded, st.failed, st.duration, r.timed_out});
    }
    return r;
  }

  client& m_client;
  const batch_options& m_o;
  std::size_t m_count;
  std::span<const batch_operation> m_ops;
  const std::function<batch_operation(std::size_t)>* m_make;
  std::vector<std::uint8_t> m_state;  // per operation; each index is written by one worker
  std::vector<std::optional<result>> m_results;
  clock::time_point m_start, m_deadline;
  std::atomic<std::size_t> m_next_chunk{0};
  std::atomic<bool> m_stop{false};
  std::atomic<std::size_t> m_succeeded{0}, m_failed{0}, m_breaker_waited{0};
  std::mutex m_make_mutex;
  std::mutex m_progress_mutex;
  std::mutex m_abort_mutex;
  std::string m_abort_message;  // set once, before m_stop, when a login was refused
};

batch_report client::batch_execute(std::span<const batch_operation> ops, const batch_options& options) {
  options.validate();
  return batch_run(*this, options, ops.size(), ops, nullptr).execute();
}

batch_report client::batch_execute(std::span<const batch_operation> ops) {
  return batch_execute(ops, m_options.batch);
}

batch_report client::batch_execute(std::size_t count, const std::function<batch_operation(std::size_t)>& make,
                                   const batch_options& options) {
  options.validate();
  if (!make) throw usage_error("batch_execute needs a function that makes the operations");
  return batch_run(*this, options, count, {}, &make).execute();
}

std::uint64_t client::copy_from(std::string_view table, const std::vector<std::string>& columns,
                                const std::function<void(copy_in&)>& write, copy_format format,
                                const std::function<void(std::uint64_t)>& progress, bool header) {
  const call_info info{"copy", table, false, false, std::nullopt, nullptr, nullptr};
  return run(info, [&](connection& c) {
    copy_in copy(c, table, columns, format, header);
    if (progress) copy.on_progress(progress);
    write(copy);
    return copy.finish();
  });
}

}  // namespace steadypg
