/* PostgreSQL driver: statements, parameters, the statement cache, SQLSTATE
 * mapping and broken sessions, through txm_db_exec and the pool, and when
 * migrations create the relay's slot. Skipped
 * without TXMSG_TEST_PG_URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "db/db_int.h"
#include "testdb.h"

typedef struct pg_fixture {
    char *url;
    txm_db *db;     /* NULL when PostgreSQL is not available: the test skips */
    int warnings;   /* log calls at level 2 */
    char last[256]; /* text of the last log call */
} pg_fixture;

static void record_log(void *ctx, int level, const char *text)
{
    pg_fixture *fx = ctx;
    if (level == 2)
        fx->warnings++;
    snprintf(fx->last, sizeof fx->last, "%s", text);
}

/* A fresh database, opened with a pool of two so tests know which session
 * they use: txm_db_exec always takes the most recently released one. */
static int setup(void **state)
{
    pg_fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    *state = fx;
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 2;
    o.log = record_log;
    o.log_ctx = fx;
    return txm_testdb_open(TXM_TEST_PG, &o, &fx->url, &fx->db);
}

static int teardown(void **state)
{
    pg_fixture *fx = *state;
    txm_testdb_close(TXM_TEST_PG, fx->url, fx->db);
    free(fx);
    return 0;
}

static pg_fixture *get(void **state)
{
    pg_fixture *fx = *state;
    txm_testdb_require(TXM_TEST_PG, fx->db);
    return fx;
}

static void exec_ok(txm_db *db, const char *sql)
{
    txm_error err = {0};
    if (txm_db_exec(db, sql, NULL, 0, NULL, NULL, &err) != TXM_OK)
        fail_msg("%s: %s", sql, err.text);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void pg_insert_and_select_with_params_round_trip(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, n bigint)");
    txm_value ins[] = {TXM_INT(1), TXM_TEXT("ünïcode 'quoted'"), TXM_INT(INT64_MIN)};
    int64_t changes = -1;
    assert_int_equal(
        txm_db_exec(fx->db, "INSERT INTO t VALUES ($1, $2, $3)", ins, 3, NULL, &changes, NULL),
        TXM_OK);
    assert_int_equal(changes, 1);
    txm_value key = TXM_INT(1);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db, "SELECT id, name, n FROM t WHERE id = $1", &key, 1, &rows,
                                 &changes, NULL),
                     TXM_OK);
    assert_int_equal(changes, 0); /* a SELECT writes nothing */
    assert_int_equal(txm_rows_count(rows), 1);
    assert_int_equal(txm_rows_columns(rows), 3);
    assert_int_equal(txm_rows_int(rows, 0, 0), 1);
    assert_string_equal(txm_rows_text(rows, 0, 1), "ünïcode 'quoted'");
    assert_int_equal(txm_rows_int(rows, 0, 2), INT64_MIN);
    txm_rows_free(rows);
}

static void pg_changes_count_written_rows(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE TABLE t (id integer PRIMARY KEY, v text)");
    exec_ok(fx->db, "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 5) g");
    txm_value lim = TXM_INT(3);
    int64_t changes = 0;
    assert_int_equal(
        txm_db_exec(fx->db, "UPDATE t SET v = 'b' WHERE id <= $1", &lim, 1, NULL, &changes, NULL),
        TXM_OK);
    assert_int_equal(changes, 3);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db, "INSERT INTO t VALUES (9, 'c') RETURNING id", NULL, 0,
                                 &rows, &changes, NULL),
                     TXM_OK);
    assert_int_equal(changes, 1);
    assert_int_equal(txm_rows_int(rows, 0, 0), 9);
    txm_rows_free(rows);
    /* A command gives an empty result, not NULL, as on SQLite. */
    assert_int_equal(txm_db_exec(fx->db, "DELETE FROM t", NULL, 0, &rows, &changes, NULL), TXM_OK);
    assert_int_equal(changes, 6);
    assert_non_null(rows);
    assert_int_equal(txm_rows_count(rows), 0);
    txm_rows_free(rows);
}

