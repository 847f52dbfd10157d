// Transactions: RAII rollback, isolation levels, and the error model.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  steadypg::connection db{steadypg::client_options::from_env().dsn};
  db.execute("CREATE TEMP TABLE accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))");
  db.execute("INSERT INTO accounts VALUES (1, 100), (2, 0)");

  //[transfer
  auto transfer = [&](int from, int to, int amount) {
    auto tx = db.begin({.isolation = steadypg::isolation_level::serializable});
    tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", amount, from);
    tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", amount, to);
    tx.commit();  // without this line, the destructor rolls back
  };
  //]
  transfer(1, 2, 30);

  //[errors
  try {
    transfer(1, 2, 500);  // violates the CHECK constraint
  } catch (const steadypg::sql_error& e) {
    std::cout << "refused: SQLSTATE " << e.sqlstate() << " (" << steadypg::to_string(e.state_class())
              << "), constraint " << e.server().constraint << ", retry would "
              << (e.is_transient() ? "maybe help" : "not help") << "\n";
  }
  //]
  const auto b1 = db.query_value<int>("SELECT balance FROM accounts WHERE id = 1");
  std::cout << "balance of account 1: " << b1 << "\n";
  return b1 == 70 ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
