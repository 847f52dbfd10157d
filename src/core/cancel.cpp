// Cancelling a statement in flight: a cancel request bounded in time on a helper thread, and
// what a client-side timeout does with it (cancel, drain, report).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "connection_impl.hpp"
#include "error_builder.hpp"

namespace steadypg::internal {

namespace {

// PQcancel (libpq 15) blocks without a bound while it connects and waits for the server to
// hang up. Run it on a helper thread and stop waiting at the deadline; the helper owns its
// own PGcancel copy, so it may outlive the connection. At most a few run at once per
// process: beyond that no cancel is sent and the caller drops the connection instead.
std::atomic<int> g_cancels_in_flight{0};
constexpr int k_max_cancels_in_flight = 8;

struct cancel_job {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
};

bool bounded_cancel(PGcancel* handle, std::chrono::milliseconds timeout) {
  if (handle == nullptr) return false;
  if (g_cancels_in_flight.fetch_add(1) >= k_max_cancels_in_flight) {
    g_cancels_in_flight.fetch_sub(1);
    PQfreeCancel(handle);
    return false;
  }
  auto job = std::make_shared<cancel_job>();
  try {
    std::thread([job, handle] {
      char err[256];
      const bool ok = PQcancel(handle, err, sizeof err) == 1;
      PQfreeCancel(handle);
      g_cancels_in_flight.fetch_sub(1);
      std::lock_guard lk(job->mu);
      job->done = true;
      job->ok = ok;
      job->cv.notify_all();
    }).detach();
  } catch (...) {
    g_cancels_in_flight.fetch_sub(1);
    PQfreeCancel(handle);
    return false;
  }
  std::unique_lock lk(job->mu);
  job->cv.wait_for(lk, timeout, [&] { return job->done; });
  return job->done && job->ok;
}

}  // namespace

bool connection_impl::send_cancel() noexcept {
  PGcancel* copy = nullptr;
  {
    std::lock_guard lock(cancel_mutex);
    if (conn != nullptr) copy = PQgetCancel(conn);
  }
  return bounded_cancel(copy, options.cancel_timeout);
}

void connection_impl::handle_timeout(std::string_view op, bool can_drain) {
  const auto timeout = options.query_timeout;
  const bool cancelled = send_cancel();
  // Drain: the server answers the cancelled statement with 57014 (or its result).
  bool drained = false;
  bool server_cancelled = false;
  if (cancelled && can_drain) {
    const deadline grace = clock::now() + options.cancel_wait;
    drained = true;
    // In pipeline mode (a statement sent with its settings) results end at the sync point;
    // one NULL ends each statement's results, two in a row mean nothing more is coming.
    int nulls = 0;
    while (true) {
      bool timed_out = false;
      PGresult* raw = next_result(grace, timed_out);
      if (timed_out) {
        drained = false;
        break;
      }
      if (raw == nullptr) {
        if (in_pipeline && ++nulls < 2 && PQstatus(conn) == CONNECTION_OK) continue;
        if (in_pipeline) drained = false;
        break;
      }
      nulls = 0;
      result_ptr r(raw);
      if (in_pipeline && PQresultStatus(raw) == PGRES_PIPELINE_SYNC) break;
      const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
      if (state && sqlstates::query_canceled == state) server_cancelled = true;
      const auto st = PQresultStatus(raw);
      if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        drained = false;
        break;
      }
    }
    if (drained && PQstatus(conn) != CONNECTION_OK) drained = false;
    if (drained && in_pipeline) {
      drained = PQexitPipelineMode(conn) == 1;
      in_pipeline = false;
    }
  }
  auto o = classify_outcome("", failure_kind::timeout, last);
  if (server_cancelled && !last.commit_sent) o = outcome::rolled_back;
  const bool at_deadline = hard_deadline && clock::now() >= *hard_deadline;
  std::string msg = fmt::format("{} timed out {}; {}", op,
                                at_deadline || timeout.count() <= 0 ? std::string("at its deadline")
                                                                    : fmt::format("after {} ms", timeout.count()),
                                drained ? "the statement was cancelled and the connection is idle again"
                                        : "the connection could not be recovered and was closed");
  if (!drained) close();
  throw error_builder(failure_kind::timeout, o)
      .operation(op)
      .broken(!drained)
      .cancel_sent(cancelled)
      .build<timeout_error>(std::move(msg));
}

}  // namespace steadypg::internal
