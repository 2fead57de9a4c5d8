/* Hostile clients against a real service process (customers on SQLite and
 * the embedded broker): a thousand idle connections and a slow body while
 * others are served, idle connections dropped after the timeout, the
 * connection limit, headers and bodies over their limits. The clients are
 * raw sockets, since an HTTP library would not misbehave on purpose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testbroker.h"
#include "testhttp.h"
#include "testsvc.h"

#define IDLE_COUNT 1000      /* silent connections held against the service */
#define HEALTH_COUNT 200     /* /health requests timed while they are held */
#define P99_BOUND_MS 500     /* asserted; the target is 50 ms, see the report printed */
#define FD_NEEDED 1300       /* descriptors this test process needs */
#define SERVICE_SOFT_FDS 512 /* the soft limit the service starts with: too low */

typedef struct fixture {
    char *dir;
    txm_testsvc svc;
    char db_url[600];
    char broker_url[600];
} fixture;

/* ---- raw clients ---- */

/* Sockets open, so that a failed test (which leaves its function at once)
 * does not leave a thousand of them to the next one. */
static bool dialed[FD_NEEDED + 64];

/* A connection to port, or -1. Close-on-exec: services started later must
 * not inherit it. */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= (int)(sizeof dialed / sizeof dialed[0]) ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    dialed[fd] = true;
    return fd;
}

static void hang_up(int fd)
{
    if (fd < 0)
        return;
    dialed[fd] = false;
    close(fd);
}

/* Sends everything, or returns the errno of the failed send (EPIPE,
 * ECONNRESET: the server closed with our data unread). */
static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return errno != 0 ? errno : EIO;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One answer read off a connection. */
typedef struct answer {
    int status;      /* of the first status line; 0 when none arrived */
    char text[8192]; /* head and body as received, NUL-terminated (truncated) */
    const char *body;
    int err; /* errno of a failed recv (ECONNRESET), 0 otherwise */
} answer;

/* Reads one answer: the head, then Content-Length bytes of body, within
 * timeout_ms. Stops early at the end of the connection or an error. */
static void read_answer(int fd, answer *a, int timeout_ms)
{
    memset(a, 0, sizeof *a);
    size_t len = 0;
    long long end = txm_test_now_ms() + timeout_ms;
    for (;;) {
        char *sep = strstr(a->text, "\r\n\r\n");
        if (sep != NULL) {
            const char *cl = strcasestr(a->text, "\r\nContent-Length:");
            size_t want = cl != NULL && cl < sep ? strtoul(cl + 17, NULL, 10) : 0;
            if (len >= (size_t)(sep + 4 - a->text) + want)
                break;
        }
        int left = (int)(end - txm_test_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0 || len + 1 >= sizeof a->text)
            break;
        ssize_t n = recv(fd, a->text + len, sizeof a->text - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            a->err = n < 0 ? errno : 0;
            break;
        }
        len += (size_t)n;
        a->text[len] = '\0';
    }
    sscanf(a->text, "HTTP/1.1 %d", &a->status);
    char *sep = strstr(a->text, "\r\n\r\n");
    a->body = sep != NULL ? sep + 4 : "";
}

/* True when the server closed fd (EOF or reset) within timeout_ms. */
static bool closed_by_server(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void assert_error_answer(const answer *a, int status, const char *code)
{
    if (a->status != status)
        fail_msg("expected %d %s, got %d (errno %d): %.300s", status, code, a->status, a->err,
                 a->text);
    json_t *j = json_loads(a->body, 0, NULL);
    if (j == NULL)
        fail_msg("%d answer without a JSON body: %.300s", status, a->text);
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    json_decref(j);
}

/* ---- the service ---- */

/* The number after field (e.g. "Threads:") in /proc/<pid>/status, or -1. */
static long status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long n = -1;
    size_t len = strlen(field);
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, len) == 0) {
            n = strtol(line + len, NULL, 10);
            break;
        }
    if (f != NULL)
        fclose(f);
    return n;
}

