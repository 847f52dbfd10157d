#include <algorithm>

#include "sql_scan.hpp"

namespace steadypg::internal {

namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// The name of a "quoted identifier" opened at `pos` ("" stands for ").
std::string unquote(std::string_view sql, std::size_t pos, std::size_t end) {
  std::string out;
  for (std::size_t i = pos + 1; i + 1 < end || (i < end && sql[i] != '"'); ++i) {
    if (sql[i] == '"') {
      if (i + 1 < end && sql[i + 1] == '"') {
        out.push_back('"');
        ++i;
        continue;
      }
      break;
    }
    out.push_back(sql[i]);
  }
  return out;
}

}  // namespace

std::vector<sql_token> sql_tokens(std::string_view sql) {
  std::vector<sql_token> out;
  std::size_t i = 0;
  const std::size_t n = sql.size();
  while (i < n) {
    if (is_space(sql[i])) {
      ++i;
      continue;
    }
    if (sql[i] == '"') {
      const std::size_t end = skip_quoted(sql, i);
      out.push_back({unquote(sql, i, end), true, true, i});
      i = end;
      continue;
    }
    if (const std::size_t end = skip_quoted(sql, i); end != i) {
      i = end;  // a string, comment or dollar-quoted body
      continue;
    }
    if (is_ident_char(sql[i])) {
      sql_token t{{}, false, true, i};
      while (i < n && (is_ident_char(sql[i]) || sql[i] == '$')) t.text.push_back(lower(sql[i++]));
      out.push_back(std::move(t));
      continue;
    }
    out.push_back({std::string(1, sql[i]), false, false, i});
    ++i;
  }
  return out;
}

std::vector<std::string> written_tables(std::string_view sql) {
  const auto tokens = sql_tokens(sql);
  std::vector<std::string> out;
  auto word = [&](std::size_t i, std::string_view w) {
    return i < tokens.size() && tokens[i].word && !tokens[i].quoted && tokens[i].text == w;
  };
  // The (possibly schema-qualified) name at `i`: its last part.
  auto name_at = [&](std::size_t i) {
    while (word(i, "only") || word(i, "table") || word(i, "if") || word(i, "exists")) ++i;
    if (i >= tokens.size() || !tokens[i].word) return;
    std::size_t last = i;
    while (last + 2 < tokens.size() && tokens[last + 1].text == "." && !tokens[last + 1].word &&
           tokens[last + 2].word) {
      last += 2;
    }
    const std::string& name = tokens[last].text;
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  };
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i].word || tokens[i].quoted) continue;
    const std::string& t = tokens[i].text;
    const bool after_for = i > 0 && word(i - 1, "for");
    if ((t == "insert" || t == "merge") && word(i + 1, "into")) {
      name_at(i + 2);
    } else if (t == "update" && !after_for && !word(i + 1, "set") && !(i > 0 && word(i - 1, "do")) &&
               !(i > 0 && word(i - 1, "key")) && !(i > 0 && word(i - 1, "on"))) {
      name_at(i + 1);
    } else if (t == "delete" && word(i + 1, "from")) {
      name_at(i + 2);
    } else if (t == "truncate") {
      std::size_t j = i + 1;
      name_at(j);
      // TRUNCATE a, b, c
      while (true) {
        while (j < tokens.size() && tokens[j].text != "," && tokens[j].text != ";") ++j;
        if (j >= tokens.size() || tokens[j].text == ";") break;
        name_at(++j);
      }
    } else if (t == "copy") {
      // COPY name [(cols)] FROM …: a write; COPY … TO is not.
      std::size_t j = i + 1;
      while (j < tokens.size() && tokens[j].text != ";" && !word(j, "from") && !word(j, "to")) ++j;
      if (word(j, "from") && i + 1 < tokens.size() && tokens[i + 1].text != "(") name_at(i + 1);
    } else if ((t == "alter" || t == "drop") && word(i + 1, "table")) {
      name_at(i + 2);
    }
  }
  return out;
}

std::string normalize_sql(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  std::size_t i = 0;
  const std::size_t n = sql.size();
  bool pending_space = false;
  while (i < n) {
    if (is_space(sql[i])) {
      pending_space = true;
      ++i;
      continue;
    }
    const std::size_t end = skip_quoted(sql, i);
    if (end != i && sql[i] == '-') {  // -- comment
      pending_space = true;
      i = end;
      continue;
    }
    if (end != i && sql[i] == '/') {  // /* comment */
      pending_space = true;
      i = end;
      continue;
    }
    if (pending_space && !out.empty()) out.push_back(' ');
    pending_space = false;
    if (end != i) {
      out.append(sql.substr(i, end - i));  // strings, identifiers, dollar bodies: verbatim
      i = end;
    } else {
      out.push_back(sql[i++]);
    }
  }
  return out;
}

}  // namespace steadypg::internal
