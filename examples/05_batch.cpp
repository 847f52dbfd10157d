// Batch execution and COPY through a client: error isolation, progress, a report.
#include <steadypg/steadypg.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

int main() try {
  steadypg::client db{steadypg::client_options::from_env()};
  db.execute("DROP TABLE IF EXISTS readings");
  db.execute("CREATE TABLE readings (id int PRIMARY KEY, sensor text, value float8)");

  //[batch
  std::vector<steadypg::batch_operation> ops;
  for (int id = 0; id < 10000; ++id) {
    const int key = id % 1000 == 999 ? 0 : id;  // every 1000th collides with row 0
    ops.emplace_back("INSERT INTO readings (id, sensor, value) VALUES ($1, $2, $3)", key, "s-" + std::to_string(id % 7),
                     id * 0.5);
  }
  steadypg::batch_options options;
  options.mode = steadypg::batch_mode::pipeline;  // or independent, transaction
  options.batch_size = 500;                       // statements per round trip
  options.concurrency = 2;                        // connections at once
  options.timeout = std::chrono::seconds(60);     // for the whole batch
  options.on_progress = [](const steadypg::batch_progress& p) {
    if (p.processed == p.total) std::cout << p.processed << "/" << p.total << " done\n";
  };
  const steadypg::batch_report report = db.batch_execute(ops, options);
  std::cout << report.stats.succeeded << " succeeded, " << report.stats.failed << " failed ("
            << report.stats.success_rate * 100 << "%)\n";
  for (const steadypg::batch_error& e : report.errors) {
    std::cout << "  operation " << e.index << ": " << e.sqlstate << " " << e.message << "\n";
  }
  //]

  //[copy
  const std::uint64_t loaded = db.copy_from(
      "readings", {"id", "sensor", "value"},
      [](steadypg::copy_in& copy) {
        for (int id = 100000; id < 150000; ++id) copy.write_row(id, "bulk\tsensor", id * 0.25);
      },
      {.format = steadypg::copy_format::text,
       .progress = [](std::uint64_t rows) { std::cout << rows << " rows sent\n"; }});
  std::cout << "copied " << loaded << " rows\n";
  //]

  //[copy_to
  std::ofstream file("readings.csv", std::ios::binary);
  const std::uint64_t exported = db.copy_to(
      steadypg::copy_source::query("SELECT id, sensor, value FROM readings WHERE id >= 100000 ORDER BY id"),
      [&](std::string_view chunk) { file.write(chunk.data(), static_cast<std::streamsize>(chunk.size())); },
      {.format = steadypg::copy_format::csv, .header = true});
  file.close();
  std::cout << "exported " << exported << " rows\n";
  //]
  std::remove("readings.csv");

  db.execute("DROP TABLE IF EXISTS events");
  db.execute("CREATE TABLE events (id int8 PRIMARY KEY)");  // not TEMP: the batch uses several connections
  //[generate
  const steadypg::batch_report many = db.batch_execute(
      200000, [](std::size_t i) { return steadypg::batch_operation("INSERT INTO events (id) VALUES ($1)", int64_t(i)); },
      options);
  //]
  std::cout << many.stats.succeeded << " events\n";

  const auto total = db.query_value<int64_t>("SELECT count(*) FROM readings");
  std::cout << total << " rows in readings\n";
  db.execute("DROP TABLE readings");
  db.execute("DROP TABLE events");
  for (const auto& e : many.errors) {
    std::cerr << "event " << e.index << ": " << e.message << "\n";
    break;
  }
  return report.stats.failed == 10 && total == 9990 + 50000 && many.stats.succeeded == 200000 && exported == 50000 ? 0
                                                                                                              : 1;
} catch (const steadypg::error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
