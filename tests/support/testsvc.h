/* Test support: the example's processes (customers-service, orders-service
 * and a txmsg-relay per service database) run as real child processes with
 * their environment, so that suites can start, kill and restart them. */
#ifndef TXM_TESTSVC_H
#define TXM_TESTSVC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* One process of the example. Caller-allocated; txm_testsvc_init fills it. */
typedef struct txm_testsvc {
    char name[32];        /* "customers", "orders-relay", ... */
    const char *bin;      /* borrowed: the program */
    int port;             /* HTTP port of a service; 0 for a relay */
    char health[48];      /* "/customers/health"; "" for a relay */
    pid_t pid;            /* 0 when not running */
    int starts;           /* how often it was started */
    char log[640];        /* stdout and stderr, appended across restarts */
    char env_db[1100];    /* TXMSG_DATABASE_URL=... */
    char env_broker[600]; /* TXMSG_BROKER_URL=... */
    char env_port[32];    /* PORT=... (services) */
    char env_bind[64];    /* TXMSG_BIND_ADDRESS=... (services) */
    char *env[5];
} txm_testsvc;

/* Fills s for program bin on db_url and broker_url, logging to
 * <dir>/<name>.log. service (not NULL) makes it a service answering on
 * port with GET /<service>/health; NULL makes it a relay. Borrows bin. */
void txm_testsvc_init(txm_testsvc *s, const char *name, const char *bin, const char *db_url,
                      const char *broker_url, const char *service, int port, const char *dir);

/* Starts the process. Returns false (pid 0) when it cannot be started. */
bool txm_testsvc_start(txm_testsvc *s);

/* True, with its wait status, when the process has ended (it is reaped and
 * pid set to 0); false while it runs or when it is not running. */
bool txm_testsvc_ended(txm_testsvc *s, int *status);

/* Sends sig and waits for the end. Returns the wait status, -1 when the
 * process was not running. */
int txm_testsvc_kill(txm_testsvc *s, int sig);

/* Waits for the end, SIGKILL after timeout_ms (for a process sent SIGTERM
 * already: a second one may come after it restored the default action).
 * Returns the wait status, -1 when it was not running or had to be killed. */
int txm_testsvc_wait(txm_testsvc *s, int timeout_ms);

/* SIGTERM, then SIGKILL after timeout_ms. Returns the wait status, -1 when
 * it was not running or had to be killed. */
int txm_testsvc_stop(txm_testsvc *s, int timeout_ms);

/* One GET of the health path: true when it answers 200 {"status":"ok"}.
 * A relay (no port) is healthy while it runs. */
bool txm_testsvc_healthy(const txm_testsvc *s, int timeout_ms);

/* Writes a short description of a wait status ("exit 1", "signal 9"). */
void txm_testsvc_describe(int status, char *out, size_t cap);

/* Copies the last non-empty line of the process's log (its last words,
 * such as the error it ended on) into out; "" when there is none. */
void txm_testsvc_last_line(const txm_testsvc *s, char *out, size_t cap);

#endif
