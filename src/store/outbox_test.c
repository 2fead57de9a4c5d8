/* Outbox repository on SQLite and PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testdb.h"

/* The not-dispatched rows, oldest first, through the one list call. */
static txm_status list_not_dispatched(txm_db *db, size_t limit, txm_outbox_entry ***out,
                                      size_t *count, txm_error *err)
{
    txm_outbox_filter f;
    txm_outbox_filter_init(&f);
    f.not_dispatched_only = true;
    f.limit = limit;
    return txm_outbox_list(db, &f, out, count, err);
}

static void publish_three(txm_db *db, char ids[3][TXM_UUID_LEN + 1])
{
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    for (int i = 0; i < 3; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "{\"n\":%d}", i);
        txm_msg *m = NULL;
        assert_int_equal(txm_msg_new("order--created", "order-1", NULL, payload, &m, NULL), TXM_OK);
        assert_int_equal(txm_msg_set_source(m, "orders", NULL), TXM_OK);
        memcpy(ids[i], txm_msg_id(m), TXM_UUID_LEN + 1);
        assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    }
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
}

static void outbox_three_in_one_uow_list_oldest_first(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    char ids[3][TXM_UUID_LEN + 1];
    publish_three(fx->db, ids);
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    assert_int_equal(list_not_dispatched(fx->db, 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        const txm_msg *m = txm_outbox_entry_msg(list[i]);
        assert_string_equal(txm_msg_id(m), ids[i]);
        assert_string_equal(txm_msg_topic(m), "order--created");
        assert_string_equal(txm_msg_source(m), "orders");
        assert_string_equal(txm_msg_aggregate_id(m), "order-1");
        assert_false(txm_outbox_entry_is_dispatched(list[i]));
        if (i > 0)
            assert_true(txm_outbox_entry_seq(list[i]) > txm_outbox_entry_seq(list[i - 1]));
    }
    assert_string_equal(txm_msg_payload(txm_outbox_entry_msg(list[2])), "{\"n\":2}");
    txm_outbox_list_free(list, n);

    /* The limit is honoured and still oldest first. */
    assert_int_equal(list_not_dispatched(fx->db, 2, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(txm_msg_id(txm_outbox_entry_msg(list[0])), ids[0]);
    txm_outbox_list_free(list, n);
}

/* The filters of txm_outbox_list: aggregate id, dispatched or not. */
static void outbox_list_filters_by_aggregate_and_state(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    char ids[3][TXM_UUID_LEN + 1];
    publish_three(fx->db, ids); /* aggregate order-1 */
    txm_uow *uow = NULL;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new("order--created", "order-2", NULL, "{}", &m, NULL), TXM_OK);
    char other[TXM_UUID_LEN + 1];
    memcpy(other, txm_msg_id(m), sizeof other);
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    const char *mark[] = {ids[1]};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, mark, 1, NULL, NULL), TXM_OK);

    txm_outbox_filter f;
    txm_outbox_filter_init(&f);
    f.aggregate_id = "order-2";
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_outbox_list(fx->db, &f, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_msg_id(txm_outbox_entry_msg(list[0])), other);
    txm_outbox_list_free(list, n);

    f.aggregate_id = "order-1";
    f.dispatched_only = true;
    assert_int_equal(txm_outbox_list(fx->db, &f, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_msg_id(txm_outbox_entry_msg(list[0])), ids[1]);
    txm_outbox_list_free(list, n);

    f.dispatched_only = false;
    f.not_dispatched_only = true;
    assert_int_equal(txm_outbox_list(fx->db, &f, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(txm_msg_id(txm_outbox_entry_msg(list[0])), ids[0]);
    assert_string_equal(txm_msg_id(txm_outbox_entry_msg(list[1])), ids[2]);
    txm_outbox_list_free(list, n);

    f.dispatched_only = true; /* both: no row is both */
    assert_int_equal(txm_outbox_list(fx->db, &f, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 0);
    txm_outbox_list_free(list, n);
}

static void outbox_mark_dispatched_twice_counts_two(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    char ids[3][TXM_UUID_LEN + 1];
    publish_three(fx->db, ids);
    const char *first[] = {ids[0]};
    size_t marked = 0;
    int64_t before = txm_now_us();
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, first, 1, &marked, NULL), TXM_OK);
    assert_int_equal(marked, 1);
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, first, 1, &marked, NULL), TXM_OK);

    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, ids[0], &e, NULL), TXM_OK);
    assert_true(txm_outbox_entry_is_dispatched(e));
    assert_int_equal(txm_outbox_entry_dispatch_count(e), 2);
    assert_true(txm_outbox_entry_last_dispatched_at_us(e) >= before);
    assert_true(txm_outbox_entry_last_dispatched_at_us(e) <= txm_now_us());
    txm_outbox_entry_free(e);

    /* Not-dispatched list no longer has it; a batch marks the rest. */
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    assert_int_equal(list_not_dispatched(fx->db, 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(txm_msg_id(txm_outbox_entry_msg(list[0])), ids[1]);
    txm_outbox_list_free(list, n);
    const char *rest[] = {ids[1], ids[2], "no-such-id"};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, rest, 3, &marked, NULL), TXM_OK);
    assert_int_equal(marked, 2);
    assert_int_equal(txm_outbox_get(fx->db, ids[1], &e, NULL), TXM_OK);
    assert_int_equal(txm_outbox_entry_dispatch_count(e), 1);
    txm_outbox_entry_free(e);
}

