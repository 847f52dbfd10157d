#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "steadypg/connection.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/pool.hpp"

namespace steadypg::internal {

// Opens real connections for a client's pool and brings returned ones back to idle. The
// options were validated once, with the client's; each connect uses them as they are.
class connection_factory final : public pool_factory<connection> {
 public:
  /// `options.dsn` is the client's DSN; `obs` (may be null) hears on_pooler_suspected.
  explicit connection_factory(connection_options options, observer* obs = nullptr)
      : m_options(std::move(options)), m_observer(obs) {}

  std::unique_ptr<connection> connect(std::chrono::milliseconds timeout) override;
  bool quick_check(connection& c) noexcept override;
  bool validate(connection& c, std::chrono::milliseconds timeout) noexcept override;
  reset_result reset(connection& c) noexcept override;
  std::optional<server_capacity> capacity(connection& c, std::chrono::milliseconds timeout) noexcept override;

 private:
  connection_options m_options;
  observer* m_observer;
  std::atomic<bool> m_pooler_reported{false};  // on_pooler_suspected fires once per pool
};

}  // namespace steadypg::internal
