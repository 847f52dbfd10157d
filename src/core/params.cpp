#include "steadypg/params.hpp"

#include <cmath>
#include <fmt/format.h>

#include "steadypg/error.hpp"

namespace steadypg {
namespace internal {

int checked_length(std::size_t n) {
  // PostgreSQL's field limit is 1 GiB; libpq takes int lengths.
  constexpr std::size_t limit = (std::size_t{1} << 30) - 1;
  if (n > limit) throw usage_error(fmt::format("parameter of {} bytes exceeds PostgreSQL's 1 GiB field limit", n));
  return static_cast<int>(n);
}

inline_text format_double(double v, oid type) {
  inline_text t;
  t.type = type;
  std::string_view special;
  if (std::isnan(v)) special = "NaN";
  else if (std::isinf(v)) special = v > 0 ? "Infinity" : "-Infinity";
  if (!special.empty()) {
    std::memcpy(t.buf.data(), special.data(), special.size());
    t.len = static_cast<int>(special.size());
    return t;
  }
  auto r = type == oids::float4 ? std::to_chars(t.buf.data(), t.buf.data() + t.buf.size() - 1, static_cast<float>(v))
                                : std::to_chars(t.buf.data(), t.buf.data() + t.buf.size() - 1, v);
  t.len = static_cast<int>(r.ptr - t.buf.data());
  return t;
}

inline_text format_time_point(std::chrono::system_clock::time_point tp) {
  using namespace std::chrono;
  const auto us = time_point_cast<microseconds>(tp);
  const auto day = floor<days>(us);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> tod{us - day};
  inline_text t;
  t.type = oids::timestamptz;
  const int y = static_cast<int>(ymd.year());
  auto r = fmt::format_to_n(t.buf.data(), t.buf.size() - 1, "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00{}",
                            y > 0 ? y : 1 - y, static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                            tod.hours().count(), tod.minutes().count(), tod.seconds().count(), tod.subseconds().count(),
                            y > 0 ? "" : " BC");
  t.len = static_cast<int>(r.size);
  return t;
}

void append_array_element(std::string& out, const param_ref& element) {
  if (element.data == nullptr) {
    out += "NULL";
    return;
  }
  if (element.format != 0) throw usage_error("binary values (bytea) cannot be array elements; use text or hex");
  out.push_back('"');
  for (int i = 0; i < element.length; ++i) {
    const char c = element.data[i];
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace internal

void param_list::push(const param_ref& r, bool force_text) {
  if (r.data == nullptr) {
    m_values.emplace_back(std::nullopt);
  } else {
    m_values.emplace_back(std::string(r.data, static_cast<std::size_t>(r.length)));
  }
  m_formats.push_back(force_text ? 0 : r.format);
  m_types.push_back(r.type);
}

std::vector<param_ref> param_list::refs() const {
  std::vector<param_ref> out;
  out.reserve(m_values.size());
  for (std::size_t i = 0; i < m_values.size(); ++i) {
    if (m_values[i]) {
      out.push_back({m_values[i]->c_str(), static_cast<int>(m_values[i]->size()), m_formats[i], m_types[i]});
    } else {
      out.push_back({nullptr, 0, 0, m_types[i]});
    }
  }
  return out;
}

std::string describe_params(std::span<const param_ref> params) {
  constexpr std::size_t max_value = 100;
  std::string out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (i > 0) out += ", ";
    out += '$';
    out += std::to_string(i + 1);
    out += '=';
    if (p.data == nullptr) {
      out += "NULL";
    } else if (p.format == 1) {
      out += "<binary ";
      out += std::to_string(p.length);
      out += " bytes>";
    } else {
      const std::string_view v(p.data, static_cast<std::size_t>(p.length));
      out += '\'';
      for (char c : v.substr(0, max_value)) {
        if (c == '\'') out += '\'';
        out += c;
      }
      out += '\'';
      if (v.size() > max_value) out += "…";
    }
  }
  return out;
}

}  // namespace steadypg
