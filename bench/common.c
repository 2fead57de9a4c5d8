/* Helpers shared by the benchmark programs (see bench.h): clocks, padded
 * payloads, the relay as a child process and a tiny HTTP client for its
 * /metrics page. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#define METRICS_PAGE_MAX (256 * 1024) /* bytes of /metrics read at most */
#define PAD_MAX 65536                 /* bytes of payload padding at most */
#define STOP_WAIT_MS 10000            /* SIGTERM to SIGKILL */

void bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void bench_check(txm_status st, const txm_error *err, const char *what)
{
    if (st != TXM_OK)
        bench_fail("bench: %s: %s: %s", what, txm_status_name(st), err != NULL ? err->text : "");
}

long long bench_arg_int(const char *text, long long lo, long long hi, const char *name)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < lo || v > hi)
        bench_fail("bench: %s wants %lld..%lld, got \"%s\"", name, lo, hi, text);
    return v;
}

int64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

txm_status bench_msg_new(const char *topic, int64_t seq, int64_t t_us, size_t pad_len,
                         txm_msg **out, txm_error *err)
{
    *out = NULL;
    if (pad_len > PAD_MAX)
        return txm_errf(err, TXM_INVALID, "bench: padding of %zu bytes", pad_len);
    char payload[PAD_MAX + 128];
    int n = snprintf(payload, sizeof payload, "{\"seq\":%lld,\"t_us\":%lld,\"pad\":\"",
                     (long long)seq, (long long)t_us);
    memset(payload + n, 'x', pad_len);
    memcpy(payload + n + pad_len, "\"}", 3);
    char aggregate[32];
    snprintf(aggregate, sizeof aggregate, "agg-%lld", (long long)(seq % 1000));
    return txm_msg_new(topic, aggregate, NULL, payload, out, err);
}

size_t bench_pad_for(const char *topic, size_t envelope_len)
{
    txm_msg *m = NULL;
    txm_error err;
    /* A typical sequence number and a current time: their digits count. */
    bench_check(bench_msg_new(topic, 50000, txm_now_us(), 0, &m, &err), &err, "message");
    size_t len = 0;
    char *text = NULL;
    bench_check(txm_msg_encode(m, &text, &len, &err), &err, "encode");
    txm_free(text);
    txm_msg_free(m);
    return len >= envelope_len ? 0 : envelope_len - len;
}

int bench_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        bench_fail("bench: no free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* In the child: output to log_path, then the relay. Never returns. */
static void exec_relay(const char *relay_path, char *const *argv, const char *log_path)
{
    /* A bench program that fails exits at once: take its relay along. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execv(relay_path, argv);
    _exit(127);
}

pid_t bench_relay_start(const char *relay_path, const char *db_url, const char *broker_url,
                        int port, char *const *extra, const char *log_path)
{
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[32] = {(char *)relay_path, "--database-url", (char *)db_url, "--broker-url",
                      (char *)broker_url, "--metrics-port", port_text};
    size_t n = 7;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        bench_fail("bench: fork: %s", strerror(errno));
    if (pid == 0)
        exec_relay(relay_path, argv, log_path);
    return pid;
}

long bench_proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    size_t n = strlen(field);
    while (f != NULL && kb < 0 && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kb;
}

double bench_load1(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double load = -1;
    if (f == NULL || fscanf(f, "%lf", &load) != 1)
        load = -1;
    if (f != NULL)
        fclose(f);
    return load;
}

int bench_relay_stop(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int waited = 0; waited < STOP_WAIT_MS; waited += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        bench_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

/* GET path from 127.0.0.1:port into buf (NUL-terminated). Returns the bytes
 * read, or -1. */
static ssize_t http_get(int port, const char *path, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[256];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ssize_t total = write(fd, req, (size_t)len) == len ? 0 : -1;
    while (total >= 0 && (size_t)total < cap - 1) {
        ssize_t r = read(fd, buf + total, cap - 1 - (size_t)total);
        if (r <= 0)
            break;
        total += r;
    }
    close(fd);
    if (total >= 0)
        buf[total] = '\0';
    return total;
}

int bench_metric(int port, const char *name, double *value)
{
    char *page = malloc(METRICS_PAGE_MAX);
    int rc = -1;
    char path[256];
    snprintf(path, sizeof path, "/metrics?name=%s", name); /* only that family's callbacks run */
    if (page == NULL || http_get(port, path, page, METRICS_PAGE_MAX) <= 0) {
        free(page);
        return rc;
    }
    size_t n = strlen(name);
    for (const char *line = page; rc != 0 && line != NULL && *line != '\0';) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ') {
            *value = strtod(line + n + 1, NULL);
            rc = 0;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    free(page);
    return rc;
}

void bench_drop_queue(const char *broker_url, const char *queue)
{
    if (strncmp(broker_url, "nats://", 7) != 0)
        return;
    /* The transport names a queue's durable consumer after the queue, with
     * '.' (a subject token separator) turned into '_'. */
    char durable[TXM_TOPIC_MAX + 1];
    snprintf(durable, sizeof durable, "%s", queue);
    for (char *p = durable; *p != '\0'; p++)
        if (*p == '.')
            *p = '_';
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    natsStatus s = natsConnection_ConnectTo(&nc, broker_url);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK)
        s = js_DeleteConsumer(js, "TXMSG", durable, NULL, &jerr);
    if (s != NATS_OK)
        fprintf(stderr, "bench: deleting consumer %s: %s (%d)\n", durable, natsStatus_GetText(s),
                (int)jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
