/* Brokers for tests: names, temporary folders and a private nats-server. */
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

static atomic_int name_counter;

bool txm_testbroker_available(txm_test_transport k)
{
    if (k == TXM_TEST_EMBEDDED)
        return true;
    const char *u = getenv("TXMSG_TEST_NATS_URL");
    return u != NULL && u[0] != '\0';
}

const char *txm_testbroker_name(txm_test_transport k)
{
    return k == TXM_TEST_NATS ? "nats" : "embedded";
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

int txm_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
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
