// Pipeline mode and COPY: many statements with few round trips, and bulk loads.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  steadypg::connection db{steadypg::client_options::from_env().dsn};
  db.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text)");

  //[pipeline
  {
    steadypg::pipeline p{db};
    for (int id : {1, 2, 2, 3}) {
      p.send("INSERT INTO items VALUES ($1, $2)", id, "item " + std::to_string(id));
      p.sync();  // each statement succeeds or fails on its own
    }
    for (int i = 0; i < 4; ++i) {
      try {
        p.get_result();
      } catch (const steadypg::unique_violation& e) {
        std::cout << "statement " << i << " failed: " << e.server().detail << "\n";
      }
      p.await_sync();  // statement i is committed now (or was rolled back)
    }
  }
  //]

  //[copy
  steadypg::copy_in copy{db, "items", {"id", "name"}};
  for (int id = 100; id < 10100; ++id) copy.write_row(id, "bulk\t" + std::to_string(id));
  std::cout << "copied " << copy.finish() << " rows\n";
  //]

  const auto total = db.query_value<int64_t>("SELECT count(*) FROM items");
  std::cout << total << " rows in items\n";
  return total == 10003 ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
