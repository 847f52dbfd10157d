#pragma once

#include <charconv>
#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "steadypg/error.hpp"
#include "steadypg/params.hpp"

struct pg_result;

namespace steadypg {

/// How a column's text becomes a C++ value. Specialise it for your own types with
/// `static T from_text(std::string_view)`; throw conversion_error on bad input.
/// Types that accept SQL NULL also provide `static T null()`.
template <typename T, typename Enable = void>
struct result_traits;

namespace internal {
[[noreturn]] void throw_unparsable(std::string_view text, std::string_view type_name);
template <typename Int>
Int parse_integer(std::string_view text, std::string_view type_name) {
  Int v{};
  const char* end = text.data() + text.size();
  auto r = std::from_chars(text.data(), end, v);
  if (text.empty() || r.ec != std::errc{} || r.ptr != end) throw_unparsable(text, type_name);
  return v;
}
double parse_double(std::string_view text);
bool parse_bool(std::string_view text);
std::chrono::system_clock::time_point parse_timestamp(std::string_view text);
bytes parse_bytea(std::string_view text);
/// Splits a one-dimensional array literal into its elements (nullopt for NULL).
std::vector<std::optional<std::string>> parse_array(std::string_view text);
}  // namespace internal

// clang-format off
template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>)
struct result_traits<T> {
  // clang-format on
  static T from_text(std::string_view text) { return internal::parse_integer<T>(text, "integer"); }
};

template <>
struct result_traits<bool> {
  static bool from_text(std::string_view text) { return internal::parse_bool(text); }
};

template <>
struct result_traits<double> {
  static double from_text(std::string_view text) { return internal::parse_double(text); }
};

template <>
struct result_traits<float> {
  static float from_text(std::string_view text) { return static_cast<float>(internal::parse_double(text)); }
};

template <>
struct result_traits<std::string> {
  static std::string from_text(std::string_view text) { return std::string(text); }
};

/// A view into the result's memory: valid while the result lives.
template <>
struct result_traits<std::string_view> {
  static std::string_view from_text(std::string_view text) { return text; }
};

template <>
struct result_traits<bytes> {
  static bytes from_text(std::string_view text) { return internal::parse_bytea(text); }
};

template <>
struct result_traits<std::chrono::system_clock::time_point> {
  static std::chrono::system_clock::time_point from_text(std::string_view text) {
    return internal::parse_timestamp(text);
  }
};

template <typename T>
struct result_traits<std::optional<T>> {
  static std::optional<T> from_text(std::string_view text) { return result_traits<T>::from_text(text); }
  static std::optional<T> null() { return std::nullopt; }
};

// clang-format off
template <typename T>
  requires(!std::is_same_v<T, std::byte>)
struct result_traits<std::vector<T>> {
  // clang-format on
  static std::vector<T> from_text(std::string_view text) {
    std::vector<T> out;
    auto elements = internal::parse_array(text);
    out.reserve(elements.size());
    for (auto& e : elements) {
      if (e) {
        out.push_back(result_traits<T>::from_text(*e));
      } else if constexpr (requires { result_traits<T>::null(); }) {
        out.push_back(result_traits<T>::null());
      } else {
        throw conversion_error("array element is NULL; read the array as std::vector<std::optional<T>>");
      }
    }
    return out;
  }
};

class result;

/// One value of a result (row × column).
class field {
 public:
  field(const result* res, int row, int column) noexcept : m_res(res), m_row(row), m_column(column) {}

  /// True when the value is SQL NULL.
  [[nodiscard]] bool is_null() const noexcept;
  /// The value's text (empty for NULL).
  [[nodiscard]] std::string_view text() const noexcept;
  /// The column's name.
  [[nodiscard]] std::string_view name() const noexcept;
  /// Converts the value; NULL into a type without null() and unparsable text throw
  /// conversion_error naming the column and row.
  template <typename T>
  [[nodiscard]] T as() const {
    if (is_null()) {
      if constexpr (requires { result_traits<T>::null(); }) {
        return result_traits<T>::null();
      } else {
        throw_null();
      }
    }
    try {
      return result_traits<T>::from_text(text());
    } catch (const conversion_error& e) {
      rethrow_with_context(e);
    }
  }

 private:
  [[noreturn]] void throw_null() const;
  [[noreturn]] void rethrow_with_context(const conversion_error& e) const;
  const result* m_res;
  int m_row;
  int m_column;
};

