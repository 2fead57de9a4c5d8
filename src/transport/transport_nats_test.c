/* NATS JetStream transport against a real nats-server: the shared one of
 * scripts/with-servers (TXMSG_TEST_NATS_URL; skipped without it), and a
 * private one that the restart test stops and starts. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include <nats/nats.h>

#include "testbroker.h"
#include "txmsg/message.h"
#include "txmsg/transport.h"

#define NAME_LEN 96

static const char *nats_url_or_skip(void)
{
    const char *url = getenv("TXMSG_TEST_NATS_URL");
    if (url == NULL || url[0] == '\0')
        skip();
    return url;
}

/* Counts log lines per level (0..3). */
static void count_log(void *ctx, int level, const char *text)
{
    (void)text;
    int *levels = ctx;
    if (level >= 0 && level <= 3)
        __atomic_add_fetch(&levels[level], 1, __ATOMIC_SEQ_CST);
}

static txm_transport *open_logged(const char *url, int publish_timeout_ms, int *levels)
{
    txm_transport_options o;
    txm_transport_options_init(&o);
    o.publish_timeout_ms = publish_timeout_ms;
    if (levels != NULL) {
        o.log = count_log;
        o.log_ctx = levels;
    }
    txm_transport *t = NULL;
    txm_error err = {0};
    txm_status st = txm_transport_open(url, &o, &t, &err);
    if (st != TXM_OK)
        fail_msg("open %s: %s", url, err.text);
    return t;
}

static txm_transport *open_shared(void)
{
    return open_logged(nats_url_or_skip(), 10000, NULL);
}

static void subscribe(txm_transport *t, const char *topic, const char *queue, int max,
                      int visibility_ms)
{
    txm_subscription_options o;
    txm_subscription_options_init(&o);
    o.max_receive_count = max;
    o.visibility_timeout_ms = visibility_ms;
    txm_error err = {0};
    txm_status st = txm_transport_declare_subscription(t, topic, queue, &o, &err);
    if (st != TXM_OK)
        fail_msg("declare_subscription %s -> %s: %s", topic, queue, err.text);
}

static void publish_one(txm_transport *t, const char *topic, const char *id, const char *body)
{
    txm_outgoing m = {topic, id, body, strlen(body)};
    txm_status res = TXM_INVALID;
    txm_error err = {0};
    txm_status st = txm_transport_publish(t, &m, 1, &res, &err);
    if (st != TXM_OK)
        fail_msg("publish %s: %s", id, err.text);
    assert_int_equal(res, TXM_OK);
}

/* Receives up to max; fails the test on an error. */
static size_t receive(txm_transport *t, const char *queue, size_t max, int wait_ms,
                      txm_delivery ***out)
{
    size_t n = 0;
    txm_error err = {0};
    txm_status st = txm_transport_receive(t, queue, max, wait_ms, out, &n, &err);
    if (st != TXM_OK)
        fail_msg("receive %s: %s", queue, err.text);
    return n;
}

static txm_delivery *receive_one(txm_transport *t, const char *queue, int wait_ms)
{
    txm_delivery **list = NULL;
    size_t n = receive(t, queue, 1, wait_ms, &list);
    txm_delivery *d = n == 1 ? list[0] : NULL;
    txm_free(list);
    return d;
}

static void ack(txm_transport *t, txm_delivery *d)
{
    txm_error err = {0};
    if (txm_transport_ack(t, d, &err) != TXM_OK)
        fail_msg("ack: %s", err.text);
}

static void names(char *topic, char *q1, char *q2)
{
    txm_test_unique("topic", topic, NAME_LEN);
    txm_test_unique("queue", q1, NAME_LEN);
    if (q2 != NULL)
        txm_test_unique("queue", q2, NAME_LEN);
}

static void nats_fan_out_delivers_once_to_each_queue(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], qa[NAME_LEN], qb[NAME_LEN];
    names(topic, qa, qb);
    assert_int_equal(txm_transport_declare_topic(t, topic, NULL), TXM_OK);
    subscribe(t, topic, qa, 3, 30000);
    subscribe(t, topic, qb, 3, 30000);
    publish_one(t, topic, "fan-1", "{\"n\":1}");
    const char *queues[2] = {qa, qb};
    for (int i = 0; i < 2; i++) {
        txm_delivery *d = receive_one(t, queues[i], 2000);
        assert_non_null(d);
        size_t len = 0;
        assert_string_equal(txm_delivery_body(d, &len), "{\"n\":1}");
        assert_int_equal(len, 7);
        assert_string_equal(txm_delivery_message_id(d), "fan-1");
        assert_string_equal(txm_delivery_topic(d), topic);
        assert_string_equal(txm_delivery_queue(d), queues[i]);
        assert_int_equal(txm_delivery_receive_count(d), 1);
        ack(t, d);
        txm_delivery_free(d);
        assert_null(receive_one(t, queues[i], 200));
        int64_t depth = -1;
        assert_int_equal(txm_transport_queue_depth(t, queues[i], &depth, NULL), TXM_OK);
        assert_int_equal(depth, 0);
    }
    txm_transport_close(t);
}

/* Receives and acks until nothing comes for wait_ms; returns the count and
 * writes the message ids, in order, into ids. */
static size_t drain(txm_transport *t, const char *q, int wait_ms, char ids[][24], size_t cap)
{
    size_t got = 0;
    for (;;) {
        txm_delivery **list = NULL;
        size_t n = receive(t, q, 10, wait_ms, &list);
        for (size_t i = 0; i < n; i++) {
            if (got < cap)
                snprintf(ids[got], 24, "%s", txm_delivery_message_id(list[i]));
            got++;
            ack(t, list[i]);
        }
        txm_delivery_list_free(list, n);
        if (n == 0)
            return got;
    }
}

static void nats_broker_drops_republish_with_same_id_in_window(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    /* Every publish is acknowledged, the repeats as duplicates. */
    for (int i = 0; i < 5; i++)
        publish_one(t, topic, "dup-1", "{\"once\":true}");
    txm_outgoing batch[2] = {{topic, "dup-2", "{}", 2}, {topic, "dup-2", "{}", 2}};
    txm_status res[2] = {TXM_INVALID, TXM_INVALID};
    assert_int_equal(txm_transport_publish(t, batch, 2, res, NULL), TXM_OK);
    assert_int_equal(res[0], TXM_OK);
    assert_int_equal(res[1], TXM_OK);
    char ids[8][24];
    assert_int_equal(drain(t, q, 500, ids, 8), 2);
    assert_string_equal(ids[0], "dup-1");
    assert_string_equal(ids[1], "dup-2");
    txm_transport_close(t);
}

