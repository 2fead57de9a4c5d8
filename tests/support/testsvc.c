/* The example's processes for end-to-end and chaos suites. */
#include "testsvc.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "testbroker.h"
#include "testhttp.h"
#include "testproc.h"

void txm_testsvc_init(txm_testsvc *s, const char *name, const char *bin, const char *db_url,
                      const char *broker_url, const char *service, int port, const char *dir)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->bin = bin;
    snprintf(s->log, sizeof s->log, "%s/%s.log", dir, name);
    snprintf(s->env_db, sizeof s->env_db, "TXMSG_DATABASE_URL=%s", db_url);
    snprintf(s->env_broker, sizeof s->env_broker, "TXMSG_BROKER_URL=%s", broker_url);
    size_t n = 0;
    s->env[n++] = s->env_db;
    s->env[n++] = s->env_broker;
    if (service != NULL) {
        s->port = port;
        snprintf(s->health, sizeof s->health, "/%s/health", service);
        snprintf(s->env_port, sizeof s->env_port, "PORT=%d", port);
        snprintf(s->env_bind, sizeof s->env_bind, "TXMSG_BIND_ADDRESS=127.0.0.1");
        s->env[n++] = s->env_port;
        s->env[n++] = s->env_bind;
    }
    s->env[n] = NULL;
}

bool txm_testsvc_start(txm_testsvc *s)
{
    char *argv[] = {(char *)s->bin, NULL};
    s->pid = txm_proc_start(s->bin, argv, s->env, s->log);
    if (s->pid <= 0) {
        s->pid = 0;
        return false;
    }
    s->starts++;
    return true;
}

bool txm_testsvc_ended(txm_testsvc *s, int *status)
{
    int st = 0;
    if (s->pid <= 0 || waitpid(s->pid, &st, WNOHANG) != s->pid)
        return false;
    s->pid = 0;
    if (status != NULL)
        *status = st;
    return true;
}

int txm_testsvc_kill(txm_testsvc *s, int sig)
{
    if (s->pid <= 0)
        return -1;
    int status = txm_proc_kill(s->pid, sig);
    s->pid = 0;
    return status;
}

int txm_testsvc_wait(txm_testsvc *s, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    long long end = txm_test_now_ms() + timeout_ms;
    int status = 0;
    while (waitpid(s->pid, &status, WNOHANG) == 0) {
        if (txm_test_now_ms() >= end) {
            txm_proc_kill(s->pid, SIGKILL);
            s->pid = 0;
            return -1;
        }
        txm_test_sleep_ms(20);
    }
    s->pid = 0;
    return status;
}

int txm_testsvc_stop(txm_testsvc *s, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    return txm_testsvc_wait(s, timeout_ms);
}

bool txm_testsvc_healthy(const txm_testsvc *s, int timeout_ms)
{
    if (s->pid <= 0)
        return false;
    if (s->port == 0)
        return true;
    txm_testhttp_response r;
    bool ok = txm_testhttp_request("GET", "127.0.0.1", s->port, s->health, NULL, NULL, 0,
                                   timeout_ms, &r) == 0 &&
              r.status == 200;
    json_t *j = ok ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    const char *v = json_string_value(json_object_get(j, "status"));
    ok = v != NULL && strcmp(v, "ok") == 0;
    json_decref(j);
    txm_testhttp_response_fini(&r);
    return ok;
}

void txm_testsvc_describe(int status, char *out, size_t cap)
{
    if (status < 0)
        snprintf(out, cap, "not running");
    else if (WIFEXITED(status))
        snprintf(out, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "signal %d", WTERMSIG(status));
    else
        snprintf(out, cap, "wait status %#x", (unsigned)status);
}

void txm_testsvc_last_line(const txm_testsvc *s, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen(s->log, "r");
    if (f == NULL)
        return;
    char line[2048];
    while (fgets(line, sizeof line, f) != NULL) {
        size_t n = strcspn(line, "\n");
        line[n] = '\0';
        if (n > 0)
            snprintf(out, cap, "%s", line);
    }
    fclose(f);
}
