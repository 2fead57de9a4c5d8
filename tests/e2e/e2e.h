/* The e2e suite's stack: databases, a broker, the example's processes (one
 * or two instances of each service and relay) and the queues that watch
 * the services' events, set up and torn down per cmocka group. */
#ifndef TXM_E2E_H
#define TXM_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "testsvc.h"
#include "txmsg/txmsg.h"

enum {
    START_MS = 60000,  /* a service answering its health check */
    ASYNC_MS = 30000,  /* an asynchronous outcome: relay, broker, consumer */
    BURST_MS = 120000, /* every order of the concurrent burst decided */
    HTTP_MS = 30000,   /* one HTTP exchange */
    STOP_MS = 20000,   /* a process exiting after SIGTERM */
    POLL_MS = 50,      /* between two looks at an asynchronous outcome */
    BURST_ORDERS = 50,
};

#define UUID_BUF (TXM_UUID_LEN + 1)

/* Each instance has one process of each role, at procs[role + P_ROLES * k]. */
enum { P_CUSTOMERS, P_ORDERS, P_CUSTOMERS_RELAY, P_ORDERS_RELAY, P_ROLES };
enum { MAX_INSTANCES = 2, P_MAX = P_ROLES * MAX_INSTANCES };

enum { W_CUSTOMER_CREATED, W_VALIDATION_FAILED, W_ORDER_CREATED, W_ORDER_CANCELLED, W_COUNT };
extern const char *const e2e_watched_topics[W_COUNT]; /* their topics */

/* A queue of our own subscribed to one of the services' topics. */
typedef struct watcher {
    char queue[160];
    txm_msg **msgs; /* every event received so far, in arrival order */
    size_t n, cap;
} watcher;

typedef struct stack {
    const char *name; /* "embedded", "postgresql+nats, 2 instances", ... */
    bool pg_nats;
    int instances;         /* of each service and relay: 1, or 2 sharing databases and queues */
    bool ready;            /* false: a server is missing and the scenarios skip */
    char setup_error[768]; /* why the stack did not start; "" when it did */
    char *dir;             /* logs, SQLite files, embedded broker, NATS store */
    char *customers_url;   /* database URLs, owned */
    char *orders_url;
    char broker_url[256];
    pid_t nats; /* the private nats-server, 0 if none */
    txm_transport *t;
    txm_db *customers_db; /* the services' databases, for counts */
    txm_db *orders_db;
    txm_testsvc procs[P_MAX]; /* P_ROLES * instances of them */
    unsigned turn;            /* spreads requests over the instances */
    watcher w[W_COUNT];
    int begun, finished; /* scenarios started and passed: a difference keeps the logs */
} stack;

/* cmocka group setup: the embedded stack (SQLite files, embedded broker)
 * or PostgreSQL with a private nats-server, with one or two instances of
 * each process. A stack that does not start is reported by each scenario
 * (e2e_scenario_begin); one whose servers are missing is skipped. */
int e2e_setup_embedded(void **state);
int e2e_setup_pg_nats(void **state);
int e2e_setup_embedded_twice(void **state);
int e2e_setup_pg_nats_twice(void **state);
/* Kills what runs, prints the logs if a scenario failed (and keeps them),
 * drops the databases, frees the stack. */
int e2e_teardown(void **state);

/* The stack for a scenario; skips when its servers are missing, fails when
 * it did not start. e2e_scenario_end marks the scenario passed. */
stack *e2e_scenario_begin(void **state);
void e2e_scenario_end(stack *st);

/* How many processes the stack runs: P_ROLES per instance. */
int e2e_n_procs(const stack *st);
/* Starts procs[which] again; false (with st->setup_error) when it cannot. */
bool e2e_start_proc(stack *st, int which);
/* SIGTERM, then waits up to STOP_MS; a process still running then is
 * killed. Returns its wait status, or -1 if it had to be killed. */
int e2e_stop_proc(txm_testsvc *p);
/* The port of a service's next instance, in turn: requests spread over
 * every instance. */
int e2e_customers_port(stack *st);
int e2e_orders_port(stack *st);

/* Stops every instance of the roles first..last, all asked at once, and
 * fails unless each exits 0. */
void e2e_expect_clean_stop_all(stack *st, int first, int last);
/* The orders relays (each instance's), stopped to hold orders in PENDING
 * and started again. */
void e2e_stop_orders_relays(stack *st);
void e2e_restart_orders_relays(stack *st);

#endif
