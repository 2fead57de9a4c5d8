/* bench_relay_clock: times txmsg-relay draining a pre-filled outbox. It
 * subscribes QUEUE to TOPIC first (so the broker keeps what arrives), starts
 * the relay, and polls its /metrics every POLL_MS until
 * txmsg_relay_published_total reaches COUNT; then it stops the relay and
 * checks that the queue holds COUNT messages.
 *   bench_relay_clock RELAY DATABASE_URL BROKER_URL TOPIC QUEUE COUNT LOG [RELAY_ARG...]
 * Prints "rate=MSG_PER_S seconds=S depth=N busy_pct=P relay_cpu_us=U
 * relay_hwm_kb=K": busy_pct is how busy all cores were (from /proc/stat)
 * while the relay ran, relay_cpu_us the relay's own CPU time (user +
 * system) per message, relay_hwm_kb its peak resident memory (VmHWM). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "bench.h"

#define POLL_MS 10
#define RUN_TIMEOUT_S 300

/* Jiffies of all cores from /proc/stat: *busy (not idle or iowait) and *total. */
static void cpu_jiffies(long long *busy, long long *total)
{
    long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL || fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
        memset(v, 0, sizeof v);
    if (f != NULL)
        fclose(f);
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    *busy = *total - v[3] - v[4];
}

/* User plus system seconds of the waited-for children (the relay). */
static double children_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Polls until the relay reports count published; returns the seconds since
 * start_ns. Fails if the relay exits or the time runs out. */
static double wait_published(pid_t pid, int port, long long count, int64_t start_ns)
{
    for (;;) {
        double published = 0;
        if (bench_metric(port, "txmsg_relay_published_total", &published) == 0 &&
            published >= (double)count)
            return (double)(bench_mono_ns() - start_ns) / 1e9;
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid)
            bench_fail("bench: the relay exited (status %d) after %.0f messages", status,
                       published);
        if (bench_mono_ns() - start_ns > (int64_t)RUN_TIMEOUT_S * 1000000000)
            bench_fail("bench: only %.0f of %lld published in %d s", published, count,
                       RUN_TIMEOUT_S);
        bench_sleep_ms(POLL_MS);
    }
}

int main(int argc, char **argv)
{
    if (argc < 8)
        bench_fail("usage: bench_relay_clock RELAY DATABASE_URL BROKER_URL TOPIC QUEUE COUNT LOG "
                   "[RELAY_ARG...]");
    const char *broker = argv[3], *topic = argv[4], *queue = argv[5];
    long long count = bench_arg_int(argv[6], 1, 100000000, "COUNT");

    txm_error err;
    txm_transport *t = NULL;
    bench_check(txm_transport_open(broker, NULL, &t, &err), &err, "open transport");
    bench_check(txm_transport_declare_subscription(t, topic, queue, NULL, &err), &err,
                "declare subscription");

    int port = bench_free_port();
    long long busy0, total0, busy1, total1;
    cpu_jiffies(&busy0, &total0);
    int64_t start = bench_mono_ns();
    pid_t pid = bench_relay_start(argv[1], argv[2], broker, port, argv + 8, argv[7]);
    double seconds = wait_published(pid, port, count, start);
    cpu_jiffies(&busy1, &total1);
    long hwm_kb = bench_proc_kb(pid, "VmHWM");
    bench_relay_stop(pid);
    /* Includes the relay's shutdown, which is short next to the run. */
    double relay_cpu_s = children_cpu_s();
    double busy_pct =
        total1 > total0 ? 100.0 * (double)(busy1 - busy0) / (double)(total1 - total0) : 0;

    int64_t depth = 0;
    bench_check(txm_transport_queue_depth(t, queue, &depth, &err), &err, "queue depth");
    txm_transport_close(t);
    bench_drop_queue(broker, queue);
    if (depth < count)
        bench_fail("bench: the relay reported %lld published but queue %s holds %lld", count, queue,
                   (long long)depth);
    printf("rate=%.0f seconds=%.3f depth=%lld busy_pct=%.0f relay_cpu_us=%.1f relay_hwm_kb=%ld\n",
           (double)count / seconds, seconds, (long long)depth, busy_pct,
           relay_cpu_s * 1e6 / (double)count, hwm_kb);
    return 0;
}
