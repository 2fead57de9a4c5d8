/* Brokers for tests: names, temporary folders, a private nats-server and
 * the nodes of scripts/with-servers' cluster. */
#include "testbroker.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const txm_test_transport txm_transport_embedded_kind = TXM_TEST_EMBEDDED;
const txm_test_transport txm_transport_nats_kind = TXM_TEST_NATS;
const txm_test_transport txm_transport_nats_cluster_kind = TXM_TEST_NATS_CLUSTER;

static atomic_int name_counter;

bool txm_testbroker_available(txm_test_transport k)
{
    if (k == TXM_TEST_EMBEDDED)
        return true;
    const char *u =
        getenv(k == TXM_TEST_NATS_CLUSTER ? "TXMSG_TEST_NATS_CLUSTER_URL" : "TXMSG_TEST_NATS_URL");
    return u != NULL && u[0] != '\0';
}

const char *txm_testbroker_name(txm_test_transport k)
{
    return k == TXM_TEST_NATS_CLUSTER ? "nats-cluster" : k == TXM_TEST_NATS ? "nats" : "embedded";
}

bool txm_testcluster_url(char *out, size_t len)
{
    const char *u = getenv("TXMSG_TEST_NATS_CLUSTER_URL");
    if (u == NULL || u[0] == '\0')
        return false;
    int n = snprintf(out, len, "%s?replicas=3", u);
    return n > 0 && (size_t)n < len;
}

void txm_test_unique(const char *prefix, char *out, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, len, "%s-%d-%d-%lx", prefix, (int)getpid(), atomic_fetch_add(&name_counter, 1),
             (unsigned long)(ts.tv_nsec & 0xfffff));
}

char *txm_test_mkdtemp(void)
{
    char tmpl[] = "/tmp/txmtest-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        return NULL;
    return strdup(tmpl);
}

void txm_test_rmdir(const char *dir)
{
    if (dir == NULL)
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            txm_test_rmdir(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Ports below the kernel's range for outgoing connections (32768 and up
 * here): a port the kernel handed out for bind(0) may be taken by an
 * outgoing connection before the server that was given it binds it. */
enum { FREE_PORT_LOW = 10000, FREE_PORT_HIGH = 32000 };

static bool port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int txm_test_free_port(void)
{
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int i = 0; i < 500; i++) {
        int port = FREE_PORT_LOW + (int)(rand_r(&seed) % (FREE_PORT_HIGH - FREE_PORT_LOW));
        if (port_bindable(port))
            return port;
    }
    return -1;
}

static bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

pid_t txm_testnats_start(const char *store, int port)
{
    return txm_testnats_start_ext(store, port, 0, NULL);
}

pid_t txm_testnats_start_ext(const char *store, int port, int monitor_port, const char *log_path)
{
    char portbuf[16], monbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(monbuf, sizeof monbuf, "%d", monitor_port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        const char *out = log_path != NULL ? log_path : "/dev/null";
        FILE *f = freopen(out, "a", stdout);
        (void)f;
        f = freopen(out, "a", stderr);
        (void)f;
        if (monitor_port > 0)
            execlp("nats-server", "nats-server", "-js", "-sd", store, "-a", "127.0.0.1", "-p",
                   portbuf, "-m", monbuf, (char *)NULL);
        else
            execlp("nats-server", "nats-server", "-js", "-sd", store, "-a", "127.0.0.1", "-p",
                   portbuf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (port_accepts(port))
            return pid;
        txm_test_sleep_ms(10);
    }
    txm_testnats_stop(pid);
    return -1;
}

void txm_testnats_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}

/* ---- the cluster's nodes ---- */

enum { ARGS_MAX = 32, ARG_LEN = 512 };

/* Writes DIR/node<n>.<suffix> into out; false without the cluster. */
static bool node_path(int node, const char *suffix, char *out, size_t len)
{
    const char *dir = getenv("TXMSG_TEST_NATS_CLUSTER_DIR");
    if (dir == NULL || dir[0] == '\0' || node < 1 || node > TXM_TESTCLUSTER_NODES)
        return false;
    int n = snprintf(out, len, "%s/node%d.%s", dir, node, suffix);
    return n > 0 && (size_t)n < len;
}

