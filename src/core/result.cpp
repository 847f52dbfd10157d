#include "steadypg/result.hpp"

#include <libpq-fe.h>

#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

namespace steadypg {
namespace internal {

void throw_unparsable(std::string_view text, std::string_view type_name) {
  constexpr std::size_t shown = 64;
  throw conversion_error(
      fmt::format("cannot parse \"{}{}\" as {}", text.substr(0, shown), text.size() > shown ? "…" : "", type_name));
}

double parse_double(std::string_view text) {
  if (text == "NaN") return std::nan("");
  if (text == "Infinity") return HUGE_VAL;
  if (text == "-Infinity") return -HUGE_VAL;
  double v{};
  const char* end = text.data() + text.size();
  auto r = std::from_chars(text.data(), end, v);
  if (text.empty() || r.ec != std::errc{} || r.ptr != end) throw_unparsable(text, "floating-point number");
  return v;
}

bool parse_bool(std::string_view text) {
  if (text == "t" || text == "true") return true;
  if (text == "f" || text == "false") return false;
  throw_unparsable(text, "boolean");
}

namespace {

int digits(std::string_view text, std::size_t& pos, std::size_t n, std::string_view whole) {
  if (pos + n > text.size()) throw_unparsable(whole, "timestamp");
  int v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') throw_unparsable(whole, "timestamp");
    v = v * 10 + (c - '0');
  }
  pos += n;
  return v;
}

void expect(std::string_view text, std::size_t& pos, char c, std::string_view whole) {
  if (pos >= text.size() || text[pos] != c) throw_unparsable(whole, "timestamp");
  ++pos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::chrono::system_clock::time_point parse_timestamp(std::string_view text) {
  // ISO DateStyle: "YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]"; no zone means UTC.
  using namespace std::chrono;
  std::string_view s = text;
  bool bc = false;
  if (s.ends_with(" BC")) {
    bc = true;
    s.remove_suffix(3);
  }
  std::size_t pos = 0;
  std::size_t year_digits = 0;
  while (year_digits < s.size() && s[year_digits] >= '0' && s[year_digits] <= '9') ++year_digits;
  if (year_digits < 4) throw_unparsable(text, "timestamp");
  int y = digits(s, pos, year_digits, text);
  expect(s, pos, '-', text);
  const int mo = digits(s, pos, 2, text);
  expect(s, pos, '-', text);
  const int d = digits(s, pos, 2, text);
  int hh = 0, mi = 0, ss = 0;
  long us = 0;
  if (pos < s.size() && (s[pos] == ' ' || s[pos] == 'T')) {
    ++pos;
    hh = digits(s, pos, 2, text);
    expect(s, pos, ':', text);
    mi = digits(s, pos, 2, text);
    expect(s, pos, ':', text);
    ss = digits(s, pos, 2, text);
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      long scale = 100000;
      std::size_t n = 0;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (scale > 0) us += (s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
        ++n;
      }
      if (n == 0) throw_unparsable(text, "timestamp");
    }
  }
  int offset_seconds = 0;
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = digits(s, pos, 2, text), om = 0, os = 0;
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      om = digits(s, pos, 2, text);
      if (pos < s.size() && s[pos] == ':') {
        ++pos;
        os = digits(s, pos, 2, text);
      }
    }
    offset_seconds = sign * (oh * 3600 + om * 60 + os);
  }
  if (pos != s.size()) throw_unparsable(text, "timestamp");
  if (bc) y = 1 - y;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || hh > 24 || mi > 59 || ss > 60) throw_unparsable(text, "timestamp");
  const sys_time<microseconds> tp =
      sys_days{ymd} + hours{hh} + minutes{mi} + seconds{ss} + microseconds{us} - seconds{offset_seconds};
  // system_clock counts nanoseconds in 64 bits: about the years 1678 to 2261.
  const auto lo = time_point_cast<microseconds>(system_clock::time_point::min()) + microseconds{1};
  const auto hi = time_point_cast<microseconds>(system_clock::time_point::max()) - microseconds{1};
  if (tp < lo || tp > hi) {
    throw conversion_error(
        fmt::format("timestamp \"{}\" is outside the range of std::chrono::system_clock "
                    "(about 1678–2261); read it as text",
                    text));
  }
  return time_point_cast<system_clock::duration>(tp);
}

bytes parse_bytea(std::string_view text) {
  bytes out;
  if (text.starts_with("\\x")) {
    if (text.size() % 2 != 0) throw_unparsable(text, "bytea (hex)");
    out.reserve((text.size() - 2) / 2);
    for (std::size_t i = 2; i < text.size(); i += 2) {
      const int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
      if (hi < 0 || lo < 0) throw_unparsable(text, "bytea (hex)");
      out.push_back(static_cast<std::byte>(hi * 16 + lo));
    }
    return out;
  }
  // Escape format (bytea_output = 'escape').
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out.push_back(static_cast<std::byte>(text[i]));
    } else if (i + 1 < text.size() && text[i + 1] == '\\') {
      out.push_back(std::byte{'\\'});
      ++i;
    } else if (i + 3 < text.size()) {
      int v = 0;
      for (int k = 1; k <= 3; ++k) {
        const char c = text[i + static_cast<std::size_t>(k)];
        if (c < '0' || c > '7') throw_unparsable(text, "bytea (escape)");
        v = v * 8 + (c - '0');
      }
      out.push_back(static_cast<std::byte>(v));
      i += 3;
    } else {
      throw_unparsable(text, "bytea (escape)");
    }
  }
  return out;
}

