/* bench_consume: the consumer runtime draining a queue: inbox, a handler
 * that inserts one row, commit and ack, as a service runs it. COUNT
 * CloudEvents messages of about LEN bytes (default 250) with 1,000
 * aggregate ids are published to TOPIC first, with QUEUE subscribed; the
 * clock runs from txm_consumer_start until every message was processed.
 *   bench_consume DB_URL BROKER_URL TOPIC QUEUE COUNT CONCURRENCY BATCH [LEN]
 * Prints "db=D url=U count=N concurrency=C batch=B seconds=S msg_per_s=R". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PUBLISH_BATCH 500

static const char SQL_TABLE[] =
    "CREATE TABLE IF NOT EXISTS bench_effects (message_id text PRIMARY KEY, seq bigint NOT NULL)";
static const char SQL_INSERT[] = "INSERT INTO bench_effects (message_id, seq) VALUES ($1, $2)";

static txm_status insert_one(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)ctx;
    const char *p = strstr(txm_msg_payload(msg), "\"seq\":");
    long long seq = p != NULL ? strtoll(p + 6, NULL, 10) : -1;
    txm_value v[2] = {TXM_TEXT(txm_msg_id(msg)), TXM_INT(seq)};
    return txm_uow_exec(uow, SQL_INSERT, v, 2, NULL, NULL, err);
}

static void publish_all(txm_transport *t, const char *topic, long long count, size_t pad)
{
    txm_msg *batch[PUBLISH_BATCH];
    txm_error err;
    for (long long done = 0; done < count; done += PUBLISH_BATCH) {
        long long n = count - done < PUBLISH_BATCH ? count - done : PUBLISH_BATCH;
        for (long long i = 0; i < n; i++)
            bench_check(bench_msg_new(topic, done + i, txm_now_us(), pad, &batch[i], &err), &err,
                        "message");
        bench_check(
            txm_transport_publish_msgs(t, (const txm_msg *const *)batch, (size_t)n, NULL, &err),
            &err, "publish");
        for (long long i = 0; i < n; i++)
            txm_msg_free(batch[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc != 8 && argc != 9)
        bench_fail("usage: bench_consume DB_URL BROKER_URL TOPIC QUEUE COUNT CONCURRENCY BATCH "
                   "[LEN]");
    const char *db_url = argv[1], *url = argv[2], *topic = argv[3], *queue = argv[4];
    long long count = bench_arg_int(argv[5], 1, 10000000, "COUNT");
    int concurrency = (int)bench_arg_int(argv[6], 1, 64, "CONCURRENCY");
    size_t batch = (size_t)bench_arg_int(argv[7], 1, 1000, "BATCH");
    size_t len = argc == 9 ? (size_t)bench_arg_int(argv[8], 1, 1 << 16, "LEN") : 250;

    txm_error err;
    txm_db *db = NULL;
    txm_transport *t = NULL;
    txm_consumer *c = NULL;
    txm_db_options dbo;
    txm_db_options_init(&dbo);
    dbo.pool_size = concurrency + 2;
    bench_check(txm_db_open(db_url, &dbo, &db, &err), &err, "open database");
    bench_check(txm_db_exec(db, SQL_TABLE, NULL, 0, NULL, NULL, &err), &err, "create table");
    txm_transport_options to;
    txm_transport_options_init(&to);
    to.deliver_exhausted = true; /* as txm_app opens it */
    bench_check(txm_transport_open(url, &to, &t, &err), &err, "open transport");
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.concurrency = concurrency;
    ho.batch_size = batch;
    ho.wait_ms = 100;
    bench_check(txm_consumer_open(db, t, NULL, &c, &err), &err, "open consumer");
    bench_check(txm_consumer_subscribe(c, topic, queue, insert_one, NULL, &ho, &err), &err,
                "subscribe");
    publish_all(t, topic, count, bench_pad_for(topic, len));

    int64_t start = bench_mono_ns();
    bench_check(txm_consumer_start(c, &err), &err, "start");
    txm_consumer_stats s;
    do {
        bench_sleep_ms(1);
        bench_check(txm_consumer_stats_get(c, queue, &s, &err), &err, "stats");
    } while ((long long)s.processed < count);
    double seconds = (double)(bench_mono_ns() - start) / 1e9;
    txm_consumer_close(c);
    if (s.failures > 0 || s.dead_lettered > 0)
        fprintf(stderr, "bench: %llu failures, %llu dead-lettered\n",
                (unsigned long long)s.failures, (unsigned long long)s.dead_lettered);
    txm_transport_close(t);
    bench_drop_queue(url, queue);
    txm_db_close(db);
    printf("db=%.*s url=%.*s count=%lld concurrency=%d batch=%zu seconds=%.3f msg_per_s=%.0f "
           "mean_batch=%.1f\n",
           (int)strcspn(db_url, ":"), db_url, (int)strcspn(url, ":"), url, count, concurrency,
           batch, seconds, (double)count / seconds,
           s.batches > 0 ? (double)s.batch_sum / (double)s.batches : 0.0);
    return 0;
}
