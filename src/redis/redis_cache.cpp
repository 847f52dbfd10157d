#include <hiredis/hiredis.h>

#include <fmt/format.h>
#include <sys/time.h>

#include <atomic>
#include <charconv>
#include <mutex>
#include <random>
#include <vector>

#include "steadypg/redis/cache.hpp"

namespace steadypg::redis {

namespace {

using context_ptr = std::unique_ptr<redisContext, decltype(&redisFree)>;
using reply_ptr = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

std::uint64_t version_of(const redisReply* r) {
  if (r == nullptr || r->type == REDIS_REPLY_NIL) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return static_cast<std::uint64_t>(r->integer);
  if (r->type != REDIS_REPLY_STRING) throw cache_unavailable("redis: unexpected reply for a tag version");
  std::uint64_t v = 0;
  auto res = std::from_chars(r->str, r->str + r->len, v);
  if (res.ec != std::errc{}) throw cache_unavailable("redis: a tag version is not a number");
  return v;
}

const char* unlock_script =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

class redis_cache final : public cache_backend {
 public:
  redis_cache(redis_endpoint endpoint, redis_options options)
      : m_endpoint(std::move(endpoint)), m_options(std::move(options)) {
    try {
      auto c = borrow();
      reply_ptr r(static_cast<redisReply*>(redisCommand(c.get(), "CONFIG GET maxmemory-policy")), &freeReplyObject);
      if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING) {
        const std::string policy(r->element[1]->str, r->element[1]->len);
        if (policy.starts_with("allkeys-")) {
          m_warnings.push_back(fmt::format(
              "Redis at {}:{} evicts with maxmemory-policy {}: it may evict tag versions before the entries "
              "that depend on them; use volatile-lru/volatile-ttl or noeviction",
              m_endpoint.host, m_endpoint.port, policy));
        }
      }
      give_back(std::move(c));
    } catch (const cache_unavailable&) {
      // Down at startup: calls bypass until it answers.
    }
  }

  std::optional<std::string> get(const std::string& key, std::span<const std::string> tags,
                                 std::vector<std::uint64_t>& versions) override {
    return with_context([&](redisContext* c) -> std::optional<std::string> {
      const std::string k = m_options.key_prefix + "v:" + key;
      redisAppendCommand(c, "GET %b", k.data(), k.size());
      if (!tags.empty()) append_mget(c, tags);
      reply_ptr value = read(c);
      versions.clear();
      if (!tags.empty()) read_versions(c, tags.size(), versions);
      if (value->type == REDIS_REPLY_NIL) return std::nullopt;
      if (value->type != REDIS_REPLY_STRING) throw cache_unavailable("redis: unexpected reply to GET");
      return std::string(value->str, value->len);
    });
  }

  void tag_versions(std::span<const std::string> tags, std::vector<std::uint64_t>& versions) override {
    versions.clear();
    if (tags.empty()) return;
    with_context([&](redisContext* c) {
      append_mget(c, tags);
      read_versions(c, tags.size(), versions);
      return 0;
    });
  }

  void put(const std::string& key, std::string value, std::chrono::milliseconds lifetime) override {
    with_context([&](redisContext* c) {
      const std::string k = m_options.key_prefix + "v:" + key;
      const std::string px = std::to_string(std::max<std::int64_t>(1, lifetime.count()));
      redisAppendCommand(c, "SET %b %b PX %s", k.data(), k.size(), value.data(), value.size(), px.c_str());
      expect_ok(read(c).get(), "SET");
      return 0;
    });
  }

  void bump_tags(std::span<const std::string> tags) override {
    if (tags.empty()) return;
    with_context([&](redisContext* c) {
      for (const auto& t : tags) {
        const std::string k = tag_key(t);
        redisAppendCommand(c, "INCR %b", k.data(), k.size());
      }
      for (std::size_t i = 0; i < tags.size(); ++i) {
        auto r = read(c);
        if (r->type != REDIS_REPLY_INTEGER) throw cache_unavailable("redis: unexpected reply to INCR");
      }
      return 0;
    });
  }

