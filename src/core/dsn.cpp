#include "steadypg/dsn.hpp"

#include <libpq-fe.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "steadypg/error.hpp"

namespace steadypg {
namespace {

// ---------------------------------------------------------------------------------------------
// Connection strings. libpq parses them (PQconninfoParse) but checks most values only when it
// connects, where a typo looks like an outage; validate_dsn() checks them first. redact_dsn()
// shows what libpq read, with the secrets replaced, so no hand-written scan can disagree with it.

constexpr std::string_view hidden = "****";

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

struct conninfo_free {
  void operator()(PQconninfoOption* o) const noexcept { PQconninfoFree(o); }
};
using conninfo_ptr = std::unique_ptr<PQconninfoOption, conninfo_free>;

/// libpq's own parse of either form; null, with libpq's message in `error`, when it fails.
conninfo_ptr parse_conninfo(std::string_view dsn, std::string* error = nullptr) {
  char* err = nullptr;
  conninfo_ptr opts(PQconninfoParse(std::string(dsn).c_str(), &err));
  if (!opts && error != nullptr) {
    *error = err != nullptr ? err : "out of memory";
    while (!error->empty() && is_space(error->back())) error->pop_back();
  }
  if (err != nullptr) PQfreemem(err);
  return opts;
}

/// libpq's test for the URI form (case-sensitive, at the very start).
bool is_uri(std::string_view dsn) { return dsn.starts_with("postgresql://") || dsn.starts_with("postgres://"); }

/// password and sslpassword, and whatever else libpq displays as "*" (PQconninfoOption.dispchar).
bool is_secret(std::string_view keyword, const char* dispchar) {
  return keyword == "password" || keyword == "sslpassword" ||
         (dispchar != nullptr && std::string_view(dispchar).find('*') != std::string_view::npos);
}

/// True for a keyword this libpq knows and whose value is not secret.
bool is_shown_keyword(std::string_view keyword) {
  static const auto shown = [] {
    std::set<std::string, std::less<>> out;
    if (auto opts = parse_conninfo("")) {
      for (const auto* o = opts.get(); o->keyword != nullptr; ++o) {
        if (!is_secret(o->keyword, o->dispchar)) out.emplace(o->keyword);
      }
    }
    return out;
  }();
  return shown.contains(keyword);
}

/// The value a parsed DSN gives `keyword`; nullopt when it sets none.
std::optional<std::string_view> value_of(const PQconninfoOption* opts, std::string_view keyword) {
  for (const auto* o = opts; o->keyword != nullptr; ++o) {
    if (keyword == o->keyword) return o->val != nullptr ? std::optional<std::string_view>(o->val) : std::nullopt;
  }
  return std::nullopt;
}

std::vector<std::string_view> split_commas(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t comma; (comma = s.find(',')) != std::string_view::npos; s.remove_prefix(comma + 1)) {
    out.push_back(s.substr(0, comma));
  }
  out.push_back(s);
  return out;
}

std::string percent_encode(std::string_view s, std::string_view keep = {}) {
  std::string out;
  for (const char c : s) {
    if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || keep.find(c) != std::string_view::npos) {
      out.push_back(c);
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) {
    const char lower = static_cast<char>(c | 0x20);
    return is_digit(c) ? c - '0' : lower >= 'a' && lower <= 'f' ? lower - 'a' + 10 : -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

/// A key=value value as libpq reads it back: bare when it can be, else quoted with \ escapes.
std::string conninfo_quote(std::string_view v) {
  if (!v.empty() && std::none_of(v.begin(), v.end(), [](char c) { return is_space(c) || c == '\'' || c == '\\'; })) {
    return std::string(v);
  }
  std::string out = "'";
  for (const char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string redact_value(const PQconninfoOption& o);

/// The options a DSN sets, as key=value in libpq's order, secrets as ****.
std::string emit_key_value(const PQconninfoOption* opts) {
  std::string out;
  for (const auto* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (!out.empty()) out.push_back(' ');
    out += fmt::format("{}={}", o->keyword, conninfo_quote(redact_value(*o)));
  }
  return out;
}

/// The same as a URI: user info, hosts with their ports (when they pair up), database, then
/// every other option as a query parameter, all percent-encoded.
std::string emit_uri(std::string_view scheme, const PQconninfoOption* opts) {
  std::string out(scheme);
  const auto user = value_of(opts, "user");
  const auto password = value_of(opts, "password");
  if (user || password) out += fmt::format("{}{}@", percent_encode(user.value_or("")), password ? ":****" : "");
  const auto host = value_of(opts, "host");
  const auto port = value_of(opts, "port");
  bool in_authority = false;
  if (host && !host->empty()) {
    const auto hosts = split_commas(*host);
    const auto ports = port ? split_commas(*port) : std::vector<std::string_view>{};
    const bool some_port = std::any_of(ports.begin(), ports.end(), [](auto p) { return !p.empty(); });
    in_authority = std::none_of(hosts.begin(), hosts.end(), [](auto h) { return h.empty(); }) &&
                   (!port || (some_port && ports.size() == hosts.size()));
    for (std::size_t i = 0; in_authority && i < hosts.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += hosts[i].find(':') != std::string_view::npos ? fmt::format("[{}]", percent_encode(hosts[i], ":"))
                                                          : percent_encode(hosts[i]);
      if (port && !ports[i].empty()) {
        out.push_back(':');
        out += percent_encode(ports[i]);
      }
    }
  }
  for (const auto* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr && std::string_view(o->keyword) == "dbname") {
      out.push_back('/');
      out += percent_encode(redact_value(*o), "*");
    }
  }
  char separator = '?';
  for (const auto* o = opts; o->keyword != nullptr; ++o) {
    const std::string_view keyword = o->keyword;
    if (o->val == nullptr || keyword == "user" || keyword == "password" || keyword == "dbname" ||
        (in_authority && (keyword == "host" || keyword == "port"))) {
      continue;
    }
    out += fmt::format("{}{}={}", separator, keyword, percent_encode(redact_value(*o), "*"));
    separator = '&';
  }
  return out;
}

/// One option's value for display: **** for a secret; a database name that is itself a connection
/// string (which libpq would take literally here) is redacted in turn.
std::string redact_value(const PQconninfoOption& o) {
  if (is_secret(o.keyword, o.dispchar)) return std::string(hidden);
  const std::string_view v = o.val;
  const bool connection_string = v.find('=') != std::string_view::npos || v.find("://") != std::string_view::npos;
  if (std::string_view(o.keyword) == "dbname" && connection_string) return redact_dsn(v);
  return std::string(v);
}

/// True when a URI has a literal '@' after its user info (libpq takes the user info up to the
/// first '@' or '/'): a password with an unencoded '@' or '/' then reads as host, port or database.
bool uri_has_stray_at(std::string_view dsn) {
  std::string_view rest = dsn.substr(dsn.find("://") + 3);
  const std::size_t end = rest.find_first_of("@/");
  if (end != std::string_view::npos && rest[end] == '@') rest.remove_prefix(end + 1);
  return rest.substr(0, rest.find('?')).find('@') != std::string_view::npos;
}

/// A string libpq cannot parse (or reads oddly), shown without anything that may be secret.
/// URI-like: the user info up to the last '@' is hidden. key=value pairs and URI query
/// parameters are shown while they are well formed and name a known, non-secret keyword;
/// from the first one that does not, the rest is hidden.
std::string redact_conservatively(std::string_view dsn) {
  std::size_t scheme_end = 0;
  if (!dsn.empty() && is_alnum(dsn[0]) && !is_digit(dsn[0])) {
    std::size_t i = 1;
    while (i < dsn.size() && (is_alnum(dsn[i]) || dsn[i] == '+' || dsn[i] == '.' || dsn[i] == '-')) ++i;
    if (i < dsn.size() && dsn[i] == ':') {
      ++i;
      while (i < dsn.size() && dsn[i] == '/') ++i;
      scheme_end = i;
    }
  }
  std::string out;
  if (scheme_end > 0) {
    out = dsn.substr(0, scheme_end);
    std::string_view rest = dsn.substr(scheme_end);
    if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
      out += hidden;
      rest.remove_prefix(at);
    }
    const std::size_t q = rest.find('?');
    out += rest.substr(0, q);
    if (q == std::string_view::npos) return out;
    std::string_view query = rest.substr(q + 1);
    char separator = '?';
    while (true) {
      const std::string_view part = query.substr(0, query.find('&'));
      const std::size_t eq = part.find('=');
      out.push_back(separator);
      separator = '&';
      if (eq == std::string_view::npos) return out.append(hidden);
      if (!is_shown_keyword(part.substr(0, eq))) return out.append(part.substr(0, eq + 1)).append(hidden);
      out += part;
      if (part.size() == query.size()) return out;
      query.remove_prefix(part.size() + 1);
    }
  }
  // key=value, scanned the way libpq scans it.
  std::size_t i = 0;
  while (i < dsn.size()) {
    if (is_space(dsn[i])) {
      out.push_back(dsn[i++]);
      continue;
    }
    const std::size_t key_start = i;
    while (i < dsn.size() && dsn[i] != '=' && !is_space(dsn[i])) ++i;
    const std::string_view key = dsn.substr(key_start, i - key_start);
    std::size_t v = i;
    while (v < dsn.size() && is_space(dsn[v])) ++v;
    if (v >= dsn.size() || dsn[v] != '=') return out.append(hidden);  // a word without '=' may be part of a value
    ++v;
    while (v < dsn.size() && is_space(dsn[v])) ++v;
    bool complete = true;
    if (v < dsn.size() && dsn[v] == '\'') {
      for (++v; v < dsn.size() && dsn[v] != '\''; ++v) {
        if (dsn[v] == '\\') ++v;
      }
      complete = v < dsn.size();
      ++v;
    } else {
      for (; v < dsn.size() && !is_space(dsn[v]); ++v) {
        if (dsn[v] == '\\') ++v;
      }
    }
    if (!complete || !is_shown_keyword(key)) return out.append(key).append("=").append(hidden);
    v = std::min(v, dsn.size());
    out += dsn.substr(key_start, v - key_start);
    i = v;
  }
  return out;
}

/// libpq's parse error, keeping only what `shown` (the redacted string) shows: libpq quotes
/// pieces of the string, which may be pieces of the password.
std::string sanitize_parse_error(std::string_view msg, std::string_view dsn, std::string_view shown) {
  std::string quoted_ok;
  for (std::size_t i = 0; i < msg.size();) {
    const std::size_t open = msg.find('"', i);
    if (open == std::string_view::npos) {
      quoted_ok += msg.substr(i);
      break;
    }
    quoted_ok += msg.substr(i, open + 1 - i);
    const std::size_t close = msg.find('"', open + 1);
    const std::string_view piece = msg.substr(open + 1, close == std::string_view::npos ? close : close - open - 1);
    const bool punctuation = std::none_of(piece.begin(), piece.end(), is_alnum);
    quoted_ok += punctuation || shown.find(piece) != std::string_view::npos ? piece : hidden;
    if (close == std::string_view::npos) break;
    quoted_ok.push_back('"');
    i = close + 1;
  }
  // Whatever the quoting: no run of three characters of the string that the redacted form hides.
  const std::string decoded = percent_decode(dsn);
  std::vector<bool> hide(quoted_ok.size(), false);
  for (std::size_t k = 0; k + 3 <= quoted_ok.size(); ++k) {
    const std::string_view w = std::string_view(quoted_ok).substr(k, 3);
    if ((dsn.find(w) != std::string_view::npos || decoded.find(w) != std::string::npos) &&
        shown.find(w) == std::string_view::npos) {
      hide[k] = hide[k + 1] = hide[k + 2] = true;
    }
  }
  std::string out;
  for (std::size_t k = 0; k < quoted_ok.size(); ++k) {
    if (!hide[k]) {
      out.push_back(quoted_ok[k]);
    } else if (k == 0 || !hide[k - 1]) {
      out += hidden;
    }
  }
  return out;
}

/// libpq's parse_int_param: optional surrounding whitespace and sign, decimal digits, int range.
std::optional<int> libpq_int(std::string_view v) {
  while (!v.empty() && is_space(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_space(v.back())) v.remove_suffix(1);
  const bool negative = !v.empty() && v.front() == '-';
  if (!v.empty() && (v.front() == '-' || v.front() == '+')) v.remove_prefix(1);
  if (v.empty() || !std::all_of(v.begin(), v.end(), is_digit)) return std::nullopt;
  long long n = 0;
  if (std::from_chars(v.data(), v.data() + v.size(), n).ec != std::errc{}) return std::nullopt;
  if (negative) n = -n;
  if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max()) return std::nullopt;
  return static_cast<int>(n);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

/// What is wrong with a value libpq would reject only when connecting; nullopt when nothing is.
std::optional<std::string> check_values(const PQconninfoOption* opts) {
  const auto host = value_of(opts, "host");
  const auto hostaddr = value_of(opts, "hostaddr");
  const auto port = value_of(opts, "port");

  if (port) {
    for (const auto entry : split_commas(*port)) {
      const auto n = entry.empty() ? std::optional<int>(1) : libpq_int(entry);
      if (!n || *n < 1 || *n > 65535) {
        return fmt::format(
            "port=\"{}\" is invalid: expected an integer in 1–65535 (a comma-separated list: "
            "one port for all hosts or one per host, empty for the default)",
            *port);
      }
    }
  }
  if (hostaddr) {
    for (const auto entry : split_commas(*hostaddr)) {
      if (entry.empty()) continue;
      addrinfo hints{};
      hints.ai_flags = AI_NUMERICHOST;
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      const int rc = ::getaddrinfo(std::string(entry).c_str(), nullptr, &hints, &found);
      if (found != nullptr) ::freeaddrinfo(found);
      if (rc != 0) {
        return fmt::format(
            "hostaddr=\"{}\" is invalid: expected a numeric IPv4 or IPv6 address in each "
            "comma-separated entry (names go in host)",
            *hostaddr);
      }
    }
  }
  // libpq's count of hosts: the hostaddr list if set, else the host list, else one default host.
  const bool has_hostaddr = hostaddr && !hostaddr->empty();
  const bool has_host = host && !host->empty();
  const std::size_t hosts = has_hostaddr ? split_commas(*hostaddr).size() : has_host ? split_commas(*host).size() : 1;
  if (has_hostaddr && has_host && split_commas(*host).size() != hosts) {
    return fmt::format(
        "host=\"{}\" lists {} host names for {} hostaddr values: give one host name per hostaddr "
        "entry, or none",
        *host, split_commas(*host).size(), hosts);
  }
  if (port && !port->empty()) {
    const std::size_t ports = split_commas(*port).size();
    if (ports != 1 && ports != hosts) {
      return fmt::format("port=\"{}\" lists {} ports for {} hosts: give one port for all hosts or one per host", *port,
                         ports, hosts);
    }
  }

  struct enum_rule {
    std::string_view keyword;
    std::string_view accepted;  // space-separated
  };
  static constexpr enum_rule enums[] = {
      {"sslmode", "disable allow prefer require verify-ca verify-full"},
      {"gssencmode", "disable prefer require"},
      {"channel_binding", "disable prefer require"},
      {"target_session_attrs", "any read-write read-only primary standby prefer-standby"},
  };
  for (const auto& rule : enums) {
    const auto v = value_of(opts, rule.keyword);
    if (!v) continue;
    std::vector<std::string_view> accepted;
    for (std::string_view a = rule.accepted; !a.empty();) {
      const std::size_t sp = a.find(' ');
      accepted.push_back(a.substr(0, sp));
      a = sp == std::string_view::npos ? std::string_view{} : a.substr(sp + 1);
    }
    if (std::find(accepted.begin(), accepted.end(), *v) == accepted.end()) {
      return fmt::format("{}=\"{}\" is invalid: expected one of {}", rule.keyword, *v, fmt::join(accepted, ", "));
    }
  }

  struct int_rule {
    std::string_view keyword;
    std::string_view meaning;
  };
  static constexpr int_rule ints[] = {
      {"connect_timeout", "seconds; 0 or less waits forever"},
      {"keepalives", "0 turns TCP keepalives off, any other value on"},
      {"keepalives_idle", "seconds"},
      {"keepalives_interval", "seconds"},
      {"keepalives_count", "probes"},
      {"tcp_user_timeout", "milliseconds; 0 or less is the system default"},
  };
  for (const auto& rule : ints) {
    const auto v = value_of(opts, rule.keyword);
    if (v && !libpq_int(*v)) {
      return fmt::format("{}=\"{}\" is invalid: expected an integer ({})", rule.keyword, *v, rule.meaning);
    }
  }
#ifdef __linux__
  // libpq hands these to setsockopt() for a TCP connection; Linux refuses values outside
  // these ranges, which would fail every connect.
  const auto keepalives = value_of(opts, "keepalives");
  const bool sockets_only = !has_hostaddr && has_host && [&] {
    const auto entries = split_commas(*host);
    return std::all_of(entries.begin(), entries.end(), [](auto h) { return h.starts_with('/'); });
  }();
  if ((!keepalives || libpq_int(*keepalives) != 0) && !sockets_only) {
    static constexpr std::tuple<std::string_view, int, std::string_view> kernel[] = {
        {"keepalives_idle", 32767, "seconds"},
        {"keepalives_interval", 32767, "seconds"},
        {"keepalives_count", 127, "probes"}};
    for (const auto& [keyword, max, unit] : kernel) {
      const auto v = value_of(opts, keyword);
      const auto n = v ? libpq_int(*v) : std::nullopt;  // an integer: checked above
      if (n && (*n < 1 || *n > max)) {
        return fmt::format(
            "{}=\"{}\" is invalid: expected an integer in 1–{} ({}; Linux refuses other values "
            "unless keepalives=0)",
            keyword, *v, max, unit);
      }
    }
  }
#endif

  static constexpr std::string_view tls[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
  auto tls_index = [](std::string_view v) {
    for (std::size_t i = 0; i < std::size(tls); ++i) {
      if (iequals(v, tls[i])) return static_cast<int>(i);
    }
    return -1;
  };
  const auto tls_min = value_of(opts, "ssl_min_protocol_version");
  const auto tls_max = value_of(opts, "ssl_max_protocol_version");
  for (const auto& [keyword, v] :
       {std::pair{"ssl_min_protocol_version", tls_min}, std::pair{"ssl_max_protocol_version", tls_max}}) {
    if (v && !v->empty() && tls_index(*v) < 0) {
      return fmt::format("{}=\"{}\" is invalid: expected one of {} (case does not matter; empty for no limit)", keyword,
                         *v, fmt::join(tls, ", "));
    }
  }
  if (tls_min && tls_max && !tls_min->empty() && !tls_max->empty() && tls_index(*tls_min) > tls_index(*tls_max)) {
    return fmt::format("ssl_min_protocol_version=\"{}\" is above ssl_max_protocol_version=\"{}\"", *tls_min, *tls_max);
  }
  return std::nullopt;
}
}  // namespace

std::string redact_dsn(std::string_view dsn) {
  try {
    const auto opts = parse_conninfo(dsn);
    if (!opts || (is_uri(dsn) && uri_has_stray_at(dsn))) return redact_conservatively(dsn);
    return is_uri(dsn) ? emit_uri(dsn.substr(0, dsn.find("://") + 3), opts.get()) : emit_key_value(opts.get());
  } catch (...) {
    return std::string(hidden);
  }
}

std::string dsn_value(std::string_view v) {
  if (!v.empty() && v.find_first_of(" '\\\t\n\r\f\v") == std::string_view::npos) return std::string(v);
  std::string out = "'";
  for (const char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

void validate_dsn(std::string_view dsn) {
  if (dsn.find('\0') != std::string_view::npos) {
    throw config_error("invalid connection string: it contains a NUL character (libpq would ignore the rest)");
  }
  std::string parse_error;
  const auto opts = parse_conninfo(dsn, &parse_error);
  if (!opts) {
    const std::string shown = redact_conservatively(dsn);
    throw config_error(
        fmt::format("invalid connection string \"{}\": {}", shown, sanitize_parse_error(parse_error, dsn, shown)));
  }
  if (is_uri(dsn) && uri_has_stray_at(dsn)) {
    throw config_error(
        fmt::format("invalid connection string \"{}\": an '@' after the user info; in the user name "
                    "and password write '@' as %40, '/' as %2F and '%' as %25",
                    redact_conservatively(dsn)));
  }
  if (auto problem = check_values(opts.get())) {
    throw config_error(fmt::format("invalid connection string \"{}\": {}", redact_dsn(dsn), *problem));
  }
}

}  // namespace steadypg
