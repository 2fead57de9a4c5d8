/* Infrastructure outages under load: the consumer's database goes away for
 * 20 s while a backlog waits on the broker. Nothing may be dead-lettered,
 * nothing counted as a failure of a message, and the backlog drains once the
 * database is back. Stops the shared test PostgreSQL, so it runs alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testbroker.h"
#include "testdb.h"
#include "txmsg/txmsg.h"

enum {
    MESSAGES = 3000,
    PUBLISH_BATCH = 500,
    OUTAGE_MS = 20000,
    DRAIN_MS = 90000,
};

typedef struct fixture {
    char *db_url;
    txm_db *db;
    txm_transport *t;
    char topic[96];
    char queue[96];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (fx == NULL)
        return -1;
    if (!txm_testdb_available(TXM_TEST_PG) || !txm_testbroker_available(TXM_TEST_NATS))
        return 0;
    fx->db_url = txm_testdb_create(TXM_TEST_PG);
    txm_error err = {0};
    if (fx->db_url == NULL || txm_db_open(fx->db_url, NULL, &fx->db, &err) != TXM_OK ||
        txm_transport_open(getenv("TXMSG_TEST_NATS_URL"), NULL, &fx->t, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    txm_test_unique("outage", fx->topic, sizeof fx->topic);
    txm_test_unique("outage-q", fx->queue, sizeof fx->queue);
    return txm_db_exec(fx->db, "CREATE TABLE effects (message_id text PRIMARY KEY)", NULL, 0, NULL,
                       NULL, &err) == TXM_OK
               ? 0
               : -1;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    txm_testdb_pg_start(); /* a failed test may have left it stopped */
    txm_transport_close(fx->t);
    txm_db_close(fx->db);
    txm_testdb_drop(TXM_TEST_PG, fx->db_url);
    free(fx);
    return 0;
}

static fixture *get(void **state)
{
    fixture *fx = *state;
    if (fx->db == NULL) {
        fprintf(stderr, "skipped: needs TXMSG_TEST_PG_URL and TXMSG_TEST_NATS_URL\n");
        skip();
    }
    return fx;
}

static txm_status apply(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)ctx;
    txm_value v = TXM_TEXT(txm_msg_id(msg));
    return txm_uow_exec(uow, "INSERT INTO effects (message_id) VALUES ($1)", &v, 1, NULL, NULL,
                        err);
}

static void publish_backlog(fixture *fx)
{
    for (int done = 0; done < MESSAGES; done += PUBLISH_BATCH) {
        txm_msg *msgs[PUBLISH_BATCH];
        for (int i = 0; i < PUBLISH_BATCH; i++) {
            char payload[32];
            snprintf(payload, sizeof payload, "{\"n\":%d}", done + i);
            assert_int_equal(txm_msg_new(fx->topic, "agg", NULL, payload, &msgs[i], NULL), TXM_OK);
        }
        txm_error err = {0};
        txm_status st = txm_transport_publish_msgs(fx->t, (const txm_msg *const *)msgs,
                                                   PUBLISH_BATCH, NULL, &err);
        for (int i = 0; i < PUBLISH_BATCH; i++)
            txm_msg_free(msgs[i]);
        if (st != TXM_OK)
            fail_msg("publish: %s", err.text);
    }
}

static txm_consumer_stats stats(const fixture *fx, txm_consumer *c)
{
    txm_consumer_stats s = {0};
    assert_int_equal(txm_consumer_stats_get(c, fx->queue, &s, NULL), TXM_OK);
    return s;
}

/* With the defaults (3 receives, backoff 1 + 2 s) an outage of 20 s would
 * dead-letter every message in hand if outages counted as receives; leases
 * of 5 s would run out four times over if they were not kept. */
static void database_away_20s_under_load_dead_letters_nothing(void **state)
{
    fixture *fx = get(state);
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.concurrency = 4;
    ho.subscription.visibility_timeout_ms = 5000;
    txm_consumer *c = NULL;
    txm_error err = {0};
    assert_int_equal(txm_consumer_open(fx->db, fx->t, NULL, &c, &err), TXM_OK);
    assert_int_equal(txm_consumer_subscribe(c, fx->topic, fx->queue, apply, NULL, &ho, &err),
                     TXM_OK);
    publish_backlog(fx);
    assert_int_equal(txm_consumer_start(c, &err), TXM_OK);
    long long until = txm_test_now_ms() + DRAIN_MS;
    while (stats(fx, c).processed < MESSAGES / 10 && txm_test_now_ms() < until)
        txm_test_sleep_ms(5);
    uint64_t before = stats(fx, c).processed;
    assert_true(before < MESSAGES); /* a backlog is still waiting */
    assert_true(txm_testdb_pg_crash());
    txm_test_sleep_ms(OUTAGE_MS);
    uint64_t during = stats(fx, c).processed;
    assert_true(txm_testdb_pg_start());
    until = txm_test_now_ms() + DRAIN_MS;
    while (stats(fx, c).processed < MESSAGES && txm_test_now_ms() < until)
        txm_test_sleep_ms(50);
    txm_consumer_stats s = stats(fx, c);
    txm_consumer_close(c);
    fprintf(stderr, "outage: processed %llu before, %llu by its end, %llu after; failures %llu\n",
            (unsigned long long)before, (unsigned long long)during, (unsigned long long)s.processed,
            (unsigned long long)s.failures);
    assert_int_equal(s.processed, MESSAGES);
    assert_int_equal(s.failures, 0);
    assert_int_equal(s.dead_lettered, 0);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 10, &list, &n, NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    assert_int_equal(n, 0);
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT count(*) FROM effects", NULL, 0, &rows, NULL, &err), TXM_OK);
    assert_int_equal(txm_rows_int(rows, 0, 0), MESSAGES);
    txm_rows_free(rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(database_away_20s_under_load_dead_letters_nothing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