static void pg_null_values_round_trip(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE TABLE t (id integer PRIMARY KEY, a text, b bigint)");
    txm_value ins[] = {TXM_INT(1), TXM_NULL_VALUE, TXM_NULL_VALUE};
    assert_int_equal(
        txm_db_exec(fx->db, "INSERT INTO t VALUES ($1, $2, $3)", ins, 3, NULL, NULL, NULL), TXM_OK);
    txm_value ins2[] = {TXM_INT(2), TXM_TEXT(""), TXM_TEXT(NULL)};
    assert_int_equal(
        txm_db_exec(fx->db, "INSERT INTO t VALUES ($1, $2, $3)", ins2, 3, NULL, NULL, NULL),
        TXM_OK);
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT a, b FROM t ORDER BY id", NULL, 0, &rows, NULL, NULL), TXM_OK);
    assert_int_equal(txm_rows_count(rows), 2);
    assert_true(txm_rows_is_null(rows, 0, 0));
    assert_true(txm_rows_is_null(rows, 0, 1));
    assert_false(txm_rows_is_null(rows, 1, 0)); /* empty text is not NULL */
    assert_string_equal(txm_rows_text(rows, 1, 0), "");
    assert_true(txm_rows_is_null(rows, 1, 1));
    txm_rows_free(rows);
}

static void pg_unique_violation_is_constraint(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE TABLE t (id text PRIMARY KEY)");
    txm_value v = TXM_TEXT("k");
    assert_int_equal(txm_db_exec(fx->db, "INSERT INTO t VALUES ($1)", &v, 1, NULL, NULL, NULL),
                     TXM_OK);
    txm_error err = {0};
    assert_int_equal(txm_db_exec(fx->db, "INSERT INTO t VALUES ($1)", &v, 1, NULL, NULL, &err),
                     TXM_CONSTRAINT);
    assert_int_equal(err.status, TXM_CONSTRAINT);
    assert_non_null(strstr(err.text, "postgresql: duplicate key value violates unique constraint"));
    assert_true(ends_with(err.text, "(SQLSTATE 23505)"));
    /* The failed statement ended its implicit transaction: the session is reusable. */
    exec_ok(fx->db, "SELECT 1");
}

static void pg_sqlstates_map_to_statuses(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE FUNCTION raise_code(c text) RETURNS void AS $$ BEGIN "
                    "RAISE EXCEPTION 'forced %', c USING ERRCODE = c; END $$ LANGUAGE plpgsql");
    static const struct {
        const char *code;
        txm_status st;
    } cases[] = {
        {"23503", TXM_CONSTRAINT},  {"23514", TXM_CONSTRAINT},  {"40001", TXM_CONFLICT},
        {"40P01", TXM_CONFLICT},    {"55P03", TXM_BUSY},        {"57014", TXM_BUSY},
        {"42P01", TXM_DB},          {"P0001", TXM_DB},          {"57P03", TXM_UNAVAILABLE},
        {"08006", TXM_UNAVAILABLE}, {"53300", TXM_UNAVAILABLE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        txm_value v = TXM_TEXT(cases[i].code);
        txm_error err = {0};
        assert_int_equal(txm_db_exec(fx->db, "SELECT raise_code($1)", &v, 1, NULL, NULL, &err),
                         cases[i].st);
        char want[64];
        snprintf(want, sizeof want, "postgresql: forced %s (SQLSTATE %s)", cases[i].code,
                 cases[i].code);
        assert_string_equal(err.text, want);
    }
}

