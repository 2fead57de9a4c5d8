/* Transport conformance: the SNS/SQS contract and the idempotent consumer,
 * run unchanged against the embedded broker and NATS JetStream; with the
 * argument "cluster", against scripts/with-servers' 3-node NATS cluster
 * with replicas=3 instead (CTest conformance_cluster_test). */
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testbroker.h"
#include "testconsumer.h"
#include "testproc.h"
#include "txmsg/txmsg.h"

typedef struct fixture {
    txm_test_transport kind;
    char *dir; /* temporary folder: broker file, database */
    char broker_url[512];
    char db_url[512];
    txm_transport *t;
    txm_db *db; /* the consumer's database (SQLite) */
    char topic[96];
    char queue[96];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->kind = *(const txm_test_transport *)*state;
    *state = fx;
    if (!txm_testbroker_available(fx->kind))
        return 0;
    fx->dir = txm_test_mkdtemp();
    if (fx->kind == TXM_TEST_NATS)
        snprintf(fx->broker_url, sizeof fx->broker_url, "%s", getenv("TXMSG_TEST_NATS_URL"));
    else if (fx->kind == TXM_TEST_NATS_CLUSTER)
        txm_testcluster_url(fx->broker_url, sizeof fx->broker_url);
    else
        snprintf(fx->broker_url, sizeof fx->broker_url, "embedded:%s/broker.db", fx->dir);
    snprintf(fx->db_url, sizeof fx->db_url, "sqlite:%s/service.db", fx->dir);
    txm_error err;
    if (txm_transport_open(fx->broker_url, NULL, &fx->t, &err) != TXM_OK ||
        txm_db_open(fx->db_url, NULL, &fx->db, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    txm_db_exec(fx->db, "CREATE TABLE effects (message_id text NOT NULL, n integer)", NULL, 0, NULL,
                NULL, NULL);
    txm_test_unique("topic", fx->topic, sizeof fx->topic);
    txm_test_unique("queue", fx->queue, sizeof fx->queue);
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    txm_transport_close(fx->t);
    txm_db_close(fx->db);
    txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static fixture *get(void **state)
{
    fixture *fx = *state;
    if (fx->t == NULL) {
        fprintf(stderr, "skipped: %s not available\n", txm_testbroker_name(fx->kind));
        skip();
    }
    return fx;
}

static void declare(fixture *fx, const char *queue, int visibility_ms)
{
    txm_subscription_options so;
    txm_subscription_options_init(&so);
    so.visibility_timeout_ms = visibility_ms;
    txm_error err;
    assert_int_equal(txm_transport_declare_subscription(fx->t, fx->topic, queue, &so, &err),
                     TXM_OK);
}

static txm_msg *make_msg(fixture *fx, int n)
{
    char payload[64];
    snprintf(payload, sizeof payload, "{\"n\":%d}", n);
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(fx->topic, "aggregate-1", NULL, payload, &m, NULL), TXM_OK);
    return m;
}

static void publish(fixture *fx, txm_msg **msgs, size_t n)
{
    txm_error err;
    assert_int_equal(txm_transport_publish_msgs(fx->t, (const txm_msg *const *)msgs, n, NULL, &err),
                     TXM_OK);
}

/* Receives until one arrives or timeout_ms passes; NULL on timeout. */
static txm_delivery *receive_one(fixture *fx, const char *queue, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    do {
        txm_delivery **list = NULL;
        size_t n = 0;
        assert_int_equal(txm_transport_receive(fx->t, queue, 1, 200, &list, &n, NULL), TXM_OK);
        if (n == 1) {
            txm_delivery *d = list[0];
            txm_free(list);
            return d;
        }
        txm_free(list);
    } while (txm_test_now_ms() < end);
    return NULL;
}

static int64_t scalar(txm_db *db, const char *sql)
{
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, sql, NULL, 0, &rows, NULL, NULL), TXM_OK);
    int64_t v = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return v;
}

static void conformance_fanout_each_queue_receives_once(void **state)
{
    fixture *fx = get(state);
    char q2[128];
    snprintf(q2, sizeof q2, "%s-b", fx->queue);
    declare(fx, fx->queue, 30000);
    declare(fx, q2, 30000);
    txm_msg *m = make_msg(fx, 1);
    publish(fx, &m, 1);
    const char *queues[] = {fx->queue, q2};
    for (int i = 0; i < 2; i++) {
        txm_delivery *d = receive_one(fx, queues[i], 5000);
        assert_non_null(d);
        assert_string_equal(txm_delivery_message_id(d), txm_msg_id(m));
        assert_string_equal(txm_delivery_topic(d), fx->topic);
        assert_int_equal(txm_delivery_receive_count(d), 1);
        assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
        txm_delivery_free(d);
        assert_null(receive_one(fx, queues[i], 300));
    }
    txm_msg_free(m);
}

