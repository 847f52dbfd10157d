#pragma once

// Private: what the client needs to know about SQL text without parsing it (placeholders,
// transaction control, COMMIT). One lexer skips what the server would not read as code:
// '…' and E'…' strings, "…" identifiers, -- and nested /* */ comments, $$…$$ and
// $tag$…$tag$ bodies.

#include <cstddef>
#include <string_view>

namespace steadypg::internal {

/// True for a byte that can continue an identifier (ASCII letters, digits, _ and any byte
/// of a multibyte character, as PostgreSQL's lexer has it).
[[nodiscard]] bool is_ident_char(char c) noexcept;

/// True when `word` (lower case) is at `pos` as a whole keyword, case-insensitively.
[[nodiscard]] bool word_at(std::string_view sql, std::size_t pos, std::string_view word) noexcept;

/// Where the string, quoted identifier, comment or dollar-quoted body that starts at `pos`
/// ends (one past it; sql.size() when unterminated), or `pos` when none starts there.
[[nodiscard]] std::size_t skip_quoted(std::string_view sql, std::size_t pos) noexcept;

/// The first position at or after `pos` that is neither whitespace nor a comment.
[[nodiscard]] std::size_t skip_space_and_comments(std::string_view sql, std::size_t pos) noexcept;

/// The highest $n placeholder in `sql`, ignoring strings, identifiers, comments and
/// dollar-quoted bodies.
[[nodiscard]] int placeholder_count(std::string_view sql) noexcept;

/// True when the statement's first keyword ends, starts or nests a transaction (BEGIN, START,
/// COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION), after leading
/// whitespace, comments and parentheses.
[[nodiscard]] bool is_transaction_control(std::string_view sql) noexcept;

/// True when a statement of `sql` may commit: one that starts with COMMIT (WORK, TRANSACTION,
/// AND [NO] CHAIN, PREPARED '…') or END, or PREPARE TRANSACTION (its work outlives a lost
/// session). Only the first statement when `single_statement`, else every statement after a
/// `;`. Conservative: a false positive only makes a lost reply indeterminate instead of
/// retried.
[[nodiscard]] bool mentions_commit(std::string_view sql, bool single_statement) noexcept;

/// What in `sql` needs a server session of its own, which a transaction or statement pooler
/// does not give: "LISTEN", "a session SET", "a session advisory lock", "a WITH HOLD cursor",
/// "a named prepared statement (PREPARE)", and with `statement_mode` also "a transaction
/// block". "" when none. Strings, identifiers, comments and dollar-quoted bodies are skipped.
[[nodiscard]] std::string_view session_only_feature(std::string_view sql, bool statement_mode) noexcept;

/// True when a statement of `sql` cannot run inside a transaction block or a pipeline
/// (VACUUM, CREATE/DROP DATABASE, … CONCURRENTLY, ALTER SYSTEM, …), or is COPY: such text gets
/// no settings in the same round trip.
[[nodiscard]] bool refuses_transaction_block(std::string_view sql) noexcept;

}  // namespace steadypg::internal

#include <string>
#include <vector>

namespace steadypg::internal {

/// One word of SQL text: an identifier or keyword (lower-cased unless it was "quoted"), or a
/// single punctuation byte. Strings, comments and dollar-quoted bodies are skipped.
struct sql_token {
  std::string text;
  bool quoted = false;     ///< a "quoted identifier"
  bool word = false;       ///< an identifier or keyword (not punctuation)
  std::size_t offset = 0;  ///< where it starts in the text
};
/// The tokens of `sql` (see sql_token).
[[nodiscard]] std::vector<sql_token> sql_tokens(std::string_view sql);

/// The tables a statement of `sql` writes (INSERT INTO, UPDATE, DELETE FROM, MERGE INTO,
/// TRUNCATE, COPY … FROM, ALTER/DROP TABLE), bare names without their schema, lower-cased unless
/// quoted, in every statement and WITH clause of the text, each once. A light scan: writes
/// through functions, triggers, rules or views are not seen.
[[nodiscard]] std::vector<std::string> written_tables(std::string_view sql);

/// The text with whitespace and comments outside strings collapsed to single spaces and trimmed:
/// the same statement typed twice gives the same text.
[[nodiscard]] std::string normalize_sql(std::string_view sql);

}  // namespace steadypg::internal
