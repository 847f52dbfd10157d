#pragma once

// JSON text the CLI writes without nlohmann::json, which would re-encode numbers through a
// double (losing digits, turning 1e400 into an error) and collapse duplicate object keys.
// These checks let the server's own text (json, jsonb, numeric, int8 …) be embedded as is.

#include <string>
#include <string_view>

namespace steadypg::cli {

/// True when `s` is exactly one JSON number (RFC 8259 §6): `-12.5e+3`, `0`, `1E400`;
/// false for `NaN`, `Infinity`, `01`, `.5`, `1.`, `+1` and surrounding whitespace.
[[nodiscard]] bool is_json_number(std::string_view s) noexcept;

/// True when `s` is exactly one JSON value (RFC 8259), optionally surrounded by JSON
/// whitespace, with strings in valid UTF-8 and without raw control characters. Any nesting
/// depth (checked without recursion).
[[nodiscard]] bool is_json_text(std::string_view s) noexcept;

/// `s` as a JSON string, written the way the rest of the CLI's output writes strings
/// (non-ASCII kept, invalid UTF-8 replaced by U+FFFD).
[[nodiscard]] std::string json_string(std::string_view s);

}  // namespace steadypg::cli