/* Threads of process pid (each idle connection holds one), or -1. */
static int thread_count(pid_t pid)
{
    return (int)status_field(pid, "Threads:");
}

/* Threads of pid without connections: the fewest seen over 300 ms, as the
 * thread of the last health check may still be ending. */
static int base_threads(pid_t pid)
{
    int least = thread_count(pid);
    for (int i = 0; i < 6; i++) {
        txm_test_sleep_ms(50);
        int n = thread_count(pid);
        least = n < least ? n : least;
    }
    return least;
}

static bool wait_threads(pid_t pid, int at_least, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    while (thread_count(pid) < at_least && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    return thread_count(pid) >= at_least;
}

/* Starts customers with the HTTP settings given as NAME=value pairs (NULL
 * terminated), without waiting for it. Its soft limit of open files starts
 * at SERVICE_SOFT_FDS, so the tests that hold a thousand connections also
 * show that the service raises it. */
static void spawn_service(fixture *fx, const char *const *settings)
{
    txm_testsvc_init(&fx->svc, "customers", TXM_CUSTOMERS_BIN, fx->db_url, fx->broker_url,
                     "customers", txm_test_free_port(), fx->dir);
    for (size_t i = 0; settings != NULL && settings[i] != NULL; i++)
        putenv((char *)settings[i]);
    struct rlimit mine;
    getrlimit(RLIMIT_NOFILE, &mine);
    struct rlimit low = mine;
    low.rlim_cur = SERVICE_SOFT_FDS;
    setrlimit(RLIMIT_NOFILE, &low); /* inherited by the child at fork */
    bool started = txm_testsvc_start(&fx->svc);
    setrlimit(RLIMIT_NOFILE, &mine);
    for (size_t i = 0; settings != NULL && settings[i] != NULL; i++) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(settings[i], "="), settings[i]);
        unsetenv(name);
    }
    assert_true(started);
}

/* The same, and waits until it answers its health check. */
static void start_service(fixture *fx, const char *const *settings)
{
    spawn_service(fx, settings);
    long long end = txm_test_now_ms() + 20000;
    while (!txm_testsvc_healthy(&fx->svc, 2000) && txm_test_now_ms() < end)
        txm_test_sleep_ms(50);
    if (!txm_testsvc_healthy(&fx->svc, 2000))
        fail_msg("customers did not become healthy; see %s", fx->svc.log);
}

static void health_ok(const fixture *fx)
{
    txm_testhttp_response r;
    int rc = txm_testhttp_request("GET", "127.0.0.1", fx->svc.port, fx->svc.health, NULL, NULL, 0,
                                  5000, &r);
    if (rc != 0 || r.status != 200)
        fail_msg("health: %s status %d", r.error, r.status);
    txm_testhttp_response_fini(&r);
}

/* Skips the calling test when this process cannot open a thousand sockets
 * (a hard limit of open files below FD_NEEDED), raising its soft limit. */
static void need_many_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        skip();
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < FD_NEEDED) {
        rl.rlim_cur =
            rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FD_NEEDED ? rl.rlim_max : FD_NEEDED;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < FD_NEEDED) {
        print_message("hostile_test: skipped, the hard limit of open files is %llu, below %d\n",
                      (unsigned long long)rl.rlim_max, FD_NEEDED);
        skip();
    }
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->dir = txm_test_mkdtemp();
    snprintf(fx->db_url, sizeof fx->db_url, "sqlite:%s/customers.db", fx->dir);
    snprintf(fx->broker_url, sizeof fx->broker_url, "embedded:%s/broker.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    bool failed = false;
    for (int fd = 0; fd < (int)(sizeof dialed / sizeof dialed[0]); fd++)
        if (dialed[fd])
            hang_up(fd);
    if (fx->svc.pid > 0) {
        int st = txm_testsvc_stop(&fx->svc, 15000);
        char how[64];
        txm_testsvc_describe(st, how, sizeof how);
        /* A clean exit also says the sanitizers found nothing. */
        if (st != 0) {
            print_message("customers ended with %s; see %s\n", how, fx->svc.log);
            failed = true;
        }
    }
    if (!failed)
        txm_test_rmdir(fx->dir); /* else kept for its log */
    free(fx->dir);
    free(fx);
    return failed ? -1 : 0;
}