static void pg_statement_timeout_is_busy(void **state)
{
    pg_fixture *fx = get(state);
    txm__conn *c = NULL;
    assert_int_equal(txm__db_acquire(fx->db, &c, NULL), TXM_OK);
    assert_int_equal(
        txm__conn_exec(fx->db, c, "SET statement_timeout = 20", NULL, 0, NULL, NULL, NULL), TXM_OK);
    txm_error err = {0};
    assert_int_equal(txm__conn_exec(fx->db, c, "SELECT pg_sleep(5)", NULL, 0, NULL, NULL, &err),
                     TXM_BUSY);
    assert_true(ends_with(err.text, "(SQLSTATE 57014)"));
    assert_false(txm__driver_pg.is_broken(c));
    txm__db_release(fx->db, c);
}

static void pg_lock_timeout_is_busy(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE TABLE t (id integer PRIMARY KEY)");
    exec_ok(fx->db, "INSERT INTO t VALUES (1)");
    txm__conn *a = NULL, *b = NULL;
    assert_int_equal(txm__db_acquire(fx->db, &a, NULL), TXM_OK);
    assert_int_equal(txm__db_acquire(fx->db, &b, NULL), TXM_OK);
    assert_int_equal(txm__conn_begin(fx->db, a, NULL), TXM_OK);
    assert_int_equal(
        txm__conn_exec(fx->db, a, "SELECT id FROM t FOR UPDATE", NULL, 0, NULL, NULL, NULL),
        TXM_OK);
    assert_int_equal(txm__conn_exec(fx->db, b, "SET lock_timeout = 20", NULL, 0, NULL, NULL, NULL),
                     TXM_OK);
    txm_error err = {0};
    assert_int_equal(txm__conn_exec(fx->db, b, "UPDATE t SET id = 2", NULL, 0, NULL, NULL, &err),
                     TXM_BUSY);
    assert_true(ends_with(err.text, "(SQLSTATE 55P03)"));
    txm__conn_rollback(fx->db, a);
    txm__db_release(fx->db, a);
    txm__db_release(fx->db, b);
}

static void pg_more_than_64_params_is_invalid(void **state)
{
    pg_fixture *fx = get(state);
    txm_value params[65];
    for (size_t i = 0; i < 65; i++)
        params[i] = TXM_INT(i);
    txm_error err = {0};
    assert_int_equal(txm_db_exec(fx->db, "SELECT 1", params, 65, NULL, NULL, &err), TXM_INVALID);
    /* 64 is the limit and works. */
    char sql[1024] = "SELECT $1::bigint";
    size_t len = strlen(sql);
    for (int i = 2; i <= 64; i++)
        len += (size_t)snprintf(sql + len, sizeof sql - len, " + $%d::bigint", i);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db, sql, params, 64, &rows, NULL, &err), TXM_OK);
    assert_int_equal(txm_rows_int(rows, 0, 0), 63 * 64 / 2);
    txm_rows_free(rows);
}

static void pg_unknown_value_type_is_invalid(void **state)
{
    pg_fixture *fx = get(state);
    txm_value v = {(txm_value_type)42, 0, NULL};
    assert_int_equal(txm_db_exec(fx->db, "SELECT $1", &v, 1, NULL, NULL, NULL), TXM_INVALID);
}

static int64_t prepared_count(txm_db *db)
{
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(db, "SELECT count(*) FROM pg_prepared_statements", NULL, 0, &rows, NULL, NULL),
        TXM_OK);
    int64_t n = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return n;
}

static void pg_statement_cache_overflow_stays_bounded(void **state)
{
    pg_fixture *fx = get(state);
    /* One session throughout: the other pool slot is never opened because
     * each call releases its connection before the next acquires one. */
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 3 * TXM__STMT_CACHE_SIZE; k++) {
            char sql[64];
            snprintf(sql, sizeof sql, "SELECT $1::bigint + %d", k);
            txm_value v = TXM_INT(1000);
            txm_rows *rows = NULL;
            assert_int_equal(txm_db_exec(fx->db, sql, &v, 1, &rows, NULL, NULL), TXM_OK);
            assert_int_equal(txm_rows_int(rows, 0, 0), 1000 + k);
            txm_rows_free(rows);
        }
    }
    int64_t n = prepared_count(fx->db);
    assert_true(n > 0 && n <= TXM__STMT_CACHE_SIZE);
}

