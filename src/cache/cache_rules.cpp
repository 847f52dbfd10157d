#include "cache_rules.hpp"

#include <algorithm>

#include "sql_scan.hpp"

namespace steadypg::internal {

namespace {

void add_unique(std::vector<std::string>& v, std::string s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(std::move(s));
}

bool ident_byte(char c) noexcept { return is_ident_char(c); }

// The JSON string value after `key` at `pos` ("Relation Name": "accounts"), unescaped.
std::optional<std::string> json_string_after(std::string_view json, std::size_t pos) {
  std::size_t i = json.find(':', pos);
  if (i == std::string_view::npos) return std::nullopt;
  i = json.find('"', i);
  if (i == std::string_view::npos) return std::nullopt;
  std::string out;
  for (++i; i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\' && i + 1 < json.size()) ++i;
    out.push_back(json[i]);
  }
  return out;
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_u64(std::string_view in, std::size_t pos) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[pos + i])) << (8 * i);
  return v;
}

constexpr std::string_view entry_magic = "SPE1";

}  // namespace

void check_text(std::string_view sql, statement_facts& facts) {
  const auto tokens = sql_tokens(sql);
  auto word = [&](std::size_t i, std::string_view w) {
    return i < tokens.size() && tokens[i].word && !tokens[i].quoted && tokens[i].text == w;
  };
  std::size_t first = 0;
  while (first < tokens.size() && tokens[first].text == "(") ++first;
  if (!(word(first, "select") || word(first, "with") || word(first, "values") || word(first, "table"))) {
    facts.bypass = cache_bypass_reason::not_a_query;
    return;
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    if (!t.word) {
      if (t.text == ";" && i + 1 < tokens.size()) {
        facts.bypass = cache_bypass_reason::not_a_query;  // several statements
        return;
      }
      continue;
    }
    if (t.quoted) continue;
    if (t.text == "for" && (word(i + 1, "update") || word(i + 1, "share") || word(i + 1, "no") || word(i + 1, "key"))) {
      facts.bypass = cache_bypass_reason::locking;
      return;
    }
    if (t.text == "insert" || t.text == "update" || t.text == "delete" || t.text == "merge") {
      facts.bypass = cache_bypass_reason::not_a_query;  // a data-modifying WITH
      return;
    }
    static constexpr std::string_view sql_value_functions[] = {"current_date",    "current_time",   "current_timestamp",
                                                               "localtime",       "localtimestamp", "current_user",
                                                               "session_user",    "current_role",   "user",
                                                               "current_catalog", "current_schema", "system_user"};
    if (std::find(std::begin(sql_value_functions), std::end(sql_value_functions), t.text) !=
        std::end(sql_value_functions)) {
      facts.bypass = cache_bypass_reason::volatile_function;
      return;
    }
    if (i + 1 < tokens.size() && tokens[i + 1].text == "(" && !tokens[i + 1].word) add_unique(facts.functions, t.text);
  }
}

void check_plan(std::string_view plan, statement_facts& facts) {
  for (std::size_t p = plan.find("\"Relation Name\""); p != std::string_view::npos;
       p = plan.find("\"Relation Name\"", p + 1)) {
    if (auto name = json_string_after(plan, p + 15)) add_unique(facts.tables, *name);
  }
  for (std::size_t p = plan.find("\"Schema\""); p != std::string_view::npos; p = plan.find("\"Schema\"", p + 1)) {
    if (auto schema = json_string_after(plan, p + 8); schema && schema->starts_with("pg_temp")) {
      facts.bypass = cache_bypass_reason::temp_table;
      return;
    }
  }
  if (plan.find("\"Node Type\": \"ModifyTable\"") != std::string_view::npos) {
    facts.bypass = cache_bypass_reason::not_a_query;
    return;
  }
  if (plan.find("\"Node Type\": \"LockRows\"") != std::string_view::npos) {
    facts.bypass = cache_bypass_reason::locking;
    return;
  }
  // name( in the plan's expressions (Output, Filter, Index Cond, …); over-collecting is safe:
  // a name that is not a function is simply not found in pg_proc.
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (plan[i] != '(' || i == 0 || !ident_byte(plan[i - 1])) continue;
    std::size_t b = i;
    while (b > 0 && ident_byte(plan[b - 1])) --b;
    std::string name(plan.substr(b, i - b));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    if (!name.empty() && !(name[0] >= '0' && name[0] <= '9')) add_unique(facts.functions, std::move(name));
  }
}

std::string table_tag(std::string_view table) { return "table:" + std::string(table); }

std::string cache_key(std::string_view identity, std::string_view normalized_sql, std::span<const param_ref> params) {
  std::string key = "steadypg:q1:";
  auto add = [&](std::string_view part) {
    put_u64(key, part.size());
    key.append(part);
  };
  add(identity);
  add(normalized_sql);
  key.push_back('t');  // result format: text
  put_u64(key, params.size());
  for (const auto& p : params) {
    put_u64(key, p.type);
    key.push_back(static_cast<char>('0' + p.format));
    if (p.data == nullptr) {
      key.push_back('N');
    } else {
      key.push_back('V');
      add(std::string_view(p.data, static_cast<std::size_t>(p.length)));
    }
  }
  return key;
}

std::string encode_entry(const entry_header& h, std::string_view payload) {
  std::string out(entry_magic);
  out.reserve(out.size() + 24 + 8 * h.versions.size() + payload.size());
  put_u64(out, static_cast<std::uint64_t>(h.fresh_until_ms));
  put_u64(out, static_cast<std::uint64_t>(h.stale_until_ms));
  put_u64(out, h.versions.size());
  for (auto v : h.versions) put_u64(out, v);
  out.append(payload);
  return out;
}

std::optional<std::pair<entry_header, std::string_view>> decode_entry(std::string_view in) {
  if (!in.starts_with(entry_magic) || in.size() < entry_magic.size() + 24) return std::nullopt;
  std::size_t pos = entry_magic.size();
  entry_header h;
  h.fresh_until_ms = static_cast<std::int64_t>(get_u64(in, pos));
  h.stale_until_ms = static_cast<std::int64_t>(get_u64(in, pos + 8));
  const std::uint64_t n = get_u64(in, pos + 16);
  pos += 24;
  if (n > 4096 || in.size() - pos < n * 8) return std::nullopt;
  for (std::uint64_t i = 0; i < n; ++i, pos += 8) h.versions.push_back(get_u64(in, pos));
  return std::pair{std::move(h), in.substr(pos)};
}

entry_state judge_entry(const entry_header& h, std::int64_t now_ms, std::span<const std::uint64_t> versions) noexcept {
  if (versions.size() != h.versions.size() || !std::equal(versions.begin(), versions.end(), h.versions.begin())) {
    return entry_state::dead;
  }
  if (now_ms < h.fresh_until_ms) return entry_state::fresh;
  if (now_ms < h.stale_until_ms) return entry_state::stale;
  return entry_state::dead;
}

}  // namespace steadypg::internal