/* One message of a batch fails (bigger than the server's max_payload):
 * the others are stored and results tell which. */
static void nats_publish_reports_each_message(void **state)
{
    (void)state;
    txm_transport_options o;
    txm_transport_options_init(&o);
    o.max_message_len = 4u << 20;
    txm_transport *t = NULL;
    assert_int_equal(txm_transport_open(nats_url_or_skip(), &o, &t, NULL), TXM_OK);
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    size_t big_len = 2u << 20;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 'x', big_len);
    txm_outgoing batch[3] = {
        {topic, "each-1", "{}", 2}, {topic, "each-2", big, big_len}, {topic, "each-3", "{}", 2}};
    txm_status res[3];
    txm_error err = {0};
    assert_int_equal(txm_transport_publish(t, batch, 3, res, &err), TXM_TOO_BIG);
    assert_int_equal(res[0], TXM_OK);
    assert_int_equal(res[1], TXM_TOO_BIG);
    assert_int_equal(res[2], TXM_OK);
    assert_non_null(strstr(err.text, "each-2"));
    free(big);
    char ids[4][24];
    assert_int_equal(drain(t, q, 300, ids, 4), 2);
    assert_string_equal(ids[0], "each-1");
    assert_string_equal(ids[1], "each-3");
    txm_transport_close(t);
}

static void nats_unacked_message_is_redelivered_after_lease_with_count_2(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 1000);
    publish_one(t, topic, "lease-1", "{}");
    txm_delivery *d = receive_one(t, q, 2000);
    assert_non_null(d);
    assert_int_equal(txm_delivery_receive_count(d), 1);
    long long leased_at = txm_test_now_ms();
    txm_delivery_free(d); /* not acked: a crashed consumer */
    d = receive_one(t, q, 5000);
    long long waited = txm_test_now_ms() - leased_at;
    assert_non_null(d);
    assert_int_equal(txm_delivery_receive_count(d), 2);
    assert_string_equal(txm_delivery_message_id(d), "lease-1");
    assert_true(waited >= 800);
    ack(t, d);
    txm_delivery_free(d);
    txm_transport_close(t);
}

/* As a single ack: JetStream does not report an ack that comes after the
 * lease ran out, and it acks the message whichever delivery it names, so
 * the delivery made meanwhile is gone too and never comes back. */
static void nats_ack_batch_after_lease_ran_out_acks_the_redelivery(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 5, 1000);
    publish_one(t, topic, "late-ack-1", "{}");
    txm_delivery *old = receive_one(t, q, 2000);
    assert_non_null(old);
    txm_delivery *now = receive_one(t, q, 5000); /* after the lease ran out */
    assert_non_null(now);
    assert_int_equal(txm_delivery_receive_count(now), 2);
    txm_status result = TXM_INVALID;
    txm_error err = {0};
    assert_int_equal(txm_transport_ack_batch(t, &old, 1, &result, &err), TXM_OK);
    assert_int_equal(result, TXM_OK);
    int64_t depth = -1;
    for (int i = 0; i < 100 && depth != 0; i++) {
        assert_int_equal(txm_transport_queue_depth(t, q, &depth, NULL), TXM_OK);
        if (depth != 0)
            txm_test_sleep_ms(20);
    }
    assert_int_equal(depth, 0);
    txm_delivery_free(now); /* not acked, yet its lease running out brings nothing */
    assert_null(receive_one(t, q, 2000));
    txm_delivery_free(old);
    txm_transport_close(t);
}

/* A queue declared by a version with another MaxAckPending (20,000 before)
 * is brought to the current one by the next declaration, not refused. */
static void nats_declare_updates_an_older_max_ack_pending(void **state)
{
    (void)state;
    const char *url = nats_url_or_skip();
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(js_GetConsumerInfo(&ci, js, "TXMSG", q, NULL, NULL), NATS_OK);
    int64_t current = ci->Config->MaxAckPending;
    assert_true(current >= 100000);
    ci->Config->MaxAckPending = 20000;
    jsConsumerInfo *old = NULL;
    assert_int_equal(js_UpdateConsumer(&old, js, "TXMSG", ci->Config, NULL, NULL), NATS_OK);
    assert_int_equal(old->Config->MaxAckPending, 20000);
    jsConsumerInfo_Destroy(old);
    jsConsumerInfo_Destroy(ci);
    txm_transport_close(t);

    t = open_shared();
    subscribe(t, topic, q, 3, 30000);
    ci = NULL;
    assert_int_equal(js_GetConsumerInfo(&ci, js, "TXMSG", q, NULL, NULL), NATS_OK);
    assert_int_equal(ci->Config->MaxAckPending, current);
    jsConsumerInfo_Destroy(ci);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    txm_transport_close(t);
}

/* Publishes a CloudEvents binary-mode message as another producer's SDK
 * would: attributes in "ce-" headers, the data as the body. hdrs holds
 * name/value pairs, NULL-terminated. */
static void publish_binary(jsCtx *js, const char *topic, const char *const *hdrs, const char *body,
                           int len)
{
    char subject[NAME_LEN + 8];
    snprintf(subject, sizeof subject, "txmsg.%s", topic);
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, subject, NULL, body, len), NATS_OK);
    for (size_t i = 0; hdrs[i] != NULL; i += 2)
        assert_int_equal(natsMsgHeader_Set(m, hdrs[i], hdrs[i + 1]), NATS_OK);
    jsPubAck *pa = NULL;
    assert_int_equal(js_PublishMsg(&pa, js, m, NULL, NULL), NATS_OK);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
}

/* Receives one delivery on q and decodes it; fails the test otherwise. */
static txm_msg *receive_event(txm_transport *t, const char *q)
{
    txm_delivery *d = receive_one(t, q, 5000);
    assert_non_null(d);
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    txm_msg *m = NULL;
    txm_error err = {0};
    if (txm_msg_decode(body, len, &m, &err) != TXM_OK)
        fail_msg("decode %.*s: %s", (int)len, body, err.text);
    ack(t, d);
    txm_delivery_free(d);
    return m;
}

