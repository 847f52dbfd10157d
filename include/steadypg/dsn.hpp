#pragma once

#include <string>
#include <string_view>

namespace steadypg {

/// The DSN as libpq reads it (PQconninfoParse), normalized in its own form (key=value or URI),
/// with every secret (password, sslpassword, any keyword libpq displays as "*") as "****".
/// A string libpq cannot parse is shown conservatively (see docs/configuration.md). Never throws.
[[nodiscard]] std::string redact_dsn(std::string_view dsn);

/// Throws config_error, with the DSN redacted, unless libpq parses it and every value libpq checks
/// only when connecting (port, sslmode, connect_timeout, host/port counts, …) is valid.
void validate_dsn(std::string_view dsn);

/// `v` as a value of a key=value DSN: as it is when it needs no quoting, otherwise in single
/// quotes with `\` and `'` escaped (an empty value becomes `''`).
[[nodiscard]] std::string dsn_value(std::string_view v);

}  // namespace steadypg
