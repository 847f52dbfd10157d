#include "sql_scan.hpp"

#include <algorithm>
#include <initializer_list>

namespace steadypg::internal {

namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// One past the closing `quote` of a string or identifier opened at `pos` (a doubled quote
// stands for itself; a backslash escapes the next byte in E'…').
std::size_t skip_until_quote(std::string_view sql, std::size_t pos, char quote, bool backslash_escapes) noexcept {
  const std::size_t n = sql.size();
  std::size_t i = pos + 1;
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
      return i + 1;
    }
    ++i;
  }
  return n;
}

// One past the */ that closes the comment opened at `pos`; comments nest.
std::size_t skip_block_comment(std::string_view sql, std::size_t pos) noexcept {
  const std::size_t n = sql.size();
  std::size_t i = pos;
  int depth = 0;
  while (i < n) {
    if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') {
      ++depth;
      i += 2;
    } else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') {
      i += 2;
      if (--depth == 0) return i;
    } else {
      ++i;
    }
  }
  return n;
}

// Skips whitespace and comments from `pos`; true when `word` starts there.
bool keyword_after(std::string_view sql, std::size_t& pos, std::string_view word) noexcept {
  pos = skip_space_and_comments(sql, pos);
  if (!word_at(sql, pos, word)) return false;
  pos += word.size();
  return true;
}

// True when the statement that starts at `pos` (after whitespace and comments) may commit.
bool statement_commits(std::string_view sql, std::size_t pos) noexcept {
  pos = skip_space_and_comments(sql, pos);
  // COMMIT [WORK | TRANSACTION] [AND [NO] CHAIN], COMMIT PREPARED '…', END [WORK | TRANSACTION].
  if (word_at(sql, pos, "commit") || word_at(sql, pos, "end")) return true;
  return keyword_after(sql, pos, "prepare") && keyword_after(sql, pos, "transaction");
}

}  // namespace

bool is_ident_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
         (static_cast<unsigned char>(c) & 0x80) != 0;
}