static txm_status exec_nth(txm_db *db, txm__conn *c, int k, txm_error *err)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT %d AS k", k);
    return txm__conn_exec(db, c, sql, NULL, 0, NULL, NULL, err);
}

static void pg_statement_cache_evicts_inside_transactions(void **state)
{
    pg_fixture *fx = get(state);
    txm__conn *c = NULL;
    assert_int_equal(txm__db_acquire(fx->db, &c, NULL), TXM_OK);
    /* Eviction runs DEALLOCATE, which is not transactional and fine mid-transaction. */
    assert_int_equal(txm__conn_begin(fx->db, c, NULL), TXM_OK);
    for (int k = 0; k < 2 * TXM__STMT_CACHE_SIZE; k++)
        assert_int_equal(exec_nth(fx->db, c, k, NULL), TXM_OK);
    assert_int_equal(txm__conn_commit(fx->db, c, NULL), TXM_OK);
    /* In an aborted transaction DEALLOCATE fails too; the statement runs
     * unnamed and reports the abort, and nothing leaks on the server. */
    assert_int_equal(txm__conn_begin(fx->db, c, NULL), TXM_OK);
    txm_error err = {0};
    assert_int_equal(txm__conn_exec(fx->db, c, "SELECT 1/0", NULL, 0, NULL, NULL, &err), TXM_DB);
    assert_true(ends_with(err.text, "(SQLSTATE 22012)"));
    assert_int_equal(exec_nth(fx->db, c, 9999, &err), TXM_DB);
    assert_true(ends_with(err.text, "(SQLSTATE 25P02)"));
    txm__conn_rollback(fx->db, c);
    assert_int_equal(exec_nth(fx->db, c, 9999, NULL), TXM_OK);
    txm__db_release(fx->db, c);
    assert_true(prepared_count(fx->db) <= TXM__STMT_CACHE_SIZE);
}

static void pg_deallocated_statement_is_prepared_again(void **state)
{
    pg_fixture *fx = get(state);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db, "SELECT 41 + 1", NULL, 0, &rows, NULL, NULL), TXM_OK);
    txm_rows_free(rows);
    exec_ok(fx->db, "DEALLOCATE ALL");
    assert_int_equal(prepared_count(fx->db), 1); /* only the count query itself */
    assert_int_equal(txm_db_exec(fx->db, "SELECT 41 + 1", NULL, 0, &rows, NULL, NULL), TXM_OK);
    assert_int_equal(txm_rows_int(rows, 0, 0), 42);
    txm_rows_free(rows);
}

static void pg_altered_table_statement_is_prepared_again(void **state)
{
    pg_fixture *fx = get(state);
    exec_ok(fx->db, "CREATE TABLE t (a integer)");
    exec_ok(fx->db, "INSERT INTO t VALUES (1)");
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db, "SELECT * FROM t", NULL, 0, &rows, NULL, NULL), TXM_OK);
    assert_int_equal(txm_rows_columns(rows), 1);
    txm_rows_free(rows);
    exec_ok(fx->db, "ALTER TABLE t ADD COLUMN b text DEFAULT 'x'");
    txm_error err = {0};
    assert_int_equal(txm_db_exec(fx->db, "SELECT * FROM t", NULL, 0, &rows, NULL, &err), TXM_OK);
    assert_int_equal(txm_rows_columns(rows), 2);
    assert_string_equal(txm_rows_text(rows, 0, 1), "x");
    txm_rows_free(rows);
}

