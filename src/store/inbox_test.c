/* Inbox repository on SQLite and PostgreSQL. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testdb.h"
#include "txmsg/admin.h"

static void inbox_saved_pair_is_found_with_its_time(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    int64_t before = txm_now_us();
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "customer--order-created", "m-1", NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    int64_t at = 0;
    assert_int_equal(txm_inbox_get(fx->db, "customer--order-created", "m-1", &at, NULL), TXM_OK);
    assert_true(at >= before && at <= txm_now_us());
    txm_error err;
    assert_int_equal(txm_inbox_get(fx->db, "customer--order-created", "m-2", &at, &err),
                     TXM_NOT_FOUND);
}

static void inbox_same_message_in_two_subscriptions_is_not_duplicate(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "sub-a", "m-1", NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "sub-b", "m-1", NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    txm_error err;
    assert_int_equal(txm_inbox_save(uow, "sub-b", "m-1", &err), TXM_DUPLICATE);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_DUPLICATE);
    assert_string_equal(err.text, "inbox: m-1 already processed by sub-b");
}

static void inbox_rolled_back_save_is_not_recorded(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "sub-a", "m-9", NULL), TXM_OK);
    txm_uow_rollback(&uow);
    assert_int_equal(txm_inbox_get(fx->db, "sub-a", "m-9", NULL, NULL), TXM_NOT_FOUND);
}

static void inbox_bad_keys_are_invalid(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    char longid[300];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "", "m", NULL), TXM_INVALID);
    assert_int_equal(txm_inbox_save(uow, "s", longid, NULL), TXM_INVALID);
    assert_int_equal(txm_inbox_save(uow, NULL, "m", NULL), TXM_INVALID);
    /* Refused arguments do not fail the unit of work. */
    assert_int_equal(txm_inbox_save(uow, "s", "m", NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
}

static void inbox_batch_records_new_ids_and_reports_duplicates(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "sub-a", "m-2", NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);

    const char *ids[] = {"m-1", "m-2", "m-3", "m-1", "m-\"q\"-4"};
    bool fresh[5];
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save_batch(uow, "sub-a", ids, 5, fresh, NULL), TXM_OK);
    assert_true(fresh[0]);
    assert_false(fresh[1]); /* processed before */
    assert_true(fresh[2]);
    assert_false(fresh[3]); /* repeated in the batch */
    assert_true(fresh[4]);
    /* Undoing one message's work: its row goes, the others stay. */
    assert_int_equal(txm_inbox_remove(uow, "sub-a", "m-3", NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_get(fx->db, "sub-a", "m-1", NULL, NULL), TXM_OK);
    assert_int_equal(txm_inbox_get(fx->db, "sub-a", "m-3", NULL, NULL), TXM_NOT_FOUND);
    assert_int_equal(txm_inbox_get(fx->db, "sub-a", "m-\"q\"-4", NULL, NULL), TXM_OK);
    assert_int_equal(txm_inbox_get(fx->db, "sub-b", "m-1", NULL, NULL), TXM_NOT_FOUND);

    /* Bad input is refused and changes nothing. */
    char longid[300];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    const char *bad[] = {"m-7", longid};
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save_batch(uow, "sub-a", bad, 2, fresh, NULL), TXM_INVALID);
    assert_int_equal(txm_inbox_save_batch(uow, "sub-a", bad, 0, fresh, NULL), TXM_INVALID);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_get(fx->db, "sub-a", "m-7", NULL, NULL), TXM_NOT_FOUND);
}

static void inbox_handled_since_counts_recent_rows_per_subscription(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    int64_t now = txm_now_us();
    txm_testdb_inbox_insert_at(fx->db, "sub-b", "m-1", now - 2000000);
    txm_testdb_inbox_insert_at(fx->db, "sub-a", "m-1", now - 3000000);
    txm_testdb_inbox_insert_at(fx->db, "sub-a", "m-2", now - 1000000);
    txm_testdb_inbox_insert_at(fx->db, "sub-a", "m-3", now - 60000000); /* a minute ago: outside */
    txm_testdb_inbox_insert_at(fx->db, "sub-c", "m-4", now - 60000000);
    txm_inbox_handled *h = NULL;
    size_t n = 0;
    assert_int_equal(txm_inbox_handled_since(fx->db, now - 10000000, &h, &n, NULL), TXM_OK);
    assert_int_equal(n, 2); /* sub-c recorded nothing lately */
    assert_string_equal(h[0].subscription, "sub-a");
    assert_int_equal(h[0].count, 2);
    assert_string_equal(h[1].subscription, "sub-b");
    assert_int_equal(h[1].count, 1);
    txm_free(h);
    assert_int_equal(txm_inbox_handled_since(fx->db, now + 1000000, &h, &n, NULL), TXM_OK);
    assert_int_equal(n, 0);
    assert_null(h);
    assert_int_equal(txm_inbox_handled_since(NULL, now, &h, &n, NULL), TXM_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(inbox_saved_pair_is_found_with_its_time),
        TXM_TEST_BOTH(inbox_same_message_in_two_subscriptions_is_not_duplicate),
        TXM_TEST_BOTH(inbox_rolled_back_save_is_not_recorded),
        TXM_TEST_BOTH(inbox_bad_keys_are_invalid),
        TXM_TEST_BOTH(inbox_batch_records_new_ids_and_reports_duplicates),
        TXM_TEST_BOTH(inbox_handled_since_counts_recent_rows_per_subscription),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
