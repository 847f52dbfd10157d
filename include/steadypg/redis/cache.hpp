#pragma once

// steadypg::redis: the Redis backend of the query cache (library steadypg::redis, links
// hiredis; the core library does not). docs/cache.md.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "steadypg/cache.hpp"

namespace steadypg::redis {

/// Settings of a Redis cache backend.
struct redis_options {
  /// Each Redis call (connect included) gives up after this: the call then answers from the
  /// database. Default 50 ms, range 1–10000 ms.
  std::chrono::milliseconds timeout{50};
  /// After a failure, Redis is not tried again for this long (calls bypass at once). Default
  /// 250 ms, range 0–60000 ms.
  std::chrono::milliseconds retry_after{250};
  /// Prefix of every key the cache writes. Default "steadypg:".
  std::string key_prefix = "steadypg:";
  /// Connections kept open (one per concurrent call at most). Default 16, range 1–1024.
  std::size_t max_connections = 16;

  /// Throws config_error naming the field.
  void validate() const;
};

/// Where a redis:// URL points.
struct redis_endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string password;  ///< from redis://:password@host; never printed
};

/// Parses [local+]redis://[:password@]host[:port][/db] (the local+ prefix, which asks the client
/// for a local level in front, is accepted and ignored here); throws config_error for anything else
/// (the message never contains the password).
[[nodiscard]] redis_endpoint parse_url(std::string_view url);

/// A backend on the Redis at `url` (POSTGRESQL_CACHE_URL). Does not fail when Redis is down:
/// calls bypass until it answers. Warns (cache_backend::startup_warnings) when Redis evicts
/// with an allkeys-* policy, which can drop tag versions.
[[nodiscard]] std::shared_ptr<cache_backend> make_cache(std::string_view url, const redis_options& options = {});

}  // namespace steadypg::redis
