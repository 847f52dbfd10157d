// The README example: connect from the environment, bind parameters, read typed rows.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  //[basic
  auto opts = steadypg::client_options::from_env();  // DATABASE_URL, POSTGRESQL_*
  steadypg::client db{opts};                          // a pool of connections, borrowed per call
  db.execute("CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, name text, age int)");
  db.execute("INSERT INTO users VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT DO NOTHING", 1, "Ada", 36, 2, "Linus", 54);
  auto n = db.query_value<int64_t>("SELECT count(*) FROM users WHERE age > $1", 40);
  auto rs = db.execute("SELECT id, name FROM users WHERE id = ANY($1) ORDER BY id", std::vector<int>{1, 2});
  for (auto [id, name] : rs.rows<int, std::string>()) std::cout << id << " " << name << "\n";
  std::cout << n << " user(s) over 40\n";
  //]
  return n == 1 ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
