/* bench_consume_bare: how fast a consumer drains a queue, next to the
 * broker's own rate. COUNT messages of LEN bytes (default 250) are
 * published to TOPIC first, with QUEUE subscribed; the clock then runs from
 * the first receive to the last acknowledgement, in one of two modes:
 * - txm: txm_transport_receive of up to 256 and txm_transport_ack_batch of
 *   each batch received, on any broker URL (for the embedded broker this is
 *   also its bare figure: there is nothing underneath to call directly);
 * - bare-nats: plain libnats on a fresh durable pull consumer of the same
 *   messages (js_PullSubscribe, natsSubscription_Fetch of 256, natsMsg_Ack
 *   of each), the reference for txm on a nats:// URL.
 * QUEUE's consumer and the bare one are deleted afterwards.
 *   bench_consume_bare MODE URL TOPIC QUEUE COUNT [LEN]
 * Prints "mode=M url=U count=N seconds=S msg_per_s=R". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "bench.h"

#define BATCH 256               /* messages per receive or fetch */
#define PUBLISH_BATCH 1000      /* messages per txm_transport_publish */
#define WAIT_MS 5000            /* a receive or fetch that gets nothing for this long fails */
#define BARE_SUFFIX "_bare"     /* the bare consumer: QUEUE's durable name + this */
#define BARE_ACK_PENDING 150000 /* as the transport's consumers (MAX_ACK_PENDING) */

/* Publishes count messages of body to topic in batches, with fresh ids. */
static void publish_all(txm_transport *t, const char *topic, const char *body, size_t len,
                        long long count)
{
    txm_outgoing *out = calloc(PUBLISH_BATCH, sizeof *out);
    char(*ids)[TXM_UUID_LEN + 1] = calloc(PUBLISH_BATCH, sizeof *ids);
    if (out == NULL || ids == NULL)
        bench_fail("bench: out of memory");
    txm_error err;
    for (long long done = 0; done < count; done += PUBLISH_BATCH) {
        long long n = count - done < PUBLISH_BATCH ? count - done : PUBLISH_BATCH;
        for (long long i = 0; i < n; i++) {
            bench_check(txm_uuid_v7(ids[i], &err), &err, "uuid");
            out[i] = (txm_outgoing){topic, ids[i], body, len};
        }
        bench_check(txm_transport_publish(t, out, (size_t)n, NULL, &err), &err, "publish");
    }
    free(ids);
    free(out);
}

/* Receives and acks count messages of queue in batches; returns the seconds
 * taken. */
static double consume_txm(txm_transport *t, const char *queue, long long count)
{
    txm_error err;
    txm_status *results = calloc(BATCH, sizeof *results);
    if (results == NULL)
        bench_fail("bench: out of memory");
    long long done = 0;
    int64_t start = bench_mono_ns();
    while (done < count) {
        txm_delivery **got = NULL;
        size_t n = 0;
        bench_check(txm_transport_receive(t, queue, BATCH, WAIT_MS, &got, &n, &err), &err,
                    "receive");
        if (n == 0)
            bench_fail("bench: queue %s empty after %lld of %lld", queue, done, count);
        bench_check(txm_transport_ack_batch(t, got, n, results, &err), &err, "ack_batch");
        txm_delivery_list_free(got, n);
        done += (long long)n;
    }
    double seconds = (double)(bench_mono_ns() - start) / 1e9;
    free(results);
    return seconds;
}

/* The bare consumer's durable name: QUEUE's, as the transport makes it ('.'
 * becomes '_'), plus BARE_SUFFIX. */
static void bare_name(const char *queue, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", queue, BARE_SUFFIX);
    for (char *p = out; *p != '\0'; p++)
        if (*p == '.')
            *p = '_';
}

/* Creates the bare durable pull consumer on txmsg.<topic>, starting at the
 * messages published from now on, as a queue does. */
