#include "steadypg/pipeline.hpp"

#include <fmt/format.h>

#include <optional>

#include "connection_impl.hpp"
#include "error_builder.hpp"

namespace steadypg {

pipeline_aborted::pipeline_aborted()
    : sql_error("pipeline aborted: an earlier statement in the same sync group failed, so this one was not run",
                failure_kind::server_error, outcome::not_sent) {}
pipeline_aborted::pipeline_aborted(std::string message, internal::error_details details)
    : sql_error(std::move(message), std::move(details)) {}
void pipeline_aborted::raise_with(internal::error_details details) const {
  throw pipeline_aborted(what(), std::move(details));
}

pipeline::pipeline(connection& conn) : m_conn(&conn) {
  auto& d = *conn.m_impl;
  d.begin_request("pipeline");
  if (!PQenterPipelineMode(d.conn)) {
    throw usage_error("cannot enter pipeline mode: " + internal::last_error_message(d.conn));
  }
  d.in_pipeline = true;
  m_active = true;
}

pipeline::~pipeline() {
  if (!m_active) return;
  try {
    finish();
  } catch (...) {
    m_conn->close();  // out of sync: never hand this connection out again
  }
}

void pipeline::send(std::string_view sql, const param_list& params) {
  const auto refs = params.refs();
  send_refs(sql, refs);
}

void pipeline::lost() {
  auto& d = *m_conn->m_impl;
  m_pending = 0;
  m_syncs = 0;
  m_unsynced = 0;
  m_groups.clear();
  m_active = false;
  d.in_pipeline = false;
}

namespace {

bool is_session_ending(const PGresult* raw) {
  const char* severity = PQresultErrorField(raw, PG_DIAG_SEVERITY_NONLOCALIZED);
  return severity != nullptr && (std::string_view(severity) == "FATAL" || std::string_view(severity) == "PANIC");
}

}  // namespace

void pipeline::out_of_step(std::string_view what) {
  auto& d = *m_conn->m_impl;
  lost();
  m_conn->close();
  throw internal::error_builder(failure_kind::connection_lost,
                                d.last.bytes_sent ? outcome::indeterminate : outcome::not_sent)
      .operation("pipeline")
      .broken()
      .build<connection_error>(
          fmt::format("pipeline out of step with the server ({}); the connection was closed", what));
}

void pipeline::flush_or_lost(const internal::deadline& until) {
  auto& d = *m_conn->m_impl;
  try {
    d.flush(until, "pipeline");
  } catch (const error&) {
    if (PQstatus(d.conn) != CONNECTION_OK) lost();
    throw;
  }
}

PGresult* pipeline::next_in_stream(const internal::deadline& until, std::string_view missing) {
  auto& d = *m_conn->m_impl;
  int nulls = 0;
  while (true) {
    if (PQstatus(d.conn) != CONNECTION_OK) {
      lost();
      internal::throw_connection_lost(internal::last_error_message(d.conn), "pipeline", d.last);
    }
    bool timed_out = false;
    PGresult* raw = d.next_result(until, timed_out);
    if (timed_out) {
      lost();
      d.handle_timeout("pipeline", false);
    }
    if (raw != nullptr) return raw;
    // One NULL ends a statement's results; a second in a row means libpq has nothing queued.
    if (++nulls > 1) out_of_step(missing);
  }
}

void pipeline::consumed_statement() noexcept {
  --m_pending;
  if (!m_groups.empty() && m_groups.front() > 0) {
    --m_groups.front();
  } else if (m_unsynced > 0) {
    --m_unsynced;
  }
}

void pipeline::send_refs(std::string_view sql, std::span<const param_ref> params) {
  if (!m_active) throw usage_error("the pipeline is finished");
  auto& d = *m_conn->m_impl;
  internal::connection_impl::check_sql(sql);
  internal::connection_impl::check_params(params);
  if (d.shared_sessions()) d.refuse_session_features(sql);
  const internal::param_arrays arrays(params);
  // A statement the connection already prepared goes by name (no parse or plan on the server).
  const auto* cached = d.find_prepared(sql, arrays);
  internal::check_param_count(cached ? cached->param_count : internal::placeholder_count(sql), params.size());
  if (cached == nullptr && d.options.statement_cache_capacity > 0 && m_pending == 0 && m_syncs == 0 && !m_open_group &&
      !internal::is_transaction_control(sql)) {
    // Nothing is outstanding: leave pipeline mode for one round trip and prepare it, so that
    // this and every later statement of this text on the connection shares one plan.
    if (!PQexitPipelineMode(d.conn))
      throw usage_error("cannot leave pipeline mode: " + internal::last_error_message(d.conn));
    d.in_pipeline = false;
    try {
      cached = &d.prepared(sql, arrays, d.make_deadline());
    } catch (const sql_error& e) {
      // The server rejects the text: it goes unnamed and fails as this statement's result.
      if (e.poisons_connection() || PQstatus(d.conn) != CONNECTION_OK) {
        m_active = false;
        throw;
      }
    } catch (...) {
      m_active = false;  // nothing of this pipeline is outstanding: the error says not_sent
      throw;
    }
    if (!PQenterPipelineMode(d.conn)) {
      m_active = false;
      throw usage_error("cannot enter pipeline mode: " + internal::last_error_message(d.conn));
    }
    d.in_pipeline = true;
  }
  int sent;
  if (cached != nullptr) {
    sent = PQsendQueryPrepared(d.conn, cached->name.c_str(), arrays.size(), arrays.values(), arrays.lengths(),
                               arrays.formats(), 0);
  } else {
    d.sql_buf.assign(sql);
    sent = PQsendQueryParams(d.conn, d.sql_buf.c_str(), arrays.size(), arrays.types(), arrays.values(),
                             arrays.lengths(), arrays.formats(), 0);
  }
  if (!sent) {
    const std::string msg = internal::last_error_message(d.conn);
    if (PQstatus(d.conn) != CONNECTION_OK) lost();
    internal::throw_connection_lost(msg, "pipeline", d.last);
  }
  d.last.bytes_sent = true;
  // From here a lost reply may hide a commit: it is indeterminate_commit, never retried.
  if (internal::mentions_commit(sql, true)) d.last.commit_sent = true;
  ++m_pending;
  ++m_unsynced;
  m_unsynced_sends = true;
  m_open_group = true;
  // Keep the socket moving without blocking now and then (sync() flushes anyway): write what
  // fits, read what arrived, so that neither side's buffers fill up.
  if (++m_sends_since_flush >= 64) {
    m_sends_since_flush = 0;
    if (PQflush(d.conn) == 1) (void)PQconsumeInput(d.conn);
  }
}

void pipeline::flush_request() {
  if (!m_active) throw usage_error("the pipeline is finished");
  auto& d = *m_conn->m_impl;
  if (!PQsendFlushRequest(d.conn)) {
    const std::string msg = internal::last_error_message(d.conn);
    if (PQstatus(d.conn) != CONNECTION_OK) lost();
    internal::throw_connection_lost(msg, "pipeline", d.last);
  }
  m_unsynced_sends = false;
}

void pipeline::sync() {
  if (!m_active) throw usage_error("the pipeline is finished");
  auto& d = *m_conn->m_impl;
  if (!PQpipelineSync(d.conn)) {
    const std::string msg = internal::last_error_message(d.conn);
    if (PQstatus(d.conn) != CONNECTION_OK) lost();
    internal::throw_connection_lost(msg, "pipeline", d.last);
  }
  ++m_syncs;
  m_groups.push_back(m_unsynced);
  m_unsynced = 0;
  m_unsynced_sends = false;
  m_open_group = false;
  m_sends_since_flush = 0;
  flush_or_lost(d.make_deadline());
}

result pipeline::get_result() {
  if (!m_active) throw usage_error("the pipeline is finished");
  if (m_pending == 0) throw usage_error("no pipeline results are outstanding");
  auto& d = *m_conn->m_impl;
  const auto until = d.make_deadline();
  if (m_unsynced_sends) {
    if (!PQsendFlushRequest(d.conn)) {
      const std::string msg = internal::last_error_message(d.conn);
      lost();
      internal::throw_connection_lost(msg, "pipeline", d.last);
    }
    m_unsynced_sends = false;
  }
  flush_or_lost(until);
  while (true) {
    internal::result_ptr r(next_in_stream(until, "no result where one was due"));
    PGresult* raw = r.get();
    switch (PQresultStatus(raw)) {
      case PGRES_PIPELINE_SYNC:
        if (m_syncs > 0) --m_syncs;
        if (!m_groups.empty()) m_groups.pop_front();
        continue;
      case PGRES_PIPELINE_ABORTED: consumed_statement(); throw pipeline_aborted();
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY: consumed_statement(); return result(r.release());
      default: {
        consumed_statement();
        auto fields = internal::read_error_fields(raw);
        // A FATAL error ends the session even while libpq has not seen the socket close yet.
        const bool broken = PQstatus(d.conn) != CONNECTION_OK || is_session_ending(raw);
        if (broken) {
          lost();
          if (PQstatus(d.conn) == CONNECTION_OK) m_conn->close();
        }
        if (broken && fields.sqlstate.empty()) {
          internal::throw_connection_lost(std::move(fields.message), "pipeline", d.last);
        }
        // The server forgot our prepared statements (DISCARD ALL): prepare again next time.
        if (fields.sqlstate == sqlstates::invalid_sql_statement_name) {
          d.cache.clear();
          d.stats.size = 0;
        }
        internal::throw_server_error(std::move(fields), "pipeline", d.last, broken);
      }
    }
  }
}

void pipeline::await_sync() {
  if (!m_active) throw usage_error("the pipeline is finished");
  if (m_groups.empty()) throw usage_error("no sync point is outstanding: call sync() first");
  if (m_groups.front() > 0) {
    throw usage_error(
        fmt::format("collect the {} result(s) before the sync point first (get_result())", m_groups.front()));
  }
  auto& d = *m_conn->m_impl;
  const auto until = d.make_deadline();
  flush_or_lost(until);
  std::optional<server_error_fields> commit_failed;  // the group's commit failed at the sync
  while (true) {
    internal::result_ptr r(next_in_stream(until, "no sync point where one was due"));
    PGresult* raw = r.get();
    const auto st = PQresultStatus(raw);
    if (st == PGRES_PIPELINE_SYNC) {
      --m_syncs;
      m_groups.pop_front();
      // The commit at the sync failed (a deferred constraint, a serialization failure): the
      // group rolled back, the session goes on.
      if (commit_failed) internal::throw_server_error(std::move(*commit_failed), "pipeline", d.last, false);
      return;
    }
    if (st == PGRES_FATAL_ERROR && !is_session_ending(raw) && PQstatus(d.conn) == CONNECTION_OK && !commit_failed) {
      commit_failed = internal::read_error_fields(raw);
      continue;  // its NULL, then the sync point, follow
    }
    // Anything else where the sync point was due: the session ended (FATAL), or the stream is
    // not what this pipeline sent (COPY started by a statement, …).
    auto fields = internal::read_error_fields(raw);
    if (st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR) {
      out_of_step(fmt::format("{} where a sync point was due", PQresStatus(st)));
    }
    lost();
    if (PQstatus(d.conn) == CONNECTION_OK) m_conn->close();
    if (fields.sqlstate.empty()) {
      internal::throw_connection_lost(fields.message.empty() ? "the server closed the connection" : fields.message,
                                      "pipeline", d.last);
    }
    internal::throw_server_error(std::move(fields), "pipeline", d.last, true);
  }
}

void pipeline::finish() {
  if (!m_active) return;
  auto& d = *m_conn->m_impl;
  if (m_open_group || m_syncs == 0) sync();
  while (m_pending > 0) {
    try {
      (void)get_result();
    } catch (const sql_error&) {
      // Results nobody collected: their errors are dropped with them. A lost connection is
      // not an sql_error and propagates: the groups not yet confirmed are in doubt.
    }
  }
  while (m_syncs > 0) await_sync();
  m_active = false;
  d.in_pipeline = false;
  if (!PQexitPipelineMode(d.conn)) {
    throw usage_error("cannot leave pipeline mode: " + internal::last_error_message(d.conn));
  }
}

}  // namespace steadypg
