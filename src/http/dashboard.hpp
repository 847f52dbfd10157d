#pragma once

// The dashboard page served at / (src/http/dashboard.html, embedded at build time).

#include <string_view>

namespace steadypg::http::internal {

/// The page: inline CSS and JS, no external resources; polls api/snapshot every second.
[[nodiscard]] std::string_view dashboard_page() noexcept;

}  // namespace steadypg::http::internal
