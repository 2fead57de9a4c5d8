/* The consumer's batches and ordered lanes, on each transport and each
 * database: a failing message costs the others nothing, a crash between
 * commit and ack doubles nothing, and every key's messages take effect in
 * publish order, once, through random failures and a poison message. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testbroker.h"
#include "testdb.h"
#include "testproc.h"
#include "txmsg/txmsg.h"

typedef struct combo {
    txm_test_transport transport;
    txm_test_backend backend;
} combo;

static const combo embedded_sqlite = {TXM_TEST_EMBEDDED, TXM_TEST_SQLITE};
static const combo embedded_pg = {TXM_TEST_EMBEDDED, TXM_TEST_PG};
static const combo nats_sqlite = {TXM_TEST_NATS, TXM_TEST_SQLITE};
static const combo nats_pg = {TXM_TEST_NATS, TXM_TEST_PG};

typedef struct fixture {
    combo kind;
    char *dir;
    char broker_url[512];
    char *db_url;
    txm_transport *t;
    txm_db *db;
    char topic[96];
    char queue[96];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->kind = *(const combo *)*state;
    *state = fx;
    if (!txm_testbroker_available(fx->kind.transport) || !txm_testdb_available(fx->kind.backend))
        return 0;
    fx->dir = txm_test_mkdtemp();
    if (fx->kind.transport == TXM_TEST_NATS)
        snprintf(fx->broker_url, sizeof fx->broker_url, "%s", getenv("TXMSG_TEST_NATS_URL"));
    else
        snprintf(fx->broker_url, sizeof fx->broker_url, "embedded:%s/broker.db", fx->dir);
    txm_error err;
    if (txm_testdb_open(fx->kind.backend, NULL, &fx->db_url, &fx->db) != 0)
        return -1;
    txm_transport_options to;
    txm_transport_options_init(&to);
    to.deliver_exhausted = true;
    if (txm_transport_open(fx->broker_url, &to, &fx->t, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    const char *table = fx->kind.backend == TXM_TEST_PG
                            ? "CREATE TABLE effects (id bigserial PRIMARY KEY, message_id text NOT "
                              "NULL, k text NOT NULL, seq integer NOT NULL)"
                            : "CREATE TABLE effects (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                              "message_id text NOT NULL, k text NOT NULL, seq integer NOT NULL)";
    if (txm_db_exec(fx->db, table, NULL, 0, NULL, NULL, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    txm_test_unique("topic", fx->topic, sizeof fx->topic);
    txm_test_unique("queue", fx->queue, sizeof fx->queue);
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    txm_transport_close(fx->t);
    txm_testdb_close(fx->kind.backend, fx->db_url, fx->db);
    if (fx->dir != NULL)
        txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static fixture *get(void **state)
{
    fixture *fx = *state;
    if (fx->t == NULL || fx->db == NULL) {
        fprintf(stderr, "skipped: %s or %s not available\n",
                txm_testbroker_name(fx->kind.transport), txm_testdb_name(fx->kind.backend));
        skip();
    }
    return fx;
}

static int64_t scalar(txm_db *db, const char *sql)
{
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, sql, NULL, 0, &rows, NULL, NULL), TXM_OK);
    int64_t v = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return v;
}

/* Publishes the message of key k, number seq; poison ones always fail. */
static txm_msg *make_msg(fixture *fx, const char *k, int seq, bool poison)
{
    char payload[96];
    snprintf(payload, sizeof payload, "{\"seq\":%d,\"poison\":%s}", seq, poison ? "true" : "false");
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(fx->topic, k, NULL, payload, &m, NULL), TXM_OK);
    return m;
}

static void publish(fixture *fx, txm_msg **msgs, size_t n)
{
    txm_error err;
    assert_int_equal(txm_transport_publish_msgs(fx->t, (const txm_msg *const *)msgs, n, NULL, &err),
                     TXM_OK);
    for (size_t i = 0; i < n; i++)
        txm_msg_free(msgs[i]);
}

static size_t dlq_count(fixture *fx)
{
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 100, &list, &n, NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    return n;
}

/* ---- the handler ---- */

#define POISON_CALLS_MAX 16

