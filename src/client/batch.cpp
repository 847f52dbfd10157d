#include "steadypg/batch.hpp"

#include "steadypg/client.hpp"
#include "batch_executor.hpp"
#include "call_runner.hpp"
#include "check.hpp"

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

// The client as the batch executor sees it: its pipeline, its breaker's schedule, its observer.
class client::runner final : public internal::call_runner {
 public:
  explicit runner(client& c) noexcept : m_client(c) {}

  void run(const call& c, internal::function_ref<void(connection&)> fn) override { m_client.run(info_of(c), fn); }
  result run_statement(const call& c, internal::function_ref<result(connection&)> fn) override {
    return m_client.run(info_of(c), fn);
  }
  std::optional<clock::time_point> breaker_admits_at() const override {
    return m_client.primary_slot().breaker->admits_at();
  }
  observer* events() const noexcept override { return m_client.m_observer; }

 private:
  static call_info info_of(const call& c) noexcept {
    return {c.operation, c.sql,  false, c.transaction, c.deadline, c.params ? &describe_param_list : nullptr,
            c.params,    c.route};
  }

  client& m_client;
};

batch_report client::batch_execute(std::span<const batch_operation> ops, const batch_options& options) {
  options.validate();
  runner r(*this);
  return internal::batch_executor(r, options, ops.size(), ops, nullptr).execute();
}

batch_report client::batch_execute(std::span<const batch_operation> ops) { return batch_execute(ops, m_options.batch); }

batch_report client::batch_execute(std::size_t count, const std::function<batch_operation(std::size_t)>& make,
                                   const batch_options& options) {
  options.validate();
  if (!make) throw usage_error("batch_execute needs a function that makes the operations");
  runner r(*this);
  return internal::batch_executor(r, options, count, {}, &make).execute();
}

}  // namespace steadypg
