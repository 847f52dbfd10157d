#include "cluster_env.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new steadypg::test::cluster_environment);
  return RUN_ALL_TESTS();
}