typedef struct handler_ctx {
    atomic_int calls;
    atomic_int handled_others; /* handler runs for messages that are not poison */
    int fail_percent;          /* random failures */
    pthread_mutex_t mu;
    long long poison_at[POISON_CALLS_MAX]; /* when the poison message was tried */
    int poison_others[POISON_CALLS_MAX];   /* handled_others at each try */
    int n_poison;
} handler_ctx;

static txm_status apply(void *arg, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    handler_ctx *h = arg;
    atomic_fetch_add(&h->calls, 1);
    if (strstr(txm_msg_payload(msg), "\"poison\":true") != NULL) {
        pthread_mutex_lock(&h->mu);
        if (h->n_poison < POISON_CALLS_MAX) {
            h->poison_at[h->n_poison] = txm_test_now_ms();
            h->poison_others[h->n_poison] = atomic_load(&h->handled_others);
            h->n_poison++;
        }
        pthread_mutex_unlock(&h->mu);
        return txm_errf(err, TXM_INVALID, "poison on purpose");
    }
    if (h->fail_percent > 0) {
        static _Thread_local unsigned seed;
        if (seed == 0)
            seed = (unsigned)txm_now_us() ^ (unsigned)(uintptr_t)&seed;
        if ((int)(rand_r(&seed) % 100) < h->fail_percent)
            return txm_errf(err, TXM_INVALID, "random failure on purpose");
    }
    atomic_fetch_add(&h->handled_others, 1);
    const char *p = strstr(txm_msg_payload(msg), "\"seq\":");
    int seq = p != NULL ? (int)strtol(p + 6, NULL, 10) : -1;
    txm_value v[3] = {TXM_TEXT(txm_msg_id(msg)), TXM_TEXT(txm_msg_aggregate_id(msg)), TXM_INT(seq)};
    return txm_uow_exec(uow, "INSERT INTO effects (message_id, k, seq) VALUES ($1, $2, $3)", v, 3,
                        NULL, NULL, err);
}

static txm_consumer *start(fixture *fx, handler_ctx *h, const txm_consumer_options *co,
                           const txm_handler_options *ho)
{
    txm_consumer *c = NULL;
    txm_error err;
    assert_int_equal(txm_consumer_open(fx->db, fx->t, co, &c, &err), TXM_OK);
    assert_int_equal(txm_consumer_subscribe(c, fx->topic, fx->queue, apply, h, ho, &err), TXM_OK);
    assert_int_equal(txm_consumer_start(c, &err), TXM_OK);
    return c;
}

static txm_consumer_stats stats_of(fixture *fx, txm_consumer *c)
{
    txm_consumer_stats s;
    assert_int_equal(txm_consumer_stats_get(c, fx->queue, &s, NULL), TXM_OK);
    return s;
}

static void declare(fixture *fx, const txm_handler_options *ho)
{
    assert_int_equal(
        txm_transport_declare_subscription(fx->t, fx->topic, fx->queue, &ho->subscription, NULL),
        TXM_OK);
}

/* ---- tests ---- */

/* Ten messages of ten keys in one batch; the fifth always fails. The nine
 * commit together once, are never handled again, and the fifth is tried
 * max_receive_count times with the backoff between, then dead-lettered. */