/* The marker's retry: only rows not dispatched yet are marked and counted,
 * so a row marked before keeps its dispatch count. */
static void outbox_mark_dispatched_new_counts_only_rows_not_dispatched(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    char ids[3][TXM_UUID_LEN + 1];
    publish_three(fx->db, ids);
    const char *first[] = {ids[0]};
    size_t marked = 0;
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, first, 1, &marked, NULL), TXM_OK);
    const char *all[] = {ids[0], ids[1], ids[2], "no-such-id"};
    assert_int_equal(txm_outbox_mark_dispatched_new(fx->db, all, 4, &marked, NULL), TXM_OK);
    assert_int_equal(marked, 2);
    assert_int_equal(txm_outbox_mark_dispatched_new(fx->db, all, 4, &marked, NULL), TXM_OK);
    assert_int_equal(marked, 0);
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, ids[0], &e, NULL), TXM_OK);
    assert_int_equal(txm_outbox_entry_dispatch_count(e), 1);
    txm_outbox_entry_free(e);
    int64_t left = -1;
    assert_int_equal(txm_outbox_count_not_dispatched(fx->db, &left, NULL), TXM_OK);
    assert_int_equal(left, 0);
}

static void outbox_get_returns_the_stored_message(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_msg *m = NULL;
    const char *corr = "0190f0c4-5a6b-7c8d-9e0f-123456789abc";
    assert_int_equal(txm_msg_new("customer--created", "cust-9", corr,
                                 "{\"name\":\"Jane Doe\",\"credit_limit\":24999}", &m, NULL),
                     TXM_OK);
    char id[TXM_UUID_LEN + 1];
    memcpy(id, txm_msg_id(m), sizeof id);
    int64_t created = txm_msg_created_at_us(m);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);

    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, id, &e, NULL), TXM_OK);
    const txm_msg *got = txm_outbox_entry_msg(e);
    assert_string_equal(txm_msg_correlation_id(got), corr);
    assert_string_equal(txm_msg_aggregate_id(got), "cust-9");
    assert_int_equal(txm_msg_created_at_us(got), created);
    assert_non_null(strstr(txm_msg_payload(got), "\"credit_limit\""));
    assert_false(txm_outbox_entry_is_dispatched(e));
    assert_int_equal(txm_outbox_entry_dispatch_count(e), 0);
    assert_int_equal(txm_outbox_entry_last_dispatched_at_us(e), 0);
    txm_outbox_entry_free(e);

    txm_error err;
    assert_int_equal(txm_outbox_get(fx->db, "missing", &e, &err), TXM_NOT_FOUND);
    assert_null(e);
}

static void outbox_same_id_twice_is_already_published(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new("a.topic", "agg", NULL, "{}", &m, NULL), TXM_OK);
    txm_msg *again = txm_msg_copy(m);
    assert_non_null(again);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);

    txm_error err;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &again, &err), TXM_ALREADY_PUBLISHED);
    assert_null(again);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_ALREADY_PUBLISHED);
}

static void outbox_oldest_age_tracks_not_dispatched(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    int64_t age = -1;
    bool found = true;
    assert_int_equal(txm_outbox_oldest_age(fx->db, &age, &found, NULL), TXM_OK);
    assert_false(found);
    assert_int_equal(age, 0);

    /* A message created an hour ago. */
    int64_t hour = 3600LL * 1000000LL;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new_with("0190f0c4-0000-7000-8000-000000000001", "svc", "t", "agg",
                                      "corr", "{}", txm_now_us() - hour, &m, NULL),
                     TXM_OK);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_oldest_age(fx->db, &age, &found, NULL), TXM_OK);
    assert_true(found);
    assert_true(age >= hour && age < hour + 60LL * 1000000LL);

    int64_t count = 0;
    assert_int_equal(txm_outbox_count_not_dispatched(fx->db, &count, NULL), TXM_OK);
    assert_int_equal(count, 1);
    const char *ids[] = {"0190f0c4-0000-7000-8000-000000000001"};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, ids, 1, NULL, NULL), TXM_OK);
    assert_int_equal(txm_outbox_oldest_age(fx->db, &age, &found, NULL), TXM_OK);
    assert_false(found);
    assert_int_equal(txm_outbox_count_not_dispatched(fx->db, &count, NULL), TXM_OK);
    assert_int_equal(count, 0);
}

static void exec_int(txm_db *db, const char *sql, int64_t v)
{
    txm_value p = TXM_INT(v);
    assert_int_equal(txm_db_exec(db, sql, &p, 1, NULL, NULL, NULL), TXM_OK);
}

