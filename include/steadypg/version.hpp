#pragma once

/// steadypg version, the single source of truth (CMake parses this line).
#define STEADYPG_VERSION_STRING "0.1.0"

namespace steadypg {
/// The library version as "major.minor.patch".
inline constexpr const char* version = STEADYPG_VERSION_STRING;
}  // namespace steadypg