static void batch_failing_message_costs_the_others_nothing(void **state)
{
    fixture *fx = get(state);
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    txm_consumer_options co;
    txm_consumer_options_init(&co);
    co.backoff_base_ms = 200;
    co.backoff_max_ms = 1000;
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.concurrency = 1; /* one lane: the ten messages make one batch */
    ho.batch_size = 16;
    ho.wait_ms = 100;
    ho.subscription.visibility_timeout_ms = 5000;
    declare(fx, &ho);
    txm_msg *msgs[10];
    for (int i = 0; i < 10; i++) {
        char k[16];
        snprintf(k, sizeof k, "key-%d", i);
        msgs[i] = make_msg(fx, k, i, i == 4);
    }
    publish(fx, msgs, 10);
    txm_consumer *c = start(fx, &h, &co, &ho);
    long long end = txm_test_now_ms() + 20000;
    while (stats_of(fx, c).dead_lettered == 0 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    txm_test_sleep_ms(300); /* another try, if any, would show now */
    txm_consumer_stats s = stats_of(fx, c);
    txm_consumer_close(c);

    assert_int_equal(s.dead_lettered, 1);
    assert_int_equal(s.processed, 9);
    assert_int_equal(s.duplicates, 0); /* nothing came back */
    assert_int_equal(s.batches, 1);    /* the nine in one commit */
    assert_int_equal(s.batch_sum, 9);
    assert_int_equal(s.failures, 3);
    assert_int_equal(h.n_poison, 3); /* its handler ran once per attempt */
    /* Retried after the backoff: 200 ms, then 400 ms. */
    assert_true(h.poison_at[1] - h.poison_at[0] >= 190);
    assert_true(h.poison_at[2] - h.poison_at[1] >= 390);
    txm_delivery **dead = NULL;
    size_t nd = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 10, &dead, &nd, NULL), TXM_OK);
    assert_int_equal(nd, 1);
    assert_non_null(strstr(txm_delivery_last_error(dead[0]), "failed 3 times"));
    assert_non_null(strstr(txm_delivery_last_error(dead[0]), "poison on purpose"));
    txm_delivery_list_free(dead, nd);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), 9);
    assert_int_equal(scalar(fx->db, "SELECT count(DISTINCT message_id) FROM effects"), 9);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects WHERE seq = 4"), 0);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM txmsg_inbox"), 9);
    assert_int_equal(dlq_count(fx), 1);
    int64_t depth = -1;
    assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
    assert_int_equal(depth, 0);
}

static pid_t spawn_consumer(fixture *fx, bool kill_after_commit)
{
    char *const argv[] = {"consumer_proc", fx->db_url, fx->broker_url, fx->topic, fx->queue, NULL};
    char *const env[] = {"TXM_TEST_KILL_AFTER_COMMIT=1", NULL};
    return txm_proc_start(TXM_CONSUMER_PROC, argv, kill_after_commit ? env : NULL, NULL);
}

/* The consumer dies after its first batch committed and before the ack:
 * the whole batch comes back, is found in the inbox, and nothing takes
 * effect twice. */
static void batch_sigkill_between_commit_and_ack_doubles_nothing(void **state)
{
    enum { N = 200 };
    fixture *fx = get(state);
    /* consumer_proc's table. */
    assert_int_equal(txm_db_exec(fx->db, "DROP TABLE effects", NULL, 0, NULL, NULL, NULL), TXM_OK);
    assert_int_equal(txm_db_exec(fx->db, "CREATE TABLE effects (message_id text NOT NULL)", NULL, 0,
                                 NULL, NULL, NULL),
                     TXM_OK);
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.subscription.visibility_timeout_ms = 1000; /* as consumer_proc's */
    declare(fx, &ho);
    txm_msg *msgs[N];
    for (int i = 0; i < N; i++)
        msgs[i] = make_msg(fx, "k", i, false);
    publish(fx, msgs, N);

    pid_t pid = spawn_consumer(fx, true);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    int64_t committed = scalar(fx->db, "SELECT count(*) FROM effects");
    assert_true(committed > 0);
    int64_t depth = -1;
    assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
    assert_int_equal(depth, N); /* nothing was acknowledged */

    pid = spawn_consumer(fx, false);
    long long end = txm_test_now_ms() + 60000;
    while (scalar(fx->db, "SELECT count(DISTINCT message_id) FROM effects") < N &&
           txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(scalar(fx->db, "SELECT count(DISTINCT message_id) FROM effects"), N);
    assert_int_equal(scalar(fx->db, "SELECT count(*) FROM effects"), N);
    assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
    assert_int_equal(depth, 0);
}

enum { KEYS = 50, PER_KEY = 200, POISON_KEY = 7, POISON_SEQ = 20 };

/* Checks that every key's effects are in publish order, each once. */
static void assert_each_key_in_order(fixture *fx)
{
    int last[KEYS], count[KEYS];
    for (int k = 0; k < KEYS; k++) {
        last[k] = -1;
        count[k] = 0;
    }
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT k, seq FROM effects ORDER BY id", NULL, 0, &rows, NULL, NULL),
        TXM_OK);
    for (size_t r = 0; r < txm_rows_count(rows); r++) {
        int k = (int)strtol(txm_rows_text(rows, r, 0) + 4, NULL, 10);
        int seq = (int)txm_rows_int(rows, r, 1);
        assert_true(k >= 0 && k < KEYS);
        if (seq <= last[k])
            fail_msg("key %d: seq %d after %d", k, seq, last[k]);
        last[k] = seq;
        count[k]++;
    }
    txm_rows_free(rows);
    for (int k = 0; k < KEYS; k++)
        assert_int_equal(count[k], k == POISON_KEY ? PER_KEY - 1 : PER_KEY);
}