static void nats_binary_mode_cloudevents_arrive_structured(void **state)
{
    (void)state;
    const char *url = nats_url_or_skip();
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    /* JSON data, the media type in Content-Type, Go's header spelling for
     * one attribute, a percent-encoded and a quoted value. */
    const char *json[] = {"ce-specversion",
                          "1.0",
                          "ce-id",
                          "b-1",
                          "ce-source",
                          "/orders",
                          "ce-type",
                          topic,
                          "ce-time",
                          "2018-04-05T03:56:24Z",
                          "Ce-Subject",
                          "order-42",
                          "ce-comment",
                          "Euro%20%E2%82%AC%20%F0%9F%98%80",
                          "ce-traceparent",
                          "\"00-ab\"",
                          "Content-Type",
                          "application/json",
                          NULL};
    publish_binary(js, topic, json, "{\"orderId\": \"order-42\"}", 23);
    /* Text data, datacontenttype in its own header. */
    const char *text[] = {"ce-specversion",     "1.0",        "ce-id",   "b-2",
                          "ce-source",          "/orders",    "ce-type", topic,
                          "ce-datacontenttype", "text/plain", NULL};
    publish_binary(js, topic, text, "order 42 created", 16);
    /* Bytes of unknown type: data_base64 without a datacontenttype. */
    const char *bin[] = {"ce-specversion", "1.0",     "ce-id", "b-3", "ce-source",
                         "/orders",        "ce-type", topic,   NULL};
    publish_binary(js, topic, bin, "\x00\x01\xfe\xff", 4);

    txm_msg *m = receive_event(t, q);
    assert_string_equal(txm_msg_id(m), "b-1");
    assert_string_equal(txm_msg_source(m), "/orders");
    assert_string_equal(txm_msg_topic(m), topic);
    assert_string_equal(txm_msg_aggregate_id(m), "order-42");
    assert_string_equal(txm_msg_correlation_id(m), "b-1");
    assert_true(txm_msg_has_time(m));
    assert_int_equal(txm_msg_data_kind(m), TXM_DATA_JSON);
    assert_string_equal(txm_msg_payload(m), "{\"orderId\":\"order-42\"}");
    assert_string_equal(txm_msg_content_type(m), "application/json");
    assert_string_equal(txm_msg_extension(m, "comment"), "Euro \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(txm_msg_extension(m, "traceparent"), "00-ab");
    txm_msg_free(m);

    m = receive_event(t, q);
    assert_string_equal(txm_msg_id(m), "b-2");
    assert_false(txm_msg_has_time(m));
    assert_string_equal(txm_msg_aggregate_id(m), "");
    assert_int_equal(txm_msg_data_kind(m), TXM_DATA_TEXT);
    assert_string_equal(txm_msg_data(m, NULL), "order 42 created");
    assert_string_equal(txm_msg_content_type(m), "text/plain");
    txm_msg_free(m);

    m = receive_event(t, q);
    size_t len = 0;
    assert_string_equal(txm_msg_id(m), "b-3");
    assert_int_equal(txm_msg_data_kind(m), TXM_DATA_BINARY);
    assert_memory_equal(txm_msg_data(m, &len), "\x00\x01\xfe\xff", 4);
    assert_int_equal(len, 4);
    assert_string_equal(txm_msg_content_type(m), "");
    txm_msg_free(m);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    txm_transport_close(t);
}

static void nats_nack_after_max_moves_to_dlq_with_headers(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    publish_one(t, topic, "poison-1", "{\"poison\":1}");
    for (int i = 1; i <= 3; i++) {
        txm_delivery *d = receive_one(t, q, 2000);
        assert_non_null(d);
        assert_int_equal(txm_delivery_receive_count(d), i);
        char reason[32];
        snprintf(reason, sizeof reason, "boom %d\nline", i);
        txm_error err = {0};
        if (txm_transport_nack(t, d, 0, reason, &err) != TXM_OK)
            fail_msg("nack: %s", err.text);
        txm_delivery_free(d);
    }
    assert_null(receive_one(t, q, 500));
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(t, q, 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    size_t len = 0;
    assert_string_equal(txm_delivery_body(list[0], &len), "{\"poison\":1}");
    assert_string_equal(txm_delivery_message_id(list[0]), "poison-1");
    assert_string_equal(txm_delivery_topic(list[0]), topic);
    assert_string_equal(txm_delivery_queue(list[0]), q);
    assert_int_equal(txm_delivery_receive_count(list[0]), 3);
    assert_string_equal(txm_delivery_last_error(list[0]), "boom 3 line");
    /* Listed dead letters cannot be acked. */
    assert_int_equal(txm_transport_ack(t, list[0], NULL), TXM_STATE);
    txm_delivery_list_free(list, n);
    int64_t depth = -1;
    assert_int_equal(txm_transport_queue_depth(t, q, &depth, NULL), TXM_OK);
    assert_int_equal(depth, 0);
    txm_transport_close(t);
}

static void nats_expired_last_lease_is_dead_lettered_not_returned(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 1, 1000);
    publish_one(t, topic, "expire-1", "{}");
    txm_delivery *d = receive_one(t, q, 2000);
    assert_non_null(d);
    txm_delivery_free(d); /* lease 1 of 1 runs out */
    d = NULL;
    long long until = txm_test_now_ms() + 5000;
    while (d == NULL && txm_test_now_ms() < until) {
        txm_delivery **list = NULL;
        size_t n = 0;
        assert_null(receive_one(t, q, 500));
        assert_int_equal(txm_transport_dlq_list(t, q, 10, &list, &n, NULL), TXM_OK);
        if (n == 1) {
            assert_int_equal(txm_delivery_receive_count(list[0]), 2);
            assert_non_null(strstr(txm_delivery_last_error(list[0]), "lease expired"));
            d = list[0];
            list[0] = NULL;
        }
        txm_delivery_list_free(list, n);
    }
    assert_non_null(d);
    txm_delivery_free(d);
    txm_transport_close(t);
}

/* Dead-letters every message received from q (expects n). */
static void dead_letter_all(txm_transport *t, const char *q, size_t expect, char ids[][16])
{
    size_t got = 0;
    for (int tries = 0; got < expect && tries < 20; tries++) {
        txm_delivery **list = NULL;
        size_t n = receive(t, q, 10, 1000, &list);
        for (size_t i = 0; i < n; i++) {
            if (ids != NULL)
                snprintf(ids[got], 16, "%s", txm_delivery_message_id(list[i]));
            got++;
            txm_error err = {0};
            if (txm_transport_dead_letter(t, list[i], "cannot decode", &err) != TXM_OK)
                fail_msg("dead_letter: %s", err.text);
        }
        txm_delivery_list_free(list, n);
    }
    assert_int_equal(got, expect);
}

static size_t dlq_count(txm_transport *t, const char *q)
{
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(t, q, 100, &list, &n, NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    return n;
}

static void nats_dlq_list_redrive_purge(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], qa[NAME_LEN], qb[NAME_LEN];
    names(topic, qa, qb);
    subscribe(t, topic, qa, 3, 30000);
    subscribe(t, topic, qb, 3, 30000);
    txm_outgoing batch[3] = {{topic, "dl-1", "{\"i\":1}", 7},
                             {topic, "dl-2", "{\"i\":2}", 7},
                             {topic, "dl-3", "{\"i\":3}", 7}};
    assert_int_equal(txm_transport_publish(t, batch, 3, NULL, NULL), TXM_OK);
    char ids[3][16];
    dead_letter_all(t, qa, 3, ids);
    dead_letter_all(t, qb, 3, NULL);
    assert_int_equal(txm_transport_dlq_purge(t, qb, NULL, NULL), TXM_OK);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(t, qa, 2, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 2); /* limit */
    assert_string_equal(txm_delivery_message_id(list[0]), "dl-1");
    assert_string_equal(txm_delivery_message_id(list[1]), "dl-2");
    assert_string_equal(txm_delivery_last_error(list[0]), "cannot decode");
    txm_delivery_list_free(list, n);
    assert_int_equal(dlq_count(t, qa), 3);
    /* Redrive one: back in qa with a fresh count, and not in qb. */
    size_t moved = 0;
    assert_int_equal(txm_transport_dlq_redrive(t, qa, "dl-2", &moved, NULL), TXM_OK);
    assert_int_equal(moved, 1);
    txm_delivery *d = receive_one(t, qa, 2000);
    assert_non_null(d);
    assert_string_equal(txm_delivery_message_id(d), "dl-2");
    assert_string_equal(txm_delivery_topic(d), topic);
    assert_int_equal(txm_delivery_receive_count(d), 1);
    ack(t, d);
    txm_delivery_free(d);
    assert_null(receive_one(t, qb, 300));
    assert_int_equal(dlq_count(t, qa), 2);
    /* Redrive the rest; they fail again and are dead letters again. */
    assert_int_equal(txm_transport_dlq_redrive(t, qa, NULL, &moved, NULL), TXM_OK);
    assert_int_equal(moved, 2);
    assert_int_equal(dlq_count(t, qa), 0);
    dead_letter_all(t, qa, 2, NULL);
    assert_int_equal(dlq_count(t, qa), 2);
    size_t purged = 0;
    assert_int_equal(txm_transport_dlq_purge(t, qa, &purged, NULL), TXM_OK);
    assert_int_equal(purged, 2);
    assert_int_equal(dlq_count(t, qa), 0);
    assert_int_equal(dlq_count(t, qb), 0);
    txm_transport_close(t);
}

static void nats_order_of_1000_is_kept(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    enum { N = 1000 };
    static char ids[N][24], bodies[N][24];
    static txm_outgoing msgs[N];
    static txm_status res[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "ord-%d", i);
        snprintf(bodies[i], sizeof bodies[i], "{\"i\":%d}", i);
        msgs[i] = (txm_outgoing){topic, ids[i], bodies[i], strlen(bodies[i])};
    }
    long long t0 = txm_test_now_ms();
    txm_error err = {0};
    if (txm_transport_publish(t, msgs, N, res, &err) != TXM_OK)
        fail_msg("publish: %s", err.text);
    long long t1 = txm_test_now_ms();
    for (int i = 0; i < N; i++)
        assert_int_equal(res[i], TXM_OK);
    int next = 0;
    while (next < N) {
        txm_delivery **list = NULL;
        size_t n = receive(t, q, 256, 2000, &list);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(txm_delivery_message_id(list[i]), ids[next]);
            next++;
            ack(t, list[i]);
        }
        txm_delivery_list_free(list, n);
    }
    long long t2 = txm_test_now_ms();
    print_message("nats: published %d in %lld ms, received+acked in %lld ms\n", N, t1 - t0,
                  t2 - t1);
    txm_transport_close(t);
}

