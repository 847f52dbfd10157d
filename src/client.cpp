#include "steadypg/client.hpp"

#include <fmt/format.h>

namespace steadypg {
namespace {

// Opens real connections for the pool and brings returned ones back to idle.
class connection_factory final : public pool_factory<connection> {
 public:
  explicit connection_factory(const client_options& o) : m_options(o) {}

  std::unique_ptr<connection> connect(std::chrono::milliseconds timeout) override {
    connection_options co;
    co.dsn = m_options.dsn;
    co.connect_timeout = timeout;
    co.statement_cache_capacity = static_cast<std::size_t>(m_options.statement_cache_size);
    auto c = std::make_unique<connection>(co);
    if (m_options.statement_timeout.count() > 0) {
      (void)c->execute(fmt::format("SET statement_timeout = {}", m_options.statement_timeout.count()));
    }
    return c;
  }

  bool quick_check(connection& c) noexcept override { return c.check_alive(); }

  bool validate(connection& c, std::chrono::milliseconds timeout) noexcept override {
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

  reset_result reset(connection& c) noexcept override {
    switch (c.status()) {
      case connection_status::idle:
        return reset_result::ok;
      case connection_status::broken:
        return reset_result::broken;
      case connection_status::active:
        return reset_result::failed;
      case connection_status::in_transaction:
      case connection_status::failed_transaction:
        break;
    }
    // Returned inside a transaction block: its work must not leak to the next borrower.
    try {
      (void)c.execute("ROLLBACK");
    } catch (...) {
      return c.is_broken() ? reset_result::broken : reset_result::failed;
    }
    return c.is_idle() ? reset_result::ok : reset_result::failed;
  }

 private:
  client_options m_options;
};

}  // namespace

pool_options pool_options_from(const client_options& o) {
  pool_options p;
  p.min_size = static_cast<std::size_t>(o.pool_min);
  p.max_size = static_cast<std::size_t>(o.pool_max);
  p.acquire_timeout = o.acquire_timeout;
  p.health_check_interval = o.health_check_interval;
  p.connect_timeout = o.connection_timeout;
  return p;
}

client::client(client_options options, observer* obs) : client(options, pool_options_from(options), obs) {}

client::client(client_options options, pool_options pool, observer* obs) : m_options(std::move(options)) {
  m_options.validate();
  m_pool = std::make_unique<pool_type>(std::move(pool), std::make_shared<connection_factory>(m_options), obs);
}

client::~client() = default;

client::pooled_connection client::acquire(const char* context) { return m_pool->acquire(context); }

result client::execute(std::string_view sql, const param_list& params) {
  auto c = acquire("execute");
  return c->execute(sql, params);
}

void client::ping() {
  auto c = acquire("ping");
  c->ping();
}

pool_stats client::pool_statistics() const { return m_pool->stats(); }

}  // namespace steadypg
