/* Issue 13: txmsg on the 3-node NATS cluster of scripts/with-servers with
 * replicas=3, while the node leading the stream TXMSG (and, moved there
 * first, the queue's consumer) is SIGKILLed and, once the others have
 * elected a new leader, started again on its store. A
 * publisher thread publishes steadily through the transport (retrying a
 * failed batch with the same ids, as the relay does) and a consumer applies
 * each message to an SQLite ledger through its inbox. Publishing and
 * consuming must go on under the new leader, and in the end every message
 * published is applied exactly once, nothing is leased or pending, and
 * nothing was dead-lettered. Skipped without TXMSG_TEST_NATS_CLUSTER_URL;
 * TXM_TEST_VERBOSE=1 prints the counts every 500 ms. */
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

#include <cmocka.h>
#include <nats/nats.h>

#include "testbroker.h"
#include "testconsumer.h"
#include "txmsg/txmsg.h"

enum {
    BATCH = 10,            /* messages per publish */
    PUBLISH_PAUSE_MS = 20, /* between batches: ~500 messages/s */
    PUBLISH_TIMEOUT_MS = 2000,
    VISIBILITY_MS = 3000, /* a lease lost with the old leader comes back after this */
    HANDLE_MS = 2,        /* per message: a little slower than publishing, so that
                             deliveries are always leased, and acks on their way */
    WARMUP = 300,         /* messages applied before the kill */
    PROGRESS = 300,       /* messages published and applied under the new leader */
    PHASE_MS = 30000,     /* for each phase: election, progress, catch-up */
    DRAIN_MS = 60000,     /* for the last message to be applied */
    API_WAIT_MS = 1000,   /* one stream info request */
    NAME_MAX_LEN = 96,
};

typedef struct fixture {
    char url[512];
    char *dir;
    txm_db *db;
    txm_transport *pub_t; /* the publisher's connection */
    txm_transport *sub_t; /* the consumer's, as an app opens it */
    txm_consumer *c;
    natsConnection *nc; /* the test's own view of the cluster */
    jsCtx *js;
    char topic[NAME_MAX_LEN];
    char queue[NAME_MAX_LEN];
    pthread_t publisher;
    bool publishing;
    atomic_bool stop;
    atomic_int published;        /* messages 0..published-1 are stored */
    atomic_int failed;           /* publish attempts that failed */
    atomic_llong longest_gap_ms; /* between two stored batches */
} fixture;

/* What txmsg logs, with the time since the start of the test and who said
 * it: the story of a failed run. */
static long long started_ms;

static void log_line(void *ctx, int level, const char *text)
{
    if (level >= TXM_LOG_INFO)
        fprintf(stderr, "%6lld ms %s: %s\n", txm_test_now_ms() - started_ms, (const char *)ctx,
                text);
}

static void *publish_main(void *arg)
{
    fixture *fx = arg;
    long long last_ok = txm_test_now_ms();
    while (!atomic_load(&fx->stop)) {
        int first = atomic_load(&fx->published);
        txm_msg *msgs[BATCH];
        for (int i = 0; i < BATCH; i++) {
            char payload[32];
            snprintf(payload, sizeof payload, "{\"n\":%d}", first + i);
            if (txm_msg_new(fx->topic, "agg", NULL, payload, &msgs[i], NULL) != TXM_OK)
                abort();
        }
        /* A failed batch goes again with the same ids: the stream drops
         * the ones it stored already (its duplicate window). */
        txm_status st = TXM_TIMEOUT;
        while (st != TXM_OK && !atomic_load(&fx->stop)) {
            st = txm_transport_publish_msgs(fx->pub_t, (const txm_msg *const *)msgs, BATCH, NULL,
                                            NULL);
            if (st != TXM_OK) {
                atomic_fetch_add(&fx->failed, 1);
                txm_test_sleep_ms(100);
            }
        }
        for (int i = 0; i < BATCH; i++)
            txm_msg_free(msgs[i]);
        if (st != TXM_OK)
            break;
        atomic_fetch_add(&fx->published, BATCH);
        long long now = txm_test_now_ms();
        if (now - last_ok > atomic_load(&fx->longest_gap_ms))
            atomic_store(&fx->longest_gap_ms, now - last_ok);
        last_ok = now;
        txm_test_sleep_ms(PUBLISH_PAUSE_MS);
    }
    return NULL;
}

