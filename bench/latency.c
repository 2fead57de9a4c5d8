/* bench_latency: commit-to-receive latency through txmsg-relay. A producer
 * commits one outbox message per transaction at a steady RATE per second
 * for SECONDS (clock_nanosleep to absolute times); each payload carries the
 * CLOCK_REALTIME time taken just before its insert and commit. A consumer
 * thread receives from QUEUE (subscribed to TOPIC) and records receive time
 * minus that time, so each figure includes the commit itself, the relay, the
 * broker, and the broker's delivery to the consumer.
 *   bench_latency RELAY DATABASE_URL BROKER_URL TOPIC QUEUE RATE SECONDS LOG
 * Prints "sent=N received=N p50_ms=X p99_ms=X max_ms=X slip_max_ms=X
 * relay_hwm_kb=K load1=L": the relay's peak resident memory (VmHWM) and
 * the 1-minute load average, both read as the producer finishes. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define RECEIVE_MAX 256
#define RECEIVE_WAIT_MS 100
#define DRAIN_S 10  /* how long the consumer waits after the last commit */
#define WARMUP_S 30 /* for the first message through a fresh relay */
#define BODY_MAX 4096

typedef struct run {
    txm_transport *t;
    const char *queue;
    long long count;
    int64_t *lat_us; /* per sequence number; -1 until received */
    long long received;
    atomic_llong deadline_ns; /* consumer gives up then; set by the producer */
} run;

/* Reads "seq" and "t_us" out of an envelope body; false if they are missing. */
static bool parse_body(const char *body, size_t len, long long *seq, long long *t_us)
{
    char text[BODY_MAX];
    if (len >= sizeof text)
        return false;
    memcpy(text, body, len);
    text[len] = '\0';
    const char *s = strstr(text, "\"seq\":");
    const char *t = strstr(text, "\"t_us\":");
    if (s == NULL || t == NULL)
        return false;
    *seq = strtoll(s + 6, NULL, 10);
    *t_us = strtoll(t + 7, NULL, 10);
    return true;
}

/* Receives once; records and acknowledges what came. Returns how many. */
static size_t receive_some(run *r, int wait_ms)
{
    txm_error err;
    txm_delivery **got = NULL;
    size_t n = 0;
    bench_check(txm_transport_receive(r->t, r->queue, RECEIVE_MAX, wait_ms, &got, &n, &err), &err,
                "receive");
    int64_t now_us = txm_now_us();
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *body = txm_delivery_body(got[i], &len);
        long long seq = -1, t_us = 0;
        if (parse_body(body, len, &seq, &t_us) && seq >= 0 && seq < r->count &&
            r->lat_us[seq] < 0) {
            r->lat_us[seq] = now_us - t_us;
            r->received++;
        }
    }
    /* One exchange for what came, as the consumer runtime acks a batch. */
    if (n > 0)
        bench_check(txm_transport_ack_batch(r->t, got, n, NULL, &err), &err, "ack");
    txm_delivery_list_free(got, n);
    return n;
}

static void *consume(void *arg)
{
    run *r = arg;
    while (r->received < r->count && bench_mono_ns() < atomic_load(&r->deadline_ns))
        receive_some(r, RECEIVE_WAIT_MS);
    return NULL;
}

/* Commits message seq in its own unit of work, stamped just before. */
static void commit_one(txm_db *db, const char *topic, long long seq, size_t pad)
{
    txm_error err;
    txm_uow *uow = NULL;
    txm_msg *m = NULL;
    bench_check(txm_uow_begin(db, &uow, &err), &err, "begin");
    bench_check(bench_msg_new(topic, seq, txm_now_us(), pad, &m, &err), &err, "message");
    bench_check(txm_outbox_publish(uow, &m, &err), &err, "outbox publish");
    bench_check(txm_uow_commit(&uow, &err), &err, "commit");
}

/* Commits count messages at rate per second; returns the worst lateness
 * of a wake-up against its schedule, in ms. */
