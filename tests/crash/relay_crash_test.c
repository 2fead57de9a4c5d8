/* Crash safety of the relay: 20,000 messages committed by 4 writers while
 * the relay is SIGKILLed at 3 random moments and restarted. Every message
 * reaches a consumer behind an inbox, which applies each exactly once. On
 * every database x transport pair, and PostgreSQL's messages mode. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testproc.h"
#include "testrelay.h"

enum { WRITERS = 4, KILLS = 3 };

typedef struct writer {
    txm_relay_fixture *fx;
    const char *topic;
    int count;
    int first;
} writer;

static void *write_messages(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < w->count; i++)
        txm_relay_commit(w->fx, w->topic, w->first + i, NULL);
    return NULL;
}

static txm_status apply_effect(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)ctx;
    txm_value p = TXM_TEXT(txm_msg_id(msg));
    return txm_uow_exec(uow, "INSERT INTO effects (message_id) VALUES ($1)", &p, 1, NULL, NULL,
                        err);
}

static int64_t scalar(txm_db *db, const char *sql)
{
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, sql, NULL, 0, &rows, NULL, NULL), TXM_OK);
    int64_t v = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return v;
}

static int total_messages(void)
{
    const char *s = getenv("TXM_CRASH_MESSAGES"); /* smaller under sanitizers */
    int n = s != NULL ? (int)strtol(s, NULL, 10) : 0;
    return n > 0 ? n : 20000;
}

static void relay_killed_three_times_loses_nothing_and_applies_once(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    const int total = total_messages();
    char topic[96], queue[96];
    txm_test_unique("crash", topic, sizeof topic);
    txm_test_unique("crashq", queue, sizeof queue);

    txm_consumer *c = NULL;
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.batch_size = 128;
    ho.wait_ms = 100;
    ho.subscription.visibility_timeout_ms = 5000;
    assert_int_equal(txm_consumer_open(fx->consumer_db, fx->t, NULL, &c, NULL), TXM_OK);
    assert_int_equal(txm_consumer_subscribe(c, topic, queue, apply_effect, NULL, &ho, NULL),
                     TXM_OK);
    assert_int_equal(txm_consumer_start(c, NULL), TXM_OK);

    pid_t relay = txm_relay_start(fx, NULL);
    pthread_t threads[WRITERS];
    writer w[WRITERS];
    long long started = txm_test_now_ms();
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){fx, topic, total / WRITERS, i * (total / WRITERS)};
        assert_int_equal(pthread_create(&threads[i], NULL, write_messages, &w[i]), 0);
    }
    srand((unsigned)started);
    for (int k = 0; k < KILLS; k++) {
        txm_test_sleep_ms(300 + rand() % 1200);
        int status = txm_relay_kill(fx, relay, SIGKILL);
        assert_true(WIFSIGNALED(status));
        fprintf(stderr, "crash: relay killed at %lld ms, %lld messages applied so far\n",
                txm_test_now_ms() - started,
                (long long)scalar(fx->consumer_db, "SELECT count(*) FROM effects"));
        relay = txm_relay_start(fx, NULL);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    long long end = txm_test_now_ms() + 180000;
    while (scalar(fx->consumer_db, "SELECT count(DISTINCT message_id) FROM effects") < total &&
           txm_test_now_ms() < end)
        txm_test_sleep_ms(100);
    fprintf(stderr, "crash: %d messages applied after %lld ms\n", total,
            txm_test_now_ms() - started);
    txm_test_sleep_ms(500); /* late duplicates, if any, would land now */
    txm_consumer_stats s;
    assert_int_equal(txm_consumer_stats_get(c, queue, &s, NULL), TXM_OK);
    fprintf(stderr, "crash: processed %llu, duplicates caught by the inbox %llu\n",
            (unsigned long long)s.processed, (unsigned long long)s.duplicates);
    txm_consumer_close(c);
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Messages mode writes no row: every message came through the slot. */
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM txmsg_outbox"),
                     fx->combo.messages ? 0 : total);
    assert_int_equal(scalar(fx->consumer_db, "SELECT count(DISTINCT message_id) FROM effects"),
                     total);
    assert_int_equal(scalar(fx->consumer_db, "SELECT count(*) FROM effects"), total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_RELAY_TESTS(relay_killed_three_times_loses_nothing_and_applies_once),
        TXM_RELAY_TESTS_PGMSG(relay_killed_three_times_loses_nothing_and_applies_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
