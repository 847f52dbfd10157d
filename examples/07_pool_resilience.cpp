// The client: a pool of connections behind one resilience pipeline.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  {
    steadypg::client setup{steadypg::client_options::from_env()};
    setup.execute("DROP TABLE IF EXISTS accounts, audit, users");
    setup.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int)");
    setup.execute("INSERT INTO accounts VALUES (1, 100), (2, 100)");
    setup.execute("CREATE TABLE audit (msg text)");
    setup.execute("CREATE TABLE users (id int, age int)");
    setup.execute("INSERT INTO users VALUES (1, 36), (2, 54)");
  }
  const std::string msg = "hello";

  //[pool
  steadypg::client db{steadypg::client_options::from_env()};   // POSTGRESQL_POOL_MIN/MAX, …
  auto n = db.query_value<int64_t>("SELECT count(*) FROM users WHERE age > $1", 40);
  db.transaction([&](steadypg::transaction& tx) {                // one connection, committed on return
    tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", 30, 1);
    tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", 30, 2);
  });
  {
    auto conn = db.acquire("nightly-report");                    // several statements on one connection
    conn->execute("SET work_mem = '256MB'");
    conn->execute("RESET work_mem");
  }                                                              // returned to the pool here
  auto stats = db.pool_statistics();                             // active, idle, waiting, acquires, closes …
  //]
  std::cout << n << " user(s) over 40; " << stats.acquire_count << " acquires, " << stats.total << " connections\n";

  //[resilience
  db.execute("INSERT INTO audit (msg) VALUES ($1)", msg);                  // retried only if nothing was sent
  auto rows = db.query_value<int64_t>(steadypg::statement{"SELECT count(*) FROM audit"}  // idempotent: retried
                                          .idempotent()                                 // through outages
                                          .timeout(std::chrono::seconds(2)));           // deadline for all attempts
  db.transaction([&](steadypg::transaction& tx) {                          // re-run whole on 40001/40P01/55P03
    tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", 30, 1);
    tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", 30, 2);
  }, {.isolation = steadypg::isolation_level::serializable});
  std::cout << "breaker " << steadypg::to_string(db.breaker().state()) << "\n";
  //]

  const auto balance = db.query_value<int64_t>("SELECT sum(balance) FROM accounts");
  std::cout << rows << " audit row(s), total balance " << balance << "\n";
  db.execute("DROP TABLE accounts, audit, users");
  return n == 1 && rows == 1 && balance == 200 ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
