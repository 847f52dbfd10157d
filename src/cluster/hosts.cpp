#include "hosts.hpp"

#include <libpq-fe.h>

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string_view>

#include "steadypg/dsn.hpp"
#include "steadypg/error.hpp"

namespace steadypg::internal {
namespace {

using options_ptr = std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)>;

options_ptr parse(const std::string& dsn) {
  char* err = nullptr;
  options_ptr o(PQconninfoParse(dsn.c_str(), &err), &PQconninfoFree);
  if (!o) {
    std::string msg = err ? err : "out of memory";
    PQfreemem(err);
    throw config_error(fmt::format("the DSN is malformed: {}", msg));
  }
  return o;
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto comma = s.find(',', start);
    out.emplace_back(s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

}  // namespace

std::vector<host_endpoint> split_hosts(const std::string& dsn) {
  auto opts = parse(dsn);
  std::map<std::string, std::string, std::less<>> values;
  std::vector<std::pair<std::string, std::string>> rest;  // every other keyword, in libpq's order
  for (auto* o = opts.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view k = o->keyword;
    if (k == "host" || k == "hostaddr" || k == "port" || k == "target_session_attrs") {
      values.emplace(k, o->val);
    } else {
      rest.emplace_back(k, o->val);
    }
  }
  auto value = [&](std::string_view k) -> std::string {
    auto it = values.find(k);
    return it == values.end() ? std::string{} : it->second;
  };
  const auto hosts = split_list(value("host"));
  const auto addrs = split_list(value("hostaddr"));
  const auto ports = split_list(value("port"));
  const std::size_t n = std::max(hosts.size(), addrs.size());
  auto nth = [](const std::vector<std::string>& v, std::size_t i) { return v.size() == 1 ? v[0] : v[i]; };

  std::vector<host_endpoint> out;
  if (n <= 1) {
    host_endpoint e;
    e.host = !hosts[0].empty() ? hosts[0] : !addrs[0].empty() ? addrs[0] : env_or("PGHOST", "localhost");
    e.port = !ports[0].empty() ? ports[0] : env_or("PGPORT", "5432");
    e.label = fmt::format("{}:{}", e.host, e.port);
    e.dsn = dsn;
    out.push_back(std::move(e));
    return out;
  }
  std::string common;
  for (const auto& [k, v] : rest) common += fmt::format("{}={} ", k, dsn_value(v));
  for (std::size_t i = 0; i < n; ++i) {
    host_endpoint e;
    const std::string h = hosts.size() > 1 || !hosts[0].empty() ? nth(hosts, i) : std::string{};
    const std::string a = addrs.size() > 1 || !addrs[0].empty() ? nth(addrs, i) : std::string{};
    const std::string p = nth(ports, i);
    e.host = !h.empty() ? h : !a.empty() ? a : "localhost";
    e.port = !p.empty() ? p : env_or("PGPORT", "5432");
    e.label = fmt::format("{}:{}", e.host, e.port);
    e.dsn = common;
    if (!h.empty()) e.dsn += fmt::format("host={} ", dsn_value(h));
    if (!a.empty()) e.dsn += fmt::format("hostaddr={} ", dsn_value(a));
    if (!p.empty()) e.dsn += fmt::format("port={}", dsn_value(p));
    while (!e.dsn.empty() && e.dsn.back() == ' ') e.dsn.pop_back();
    out.push_back(std::move(e));
  }
  return out;
}

std::optional<route> route_of_session_attrs(const std::string& dsn) {
  auto opts = parse(dsn);
  for (auto* o = opts.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr || std::string_view(o->keyword) != "target_session_attrs") continue;
    const std::string_view v = o->val;
    if (v == "read-write" || v == "primary") return route::primary;
    if (v == "prefer-standby") return route::prefer_replica;
    if (v == "standby" || v == "read-only") return route::replica;
    if (v == "any") return route::any;
  }
  return std::nullopt;
}

}  // namespace steadypg::internal
