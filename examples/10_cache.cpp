// The query cache (docs/cache.md): a read served from the in-process cache, a committed write
// invalidating it, and the figures behind the hit ratio.
#include <steadypg/steadypg.hpp>

#include <iostream>

int main() try {
  using namespace std::chrono_literals;
  //[cache_local
  auto opts = steadypg::client_options::from_env();
  opts.cache.backend = std::make_shared<steadypg::local_cache>(64 << 20);  // or POSTGRESQL_CACHE_URL=local
  steadypg::client db{opts};
  db.execute("CREATE TABLE IF NOT EXISTS prices (id int PRIMARY KEY, cents int)");
  db.execute("INSERT INTO prices VALUES (1, 250) ON CONFLICT (id) DO UPDATE SET cents = 250");

  const steadypg::cache_policy policy{.ttl = 60s, .tags = {"prices"}};
  auto first = db.query_cached("SELECT cents FROM prices WHERE id = $1", policy, 1);   // miss: runs on the server
  auto second = db.query_cached("SELECT cents FROM prices WHERE id = $1", policy, 1);  // hit: the same result
  db.execute("UPDATE prices SET cents = 300 WHERE id = 1");  // committed: invalidates table:prices
  auto third = db.query_cached("SELECT cents FROM prices WHERE id = $1", policy, 1);   // miss: sees 300

  auto stats = db.cache_statistics();
  std::cout << first.as<int>() << " " << second.as<int>() << " " << third.as<int>() << ", hit ratio "
            << stats.hit_ratio() << "\n";
  //]
  //[cache_invalidate
  db.invalidate_table("prices");          // a write made elsewhere (another program, a trigger)
  db.invalidate_tags({"prices"});         // or by a tag of your own
  //]
  return first.as<int>() == 250 && second.as<int>() == 250 && third.as<int>() == 300 && stats.hits == 1 ? 0 : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