static void pg_commit_of_aborted_transaction_fails(void **state)
{
    pg_fixture *fx = get(state);
    txm__conn *c = NULL;
    assert_int_equal(txm__db_acquire(fx->db, &c, NULL), TXM_OK);
    assert_int_equal(txm__conn_begin(fx->db, c, NULL), TXM_OK);
    txm_error err = {0};
    assert_int_equal(
        txm__conn_exec(fx->db, c, "SELECT * FROM no_such_table", NULL, 0, NULL, NULL, &err),
        TXM_DB);
    assert_true(ends_with(err.text, "(SQLSTATE 42P01)"));
    assert_int_equal(txm__conn_exec(fx->db, c, "SELECT 1", NULL, 0, NULL, NULL, &err), TXM_DB);
    assert_true(ends_with(err.text, "(SQLSTATE 25P02)"));
    assert_int_equal(txm__conn_commit(fx->db, c, &err), TXM_DB);
    assert_string_equal(err.text, "postgresql: transaction was aborted");
    /* COMMIT ended the transaction, so the session may go back to the pool. */
    assert_false(txm__driver_pg.is_broken(c));
    txm__db_release(fx->db, c);
}

static void pg_session_left_in_transaction_is_broken(void **state)
{
    pg_fixture *fx = get(state);
    txm__conn *c = NULL;
    assert_int_equal(txm__db_acquire(fx->db, &c, NULL), TXM_OK);
    assert_false(txm__driver_pg.is_broken(c));
    assert_int_equal(txm__conn_begin(fx->db, c, NULL), TXM_OK);
    assert_true(txm__driver_pg.is_broken(c));
    txm__conn_rollback(fx->db, c);
    assert_false(txm__driver_pg.is_broken(c));
    txm__conn_rollback(fx->db, c); /* no transaction: nothing to do, no warning */
    assert_int_equal(fx->warnings, 0);
    txm__db_release(fx->db, c);
}

static void pg_terminated_session_is_broken_and_replaced(void **state)
{
    pg_fixture *fx = get(state);
    txm__conn *a = NULL, *b = NULL;
    assert_int_equal(txm__db_acquire(fx->db, &a, NULL), TXM_OK);
    assert_int_equal(txm__db_acquire(fx->db, &b, NULL), TXM_OK);
    txm_rows *rows = NULL;
    assert_int_equal(
        txm__conn_exec(fx->db, a, "SELECT pg_backend_pid()", NULL, 0, &rows, NULL, NULL), TXM_OK);
    txm_value pid = TXM_INT(txm_rows_int(rows, 0, 0));
    txm_rows_free(rows);
    assert_int_equal(txm__conn_exec(fx->db, b, "SELECT pg_terminate_backend($1::integer)", &pid, 1,
                                    NULL, NULL, NULL),
                     TXM_OK);
    txm__db_release(fx->db, b);
    txm_error err = {0};
    assert_int_equal(txm__conn_exec(fx->db, a, "SELECT 1", NULL, 0, NULL, NULL, &err),
                     TXM_UNAVAILABLE);
    assert_non_null(strstr(err.text, "postgresql: "));
    assert_null(strchr(err.text, '\n'));
    assert_true(txm__driver_pg.is_broken(a));
    txm__conn_rollback(fx->db, a); /* harmless on a dead session */
    txm__db_release(fx->db, a);    /* closed, not pooled */
    exec_ok(fx->db, "SELECT 1");
    exec_ok(fx->db, "SELECT 2");
}

static void pg_session_is_utc_and_logs_only_warnings(void **state)
{
    pg_fixture *fx = get(state);
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT current_setting('TimeZone')", NULL, 0, &rows, NULL, NULL),
        TXM_OK);
    assert_string_equal(txm_rows_text(rows, 0, 0), "UTC");
    txm_rows_free(rows);
    exec_ok(fx->db, "DO $$ BEGIN RAISE NOTICE 'chatty'; END $$");
    assert_int_equal(fx->warnings, 0);
    exec_ok(fx->db, "DO $$ BEGIN RAISE WARNING 'careful'; END $$");
    assert_int_equal(fx->warnings, 1);
    assert_string_equal(fx->last, "postgresql: WARNING:  careful");
}