std::vector<std::optional<std::string>> parse_array(std::string_view text) {
  std::vector<std::optional<std::string>> out;
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') throw_unparsable(text, "array");
  std::size_t i = 1;
  const std::size_t end = text.size() - 1;
  if (i == end) return out;
  while (true) {
    if (text[i] == '{') throw conversion_error("multi-dimensional arrays are not supported; read the column as text");
    if (text[i] == '"') {
      std::string v;
      ++i;
      while (i < end && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < end) ++i;
        v.push_back(text[i]);
        ++i;
      }
      if (i >= end) throw_unparsable(text, "array");
      ++i;  // closing quote
      out.emplace_back(std::move(v));
    } else {
      const std::size_t start = i;
      while (i < end && text[i] != ',') ++i;
      auto v = text.substr(start, i - start);
      if (v == "NULL") out.emplace_back(std::nullopt);
      else out.emplace_back(std::string(v));
    }
    if (i == end) break;
    if (text[i] != ',') throw_unparsable(text, "array");
    ++i;
  }
  return out;
}

}  // namespace internal

result::result(pg_result* res) : m_res(res, &PQclear) {}
result::result(pg_result* res, std::string command_tag)
    : m_res(res, &PQclear), m_command(std::make_shared<const std::string>(std::move(command_tag))) {}

std::size_t result::size() const noexcept { return m_res ? static_cast<std::size_t>(PQntuples(m_res.get())) : 0; }
std::size_t result::columns() const noexcept { return m_res ? static_cast<std::size_t>(PQnfields(m_res.get())) : 0; }

std::string_view result::column_name(std::size_t i) const {
  if (i >= columns()) throw usage_error(fmt::format("column {} out of range: the result has {} columns", i, columns()));
  return PQfname(m_res.get(), static_cast<int>(i));
}

std::size_t result::column_index(std::string_view name) const {
  for (std::size_t i = 0; i < columns(); ++i) {
    if (PQfname(m_res.get(), static_cast<int>(i)) == name) return i;
  }
  throw usage_error(fmt::format("the result has no column named \"{}\"", name));
}

oid result::column_type(std::size_t i) const {
  if (i >= columns()) throw usage_error(fmt::format("column {} out of range: the result has {} columns", i, columns()));
  return PQftype(m_res.get(), static_cast<int>(i));
}

std::uint64_t result::rows_affected() const noexcept {
  if (!m_res) return 0;
  if (m_command) {
    // PQcmdTuples' rule: the tag's last word, for the commands that count rows.
    const std::string& tag = *m_command;
    static constexpr std::string_view counted[] = {"SELECT ", "INSERT ", "UPDATE ", "DELETE ",
                                                   "MERGE ",  "MOVE ",   "FETCH ",  "COPY "};
    bool counts = false;
    for (auto c : counted) counts = counts || std::string_view(tag).starts_with(c);
    const auto space = tag.rfind(' ');
    return counts && space != std::string::npos ? std::strtoull(tag.c_str() + space + 1, nullptr, 10) : 0;
  }
  const char* t = PQcmdTuples(m_res.get());
  return (t && *t) ? std::strtoull(t, nullptr, 10) : 0;
}

std::string_view result::command() const noexcept {
  if (!m_res) return {};
  if (m_command) return *m_command;
  const char* t = PQcmdStatus(m_res.get());
  return t ? t : "";
}

row result::operator[](std::size_t i) const {
  if (i >= size()) throw usage_error(fmt::format("row {} out of range: the result has {} rows", i, size()));
  return {this, static_cast<int>(i)};
}

void result::check_columns(std::size_t n) const {
  if (n != columns()) {
    throw usage_error(fmt::format("asked for {} columns but the result has {}", n, columns()));
  }
}

void result::check_single() const {
  if (columns() != 1 || size() != 1) {
    throw usage_error(
        fmt::format("expected exactly one row with one column, got {} rows × {} columns", size(), columns()));
  }
}

bool field::is_null() const noexcept { return PQgetisnull(m_res->native_handle(), m_row, m_column) != 0; }

std::string_view field::text() const noexcept {
  auto* r = m_res->native_handle();
  return {PQgetvalue(r, m_row, m_column), static_cast<std::size_t>(PQgetlength(r, m_row, m_column))};
}

std::string_view field::name() const noexcept { return PQfname(m_res->native_handle(), m_column); }

void field::throw_null() const {
  throw conversion_error(fmt::format("column \"{}\" (row {}) is NULL; read it as std::optional<T>", name(), m_row));
}

void field::rethrow_with_context(const conversion_error& e) const {
  throw conversion_error(fmt::format("column \"{}\" (row {}): {}", name(), m_row, e.what()));
}

field row::operator[](std::size_t column) const {
  if (column >= size()) {
    throw usage_error(fmt::format("column {} out of range: the result has {} columns", column, size()));
  }
  return {m_res, m_row, static_cast<int>(column)};
}

field row::operator[](std::string_view name) const {
  return {m_res, m_row, static_cast<int>(m_res->column_index(name))};
}

std::size_t row::size() const noexcept { return m_res->columns(); }

void row::check_columns(std::size_t n) const {
  if (n != size()) throw usage_error(fmt::format("asked for {} columns but the row has {}", n, size()));
}

}  // namespace steadypg
