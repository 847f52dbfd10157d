// One connection: options, executing with parameters, reading typed results.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  //[configuration
  auto opts = steadypg::client_options::from_env();   // throws config_error on a bad value
  opts.pool.max_size = 32;                            // explicit options win over the environment
  opts.resilience.retry.max_retries = 5;              // one tree: connection, pool, resilience, batch, observe
  opts.validate();
  //]
  const std::string dsn = opts.dsn;

  //[connect
  steadypg::connection_options o;
  o.dsn = dsn;                                      // URI or key=value; "" uses libpq's PG* variables
  o.connect_timeout = std::chrono::seconds(3);      // enforced, also for hosts that never answer
  o.query_timeout = std::chrono::seconds(30);       // per statement, client side, with a real cancel
  steadypg::connection db{o};
  //]
  db.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, v text)");
  db.execute("INSERT INTO t VALUES (42, 'old')");
  db.execute("CREATE TEMP TABLE users (id int, name text, email text)");
  db.execute("INSERT INTO users VALUES (1, 'Ada', 'ada@example.org'), (2, 'Linus', NULL)");

  //[execute
  db.execute("UPDATE t SET v = $1 WHERE id = $2", "x", 42);   // parameters bind by type
  auto n = db.query_value<int64_t>("SELECT count(*) FROM t");  // exactly one row × one column
  auto st = steadypg::statement{"SELECT v FROM t WHERE id = $1"}.idempotent().name("get_v");
  auto v = db.execute(st, 42).as<std::string>();
  //]
  std::cout << n << " row, v = " << v << "\n";

  //[results
  auto rs = db.execute("SELECT id, name, email FROM users ORDER BY id");
  for (auto [id, name, email] : rs.rows<int, std::string, std::optional<std::string>>()) {
    std::cout << id << " " << name << " " << email.value_or("(no email)") << "\n";
  }
  std::cout << rs.size() << " rows, " << rs.columns() << " columns, first column " << rs.column_name(0)
            << ", command " << rs.command() << "\n";
  std::cout << rs[0]["name"].as<std::string>() << (rs[1][2].is_null() ? " / NULL email\n" : "\n");
  //]
  return n == 1 && v == "x" && rs.size() == 2 ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
