#include "sql_scan.hpp"

#include <algorithm>
#include <initializer_list>

namespace steadypg::internal {

bool is_ident_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool word_at(std::string_view s, std::size_t pos, std::string_view word) noexcept {
  if (pos + word.size() > s.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    char c = s[pos + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  const bool before_ok = pos == 0 || !is_ident_char(s[pos - 1]);
  const bool after_ok = pos + word.size() == s.size() || !is_ident_char(s[pos + word.size()]);
  return before_ok && after_ok;
}

int placeholder_count(std::string_view sql) noexcept {
  int highest = 0;
  const std::size_t n = sql.size();
  std::size_t i = 0;
  auto skip_quoted = [&](char quote, bool backslash_escapes) {
    ++i;
    while (i < n) {
      if (backslash_escapes && sql[i] == '\\') {
        i += 2;
        continue;
      }
      if (sql[i] == quote) {
        if (i + 1 < n && sql[i + 1] == quote) {
          i += 2;
          continue;
        }
        ++i;
        return;
      }
      ++i;
    }
  };
  while (i < n) {
    const char c = sql[i];
    if (c == '\'') {
      const bool escape_string = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') && (i < 2 || !is_ident_char(sql[i - 2]));
      skip_quoted('\'', escape_string);
    } else if (c == '"') {
      skip_quoted('"', false);
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 0;
      while (i < n) {
        if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') {
          ++depth;
          i += 2;
        } else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') {
          i += 2;
          if (--depth == 0) break;
        } else {
          ++i;
        }
      }
    } else if (c == '$' && i + 1 < n && sql[i + 1] >= '0' && sql[i + 1] <= '9' && (i == 0 || !is_ident_char(sql[i - 1]))) {
      ++i;
      int v = 0;
      while (i < n && sql[i] >= '0' && sql[i] <= '9') {
        v = std::min(v * 10 + (sql[i] - '0'), 1 << 20);
        ++i;
      }
      highest = std::max(highest, v);
    } else if (c == '$' && (i == 0 || !is_ident_char(sql[i - 1]))) {
      // Dollar quoting: $$…$$ or $tag$…$tag$.
      std::size_t j = i + 1;
      while (j < n && is_ident_char(sql[j])) ++j;
      if (j < n && sql[j] == '$') {
        const std::string_view tag = sql.substr(i, j - i + 1);
        const std::size_t close = sql.find(tag, j + 1);
        i = close == std::string_view::npos ? n : close + tag.size();
      } else {
        ++i;
      }
    } else {
      ++i;
    }
  }
  return highest;
}

bool is_transaction_control(std::string_view sql) noexcept {
  std::size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '(') {
      ++i;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      while (i < sql.size() && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      const auto close = sql.find("*/", i + 2);
      i = close == std::string_view::npos ? sql.size() : close + 2;
    } else {
      break;
    }
  }
  for (std::string_view w : {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}) {
    if (word_at(sql, i, w)) return true;
  }
  if (word_at(sql, i, "prepare")) {
    std::size_t j = i + 7;
    while (j < sql.size() && (sql[j] == ' ' || sql[j] == '\t' || sql[j] == '\n' || sql[j] == '\r')) ++j;
    return word_at(sql, j, "transaction");
  }
  return false;
}

bool mentions_commit(std::string_view sql, bool single_statement) noexcept {
  std::size_t start = 0;
  while (start < sql.size() && (sql[start] == ' ' || sql[start] == '\t' || sql[start] == '\n' || sql[start] == '\r')) {
    ++start;
  }
  if (word_at(sql, start, "commit") || word_at(sql, start, "end")) return true;
  if (single_statement) return false;
  for (std::size_t i = start; i < sql.size(); ++i) {
    if ((sql[i] == 'c' || sql[i] == 'C') && word_at(sql, i, "commit")) return true;
  }
  return false;
}

}  // namespace steadypg::internal