/* Short receives racing nack delays: every delivery must count once.
 * (Pull requests with an expiry lose such redeliveries on nats-server 2.9.) */
static void nats_nack_delays_count_each_receive_once(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 100, 30000);
    publish_one(t, topic, "retry-1", "{}");
    int expect = 1;
    long long until = txm_test_now_ms() + 20000;
    while (expect <= 40 && txm_test_now_ms() < until) {
        txm_delivery *d = receive_one(t, q, 100);
        if (d == NULL)
            continue;
        assert_int_equal(txm_delivery_receive_count(d), expect);
        expect++;
        assert_int_equal(txm_transport_nack(t, d, (expect % 4) * 50, "again", NULL), TXM_OK);
        txm_delivery_free(d);
    }
    assert_int_equal(expect, 41);
    txm_transport_close(t);
}

static void nats_queue_conflict_and_not_found(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], other[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    txm_test_unique("topic", other, sizeof other);
    subscribe(t, topic, q, 3, 30000);
    subscribe(t, topic, q, 3, 30000);
    subscribe(t, topic, q, 5, 10000); /* options may change */
    txm_error err = {0};
    assert_int_equal(txm_transport_declare_subscription(t, other, q, NULL, &err), TXM_CONFLICT);
    /* "a.b" and "a_b" share a consumer name: the second is refused. */
    char dotted[NAME_LEN + 4], under[NAME_LEN + 4];
    snprintf(dotted, sizeof dotted, "%s.x", q);
    snprintf(under, sizeof under, "%s_x", q);
    subscribe(t, topic, dotted, 3, 30000);
    assert_int_equal(txm_transport_declare_subscription(t, topic, under, NULL, &err), TXM_CONFLICT);
    int64_t depth = 0;
    assert_int_equal(txm_transport_queue_depth(t, under, &depth, &err), TXM_NOT_FOUND);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_receive(t, "no-such-queue", 1, 0, &list, &n, &err),
                     TXM_NOT_FOUND);
    assert_int_equal(txm_transport_declare_topic(t, "a..b", &err), TXM_INVALID);
    /* A second process sees the declared options. */
    txm_transport *t2 = open_shared();
    publish_one(t2, topic, "opt-1", "{}");
    for (int i = 1; i <= 4; i++) {
        txm_delivery *d = receive_one(t2, q, 2000);
        assert_non_null(d);
        assert_int_equal(txm_transport_nack(t2, d, 0, "again", NULL), TXM_OK);
        txm_delivery_free(d);
    }
    txm_delivery *d = receive_one(t2, q, 2000); /* 5th receive: max is 5 */
    assert_non_null(d);
    assert_int_equal(txm_delivery_receive_count(d), 5);
    assert_int_equal(txm_transport_nack(t2, d, 0, "last", NULL), TXM_OK);
    txm_delivery_free(d);
    assert_int_equal(dlq_count(t2, q), 1);
    txm_transport_close(t2);
    txm_transport_close(t);
}

