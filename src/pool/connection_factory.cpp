#include "connection_factory.hpp"

#include <algorithm>

namespace steadypg::internal {

std::unique_ptr<connection> connection_factory::connect(std::chrono::milliseconds timeout) {
  connection_options o = m_options;
  o.connect_timeout = std::min(timeout, o.connect_timeout);
  // The private constructor skips validation (done once, with the client's options); it
  // cannot go through make_unique, which is not a friend.
  std::unique_ptr<connection> c(new connection(o, connection::validated{}));
  if (!c->pooler_suspicion().empty() && m_observer != nullptr && !m_pooler_reported.exchange(true)) {
    m_observer->on_pooler_suspected(c->pooler_suspicion());
  }
  return c;
}

bool connection_factory::quick_check(connection& c) noexcept { return c.check_alive(); }

bool connection_factory::validate(connection& c, std::chrono::milliseconds timeout) noexcept {
  const auto saved = c.options().query_timeout;
  c.set_query_timeout(timeout);
  bool ok = true;
  try {
    c.ping();
  } catch (...) {
    ok = false;
  }
  c.set_query_timeout(saved);
  return ok && c.is_idle();
}

std::optional<server_capacity> connection_factory::capacity(connection& c, std::chrono::milliseconds timeout) noexcept {
  const auto saved = c.options().query_timeout;
  c.set_query_timeout(timeout);
  std::optional<server_capacity> out;
  try {
    // reserved_connections exists from PostgreSQL 16 on (missing_ok: NULL before).
    const auto rs = c.execute(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int + "
        "coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0), "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int");
    for (auto [max, reserved, sessions] : rs.rows<int, int, int>()) {
      out = server_capacity{static_cast<std::size_t>(std::max(max, 0)), static_cast<std::size_t>(std::max(reserved, 0)),
                            static_cast<std::size_t>(std::max(sessions, 0))};
    }
  } catch (...) {
    out.reset();
  }
  c.set_query_timeout(saved);
  return out;
}

reset_result connection_factory::reset(connection& c) noexcept {
  switch (c.status()) {
    case connection_status::idle: return reset_result::ok;
    case connection_status::broken: return reset_result::broken;
    case connection_status::active: return reset_result::failed;
    case connection_status::in_transaction:
    case connection_status::failed_transaction: break;
  }
  // Returned inside a transaction block: its work must not leak to the next borrower.
  try {
    (void)c.execute("ROLLBACK");
  } catch (...) {
    return c.is_broken() ? reset_result::broken : reset_result::failed;
  }
  return c.is_idle() ? reset_result::ok : reset_result::failed;
}

}  // namespace steadypg::internal
