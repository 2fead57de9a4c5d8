/* The database handle on both dialects: waiting for another commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "testbroker.h"
#include "testdb.h"

/* SQLite: once watching, a commit through another handle ends the wait
 * long before its timeout. PostgreSQL has no such wait. */
static void db_wait_for_commit_wakes_on_another_commit(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    bool sqlite = strcmp(txm_db_dialect(fx->db), "sqlite") == 0;
    txm_error err = {0};
    if (!sqlite) {
        assert_int_equal(txm_db_wait_for_commit(fx->db, 0, &err), TXM_UNSUPPORTED);
        return;
    }
    assert_int_equal(txm_db_wait_for_commit(fx->db, 0, &err), TXM_OK);
    txm_db *other = NULL;
    assert_int_equal(txm_db_open(fx->url, NULL, &other, &err), TXM_OK);
    assert_int_equal(txm_db_exec(other, "CREATE TABLE t (a INTEGER)", NULL, 0, NULL, NULL, &err),
                     TXM_OK);
    txm_db_close(other);
    long long start = txm_test_now_ms();
    assert_int_equal(txm_db_wait_for_commit(fx->db, 10000, &err), TXM_OK);
    assert_true(txm_test_now_ms() - start < 5000);
}

static void db_wait_for_commit_bad_arguments_are_invalid(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    assert_int_equal(txm_db_wait_for_commit(NULL, 0, NULL), TXM_INVALID);
    assert_int_equal(txm_db_wait_for_commit(fx->db, -1, NULL), TXM_INVALID);
}

/* txmsg was the first to use SQLite in this process, so SQLite's memory
 * statistics (a process-wide mutex on every allocation) are off: nothing
 * is counted however much SQLite allocates. */
static void db_sqlite_memory_statistics_are_off(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    if (strcmp(txm_db_dialect(fx->db), "sqlite") != 0)
        return;
    assert_int_equal(txm_db_exec(fx->db, "CREATE TABLE m (a TEXT)", NULL, 0, NULL, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_db_exec(fx->db,
                                 "INSERT INTO m SELECT hex(randomblob(100)) FROM"
                                 " (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1"
                                 " FROM c WHERE x < 1000) SELECT x FROM c)",
                                 NULL, 0, NULL, NULL, NULL),
                     TXM_OK);
    assert_int_equal(sqlite3_memory_used(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(db_wait_for_commit_wakes_on_another_commit),
        TXM_TEST_BOTH(db_wait_for_commit_bad_arguments_are_invalid),
        TXM_TEST_BOTH(db_sqlite_memory_statistics_are_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
