// A tiny program using steadypg as an installed or vendored package: starts a throwaway
// server, runs a parameterized query and prints the answer.
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_cluster.hpp>

#include <iostream>

int main() {
  steadypg::testing::temp_cluster cluster;
  steadypg::connection db{cluster.dsn()};
  const auto answer = db.query_value<int>("SELECT $1::int + $2::int", 40, 2);
  std::cout << "steadypg " << steadypg::version << " answer=" << answer << "\n";
  return answer == 42 ? 0 : 1;
}