/* 50 keys x 200 messages over 4 lanes, with 10 % of handler runs failing
 * at random and one poison message: each key's effects are in publish
 * order and happen once, and the poison message held back its own key
 * only, until it was dead-lettered. */
static void lanes_keep_each_keys_order_through_failures(void **state)
{
    fixture *fx = get(state);
    handler_ctx h = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_percent = 10};
    txm_consumer_options co;
    txm_consumer_options_init(&co);
    co.backoff_base_ms = 20;
    co.backoff_max_ms = 100;
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.concurrency = 4;
    ho.wait_ms = 100;
    /* Random failures never reach it (0.1^8); the poison does, in ~0.5 s. */
    ho.subscription.max_receive_count = 8;
    ho.subscription.visibility_timeout_ms = 10000;
    declare(fx, &ho);
    txm_consumer *c = start(fx, &h, &co, &ho);
    txm_msg *msgs[500];
    size_t n = 0;
    for (int seq = 0; seq < PER_KEY; seq++) {
        for (int k = 0; k < KEYS; k++) {
            char key[16];
            snprintf(key, sizeof key, "key-%d", k);
            msgs[n++] = make_msg(fx, key, seq, k == POISON_KEY && seq == POISON_SEQ);
            if (n == 500) {
                publish(fx, msgs, n);
                n = 0;
            }
        }
    }
    long long end = txm_test_now_ms() + 90000;
    while (scalar(fx->db, "SELECT count(*) FROM effects") < KEYS * PER_KEY - 1 &&
           txm_test_now_ms() < end)
        txm_test_sleep_ms(50);
    /* A batch's effects are visible once it commits, its counters a moment
     * later: stop first, so the lanes have counted every commit. */
    txm_consumer_stop(c);
    txm_consumer_stats s = stats_of(fx, c);
    txm_consumer_close(c);

    assert_each_key_in_order(fx);
    assert_int_equal(scalar(fx->db, "SELECT count(DISTINCT message_id) FROM effects"),
                     KEYS * PER_KEY - 1);
    assert_int_equal(s.processed, KEYS * PER_KEY - 1);
    assert_int_equal(s.dead_lettered, 1);
    assert_int_equal(dlq_count(fx), 1);
    assert_true(s.failures > 0);
    /* The poison was tried 8 times; meanwhile other messages were handled,
     * and its own key's next message only after the last try. */
    txm_delivery **dead = NULL;
    size_t nd = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, fx->queue, 10, &dead, &nd, NULL), TXM_OK);
    assert_int_equal(nd, 1);
    assert_non_null(strstr(txm_delivery_last_error(dead[0]), "failed 8 times"));
    txm_delivery_list_free(dead, nd);
    /* (A batch held through a busy database runs its handlers again.) */
    assert_true(h.n_poison >= 8);
    assert_true(h.poison_others[h.n_poison - 1] > h.poison_others[0]);
    txm_value p = TXM_TEXT("key-7");
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db,
                                 "SELECT count(*) FROM effects WHERE k = $1 AND seq > 20 AND id < "
                                 "(SELECT max(id) FROM effects WHERE k = $1 AND seq = 19)",
                                 &p, 1, &rows, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_rows_int(rows, 0, 0), 0);
    txm_rows_free(rows);
}

#define ALL(f)                                                                                     \
    {#f "/embedded+sqlite", f, setup, teardown, (void *)&embedded_sqlite},                         \
        {#f "/embedded+postgresql", f, setup, teardown, (void *)&embedded_pg},                     \
        {#f "/nats+sqlite", f, setup, teardown, (void *)&nats_sqlite},                             \
    {                                                                                              \
#f "/nats+postgresql", f, setup, teardown, (void *)&nats_pg                                \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        ALL(batch_failing_message_costs_the_others_nothing),
        ALL(batch_sigkill_between_commit_and_ack_doubles_nothing),
        ALL(lanes_keep_each_keys_order_through_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
