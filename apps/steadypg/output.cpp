#include <unistd.h>

#include <cstdint>
#include <vector>
#include <fmt/format.h>
#include <iostream>

#include "cli.hpp"
#include "steadypg/http/server.hpp"
#include "steadypg/error.hpp"

namespace steadypg::cli {

log_level context::level() const {
  if (log_level_name == "debug") return log_level::debug;
  if (log_level_name == "info") return log_level::info;
  if (log_level_name == "error") return log_level::error;
  return log_level::warn;
}

observe::logger& context::logger() const {
  if (!m_logger) {
    if (log_format == "json") m_logger = std::make_unique<observe::json_logger>(stderr, level());
    else m_logger = std::make_unique<observe::text_logger>(stderr, level());
  }
  return *m_logger;
}

void context::log(log_level lvl, std::string_view msg, const json_doc& fields) const {
  if (!logger().enabled(lvl)) return;
  // JSON values become log fields; strings are kept alive here for the call.
  std::vector<std::string> text;
  text.reserve(fields.size());
  std::vector<observe::log_field> out;
  out.reserve(fields.size());
  for (const auto& [k, v] : fields.items()) {
    const std::string_view key = k;
    if (v.is_boolean()) {
      out.push_back({key, v.get<bool>()});
    } else if (v.is_number_integer()) {
      out.push_back({key, v.get<std::int64_t>()});
    } else if (v.is_number()) {
      out.push_back({key, v.get<double>()});
    } else {
      text.push_back(v.is_string() ? v.get<std::string>() : v.dump());
      out.push_back({key, std::string_view(text.back())});
    }
  }
  logger().log(lvl, "cli", msg, out);
}

namespace {

std::string dump(const json_doc& doc) { return doc.dump(-1, ' ', false, json_doc::error_handler_t::replace); }

}  // namespace

void context::print_json(const json_doc& doc) { std::cout << dump(doc) << std::endl; }

void context::print_json(const json_doc& doc, std::string_view raw_member, std::string_view raw_json) {
  // The object's members in order, as dump() writes them ({"k":v,…} without spaces).
  std::string out = "{";
  for (const auto& [key, value] : doc.items()) {
    if (out.size() > 1) out += ',';
    out += dump(json_doc(key));
    out += ':';
    if (key == raw_member) out += raw_json;
    else out += dump(value);
  }
  out += '}';
  std::cout << out << std::endl;
}

command_client::command_client(const context& ctx, const client_options& options, observer* also)
    : m_ctx(ctx),
      m_events(std::make_unique<observe::log_observer>(ctx.logger())),
      m_tee(also ? std::make_unique<observer_tee>(m_events.get(), also) : nullptr),
      m_db(std::make_unique<client>(with_cache_backend(options),
                                    m_tee ? static_cast<observer*>(m_tee.get()) : m_events.get())) {
  if (ctx.http_command) m_http = start_dashboard(ctx, *m_db, ctx.http_listen);
}

command_client::~command_client() {
  m_http.reset();
  // main() writes --metrics-out after the command's client is gone: keep a snapshot.
  const std::string text = m_db->metrics().render_prometheus();
  m_ctx.metrics_source = [text] { return text; };
}

int report_error(const context& ctx, std::string_view command) {
  json_doc err{{"command", command}};
  int code = sql_failure;
  std::string message;
  try {
    throw;
  } catch (const config_error& e) {
    message = e.what();
    code = usage;
  } catch (const usage_error& e) {
    message = e.what();
    code = usage;
  } catch (const error& e) {
    message = e.what();
    if (!e.sqlstate().empty()) err["sqlstate"] = e.sqlstate();
    if (!e.server().detail.empty()) err["detail"] = e.server().detail;
    if (!e.server().hint.empty()) err["hint"] = e.server().hint;
    err["outcome"] = std::string(to_string(e.outcome()));
    // No connection, a lost one, a deadline, or an open breaker. A lost COMMIT is a failed
    // statement (exit 1): the server may have applied it.
    const bool unreachable = (e.origin() == error_origin::connection || e.origin() == error_origin::pool ||
                              e.origin() == error_origin::breaker) &&
                             !e.is_indeterminate_commit();
    code = unreachable ? unavailable : sql_failure;
  } catch (const std::exception& e) {
    message = e.what();
    code = unavailable;
  }
  ctx.log(log_level::error, message, err);
  if (ctx.json) {
    err["message"] = message;
    context::print_json({{"error", err}});
  }
  return code;
}

}  // namespace steadypg::cli