static txm_status apply(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)ctx;
    txm_test_sleep_ms(HANDLE_MS);
    const char *p = strstr(txm_msg_payload(msg), "\"n\":");
    txm_value v[2] = {TXM_TEXT(txm_msg_id(msg)), TXM_INT(p != NULL ? strtol(p + 4, NULL, 10) : -1)};
    return txm_uow_exec(uow, "INSERT INTO effects (message_id, n) VALUES ($1, $2)", v, 2, NULL,
                        NULL, err);
}

/* The test's own connection, to ask the cluster who leads what. */
static int connect_view(fixture *fx)
{
    const char *list = getenv("TXMSG_TEST_NATS_CLUSTER_URL");
    char copy[512];
    snprintf(copy, sizeof copy, "%s", list);
    const char *servers[TXM_TESTCLUSTER_NODES];
    int n = 0;
    for (char *p = copy; p != NULL && n < TXM_TESTCLUSTER_NODES;) {
        servers[n++] = p;
        p = strchr(p, ',');
        if (p != NULL)
            *p++ = '\0';
    }
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, servers, n);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK)
        s = natsConnection_Connect(&fx->nc, o);
    natsOptions_Destroy(o);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&fx->js, fx->nc, NULL);
    return s == NATS_OK ? 0 : -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (fx == NULL)
        return -1;
    if (!txm_testcluster_url(fx->url, sizeof fx->url))
        return 0;
    fx->dir = txm_test_mkdtemp();
    char db_url[600];
    snprintf(db_url, sizeof db_url, "sqlite:%s/ledger.db", fx->dir);
    txm_transport_options po, so;
    started_ms = txm_test_now_ms();
    txm_transport_options_init(&po);
    po.publish_timeout_ms = PUBLISH_TIMEOUT_MS;
    po.log = log_line;
    po.log_ctx = "publisher";
    txm_transport_options_init(&so);
    so.deliver_exhausted = true;
    so.log = log_line;
    so.log_ctx = "consumer's transport";
    txm_error err = {0};
    if (txm_db_open(db_url, NULL, &fx->db, &err) != TXM_OK ||
        txm_db_exec(fx->db, "CREATE TABLE effects (message_id text NOT NULL, n integer)", NULL, 0,
                    NULL, NULL, &err) != TXM_OK ||
        txm_transport_open(fx->url, &po, &fx->pub_t, &err) != TXM_OK ||
        txm_transport_open(fx->url, &so, &fx->sub_t, &err) != TXM_OK || connect_view(fx) != 0) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    txm_test_unique("leader", fx->topic, sizeof fx->topic);
    txm_test_unique("leader-q", fx->queue, sizeof fx->queue);
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    atomic_store(&fx->stop, true);
    if (fx->publishing)
        pthread_join(fx->publisher, NULL);
    txm_consumer_close(fx->c);
    txm_transport_close(fx->pub_t);
    txm_transport_close(fx->sub_t);
    jsCtx_Destroy(fx->js);
    natsConnection_Destroy(fx->nc);
    txm_db_close(fx->db);
    /* A failed run may have left a node down: later tests need all three. */
    for (int n = 1; n <= TXM_TESTCLUSTER_NODES; n++)
        if (!txm_testcluster_is_running(n))
            txm_testcluster_start(n);
    txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static int64_t scalar(fixture *fx, const char *sql)
{
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db, sql, NULL, 0, &rows, NULL, NULL), TXM_OK);
    int64_t v = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return v;
}

static txm_consumer_stats stats(fixture *fx)
{
    txm_consumer_stats s = {0};
    assert_int_equal(txm_consumer_stats_get(fx->c, fx->queue, &s, NULL), TXM_OK);
    return s;
}

/* The stream's leader and how many of its replicas are current, or false
 * while the cluster cannot say (no leader, the view reconnecting). */
static bool stream_leader(fixture *fx, char *leader, size_t len, int *current)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = API_WAIT_MS;
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, fx->js, "TXMSG", &o, NULL) != NATS_OK)
        return false;
    bool ok = si->Cluster != NULL && si->Cluster->Leader != NULL && si->Cluster->Leader[0];
    if (ok) {
        snprintf(leader, len, "%s", si->Cluster->Leader);
        *current = 1;
        /* A dead peer stays "current" for seconds: also ask that it was
         * heard from within the last second and lags by nothing. */
        for (int i = 0; i < si->Cluster->ReplicasLen; i++) {
            const jsPeerInfo *p = si->Cluster->Replicas[i];
            *current += p->Current && !p->Offline && p->Lag == 0 && p->Active < 1000 * 1000000LL;
        }
    }
    jsStreamInfo_Destroy(si);
    return ok;
}