static void nats_topic_without_subscribers_accepts_and_drops(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    publish_one(t, topic, "nobody-1", "{}");
    subscribe(t, topic, q, 3, 30000);
    assert_null(receive_one(t, q, 300));
    txm_transport_close(t);
}

typedef struct late_pub {
    txm_transport *t;
    const char *topic;
    int delay_ms;
} late_pub;

static void *publish_later(void *arg)
{
    late_pub *p = arg;
    txm_test_sleep_ms(p->delay_ms);
    txm_outgoing m = {p->topic, "late-1", "{}", 2};
    txm_transport_publish(p->t, &m, 1, NULL, NULL);
    return NULL;
}

static void nats_waiting_receive_wakes_on_publish(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    long long t0 = txm_test_now_ms();
    assert_null(receive_one(t, q, 300));
    long long waited = txm_test_now_ms() - t0;
    assert_true(waited >= 250 && waited < 1500);
    late_pub p = {t, topic, 300};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, publish_later, &p), 0);
    t0 = txm_test_now_ms();
    txm_delivery **list = NULL;
    size_t n = receive(t, q, 10, 5000, &list);
    long long got_after = txm_test_now_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    ack(t, list[0]);
    txm_delivery_list_free(list, n);
    print_message("nats: waiting receive of 10 returned %lld ms after a publish at 300 ms\n",
                  got_after - 300);
    assert_true(got_after < 300 + 500);
    txm_transport_close(t);
}

typedef struct competitor {
    txm_transport *t;
    const char *queue;
    pthread_mutex_t *mu;
    int *seen; /* per message index */
    int got;
} competitor;

static void *compete(void *arg)
{
    competitor *c = arg;
    for (int empty = 0; empty < 3;) {
        txm_delivery **list = NULL;
        size_t n = 0;
        if (txm_transport_receive(c->t, c->queue, 7, 300, &list, &n, NULL) != TXM_OK)
            break;
        empty = n == 0 ? empty + 1 : 0;
        for (size_t i = 0; i < n; i++) {
            int k = (int)strtol(txm_delivery_message_id(list[i]) + 4, NULL, 10);
            pthread_mutex_lock(c->mu);
            c->seen[k]++;
            pthread_mutex_unlock(c->mu);
            c->got++;
            txm_transport_ack(c->t, list[i], NULL);
        }
        txm_delivery_list_free(list, n);
    }
    return NULL;
}

static void nats_competing_receivers_share_a_queue(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    enum { N = 300 };
    static char ids[N][16];
    static txm_outgoing msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "cmp-%d", i);
        msgs[i] = (txm_outgoing){topic, ids[i], "{}", 2};
    }
    assert_int_equal(txm_transport_publish(t, msgs, N, NULL, NULL), TXM_OK);
    static int seen[N];
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    competitor c[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (competitor){t, q, &mu, seen, 0};
        assert_int_equal(pthread_create(&th[i], NULL, compete, &c[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_true(c[0].got + c[1].got + c[2].got == N);
    txm_transport_close(t);
}

/* The receiver side of steady traffic: long polls and acks each delivery,
 * as an application consumer does, until every message came, time is up,
 * or something failed. */
typedef struct steady {
    txm_transport *t;
    const char *queue;
    int expect;
    long long until_ms;
    int got;      /* deliveries */
    int receives; /* receives that returned, empty or not */
    int failures; /* failed receives and acks (of the last batch) */
    txm_error first;
} steady;

static void steady_failed(steady *s, const txm_error *err)
{
    if (s->failures++ == 0)
        s->first = *err;
}

static void *receive_steadily(void *arg)
{
    steady *s = arg;
    while (s->failures == 0 && s->got < s->expect && txm_test_now_ms() < s->until_ms) {
        txm_delivery **list = NULL;
        size_t n = 0;
        txm_error err = {0};
        s->receives++;
        if (txm_transport_receive(s->t, s->queue, 256, 100, &list, &n, &err) != TXM_OK) {
            steady_failed(s, &err);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (txm_transport_ack(s->t, list[i], &err) != TXM_OK)
                steady_failed(s, &err);
            s->got++;
        }
        txm_delivery_list_free(list, n);
    }
    return NULL;
}

/* Regression: messages published steadily at 1 kHz (by turns on the
 * receiving handle and on a second one, as a relay in another process does)
 * while a thread long-polls the queue and acks each message. The receiver
 * waits for almost every message, so its wake-up subscription to the topic
 * is made and dropped about once a millisecond while publishes to it keep
 * arriving. libnats before 3.6 (nats.c issue 637) could free such a
 * subscription under its read loop, which crashed (glibc "e != ESRCH ||
 * !robust", malloc aborts, SIGSEGV) or lost the answer to another request (an
 * ack or a publish failed with TXM_TIMEOUT). Every publish, receive and ack
 * must succeed and every message must come. */
static void nats_steady_publish_while_receiving_and_acking(void **state)
{
    (void)state;
    txm_transport *t = open_shared();
    txm_transport *pub = open_shared(); /* as a relay publishes: another connection */
    char topic[NAME_LEN], q[NAME_LEN];
    names(topic, q, NULL);
    subscribe(t, topic, q, 3, 30000);
    enum { N = 3000 }; /* 3 s at 1 kHz */
    steady s = {.t = t, .queue = q, .expect = N, .until_ms = txm_test_now_ms() + 20000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, receive_steadily, &s), 0);
    int published = 0;
    txm_error err = {0};
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int i = 0; i < N && err.status == TXM_OK; i++) {
        next.tv_nsec += 1000000;
        if (next.tv_nsec >= 1000000000) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0) {
        }
        char id[NAME_LEN + 16], body[320];
        snprintf(id, sizeof id, "%s-%d", q, i); /* unique in the de-duplication window */
        snprintf(body, sizeof body, "{\"seq\":%d,\"pad\":\"%0280d\"}", i, 0);
        txm_outgoing m = {topic, id, body, strlen(body)};
        if (txm_transport_publish(i % 2 == 0 ? pub : t, &m, 1, NULL, &err) == TXM_OK)
            published++;
    }
    pthread_join(th, NULL); /* after 20 s at most */
    print_message("nats: steady 1 kHz: %d published, %d received in %d receives, %d failed\n",
                  published, s.got, s.receives, s.failures);
    if (err.status != TXM_OK)
        fail_msg("publish %d failed: %s", published, err.text);
    if (s.failures > 0)
        fail_msg("%d receives or acks failed, the first: %s", s.failures, s.first.text);
    assert_int_equal(s.got, N);
    txm_transport_close(pub);
    txm_transport_close(t);
}

