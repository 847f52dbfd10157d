#pragma once

// The JSON documents of the HTTP endpoint, as nlohmann values (src/http only).

#include <nlohmann/json.hpp>
#include <string>

#include "steadypg/client.hpp"

namespace steadypg::http::internal {

/// Keeps members in the order they were added (as the CLI prints them).
using json = nlohmann::ordered_json;

[[nodiscard]] double round3(double v);
[[nodiscard]] json info_doc(const connection_info_report& info);
[[nodiscard]] json hosts_doc(const topology_report& topology);
[[nodiscard]] json health_doc(const health_report& health);
/// Compact text; invalid UTF-8 (from the server's messages) replaced by U+FFFD.
[[nodiscard]] std::string dump(const json& doc);

}  // namespace steadypg::http::internal
