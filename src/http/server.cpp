#include "steadypg/http/server.hpp"

#include <fmt/format.h>
#include <httplib.h>

#include <cstdlib>
#include <thread>

#include "dashboard.hpp"
#include "negotiate.hpp"
#include "sampler.hpp"
#include "steadypg/error.hpp"
#include "steadypg/http/report_json.hpp"

namespace steadypg::http {

namespace {

constexpr const char* listen_env = "POSTGRESQL_HTTP_LISTEN";
constexpr const char* listen_values = "host:port with a port 0–65535 (0 = any free port), e.g. 127.0.0.1:9187";

// Headers of every response: nothing is cached, the page loads nothing from elsewhere.
void common_headers(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Content-Security-Policy",
                 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                 "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
}

void json_error(httplib::Response& res, int status, std::string_view message) {
  res.status = status;
  res.set_content(fmt::format("{{\"error\":{}}}", internal::dump(internal::json(std::string(message)))),
                  "application/json");
}

}  // namespace

listen_address parse_listen(const std::string& text, const std::string& what) {
  auto bad = [&] { return config_error(fmt::format("{}=\"{}\" is invalid: expected {}", what, text, listen_values)); };
  listen_address a;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') throw bad();
    a.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) throw bad();
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (a.host.empty() || port.empty() || port.size() > 5) throw bad();
  for (const char c : port) {
    if (c < '0' || c > '9') throw bad();
  }
  for (const char c : a.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '@') throw bad();
  }
  a.port = std::stoi(port);
  if (a.port > 65535) throw bad();
  return a;
}

std::optional<options> options::from_env() {
  const char* v = std::getenv(listen_env);
  if (v == nullptr || *v == '\0') return std::nullopt;
  options o;
  o.listen = v;
  (void)parse_listen(o.listen, listen_env);
  return o;
}

void options::validate() const {
  const auto a = parse_listen(listen, "http listen address");
  if (!internal::is_loopback_host(a.host)) {
    if (!allow_remote) {
      throw config_error(fmt::format(
          "http listen address \"{}\" is not a loopback address: binding it needs allow_remote and a bearer_token",
          listen));
    }
    if (bearer_token.size() < 16) {
      throw config_error(fmt::format(
          "http listen address \"{}\" is not loopback: a bearer_token of at least 16 characters is required", listen));
    }
  }
  if (threads < 1 || threads > 16)
    throw config_error(fmt::format("http threads={} is invalid: expected 1–16", threads));
  if (max_request_bytes < 256 || max_request_bytes > 65536) {
    throw config_error(fmt::format("http max_request_bytes={} is invalid: expected 256–65536", max_request_bytes));
  }
  if (sample_interval.count() < 100 || sample_interval.count() > 60000) {
    throw config_error(
        fmt::format("http sample_interval={} ms is invalid: expected 100–60000 ms", sample_interval.count()));
  }
  if (server_sample_interval.count() < 1000 || server_sample_interval.count() > 3600000) {
    throw config_error(fmt::format("http server_sample_interval={} ms is invalid: expected 1000–3600000 ms",
                                   server_sample_interval.count()));
  }
}

struct server::impl {
  client& db;
  options opts;
  listen_address address;
  httplib::Server http;
  std::unique_ptr<internal::sampler> sampler;
  std::thread listener;
  int port = 0;
  std::mutex stop_mutex;
  bool stopped = false;

  impl(client& d, options o) : db(d), opts(std::move(o)) {}

  void count(const httplib::Request& req, int status) {
    try {
      db.metrics()
          .add_counter("postgresql_http_requests_total", "Requests to the monitoring endpoint, by path and status",
                       {{"path", std::string(internal::path_label(req.path))}, {"code", std::to_string(status)}})
          .inc();
    } catch (...) {
    }
  }

  void routes();
};

