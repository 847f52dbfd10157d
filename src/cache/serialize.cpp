#include <libpq-fe.h>

#include <cstring>
#include <memory>

#include "cache_rules.hpp"
#include "steadypg/cache.hpp"

namespace steadypg {

namespace {

// Little-endian fixed-width integers and length-prefixed byte strings.
void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_bytes(std::string& out, const char* p, std::size_t n) {
  put_u32(out, static_cast<std::uint32_t>(n));
  out.append(p, n);
}

constexpr std::string_view magic = "SPR1";

class reader {
 public:
  explicit reader(std::string_view in) : m_in(in) {}
  std::uint32_t u32() {
    need(4);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(m_in[m_pos + i])) << (8 * i);
    m_pos += 4;
    return v;
  }
  std::string_view bytes(std::size_t n) {
    need(n);
    auto v = m_in.substr(m_pos, n);
    m_pos += n;
    return v;
  }
  std::string_view bytes() { return bytes(u32()); }
  bool done() const noexcept { return m_pos == m_in.size(); }

 private:
  void need(std::size_t n) const {
    if (m_in.size() - m_pos < n) throw cache_unavailable("damaged cache entry: truncated result");
  }
  std::string_view m_in;
  std::size_t m_pos = 0;
};

}  // namespace

std::string serialize_result(const result& r) {
  const PGresult* res = r.native_handle();
  std::string out(magic);
  if (res == nullptr) {
    put_u32(out, 0xffffffffU);
    return out;
  }
  const int nf = PQnfields(res), nt = PQntuples(res);
  put_u32(out, static_cast<std::uint32_t>(nf));
  for (int c = 0; c < nf; ++c) {
    const char* name = PQfname(res, c);
    put_bytes(out, name, std::strlen(name));
    put_u32(out, PQftable(res, c));
    put_u32(out, static_cast<std::uint32_t>(PQftablecol(res, c)));
    put_u32(out, static_cast<std::uint32_t>(PQfformat(res, c)));
    put_u32(out, PQftype(res, c));
    put_u32(out, static_cast<std::uint32_t>(PQfsize(res, c)));
    put_u32(out, static_cast<std::uint32_t>(PQfmod(res, c)));
  }
  const auto tag = r.command();
  put_bytes(out, tag.data(), tag.size());
  put_u32(out, static_cast<std::uint32_t>(nt));
  for (int t = 0; t < nt; ++t) {
    for (int c = 0; c < nf; ++c) {
      if (PQgetisnull(res, t, c)) {
        put_u32(out, 0xffffffffU);
      } else {
        put_bytes(out, PQgetvalue(res, t, c), static_cast<std::size_t>(PQgetlength(res, t, c)));
      }
    }
  }
  return out;
}

result deserialize_result(std::string_view bytes) {
  if (!bytes.starts_with(magic)) throw cache_unavailable("damaged cache entry: not a serialised result");
  reader in(bytes.substr(magic.size()));
  const std::uint32_t nf = in.u32();
  if (nf == 0xffffffffU) return result();
  if (nf > 1664) throw cache_unavailable("damaged cache entry: column count out of range");
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK), &PQclear);
  if (!res) throw std::bad_alloc();
  std::vector<std::string> names(nf);
  std::vector<PGresAttDesc> attrs(nf);
  for (std::uint32_t c = 0; c < nf; ++c) {
    names[c] = std::string(in.bytes());
    attrs[c].name = names[c].data();
    attrs[c].tableid = in.u32();
    attrs[c].columnid = static_cast<int>(in.u32());
    attrs[c].format = static_cast<int>(in.u32());
    attrs[c].typid = in.u32();
    attrs[c].typlen = static_cast<int>(in.u32());
    attrs[c].atttypmod = static_cast<int>(in.u32());
  }
  if (nf > 0 && !PQsetResultAttrs(res.get(), static_cast<int>(nf), attrs.data())) throw std::bad_alloc();
  std::string tag(in.bytes());
  const std::uint32_t nt = in.u32();
  for (std::uint32_t t = 0; t < nt; ++t) {
    for (std::uint32_t c = 0; c < nf; ++c) {
      const std::uint32_t len = in.u32();
      const int ok = len == 0xffffffffU ? PQsetvalue(res.get(), static_cast<int>(t), static_cast<int>(c), nullptr, -1)
                                        : PQsetvalue(res.get(), static_cast<int>(t), static_cast<int>(c),
                                                     const_cast<char*>(in.bytes(len).data()), static_cast<int>(len));
      if (!ok) throw std::bad_alloc();
    }
  }
  if (!in.done()) throw cache_unavailable("damaged cache entry: trailing bytes");
  return result(res.release(), std::move(tag));
}

namespace internal {

namespace {
constexpr std::string_view error_magic = "SPE1";
}  // namespace

std::string serialize_error(const server_error_fields& f) {
  std::string out(error_magic);
  for (const std::string* part : {&f.severity, &f.sqlstate, &f.message, &f.detail, &f.hint, &f.internal_query,
                                  &f.context, &f.schema, &f.table, &f.column, &f.datatype, &f.constraint}) {
    put_bytes(out, part->data(), part->size());
  }
  put_u32(out, static_cast<std::uint32_t>(f.position));
  return out;
}

bool is_serialized_error(std::string_view bytes) noexcept { return bytes.starts_with(error_magic); }

server_error_fields deserialize_error(std::string_view bytes) {
  if (!is_serialized_error(bytes)) throw cache_unavailable("damaged cache entry: not a serialised error");
  reader in(bytes.substr(error_magic.size()));
  server_error_fields f;
  for (std::string* part : {&f.severity, &f.sqlstate, &f.message, &f.detail, &f.hint, &f.internal_query, &f.context,
                            &f.schema, &f.table, &f.column, &f.datatype, &f.constraint}) {
    *part = std::string(in.bytes());
  }
  f.position = static_cast<int>(in.u32());
  if (!in.done()) throw cache_unavailable("damaged cache entry: trailing bytes");
  return f;
}

bool negative_cacheable(std::string_view sqlstate) noexcept {
  // Errors the data and the statement decide (the same call fails the same way until a write):
  // data exceptions, function and routine exceptions, PL/pgSQL's RAISE.
  if (sqlstate.size() != 5) return false;
  const auto cls = sqlstate.substr(0, 2);
  return cls == "22" || cls == "2F" || cls == "38" || cls == "39" || cls == "P0";
}

}  // namespace internal

}  // namespace steadypg