static void conformance_unacked_message_is_redelivered_after_visibility_timeout(void **state)
{
    fixture *fx = get(state);
    declare(fx, fx->queue, 1000);
    txm_msg *m = make_msg(fx, 1);
    publish(fx, &m, 1);
    txm_delivery *d = receive_one(fx, fx->queue, 5000);
    assert_non_null(d);
    long long leased_at = txm_test_now_ms();
    txm_delivery_free(d); /* neither acked nor nacked: the lease runs out */
    assert_null(receive_one(fx, fx->queue, 500));
    d = receive_one(fx, fx->queue, 5000);
    assert_non_null(d);
    assert_true(txm_test_now_ms() - leased_at >= 900);
    assert_string_equal(txm_delivery_message_id(d), txm_msg_id(m));
    assert_int_equal(txm_delivery_receive_count(d), 2);
    assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
    txm_delivery_free(d);
    txm_msg_free(m);
}

/* A held message whose lease is extended stays away from other receivers
 * past its visibility timeout, and keeps its receive count. */
static void conformance_extended_lease_hides_message_without_a_receive(void **state)
{
    fixture *fx = get(state);
    declare(fx, fx->queue, 1000);
    txm_msg *m = make_msg(fx, 1);
    publish(fx, &m, 1);
    txm_delivery *d = receive_one(fx, fx->queue, 5000);
    assert_non_null(d);
    long long end = txm_test_now_ms() + 2500;
    while (txm_test_now_ms() < end) {
        assert_int_equal(txm_transport_extend(fx->t, d, NULL), TXM_OK);
        assert_null(receive_one(fx, fx->queue, 300));
    }
    assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
    txm_delivery_free(d);
    assert_null(receive_one(fx, fx->queue, 1500)); /* acked: gone, not redelivered */
    txm_msg_free(m);
}

/* Receives until n deliveries are in list (n slots) or timeout_ms passes;
 * returns how many came. */
static size_t receive_n(fixture *fx, txm_delivery **list, size_t n, int timeout_ms)
{
    size_t got = 0;
    long long end = txm_test_now_ms() + timeout_ms;
    while (got < n && txm_test_now_ms() < end) {
        txm_delivery **some = NULL;
        size_t k = 0;
        assert_int_equal(txm_transport_receive(fx->t, fx->queue, n - got, 200, &some, &k, NULL),
                         TXM_OK);
        for (size_t i = 0; i < k; i++)
            list[got++] = some[i];
        txm_free(some);
    }
    return got;
}

/* The queue's depth once it stops changing to want, or after timeout_ms:
 * NATS applies acks a moment after it has read them. */
static int64_t depth_settled(fixture *fx, int64_t want, int timeout_ms)
{
    int64_t depth = -1;
    long long end = txm_test_now_ms() + timeout_ms;
    do {
        assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
        if (depth == want)
            break;
        txm_test_sleep_ms(20);
    } while (txm_test_now_ms() < end);
    return depth;
}

/* Three batches started back to back, each waited for in order: every
 * message arrives once, in the order sent; bad input is refused by start. */
static void conformance_publish_start_and_wait_keep_order(void **state)
{
    enum { BATCH = 40, BATCHES = 3, N = BATCH * BATCHES };
    fixture *fx = get(state);
    declare(fx, fx->queue, 5000);
    txm_msg *msgs[N];
    char *bodies[N];
    txm_outgoing out[N];
    for (int i = 0; i < N; i++) {
        msgs[i] = make_msg(fx, i);
        size_t len = 0;
        assert_int_equal(txm_msg_encode(msgs[i], &bodies[i], &len, NULL), TXM_OK);
        out[i] = (txm_outgoing){fx->topic, txm_msg_id(msgs[i]), bodies[i], len};
    }
    txm_publish *p[BATCHES];
    for (int k = 0; k < BATCHES; k++)
        assert_int_equal(txm_transport_publish_start(fx->t, out + k * BATCH, BATCH, &p[k], NULL),
                         TXM_OK);
    for (int k = 0; k < BATCHES; k++) {
        txm_status results[BATCH];
        assert_int_equal(txm_transport_publish_wait(fx->t, p[k], results, NULL), TXM_OK);
        for (int i = 0; i < BATCH; i++)
            assert_int_equal(results[i], TXM_OK);
    }
    txm_delivery *ds[N];
    assert_int_equal(receive_n(fx, ds, N, 10000), N);
    for (int i = 0; i < N; i++)
        assert_string_equal(txm_delivery_message_id(ds[i]), txm_msg_id(msgs[i]));
    assert_int_equal(txm_transport_ack_batch(fx->t, ds, N, NULL, NULL), TXM_OK);
    txm_outgoing bad = {"no spaces allowed", "id-1", "{}", 2};
    txm_publish *none = NULL;
    assert_int_equal(txm_transport_publish_start(fx->t, &bad, 1, &none, NULL), TXM_INVALID);
    assert_null(none);
    assert_int_equal(txm_transport_publish_start(fx->t, out, 0, &none, NULL), TXM_OK);
    assert_null(none);
    for (int i = 0; i < N; i++) {
        txm_delivery_free(ds[i]);
        txm_msg_free(msgs[i]);
        free(bodies[i]);
    }
}

