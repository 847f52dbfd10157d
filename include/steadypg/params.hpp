#pragma once

#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace steadypg {

/// A PostgreSQL type OID (0 lets the server infer the type from context).
using oid = unsigned int;

/// A byte string (bytea). Sent in binary format, so NUL bytes are fine.
using bytes = std::vector<std::byte>;
/// A non-owning byte string (bytea parameter).
using bytes_view = std::span<const std::byte>;

/// Well-known type OIDs.
namespace oids {
inline constexpr oid unknown = 0, boolean = 16, bytea = 17, int8 = 20, int2 = 21, int4 = 23, text = 25, float4 = 700,
                     float8 = 701, bool_array = 1000, int2_array = 1005, int4_array = 1007, text_array = 1009,
                     int8_array = 1016, float4_array = 1021, float8_array = 1022, timestamp = 1114, timestamptz = 1184,
                     timestamptz_array = 1185, numeric = 1700;
}  // namespace oids

/// One bound parameter as libpq wants it. `data == nullptr` means SQL NULL.
struct param_ref {
  const char* data = nullptr;  ///< NUL-terminated text (format 0) or raw bytes (format 1)
  int length = 0;              ///< byte length (excluding the terminator for text)
  int format = 0;              ///< 0 text, 1 binary
  oid type = oids::unknown;    ///< type OID sent to the server
};

namespace internal {

/// Text that fits in a small inline buffer (numbers, booleans, timestamps).
struct inline_text {
  std::array<char, 48> buf{};
  int len = 0;
  oid type = oids::unknown;
  [[nodiscard]] param_ref ref() const noexcept { return {buf.data(), len, 0, type}; }
};

/// Text owned elsewhere that outlives the call (std::string, const char*).
struct borrowed_text {
  const char* data;
  int len;
  oid type = oids::unknown;
  [[nodiscard]] param_ref ref() const noexcept { return {data, len, 0, type}; }
};

/// Text built for the call (string_view copies, array literals).
struct owned_text {
  std::string text;
  oid type = oids::unknown;
  [[nodiscard]] param_ref ref() const noexcept { return {text.c_str(), static_cast<int>(text.size()), 0, type}; }
};

/// Raw bytes sent in binary format (bytea).
struct binary_data {
  const char* data;
  int len;
  oid type = oids::bytea;
  [[nodiscard]] param_ref ref() const noexcept { return {data, len, 1, type}; }
};

/// A possibly-NULL parameter.
template <typename Holder>
struct nullable {
  std::optional<Holder> value;
  oid type = oids::unknown;
  [[nodiscard]] param_ref ref() const noexcept { return value ? value->ref() : param_ref{nullptr, 0, 0, type}; }
};

/// Length of a buffer as the int libpq wants; throws usage_error above 1 GiB - 1.
int checked_length(std::size_t n);

template <typename Int>
inline_text format_integer(Int v, oid type) {
  inline_text t;
  t.type = type;
  auto r = std::to_chars(t.buf.data(), t.buf.data() + t.buf.size() - 1, v);
  t.len = static_cast<int>(r.ptr - t.buf.data());
  return t;
}

inline_text format_double(double v, oid type);
inline_text format_time_point(std::chrono::system_clock::time_point tp);
/// Appends one element to an array literal, quoted and escaped ("a\"b").
void append_array_element(std::string& out, const param_ref& element);

}  // namespace internal

/// How a C++ type becomes a query parameter. Specialise it for your own types:
/// `static auto to_param(const T&)` returns any holder with `param_ref ref() const`,
/// and `static constexpr oid type` names the PostgreSQL type (0 lets the server infer it).
template <typename T, typename Enable = void>
struct param_traits;

namespace internal {
/// The narrowest PostgreSQL integer type that holds every value of Int.
template <typename Int>
constexpr oid integer_oid() {
  constexpr std::size_t bits = sizeof(Int) * 8 - (std::is_signed_v<Int> ? 1 : 0);
  return bits <= 15 ? oids::int2 : bits <= 31 ? oids::int4 : bits <= 63 ? oids::int8 : oids::numeric;
}
}  // namespace internal

// clang-format off
template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> && sizeof(T) <= 8)
struct param_traits<T> {
  // clang-format on
  static constexpr oid type = internal::integer_oid<T>();
  static constexpr oid array_type = type == oids::int2   ? oids::int2_array
                                    : type == oids::int4 ? oids::int4_array
                                    : type == oids::int8 ? oids::int8_array
                                                         : oids::unknown;
  static internal::inline_text to_param(T v) { return internal::format_integer(v, type); }
};

template <>
struct param_traits<bool> {
  static constexpr oid type = oids::boolean;
  static constexpr oid array_type = oids::bool_array;
  static internal::inline_text to_param(bool v) {
    internal::inline_text t;
    t.buf[0] = v ? 't' : 'f';
    t.len = 1;
    t.type = type;
    return t;
  }
};

template <>
struct param_traits<double> {
  static constexpr oid type = oids::float8;
  static constexpr oid array_type = oids::float8_array;
  static internal::inline_text to_param(double v) { return internal::format_double(v, type); }
};

template <>
struct param_traits<float> {
  static constexpr oid type = oids::float4;
  static constexpr oid array_type = oids::float4_array;
  static internal::inline_text to_param(float v) { return internal::format_double(v, type); }
};

template <>
struct param_traits<std::string> {
  static constexpr oid type = oids::unknown;
  static constexpr oid array_type = oids::unknown;
  static internal::borrowed_text to_param(const std::string& s) {
    return {s.c_str(), internal::checked_length(s.size()), type};
  }
};

