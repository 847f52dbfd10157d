#pragma once

// What a component of the library that runs calls of its own (the batch executor) needs of a
// client, and no more. The client implements it privately (client::runner, src/batch.cpp);
// the component depends on this interface, never on client, so that the arrows go one way:
// client → component.

#include <chrono>
#include <optional>
#include <string_view>

#include "function_ref.hpp"
#include "steadypg/result.hpp"
#include "steadypg/route.hpp"

namespace steadypg {

class connection;
class observer;
class param_list;

namespace internal {

class call_runner {
 public:
  using clock = std::chrono::steady_clock;

  /// One call as the component describes it. It is never treated as idempotent: it is retried
  /// only when the retry rule says nothing of it can have been applied (docs/resilience.md).
  struct call {
    const char* operation;       ///< the name its events and slow-query records carry ("batch")
    std::string_view sql;        ///< the statement for slow-query records; "" when not one statement
    bool transaction;            ///< it runs a whole transaction (retried as client::transaction is)
    clock::time_point deadline;  ///< bounds every attempt, the pool wait and the backoff
    const param_list* params;    ///< rendered into slow-query records with log_parameters; may be null
    std::optional<steadypg::route> route = std::nullopt;  ///< unset: the client's default route
  };

  /// Runs `fn` on a pooled connection through the client's resilience pipeline (breaker,
  /// retries with budget and backoff, deadline, events); throws the final error of the call.
  virtual void run(const call& c, function_ref<void(connection&)> fn) = 0;
  /// The same for a statement: the result's rows count in the call's report.
  virtual result run_statement(const call& c, function_ref<result(connection&)> fn) = 0;
  /// When the client's circuit breaker may let a call through again: now while closed, the
  /// end of the open period while open, nullopt while forced open (circuit_breaker::admits_at()).
  /// For a component that would rather wait for an open breaker than fail at once.
  [[nodiscard]] virtual std::optional<clock::time_point> breaker_admits_at() const = 0;
  /// The client's observer (metrics, the caller's), or nullptr when nobody listens.
  [[nodiscard]] virtual observer* events() const noexcept = 0;

 protected:
  call_runner() = default;
  ~call_runner() = default;
  call_runner(const call_runner&) = default;
  call_runner& operator=(const call_runner&) = default;
};

}  // namespace internal
}  // namespace steadypg