/* The leader of the queue's consumer (named as the queue: no '.' in it)
 * and, when leased is not NULL, its deliveries not acknowledged yet. */
static void consumer_leader(fixture *fx, char *leader, size_t len, int64_t *leased)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = API_WAIT_MS;
    jsConsumerInfo *ci = NULL;
    snprintf(leader, len, "?");
    if (js_GetConsumerInfo(&ci, fx->js, "TXMSG", fx->queue, &o, NULL) == NATS_OK &&
        ci->Cluster != NULL && ci->Cluster->Leader != NULL)
        snprintf(leader, len, "%s", ci->Cluster->Leader);
    if (leased != NULL)
        *leased = ci != NULL ? ci->NumAckPending : -1;
    jsConsumerInfo_Destroy(ci);
}

/* Moves the queue's consumer leadership to the stream's leader (each step
 * down elects one of the other replicas), so that the kill takes both: the
 * deliveries in flight and the acks on their way are lost with it. */
static void colocate_consumer_leader(fixture *fx, const char *stream_leader_name)
{
    char subject[256], cleader[64];
    snprintf(subject, sizeof subject, "$JS.API.CONSUMER.LEADER.STEPDOWN.TXMSG.%s", fx->queue);
    for (int i = 0; i < 20; i++) {
        consumer_leader(fx, cleader, sizeof cleader, NULL);
        if (strcmp(cleader, stream_leader_name) == 0)
            return;
        if (cleader[0] == '?') {
            txm_test_sleep_ms(50);
            continue;
        }
        natsMsg *reply = NULL;
        natsConnection_RequestString(&reply, fx->nc, subject, "", API_WAIT_MS);
        natsMsg_Destroy(reply);
        long long until = txm_test_now_ms() + 5000; /* the election */
        char now[64] = "?";
        while (txm_test_now_ms() < until && (consumer_leader(fx, now, sizeof now, NULL),
                                             now[0] == '?' || strcmp(now, cleader) == 0))
            txm_test_sleep_ms(20);
    }
    fail_msg("the queue's consumer did not move to %s", stream_leader_name);
}

/* Waits until published and applied both pass their marks. */
static bool progress_past(fixture *fx, int published, uint64_t applied, int timeout_ms)
{
    long long until = txm_test_now_ms() + timeout_ms, next_note = 0;
    while (txm_test_now_ms() < until) {
        if (atomic_load(&fx->published) >= published && stats(fx).processed >= applied)
            return true;
        if (txm_test_now_ms() >= next_note && getenv("TXM_TEST_VERBOSE") != NULL) {
            fprintf(stderr, "%6lld ms %d published, %llu applied\n", txm_test_now_ms() - started_ms,
                    atomic_load(&fx->published), (unsigned long long)stats(fx).processed);
            next_note = txm_test_now_ms() + 500;
        }
        txm_test_sleep_ms(20);
    }
    return false;
}

static void start_load(fixture *fx)
{
    txm_consumer_options co;
    txm_handler_options ho;
    txm_test_consumer_options(&co, &ho);
    co.log = log_line;
    co.log_ctx = "consumer";
    ho.subscription.visibility_timeout_ms = VISIBILITY_MS;
    txm_error err = {0};
    assert_int_equal(txm_consumer_open(fx->db, fx->sub_t, &co, &fx->c, &err), TXM_OK);
    assert_int_equal(txm_consumer_subscribe(fx->c, fx->topic, fx->queue, apply, NULL, &ho, &err),
                     TXM_OK);
    assert_int_equal(txm_consumer_start(fx->c, &err), TXM_OK);
    assert_int_equal(pthread_create(&fx->publisher, NULL, publish_main, fx), 0);
    fx->publishing = true;
}

/* Kills the stream's leader; returns its node once another leads. */
static int kill_leader_and_wait_for_another(fixture *fx)
{
    char leader[64] = "", cleader[64], now[64] = "";
    int current = 0;
    assert_true(stream_leader(fx, leader, sizeof leader, &current));
    colocate_consumer_leader(fx, leader);
    int64_t leased = -1;
    consumer_leader(fx, cleader, sizeof cleader, &leased);
    int node = txm_testcluster_node_of(leader);
    assert_true(node > 0);
    long long t0 = txm_test_now_ms();
    assert_true(txm_testcluster_stop(node, SIGKILL));
    long long until = t0 + PHASE_MS;
    while (txm_test_now_ms() < until &&
           !(stream_leader(fx, now, sizeof now, &current) && strcmp(now, leader) != 0))
        txm_test_sleep_ms(50);
    fprintf(stderr,
            "%6lld ms leader: %s, leading the stream and the queue's consumer (%s), killed at %d "
            "published, %lld leased; %s leads after %lld ms\n",
            t0 - started_ms, leader, cleader, atomic_load(&fx->published), (long long)leased, now,
            txm_test_now_ms() - t0);
    assert_true(now[0] != '\0' && strcmp(now, leader) != 0);
    return node;
}