static void nats_open_unreachable_fails_fast(void **state)
{
    (void)state;
    nats_url_or_skip();
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", txm_test_free_port());
    txm_transport *t = NULL;
    txm_error err = {0};
    long long t0 = txm_test_now_ms();
    assert_int_equal(txm_transport_open(url, NULL, &t, &err), TXM_UNAVAILABLE);
    assert_null(t);
    assert_true(txm_test_now_ms() - t0 < 3000);
}

/* A transport opened with background_connect before its server exists
 * answers TXM_UNAVAILABLE, then works once the server is up. */
static void nats_background_open_connects_when_server_appears(void **state)
{
    (void)state;
    nats_url_or_skip();
    char *dir = txm_test_mkdtemp();
    int port = txm_test_free_port();
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    txm_transport_options o;
    txm_transport_options_init(&o);
    o.background_connect = true;
    txm_transport *t = NULL;
    txm_error err = {0};
    assert_int_equal(txm_transport_open(url, &o, &t, &err), TXM_OK);
    assert_false(txm_transport_is_available(t));
    txm_outgoing msg = {"late", "late-1", "{\"late\":true}", 13};
    assert_int_equal(txm_transport_publish(t, &msg, 1, NULL, &err), TXM_UNAVAILABLE);
    assert_int_equal(txm_transport_declare_subscription(t, "late", "late-q", NULL, &err),
                     TXM_UNAVAILABLE);
    pid_t pid = txm_testnats_start(dir, port);
    assert_true(pid > 0);
    long long until = txm_test_now_ms() + 10000;
    while (!txm_transport_is_available(t) && txm_test_now_ms() < until)
        txm_test_sleep_ms(20);
    assert_true(txm_transport_is_available(t));
    subscribe(t, "late", "late-q", 3, 30000);
    assert_int_equal(txm_transport_publish(t, &msg, 1, NULL, &err), TXM_OK);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_receive(t, "late-q", 1, 2000, &list, &n, &err), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_delivery_message_id(list[0]), "late-1");
    assert_int_equal(txm_transport_ack(t, list[0], NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    txm_transport_close(t);
    txm_testnats_stop(pid);
    txm_test_rmdir(dir);
    free(dir);
}

/* Waits until f(t) stops (want_ok false) or starts (true) returning TXM_OK. */
static bool wait_depth(txm_transport *t, const char *q, bool want_ok, int ms)
{
    long long until = txm_test_now_ms() + ms;
    while (txm_test_now_ms() < until) {
        int64_t depth = 0;
        if ((txm_transport_queue_depth(t, q, &depth, NULL) == TXM_OK) == want_ok)
            return true;
        txm_test_sleep_ms(50);
    }
    return false;
}

/* Deliveries outstanding when nats-server is SIGKILLed come back after its
 * restart. nats-server 2.9.10 restores them as "ack pending" but hands them
 * out again only to a waiting pull request; a receiver that only sends
 * no-wait requests would never see them (found by the chaos test). */
static void nats_unacked_deliveries_come_back_after_a_server_crash(void **state)
{
    (void)state;
    nats_url_or_skip();
    char *dir = txm_test_mkdtemp();
    int port = txm_test_free_port();
    pid_t pid = txm_testnats_start(dir, port);
    assert_true(pid > 0);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    txm_transport *t = open_logged(url, 2000, NULL);
    subscribe(t, "crash", "crash-q", 1000, 1000);
    enum { N = 200 };
    char ids[N][16];
    txm_outgoing msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "cr-%d", i);
        msgs[i] = (txm_outgoing){"crash", ids[i], "{}", 2};
    }
    assert_int_equal(txm_transport_publish(t, msgs, N, NULL, NULL), TXM_OK);
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_receive(t, "crash-q", N, 2000, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, N);
    for (size_t i = N / 2; i < n; i++) /* the later half is done, the first half in hand */
        assert_int_equal(txm_transport_ack(t, list[i], NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pid = txm_testnats_start(dir, port);
    assert_true(pid > 0);
    bool seen[N] = {false};
    int back = 0;
    long long until = txm_test_now_ms() + 15000;
    while (back < N / 2 && txm_test_now_ms() < until) {
        if (txm_transport_receive(t, "crash-q", N, 500, &list, &n, NULL) != TXM_OK) {
            txm_test_sleep_ms(100);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            int k = (int)strtol(txm_delivery_message_id(list[i]) + 3, NULL, 10);
            if (k >= 0 && k < N / 2 && !seen[k]) {
                seen[k] = true;
                back++;
            }
            txm_transport_ack(t, list[i], NULL);
        }
        txm_delivery_list_free(list, n);
    }
    assert_int_equal(back, N / 2);
    txm_transport_close(t);
    txm_testnats_stop(pid);
    txm_test_rmdir(dir);
    free(dir);
}

static void nats_messages_survive_restart_and_handle_reconnects(void **state)
{
    (void)state;
    nats_url_or_skip(); /* nats-server is installed where with-servers runs */
    char *dir = txm_test_mkdtemp();
    int port = txm_test_free_port();
    assert_non_null(dir);
    pid_t pid = txm_testnats_start(dir, port);
    assert_true(pid > 0);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    int levels[4] = {0};
    txm_transport *t = open_logged(url, 2000, levels);
    subscribe(t, "restart", "restart-q", 3, 30000);
    enum { N = 20 };
    char ids[N][16];
    txm_outgoing msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "rs-%d", i);
        msgs[i] = (txm_outgoing){"restart", ids[i], "{\"kept\":true}", 13};
    }
    assert_int_equal(txm_transport_publish(t, msgs, N, NULL, NULL), TXM_OK);
    txm_testnats_stop(pid);
    assert_true(wait_depth(t, "restart-q", false, 5000));
    txm_error err = {0};
    txm_status st = txm_transport_publish(t, msgs, 1, NULL, &err);
    assert_true(st == TXM_UNAVAILABLE || st == TXM_TIMEOUT);
    pid = txm_testnats_start(dir, port);
    assert_true(pid > 0);
    assert_true(wait_depth(t, "restart-q", true, 10000));
    int next = 0;
    for (int tries = 0; next < N && tries < 50; tries++) {
        txm_delivery **list = NULL;
        size_t n = 0;
        if (txm_transport_receive(t, "restart-q", N, 500, &list, &n, &err) != TXM_OK)
            continue;
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(txm_delivery_message_id(list[i]), ids[next]);
            next++;
            ack(t, list[i]);
        }
        txm_delivery_list_free(list, n);
    }
    assert_int_equal(next, N);
    publish_one(t, "restart", "after-restart", "{}");
    txm_delivery *d = receive_one(t, "restart-q", 2000);
    assert_non_null(d);
    ack(t, d);
    txm_delivery_free(d);
    int64_t depth = -1;
    assert_int_equal(txm_transport_queue_depth(t, "restart-q", &depth, NULL), TXM_OK);
    assert_int_equal(depth, 0);
    /* The disconnect was a warning, the reconnect news. */
    assert_true(levels[2] >= 1 && levels[1] >= 1);
    txm_transport_close(t);
    txm_testnats_stop(pid);
    txm_test_rmdir(dir);
    free(dir);
}

