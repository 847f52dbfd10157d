#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace steadypg {

/// Where a call of a multi-host client goes (docs/cluster.md). With one host every route
/// goes to it.
enum class route {
  primary,         ///< the primary (the default): writes, and reads that must see the latest data
  read_write,      ///< a primary that also accepts writes by default (same host as primary)
  prefer_replica,  ///< a replica within the lag limit, round robin; the primary when none qualifies
  replica,         ///< a replica within the lag limit, or no_replica_available at once
  any              ///< any host that is up, round robin
};

/// "primary", "read_write", "prefer_replica", "replica", "any".
[[nodiscard]] std::string_view to_string(route r) noexcept;
/// The route named `text` (as to_string() writes it), or nullopt.
[[nodiscard]] std::optional<route> parse_route(std::string_view text) noexcept;

/// A position in the primary's WAL after a committed write (client::write_token()): a read
/// given it goes to a replica only once that replica has replayed that far (read your own
/// writes), else to the primary.
struct write_token {
  std::uint64_t lsn = 0;  ///< the WAL position as a byte offset; 0: no token

  explicit operator bool() const noexcept { return lsn != 0; }
  /// PostgreSQL's text form, "16/B374D848".
  [[nodiscard]] std::string text() const;
  /// Parses the text form (pg_lsn); nullopt when malformed.
  [[nodiscard]] static std::optional<write_token> parse(std::string_view text) noexcept;
};

}  // namespace steadypg
