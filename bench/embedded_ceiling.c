/* bench_embedded_ceiling: the embedded broker's ceiling for a relay, a bare
 * loop of txm_transport_publish in batches of BATCH messages of LEN bytes to
 * TOPIC, with QUEUE subscribed so each message is stored in it. Bodies and
 * ids are made before the clock starts.
 *   bench_embedded_ceiling BROKER_URL TOPIC QUEUE COUNT LEN BATCH
 * Prints "rate=MSG_PER_S seconds=S". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Publishes count messages of body in batches; returns the seconds taken. */
static double publish_all(txm_transport *t, const char *topic, const char *body, size_t len,
                          char (*ids)[TXM_UUID_LEN + 1], long long count, long long batch)
{
    txm_outgoing *out = calloc((size_t)batch, sizeof *out);
    if (out == NULL)
        bench_fail("bench: out of memory");
    txm_error err;
    int64_t start = bench_mono_ns();
    for (long long done = 0; done < count; done += batch) {
        long long n = count - done < batch ? count - done : batch;
        for (long long i = 0; i < n; i++)
            out[i] = (txm_outgoing){topic, ids[done + i], body, len};
        bench_check(txm_transport_publish(t, out, (size_t)n, NULL, &err), &err, "publish");
    }
    double seconds = (double)(bench_mono_ns() - start) / 1e9;
    free(out);
    return seconds;
}

int main(int argc, char **argv)
{
    if (argc != 7)
        bench_fail("usage: bench_embedded_ceiling BROKER_URL TOPIC QUEUE COUNT LEN BATCH");
    const char *url = argv[1], *topic = argv[2], *queue = argv[3];
    long long count = bench_arg_int(argv[4], 1, 10000000, "COUNT");
    size_t len = (size_t)bench_arg_int(argv[5], 1, 1 << 20, "LEN");
    long long batch = bench_arg_int(argv[6], 1, 100000, "BATCH");

    txm_error err;
    txm_transport *t = NULL;
    bench_check(txm_transport_open(url, NULL, &t, &err), &err, "open transport");
    bench_check(txm_transport_declare_subscription(t, topic, queue, NULL, &err), &err,
                "declare subscription");
    char *body = malloc(len);
    char(*ids)[TXM_UUID_LEN + 1] = calloc((size_t)count, sizeof *ids);
    if (body == NULL || ids == NULL)
        bench_fail("bench: out of memory");
    memset(body, 'x', len);
    for (long long i = 0; i < count; i++)
        bench_check(txm_uuid_v7(ids[i], &err), &err, "uuid");

    double seconds = publish_all(t, topic, body, len, ids, count, batch);
    int64_t depth = 0;
    bench_check(txm_transport_queue_depth(t, queue, &depth, &err), &err, "queue depth");
    txm_transport_close(t);
    if (depth < count)
        bench_fail("bench: queue %s holds %lld of %lld", queue, (long long)depth, count);
    printf("rate=%.0f seconds=%.3f\n", (double)count / seconds, seconds);
    free(ids);
    free(body);
    return 0;
}