static void pg_unreachable_server_fails_with_one_line_error(void **state)
{
    (void)state;
    txm_db *db = NULL;
    txm_error err = {0};
    assert_int_equal(
        txm_db_open("postgresql://txm@127.0.0.1:1/none?connect_timeout=2", NULL, &db, &err),
        TXM_UNAVAILABLE);
    assert_null(db);
    assert_non_null(strstr(err.text, "postgresql: "));
    assert_null(strchr(err.text, '\n'));
    assert_int_equal(
        txm_db_open("postgresql://txm@127.0.0.1:1/none?no_such_option=1", NULL, &db, &err),
        TXM_INVALID);
    assert_non_null(strstr(err.text, "no_such_option"));
}

/* Opening a brand-new database created its slot before the outbox. Once the
 * outbox exists, a dropped slot is not created again at open (a new slot
 * never sees the rows before it; the relay checks for them): a warning
 * names it instead. */
static void pg_migrate_creates_the_slot_only_for_a_new_schema(void **state)
{
    pg_fixture *fx = get(state);
    char slot[TXM_SLOT_NAME_MAX + 1];
    assert_int_equal(txm_db_relay_slot(fx->db, slot, NULL), TXM_OK);
    assert_true(txm_testdb_pg_slot_exists(fx->db, slot));
    txm_value p = TXM_TEXT(slot);
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT pg_drop_replication_slot($1)", &p, 1, NULL, NULL, NULL),
        TXM_OK);
    exec_ok(fx->db,
            "INSERT INTO txmsg_outbox (message_id, aggregate_id, correlation_id, topic,"
            " payload, created_at) VALUES ('m-1', 'a', 'c', 'order--created', '{}', now())");
    txm_db_close(fx->db);
    fx->db = NULL;
    fx->warnings = 0;
    txm_db_options o;
    txm_db_options_init(&o);
    o.log = record_log;
    o.log_ctx = fx;
    txm_error err = {0};
    assert_int_equal(txm_db_open(fx->url, &o, &fx->db, &err), TXM_OK);
    assert_false(txm_testdb_pg_slot_exists(fx->db, slot));
    assert_int_equal(fx->warnings, 1);
    assert_non_null(strstr(fx->last, slot));
    assert_non_null(strstr(fx->last, "missing"));
    assert_int_equal(txm_db_migrate(fx->db, &err), TXM_OK);
    assert_false(txm_testdb_pg_slot_exists(fx->db, slot));
}

#define PG_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        PG_TEST(pg_insert_and_select_with_params_round_trip),
        PG_TEST(pg_changes_count_written_rows),
        PG_TEST(pg_null_values_round_trip),
        PG_TEST(pg_unique_violation_is_constraint),
        PG_TEST(pg_sqlstates_map_to_statuses),
        PG_TEST(pg_statement_timeout_is_busy),
        PG_TEST(pg_lock_timeout_is_busy),
        PG_TEST(pg_more_than_64_params_is_invalid),
        PG_TEST(pg_unknown_value_type_is_invalid),
        PG_TEST(pg_statement_cache_overflow_stays_bounded),
        PG_TEST(pg_statement_cache_evicts_inside_transactions),
        PG_TEST(pg_deallocated_statement_is_prepared_again),
        PG_TEST(pg_altered_table_statement_is_prepared_again),
        PG_TEST(pg_commit_of_aborted_transaction_fails),
        PG_TEST(pg_session_left_in_transaction_is_broken),
        PG_TEST(pg_terminated_session_is_broken_and_replaced),
        PG_TEST(pg_session_is_utc_and_logs_only_warnings),
        PG_TEST(pg_migrate_creates_the_slot_only_for_a_new_schema),
        cmocka_unit_test(pg_unreachable_server_fails_with_one_line_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