static void conformance_ack_batch_removes_every_delivery(void **state)
{
    enum { N = 50 };
    fixture *fx = get(state);
    declare(fx, fx->queue, 1000);
    txm_msg *msgs[N];
    for (int i = 0; i < N; i++)
        msgs[i] = make_msg(fx, i);
    publish(fx, msgs, N);
    txm_delivery *ds[N];
    assert_int_equal(receive_n(fx, ds, N, 5000), N);
    txm_status results[N];
    txm_error err;
    assert_int_equal(txm_transport_ack_batch(fx->t, ds, N, results, &err), TXM_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(results[i], TXM_OK);
        /* Settled: acking it again is a misuse. */
        assert_int_equal(txm_transport_ack(fx->t, ds[i], NULL), TXM_STATE);
        txm_delivery_free(ds[i]);
        txm_msg_free(msgs[i]);
    }
    assert_int_equal(depth_settled(fx, 0, 2000), 0);
    /* Past the visibility timeout nothing comes back. */
    assert_null(receive_one(fx, fx->queue, 1500));
}

static void conformance_ack_batch_reports_a_settled_delivery_and_acks_the_others(void **state)
{
    enum { N = 3 };
    fixture *fx = get(state);
    declare(fx, fx->queue, 1000);
    txm_msg *msgs[N];
    for (int i = 0; i < N; i++)
        msgs[i] = make_msg(fx, i);
    publish(fx, msgs, N);
    txm_delivery *ds[N];
    assert_int_equal(receive_n(fx, ds, N, 5000), N);
    assert_int_equal(txm_transport_ack(fx->t, ds[1], NULL), TXM_OK);
    txm_status results[N] = {TXM_INVALID, TXM_INVALID, TXM_INVALID};
    txm_error err;
    assert_int_equal(txm_transport_ack_batch(fx->t, ds, N, results, &err), TXM_STATE);
    assert_int_equal(results[0], TXM_OK);
    assert_int_equal(results[1], TXM_STATE);
    assert_int_equal(results[2], TXM_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(txm_transport_ack(fx->t, ds[i], NULL), TXM_STATE);
        txm_delivery_free(ds[i]);
        txm_msg_free(msgs[i]);
    }
    assert_int_equal(depth_settled(fx, 0, 2000), 0);
    assert_null(receive_one(fx, fx->queue, 1500));
}

typedef struct handler_ctx {
    atomic_int calls;
    atomic_bool broken;
    atomic_bool away; /* the handler's database is unavailable */
    pthread_mutex_t mu;
    int seen[1000]; /* payload numbers in handling order */
    int n_seen;
} handler_ctx;

static txm_status count_and_apply(void *arg, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    handler_ctx *h = arg;
    atomic_fetch_add(&h->calls, 1);
    if (atomic_load(&h->broken))
        return txm_errf(err, TXM_INVALID, "handler is broken on purpose");
    if (atomic_load(&h->away))
        return txm_errf(err, TXM_UNAVAILABLE, "the database is away on purpose");
    const char *p = strstr(txm_msg_payload(msg), "\"n\":");
    int n = p != NULL ? (int)strtol(p + 4, NULL, 10) : -1;
    pthread_mutex_lock(&h->mu);
    if (h->n_seen < 1000)
        h->seen[h->n_seen++] = n;
    pthread_mutex_unlock(&h->mu);
    txm_value v[2] = {TXM_TEXT(txm_msg_id(msg)), TXM_INT(n)};
    return txm_uow_exec(uow, "INSERT INTO effects (message_id, n) VALUES ($1, $2)", v, 2, NULL,
                        NULL, err);
}

