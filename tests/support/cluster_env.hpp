#pragma once

// One throwaway PostgreSQL per test binary, unless STEADYPG_TEST_DSN points at a server.

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "steadypg/config.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/testing/temp_cluster.hpp"

namespace steadypg::test {

class cluster_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* dsn = std::getenv("STEADYPG_TEST_DSN"); dsn && *dsn) {
      s_dsn = dsn;
      return;
    }
    s_cluster = std::make_unique<steadypg::testing::temp_cluster>();
    s_dsn = s_cluster->dsn();
  }
  void TearDown() override { s_cluster.reset(); }

  /// DSN of the server under test.
  static const std::string& dsn() { return s_dsn; }
  /// The embedded cluster, or nullptr when STEADYPG_TEST_DSN is used (fault tests skip then).
  static steadypg::testing::temp_cluster* cluster() { return s_cluster.get(); }

 private:
  static inline std::string s_dsn;
  static inline std::unique_ptr<steadypg::testing::temp_cluster> s_cluster;
};

/// A new connection to the server under test.
inline steadypg::connection connect() { return steadypg::connection(cluster_environment::dsn()); }

/// Options for a client of the server under test: at most `pool_max` connections, retries
/// 10 ms apart (the tests' outages are short).
inline steadypg::client_options client_options_for(std::size_t pool_max) {
  steadypg::client_options o;
  o.dsn = cluster_environment::dsn();
  o.pool.max_size = pool_max;
  o.resilience.retry.base_delay = std::chrono::milliseconds(10);
  return o;
}

}  // namespace steadypg::test