static double produce(txm_db *db, const char *topic, long long count, long long rate, size_t pad)
{
    int64_t period_ns = 1000000000 / rate;
    int64_t start = bench_mono_ns() + 10000000;
    int64_t slip_max = 0;
    for (long long i = 0; i < count; i++) {
        int64_t due = start + i * period_ns;
        struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
        }
        int64_t slip = bench_mono_ns() - due;
        if (slip > slip_max)
            slip_max = slip;
        commit_one(db, topic, i, pad);
    }
    return (double)slip_max / 1e6;
}

/* One message through the fresh relay before the clock matters: it has
 * connected and declared the topic once this returns. */
static void warm_up(run *r, txm_db *db, const char *topic, size_t pad)
{
    commit_one(db, topic, -1, pad);
    int64_t until = bench_mono_ns() + (int64_t)WARMUP_S * 1000000000;
    while (receive_some(r, RECEIVE_WAIT_MS) == 0)
        if (bench_mono_ns() > until)
            bench_fail("bench: the warm-up message did not arrive in %d s", WARMUP_S);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Prints the percentiles of the received latencies. */
static void report(const run *r, double slip_ms, long hwm_kb, double load1)
{
    int64_t *v = malloc((size_t)r->count * sizeof *v);
    if (v == NULL)
        bench_fail("bench: out of memory");
    size_t n = 0;
    for (long long i = 0; i < r->count; i++)
        if (r->lat_us[i] >= 0)
            v[n++] = r->lat_us[i];
    qsort(v, n, sizeof *v, cmp_i64);
    double p50 = n > 0 ? (double)v[(n * 50 + 99) / 100 - 1] / 1e3 : -1;
    double p99 = n > 0 ? (double)v[(n * 99 + 99) / 100 - 1] / 1e3 : -1;
    double max = n > 0 ? (double)v[n - 1] / 1e3 : -1;
    printf("sent=%lld received=%zu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f slip_max_ms=%.2f "
           "relay_hwm_kb=%ld load1=%.2f\n",
           r->count, n, p50, p99, max, slip_ms, hwm_kb, load1);
    free(v);
}

int main(int argc, char **argv)
{
    if (argc != 9)
        bench_fail("usage: bench_latency RELAY DATABASE_URL BROKER_URL TOPIC QUEUE RATE SECONDS "
                   "LOG");
    const char *db_url = argv[2], *broker = argv[3], *topic = argv[4];
    long long rate = bench_arg_int(argv[6], 1, 100000, "RATE");
    long long seconds = bench_arg_int(argv[7], 1, 3600, "SECONDS");
    run r = {.queue = argv[5], .count = rate * seconds};
    atomic_init(&r.deadline_ns, INT64_MAX);
    r.lat_us = malloc((size_t)r.count * sizeof *r.lat_us);
    if (r.lat_us == NULL)
        bench_fail("bench: out of memory");
    for (long long i = 0; i < r.count; i++)
        r.lat_us[i] = -1;
    size_t pad = bench_pad_for(topic, 300);

    txm_error err;
    txm_db *db = NULL;
    bench_check(txm_db_open(db_url, NULL, &db, &err), &err, "open database");
    bench_check(txm_transport_open(broker, NULL, &r.t, &err), &err, "open transport");
    bench_check(txm_transport_declare_subscription(r.t, topic, r.queue, NULL, &err), &err,
                "declare subscription");
    pid_t pid = bench_relay_start(argv[1], db_url, broker, bench_free_port(), NULL, argv[8]);
    warm_up(&r, db, topic, pad);

    pthread_t consumer;
    if (pthread_create(&consumer, NULL, consume, &r) != 0)
        bench_fail("bench: cannot start the consumer thread");
    double slip_ms = produce(db, topic, r.count, rate, pad);
    atomic_store(&r.deadline_ns, bench_mono_ns() + (int64_t)DRAIN_S * 1000000000);
    pthread_join(consumer, NULL);
    long hwm_kb = bench_proc_kb(pid, "VmHWM");
    double load1 = bench_load1();
    bench_relay_stop(pid);
    report(&r, slip_ms, hwm_kb, load1);
    txm_transport_close(r.t);
    txm_db_close(db);
    bench_drop_queue(broker, r.queue);
    free(r.lat_us);
    return 0;
}