  std::optional<std::string> try_lock(const std::string& key, std::chrono::milliseconds hold) override {
    const std::string token = new_token();
    return with_context([&](redisContext* c) -> std::optional<std::string> {
      const std::string k = m_options.key_prefix + "lock:" + key;
      const std::string px = std::to_string(hold.count());
      redisAppendCommand(c, "SET %b %b NX PX %s", k.data(), k.size(), token.data(), token.size(), px.c_str());
      auto r = read(c);
      if (r->type == REDIS_REPLY_NIL) return std::nullopt;
      expect_ok(r.get(), "SET NX");
      return token;
    });
  }

  void unlock(const std::string& key, const std::string& token) override {
    with_context([&](redisContext* c) {
      const std::string k = m_options.key_prefix + "lock:" + key;
      redisAppendCommand(c, "EVAL %s 1 %b %b", unlock_script, k.data(), k.size(), token.data(), token.size());
      auto r = read(c);
      if (r->type != REDIS_REPLY_INTEGER) throw cache_unavailable("redis: unexpected reply to the unlock script");
      return 0;
    });
  }

  void clear() override {
    const std::string all = "*";
    bump_tags(std::span<const std::string>(&all, 1));
  }

  [[nodiscard]] bool shared() const noexcept override { return true; }
  [[nodiscard]] std::vector<std::string> startup_warnings() override { return m_warnings; }
  [[nodiscard]] std::string_view name() const noexcept override { return "redis"; }

 private:
  std::string tag_key(const std::string& tag) const { return m_options.key_prefix + "tag:" + tag; }

  void append_mget(redisContext* c, std::span<const std::string> tags) {
    std::vector<std::string> keys;
    keys.reserve(tags.size() + 1);
    keys.emplace_back("MGET");
    for (const auto& t : tags) keys.push_back(tag_key(t));
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& k : keys) {
      argv.push_back(k.data());
      lens.push_back(k.size());
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
  }

  void read_versions(redisContext* c, std::size_t n, std::vector<std::uint64_t>& versions) {
    auto r = read(c);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) throw cache_unavailable("redis: unexpected reply to MGET");
    for (std::size_t i = 0; i < n; ++i) versions.push_back(version_of(r->element[i]));
  }

  static void expect_ok(const redisReply* r, std::string_view what) {
    if (r->type != REDIS_REPLY_STATUS) {
      throw cache_unavailable(fmt::format("redis: {} failed: {}", what,
                                          r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "bad reply"));
    }
  }

  static reply_ptr read(redisContext* c) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
      throw cache_unavailable(fmt::format("redis: {}", c->errstr[0] ? c->errstr : "no reply"));
    }
    reply_ptr r(static_cast<redisReply*>(raw), &freeReplyObject);
    if (r->type == REDIS_REPLY_ERROR) throw cache_unavailable(fmt::format("redis: {}", std::string(r->str, r->len)));
    return r;
  }

  std::string new_token() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return fmt::format("{:016x}{:016x}", rng(), rng());
  }

  context_ptr connect() {
    const auto tv = to_timeval(m_options.timeout);
    context_ptr c(redisConnectWithTimeout(m_endpoint.host.c_str(), m_endpoint.port, tv), &redisFree);
    if (!c) throw cache_unavailable("redis: out of memory");
    if (c->err)
      throw cache_unavailable(
          fmt::format("redis: cannot connect to {}:{}: {}", m_endpoint.host, m_endpoint.port, c->errstr));
    if (redisSetTimeout(c.get(), tv) != REDIS_OK) throw cache_unavailable("redis: cannot set the timeout");
    if (!m_endpoint.password.empty()) {
      redisAppendCommand(c.get(), "AUTH %b", m_endpoint.password.data(), m_endpoint.password.size());
      expect_ok(read(c.get()).get(), "AUTH");
    }
    if (m_endpoint.db != 0) {
      redisAppendCommand(c.get(), "SELECT %d", m_endpoint.db);
      expect_ok(read(c.get()).get(), "SELECT");
    }
    return c;
  }

  context_ptr borrow() {
    {
      std::lock_guard lock(m_mutex);
      if (!m_idle.empty()) {
        auto c = std::move(m_idle.back());
        m_idle.pop_back();
        return c;
      }
    }
    return connect();
  }

  void give_back(context_ptr c) {
    std::lock_guard lock(m_mutex);
    if (m_idle.size() < m_options.max_connections) m_idle.push_back(std::move(c));
  }

  template <typename Fn>
  auto with_context(Fn&& fn) -> decltype(fn(static_cast<redisContext*>(nullptr))) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now < m_down_until.load(std::memory_order_relaxed)) throw cache_unavailable("redis: unavailable (backing off)");
    try {
      auto c = borrow();
      auto r = fn(c.get());
      give_back(std::move(c));  // only a connection that completed its exchange goes back
      return r;
    } catch (const cache_unavailable&) {
      m_down_until.store((std::chrono::steady_clock::now() + m_options.retry_after).time_since_epoch().count(),
                         std::memory_order_relaxed);
      std::lock_guard lock(m_mutex);
      m_idle.clear();  // they may be as dead as this one
      throw;
    }
  }

  redis_endpoint m_endpoint;
  redis_options m_options;
  std::vector<std::string> m_warnings;
  std::mutex m_mutex;
  std::vector<context_ptr> m_idle;
  std::atomic<std::chrono::steady_clock::rep> m_down_until{0};
};

}  // namespace