/// One row of a result.
class row {
 public:
  row(const result* res, int row) noexcept : m_res(res), m_row(row) {}
  /// The value in column `column` (0-based); throws usage_error when out of range.
  [[nodiscard]] field operator[](std::size_t column) const;
  /// The value in the column named `name`; throws usage_error when there is none.
  [[nodiscard]] field operator[](std::string_view name) const;
  /// Number of columns.
  [[nodiscard]] std::size_t size() const noexcept;
  /// Converts the whole row; the number of types must match the number of columns.
  template <typename... Ts>
  [[nodiscard]] std::tuple<Ts...> as() const {
    check_columns(sizeof...(Ts));
    return as_impl<Ts...>(std::index_sequence_for<Ts...>{});
  }
  /// The 0-based row number.
  [[nodiscard]] int index() const noexcept { return m_row; }

 private:
  template <typename... Ts, std::size_t... I>
  std::tuple<Ts...> as_impl(std::index_sequence<I...>) const {
    return std::tuple<Ts...>{field(m_res, m_row, static_cast<int>(I)).template as<Ts>()...};
  }
  void check_columns(std::size_t n) const;
  const result* m_res;
  int m_row;
};

namespace internal {

/// Makes row `i` of a result into a row handle.
struct row_reader {
  using value_type = steadypg::row;
  static steadypg::row read(const result* r, int i) noexcept { return {r, i}; }
};

/// Makes row `i` of a result into a tuple (row::as<Ts...>).
template <typename... Ts>
struct tuple_reader {
  using value_type = std::tuple<Ts...>;
  static value_type read(const result* r, int i) { return steadypg::row(r, i).template as<Ts...>(); }
};

/// The random-access iterator over a result's rows, for `result` and `result::typed_rows`;
/// `Reader` makes the value of a row. `*it` returns that value (not a reference into the
/// result), as std::vector<bool>'s iterator does.
template <typename Reader>
class row_iterator {
 public:
  using value_type = typename Reader::value_type;
  using reference = value_type;
  using difference_type = std::ptrdiff_t;
  using iterator_category = std::random_access_iterator_tag;
  using iterator_concept = std::random_access_iterator_tag;
  /// What `it->` returns: the value, held for the length of the expression.
  struct pointer {
    value_type value;
    const value_type* operator->() const noexcept { return &value; }
  };

  row_iterator() = default;
  row_iterator(const result* r, difference_type i) noexcept : m_res(r), m_i(i) {}

  reference operator*() const { return Reader::read(m_res, static_cast<int>(m_i)); }
  pointer operator->() const { return {**this}; }
  reference operator[](difference_type n) const { return Reader::read(m_res, static_cast<int>(m_i + n)); }

  row_iterator& operator++() noexcept {
    ++m_i;
    return *this;
  }
  row_iterator operator++(int) noexcept {
    auto t = *this;
    ++m_i;
    return t;
  }
  row_iterator& operator--() noexcept {
    --m_i;
    return *this;
  }
  row_iterator operator--(int) noexcept {
    auto t = *this;
    --m_i;
    return t;
  }
  row_iterator& operator+=(difference_type n) noexcept {
    m_i += n;
    return *this;
  }
  row_iterator& operator-=(difference_type n) noexcept {
    m_i -= n;
    return *this;
  }
  friend row_iterator operator+(row_iterator it, difference_type n) noexcept { return it += n; }
  friend row_iterator operator+(difference_type n, row_iterator it) noexcept { return it += n; }
  friend row_iterator operator-(row_iterator it, difference_type n) noexcept { return it -= n; }
  friend difference_type operator-(const row_iterator& a, const row_iterator& b) noexcept { return a.m_i - b.m_i; }
  friend bool operator==(const row_iterator& a, const row_iterator& b) noexcept { return a.m_i == b.m_i; }
  friend std::strong_ordering operator<=>(const row_iterator& a, const row_iterator& b) noexcept {
    return a.m_i <=> b.m_i;
  }

 private:
  const result* m_res = nullptr;
  difference_type m_i = 0;
};

}  // namespace internal

/// The result of one statement. Cheap to copy (shares the underlying PGresult).
class result {
 public:
  result() = default;
  /// Takes ownership of a PGresult (used by connection).
  explicit result(pg_result* res);
  /// Takes ownership of a PGresult built from parts (the query cache) whose command tag is
  /// `command_tag` (libpq has no setter for it).
  result(pg_result* res, std::string command_tag);

