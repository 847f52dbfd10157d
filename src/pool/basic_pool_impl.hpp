#pragma once

// The implementation of basic_pool<Conn> (include/steadypg/pool.hpp). Not installed: the
// library instantiates basic_pool<connection> in src/pool/basic_pool.cpp, and the unit tests and
// the pool bench include this header to instantiate the pool with fake connections. It uses
// fmt, so every target that includes it links fmt::fmt.

#include <memory>
#include <utility>

#include "pool_autoscale.hpp"
#include "pool_maintenance.hpp"
#include "pool_state.hpp"
#include "steadypg/pool.hpp"

namespace steadypg {

// ---- basic_pool --------------------------------------------------------------------------

template <typename Conn>
basic_pool<Conn>::basic_pool(pool_options options, std::shared_ptr<pool_factory<Conn>> factory, observer* obs,
                             time_source now) {
  auto st = std::make_unique<state>(std::move(options), std::move(factory), obs, std::move(now));
  st->start_maintenance();
  st->start_controller();
  // From here the state is freed by the last of ~basic_pool and the handles still out (see
  // the ownership note above basic_pool::state), not by a smart pointer.
  m_state = st.release();
}

template <typename Conn>
basic_pool<Conn>::~basic_pool() {
  m_state->shutdown();
}

template <typename Conn>
auto basic_pool<Conn>::acquire(const char* context) -> handle {
  const auto start = clock::now();
  slot* s = m_state->acquire(start, start + m_state->m_options.acquire_timeout, context);
  return handle(s, s->conn.get());
}

template <typename Conn>
auto basic_pool<Conn>::acquire_until(clock::time_point deadline, const char* context) -> handle {
  slot* s = m_state->acquire(clock::now(), deadline, context);
  return handle(s, s->conn.get());
}

template <typename Conn>
pool_stats basic_pool<Conn>::stats() const {
  return m_state->snapshot();
}

template <typename Conn>
const pool_options& basic_pool<Conn>::options() const noexcept {
  return m_state->m_options;
}

template <typename Conn>
void basic_pool<Conn>::maintain() {
  m_state->maintain_once();
}

template <typename Conn>
void basic_pool<Conn>::release_slot(slot* s) noexcept {
  s->owner->release(*s);
}

template <typename Conn>
std::uint64_t basic_pool<Conn>::handle::id() const noexcept {
  return m_slot ? m_slot->id.load(std::memory_order_relaxed) : 0;
}

}  // namespace steadypg
