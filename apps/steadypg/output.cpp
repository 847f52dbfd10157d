#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fmt/format.h>
#include <iostream>

#include "cli.hpp"
#include "steadypg/error.hpp"

namespace steadypg::cli {
namespace {

std::string_view level_name(log_level l) {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
  }
  return "error";
}

std::string utc_timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

}  // namespace

log_level context::level() const {
  if (log_level_name == "debug") return log_level::debug;
  if (log_level_name == "info") return log_level::info;
  if (log_level_name == "error") return log_level::error;
  return log_level::warn;
}

void context::log(log_level lvl, std::string_view msg, const json_doc& fields) const {
  if (lvl < level()) return;
  if (log_format == "json") {
    json_doc line{{"ts", utc_timestamp()}, {"level", level_name(lvl)}, {"msg", msg}, {"component", "cli"}};
    for (const auto& [k, v] : fields.items()) line[k] = v;
    std::cerr << line.dump(-1, ' ', false, json_doc::error_handler_t::replace) << "\n";
    return;
  }
  std::string text = fmt::format("steadypg: {}: {}", level_name(lvl), msg);
  for (const auto& [k, v] : fields.items()) {
    text += fmt::format(" {}={}", k, v.is_string() ? v.get<std::string>() : v.dump());
  }
  std::cerr << text << "\n";
}

void context::print_json(const json_doc& doc) {
  std::cout << doc.dump(-1, ' ', false, json_doc::error_handler_t::replace) << std::endl;
}

library_logging::library_logging(const context& ctx) {
  const auto level = ctx.level() == log_level::debug  ? observe::log_level::debug
                     : ctx.level() == log_level::info ? observe::log_level::info
                     : ctx.level() == log_level::warn ? observe::log_level::warn
                                                      : observe::log_level::error;
  if (ctx.log_format == "json") log = std::make_unique<observe::json_logger>(stderr, level);
  else log = std::make_unique<observe::text_logger>(stderr, level);
  events = std::make_unique<observe::log_observer>(*log, ctx.options.slow_query_threshold);
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
    const bool unreachable = dynamic_cast<const connection_error*>(&e) != nullptr ||
                             dynamic_cast<const timeout_error*>(&e) != nullptr ||
                             dynamic_cast<const circuit_open*>(&e) != nullptr;
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
