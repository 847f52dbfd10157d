#pragma once

// Private: the pure parts of the query cache (docs/cache.md), tested with tables: what the text
// and the plan of a statement say about whether its result may be cached, the key, and the
// stored entry's header.

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "steadypg/cache.hpp"

namespace steadypg::internal {

/// What the text and the plan say about one statement.
struct statement_facts {
  std::optional<cache_bypass_reason> bypass;  ///< set: never cached
  std::vector<std::string> tables;            ///< tables read (bare names), from the plan
  std::vector<std::string> functions;         ///< names called (checked against pg_proc)
};

/// The rules that need only the text: a plain read (SELECT, WITH … SELECT, VALUES, TABLE; one
/// statement), no FOR UPDATE/SHARE, no SQL-value functions (CURRENT_DATE, CURRENT_USER, …).
/// Adds the names called as name(…) to `facts.functions`.
void check_text(std::string_view sql, statement_facts& facts);

/// The rules that need EXPLAIN (VERBOSE, FORMAT JSON): tables read (tags), temporary tables,
/// ModifyTable and LockRows nodes, functions named in the plan's expressions (views included).
void check_plan(std::string_view plan_json, statement_facts& facts);

/// The tag of a table: "table:<bare name>".
[[nodiscard]] std::string table_tag(std::string_view table);

/// The key: identity (database, role, search_path), normalised text, and every parameter's
/// type, format, NULL flag and bytes; the result format is text. Binary-safe.
[[nodiscard]] std::string cache_key(std::string_view identity, std::string_view normalized_sql,
                                    std::span<const param_ref> params);

/// The header stored in front of a serialised result.
struct entry_header {
  std::int64_t fresh_until_ms = 0;  ///< system_clock, milliseconds since the epoch
  std::int64_t stale_until_ms = 0;
  std::vector<std::uint64_t> versions;  ///< of the entry's tags, when its query started
};
[[nodiscard]] std::string encode_entry(const entry_header& h, std::string_view payload);
/// The header and the payload; nullopt for bytes that are not an entry.
[[nodiscard]] std::optional<std::pair<entry_header, std::string_view>> decode_entry(std::string_view bytes);

/// A server error as stored by negative caching (cache_policy::negative_ttl).
[[nodiscard]] std::string serialize_error(const server_error_fields& fields);
[[nodiscard]] bool is_serialized_error(std::string_view bytes) noexcept;
/// Throws cache_unavailable for damaged bytes.
[[nodiscard]] server_error_fields deserialize_error(std::string_view bytes);
/// The errors negative caching may keep: SQLSTATE classes 22, 2F, 38, 39 and P0.
[[nodiscard]] bool negative_cacheable(std::string_view sqlstate) noexcept;

/// What a stored entry is worth at `now_ms` with the tags' current `versions`.
enum class entry_state { fresh, stale, dead };
[[nodiscard]] entry_state judge_entry(const entry_header& h, std::int64_t now_ms,
                                      std::span<const std::uint64_t> versions) noexcept;

}  // namespace steadypg::internal