/* Malformed URLs are refused with TXM_INVALID and a text naming the fault,
 * at once and without trying to connect. */
static void nats_malformed_urls_are_refused_before_connecting(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *says;
    } bad[] = {
        {"nats://", "server 1 of the list is empty"},
        {"nats://127.0.0.1:4222,,127.0.0.1:4223", "server 2 of the list is empty"},
        {"nats://127.0.0.1:4222,", "server 2 of the list is empty"},
        {"nats://127.0.0.1:42x2", "port must be a number"},
        {"nats://127.0.0.1:70000", "port must be 1..65535"},
        {"nats://:4222", "no host"},
        {"nats://[::1:4222", "IPv6"},
        {"nats://127.0.0.1:4222/x", "'/'"},
        {"nats://127.0.0.1:4222,tls://127.0.0.1:4223", "'/'"},
        {"nats://127.0.0.1 :4222", "space"},
        {"nats://127.0.0.1:4222?replicas=0", "replicas=0: want 1..5"},
        {"nats://127.0.0.1:4222?replicas=6", "want 1..5"},
        {"nats://127.0.0.1:4222?replicas=three", "want 1..5"},
        {"nats://127.0.0.1:4222?replicas=", "want 1..5"},
        {"nats://127.0.0.1:4222?replicas=3&", "empty option"},
        {"nats://127.0.0.1:4222?replica=3", "unknown option 'replica'"},
        {"nats://me:secret@127.0.0.1:42x2", "server 1 (127.0.0.1:42x2): the port"},
        {"nats://127.0.0.1:4222,me:secret@127.0.0.1 :4222", "server 2 (127.0.0.1 :4222)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        txm_transport *t = NULL;
        txm_error err = {0};
        assert_int_equal(txm_transport_open(bad[i].url, NULL, &t, &err), TXM_INVALID);
        assert_null(t);
        if (strstr(err.text, bad[i].says) == NULL)
            fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].url, err.text, bad[i].says);
        assert_null(strstr(err.text, "secret")); /* a password is never shown */
    }
    char many[1024] = "nats://";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s127.0.0.1:%d",
                 i > 0 ? "," : "", 4222 + i);
    txm_transport *t = NULL;
    txm_error err = {0};
    assert_int_equal(txm_transport_open(many, NULL, &t, &err), TXM_INVALID);
    assert_non_null(strstr(err.text, "more than 16 servers"));
    char *huge = malloc(5000);
    memset(huge, 'a', 4999);
    memcpy(huge, "nats://", 7);
    huge[4999] = '\0';
    assert_int_equal(txm_transport_open(huge, NULL, &t, &err), TXM_INVALID);
    assert_non_null(strstr(err.text, "longer than 4096"));
    free(huge);
    /* Nothing listens on either port: the failure names the servers, not the
     * credentials of either. */
    int port = txm_test_free_port();
    char down[256];
    snprintf(down, sizeof down, "nats://me:secret@127.0.0.1:%d,nats://you:hidden@127.0.0.1:1",
             port);
    assert_int_not_equal(txm_transport_open(down, NULL, &t, &err), TXM_OK);
    char want[96];
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%d,127.0.0.1:1", port);
    if (strstr(err.text, want) == NULL || strstr(err.text, "secret") != NULL ||
        strstr(err.text, "hidden") != NULL || strstr(err.text, "me:") != NULL)
        fail_msg("unreachable servers: \"%s\", want \"%s\" and no credentials", err.text, want);
}

/* A list of servers connects to one that is up, whichever it tries first;
 * each entry may carry its own nats://, and replicas=1 works alone. */
static void nats_server_list_connects_to_a_listed_server_that_is_up(void **state)
{
    (void)state;
    const char *live = nats_url_or_skip() + strlen("nats://");
    char url[256];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d,%s,nats://127.0.0.1:%d?replicas=1",
             txm_test_free_port(), live, txm_test_free_port());
    for (int i = 0; i < 3; i++) { /* libnats shuffles the list */
        txm_transport *t = open_logged(url, 10000, NULL);
        publish_one(t, "list-topic", "list-1", "{}");
        txm_transport_close(t);
    }
}

/* A single server cannot keep replicas: replicas=3 says so (here the
 * streams exist; nats_stream_made_otherwise_is_reported creates them). */
static void nats_replicas_on_a_single_server_are_refused(void **state)
{
    (void)state;
    char url[256];
    snprintf(url, sizeof url, "%s?replicas=3", nats_url_or_skip());
    txm_transport *t = NULL;
    txm_error err = {0};
    assert_int_equal(txm_transport_open(url, NULL, &t, &err), TXM_INVALID);
    assert_null(t);
    assert_non_null(strstr(err.text, "stream TXMSG: replicas=3 needs a JetStream cluster"));
}

/* A stream made by someone else with settings txmsg cannot work with is
 * reported, naming the stream, the setting and the fix; once it is gone,
 * open creates it right. Uses a server of its own. */
