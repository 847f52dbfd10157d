// connection::identify(): which cluster and which timeline the connection talks to, asked once.

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "connection_impl.hpp"
#include "steadypg/connection.hpp"

namespace steadypg {

namespace {

// On a primary the timeline is the first eight hex digits of the current WAL file's name; a
// standby replays the timeline of its last restart point.
constexpr const char* k_identity_sql =
    "SELECT s.system_identifier::text, CASE WHEN pg_is_in_recovery() "
    "THEN (SELECT timeline_id FROM pg_control_checkpoint())::bigint "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END "
    "FROM pg_control_system() s";

}  // namespace

std::optional<server_identity> connection::identify() {
  auto& d = *m_impl;
  if (d.identity_asked) return d.identity;
  if (status() != connection_status::idle) return std::nullopt;  // asked later, when idle
  d.identity_asked = true;
  if (server_version() < 130000) return std::nullopt;  // no pg_current_xact_id() / pg_xact_status()
  try {
    auto r = execute(k_identity_sql);
    if (r.size() == 1) {
      const auto [system, timeline] = r[0].as<std::optional<std::string>, std::optional<std::int64_t>>();
      if (system && timeline) {
        server_identity id;
        id.system_identifier = std::strtoull(system->c_str(), nullptr, 10);
        id.timeline = static_cast<std::uint32_t>(*timeline);
        d.identity = id;
      }
    }
  } catch (const sql_error& e) {
    // No permission (an administrator revoked pg_control_system()): no identity, nothing worse.
    if (e.poisons_connection()) throw;
  }
  return d.identity;
}

std::optional<server_identity> connection::known_identity() const noexcept { return m_impl->identity; }

}  // namespace steadypg