/* ---- a thousand idle connections and a slow body ---- */

/* A POST whose body arrives one byte a second until told to hurry. */
typedef struct slow_client {
    int port;
    atomic_bool hurry;
    int sent_slowly; /* bytes sent one a second */
    answer a;
} slow_client;

static void *slow_body(void *p)
{
    slow_client *c = p;
    static const char body[] = "{\"name\":\"Slow Body\",\"credit_limit\":100}";
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     strlen(body));
    int fd = dial(c->port);
    if (fd < 0 || send_all(fd, head, (size_t)n) != 0)
        return NULL;
    size_t i = 0;
    for (; i < strlen(body) && !atomic_load(&c->hurry); i++) {
        send_all(fd, body + i, 1);
        c->sent_slowly++;
        for (int t = 0; t < 10 && !atomic_load(&c->hurry); t++)
            txm_test_sleep_ms(100);
    }
    send_all(fd, body + i, strlen(body) - i);
    read_answer(fd, &c->a, 10000);
    hang_up(fd);
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void idle_and_slow_clients_do_not_stall_others(void **state)
{
    fixture *fx = *state;
    need_many_fds();
    start_service(fx, (const char *const[]){"TXMSG_HTTP_IDLE_TIMEOUT_S=120", NULL});
    int base = base_threads(fx->svc.pid);
    static int idle[IDLE_COUNT];
    for (int i = 0; i < IDLE_COUNT; i++) {
        idle[i] = dial(fx->svc.port);
        assert_true(idle[i] >= 0);
    }
    /* Each connection has its thread once accepted: all of them are held. */
    if (!wait_threads(fx->svc.pid, base + IDLE_COUNT, 30000))
        fail_msg("the service holds %d threads, not %d", thread_count(fx->svc.pid),
                 base + IDLE_COUNT);
    /* Static: a failed assertion below leaves while the thread runs on. */
    static slow_client slow;
    memset(&slow, 0, sizeof slow);
    slow.port = fx->svc.port;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_body, &slow), 0);
    txm_test_sleep_ms(200);

    static long long ms[HEALTH_COUNT];
    long long t_all = txm_test_now_ms();
    for (int i = 0; i < HEALTH_COUNT; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        health_ok(fx);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms[i] = (t1.tv_sec - t0.tv_sec) * 1000000LL + (t1.tv_nsec - t0.tv_nsec) / 1000;
    }
    t_all = txm_test_now_ms() - t_all;
    long rss_kib = status_field(fx->svc.pid, "VmRSS:"),
         virt_kib = status_field(fx->svc.pid, "VmSize:");
    qsort(ms, HEALTH_COUNT, sizeof ms[0], cmp_ll);
    long long p50 = ms[HEALTH_COUNT / 2], p99 = ms[HEALTH_COUNT * 99 / 100];
    print_message("hostile: /health with %d idle connections and a slow body: p50 %.2f ms, "
                  "p99 %.2f ms, max %.2f ms (%d requests in %lld ms); service RSS %ld MiB, "
                  "virtual %ld MiB, %d threads\n",
                  IDLE_COUNT, p50 / 1e3, p99 / 1e3, ms[HEALTH_COUNT - 1] / 1e3, HEALTH_COUNT, t_all,
                  rss_kib / 1024, virt_kib / 1024, thread_count(fx->svc.pid));
    /* The idle connections are all still there: none was dropped to make room. */
    int still = 0;
    for (int i = 0; i < IDLE_COUNT; i++)
        still += !closed_by_server(idle[i], 0);
    assert_int_equal(still, IDLE_COUNT);

    atomic_store(&slow.hurry, true);
    pthread_join(th, NULL);
    for (int i = 0; i < IDLE_COUNT; i++)
        hang_up(idle[i]);
    /* The slow client was served too, once its body was complete. */
    assert_true(slow.sent_slowly >= 1);
    if (slow.a.status != 200)
        fail_msg("slow body: %d %.300s", slow.a.status, slow.a.text);
    assert_true(p99 < P99_BOUND_MS * 1000LL);
}

