#include "steadypg/observe/metrics.hpp"

#include <cmath>
#include <fmt/format.h>
#include <stdexcept>

namespace steadypg::observe {

void histogram::observe(double seconds) noexcept {
  std::size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i]) ++i;
  m_buckets[i].fetch_add(1, std::memory_order_relaxed);
  m_count.fetch_add(1, std::memory_order_relaxed);
  m_sum.fetch_add(seconds, std::memory_order_relaxed);
}

std::uint64_t histogram::cumulative(std::size_t i) const noexcept {
  std::uint64_t n = 0;
  for (std::size_t k = 0; k <= i && k < m_buckets.size(); ++k) n += m_buckets[k].load(std::memory_order_relaxed);
  return n;
}

double histogram::quantile(double q) const noexcept {
  const std::uint64_t total = cumulative(bounds.size());
  if (total == 0) return 0.0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (cumulative(i) >= rank) return bounds[i];
  }
  return bounds.back();
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

namespace {

std::string escape_help(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string label_text(const labels& l, const std::string& extra_key = {}, const std::string& extra_value = {}) {
  if (l.empty() && extra_key.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : l) {
    if (!first) out += ",";
    first = false;
    out += fmt::format("{}=\"{}\"", k, escape_label_value(v));
  }
  if (!extra_key.empty()) {
    if (!first) out += ",";
    out += fmt::format("{}=\"{}\"", extra_key, extra_value);
  }
  return out + "}";
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

std::string bound_text(double b) { return fmt::format("{}", b); }

}  // namespace

registry::series& registry::find_or_add(const std::string& name, const std::string& help, metric_type type,
                                        const labels& l) {
  std::lock_guard lk(m_mutex);
  family* f = nullptr;
  for (auto& fam : m_families) {
    if (fam->name == name) f = fam.get();
  }
  if (f == nullptr) {
    m_families.push_back(std::make_unique<family>(family{name, help, type, {}}));
    f = m_families.back().get();
  } else if (f->type != type) {
    throw std::logic_error("metric " + name + " registered twice with different types");
  }
  for (auto& s : f->items) {
    if (s->l == l) return *s;
  }
  auto s = std::make_unique<series>();
  s->l = l;
  switch (type) {
    case metric_type::counter: s->c = std::make_unique<counter>(); break;
    case metric_type::gauge: s->g = std::make_unique<gauge>(); break;
    case metric_type::histogram: s->h = std::make_unique<histogram>(); break;
  }
  f->items.push_back(std::move(s));
  return *f->items.back();
}

counter& registry::add_counter(const std::string& name, const std::string& help, const labels& l) {
  return *find_or_add(name, help, metric_type::counter, l).c;
}
gauge& registry::add_gauge(const std::string& name, const std::string& help, const labels& l) {
  return *find_or_add(name, help, metric_type::gauge, l).g;
}
void registry::add_gauge_callback(const std::string& name, const std::string& help, const labels& l,
                                  std::function<double()> read) {
  auto& s = find_or_add(name, help, metric_type::gauge, l);
  std::lock_guard lk(m_mutex);
  s.read = std::move(read);
}
histogram& registry::add_histogram(const std::string& name, const std::string& help, const labels& l) {
  return *find_or_add(name, help, metric_type::histogram, l).h;
}

std::string registry::render(bool openmetrics) const {
  std::lock_guard lk(m_mutex);
  std::string out;
  for (const auto& f : m_families) {
    std::string family_name = f->name;
    if (openmetrics && f->type == metric_type::counter && family_name.ends_with("_total")) {
      family_name.resize(family_name.size() - 6);
    }
    const char* type = f->type == metric_type::counter ? "counter"
                       : f->type == metric_type::gauge ? "gauge"
                                                       : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", family_name, escape_help(f->help), family_name, type);
    for (const auto& s : f->items) {
      switch (f->type) {
        case metric_type::counter: out += fmt::format("{}{} {}\n", f->name, label_text(s->l), s->c->value()); break;
        case metric_type::gauge:
          out += fmt::format("{}{} {}\n", f->name, label_text(s->l), number(s->read ? s->read() : s->g->value()));
          break;
        case metric_type::histogram: {
          const auto& h = *s->h;
          // Read the buckets once so that +Inf, _count and the buckets agree.
          std::array<std::uint64_t, histogram::bounds.size() + 1> cum{};
          for (std::size_t i = 0; i < cum.size(); ++i) cum[i] = h.cumulative(i);
          for (std::size_t i = 0; i < histogram::bounds.size(); ++i) {
            out += fmt::format("{}_bucket{} {}\n", f->name, label_text(s->l, "le", bound_text(histogram::bounds[i])),
                               cum[i]);
          }
          out += fmt::format("{}_bucket{} {}\n", f->name, label_text(s->l, "le", "+Inf"), cum.back());
          out += fmt::format("{}_sum{} {}\n", f->name, label_text(s->l), number(h.sum()));
          out += fmt::format("{}_count{} {}\n", f->name, label_text(s->l), cum.back());
          break;
        }
      }
    }
  }
  if (openmetrics) out += "# EOF\n";
  return out;
}

std::string registry::render_prometheus() const { return render(false); }
std::string registry::render_openmetrics() const { return render(true); }

std::string registry::render_json() const {
  std::lock_guard lk(m_mutex);
  auto quote = [](std::string_view s) {
    std::string o = "\"";
    for (const char c : s) {
      if (c == '"' || c == '\\') o.push_back('\\');
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o.push_back(c);
    }
    return o + "\"";
  };
  std::string out = "{";
  bool first_family = true;
  for (const auto& f : m_families) {
    if (!first_family) out += ",";
    first_family = false;
    out += quote(f->name);
    out += ":[";
    bool first = true;
    for (const auto& s : f->items) {
      if (!first) out += ",";
      first = false;
      out += "{\"labels\":{";
      for (std::size_t i = 0; i < s->l.size(); ++i) {
        if (i) out += ",";
        out += quote(s->l[i].first);
        out += ":";
        out += quote(s->l[i].second);
      }
      out += "}";
      switch (f->type) {
        case metric_type::counter: out += fmt::format(",\"value\":{}", s->c->value()); break;
        case metric_type::gauge: {
          const double v = s->read ? s->read() : s->g->value();
          out += fmt::format(",\"value\":{}", std::isfinite(v) ? fmt::format("{}", v) : "null");
          break;
        }
        case metric_type::histogram: out += fmt::format(",\"count\":{},\"sum\":{}", s->h->count(), s->h->sum()); break;
      }
      out += "}";
    }
    out += "]";
  }
  return out + "}";
}

}  // namespace steadypg::observe