void server::impl::routes() {
  http.new_task_queue = [n = opts.threads] { return new httplib::ThreadPool(static_cast<std::size_t>(n)); };
  http.set_payload_max_length(opts.max_request_bytes);
  // One request per connection: a kept-alive connection holds a worker thread between a page's polls.
  http.set_keep_alive_max_count(1);
  http.set_read_timeout(2, 0);
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, with which a second server
  // would bind a port already in use and silently share it.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.set_write_timeout(5, 0);

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    common_headers(res);
    // Runs before any body is read: a declared body counts at its declared length.
    std::size_t size = req.method.size() + req.target.size();
    for (const auto& [k, v] : req.headers) size += k.size() + v.size() + 4;
    const std::string length = req.get_header_value("Content-Length");
    const bool chunked = req.has_header("Transfer-Encoding");
    if (!length.empty()) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(length.c_str(), &end, 10);
      size = (end == length.c_str() || *end != '\0') ? opts.max_request_bytes + 1 : size + n;
    }
    if (chunked) {
      json_error(res, 413, "request bodies are not accepted");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (size > opts.max_request_bytes) {
      if (!length.empty() && length != "0") {
        json_error(res, 413, fmt::format("request larger than {} bytes", opts.max_request_bytes));
        return httplib::Server::HandlerResponse::Handled;
      }
      json_error(res, 431, fmt::format("request larger than {} bytes", opts.max_request_bytes));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method != "GET" && req.method != "HEAD") {
      res.set_header("Allow", "GET, HEAD");
      json_error(res, 405, "only GET and HEAD are served");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!opts.bearer_token.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      if (auth.rfind("Bearer ", 0) != 0 || !internal::equal_secret(auth.substr(7), opts.bearer_token)) {
        res.set_header("WWW-Authenticate", "Bearer");
        json_error(res, 401, "a bearer token is required");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_post_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) { count(req, res.status); });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      common_headers(res);
      json_error(res, res.status, res.status == 404 ? "not found" : "request refused");
    }
  });

  http.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (internal::wants_openmetrics(req.get_header_value("Accept"))) {
      res.set_content(db.metrics().render_openmetrics(), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    } else {
      res.set_content(db.metrics().render_prometheus(), "text/plain; version=0.0.4; charset=utf-8");
    }
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    auto h = sampler->health();
    if (!h) h = db.health_check();
    // Served when the default route can be: healthy or degraded (slow, a replica down).
    res.status = h->status == health_status::unhealthy ? 503 : 200;
    res.set_content(health_json(*h), "application/json");
  });
  http.Get("/info", [this](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(info_json(db.connection_info()), "application/json");
    } catch (const std::exception& e) {
      json_error(res, 503, e.what());
    }
  });
  http.Get("/api/snapshot", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(sampler->snapshot(), "application/json");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(internal::dashboard_page()), "text/html; charset=utf-8");
  });
}

server::server(client& db, options opts) : m_impl(std::make_unique<impl>(db, std::move(opts))) {
  m_impl->opts.validate();
  m_impl->address = parse_listen(m_impl->opts.listen, "http listen address");
  m_impl->routes();
  auto& a = m_impl->address;
  if (a.port == 0) {
    m_impl->port = m_impl->http.bind_to_any_port(a.host);
    if (m_impl->port <= 0) {
      throw config_error(fmt::format("http listen address \"{}\" cannot be bound", m_impl->opts.listen));
    }
  } else {
    if (!m_impl->http.bind_to_port(a.host, a.port)) {
      throw config_error(
          fmt::format("http listen address \"{}\" cannot be bound (in use, or not an address of this machine)",
                      m_impl->opts.listen));
    }
    m_impl->port = a.port;
  }
  m_impl->sampler = std::make_unique<internal::sampler>(db, m_impl->opts);
  m_impl->listener = std::thread([this] { m_impl->http.listen_after_bind(); });
  // stop() before the listener runs would be lost: wait (bounded) until it does.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!m_impl->http.is_running() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

server::~server() { stop(); }

int server::port() const noexcept { return m_impl->port; }

std::string server::url() const {
  const auto& h = m_impl->address.host;
  return fmt::format("http://{}:{}/", h.find(':') != std::string::npos ? "[" + h + "]" : h, m_impl->port);
}

std::string server::snapshot_json() const { return m_impl->sampler->snapshot(); }

void server::stop() noexcept {
  std::lock_guard lk(m_impl->stop_mutex);
  if (m_impl->stopped) return;
  m_impl->stopped = true;
  if (m_impl->listener.joinable()) {
    // stop() is lost on a listener that has not started yet (the constructor waited for it).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!m_impl->http.is_running() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    m_impl->http.stop();
    m_impl->listener.join();
  }
  if (m_impl->sampler) m_impl->sampler->stop();
}

}  // namespace steadypg::http
