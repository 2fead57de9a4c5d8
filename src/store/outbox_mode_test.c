/* The outbox mode: stored per database, read at open, and what a publish in
 * messages mode writes (no row) on PostgreSQL; SQLite has the table only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testdb.h"

static int64_t outbox_rows(txm_db *db)
{
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(db, "SELECT count(*) FROM txmsg_outbox", NULL, 0, &rows, NULL, NULL), TXM_OK);
    int64_t n = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return n;
}

static txm_status publish_one(txm_db *db, const char *id, bool commit)
{
    txm_msg *m = NULL;
    assert_int_equal(
        txm_msg_new_with(id, "orders", "order--created", "o-1", "c-1", "{}", 1, &m, NULL), TXM_OK);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    txm_status st = txm_outbox_publish(uow, &m, NULL);
    assert_null(m);
    if (!commit) {
        txm_uow_rollback(&uow);
        return st;
    }
    txm_status cst = txm_uow_commit(&uow, NULL);
    return st != TXM_OK ? st : cst;
}

static void outbox_mode_defaults_to_table(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    assert_int_equal(txm_outbox_mode_get(fx->db), TXM_OUTBOX_TABLE);
    assert_int_equal(txm_outbox_mode_get(NULL), TXM_OUTBOX_TABLE);
    assert_string_equal(txm_outbox_mode_name(TXM_OUTBOX_TABLE), "table");
    assert_string_equal(txm_outbox_mode_name(TXM_OUTBOX_MESSAGES), "messages");
    assert_string_equal(txm_outbox_mode_name((txm_outbox_mode)7), "");
    assert_int_equal(txm_outbox_set_mode(NULL, TXM_OUTBOX_TABLE, NULL), TXM_INVALID);
    assert_int_equal(txm_outbox_set_mode(fx->db, (txm_outbox_mode)7, NULL), TXM_INVALID);
    assert_int_equal(txm_outbox_set_mode(fx->db, TXM_OUTBOX_TABLE, NULL), TXM_OK);
}

static void outbox_messages_mode_writes_no_row_and_needs_postgresql(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_error err;
    txm_status st = txm_outbox_set_mode(fx->db, TXM_OUTBOX_MESSAGES, &err);
    if (fx->backend == TXM_TEST_SQLITE) {
        assert_int_equal(st, TXM_UNSUPPORTED);
        assert_int_equal(txm_outbox_mode_get(fx->db), TXM_OUTBOX_TABLE);
        return;
    }
    assert_int_equal(st, TXM_OK);
    assert_int_equal(txm_outbox_mode_get(fx->db), TXM_OUTBOX_MESSAGES);
    assert_int_equal(publish_one(fx->db, "id-1", true), TXM_OK);
    assert_int_equal(publish_one(fx->db, "id-2", false), TXM_OK);
    /* No table, so the same id again is not detected by the writer. */
    assert_int_equal(publish_one(fx->db, "id-1", true), TXM_OK);
    assert_int_equal(outbox_rows(fx->db), 0);
    /* A new handle reads the stored mode; back to table mode, rows again. */
    txm_db *again = NULL;
    assert_int_equal(txm_db_open(fx->url, NULL, &again, NULL), TXM_OK);
    assert_int_equal(txm_outbox_mode_get(again), TXM_OUTBOX_MESSAGES);
    assert_int_equal(txm_outbox_set_mode(again, TXM_OUTBOX_TABLE, NULL), TXM_OK);
    assert_int_equal(publish_one(again, "id-3", true), TXM_OK);
    assert_int_equal(outbox_rows(again), 1);
    txm_db_close(again);
}

/* A schema of version 1 opened without migrating has no txmsg_settings: it
 * reads as table mode, and setting a mode says why it cannot. An unknown
 * stored value reads as table mode too. */
static void outbox_mode_without_settings_table_or_with_bad_value_is_table(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    if (fx->backend == TXM_TEST_SQLITE)
        return;
    assert_int_equal(txm_db_exec(fx->db, "INSERT INTO txmsg_settings VALUES ('outbox_mode', 'x')",
                                 NULL, 0, NULL, NULL, NULL),
                     TXM_OK);
    txm_db *db = NULL;
    assert_int_equal(txm_db_open(fx->url, NULL, &db, NULL), TXM_OK);
    assert_int_equal(txm_outbox_mode_get(db), TXM_OUTBOX_TABLE);
    txm_db_close(db);
    assert_int_equal(txm_db_exec(fx->db, "DROP TABLE txmsg_settings", NULL, 0, NULL, NULL, NULL),
                     TXM_OK);
    txm_db_options o;
    txm_db_options_init(&o);
    o.migrate = false;
    assert_int_equal(txm_db_open(fx->url, &o, &db, NULL), TXM_OK);
    assert_int_equal(txm_outbox_mode_get(db), TXM_OUTBOX_TABLE);
    txm_error err;
    assert_int_equal(txm_outbox_set_mode(db, TXM_OUTBOX_MESSAGES, &err), TXM_STATE);
    assert_non_null(strstr(err.text, "predates version 2"));
    txm_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(outbox_mode_defaults_to_table),
        TXM_TEST_BOTH(outbox_messages_mode_writes_no_row_and_needs_postgresql),
        TXM_TEST_BOTH(outbox_mode_without_settings_table_or_with_bad_value_is_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