static void restart_and_wait_until_current(int node, fixture *fx)
{
    char leader[64];
    int current = 0;
    /* The dead node does not pass for current (what is awaited below). */
    assert_true(stream_leader(fx, leader, sizeof leader, &current));
    assert_int_equal(current, 2);
    long long t0 = txm_test_now_ms();
    assert_true(txm_testcluster_start(node) > 0);
    long long until = t0 + PHASE_MS;
    while (txm_test_now_ms() < until &&
           !(stream_leader(fx, leader, sizeof leader, &current) && current == 3))
        txm_test_sleep_ms(50);
    fprintf(stderr, "%6lld ms leader: node%d restarted; %d of 3 replicas current after %lld ms\n",
            t0 - started_ms, node, current, txm_test_now_ms() - t0);
    assert_int_equal(current, 3);
}

static void drain_and_check(fixture *fx)
{
    atomic_store(&fx->stop, true);
    pthread_join(fx->publisher, NULL);
    fx->publishing = false;
    int n = atomic_load(&fx->published);
    long long until = txm_test_now_ms() + DRAIN_MS;
    int64_t depth = -1;
    while (txm_test_now_ms() < until) {
        txm_error err = {0};
        if (stats(fx).processed >= (uint64_t)n &&
            txm_transport_queue_depth(fx->pub_t, fx->queue, &depth, &err) == TXM_OK && depth == 0)
            break;
        txm_test_sleep_ms(50);
    }
    txm_consumer_stats s = stats(fx);
    txm_consumer_close(fx->c);
    fx->c = NULL;
    fprintf(
        stderr,
        "%6lld ms leader: %d published (%d attempts failed, longest pause %lld ms); %llu applied, "
        "%llu duplicates caught by the inbox, %llu failures; depth %lld\n",
        txm_test_now_ms() - started_ms, n, atomic_load(&fx->failed),
        atomic_load(&fx->longest_gap_ms), (unsigned long long)s.processed,
        (unsigned long long)s.duplicates, (unsigned long long)s.failures, (long long)depth);
    assert_int_equal(s.processed, n);
    assert_int_equal(s.dead_lettered, 0);
    assert_int_equal(depth, 0); /* nothing pending, nothing leased */
    assert_int_equal(scalar(fx, "SELECT count(*) FROM effects"), n);
    assert_int_equal(scalar(fx, "SELECT count(DISTINCT message_id) FROM effects"), n);
    assert_int_equal(scalar(fx, "SELECT count(DISTINCT n) FROM effects"), n);
    assert_int_equal(scalar(fx, "SELECT min(n) FROM effects"), 0);
    assert_int_equal(scalar(fx, "SELECT max(n) FROM effects"), n - 1);
    txm_delivery **list = NULL;
    size_t dead = 0;
    assert_int_equal(txm_transport_dlq_list(fx->pub_t, fx->queue, 10, &list, &dead, NULL), TXM_OK);
    txm_delivery_list_free(list, dead);
    assert_int_equal(dead, 0);
}

static void cluster_leader_killed_under_load_loses_and_repeats_nothing(void **state)
{
    fixture *fx = *state;
    if (fx->db == NULL) {
        fprintf(stderr, "skipped: needs TXMSG_TEST_NATS_CLUSTER_URL\n");
        skip();
    }
    start_load(fx);
    assert_true(progress_past(fx, WARMUP, WARMUP, PHASE_MS));
    int node = kill_leader_and_wait_for_another(fx);
    int at = atomic_load(&fx->published);
    uint64_t applied = stats(fx).processed;
    assert_true(progress_past(fx, at + PROGRESS, applied + PROGRESS, PHASE_MS));
    fprintf(stderr,
            "%6lld ms leader: %d more published and %llu more applied under the new leader\n",
            txm_test_now_ms() - started_ms, atomic_load(&fx->published) - at,
            (unsigned long long)(stats(fx).processed - applied));
    restart_and_wait_until_current(node, fx);
    at = atomic_load(&fx->published);
    assert_true(progress_past(fx, at + PROGRESS / 3, 0, PHASE_MS));
    drain_and_check(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cluster_leader_killed_under_load_loses_and_repeats_nothing,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
