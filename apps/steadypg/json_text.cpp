#include "json_text.hpp"

#include <vector>

#include "cli.hpp"

namespace steadypg::cli {
namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

bool is_hex(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Reads one JSON value from s[i…] without descending into it (containers are handled by
// the caller's stack). Each function advances i past what it accepted.
class json_scanner {
 public:
  explicit json_scanner(std::string_view s) noexcept : m_s(s) {}

  bool scan_document() {
    std::vector<char> open;  // the containers we are in: '[' or '{'
    skip_space();
    while (true) {
      // A value is expected here.
      if (m_i >= m_s.size()) return false;
      const char c = m_s[m_i];
      if (c == '[' || c == '{') {
        ++m_i;
        skip_space();
        const char close = c == '[' ? ']' : '}';
        if (m_i < m_s.size() && m_s[m_i] == close) {
          ++m_i;
        } else {
          open.push_back(c);
          if (c == '{' && !scan_key()) return false;
          continue;
        }
      } else if (!scan_scalar()) {
        return false;
      }
      // After a value: the end, a separator, or the end of a container.
      while (true) {
        skip_space();
        if (open.empty()) return m_i == m_s.size();
        if (m_i >= m_s.size()) return false;
        const char d = m_s[m_i++];
        if (d == ',') {
          skip_space();
          if (open.back() == '{' && !scan_key()) return false;
          break;  // next value
        }
        if (d != (open.back() == '[' ? ']' : '}')) return false;
        open.pop_back();
      }
    }
  }

  bool scan_number() noexcept {
    if (m_i < m_s.size() && m_s[m_i] == '-') ++m_i;
    if (m_i >= m_s.size()) return false;
    if (m_s[m_i] == '0') {
      ++m_i;
    } else if (is_digit(m_s[m_i])) {
      while (m_i < m_s.size() && is_digit(m_s[m_i])) ++m_i;
    } else {
      return false;
    }
    if (m_i < m_s.size() && m_s[m_i] == '.') {
      ++m_i;
      if (!digits()) return false;
    }
    if (m_i < m_s.size() && (m_s[m_i] == 'e' || m_s[m_i] == 'E')) {
      ++m_i;
      if (m_i < m_s.size() && (m_s[m_i] == '+' || m_s[m_i] == '-')) ++m_i;
      if (!digits()) return false;
    }
    return true;
  }

  [[nodiscard]] bool at_end() const noexcept { return m_i == m_s.size(); }

 private:
  void skip_space() noexcept {
    while (m_i < m_s.size() && is_space(m_s[m_i])) ++m_i;
  }

  bool digits() noexcept {
    const std::size_t start = m_i;
    while (m_i < m_s.size() && is_digit(m_s[m_i])) ++m_i;
    return m_i > start;
  }

  // `"key"` then `:` (and the whitespace around them).
  bool scan_key() {
    if (m_i >= m_s.size() || m_s[m_i] != '"' || !scan_string()) return false;
    skip_space();
    if (m_i >= m_s.size() || m_s[m_i] != ':') return false;
    ++m_i;
    skip_space();
    return true;
  }

  bool scan_scalar() noexcept {
    const char c = m_s[m_i];
    if (c == '"') return scan_string();
    if (c == '-' || is_digit(c)) return scan_number();
    for (const std::string_view word : {"true", "false", "null"}) {
      if (m_s.substr(m_i).starts_with(word)) {
        m_i += word.size();
        return true;
      }
    }
    return false;
  }

  bool scan_string() noexcept {
    ++m_i;  // the opening quote
    while (m_i < m_s.size()) {
      const auto c = static_cast<unsigned char>(m_s[m_i]);
      if (c == '"') {
        ++m_i;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++m_i >= m_s.size()) return false;
        const char e = m_s[m_i++];
        if (e == 'u') {
          for (int k = 0; k < 4; ++k, ++m_i) {
            if (m_i >= m_s.size() || !is_hex(m_s[m_i])) return false;
          }
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++m_i;
        continue;
      }
      if (!scan_utf8()) return false;
    }
    return false;  // unterminated
  }

  // One multi-byte UTF-8 sequence, rejecting overlong forms, surrogates and > U+10FFFF.
  bool scan_utf8() noexcept {
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(m_s[m_i + k]); };
    const unsigned char c = at(0);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else return false;
    if (m_i + n > m_s.size()) return false;
    if (at(1) < lo || at(1) > hi) return false;
    for (std::size_t k = 2; k < n; ++k) {
      if (at(k) < 0x80 || at(k) > 0xBF) return false;
    }
    m_i += n;
    return true;
  }

  std::string_view m_s;
  std::size_t m_i = 0;
};

}  // namespace

bool is_json_number(std::string_view s) noexcept {
  json_scanner scan(s);
  return scan.scan_number() && scan.at_end();
}

bool is_json_text(std::string_view s) noexcept {
  try {
    return json_scanner(s).scan_document();
  } catch (const std::bad_alloc&) {
    return false;
  }
}

std::string json_string(std::string_view s) {
  return json_doc(std::string(s)).dump(-1, ' ', false, json_doc::error_handler_t::replace);
}

}  // namespace steadypg::cli