  /// Number of rows.
  [[nodiscard]] std::size_t size() const noexcept;
  /// True when there are no rows.
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  /// Number of columns.
  [[nodiscard]] std::size_t columns() const noexcept;
  /// Name of column `i`.
  [[nodiscard]] std::string_view column_name(std::size_t i) const;
  /// Index of the column named `name`; throws usage_error when there is none.
  [[nodiscard]] std::size_t column_index(std::string_view name) const;
  /// Type OID of column `i`.
  [[nodiscard]] oid column_type(std::size_t i) const;
  /// Rows inserted/updated/deleted/selected, from the command tag (0 when not applicable).
  [[nodiscard]] std::uint64_t rows_affected() const noexcept;
  /// The command tag, e.g. "INSERT 0 1", "SELECT 3".
  [[nodiscard]] std::string_view command() const noexcept;

  /// Row `i`; throws usage_error when out of range.
  [[nodiscard]] row operator[](std::size_t i) const;

  /// Iterates rows (random access; `*it` is a row handle, made on the fly).
  using iterator = internal::row_iterator<internal::row_reader>;
  using const_iterator = iterator;
  [[nodiscard]] iterator begin() const noexcept { return {this, 0}; }
  [[nodiscard]] iterator end() const noexcept { return {this, static_cast<std::ptrdiff_t>(size())}; }

  /// Typed rows for structured bindings: `for (auto [id, name] : rs.rows<int, std::string>())`.
  /// A random-access range over the result (valid while the result lives); `*it` converts the row.
  template <typename... Ts>
  class typed_rows {
   public:
    using iterator = internal::row_iterator<internal::tuple_reader<Ts...>>;
    using const_iterator = iterator;
    explicit typed_rows(const result* r) noexcept : m_res(r) {}
    [[nodiscard]] iterator begin() const noexcept { return {m_res, 0}; }
    [[nodiscard]] iterator end() const noexcept { return {m_res, static_cast<std::ptrdiff_t>(m_res->size())}; }
    /// Number of rows.
    [[nodiscard]] std::size_t size() const noexcept { return m_res->size(); }
    /// True when there are no rows.
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }
    /// Row `i`, converted; throws usage_error when out of range.
    [[nodiscard]] std::tuple<Ts...> operator[](std::size_t i) const { return (*m_res)[i].template as<Ts...>(); }

   private:
    const result* m_res;
  };

  /// Typed rows; checks the column count once, up front.
  template <typename... Ts>
  [[nodiscard]] typed_rows<Ts...> rows() const {
    check_columns(sizeof...(Ts));
    return typed_rows<Ts...>(this);
  }

  /// The single value of a one-row, one-column result; anything else is a usage_error.
  template <typename T>
  [[nodiscard]] T as() const {
    check_single();
    return field(this, 0, 0).as<T>();
  }

  /// The first column of every row.
  template <typename T>
  [[nodiscard]] std::vector<T> vector() const {
    check_columns(1);
    std::vector<T> out;
    out.reserve(size());
    for (std::size_t i = 0; i < size(); ++i) out.push_back(field(this, static_cast<int>(i), 0).as<T>());
    return out;
  }

  /// The underlying PGresult (owned by this object).
  [[nodiscard]] pg_result* native_handle() const noexcept { return m_res.get(); }

 private:
  void check_columns(std::size_t n) const;
  void check_single() const;
  std::shared_ptr<pg_result> m_res;
  std::shared_ptr<const std::string> m_command;  // set for a result built from parts
};

}  // namespace steadypg

// A typed_rows view hands out iterators into the result, which outlive the view.
namespace std::ranges {
template <typename... Ts>
inline constexpr bool enable_borrowed_range<steadypg::result::typed_rows<Ts...>> = true;
}  // namespace std::ranges

namespace steadypg {

static_assert(std::random_access_iterator<result::iterator>);
static_assert(std::ranges::random_access_range<result> && std::ranges::sized_range<result>);
static_assert(std::random_access_iterator<result::typed_rows<int, std::string>::iterator>);
static_assert(std::ranges::random_access_range<result::typed_rows<int, std::string>> &&
              std::ranges::sized_range<result::typed_rows<int, std::string>>);

}  // namespace steadypg
