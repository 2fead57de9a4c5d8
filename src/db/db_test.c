/* The database handle on both dialects: waiting for another commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(db_wait_for_commit_wakes_on_another_commit),
        TXM_TEST_BOTH(db_wait_for_commit_bad_arguments_are_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
