#include "steadypg/pipeline.hpp"

#include "connection_impl.hpp"

namespace steadypg {

pipeline_aborted::pipeline_aborted()
    : sql_error("pipeline aborted: an earlier statement in the same sync group failed, so this one was not run",
                failure_kind::server_error, outcome::not_sent) {}

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

void pipeline::send_refs(std::string_view sql, std::span<const param_ref> params) {
  if (!m_active) throw usage_error("the pipeline is finished");
  auto& d = *m_conn->m_impl;
  internal::connection_impl::check_params(params);
  const internal::param_arrays arrays(params);
  // A statement the connection already prepared goes by name (no parse on the server).
  const auto* cached = d.find_prepared(sql, arrays);
  internal::check_param_count(cached ? cached->param_count : internal::placeholder_count(sql), params.size());
  int sent;
  if (cached != nullptr) {
    sent = PQsendQueryPrepared(d.conn, cached->name.c_str(), arrays.size(), arrays.values(), arrays.lengths(),
                               arrays.formats(), 0);
  } else {
    d.sql_buf.assign(sql);
    sent = PQsendQueryParams(d.conn, d.sql_buf.c_str(), arrays.size(), arrays.types(), arrays.values(),
                             arrays.lengths(), arrays.formats(), 0);
  }
  if (!sent) internal::throw_connection_lost(internal::last_error_message(d.conn), "pipeline", d.last);
  d.last.bytes_sent = true;
  ++m_pending;
  m_unsynced_sends = true;
  // Keep the socket moving without blocking now and then (sync() flushes anyway): write what
  // fits, read what arrived, so that neither side's buffers fill up.
  if (++m_sends_since_flush >= 64) {
    m_sends_since_flush = 0;
    if (PQflush(d.conn) == 1) (void)PQconsumeInput(d.conn);
  }
}

void pipeline::sync() {
  if (!m_active) throw usage_error("the pipeline is finished");
  auto& d = *m_conn->m_impl;
  if (!PQpipelineSync(d.conn)) internal::throw_connection_lost(internal::last_error_message(d.conn), "pipeline", d.last);
  ++m_syncs;
  m_unsynced_sends = false;
  m_sends_since_flush = 0;
  d.flush(d.make_deadline(), "pipeline");
}

result pipeline::get_result() {
  if (m_pending == 0) throw usage_error("no pipeline results are outstanding");
  auto& d = *m_conn->m_impl;
  const auto until = d.make_deadline();
  if (m_unsynced_sends) {
    if (!PQsendFlushRequest(d.conn)) internal::throw_connection_lost(internal::last_error_message(d.conn), "pipeline", d.last);
    m_unsynced_sends = false;
  }
  d.flush(until, "pipeline");
  while (true) {
    if (PQstatus(d.conn) != CONNECTION_OK) {
      m_pending = 0;
      m_syncs = 0;
      m_active = false;
      d.in_pipeline = false;
      internal::throw_connection_lost(internal::last_error_message(d.conn), "pipeline", d.last);
    }
    bool timed_out = false;
    PGresult* raw = d.next_result(until, timed_out);
    if (timed_out) {
      m_active = false;
      d.handle_timeout("pipeline", false);
    }
    if (raw == nullptr) continue;  // the end of one statement's results
    internal::result_ptr r(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_PIPELINE_SYNC:
        if (m_syncs > 0) --m_syncs;
        continue;
      case PGRES_PIPELINE_ABORTED:
        --m_pending;
        throw pipeline_aborted();
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY:
        --m_pending;
        return result(r.release());
      default: {
        --m_pending;
        auto fields = internal::read_error_fields(raw);
        const bool broken = PQstatus(d.conn) != CONNECTION_OK;
        if (broken && fields.sqlstate.empty()) {
          internal::throw_connection_lost(std::move(fields.message), "pipeline", d.last);
        }
        internal::throw_server_error(std::move(fields), "pipeline", d.last, broken);
      }
    }
  }
}

void pipeline::finish() {
  if (!m_active) return;
  auto& d = *m_conn->m_impl;
  if (m_unsynced_sends || m_syncs == 0) sync();
  while (m_pending > 0) {
    try {
      (void)get_result();
    } catch (const sql_error&) {
      // Results nobody collected: their errors are dropped with them.
    }
  }
  const auto until = d.make_deadline();
  while (m_syncs > 0) {
    bool timed_out = false;
    PGresult* raw = d.next_result(until, timed_out);
    if (timed_out) {
      m_active = false;
      d.handle_timeout("pipeline", false);
    }
    if (raw == nullptr) continue;
    if (PQresultStatus(raw) == PGRES_PIPELINE_SYNC) --m_syncs;
    PQclear(raw);
    if (PQstatus(d.conn) != CONNECTION_OK) break;
  }
  m_active = false;
  d.in_pipeline = false;
  if (PQstatus(d.conn) == CONNECTION_OK && !PQexitPipelineMode(d.conn)) {
    throw usage_error("cannot leave pipeline mode: " + internal::last_error_message(d.conn));
  }
}

}  // namespace steadypg
