#pragma once

// Pure request logic of the HTTP endpoint (unit-tested in tests/unit/http_test.cpp).

#include <string>
#include <string_view>

namespace steadypg::http::internal {

/// True when the Accept header prefers OpenMetrics 1.0 text over the 0.0.4 text format
/// (by q-value; Prometheus 2.42 sends openmetrics at q=1 … text/plain at q=0.5).
[[nodiscard]] bool wants_openmetrics(std::string_view accept);

/// True for a loopback host: "localhost", 127.0.0.0/8, "::1".
[[nodiscard]] bool is_loopback_host(std::string_view host);

/// The path label of postgresql_http_requests_total: one of the served paths, else "other"
/// (a request's path is never a label as it came).
[[nodiscard]] std::string_view path_label(std::string_view path);

/// Compares two strings in time that does not depend on where they differ.
[[nodiscard]] bool equal_secret(std::string_view a, std::string_view b);

}  // namespace steadypg::http::internal