bool word_at(std::string_view sql, std::size_t pos, std::string_view word) noexcept {
  if (pos > sql.size() || word.size() > sql.size() - pos) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    char c = sql[pos + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  const bool before_ok = pos == 0 || !is_ident_char(sql[pos - 1]);
  const bool after_ok = pos + word.size() == sql.size() || !is_ident_char(sql[pos + word.size()]);
  return before_ok && after_ok;
}

std::size_t skip_quoted(std::string_view sql, std::size_t pos) noexcept {
  const std::size_t n = sql.size();
  if (pos >= n) return pos;
  const char c = sql[pos];
  const bool more = pos + 1 < n;
  if (c == '\'') {
    const bool escape_string =
        pos > 0 && (sql[pos - 1] == 'E' || sql[pos - 1] == 'e') && (pos < 2 || !is_ident_char(sql[pos - 2]));
    return skip_until_quote(sql, pos, '\'', escape_string);
  }
  if (c == '"') return skip_until_quote(sql, pos, '"', false);
  if (c == '-' && more && sql[pos + 1] == '-') {
    const std::size_t eol = sql.find('\n', pos + 2);
    return eol == std::string_view::npos ? n : eol + 1;
  }
  if (c == '/' && more && sql[pos + 1] == '*') return skip_block_comment(sql, pos);
  // Dollar quoting: $$…$$ or $tag$…$tag$ (a tag does not start with a digit: $1 is a
  // placeholder, and a $ inside an identifier quotes nothing).
  if (c == '$' && more && !is_digit(sql[pos + 1]) && (pos == 0 || !is_ident_char(sql[pos - 1]))) {
    std::size_t j = pos + 1;
    while (j < n && is_ident_char(sql[j])) ++j;
    if (j < n && sql[j] == '$') {
      const std::string_view tag = sql.substr(pos, j - pos + 1);
      const std::size_t close = sql.find(tag, j + 1);
      return close == std::string_view::npos ? n : close + tag.size();
    }
  }
  return pos;
}

std::size_t skip_space_and_comments(std::string_view sql, std::size_t pos) noexcept {
  while (pos < sql.size()) {
    if (is_space(sql[pos])) {
      ++pos;
    } else if (sql[pos] == '-' || sql[pos] == '/') {
      const std::size_t next = skip_quoted(sql, pos);
      if (next == pos) break;
      pos = next;
    } else {
      break;
    }
  }
  return pos;
}

int placeholder_count(std::string_view sql) noexcept {
  int highest = 0;
  const std::size_t n = sql.size();
  std::size_t i = 0;
  while (i < n) {
    if (const std::size_t next = skip_quoted(sql, i); next != i) {
      i = next;
    } else if (sql[i] == '$' && i + 1 < n && is_digit(sql[i + 1]) && (i == 0 || !is_ident_char(sql[i - 1]))) {
      ++i;
      int v = 0;
      while (i < n && is_digit(sql[i])) {
        v = std::min(v * 10 + (sql[i] - '0'), 1 << 20);
        ++i;
      }
      highest = std::max(highest, v);
    } else {
      ++i;
    }
  }
  return highest;
}

bool is_transaction_control(std::string_view sql) noexcept {
  std::size_t i = skip_space_and_comments(sql, 0);
  while (i < sql.size() && sql[i] == '(') i = skip_space_and_comments(sql, i + 1);
  for (std::string_view w : {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}) {
    if (word_at(sql, i, w)) return true;
  }
  return keyword_after(sql, i, "prepare") && keyword_after(sql, i, "transaction");
}

namespace {

// Calls `fn(pos)` at the start of each statement of `sql` (after whitespace and comments) and
// `word(pos)` at each identifier outside strings and comments; stops when either returns true.
template <typename AtStatement, typename AtWord>
bool scan_statements(std::string_view sql, AtStatement at_statement, AtWord at_word) {
  const std::size_t n = sql.size();
  std::size_t i = skip_space_and_comments(sql, 0);
  if (at_statement(i)) return true;
  while (i < n) {
    if (const std::size_t next = skip_quoted(sql, i); next != i) {
      i = next;
    } else if (sql[i] == ';') {
      i = skip_space_and_comments(sql, i + 1);
      if (i < n && at_statement(i)) return true;
    } else if (is_ident_char(sql[i]) && (i == 0 || !is_ident_char(sql[i - 1]))) {
      if (at_word(i)) return true;
      while (i < n && is_ident_char(sql[i])) ++i;
    } else {
      ++i;
    }
  }
  return false;
}

bool any_word_at(std::string_view sql, std::size_t pos, std::initializer_list<std::string_view> words) noexcept {
  return std::any_of(words.begin(), words.end(), [&](std::string_view w) { return word_at(sql, pos, w); });
}

}  // namespace

std::string_view session_only_feature(std::string_view sql, bool statement_mode) noexcept {
  std::string_view found;
  bool in_declare = false;  // the current statement is DECLARE (a cursor)
  const auto at_statement = [&](std::size_t pos) {
    in_declare = word_at(sql, pos, "declare");
    std::size_t p = pos;
    if (word_at(sql, pos, "listen")) {
      found = "LISTEN";
    } else if (keyword_after(sql, p, "set")) {
      // SET LOCAL and SET TRANSACTION end with the transaction; SET [SESSION] outlives it.
      std::size_t q = p;
      const bool ends_with_transaction = keyword_after(sql, q = p, "local") ||
                                         keyword_after(sql, q = p, "transaction") ||
                                         keyword_after(sql, q = p, "constraints");
      if (!ends_with_transaction) found = "a session SET";
    } else if (keyword_after(sql, p, "prepare") && !keyword_after(sql, p, "transaction")) {
      found = "a named prepared statement (PREPARE)";
    } else if (statement_mode && (word_at(sql, pos, "begin") || word_at(sql, pos, "start"))) {
      found = "a transaction block";
    }
    return !found.empty();
  };
  const auto at_word = [&](std::size_t pos) {
    if (any_word_at(sql, pos,
                    {"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
                     "pg_try_advisory_lock_shared"})) {
      found = "a session advisory lock";
    } else if (in_declare && word_at(sql, pos, "with")) {
      std::size_t p = pos + 4;
      if (keyword_after(sql, p, "hold")) found = "a WITH HOLD cursor";
    }
    return !found.empty();
  };
  (void)scan_statements(sql, at_statement, at_word);
  return found;
}

bool refuses_transaction_block(std::string_view sql) noexcept {
  const auto at_statement = [&](std::size_t pos) {
    std::size_t p = pos;
    if (any_word_at(sql, pos, {"vacuum", "copy", "cluster", "reindex"})) return true;
    if (keyword_after(sql, p, "alter") && keyword_after(sql, p, "system")) return true;
    p = pos;
    if (keyword_after(sql, p, "create") || keyword_after(sql, p = pos, "drop")) {
      std::size_t q = p;
      if (keyword_after(sql, q, "database") || keyword_after(sql, q = p, "tablespace") ||
          keyword_after(sql, q = p, "subscription")) {
        return true;
      }
      q = p;
      (void)keyword_after(sql, q, "unique");
      if (keyword_after(sql, q, "index") && keyword_after(sql, q, "concurrently")) return true;
    }
    return false;
  };
  return scan_statements(sql, at_statement, [](std::size_t) { return false; });
}

bool mentions_commit(std::string_view sql, bool single_statement) noexcept {
  if (statement_commits(sql, 0)) return true;
  if (single_statement) return false;
  const std::size_t n = sql.size();
  std::size_t i = 0;
  while (i < n) {
    if (const std::size_t next = skip_quoted(sql, i); next != i) {
      i = next;
    } else if (sql[i] == ';') {
      ++i;
      if (statement_commits(sql, i)) return true;
    } else {
      ++i;
    }
  }
  return false;
}

}  // namespace steadypg::internal