template <>
struct param_traits<std::string_view> {
  static constexpr oid type = oids::unknown;
  static constexpr oid array_type = oids::unknown;
  static internal::owned_text to_param(std::string_view s) {
    internal::checked_length(s.size());
    return {std::string(s), type};
  }
};

template <>
struct param_traits<const char*> {
  static constexpr oid type = oids::unknown;
  static constexpr oid array_type = oids::unknown;
  static internal::borrowed_text to_param(const char* s) {
    if (s == nullptr) return {nullptr, 0, type};
    return {s, internal::checked_length(std::strlen(s)), type};
  }
};

template <>
struct param_traits<char*> : param_traits<const char*> {};

template <std::size_t N>
struct param_traits<char[N]> : param_traits<const char*> {};

template <>
struct param_traits<std::nullopt_t> {
  static constexpr oid type = oids::unknown;
  static internal::nullable<internal::borrowed_text> to_param(std::nullopt_t) { return {}; }
};

template <typename Duration>
struct param_traits<std::chrono::time_point<std::chrono::system_clock, Duration>> {
  static constexpr oid type = oids::timestamptz;
  static constexpr oid array_type = oids::timestamptz_array;
  static internal::inline_text to_param(std::chrono::time_point<std::chrono::system_clock, Duration> tp) {
    return internal::format_time_point(std::chrono::time_point_cast<std::chrono::system_clock::duration>(tp));
  }
};

template <>
struct param_traits<bytes_view> {
  static constexpr oid type = oids::bytea;
  static internal::binary_data to_param(bytes_view b) {
    return {reinterpret_cast<const char*>(b.data()), internal::checked_length(b.size()), type};
  }
};

template <>
struct param_traits<bytes> {
  static constexpr oid type = oids::bytea;
  static internal::binary_data to_param(const bytes& b) { return param_traits<bytes_view>::to_param(b); }
};

template <typename T>
struct param_traits<std::optional<T>> {
  static constexpr oid type = param_traits<T>::type;
  static auto to_param(const std::optional<T>& v) {
    using holder = decltype(param_traits<T>::to_param(*v));
    internal::nullable<holder> n;
    n.type = type;
    if (v) n.value.emplace(param_traits<T>::to_param(*v));
    return n;
  }
};

/// A std::vector<T> binds as a one-dimensional array ('{…}' literal).
// clang-format off
template <typename T>
  requires(!std::is_same_v<T, std::byte>)
struct param_traits<std::vector<T>> {
  // clang-format on
  static constexpr oid type = [] {
    if constexpr (requires { param_traits<T>::array_type; }) return param_traits<T>::array_type;
    return oids::unknown;
  }();
  static internal::owned_text to_param(const std::vector<T>& v) {
    internal::owned_text t;
    t.type = type;
    t.text.push_back('{');
    bool first = true;
    for (const auto& e : v) {
      if (!first) t.text.push_back(',');
      first = false;
      if constexpr (std::is_same_v<T, bool>) {
        internal::append_array_element(t.text, param_traits<bool>::to_param(e).ref());
      } else {
        auto h = param_traits<T>::to_param(e);
        internal::append_array_element(t.text, h.ref());
      }
    }
    t.text.push_back('}');
    internal::checked_length(t.text.size());
    return t;
  }
};

namespace internal {
/// Converts `args` with param_traits (holders live on the stack for the call) and calls
/// `fn(std::span<const param_ref>)`.
template <typename Fn, typename... Args>
decltype(auto) with_params(Fn&& fn, const Args&... args) {
  if constexpr (sizeof...(Args) == 0) {
    return fn(std::span<const param_ref>{});
  } else {
    auto holders = std::make_tuple(param_traits<std::remove_cvref_t<Args>>::to_param(args)...);
    auto refs =
        std::apply([](const auto&... h) { return std::array<param_ref, sizeof...(Args)>{h.ref()...}; }, holders);
    return fn(std::span<const param_ref>(refs));
  }
}
}  // namespace internal

/// True when T has a param_traits specialisation.
// clang-format off
template <typename T>
concept bindable = requires(const T& v) { param_traits<std::remove_cvref_t<T>>::to_param(v).ref(); };
// clang-format on

/// A parameter list built at run time (the CLI, batch files). Owns every value.
class param_list {
 public:
  param_list() = default;

  /// Appends one value, converted with param_traits.
  template <bindable T>
  param_list& add(const T& v) {
    auto h = param_traits<std::remove_cvref_t<T>>::to_param(v);
    push(h.ref());
    return *this;
  }
  /// Appends a text value whose type the server infers.
  param_list& add_text(std::string_view text) {
    push({text.data(), internal::checked_length(text.size()), 0, oids::unknown}, true);
    return *this;
  }
  /// Appends SQL NULL.
  param_list& add_null(oid type = oids::unknown) {
    push({nullptr, 0, 0, type});
    return *this;
  }

  /// Number of parameters.
  [[nodiscard]] std::size_t size() const noexcept { return m_values.size(); }
  /// The parameters as libpq wants them; valid until the list changes.
  [[nodiscard]] std::vector<param_ref> refs() const;

 private:
  void push(const param_ref& r, bool force_text = false);
  std::vector<std::optional<std::string>> m_values;
  std::vector<int> m_formats;
  std::vector<oid> m_types;
};

/// The values as a log would show them: `$1='it''s', $2='42', $3=NULL, $4=<binary 12 bytes>`,
/// each value cut to 100 bytes. Only for logs the user opted into (log_parameters).
[[nodiscard]] std::string describe_params(std::span<const param_ref> params);

/// Same for C++ arguments (converted with param_traits as a query would).
template <bindable... Args>
[[nodiscard]] std::string describe_args(const Args&... args) {
  param_list l;
  (l.add(args), ...);
  return describe_params(l.refs());
}

}  // namespace steadypg