static txm_consumer *start_consumer(fixture *fx, handler_ctx *h, int visibility_ms)
{
    txm_consumer_options co;
    txm_handler_options ho;
    txm_test_consumer_options(&co, &ho);
    ho.subscription.visibility_timeout_ms = visibility_ms;
    txm_consumer *c = NULL;
    txm_error err;
    assert_int_equal(txm_consumer_open(fx->db, fx->t, &co, &c, &err), TXM_OK);
    assert_int_equal(txm_consumer_subscribe(c, fx->topic, fx->queue, count_and_apply, h, &ho, &err),
                     TXM_OK);
    assert_int_equal(txm_consumer_start(c, &err), TXM_OK);
    return c;
}

static txm_consumer_stats stats_of(fixture *fx, txm_consumer *c)
{
    txm_consumer_stats s;
    assert_int_equal(txm_consumer_stats_get(c, fx->queue, &s, NULL), TXM_OK);
    return s;
}

static size_t dlq_count(fixture *fx)
{
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 100, &list, &n, NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    return n;
}

static void conformance_failing_handler_sees_three_deliveries_then_dlq_then_redrive(void **state)
{
    fixture *fx = get(state);
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    atomic_store(&h.broken, true);
    txm_consumer *c = start_consumer(fx, &h, 2000);
    txm_msg *m = make_msg(fx, 7);
    publish(fx, &m, 1);
    long long end = txm_test_now_ms() + 20000;
    while (dlq_count(fx) == 0 && txm_test_now_ms() < end)
        txm_test_sleep_ms(50);
    txm_test_sleep_ms(300); /* a fourth delivery, if any, would show now */
    assert_int_equal(atomic_load(&h.calls), 3);

    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    size_t len = 0;
    const char *body = txm_delivery_body(list[0], &len);
    txm_msg *back = NULL;
    assert_int_equal(txm_msg_decode(body, len, &back, NULL), TXM_OK);
    assert_string_equal(txm_msg_id(back), txm_msg_id(m));
    assert_string_equal(txm_msg_payload(back), "{\"n\":7}");
    assert_non_null(strstr(txm_delivery_last_error(list[0]), "broken on purpose"));
    txm_msg_free(back);
    txm_delivery_list_free(list, n);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), 0);

    /* Fix the handler, redrive: the message is processed once. */
    atomic_store(&h.broken, false);
    size_t moved = 0;
    assert_int_equal(txm_transport_dlq_redrive(fx->t, fx->queue, NULL, &moved, NULL), TXM_OK);
    assert_int_equal(moved, 1);
    end = txm_test_now_ms() + 10000;
    while (stats_of(fx, c).processed == 0 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    txm_consumer_close(c);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), 1);
    assert_int_equal(dlq_count(fx), 0);
    txm_msg_free(m);
}

/* An outage far longer than the backoff sum and the lease uses up no
 * receive: the message waits with its consumer and is handled once after. */
static void conformance_outage_uses_no_receive_and_dead_letters_nothing(void **state)
{
    fixture *fx = get(state);
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    atomic_store(&h.away, true);
    txm_consumer *c = start_consumer(fx, &h, 1000);
    txm_msg *m[3] = {make_msg(fx, 1), make_msg(fx, 2), make_msg(fx, 3)};
    publish(fx, m, 3);
    long long end = txm_test_now_ms() + 10000;
    while (atomic_load(&h.calls) < 6 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    assert_true(atomic_load(&h.calls) >= 6); /* tried again and again... */
    txm_test_sleep_ms(2500);                 /* ...past 3 leases */
    assert_int_equal(stats_of(fx, c).failures, 0);
    assert_int_equal(dlq_count(fx), 0);
    atomic_store(&h.away, false);
    end = txm_test_now_ms() + 10000;
    while (stats_of(fx, c).processed < 3 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    txm_consumer_close(c);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), 3);
    assert_int_equal(scalar(fx->db, "SELECT count(DISTINCT n) FROM effects"), 3);
    assert_int_equal(dlq_count(fx), 0);
    for (int i = 0; i < 3; i++)
        txm_msg_free(m[i]);
}

/* Received max_receive_count times with every lease run out: the consumer
 * (over a transport with deliver_exhausted) acks the message whose inbox
 * row shows it was processed (its ack was lost) without running its
 * handler, and runs the other one a last time, dead-lettering it when that
 * fails too. */