/* ---- the idle timeout ---- */

static void idle_connections_are_closed_after_the_timeout(void **state)
{
    fixture *fx = *state;
    need_many_fds();
    start_service(fx, (const char *const[]){"TXMSG_HTTP_IDLE_TIMEOUT_S=2", NULL});
    static int fd[IDLE_COUNT];
    static long long opened[IDLE_COUNT];
    for (int i = 0; i < IDLE_COUNT; i++) {
        fd[i] = dial(fx->svc.port);
        assert_true(fd[i] >= 0);
        opened[i] = txm_test_now_ms();
    }
    static struct pollfd p[IDLE_COUNT];
    int open = IDLE_COUNT;
    long long earliest = 1LL << 40, latest = 0;
    long long end = txm_test_now_ms() + 15000;
    while (open > 0 && txm_test_now_ms() < end) {
        int n = 0;
        int idx[IDLE_COUNT];
        for (int i = 0; i < IDLE_COUNT; i++)
            if (fd[i] >= 0) {
                p[n] = (struct pollfd){.fd = fd[i], .events = POLLIN};
                idx[n++] = i;
            }
        if (poll(p, (nfds_t)n, 200) <= 0)
            continue;
        long long now = txm_test_now_ms();
        for (int k = 0; k < n; k++) {
            if (p[k].revents == 0)
                continue;
            int i = idx[k];
            /* The server closed it, in order (a FIN, not a reset), and
             * sent nothing before. */
            char c;
            assert_int_equal(recv(fd[i], &c, 1, MSG_DONTWAIT), 0);
            long long after = now - opened[i];
            earliest = after < earliest ? after : earliest;
            latest = after > latest ? after : latest;
            hang_up(fd[i]);
            fd[i] = -1;
            open--;
        }
    }
    for (int i = 0; i < IDLE_COUNT; i++)
        if (fd[i] >= 0)
            hang_up(fd[i]);
    print_message("hostile: %d idle connections, timeout 2 s: closed by the service %lld to "
                  "%lld ms after they opened; %d left open\n",
                  IDLE_COUNT, earliest, latest, open);
    assert_int_equal(open, 0);
    /* Not refused at once, and not kept far past the timeout. */
    assert_true(earliest >= 1500);
    assert_true(latest <= 2000 + 8000);
    health_ok(fx);
}

/* ---- the connection limit ---- */

#define LIMIT 40

