#pragma once

// One way to check a configured value: every validate() of an options struct and the
// environment table of client_options use these, so that a knob has one range and every
// message one format:
//
//     pool_options.max_size = 0 is out of range: expected an integer in 1–10000
//     POSTGRESQL_POOL_MAX="abc" is invalid: expected an integer in 1–10000

#include <chrono>
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>

namespace steadypg {
enum class pooler_mode;  // steadypg/connection.hpp
}  // namespace steadypg

namespace steadypg::internal {

/// Throws config_error when `mode` is not none and the connection settings carry a startup
/// parameter PgBouncer rejects (options=, replication= in the DSN; PGOPTIONS, PGGEQO in the
/// environment), before any socket opens. `dsn_name` and `mode_name` name the two settings.
void check_dsn_for_pooler(std::string_view dsn, pooler_mode mode, std::string_view dsn_name,
                          std::string_view mode_name);

/// An inclusive integer range with its unit ("" or " ms").
struct int_range {
  long long min;
  long long max;  // no_max: no upper bound
  std::string_view unit = "";
};

inline constexpr long long no_max = std::numeric_limits<long long>::max();

/// "an integer in 1–10000 ms", "an integer ≥ 1 ms".
[[nodiscard]] std::string describe(int_range r);

/// Throws config_error "{field} = {value}{unit} is out of range: expected {range}{note}".
void check_range(std::string_view field, long long value, int_range r, std::string_view note = {});
void check_range(std::string_view field, std::size_t value, int_range r, std::string_view note = {});
void check_range(std::string_view field, int value, int_range r, std::string_view note = {});
void check_range(std::string_view field, std::chrono::milliseconds value, int_range r, std::string_view note = {});
/// The same for a real number in [min, max].
void check_range(std::string_view field, double value, double min, double max, std::string_view note = {});
/// Throws config_error "{field} = {value} is out of range: {rule}" (relations between fields).
[[noreturn]] void out_of_range(std::string_view field, std::string_view value, std::string_view rule);

/// Parses a variable's value as plain decimal digits in `r`; throws config_error
/// "{name}=\"{value}\" is invalid: expected {range}".
[[nodiscard]] long long parse_int(std::string_view name, const std::string& value, int_range r);
/// true/false/1/0 (and TRUE, True, FALSE, False); throws config_error otherwise.
[[nodiscard]] bool parse_bool(std::string_view name, const std::string& value);

/// The range of each knob, shared by its component's validate() and the environment table.
namespace ranges {
inline constexpr int_range max_retries{0, 100};
inline constexpr int_range retry_delay{0, 600000, " ms"};
inline constexpr int_range breaker_threshold{1, 10000};
inline constexpr int_range breaker_open{100, 3600000, " ms"};
inline constexpr int_range connect_timeout{100, 600000, " ms"};
inline constexpr int_range slow_query_threshold{1, 3600000, " ms"};
inline constexpr int_range health_check_interval{100, 3600000, " ms"};
inline constexpr int_range pool_min{0, 10000};
inline constexpr int_range pool_max{1, 10000};
inline constexpr int_range acquire_timeout{1, 600000, " ms"};
inline constexpr int_range statement_timeout{0, 86400000, " ms"};
inline constexpr int_range batch_size{1, 1000000};
inline constexpr int_range batch_concurrency{1, 1024};
inline constexpr int_range batch_timeout{1, 86400000, " ms"};
inline constexpr int_range statement_cache{0, 100000};
inline constexpr int_range max_replica_lag{0, 3600000, " ms"};
inline constexpr int_range probe_interval{100, 60000, " ms"};
}  // namespace ranges

}  // namespace steadypg::internal