static void conformance_exhausted_message_acked_if_processed_else_tried_a_last_time(void **state)
{
    fixture *fx = get(state);
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.wait_ms = 100;
    ho.subscription.max_receive_count = 2;
    ho.subscription.visibility_timeout_ms = 500;
    txm_error err;
    assert_int_equal(
        txm_transport_declare_subscription(fx->t, fx->topic, fx->queue, &ho.subscription, &err),
        TXM_OK);
    txm_msg *m[2] = {make_msg(fx, 1), make_msg(fx, 2)};
    publish(fx, m, 2);
    for (int round = 0; round < 2; round++) { /* received, never settled */
        for (int i = 0; i < 2; i++) {
            txm_delivery *d = receive_one(fx, fx->queue, 5000);
            assert_non_null(d);
            assert_false(txm_delivery_is_exhausted(d));
            txm_delivery_free(d);
        }
        txm_test_sleep_ms(700);
    }
    txm_uow *uow = NULL; /* the first was processed; its ack was lost */
    assert_int_equal(txm_uow_begin(fx->db, &uow, &err), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, fx->queue, txm_msg_id(m[0]), &err), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_OK);

    txm_transport_options to;
    txm_transport_options_init(&to);
    to.deliver_exhausted = true;
    txm_transport *t2 = NULL;
    assert_int_equal(txm_transport_open(fx->broker_url, &to, &t2, &err), TXM_OK);
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    atomic_store(&h.broken, true);
    txm_consumer *c = NULL;
    assert_int_equal(txm_consumer_open(fx->db, t2, NULL, &c, &err), TXM_OK);
    assert_int_equal(
        txm_consumer_subscribe(c, fx->topic, fx->queue, count_and_apply, &h, &ho, &err), TXM_OK);
    assert_int_equal(txm_consumer_start(c, &err), TXM_OK);
    long long end = txm_test_now_ms() + 10000;
    txm_consumer_stats s = {0};
    while ((s.duplicates < 1 || s.dead_lettered < 1) && txm_test_now_ms() < end) {
        txm_test_sleep_ms(20);
        assert_int_equal(txm_consumer_stats_get(c, fx->queue, &s, NULL), TXM_OK);
    }
    txm_consumer_close(c);
    txm_transport_close(t2);
    assert_int_equal(s.duplicates, 1);
    assert_int_equal(s.dead_lettered, 1);
    /* Crashes and restarts send a message back one count higher each, so
     * the unprocessed one had one last try (it failed), not none. */
    assert_int_equal(atomic_load(&h.calls), 1);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_delivery_message_id(list[0]), txm_msg_id(m[1]));
    assert_non_null(strstr(txm_delivery_last_error(list[0]), "failed 2 times"));
    txm_delivery_list_free(list, n);
    assert_null(receive_one(fx, fx->queue, 700)); /* both settled */
    txm_msg_free(m[0]);
    txm_msg_free(m[1]);
}

static void conformance_undecodable_message_goes_to_dlq_at_once(void **state)
{
    fixture *fx = get(state);
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    txm_consumer *c = start_consumer(fx, &h, 30000);
    /* A fresh id: NATS drops a re-publish of one id for two minutes, also
     * across test runs on the same server. */
    char bad_id[96];
    txm_test_unique("not-an-envelope", bad_id, sizeof bad_id);
    txm_outgoing bad = {fx->topic, bad_id, "{\"specversion\":\"1.0\"", 20};
    assert_int_equal(txm_transport_publish(fx->t, &bad, 1, NULL, NULL), TXM_OK);
    long long end = txm_test_now_ms() + 10000;
    while (stats_of(fx, c).dead_lettered == 0 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    txm_consumer_close(c);
    assert_int_equal(atomic_load(&h.calls), 0);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    size_t len = 0;
    assert_memory_equal(txm_delivery_body(list[0], &len), bad.body, bad.len);
    assert_int_equal(len, bad.len);
    assert_non_null(strstr(txm_delivery_last_error(list[0]), "undecodable"));
    txm_delivery_list_free(list, n);
    size_t purged = 0;
    assert_int_equal(txm_transport_dlq_purge(fx->t, fx->queue, &purged, NULL), TXM_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(dlq_count(fx), 0);
}

static void conformance_same_message_five_times_changes_state_once(void **state)
{
    fixture *fx = get(state);
    declare(fx, fx->queue, 30000);
    txm_msg *m = make_msg(fx, 5);
    for (int i = 0; i < 5; i++)
        publish(fx, &m, 1);
    int64_t depth = 0;
    assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
    /* NATS drops re-publishes of one Nats-Msg-Id inside its window. */
    bool nats = fx->kind != TXM_TEST_EMBEDDED;
    assert_int_equal(depth, nats ? 1 : 5);
    int deliveries = (int)depth;
    if (nats) {
        /* Past the broker's window a duplicate still arrives: same
         * envelope under other broker ids. The inbox must catch them. */
        char *body = NULL;
        size_t len = 0;
        assert_int_equal(txm_msg_encode(m, &body, &len, NULL), TXM_OK);
        for (int i = 0; i < 4; i++) {
            char id[64];
            snprintf(id, sizeof id, "%s-again-%d", txm_msg_id(m), i); /* fresh per run */
            txm_outgoing o = {fx->topic, id, body, len};
            assert_int_equal(txm_transport_publish(fx->t, &o, 1, NULL, NULL), TXM_OK);
        }
        txm_free(body);
        deliveries = 5;
    }
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    txm_consumer *c = start_consumer(fx, &h, 30000);
    long long end = txm_test_now_ms() + 10000;
    txm_consumer_stats s = stats_of(fx, c);
    while (s.processed + s.duplicates < (uint64_t)deliveries && txm_test_now_ms() < end) {
        txm_test_sleep_ms(20);
        s = stats_of(fx, c);
    }
    txm_consumer_close(c);
    assert_int_equal(s.processed, 1);
    assert_int_equal(s.duplicates, 4);
    assert_int_equal(atomic_load(&h.calls), 1);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), 1);
    txm_msg_free(m);
}

