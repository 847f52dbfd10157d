// The prepared-statement cache: statements by SQL text and parameter types, evicted least
// recently used, deallocated on the server when that is possible.

#include <algorithm>
#include <fmt/format.h>

#include "connection_impl.hpp"
#include "error_builder.hpp"

namespace steadypg::internal {

const cached_statement* connection_impl::find_prepared(std::string_view sql, const param_arrays& params) {
  auto it = cache.find(sql);
  if (it == cache.end()) return nullptr;
  const auto& types = it->second.types;
  if (types.size() != static_cast<std::size_t>(params.size()) ||
      !std::equal(types.begin(), types.end(), params.types())) {
    return nullptr;
  }
  it->second.last_used = ++tick;
  ++stats.hits;
  return &it->second;
}

const cached_statement& connection_impl::prepared(std::string_view sql, const param_arrays& params,
                                                  const deadline& until) {
  ++tick;
  auto it = cache.find(sql);
  // The placeholder count is scanned once per cached statement; a mismatch fails here,
  // before anything is sent.
  check_param_count(it != cache.end() ? it->second.param_count : placeholder_count(sql),
                    static_cast<std::size_t>(params.size()));
  if (it != cache.end()) {
    const auto& types = it->second.types;
    if (std::equal(types.begin(), types.end(), params.types(), params.types() + params.size()) &&
        types.size() == static_cast<std::size_t>(params.size())) {
      it->second.last_used = tick;
      ++stats.hits;
      return it->second;
    }
    to_deallocate.push_back(std::move(it->second.name));
    cache.erase(it);
  }
  ++stats.misses;
  if (cache.size() >= options.statement_cache_capacity) {
    auto victim = std::min_element(cache.begin(), cache.end(), [](const auto& a, const auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    to_deallocate.push_back(std::move(victim->second.name));
    cache.erase(victim);
    ++stats.evictions;
  }
  // Deallocating is impossible inside a failed transaction; keep the names for later.
  if (!to_deallocate.empty() && PQtransactionStatus(conn) != PQTRANS_INERROR) {
    std::string sql_text;
    for (const auto& n : to_deallocate) sql_text += fmt::format("DEALLOCATE {};", n);
    to_deallocate.clear();
    run_internal(sql_text.c_str(), until, "deallocate");
  }
  cached_statement entry;
  entry.name = fmt::format("steadypg_{}", ++name_counter);
  entry.types.assign(params.types(), params.types() + params.size());
  entry.param_count = placeholder_count(sql);
  entry.last_used = tick;
  sql_buf.assign(sql);
  if (!PQsendPrepare(conn, entry.name.c_str(), sql_buf.c_str(), params.size(), params.types())) send_failed("prepare");
  try {
    flush(until, "prepare");
    (void)collect("prepare", until);
  } catch (const connection_error& e) {
    // Preparing has no effect on data: a connection lost now means nothing ran.
    throw error_builder(failure_kind::connection_lost, outcome::not_sent)
        .fields(e.server())
        .operation("prepare")
        .broken()
        .build<connection_error>(e.what());
  }
  auto [pos, inserted] = cache.emplace(std::string(sql), std::move(entry));
  stats.size = cache.size();
  return pos->second;
}

}  // namespace steadypg::internal
