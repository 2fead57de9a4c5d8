/* Tracing by correlation id on SQLite and PostgreSQL: outbox messages and
 * inbox entries of one flow, in time order. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testdb.h"

#define CORR "0193a7c2-0000-7000-8000-00000000c0de"

static txm_msg *msg_at(const char *topic, const char *corr, int64_t at_us)
{
    char id[TXM_UUID_LEN + 1];
    assert_int_equal(txm_uuid_v7(id, NULL), TXM_OK);
    txm_msg *m = NULL;
    assert_int_equal(
        txm_msg_new_with(id, "orders", topic, "order-7", corr, "{\"n\":1}", at_us, &m, NULL),
        TXM_OK);
    return m;
}

static void publish(txm_db *db, txm_msg *m)
{
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
}

/* The saga's first two steps in one database: order--created published, a
 * subscription here processes it, and its reply is published; an older
 * inbox row without a correlation id and another flow stay out. */
static void trace_lists_outbox_then_inbox_in_time_order(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    int64_t now = txm_now_us();
    txm_msg *created = msg_at("order--created", CORR, now - 2000000);
    char created_id[TXM_ID_MAX + 1];
    snprintf(created_id, sizeof created_id, "%s", txm_msg_id(created));
    txm_msg *inbound = txm_msg_copy(created);
    publish(fx->db, created);
    publish(fx->db, msg_at("order--created", "another-flow", now - 1000000));

    txm_uow *uow = NULL;
    bool fresh[1];
    const txm_msg *batch[] = {inbound};
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save_msgs(uow, "customer--order-created", batch, 1, fresh, NULL),
                     TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "customer--order-created", "old-row", NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    txm_msg_free(inbound);
    publish(fx->db, msg_at("customer--credit-reserved", CORR, now + 1000000));
    const char *ids[] = {created_id};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, ids, 1, NULL, NULL), TXM_OK);

    txm_trace_entry *t = NULL;
    size_t n = 0;
    assert_int_equal(txm_trace_list(fx->db, CORR, 100, &t, &n, NULL), TXM_OK);
    assert_int_equal(n, 3);
    assert_int_equal(t[0].kind, TXM_TRACE_OUTBOX);
    assert_string_equal(t[0].message_id, created_id);
    assert_string_equal(t[0].topic, "order--created");
    assert_string_equal(t[0].aggregate_id, "order-7");
    assert_string_equal(t[0].source, "orders");
    assert_true(t[0].dispatched);
    assert_int_equal(t[0].at_us, now - 2000000);
    assert_int_equal(t[1].kind, TXM_TRACE_INBOX);
    assert_string_equal(t[1].message_id, created_id);
    assert_string_equal(t[1].subscription, "customer--order-created");
    assert_string_equal(t[1].topic, "order--created");
    assert_string_equal(t[1].source, "orders");
    assert_true(t[1].at_us >= now && t[1].at_us < now + 1000000);
    assert_int_equal(t[2].kind, TXM_TRACE_OUTBOX);
    assert_string_equal(t[2].topic, "customer--credit-reserved");
    assert_false(t[2].dispatched);
    txm_free(t);

    /* The limit keeps the oldest entries. */
    assert_int_equal(txm_trace_list(fx->db, CORR, 2, &t, &n, NULL), TXM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(t[1].kind, TXM_TRACE_INBOX);
    txm_free(t);
    assert_int_equal(txm_trace_list(fx->db, "unknown-flow", 10, &t, &n, NULL), TXM_OK);
    assert_int_equal(n, 0);
    assert_null(t);
}

static void trace_bad_arguments_are_invalid(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_trace_entry *t = NULL;
    size_t n = 7;
    char longid[300];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(txm_trace_list(fx->db, "", 10, &t, &n, NULL), TXM_INVALID);
    assert_int_equal(txm_trace_list(fx->db, longid, 10, &t, &n, NULL), TXM_INVALID);
    assert_int_equal(txm_trace_list(fx->db, CORR, 0, &t, &n, NULL), TXM_INVALID);
    assert_int_equal(txm_trace_list(fx->db, CORR, TXM_TRACE_LIMIT_MAX + 1, &t, &n, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_trace_list(NULL, CORR, 10, &t, &n, NULL), TXM_INVALID);
    assert_null(t);
    assert_int_equal(n, 0);
    const txm_msg *none[] = {NULL};
    bool fresh[1];
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save_msgs(uow, "s", none, 1, fresh, NULL), TXM_INVALID);
    assert_int_equal(txm_inbox_save_msgs(uow, "s", none, 0, fresh, NULL), TXM_INVALID);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(trace_lists_outbox_then_inbox_in_time_order),
        TXM_TEST_BOTH(trace_bad_arguments_are_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