static void conformance_thousand_messages_handled_in_publish_order(void **state)
{
    enum { N = 1000, BATCH = 100 };
    fixture *fx = get(state);
    declare(fx, fx->queue, 30000);
    for (int b = 0; b < N / BATCH; b++) {
        txm_msg *batch[BATCH];
        for (int i = 0; i < BATCH; i++)
            batch[i] = make_msg(fx, b * BATCH + i);
        publish(fx, batch, BATCH);
        for (int i = 0; i < BATCH; i++)
            txm_msg_free(batch[i]);
    }
    handler_ctx *h = calloc(1, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    txm_consumer *c = start_consumer(fx, h, 30000);
    long long end = txm_test_now_ms() + 60000;
    while (stats_of(fx, c).processed < N && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    txm_consumer_close(c);
    assert_int_equal(h->n_seen, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(h->seen[i], i);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

typedef struct big_ctx {
    atomic_int calls;
    atomic_size_t payload_len;
    atomic_bool intact;
} big_ctx;

static txm_status check_big(void *arg, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)uow;
    (void)err;
    big_ctx *b = arg;
    const char *p = txm_msg_payload(msg);
    size_t len = strlen(p);
    /* {"blob":"xxxx...x","n":1}: every filler byte must have survived. */
    bool intact = strncmp(p, "{\"blob\":\"", 9) == 0 && len > 20;
    for (size_t i = 9; intact && i < len - 8; i++)
        intact = p[i] == 'x';
    atomic_store(&b->payload_len, len);
    atomic_store(&b->intact, intact);
    atomic_fetch_add(&b->calls, 1);
    return TXM_OK;
}

static void conformance_five_mib_payload_reaches_handler_intact(void **state)
{
    enum { FILLER = 5 << 20 };
    fixture *fx = get(state);
    char *payload = malloc(FILLER + 32);
    memcpy(payload, "{\"blob\":\"", 9);
    memset(payload + 9, 'x', FILLER);
    memcpy(payload + 9 + FILLER, "\",\"n\":1}", 9); /* with its NUL */
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(fx->topic, "big-1", NULL, payload, &m, NULL), TXM_OK);
    size_t want = strlen(payload);
    free(payload);

    big_ctx b = {0};
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.wait_ms = 100;
    txm_consumer *c = NULL;
    assert_int_equal(txm_consumer_open(fx->db, fx->t, NULL, &c, NULL), TXM_OK);
    assert_int_equal(txm_consumer_subscribe(c, fx->topic, fx->queue, check_big, &b, &ho, NULL),
                     TXM_OK);
    assert_int_equal(txm_consumer_start(c, NULL), TXM_OK);
    txm_error err;
    assert_int_equal(txm_transport_publish_msgs(fx->t, (const txm_msg *const *)&m, 1, NULL, &err),
                     TXM_OK);
    long long end = txm_test_now_ms() + 20000;
    while (atomic_load(&b.calls) == 0 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    txm_consumer_close(c);
    txm_msg_free(m);
    assert_int_equal(atomic_load(&b.calls), 1);
    assert_int_equal(atomic_load(&b.payload_len), want);
    assert_true(atomic_load(&b.intact));
    assert_int_equal(dlq_count(fx), 0);
}

/* Stops the broker and starts it again (NATS: a private server on a store
 * folder; embedded: closing and reopening the file). The cluster's nodes
 * are restarted by tests/cluster instead. */
static void conformance_acknowledged_messages_survive_broker_restart(void **state)
{
    fixture *fx = get(state);
    pid_t nats = -1;
    char store[600];
    int port = 0;
    if (fx->kind == TXM_TEST_NATS) {
        snprintf(store, sizeof store, "%s/nats", fx->dir);
        port = txm_test_free_port();
        nats = txm_testnats_start(store, port);
        assert_true(nats > 0);
        txm_transport_close(fx->t);
        snprintf(fx->broker_url, sizeof fx->broker_url, "nats://127.0.0.1:%d", port);
        assert_int_equal(txm_transport_open(fx->broker_url, NULL, &fx->t, NULL), TXM_OK);
    }
    declare(fx, fx->queue, 30000);
    txm_msg *msgs[10];
    for (int i = 0; i < 10; i++)
        msgs[i] = make_msg(fx, i);
    publish(fx, msgs, 10);
    txm_transport_close(fx->t);
    fx->t = NULL;
    if (nats > 0) {
        txm_testnats_stop(nats);
        nats = txm_testnats_start(store, port);
        assert_true(nats > 0);
    }
    assert_int_equal(txm_transport_open(fx->broker_url, NULL, &fx->t, NULL), TXM_OK);
    for (int i = 0; i < 10; i++) {
        txm_delivery *d = receive_one(fx, fx->queue, 10000);
        assert_non_null(d);
        assert_string_equal(txm_delivery_message_id(d), txm_msg_id(msgs[i]));
        assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
        txm_delivery_free(d);
        txm_msg_free(msgs[i]);
    }
    txm_transport_close(fx->t);
    fx->t = NULL;
    txm_testnats_stop(nats);
}

static pid_t spawn_consumer(fixture *fx)
{
    char *const argv[] = {"consumer_proc", fx->db_url, fx->broker_url, fx->topic, fx->queue, NULL};
    return txm_proc_start(TXM_CONSUMER_PROC, argv, NULL, NULL);
}

static void conformance_sigkilled_consumer_loses_nothing(void **state)
{
    enum { N = 400 };
    fixture *fx = get(state);
    declare(fx, fx->queue, 1000);
    for (int b = 0; b < N / 100; b++) {
        txm_msg *batch[100];
        for (int i = 0; i < 100; i++)
            batch[i] = make_msg(fx, b * 100 + i);
        publish(fx, batch, 100);
        for (int i = 0; i < 100; i++)
            txm_msg_free(batch[i]);
    }
    pid_t pid = spawn_consumer(fx);
    long long end = txm_test_now_ms() + 20000;
    while (scalar(fx->db, "SELECT count(*) FROM effects") < N / 4 && txm_test_now_ms() < end)
        txm_test_sleep_ms(5);
    kill(pid, SIGKILL); /* in the middle of a batch: the handler sleeps per message */
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    int64_t at_kill = scalar(fx->db, "SELECT count(*) FROM effects");
    assert_true(at_kill > 0 && at_kill < N);

    pid = spawn_consumer(fx);
    end = txm_test_now_ms() + 60000;
    while (scalar(fx->db, "SELECT count(DISTINCT message_id) FROM effects") < N &&
           txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    kill(pid, SIGTERM); /* graceful this time */
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(scalar(fx->db, "SELECT count(DISTINCT message_id) FROM effects"), N);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), N);
    int64_t depth = -1;
    assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
    assert_int_equal(depth, 0);
}

#define BOTH(f)                                                                                    \
    {#f "/embedded", f, setup, teardown, (void *)&txm_transport_embedded_kind},                    \
    {                                                                                              \
#f "/nats", f, setup, teardown, (void *)&txm_transport_nats_kind                           \
    }

static const txm_queue_info *find_queue(const txm_queue_info *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, name) == 0)
            return &list[i];
    return NULL;
}

/* txm_transport_queues: every subscription queue with its depth, leased
 * messages and dead letters, sorted by name; the dead-letter queues are
 * not queues of their own there. */
static void conformance_queues_lists_depth_in_flight_and_dead_letters(void **state)
{
    fixture *fx = get(state);
    char other[96];
    txm_test_unique("queue", other, sizeof other);
    declare(fx, fx->queue, 30000);
    declare(fx, other, 30000);
    txm_msg *msgs[3] = {make_msg(fx, 1), make_msg(fx, 2), make_msg(fx, 3)};
    publish(fx, msgs, 3);
    for (int i = 0; i < 3; i++)
        txm_msg_free(msgs[i]);
    txm_delivery *held = receive_one(fx, fx->queue, 5000);
    txm_delivery *bad = receive_one(fx, fx->queue, 5000);
    assert_non_null(held);
    assert_non_null(bad);
    assert_int_equal(txm_transport_dead_letter(fx->t, bad, "cannot decode", NULL), TXM_OK);
    txm_queue_info *list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_queues(fx->t, &list, &n, NULL), TXM_OK);
    const txm_queue_info *q = find_queue(list, n, fx->queue);
    assert_non_null(q);
    assert_string_equal(q->topic, fx->topic);
    assert_int_equal(q->depth, 2); /* one visible, one leased */
    assert_int_equal(q->in_flight, 1);
    assert_int_equal(q->dead_letters, 1);
    const txm_queue_info *o = find_queue(list, n, other);
    assert_non_null(o);
    assert_int_equal(o->depth, 3);
    assert_int_equal(o->in_flight, 0);
    assert_int_equal(o->dead_letters, 0);
    assert_null(find_queue(list, n, q->dlq));
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(list[i - 1].name, list[i].name) < 0);
    txm_free(list);
    /* Acknowledged, the held message leaves the queue and the lease count. */
    assert_int_equal(txm_transport_ack(fx->t, held, NULL), TXM_OK);
    assert_int_equal(txm_transport_queues(fx->t, &list, &n, NULL), TXM_OK);
    q = find_queue(list, n, fx->queue);
    assert_non_null(q);
    assert_int_equal(q->depth, 1);
    assert_int_equal(q->in_flight, 0);
    txm_free(list);
    txm_delivery_free(held);
    txm_delivery_free(bad);
    assert_int_equal(txm_transport_queues(NULL, &list, &n, NULL), TXM_INVALID);
}