static void connections_over_the_limit_do_not_harm_the_others(void **state)
{
    fixture *fx = *state;
    start_service(fx, (const char *const[]){"TXMSG_HTTP_CONNECTION_LIMIT=40", NULL});
    int base = base_threads(fx->svc.pid);
    /* A keep-alive client that asks before and after the limit is reached. */
    char get[128];
    int glen = snprintf(get, sizeof get, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", fx->svc.health);
    int keep = dial(fx->svc.port);
    answer a;
    assert_int_equal(send_all(keep, get, (size_t)glen), 0);
    read_answer(keep, &a, 5000);
    assert_int_equal(a.status, 200);
    int idle[LIMIT - 1];
    for (int i = 0; i < LIMIT - 1; i++)
        assert_true((idle[i] = dial(fx->svc.port)) >= 0);
    if (!wait_threads(fx->svc.pid, base + LIMIT, 10000))
        fail_msg("the service holds %d threads, not %d", thread_count(fx->svc.pid), base + LIMIT);
    txm_test_sleep_ms(200); /* the listening thread is done with the last accept */
    /* Over the limit: accepted by the kernel, then closed by the service. */
    int logged = txm_test_file_count(fx->svc.log, "connection limit");
    for (int i = 0; i < 5; i++) {
        int extra = dial(fx->svc.port);
        assert_true(extra >= 0);
        send_all(extra, get, (size_t)glen);
        assert_true(closed_by_server(extra, 5000));
        hang_up(extra);
    }
    /* One log line for the burst (MHD writes one per refusal), not five. */
    int lines = txm_test_file_count(fx->svc.log, "connection limit") - logged;
    assert_in_range(lines, 1, 2);
    assert_int_equal(send_all(keep, get, (size_t)glen), 0);
    read_answer(keep, &a, 5000);
    assert_int_equal(a.status, 200);
    hang_up(keep);
    for (int i = 0; i < LIMIT - 1; i++)
        hang_up(idle[i]);
    /* Below the limit again, new clients are served. */
    long long end = txm_test_now_ms() + 5000;
    txm_testhttp_response r;
    int rc;
    do {
        rc = txm_testhttp_request("GET", "127.0.0.1", fx->svc.port, fx->svc.health, NULL, NULL, 0,
                                  2000, &r);
        bool ok = rc == 0 && r.status == 200;
        txm_testhttp_response_fini(&r);
        if (ok)
            break;
        txm_test_sleep_ms(50);
    } while (txm_test_now_ms() < end);
    assert_int_equal(rc, 0);
}

/* ---- headers over the limit ---- */

/* Sends a GET with pad_len bytes of X-Pad headers (and body_len bytes of
 * body declared after them), then reads the answer. */
static void big_headers(const fixture *fx, size_t pad_len, size_t body_len, answer *a)
{
    size_t cap = pad_len + (pad_len / 1000 + 1) * 32 + body_len + 4096; /* 32: "X-Pad-N: \r\n" */
    char *req = malloc(cap);
    size_t n = (size_t)snprintf(req, cap, "POST /customers HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; pad_len > 0; i++) {
        size_t v = pad_len > 1000 ? 1000 : pad_len;
        n += (size_t)snprintf(req + n, cap - n, "X-Pad-%d: ", i);
        memset(req + n, 'p', v);
        n += v;
        n += (size_t)snprintf(req + n, cap - n, "\r\n");
        pad_len -= v;
    }
    n +=
        (size_t)snprintf(req + n, cap - n,
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body_len);
    memset(req + n, ' ', body_len);
    n += body_len;
    int fd = dial(fx->svc.port);
    assert_true(fd >= 0);
    int e = send_all(fd, req, n);
    read_answer(fd, a, 10000);
    if (e != 0)
        a->err = e; /* the answer may have come, but the client lost the rest of its send */
    hang_up(fd);
    free(req);
}

static void headers_over_the_limit_get_431(void **state)
{
    fixture *fx = *state;
    start_service(fx, NULL);
    answer a;
    big_headers(fx, 64 << 10, 0, &a);
    assert_error_answer(&a, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    /* With a body behind them, the answer still arrives whole. */
    big_headers(fx, 20 << 10, 1 << 20, &a);
    assert_error_answer(&a, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    /* Far over it, libmicrohttpd answers 431 itself (its own HTML body):
     * a client that sends them all still can, and reads that answer. */
    big_headers(fx, 16 << 20, 0, &a);
    if (a.status != 431 || a.err != 0)
        fail_msg("16 MiB of headers: %d (errno %d): %.200s", a.status, a.err, a.text);
    /* Under the limit (16 KiB), the request goes through. */
    big_headers(fx, 12 << 10, 2, &a);
    assert_error_answer(&a, 400, "VALIDATION_ERROR");
    health_ok(fx);
}

/* ---- bodies over the limit ---- */

static void body_over_the_limit_gets_413_never_100_continue(void **state)
{
    fixture *fx = *state;
    start_service(fx, NULL);
    const char *head = "POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 1048576\r\nExpect: 100-continue\r\n\r\n";
    int fd = dial(fx->svc.port);
    assert_int_equal(send_all(fd, head, strlen(head)), 0);
    answer a;
    read_answer(fd, &a, 5000);
    /* The first line the client sees is the 413: no "100 Continue". */
    assert_error_answer(&a, 413, "PAYLOAD_TOO_LARGE");
    /* And the connection ends with it. */
    assert_true(closed_by_server(fd, 5000));
    hang_up(fd);
    health_ok(fx);
}

/* Sends a declared body of len bytes whole, without waiting, then reads. */
static void send_whole_body(const fixture *fx, size_t len, answer *a)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     len);
    char *body = malloc(len);
    memset(body, ' ', len);
    int fd = dial(fx->svc.port);
    assert_true(fd >= 0);
    int e = send_all(fd, head, (size_t)n);
    if (e == 0)
        e = send_all(fd, body, len);
    read_answer(fd, a, 10000);
    if (e != 0)
        fail_msg("sending %zu bytes: %s; then read %d (errno %d)", len, strerror(e), a->status,
                 a->err);
    hang_up(fd);
    free(body);
}

static void body_sent_whole_anyway_still_gets_its_413(void **state)
{
    fixture *fx = *state;
    start_service(fx, NULL);
    answer a;
    send_whole_body(fx, 1 << 20, &a);
    assert_error_answer(&a, 413, "PAYLOAD_TOO_LARGE");
    send_whole_body(fx, 16 << 20, &a);
    assert_error_answer(&a, 413, "PAYLOAD_TOO_LARGE");
    health_ok(fx);
}

static void chunked_body_over_the_limit_gets_413(void **state)
{
    fixture *fx = *state;
    start_service(fx, NULL);
    const char *head = "POST /customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    int fd = dial(fx->svc.port);
    assert_int_equal(send_all(fd, head, strlen(head)), 0);
    char chunk[16384 + 16];
    int n = snprintf(chunk, sizeof chunk, "4000\r\n");
    memset(chunk + n, ' ', 16384);
    memcpy(chunk + n + 16384, "\r\n", 2);
    for (int i = 0; i < 8; i++) /* 128 KiB, twice the limit */
        assert_int_equal(send_all(fd, chunk, (size_t)n + 16384 + 2), 0);
    assert_int_equal(send_all(fd, "0\r\n\r\n", 5), 0);
    answer a;
    read_answer(fd, &a, 10000);
    assert_error_answer(&a, 413, "PAYLOAD_TOO_LARGE");
    hang_up(fd);
    health_ok(fx);
}

/* Nested arrays to jansson's depth limit run its parser 2,048 calls deep on
 * a connection thread: the thread's smaller stack must hold it. */
static void deeply_nested_body_is_refused_not_a_crash(void **state)
{
    fixture *fx = *state;
    start_service(fx, NULL);
    char body[4100];
    memset(body, '[', 4096);
    body[4096] = '\0';
    txm_testhttp_response r;
    int rc = txm_testhttp_request("POST", "127.0.0.1", fx->svc.port, "/customers",
                                  (const char *const[]){"Content-Type: application/json", NULL},
                                  body, 4096, 10000, &r);
    if (rc != 0)
        fail_msg("no answer: %s", r.error);
    assert_int_equal(r.status, 400);
    txm_testhttp_response_fini(&r);
    health_ok(fx);
}

/* A bad limit in the environment stops the start and is named. */
static void bad_http_setting_fails_the_start(void **state)
{
    fixture *fx = *state;
    spawn_service(fx, (const char *const[]){"TXMSG_HTTP_IDLE_TIMEOUT_S=0", NULL});
    int st = txm_testsvc_wait(&fx->svc, 20000);
    char how[64];
    txm_testsvc_describe(st, how, sizeof how);
    assert_string_equal(how, "exit 1");
    assert_int_equal(txm_test_file_count(fx->svc.log, "TXMSG_HTTP_IDLE_TIMEOUT_S"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(idle_and_slow_clients_do_not_stall_others, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_connections_are_closed_after_the_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(connections_over_the_limit_do_not_harm_the_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(headers_over_the_limit_get_431, setup, teardown),
        cmocka_unit_test_setup_teardown(body_over_the_limit_gets_413_never_100_continue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(body_sent_whole_anyway_still_gets_its_413, setup, teardown),
        cmocka_unit_test_setup_teardown(chunked_body_over_the_limit_gets_413, setup, teardown),
        cmocka_unit_test_setup_teardown(deeply_nested_body_is_refused_not_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_http_setting_fails_the_start, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
