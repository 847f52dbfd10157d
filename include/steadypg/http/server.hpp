#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "steadypg/client.hpp"

namespace steadypg::http {

/// Settings of the embedded monitoring endpoint (docs/monitoring.md). Off unless a listen
/// address is given (POSTGRESQL_HTTP_LISTEN).
struct options {
  /// "host:port" to bind; port 0 picks a free port (server::port() reports it). The host must be
  /// a loopback address (127.0.0.0/8, ::1, localhost) unless allow_remote is set.
  std::string listen;
  /// Binding a non-loopback address needs this and a bearer_token.
  bool allow_remote = false;
  /// When set, every request needs `Authorization: Bearer <token>` (required for remote binds).
  std::string bearer_token;
  /// Worker threads answering requests; 1–16, default 4.
  int threads = 4;
  /// Largest request accepted (request line, headers and body), in bytes; 256–65536, default 4096.
  std::size_t max_request_bytes = 4096;
  /// How often the snapshot sampler reads the metrics and probes the server; 100–60000 ms, default 1000.
  std::chrono::milliseconds sample_interval{1000};
  /// How often server-side facts (pg_stat_activity, max_connections) are read; 1000–3600000 ms, default 5000.
  std::chrono::milliseconds server_sample_interval{5000};

  /// Reads POSTGRESQL_HTTP_LISTEN (unset or empty: nullopt, the endpoint stays off). A value that is
  /// not host:port is a config_error naming the variable, the value and what is accepted.
  [[nodiscard]] static std::optional<options> from_env();
  /// Throws config_error for an unusable field (bad address, remote bind without permission …).
  void validate() const;
};

/// The host and port of "host:port" ("[::1]:9187" for IPv6); throws config_error naming `what`.
struct listen_address {
  std::string host;
  int port = 0;
};
[[nodiscard]] listen_address parse_listen(const std::string& text, const std::string& what);

/// The monitoring endpoint of a client: /metrics, /health, /info, /api/snapshot and the
/// dashboard page /. It listens once constructed and stops (joining its threads) when
/// destroyed; `db` must outlive it.
///
///     steadypg::http::server srv(db, {.listen = "127.0.0.1:0"});
///     std::cout << "dashboard: " << srv.url() << "\n";
class server {
 public:
  /// Validates `opts` (config_error), binds (config_error when the address cannot be bound)
  /// and starts serving.
  server(client& db, options opts);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The port bound (the free one picked for port 0).
  [[nodiscard]] int port() const noexcept;
  /// "http://host:port/".
  [[nodiscard]] std::string url() const;
  /// Stops listening and joins the threads (also done by the destructor). Idempotent.
  void stop() noexcept;

  /// The JSON of /api/snapshot as it is now.
  [[nodiscard]] std::string snapshot_json() const;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace steadypg::http
