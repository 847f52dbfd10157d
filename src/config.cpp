#include "steadypg/config.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fmt/format.h>
#include <limits>
#include <vector>

#include "steadypg/error.hpp"

namespace steadypg {
namespace {

struct int_range {
  long long min;
  long long max;  // std::numeric_limits<long long>::max() for "no upper bound"
};

std::string range_text(int_range r, std::string_view unit) {
  if (r.max == std::numeric_limits<long long>::max()) return fmt::format("an integer ≥ {}{}", r.min, unit);
  return fmt::format("an integer in {}–{}{}", r.min, r.max, unit);
}

long long parse_int(std::string_view name, const std::string& value, int_range r, std::string_view unit) {
  // Plain decimal digits only: from_chars alone would take "-0" for a minimum of 0.
  long long v = 0;
  const char* end = value.data() + value.size();
  const bool digits =
      !value.empty() && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  const auto res = std::from_chars(value.data(), end, v);
  const bool ok = digits && res.ec == std::errc{} && res.ptr == end;
  if (!ok || v < r.min || v > r.max) {
    throw config_error(fmt::format("{}=\"{}\" is invalid: expected {}", name, value, range_text(r, unit)));
  }
  return v;
}

bool parse_bool_var(std::string_view name, const std::string& value) {
  if (value == "true" || value == "1" || value == "TRUE" || value == "True") return true;
  if (value == "false" || value == "0" || value == "FALSE" || value == "False") return false;
  throw config_error(fmt::format("{}=\"{}\" is invalid: expected true, false, 1 or 0", name, value));
}

void check_range(std::string_view name, long long v, int_range r, std::string_view unit) {
  if (v < r.min || v > r.max) {
    throw config_error(fmt::format("{} = {} is out of range: expected {}", name, v, range_text(r, unit)));
  }
}

constexpr long long no_max = std::numeric_limits<long long>::max();

// One table drives from_env() and validate(), so the two cannot disagree.
struct int_field {
  std::string_view env;
  int_range range;
  std::string_view unit;
  int client_options::*int_member = nullptr;
  std::chrono::milliseconds client_options::*ms_member = nullptr;
};

const std::vector<int_field>& fields() {
  static const std::vector<int_field> f{
      {"POSTGRESQL_MAX_RETRIES", {0, 100}, "", &client_options::max_retries, nullptr},
      {"POSTGRESQL_RETRY_DELAY", {0, 600000}, " ms", nullptr, &client_options::retry_delay},
      {"POSTGRESQL_CIRCUIT_BREAKER_THRESHOLD", {1, 10000}, "", &client_options::circuit_breaker_threshold, nullptr},
      {"POSTGRESQL_CIRCUIT_BREAKER_TIMEOUT", {100, 3600000}, " ms", nullptr, &client_options::circuit_breaker_timeout},
      {"POSTGRESQL_CONNECTION_TIMEOUT", {100, 600000}, " ms", nullptr, &client_options::connection_timeout},
      {"POSTGRESQL_SLOW_QUERY_THRESHOLD", {1, 3600000}, " ms", nullptr, &client_options::slow_query_threshold},
      {"POSTGRESQL_HEALTH_CHECK_INTERVAL", {100, 3600000}, " ms", nullptr, &client_options::health_check_interval},
      {"POSTGRESQL_POOL_MIN", {0, 10000}, "", &client_options::pool_min, nullptr},
      {"POSTGRESQL_POOL_MAX", {1, 10000}, "", &client_options::pool_max, nullptr},
      {"POSTGRESQL_ACQUIRE_TIMEOUT", {1, 600000}, " ms", nullptr, &client_options::acquire_timeout},
      {"POSTGRESQL_STATEMENT_TIMEOUT", {0, 86400000}, " ms", nullptr, &client_options::statement_timeout},
      {"POSTGRESQL_BATCH_SIZE", {1, 1000000}, "", &client_options::batch_size, nullptr},
      {"POSTGRESQL_BATCH_CONCURRENCY", {1, 1024}, "", &client_options::batch_concurrency, nullptr},
      {"POSTGRESQL_BATCH_TIMEOUT", {1, 86400000}, " ms", nullptr, &client_options::batch_timeout},
      {"POSTGRESQL_STATEMENT_CACHE_SIZE", {0, 100000}, "", &client_options::statement_cache_size, nullptr},
  };
  return f;
}

// Values that look like a password inside a (possibly malformed) DSN.
std::vector<std::string> password_candidates(std::string_view dsn) {
  std::vector<std::string> out;
  const std::string redacted = redact_dsn(dsn);
  // Walk both strings: wherever they differ, the original holds a secret.
  std::size_t i = 0, j = 0;
  while (i < dsn.size() && j < redacted.size()) {
    if (dsn[i] == redacted[j]) {
      ++i;
      ++j;
      continue;
    }
    // redacted has "****" here; the secret runs until the texts agree again.
    const std::size_t resume = j + 4;
    const std::string_view tail = std::string_view(redacted).substr(resume);
    std::size_t k = i;
    while (k < dsn.size() && dsn.substr(k) != tail) ++k;
    if (k > i) out.emplace_back(dsn.substr(i, k - i));
    i = k;
    j = resume;
  }
  return out;
}

}  // namespace

client_options client_options::from_env() {
  return from_env([](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

client_options client_options::from_env(const std::function<std::optional<std::string>(std::string_view)>& lookup) {
  client_options o;
  if (auto url = lookup("DATABASE_URL")) {
    validate_dsn(*url);
    o.dsn = *url;
  }
  for (const auto& f : fields()) {
    auto v = lookup(f.env);
    if (!v) continue;
    const long long n = parse_int(f.env, *v, f.range, f.unit);
    if (f.int_member) o.*f.int_member = static_cast<int>(n);
    else o.*f.ms_member = std::chrono::milliseconds{n};
  }
  if (auto v = lookup("POSTGRESQL_METRICS_ENABLED")) o.metrics_enabled = parse_bool_var("POSTGRESQL_METRICS_ENABLED", *v);
  if (auto v = lookup("POSTGRESQL_LOG_PARAMETERS")) o.log_parameters = parse_bool_var("POSTGRESQL_LOG_PARAMETERS", *v);
  o.validate();
  return o;
}

void client_options::validate() const {
  for (const auto& f : fields()) {
    const long long v = f.int_member ? static_cast<long long>(this->*f.int_member) : (this->*f.ms_member).count();
    check_range(f.env, v, f.range, f.unit);
  }
  if (pool_min > pool_max) {
    throw config_error(fmt::format("POSTGRESQL_POOL_MIN ({}) must not exceed POSTGRESQL_POOL_MAX ({})", pool_min,
                                   pool_max));
  }
  if (!dsn.empty()) validate_dsn(dsn);
}

std::string redact_dsn(std::string_view dsn) {
  std::string out;
  out.reserve(dsn.size());
  const bool uri = dsn.starts_with("postgresql://") || dsn.starts_with("postgres://");
  if (uri) {
    const std::size_t scheme_end = dsn.find("://") + 3;
    std::size_t authority_end = dsn.find_first_of("/?", scheme_end);
    if (authority_end == std::string_view::npos) authority_end = dsn.size();
    const std::string_view authority = dsn.substr(scheme_end, authority_end - scheme_end);
    out.append(dsn.substr(0, scheme_end));
    const std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      const std::string_view userinfo = authority.substr(0, at);
      const std::size_t colon = userinfo.find(':');
      if (colon != std::string_view::npos) {
        out.append(userinfo.substr(0, colon)).append(":****");
      } else {
        out.append(userinfo);
      }
      out.append(authority.substr(at));
    } else {
      out.append(authority);
    }
    // Query parameters: password=… up to the next '&'.
    const std::string_view rest = dsn.substr(authority_end);
    const std::size_t q = rest.find('?');
    out.append(rest.substr(0, q));
    if (q == std::string_view::npos) return out;
    out.push_back('?');
    std::string_view query = rest.substr(q + 1);
    while (true) {
      const std::size_t amp = query.find('&');
      const std::string_view part = query.substr(0, amp);
      out.append(part.starts_with("password=") ? std::string_view("password=****") : part);
      if (amp == std::string_view::npos) break;
      out.push_back('&');
      query = query.substr(amp + 1);
    }
    return out;
  }
  // key=value form: keys and values separated by whitespace; values may be 'quoted'.
  std::size_t i = 0;
  while (i < dsn.size()) {
    if (std::isspace(static_cast<unsigned char>(dsn[i]))) {
      out.push_back(dsn[i++]);
      continue;
    }
    std::size_t key_end = i;
    while (key_end < dsn.size() && dsn[key_end] != '=' && !std::isspace(static_cast<unsigned char>(dsn[key_end]))) {
      ++key_end;
    }
    const std::string_view key = dsn.substr(i, key_end - i);
    out.append(key);
    std::size_t p = key_end;
    while (p < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[p]))) out.push_back(dsn[p++]);
    if (p >= dsn.size() || dsn[p] != '=') {
      // Malformed ("password secret"): treat the next word as the value anyway.
      if (key == "password" && p < dsn.size()) {
        std::size_t w = p;
        while (w < dsn.size() && !std::isspace(static_cast<unsigned char>(dsn[w]))) ++w;
        out.append("****");
        p = w;
      }
      i = p;
      continue;
    }
    out.push_back('=');
    ++p;
    while (p < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[p]))) out.push_back(dsn[p++]);
    std::size_t value_end = p;
    if (value_end < dsn.size() && dsn[value_end] == '\'') {
      ++value_end;
      while (value_end < dsn.size() && dsn[value_end] != '\'') {
        if (dsn[value_end] == '\\') ++value_end;
        ++value_end;
      }
      if (value_end < dsn.size()) ++value_end;
    } else {
      while (value_end < dsn.size() && !std::isspace(static_cast<unsigned char>(dsn[value_end]))) {
        if (dsn[value_end] == '\\') ++value_end;
        ++value_end;
      }
    }
    value_end = std::min(value_end, dsn.size());
    if (key == "password") out.append("****");
    else out.append(dsn.substr(p, value_end - p));
    i = value_end;
  }
  return out;
}

void validate_dsn(std::string_view dsn) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(std::string(dsn).c_str(), &err);
  if (opts != nullptr) {
    PQconninfoFree(opts);
    return;
  }
  std::string msg = err ? err : "out of memory";
  if (err) PQfreemem(err);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  // libpq quotes the offending token, which may be the password itself.
  for (const auto& secret : password_candidates(dsn)) {
    for (std::size_t pos; !secret.empty() && (pos = msg.find(secret)) != std::string::npos;) {
      msg.replace(pos, secret.size(), "****");
    }
  }
  throw config_error(fmt::format("invalid connection string \"{}\": {}", redact_dsn(dsn), msg));
}

}  // namespace steadypg
