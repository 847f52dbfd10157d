#include <gtest/gtest.h>

#include <string_view>

#include "sql_scan.hpp"

using steadypg::internal::is_transaction_control;
using steadypg::internal::mentions_commit;
using steadypg::internal::placeholder_count;

TEST(sql_scan, placeholders_outside_quotes_and_comments) {
  struct row {
    std::string_view sql;
    int want;
  };
  const row table[] = {
      {"SELECT 1", 0},
      {"SELECT $1", 1},
      {"SELECT $1, $2, $1", 2},
      {"SELECT $10", 10},
      {"SELECT $1, $10", 10},
      {"SELECT $2", 2},  // the highest, not the count
      {"SELECT '$1'", 0},
      {"SELECT 'it''s $1', $2", 2},
      {"SELECT E'\\' $1', $2", 2},  // E'\' $1' is one string
      {"SELECT e'a\\'b $3' || $1", 1},
      {"SELECT 'a\\', $1", 1},  // a plain string: the backslash escapes nothing
      {"SELECT \"$1\" FROM t WHERE x = $2", 2},
      {"SELECT \"a\"\"$5\", $1", 1},
      {"SELECT 1 -- $3\n, $1", 1},
      {"SELECT 1 /* $3 /* nested $4 */ still $5 */ + $1", 1},
      {"SELECT $$ $3 $$, $1", 1},
      {"SELECT $body$ $3 $$ $4 $body$, $1", 1},
      {"SELECT $a$ it's $9 $a$ || $2", 2},
      {"SELECT a$1 FROM t", 0},  // $ inside an identifier
      {"SELECT 'unterminated $4", 0},
      {"SELECT $1 /* unterminated $4", 1},
  };
  for (const auto& r : table) EXPECT_EQ(placeholder_count(r.sql), r.want) << r.sql;
}

TEST(sql_scan, commit_forms_are_found) {
  for (std::string_view sql : {
           "COMMIT",
           "commit",
           "commit;",
           "  \n\tCommit  ",
           "/* tag */ COMMIT",
           "/* a /* nested */ comment */COMMIT",
           "-- leading comment\nCOMMIT",
           "-- one\n  -- two\n/* three */ commit work",
           "COMMIT AND CHAIN",
           "COMMIT AND NO CHAIN",
           "COMMIT TRANSACTION",
           "COMMIT PREPARED 'x'",
           "END",
           "end;",
           "END TRANSACTION",
           "END WORK",
           "PREPARE TRANSACTION 'gid'",
       }) {
    EXPECT_TRUE(mentions_commit(sql, true)) << sql;
    EXPECT_TRUE(mentions_commit(sql, false)) << sql;
  }
}

TEST(sql_scan, non_commits_are_not) {
  for (std::string_view sql : {
           "SELECT 'commit'",
           "SELECT 'x; commit'",
           "CREATE TABLE commits (id int)",
           "INSERT INTO commit_log VALUES (1)",
           "SELECT * FROM endpoints",
           "-- commit",
           "/* commit */",
           "/* commit /* nested */ commit */ SELECT 1",
           "SELECT \"commit\" FROM t",
           "SELECT \"a;commit\" FROM t",
           "SELECT 1 -- ; commit",
           "SELECT CASE WHEN true THEN 1 END",
           "DO $$ BEGIN PERFORM 1; END $$",
           "DO $x$ BEGIN NULL; COMMIT; END $x$",
           "SELECT E'\\'; commit'",
           "ROLLBACK",
           "ROLLBACK PREPARED 'x'",
           "PREPARE st AS SELECT 1",
           "",
       }) {
    EXPECT_FALSE(mentions_commit(sql, true)) << sql;
    EXPECT_FALSE(mentions_commit(sql, false)) << sql;
  }
}

TEST(sql_scan, commit_after_a_semicolon_counts_only_in_multi_statement_text) {
  for (std::string_view sql : {
           "BEGIN; INSERT INTO t VALUES (1); COMMIT",
           "INSERT INTO t VALUES (1);commit;",
           "INSERT INTO t VALUES ('a;b'); /* done */ END",
           "UPDATE t SET x = 1;\n-- now\nCOMMIT PREPARED 'x'",
           "SELECT $$;$$; END WORK",
           "SELECT 1; COMMIT AND CHAIN",
       }) {
    EXPECT_TRUE(mentions_commit(sql, false)) << sql;
    EXPECT_FALSE(mentions_commit(sql, true)) << sql;
  }
  for (std::string_view sql : {
           "SELECT 'a; commit'; SELECT 2",
           "SELECT \"x;commit\"; SELECT 2",
           "SELECT 1 /* ; commit */; SELECT 2",
           "SELECT $t$; COMMIT; $t$; SELECT 2",
           "SELECT 1; -- commit\nSELECT 2",
           "SELECT 1; SELECT 'commit'",
           "SELECT 1; CREATE TABLE commits (id int)",
       }) {
    EXPECT_FALSE(mentions_commit(sql, false)) << sql;
  }
}