#define CLUSTER(f)                                                                                 \
    {                                                                                              \
#f "/nats-cluster", f, setup, teardown, (void *)&txm_transport_nats_cluster_kind           \
    }

/* The cluster runs the cases that a replicated stream could change: ack
 * and lease bookkeeping, dead letters (direct get may be answered by any
 * replica), order, de-duplication, large payloads, a crashed consumer. */
static int run_cluster(void)
{
    const struct CMUnitTest tests[] = {
        CLUSTER(conformance_fanout_each_queue_receives_once),
        CLUSTER(conformance_unacked_message_is_redelivered_after_visibility_timeout),
        CLUSTER(conformance_failing_handler_sees_three_deliveries_then_dlq_then_redrive),
        CLUSTER(conformance_undecodable_message_goes_to_dlq_at_once),
        CLUSTER(conformance_extended_lease_hides_message_without_a_receive),
        CLUSTER(conformance_publish_start_and_wait_keep_order),
        CLUSTER(conformance_ack_batch_removes_every_delivery),
        CLUSTER(conformance_ack_batch_reports_a_settled_delivery_and_acks_the_others),
        CLUSTER(conformance_outage_uses_no_receive_and_dead_letters_nothing),
        CLUSTER(conformance_exhausted_message_acked_if_processed_else_tried_a_last_time),
        CLUSTER(conformance_same_message_five_times_changes_state_once),
        CLUSTER(conformance_thousand_messages_handled_in_publish_order),
        CLUSTER(conformance_five_mib_payload_reaches_handler_intact),
        CLUSTER(conformance_sigkilled_consumer_loses_nothing),
    };
    return cmocka_run_group_tests_name("conformance/nats-cluster", tests, NULL, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "cluster") == 0)
        return run_cluster();
    const struct CMUnitTest tests[] = {
        BOTH(conformance_fanout_each_queue_receives_once),
        BOTH(conformance_unacked_message_is_redelivered_after_visibility_timeout),
        BOTH(conformance_failing_handler_sees_three_deliveries_then_dlq_then_redrive),
        BOTH(conformance_undecodable_message_goes_to_dlq_at_once),
        BOTH(conformance_extended_lease_hides_message_without_a_receive),
        BOTH(conformance_publish_start_and_wait_keep_order),
        BOTH(conformance_ack_batch_removes_every_delivery),
        BOTH(conformance_ack_batch_reports_a_settled_delivery_and_acks_the_others),
        BOTH(conformance_outage_uses_no_receive_and_dead_letters_nothing),
        BOTH(conformance_exhausted_message_acked_if_processed_else_tried_a_last_time),
        BOTH(conformance_same_message_five_times_changes_state_once),
        BOTH(conformance_thousand_messages_handled_in_publish_order),
        BOTH(conformance_acknowledged_messages_survive_broker_restart),
        BOTH(conformance_five_mib_payload_reaches_handler_intact),
        BOTH(conformance_sigkilled_consumer_loses_nothing),
        BOTH(conformance_queues_lists_depth_in_flight_and_dead_letters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
