#pragma once

// Private: what the client needs to know about SQL text without parsing it.

#include <cstddef>
#include <string_view>

namespace steadypg::internal {

/// True for a byte that can continue an identifier.
[[nodiscard]] bool is_ident_char(char c) noexcept;

/// True when `word` (lower case) is at `pos` as a whole keyword, case-insensitively.
[[nodiscard]] bool word_at(std::string_view sql, std::size_t pos, std::string_view word) noexcept;

/// The highest $n placeholder in `sql`, ignoring strings, identifiers, comments and
/// dollar-quoted bodies.
[[nodiscard]] int placeholder_count(std::string_view sql) noexcept;

/// True when the statement's first keyword ends, starts or nests a transaction (BEGIN, START,
/// COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION), after leading
/// whitespace and comments.
[[nodiscard]] bool is_transaction_control(std::string_view sql) noexcept;

/// True when the text mentions COMMIT / END as a statement (conservative).
[[nodiscard]] bool mentions_commit(std::string_view sql, bool single_statement) noexcept;

}  // namespace steadypg::internal
