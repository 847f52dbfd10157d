// Testing against a real server: steadypg::testing::temp_cluster.
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_cluster.hpp>

#include <iostream>

int main() try {
  //[temp_cluster
  steadypg::testing::temp_cluster cluster;  // initdb + postgres on 127.0.0.1:<free port>
  steadypg::connection db{cluster.dsn()};
  db.execute("CREATE TABLE t (x int)");
  cluster.restart();                         // fault injection: stop(), start(), kill() too
  steadypg::connection again{cluster.dsn()};
  std::cout << "tables after restart: " << again.query_value<int64_t>("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
            << "\n";
  //]  the destructor stops the server and deletes its directory
  return 0;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
