// A primary with a streaming replica: routes, read-your-writes, the topology, fail-over rules.
#include <steadypg/steadypg.hpp>
#include <steadypg/testing/temp_replica_set.hpp>

#include <iostream>

int main() try {
  steadypg::testing::temp_replica_set_options set_options;
  set_options.replicas = 1;
  steadypg::testing::temp_replica_set set{set_options};  // a throwaway primary and one standby
  const std::string dsn = set.dsn();  // host=127.0.0.1,127.0.0.1 port=P0,P1 user=postgres dbname=postgres

  //[cluster_client
  steadypg::client_options opts = steadypg::client_options::from_env();
  opts.dsn = dsn;                                        // several hosts: one pool and breaker each
  opts.cluster.max_replica_lag = std::chrono::seconds(5);  // replicas further behind get no reads
  steadypg::client db{opts};
  //]

  //[writes
  db.execute("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text)");  // primary (the default)
  db.execute("INSERT INTO notes VALUES ($1, $2) ON CONFLICT DO NOTHING", 1, "hello");
  //]
  // Replication is asynchronous: a read right after a write may reach a replica that has not
  // replayed it yet (a service passes a write token, below; the example waits for the replica).
  set.wait_caught_up(1);

  //[routes
  auto n = db.query_value<std::int64_t>(
      steadypg::statement{"SELECT count(*) FROM notes"}.route(steadypg::route::prefer_replica));  // a replica if one qualifies
  auto on_replica = db.transaction(  // BEGIN READ ONLY on a replica
      [](steadypg::transaction& tx) { return tx.execute("SELECT pg_is_in_recovery()").as<bool>(); },
      {.route = steadypg::route::replica});
  //]
  std::cout << n << " note(s); read-only transaction on a replica: " << on_replica << "\n";

  //[read_your_writes
  db.execute("UPDATE notes SET body = $1 WHERE id = $2", "edited", 1);
  steadypg::write_token token = db.commit_token();  // the primary's WAL position, after the write
  auto body = db.query_value<std::string>(steadypg::statement{"SELECT body FROM notes WHERE id = $1"}
                                              .route(steadypg::route::prefer_replica)
                                              .after(token),  // a replica only once it has replayed it
                                          1);
  //]
  std::cout << "read after the write: " << body << "\n";

  //[topology
  steadypg::topology_report t = db.topology();
  for (const auto& h : t.hosts) {
    std::cout << h.label << " " << steadypg::to_string(h.role) << " timeline " << h.timeline;
    if (h.lag_seconds) std::cout << ", lag " << *h.lag_seconds << " s";
    std::cout << "\n";
  }
  //]

  //[no_host
  try {
    db.execute(steadypg::statement{"SELECT 1"}.route(steadypg::route::replica));
  } catch (const steadypg::no_replica_available& e) {  // no replica up, within the lag limit and past the token
    std::cerr << e.what() << "\n";
  } catch (const steadypg::no_primary_available& e) {  // writes waited for a primary until their deadline
    std::cerr << e.what() << "\n";
  }
  //]

  return body == "edited" && on_replica && t.primary == std::optional<std::size_t>{0} ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