static void expect_not_dispatched(txm_db *db, int64_t want, int64_t first_seq)
{
    int64_t count = -1;
    assert_int_equal(txm_outbox_count_not_dispatched(db, &count, NULL), TXM_OK);
    assert_int_equal(count, want);
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    assert_int_equal(list_not_dispatched(db, 100, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, (size_t)want);
    if (n > 0)
        assert_int_equal(txm_outbox_entry_seq(list[0]), first_seq);
    for (size_t i = 0; i < n; i++)
        assert_false(txm_outbox_entry_is_dispatched(list[i]));
    txm_outbox_list_free(list, n);
    txm_outbox_stats s;
    assert_int_equal(txm_outbox_stats_get(db, &s, NULL), TXM_OK);
    assert_int_equal(s.not_dispatched, want);
    assert_true(s.has_oldest == (want > 0));
}

static void expect_dispatched(txm_db *db, const char *id, bool want, int64_t count)
{
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(db, id, &e, NULL), TXM_OK);
    assert_true(txm_outbox_entry_is_dispatched(e) == want);
    assert_int_equal(txm_outbox_entry_dispatch_count(e), count);
    txm_outbox_entry_free(e);
}

static size_t purge_all(txm_db *db)
{
    size_t deleted = 0;
    assert_int_equal(txm_outbox_purge_dispatched(db, txm_now_us() + 1000000, 100, &deleted, NULL),
                     TXM_OK);
    return deleted;
}

/* SQLite: rows up to the lowest relay cursor are dispatched, except those
 * the relay skipped (-1); a mark dispatches a row whatever the cursors say;
 * purge takes only rows every cursor has passed. */
static void outbox_sqlite_cursor_is_the_dispatch_mark(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    char a[3][TXM_UUID_LEN + 1], b[3][TXM_UUID_LEN + 1]; /* seq 1..3, 4..6 */
    publish_three(fx->db, a);
    publish_three(fx->db, b);
    expect_not_dispatched(fx->db, 6, 1);
    exec_int(fx->db,
             "INSERT INTO txmsg_relay_cursor VALUES ('default', $1, '2026-01-01T00:00:00Z')", 4);
    expect_not_dispatched(fx->db, 2, 5);
    expect_dispatched(fx->db, a[0], true, 1);
    expect_dispatched(fx->db, b[1], false, 0);
    exec_int(fx->db, "UPDATE txmsg_outbox SET is_dispatched = -1 WHERE seq = $1", 2);
    expect_not_dispatched(fx->db, 3, 2);
    expect_dispatched(fx->db, a[1], false, 0);

    /* A second relay behind the first holds rows 2..6 back. */
    exec_int(fx->db, "INSERT INTO txmsg_relay_cursor VALUES ('second', $1, '2026-01-01T00:00:00Z')",
             1);
    expect_not_dispatched(fx->db, 5, 2);
    const char *ids[] = {a[1]};
    size_t marked = 0;
    assert_int_equal(txm_outbox_mark_dispatched_new(fx->db, ids, 1, &marked, NULL), TXM_OK);
    assert_int_equal(marked, 1);
    expect_not_dispatched(fx->db, 4, 3);
    expect_dispatched(fx->db, a[1], true, 1);
    assert_int_equal(purge_all(fx->db), 1); /* seq 1; the marked seq 2 waits for "second" */
    exec_int(fx->db, "DELETE FROM txmsg_relay_cursor WHERE position = $1", 1);
    expect_not_dispatched(fx->db, 2, 5);
    assert_int_equal(purge_all(fx->db), 3);
    expect_not_dispatched(fx->db, 2, 5);
}

static void outbox_bad_arguments_are_invalid(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    assert_int_equal(list_not_dispatched(fx->db, 0, &list, &n, NULL), TXM_INVALID);
    const char *ids[] = {NULL};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, ids, 1, NULL, NULL), TXM_INVALID);
    txm_msg *none = NULL;
    assert_int_equal(txm_outbox_publish(NULL, &none, NULL), TXM_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(outbox_three_in_one_uow_list_oldest_first),
        TXM_TEST_BOTH(outbox_mark_dispatched_twice_counts_two),
        TXM_TEST_BOTH(outbox_list_filters_by_aggregate_and_state),
        TXM_TEST_BOTH(outbox_mark_dispatched_new_counts_only_rows_not_dispatched),
        TXM_TEST_BOTH(outbox_get_returns_the_stored_message),
        TXM_TEST_BOTH(outbox_same_id_twice_is_already_published),
        TXM_TEST_BOTH(outbox_oldest_age_tracks_not_dispatched),
        TXM_TEST_BOTH(outbox_bad_arguments_are_invalid),
        {"outbox_sqlite_cursor_is_the_dispatch_mark", outbox_sqlite_cursor_is_the_dispatch_mark,
         txm_fixture_setup, txm_fixture_teardown, (void *)&txm_backend_sqlite},
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