void redis_options::validate() const {
  if (timeout < std::chrono::milliseconds(1) || timeout > std::chrono::milliseconds(10000)) {
    throw config_error(fmt::format("redis_options.timeout = {} ms is out of range: expected 1–10000", timeout.count()));
  }
  if (retry_after < std::chrono::milliseconds(0) || retry_after > std::chrono::milliseconds(60000)) {
    throw config_error(
        fmt::format("redis_options.retry_after = {} ms is out of range: expected 0–60000", retry_after.count()));
  }
  if (max_connections < 1 || max_connections > 1024) {
    throw config_error(
        fmt::format("redis_options.max_connections = {} is out of range: expected 1–1024", max_connections));
  }
}

redis_endpoint parse_url(std::string_view url) {
  auto bad = [&](std::string_view why) {
    // The part after '@' only: a password never reaches a message.
    const auto at = url.rfind('@');
    const std::string shown =
        at == std::string_view::npos ? std::string(url) : "redis://…@" + std::string(url.substr(at + 1));
    return config_error(
        fmt::format("cache URL \"{}\" is invalid: {} (expected redis://[:password@]host[:port][/db], "
                    "POSTGRESQL_CACHE_URL)",
                    shown, why));
  };
  constexpr std::string_view scheme = "redis://";
  constexpr std::string_view two_level = "local+";  // the client adds the local level itself
  std::string_view rest = url.starts_with(two_level) ? url.substr(two_level.size()) : url;
  if (!rest.starts_with(scheme)) throw bad("not a redis:// URL");
  rest = rest.substr(scheme.size());
  redis_endpoint e;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    if (auto colon = auth.find(':'); colon != std::string_view::npos) auth = auth.substr(colon + 1);
    e.password = std::string(auth);
    rest = rest.substr(at + 1);
  }
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    const auto db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto r = std::from_chars(db.data(), db.data() + db.size(), e.db);
      if (r.ec != std::errc{} || r.ptr != db.data() + db.size() || e.db < 0 || e.db > 15) {
        throw bad("the database must be a number 0–15");
      }
    }
  }
  if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    const auto port = hostport.substr(colon + 1);
    auto r = std::from_chars(port.data(), port.data() + port.size(), e.port);
    if (r.ec != std::errc{} || r.ptr != port.data() + port.size() || e.port < 1 || e.port > 65535) {
      throw bad("the port must be a number 1–65535");
    }
    hostport = hostport.substr(0, colon);
  }
  if (hostport.empty()) throw bad("no host");
  e.host = std::string(hostport);
  return e;
}

std::shared_ptr<cache_backend> make_cache(std::string_view url, const redis_options& options) {
  options.validate();
  return std::make_shared<redis_cache>(parse_url(url), options);
}

}  // namespace steadypg::redis