static pid_t node_pid(int node)
{
    char path[1024];
    if (!node_path(node, "pid", path, sizeof path))
        return -1;
    FILE *f = fopen(path, "r");
    long pid = -1;
    if (f != NULL && fscanf(f, "%ld", &pid) != 1)
        pid = -1;
    if (f != NULL)
        fclose(f);
    return pid > 0 ? (pid_t)pid : -1;
}

/* Gone: reaped here, no such process, or a zombie its parent (with-servers'
 * shell, for a node it started) has not reaped yet. */
static bool is_gone(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid || kill(pid, 0) != 0)
        return true;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren == NULL || (close_paren[1] == ' ' && close_paren[2] == 'Z');
}

bool txm_testcluster_is_running(int node)
{
    pid_t pid = node_pid(node);
    return pid > 0 && !is_gone(pid);
}

bool txm_testcluster_stop(int node, int sig)
{
    pid_t pid = node_pid(node);
    if (pid <= 0 || is_gone(pid) || kill(pid, sig) != 0)
        return false;
    for (int i = 0; i < 1000; i++) {
        if (is_gone(pid))
            return true;
        txm_test_sleep_ms(10);
    }
    return false;
}

/* Reads node n's command line, one argument a line, into argv (NULL
 * terminated, in buf). Returns the count, or -1. */
static int node_args(int node, char buf[ARGS_MAX][ARG_LEN], char *argv[ARGS_MAX + 2])
{
    char path[1024];
    if (!node_path(node, "args", path, sizeof path))
        return -1;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int n = 0;
    argv[0] = "nats-server";
    while (n < ARGS_MAX && fgets(buf[n], ARG_LEN, f) != NULL) {
        buf[n][strcspn(buf[n], "\n")] = '\0';
        argv[1 + n] = buf[n];
        n++;
    }
    fclose(f);
    argv[1 + n] = NULL;
    return n;
}

/* The client port: the argument after -p. */
static int args_port(char *const argv[])
{
    for (int i = 1; argv[i] != NULL && argv[i + 1] != NULL; i++)
        if (strcmp(argv[i], "-p") == 0)
            return (int)strtol(argv[i + 1], NULL, 10);
    return -1;
}

pid_t txm_testcluster_start(int node)
{
    char buf[ARGS_MAX][ARG_LEN]; /* 16 KiB */
    char *argv[ARGS_MAX + 2];
    char log_path[1024], pid_path[1024];
    if (node_args(node, buf, argv) <= 0 || !node_path(node, "log", log_path, sizeof log_path) ||
        !node_path(node, "pid", pid_path, sizeof pid_path))
        return -1;
    int port = args_port(argv);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *f = freopen(log_path, "a", stdout);
        (void)f;
        f = freopen(log_path, "a", stderr);
        (void)f;
        execvp("nats-server", argv);
        _exit(127);
    }
    FILE *f = fopen(pid_path, "w");
    if (f != NULL) {
        fprintf(f, "%d\n", (int)pid);
        fclose(f);
    }
    for (int i = 0; i < 500; i++) {
        if (port_accepts(port))
            return pid;
        txm_test_sleep_ms(10);
    }
    return -1; /* left to with-servers' cleanup, which has its pid */
}

int txm_testcluster_node_of(const char *server_name)
{
    if (server_name == NULL || strncmp(server_name, "node", 4) != 0)
        return 0;
    int n = (int)strtol(server_name + 4, NULL, 10);
    return n >= 1 && n <= TXM_TESTCLUSTER_NODES ? n : 0;
}

long long txm_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void txm_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int txm_test_file_count(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL)
        n += strstr(line, text) != NULL;
    fclose(f);
    return n;
}

bool txm_test_file_wait(const char *path, const char *text, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    bool found = txm_test_file_count(path, text) > 0;
    while (!found && txm_test_now_ms() < end) {
        txm_test_sleep_ms(20);
        found = txm_test_file_count(path, text) > 0;
    }
    return found;
}