static natsSubscription *bare_subscribe(jsCtx *js, const char *topic, const char *durable)
{
    char subject[TXM_TOPIC_MAX + 8];
    snprintf(subject, sizeof subject, "txmsg.%s", topic);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "TXMSG";
    so.Config.DeliverPolicy = js_DeliverNew;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = BARE_ACK_PENDING;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&sub, js, subject, durable, NULL, &so, &jerr);
    if (s != NATS_OK)
        bench_fail("bench: js_PullSubscribe %s: %s (%d)", durable, natsStatus_GetText(s),
                   (int)jerr);
    return sub;
}

/* Fetches and acks count messages of sub; returns the seconds taken. The
 * acks are natsMsg_Ack with no options: published, not waited for. */
static double consume_bare(natsSubscription *sub, long long count)
{
    long long done = 0;
    int64_t start = bench_mono_ns();
    while (done < count) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, BATCH, WAIT_MS, &jerr);
        if (s != NATS_OK)
            bench_fail("bench: fetch after %lld of %lld: %s (%d)", done, count,
                       natsStatus_GetText(s), (int)jerr);
        for (int i = 0; i < list.Count; i++)
            if ((s = natsMsg_Ack(list.Msgs[i], NULL)) != NATS_OK)
                bench_fail("bench: ack: %s", natsStatus_GetText(s));
        done += list.Count;
        natsMsgList_Destroy(&list);
    }
    double seconds = (double)(bench_mono_ns() - start) / 1e9;
    return seconds;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7)
        bench_fail("usage: bench_consume_bare txm|bare-nats URL TOPIC QUEUE COUNT [LEN]");
    const char *mode = argv[1], *url = argv[2], *topic = argv[3], *queue = argv[4];
    long long count = bench_arg_int(argv[5], 1, 10000000, "COUNT");
    size_t len = argc == 7 ? (size_t)bench_arg_int(argv[6], 1, 1 << 20, "LEN") : 250;
    bool bare = strcmp(mode, "bare-nats") == 0;
    if (!bare && strcmp(mode, "txm") != 0)
        bench_fail("bench: MODE is txm or bare-nats, not %s", mode);
    if (bare && strncmp(url, "nats://", 7) != 0)
        bench_fail("bench: bare-nats needs a nats:// URL");

    txm_error err;
    txm_transport *t = NULL;
    bench_check(txm_transport_open(url, NULL, &t, &err), &err, "open transport");
    bench_check(txm_transport_declare_subscription(t, topic, queue, NULL, &err), &err,
                "declare subscription");
    char *body = malloc(len);
    if (body == NULL)
        bench_fail("bench: out of memory");
    memset(body, 'x', len);

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    char durable[TXM_TOPIC_MAX + sizeof BARE_SUFFIX];
    bare_name(queue, durable, sizeof durable);
    if (bare) {
        natsStatus s = natsConnection_ConnectTo(&nc, url);
        if (s == NATS_OK)
            s = natsConnection_JetStream(&js, nc, NULL);
        if (s != NATS_OK)
            bench_fail("bench: connect to %s: %s", url, natsStatus_GetText(s));
        sub = bare_subscribe(js, topic, durable);
    }
    publish_all(t, topic, body, len, count);

    double seconds = bare ? consume_bare(sub, count) : consume_txm(t, queue, count);

    if (bare) {
        natsSubscription_Destroy(sub);
        jsErrCode jerr = 0;
        if (js_DeleteConsumer(js, "TXMSG", durable, NULL, &jerr) != NATS_OK)
            fprintf(stderr, "bench: deleting consumer %s failed (%d)\n", durable, (int)jerr);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
    }
    txm_transport_close(t);
    bench_drop_queue(url, queue);
    printf("mode=%s url=%s count=%lld seconds=%.3f msg_per_s=%.0f\n", mode, url, count, seconds,
           (double)count / seconds);
    free(body);
    return 0;
}
