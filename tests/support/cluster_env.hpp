#pragma once

// One throwaway PostgreSQL per test binary, unless STEADYPG_TEST_DSN points at a server.

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

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

}  // namespace steadypg::test