static void nats_stream_made_otherwise_is_reported(void **state)
{
    (void)state;
    nats_url_or_skip();
    char *dir = txm_test_mkdtemp();
    int port = txm_test_free_port();
    pid_t pid = txm_testnats_start(dir, port);
    assert_true(pid > 0);
    char url[64], url3[80];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    snprintf(url3, sizeof url3, "%s?replicas=3", url);
    txm_transport *t = NULL;
    txm_error err = {0};
    assert_int_equal(txm_transport_open(url3, NULL, &t, &err), TXM_INVALID);
    assert_non_null(strstr(err.text, "stream TXMSG: replicas=3 needs a JetStream cluster"));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, url), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    const char *subj[1] = {"txmsg.>"};
    jsStreamConfig c;
    jsStreamConfig_Init(&c);
    c.Name = "TXMSG";
    c.Subjects = subj;
    c.SubjectsLen = 1;
    c.Storage = js_FileStorage;
    c.Retention = js_InterestPolicy;
    assert_int_equal(js_AddStream(NULL, js, &c, NULL, NULL), NATS_OK);
    assert_int_equal(txm_transport_open(url, NULL, &t, &err), TXM_CONFLICT);
    assert_null(t);
    assert_non_null(strstr(err.text, "stream TXMSG has interest retention, txmsg needs limits"));
    assert_non_null(strstr(err.text, "nats stream rm TXMSG"));
    assert_int_equal(js_DeleteStream(js, "TXMSG", NULL, NULL), NATS_OK);
    t = open_logged(url, 10000, NULL);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, js, "TXMSG", NULL, NULL), NATS_OK);
    assert_int_equal(si->Config->Retention, js_LimitsPolicy);
    assert_int_equal(si->Config->Replicas, 1);
    jsStreamInfo_Destroy(si);
    txm_transport_close(t);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    txm_testnats_stop(pid);
    txm_test_rmdir(dir);
    free(dir);
}

static const char *cluster_url_or_skip(void)
{
    const char *url = getenv("TXMSG_TEST_NATS_CLUSTER_URL");
    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "skipped: needs TXMSG_TEST_NATS_CLUSTER_URL\n");
        skip();
    }
    return url;
}

/* On the cluster of scripts/with-servers: replicas=3 gives every stream 3
 * replicas; a URL asking for another count is told how the streams differ
 * and how to fix that; one that asks for nothing uses them as they are. */
static void nats_cluster_streams_get_the_replicas_asked_for(void **state)
{
    (void)state;
    const char *list = cluster_url_or_skip();
    char url[512];
    snprintf(url, sizeof url, "%s?replicas=3", list);
    txm_transport *t = open_logged(url, 10000, NULL);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, list), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    const char *streams[] = {"TXMSG", "TXMSG_DLQ", "TXMSG_BLOBS"};
    for (int i = 0; i < 3; i++) {
        jsStreamInfo *si = NULL;
        assert_int_equal(js_GetStreamInfo(&si, js, streams[i], NULL, NULL), NATS_OK);
        assert_int_equal(si->Config->Replicas, 3);
        assert_non_null(si->Cluster);
        assert_int_equal(si->Cluster->ReplicasLen, 2); /* the followers */
        jsStreamInfo_Destroy(si);
    }
    txm_transport_close(t);
    snprintf(url, sizeof url, "%s?replicas=1", list);
    txm_error err = {0};
    t = NULL;
    assert_int_equal(txm_transport_open(url, NULL, &t, &err), TXM_CONFLICT);
    assert_null(t);
    assert_non_null(strstr(err.text, "stream TXMSG has 3 replica(s), the URL asks for replicas=1"));
    assert_non_null(strstr(err.text, "nats stream edit TXMSG --replicas 1"));
    int levels[4] = {0};
    t = open_logged(list, 10000, levels);
    assert_int_equal(levels[TXM_LOG_WARN], 0); /* 3 replicas: nothing to warn of */
    txm_transport_close(t);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* The cases publish fixed message ids, and NATS drops a re-published id for
 * two minutes: each run gets a server of its own, so a second run soon
 * after (the sanitizer build) starts clean. Skipped without nats-server
 * (TXMSG_TEST_NATS_URL unset). */
static char *server_dir;
static pid_t server_pid = -1;

static int start_private_server(void **state)
{
    (void)state;
    if (getenv("TXMSG_TEST_NATS_URL") == NULL)
        return 0;
    server_dir = txm_test_mkdtemp();
    int port = txm_test_free_port();
    if (server_dir == NULL || port <= 0 || (server_pid = txm_testnats_start(server_dir, port)) < 0)
        return -1;
    static char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    return setenv("TXMSG_TEST_NATS_URL", url, 1);
}

static int stop_private_server(void **state)
{
    (void)state;
    txm_testnats_stop(server_pid);
    txm_test_rmdir(server_dir);
    free(server_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nats_fan_out_delivers_once_to_each_queue),
        cmocka_unit_test(nats_broker_drops_republish_with_same_id_in_window),
        cmocka_unit_test(nats_publish_reports_each_message),
        cmocka_unit_test(nats_unacked_message_is_redelivered_after_lease_with_count_2),
        cmocka_unit_test(nats_ack_batch_after_lease_ran_out_acks_the_redelivery),
        cmocka_unit_test(nats_declare_updates_an_older_max_ack_pending),
        cmocka_unit_test(nats_nack_after_max_moves_to_dlq_with_headers),
        cmocka_unit_test(nats_binary_mode_cloudevents_arrive_structured),
        cmocka_unit_test(nats_expired_last_lease_is_dead_lettered_not_returned),
        cmocka_unit_test(nats_dlq_list_redrive_purge),
        cmocka_unit_test(nats_order_of_1000_is_kept),
        cmocka_unit_test(nats_nack_delays_count_each_receive_once),
        cmocka_unit_test(nats_queue_conflict_and_not_found),
        cmocka_unit_test(nats_topic_without_subscribers_accepts_and_drops),
        cmocka_unit_test(nats_waiting_receive_wakes_on_publish),
        cmocka_unit_test(nats_competing_receivers_share_a_queue),
        cmocka_unit_test(nats_steady_publish_while_receiving_and_acking),
        cmocka_unit_test(nats_open_unreachable_fails_fast),
        cmocka_unit_test(nats_background_open_connects_when_server_appears),
        cmocka_unit_test(nats_messages_survive_restart_and_handle_reconnects),
        cmocka_unit_test(nats_unacked_deliveries_come_back_after_a_server_crash),
        cmocka_unit_test(nats_malformed_urls_are_refused_before_connecting),
        cmocka_unit_test(nats_server_list_connects_to_a_listed_server_that_is_up),
        cmocka_unit_test(nats_replicas_on_a_single_server_are_refused),
        cmocka_unit_test(nats_stream_made_otherwise_is_reported),
        cmocka_unit_test(nats_cluster_streams_get_the_replicas_asked_for),
    };
    return cmocka_run_group_tests(tests, start_private_server, stop_private_server);
}
