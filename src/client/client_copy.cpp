// COPY through a client: copy_from and copy_to borrow a pooled connection and run
// copy_in / copy_out (src/copy.cpp) through the resilience pipeline.

#include <exception>

#include "steadypg/client.hpp"
#include "steadypg/copy.hpp"

namespace steadypg {

std::uint64_t client::copy_from(std::string_view table, const std::vector<std::string>& columns,
                                const std::function<void(copy_in&)>& write, const copy_options& options) {
  const call_info info{"copy", table, false, false, std::nullopt, nullptr, nullptr};
  return run(info, [&](connection& c) {
    copy_in copy(c, table, columns, options.format, options.header);
    if (options.progress) copy.on_progress(options.progress);
    write(copy);
    return copy.finish();
  });
}

std::uint64_t client::copy_from(std::string_view table, const std::vector<std::string>& columns,
                                const std::function<void(copy_in&)>& write, copy_format format,
                                const std::function<void(std::uint64_t)>& progress, bool header) {
  copy_options options;
  options.format = format;
  options.header = header;
  options.progress = progress;
  return copy_from(table, columns, write, options);
}

namespace {
// Carries an exception of a copy_to sink through run(), which must not retry it: the sink
// had data, and its failure is the caller's, not the server's.
struct sink_failure {
  std::exception_ptr error;
};
}  // namespace

std::uint64_t client::copy_to(const copy_source& source, const std::function<void(std::string_view)>& sink,
                              const copy_options& options) {
  // A read: retried like an idempotent statement, but only while the sink has had nothing;
  // copy_out throws outcome::fatal once it handed out data, which run() never retries.
  const call_info info{"copy_to", source.text(), true, false, std::nullopt, nullptr, nullptr};
  try {
    return run(info, [&](connection& c) {
      copy_out out(c, source, options);
      return out.read_all([&](std::string_view chunk) {
        try {
          sink(chunk);
        } catch (...) {
          throw sink_failure{std::current_exception()};
        }
      });
    });
  } catch (const sink_failure& f) {
    std::rethrow_exception(f.error);
  }
}

}  // namespace steadypg
