// The query cache in the CLI: POSTGRESQL_CACHE_URL / --cache to a backend, and its figures in
// `info` and `bench` (docs/cli.md, docs/cache.md).
#include <fmt/format.h>

#include <cmath>

#include "cli.hpp"
#if STEADYPG_CLI_REDIS
#include "steadypg/redis/cache.hpp"
#endif

namespace steadypg::cli {

client_options with_cache_backend(client_options o) {
  if (o.cache.backend || o.cache.url.empty()) return o;
  if (o.cache.url == "local") {
    o.cache.backend = std::make_shared<local_cache>(o.cache.local_max_bytes);
  } else if (o.cache.url.starts_with("redis://") || o.cache.url.starts_with("local+redis://")) {
    // For local+redis://, the client puts the local level in front of this backend.
#if STEADYPG_CLI_REDIS
    o.cache.backend = redis::make_cache(o.cache.url);
#else
    throw config_error(
        "this steadypg was built without steadypg::redis (hiredis): a redis:// cache URL is unavailable");
#endif
  }
  return o;
}

json_doc cache_json(const cache_stats& s) {
  json_doc bypass = json_doc::object();
  for (std::size_t i = 0; i < cache_bypass_reason_count; ++i) {
    if (s.bypass_by_reason[i] > 0)
      bypass[std::string(to_string(static_cast<cache_bypass_reason>(i)))] = s.bypass_by_reason[i];
  }
  return {{"backend", s.backend},
          {"hits", s.hits},
          {"misses", s.misses},
          {"stale", s.stale},
          {"bypass", s.bypass},
          {"errors", s.errors},
          {"invalidations", s.invalidations},
          {"bytes", s.bytes},
          {"hit_ratio", std::round(s.hit_ratio() * 1000) / 1000},
          {"bypass_by_reason", std::move(bypass)}};
}

std::string cache_text(const cache_stats& s) {
  return fmt::format("cache: {} hit ratio {:.1f} % ({} hits, {} misses, {} stale, {} bypass, {} errors), {} bytes\n",
                     s.backend, s.hit_ratio() * 100, s.hits, s.misses, s.stale, s.bypass, s.errors, s.bytes);
}

}  // namespace steadypg::cli
