// explain(): EXPLAIN on one connection with bound parameters; ANALYZE inside a transaction
// or a savepoint that is always rolled back; the foreign-key catalog check.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>
#include <string>

#include "sql_scan.hpp"
#include "steadypg/error.hpp"
#include "steadypg/plan.hpp"
#include "steadypg/result.hpp"

namespace steadypg::plan {

namespace {

std::string first_word(std::string_view sql, std::size_t& pos) {
  pos = internal::skip_space_and_comments(sql, pos);
  while (pos < sql.size() && sql[pos] == '(') pos = internal::skip_space_and_comments(sql, pos + 1);
  std::string w;
  while (pos < sql.size() && internal::is_ident_char(sql[pos])) {
    w += static_cast<char>(std::tolower(static_cast<unsigned char>(sql[pos])));
    ++pos;
  }
  return w;
}

// EXPLAIN takes SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES, EXECUTE, DECLARE, CREATE TABLE
// AS and CREATE MATERIALIZED VIEW (explain.sgml); refuse the rest before sending anything, with
// the reason, rather than pass the server's syntax error on.
void check_explainable(std::string_view sql) {
  if (internal::refuses_transaction_block(sql)) {
    throw usage_error(
        fmt::format("explain: `{}` cannot run inside a transaction block, so it is neither "
                    "EXPLAINed nor run (VACUUM, CREATE INDEX CONCURRENTLY, … are refused)",
                    sql.substr(0, 80)));
  }
  if (internal::is_transaction_control(sql)) {
    throw usage_error(fmt::format("explain: `{}` is transaction control, which has no plan", sql.substr(0, 80)));
  }
  std::size_t pos = 0;
  const std::string w = first_word(sql, pos);
  static constexpr std::array<std::string_view, 11> ok{"select", "with",  "insert",  "update",  "delete", "merge",
                                                       "values", "table", "execute", "declare", "create"};
  if (std::find(ok.begin(), ok.end(), w) == ok.end()) {
    throw usage_error(
        fmt::format("explain: `{}` is not a statement EXPLAIN takes (SELECT, WITH, INSERT, UPDATE, "
                    "DELETE, MERGE, VALUES, TABLE, EXECUTE, DECLARE, CREATE TABLE AS)",
                    w.empty() ? sql.substr(0, 80) : std::string_view(w)));
  }
  if (w == "create") {
    std::size_t p2 = pos;
    std::string next = first_word(sql, p2);
    while (next == "temp" || next == "temporary" || next == "unlogged" || next == "global" || next == "local") {
      next = first_word(sql, p2);
    }
    if (next != "table" && next != "materialized") {
      throw usage_error(
          "explain: of CREATE statements only CREATE TABLE … AS and CREATE MATERIALIZED VIEW have a plan");
    }
  }
}

std::string plan_text(const result& rs) {
  if (rs.size() != 1 || rs.columns() != 1) {
    throw usage_error(fmt::format("explain: expected one row of JSON from EXPLAIN, got {} rows", rs.size()));
  }
  return std::string(rs[0][0].text());
}

// Runs one statement and, whatever happens, the cleanup after it; a cleanup that fails
// leaves the connection to its own error (the pool drops a connection it cannot reset).
template <typename Fn>
std::string guarded(connection& conn, std::string_view undo, Fn&& fn) {
  std::string out;
  try {
    out = fn();
  } catch (...) {
    try {
      if (!conn.is_broken()) (void)conn.execute(undo);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the first error is the one to report
    }
    throw;
  }
  (void)conn.execute(undo);
  return out;
}

}  // namespace

void explain_options::validate() const {
  if (statement_timeout < std::chrono::milliseconds(1) || statement_timeout > std::chrono::hours(24)) {
    throw config_error(fmt::format("explain_options.statement_timeout = {} ms: must be 1 ms – 86400000 ms",
                                   statement_timeout.count()));
  }
  thresholds.validate();
}

explain_report explain(connection& conn, std::string_view sql, const param_list& params,
                       const explain_options& options) {
  options.validate();
  check_explainable(sql);
  const auto status = conn.status();
  if (status == connection_status::failed_transaction) {
    throw usage_error("explain: the connection's transaction has failed; roll it back first");
  }
  const auto refs = params.refs();
  std::string text;
  if (!options.analyze) {
    text = plan_text(conn.execute_refs(fmt::format("EXPLAIN (FORMAT JSON, VERBOSE) {}", sql), refs, false));
  } else {
    const std::string stmt =
        fmt::format("EXPLAIN (FORMAT JSON, VERBOSE, ANALYZE{}) {}", options.buffers ? ", BUFFERS" : "", sql);
    const std::string timeout = fmt::format("SET LOCAL statement_timeout = {}", options.statement_timeout.count());
    if (status == connection_status::in_transaction) {
      // A savepoint keeps the caller's transaction: ROLLBACK TO undoes the statement's writes
      // and the SET LOCAL, and RELEASE leaves the transaction as it was.
      (void)conn.execute("SAVEPOINT steadypg_explain");
      text = guarded(conn, "ROLLBACK TO SAVEPOINT steadypg_explain", [&] {
        (void)conn.execute(timeout);
        return plan_text(conn.execute_refs(stmt, refs, false));
      });
      (void)conn.execute("RELEASE SAVEPOINT steadypg_explain");
    } else {
      (void)conn.execute("BEGIN");
      text = guarded(conn, "ROLLBACK", [&] {
        (void)conn.execute(timeout);
        return plan_text(conn.execute_refs(stmt, refs, false));
      });
    }
  }
  explain_report report;
  report.plan = parse(text);
  report.findings = analyze(report.plan, options.thresholds);
  if (options.check_foreign_keys) {
    std::set<std::string> tables;
    for (const node* n : report.plan.nodes()) {
      if (!n->relation.empty()) tables.insert(n->schema.empty() ? n->relation : n->schema + "." + n->relation);
    }
    if (!tables.empty()) {
      auto fk = unindexed_foreign_keys(conn, {tables.begin(), tables.end()});
      report.findings.insert(report.findings.end(), fk.begin(), fk.end());
    }
  }
  return report;
}

std::vector<finding> unindexed_foreign_keys(connection& conn, const std::vector<std::string>& tables) {
  // ongres/pgqueries sql/DDL/fk_without_index.sql: a foreign key is served by an index on the
  // referencing table whose leading columns are the key's columns (in any order).
  static constexpr std::string_view query = R"SQL(
SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
          FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols,
       pg_relation_size(c.conrelid) AS child_bytes
  FROM pg_constraint c
 WHERE c.contype = 'f'
   AND ($1::text[] IS NULL
        OR c.conrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
        OR c.confrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t))
   AND NOT EXISTS (
         SELECT 1 FROM pg_index i
          WHERE i.indrelid = c.conrelid AND i.indpred IS NULL
            AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
            AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)
 ORDER BY 2, 1)SQL";
  param_list p;
  if (tables.empty()) p.add_null();
  else p.add(tables);
  const result rs = conn.execute_refs(query, p.refs(), false);
  std::vector<finding> out;
  for (const auto& r : rs) {
    const auto [name, child, parent, cols, bytes] =
        r.as<std::string, std::string, std::string, std::string, std::int64_t>();
    out.push_back(
        {"fk_missing_index", severity::warning, fmt::format("table {}", child),
         fmt::format("foreign key {} ({}) → {} has no index on {} ({} bytes)", name, cols, parent, child, bytes),
         fmt::format("CREATE INDEX CONCURRENTLY ON {} ({}) — without it every DELETE or key UPDATE on "
                     "{} scans {}",
                     child, cols, parent, child)});
  }
  return out;
}

}  // namespace steadypg::plan
