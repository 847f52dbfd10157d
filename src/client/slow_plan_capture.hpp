#pragma once

// Private: the background EXPLAIN of slow calls (observe.explain_slow_queries). The caller's
// thread only queues the statement (bounded; dropped when full or explained within the
// interval); one worker thread EXPLAINs it on a pooled connection and attaches the plan to the
// slow-query record.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "steadypg/observe/slow_queries.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/params.hpp"
#include "steadypg/pool.hpp"

namespace steadypg::internal {

class slow_plan_capture {
 public:
  using clock = std::chrono::steady_clock;
  /// `acquire` lends a connection (the client's pool); `log` receives the plans, and `events`
  /// (if any) hears of each (observer::on_slow_query_plan: the log line).
  slow_plan_capture(std::function<basic_pool<connection>::handle()> acquire, observe::slow_query_log& log,
                    observer* events, std::chrono::milliseconds interval, std::size_t queue_capacity = 16);
  ~slow_plan_capture();
  slow_plan_capture(const slow_plan_capture&) = delete;
  slow_plan_capture& operator=(const slow_plan_capture&) = delete;

  /// Queues `sql` unless it was queued within the interval or the queue is full. Never throws,
  /// never waits for the worker. True when queued.
  bool submit(std::string_view sql, param_list params) noexcept;

  /// Counters (for tests and info).
  [[nodiscard]] std::uint64_t explained() const noexcept;
  [[nodiscard]] std::uint64_t dropped() const noexcept;
  [[nodiscard]] std::uint64_t failed() const noexcept;

 private:
  struct job {
    std::string sql;
    param_list params;
  };
  void loop();

  std::function<basic_pool<connection>::handle()> m_acquire;
  observe::slow_query_log& m_log;
  observer* m_observer;
  std::chrono::milliseconds m_interval;
  std::size_t m_capacity;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  std::deque<job> m_queue;
  std::unordered_map<std::string, clock::time_point> m_last;  // statement → when it was queued
  bool m_stop = false;
  std::uint64_t m_explained = 0;
  std::uint64_t m_dropped = 0;
  std::uint64_t m_failed = 0;
  std::thread m_thread;  // last: started when everything above exists
};

}  // namespace steadypg::internal
