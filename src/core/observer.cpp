#include "steadypg/observer.hpp"

namespace steadypg {

#define STEADYPG_TEE(call) \
  if (m_a) m_a->call;      \
  if (m_b) m_b->call;

void observer_tee::on_pool_acquired(std::chrono::nanoseconds w) noexcept { STEADYPG_TEE(on_pool_acquired(w)) }
void observer_tee::on_pool_released(std::chrono::nanoseconds u) noexcept { STEADYPG_TEE(on_pool_released(u)) }
void observer_tee::on_pool_connection_created(std::chrono::nanoseconds t) noexcept {
  STEADYPG_TEE(on_pool_connection_created(t))
}
void observer_tee::on_pool_connect_failed(const error& e) noexcept { STEADYPG_TEE(on_pool_connect_failed(e)) }
void observer_tee::on_pool_overloaded() noexcept { STEADYPG_TEE(on_pool_overloaded()) }
void observer_tee::on_pool_scaling(const pool_scaling_report& r) noexcept { STEADYPG_TEE(on_pool_scaling(r)) }
void observer_tee::on_pool_connection_closed(close_reason r) noexcept { STEADYPG_TEE(on_pool_connection_closed(r)) }
void observer_tee::on_pool_acquire_timeout(std::chrono::nanoseconds w) noexcept {
  STEADYPG_TEE(on_pool_acquire_timeout(w))
}
void observer_tee::on_pool_rejected() noexcept { STEADYPG_TEE(on_pool_rejected()) }
void observer_tee::on_pool_leak_suspected(const leak_report& r) noexcept { STEADYPG_TEE(on_pool_leak_suspected(r)) }
void observer_tee::on_retry(const retry_report& r) noexcept { STEADYPG_TEE(on_retry(r)) }
void observer_tee::on_retry_budget_exhausted(std::string_view op) noexcept {
  STEADYPG_TEE(on_retry_budget_exhausted(op))
}
void observer_tee::on_breaker_transition(breaker_state from, breaker_state to) noexcept {
  STEADYPG_TEE(on_breaker_transition(from, to))
}
void observer_tee::on_breaker_rejected() noexcept { STEADYPG_TEE(on_breaker_rejected()) }
void observer_tee::on_cancel_sent() noexcept { STEADYPG_TEE(on_cancel_sent()) }
void observer_tee::on_indeterminate_commit(std::string_view op) noexcept { STEADYPG_TEE(on_indeterminate_commit(op)) }
void observer_tee::on_commit_resolved(const commit_resolution_report& r) noexcept {
  STEADYPG_TEE(on_commit_resolved(r))
}
void observer_tee::on_slow_query_plan(const slow_plan_report& r) noexcept { STEADYPG_TEE(on_slow_query_plan(r)) }
void observer_tee::on_health_changed(health_status from, health_status to) noexcept {
  STEADYPG_TEE(on_health_changed(from, to))
}
void observer_tee::on_topology_changed(const topology_change& change) noexcept {
  STEADYPG_TEE(on_topology_changed(change))
}
void observer_tee::on_host_probed(const probe_report& report) noexcept { STEADYPG_TEE(on_host_probed(report)) }
void observer_tee::on_route_fallback(const route_fallback_report& report) noexcept {
  STEADYPG_TEE(on_route_fallback(report))
}
void observer_tee::on_batch_finished(const batch_summary& b) noexcept { STEADYPG_TEE(on_batch_finished(b)) }
void observer_tee::on_call_finished(const call_report& r) noexcept { STEADYPG_TEE(on_call_finished(r)) }
void observer_tee::on_pooler_suspected(std::string_view evidence) noexcept {
  STEADYPG_TEE(on_pooler_suspected(evidence))
}

#undef STEADYPG_TEE

}  // namespace steadypg