TEST(sql_scan, transaction_control_after_comments) {
  for (std::string_view sql : {
           "BEGIN",
           "  start transaction",
           "/* a /* nested */ comment */ BEGIN",
           "-- x\nROLLBACK",
           "(COMMIT)",
           "SAVEPOINT s",
           "RELEASE SAVEPOINT s",
           "ABORT",
           "END",
           "PREPARE TRANSACTION 'x'",
           "prepare /* c */ transaction 'x'",
       }) {
    EXPECT_TRUE(is_transaction_control(sql)) << sql;
  }
  for (std::string_view sql : {
           "SELECT 1",
           "/* BEGIN */ SELECT 1",
           "/* a /* BEGIN */ still a comment */ SELECT 1",
           "PREPARE st AS SELECT 1",
           "INSERT INTO begins VALUES (1)",
           "\"begin\"",
       }) {
    EXPECT_FALSE(is_transaction_control(sql)) << sql;
  }
}

TEST(sql_scan, session_only_features_behind_a_transaction_pooler) {
  using steadypg::internal::session_only_feature;
  struct row {
    std::string_view sql;
    std::string_view want;
  };
  const row table[] = {
      {"LISTEN events", "LISTEN"},
      {"  -- note\n listen events", "LISTEN"},
      {"SELECT 1; LISTEN events", "LISTEN"},
      {"UNLISTEN *", ""},
      {"NOTIFY events", ""},
      {"SELECT pg_advisory_lock(42)", "a session advisory lock"},
      {"SELECT pg_try_advisory_lock_shared(1, 2)", "a session advisory lock"},
      {"SELECT pg_advisory_xact_lock(42)", ""},
      {"SELECT pg_try_advisory_xact_lock(42)", ""},
      {"SELECT 'pg_advisory_lock(42)'", ""},
      {"SELECT 1 /* pg_advisory_lock(1) */", ""},
      {"SELECT \"pg_advisory_lock\" FROM t", ""},
      {"SET search_path = public", "a session SET"},
      {"set session statement_timeout = 5", "a session SET"},
      {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "a session SET"},
      {"SET LOCAL statement_timeout = 5", ""},
      {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ""},
      {"SET CONSTRAINTS ALL DEFERRED", ""},
      {"UPDATE t SET a = 1", ""},
      {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "a WITH HOLD cursor"},
      {"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", ""},
      {"DECLARE c CURSOR FOR WITH x AS (SELECT 1) SELECT * FROM x", ""},
      {"WITH hold AS (SELECT 1) SELECT * FROM hold", ""},
      {"PREPARE p AS SELECT 1", "a named prepared statement (PREPARE)"},
      {"PREPARE TRANSACTION 'x'", ""},
      {"BEGIN", ""},
      {"SELECT $$LISTEN x$$", ""},
  };
  for (const auto& r : table) EXPECT_EQ(session_only_feature(r.sql, false), r.want) << r.sql;
  EXPECT_EQ(session_only_feature("BEGIN", true), "a transaction block");
  EXPECT_EQ(session_only_feature("start transaction", true), "a transaction block");
  EXPECT_EQ(session_only_feature("SELECT 1", true), "");
}

TEST(sql_scan, statements_that_cannot_carry_settings_in_their_transaction) {
  using steadypg::internal::refuses_transaction_block;
  for (std::string_view sql :
       {"VACUUM t", "vacuum", "CREATE INDEX CONCURRENTLY i ON t (a)", "create unique index concurrently i on t (a)",
        "DROP INDEX CONCURRENTLY i", "CREATE DATABASE d", "DROP DATABASE d", "ALTER SYSTEM SET work_mem = '8MB'",
        "COPY t FROM STDIN", "REINDEX TABLE CONCURRENTLY t", "SELECT 1; VACUUM"}) {
    EXPECT_TRUE(refuses_transaction_block(sql)) << sql;
  }
  for (std::string_view sql : {"SELECT 1", "CREATE INDEX i ON t (a)", "INSERT INTO t VALUES ('VACUUM')",
                               "CREATE TABLE database (a int)", "ALTER TABLE t ADD COLUMN b int"}) {
    EXPECT_FALSE(refuses_transaction_block(sql)) << sql;
  }
}
