/* bench_nats_ceiling: the broker's ceiling for a relay, a bare libnats loop
 * of js_PublishAsync with a Nats-Msg-Id per message to txmsg.<TOPIC> of the
 * stream the transport uses, then js_PublishAsyncComplete. QUEUE is
 * subscribed to TOPIC first so the stream (interest retention) stores every
 * message, as it does for the relay; it is deleted afterwards.
 *   bench_nats_ceiling NATS_URL TOPIC QUEUE COUNT LEN
 * Prints "rate=MSG_PER_S seconds=S". */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "bench.h"

/* Outstanding asynchronous publishes, as the transport allows (PUB_MAX_PENDING). */
#define MAX_PENDING 8192
#define COMPLETE_WAIT_MS 60000

static void on_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    atomic_fetch_add((atomic_llong *)closure, 1);
}

/* The message ids, made before the clock starts: UUIDs, as the relay sends. */
static char (*make_ids(long long count))[TXM_UUID_LEN + 1]
{
    char(*ids)[TXM_UUID_LEN + 1] = calloc((size_t)count, sizeof *ids);
    if (ids == NULL)
        bench_fail("bench: out of memory");
    txm_error err;
    for (long long i = 0; i < count; i++)
        bench_check(txm_uuid_v7(ids[i], &err), &err, "uuid");
    return ids;
}

/* Publishes count messages of body; returns the seconds it took. */
static double publish_all(jsCtx *js, const char *subject, const char *body, size_t len,
                          char (*ids)[TXM_UUID_LEN + 1], long long count)
{
    int64_t start = bench_mono_ns();
    for (long long i = 0; i < count; i++) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = ids[i];
        natsStatus s = js_PublishAsync(js, subject, body, (int)len, &po);
        if (s != NATS_OK)
            bench_fail("bench: js_PublishAsync: %s", natsStatus_GetText(s));
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = COMPLETE_WAIT_MS;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    if (s != NATS_OK)
        bench_fail("bench: js_PublishAsyncComplete: %s", natsStatus_GetText(s));
    return (double)(bench_mono_ns() - start) / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        bench_fail("usage: bench_nats_ceiling NATS_URL TOPIC QUEUE COUNT LEN");
    const char *url = argv[1], *topic = argv[2], *queue = argv[3];
    long long count = bench_arg_int(argv[4], 1, 10000000, "COUNT");
    size_t len = (size_t)bench_arg_int(argv[5], 1, 1 << 20, "LEN");

    txm_error err;
    txm_transport *t = NULL;
    bench_check(txm_transport_open(url, NULL, &t, &err), &err, "open transport");
    bench_check(txm_transport_declare_subscription(t, topic, queue, NULL, &err), &err,
                "declare subscription");

    char subject[TXM_TOPIC_MAX + 8];
    snprintf(subject, sizeof subject, "txmsg.%s", topic);
    char *body = malloc(len);
    if (body == NULL)
        bench_fail("bench: out of memory");
    memset(body, 'x', len);
    char(*ids)[TXM_UUID_LEN + 1] = make_ids(count);
    atomic_llong failed = 0;

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = MAX_PENDING;
    jo.PublishAsync.ErrHandler = on_error;
    jo.PublishAsync.ErrHandlerClosure = &failed;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK)
        bench_fail("bench: connect to %s: %s", url, natsStatus_GetText(s));
    double seconds = publish_all(js, subject, body, len, ids, count);

    int64_t depth = 0;
    bench_check(txm_transport_queue_depth(t, queue, &depth, &err), &err, "queue depth");
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    txm_transport_close(t);
    bench_drop_queue(url, queue);
    if (atomic_load(&failed) != 0 || depth < count)
        bench_fail("bench: %lld publishes failed, queue holds %lld of %lld",
                   (long long)atomic_load(&failed), (long long)depth, count);
    printf("rate=%.0f seconds=%.3f\n", (double)count / seconds, seconds);
    free(ids);
    free(body);
    return 0;
}
