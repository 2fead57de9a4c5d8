/* The e2e suite's stack (e2e.h): starts and stops the databases, the
 * broker and the example's processes, and reports why a stack did not
 * start. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "e2e.h"
#include "testbroker.h"
#include "testdb.h"

static const char *const role_names[P_ROLES] = {"customers", "orders", "customers-relay",
                                                "orders-relay"};

const char *const e2e_watched_topics[W_COUNT] = {"customer--created", "customer--validation-failed",
                                                 "order--created", "order--cancelled"};

static bool setup_fail(stack *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->setup_error, sizeof st->setup_error, fmt, ap);
    va_end(ap);
    return false;
}

int e2e_n_procs(const stack *st)
{
    return P_ROLES * st->instances;
}

bool e2e_start_proc(stack *st, int which)
{
    if (!txm_testsvc_start(&st->procs[which]))
        return setup_fail(st, "cannot start %s", st->procs[which].bin);
    return true;
}

/* SIGTERM, then waits up to STOP_MS; a process still running then is
 * killed. Returns its wait status, or -1 if it had to be killed. */
int e2e_stop_proc(txm_testsvc *p)
{
    return txm_testsvc_stop(p, STOP_MS);
}

/* The port of the next instance of a service, in turn. */
static int instance_port(stack *st, int role)
{
    return st->procs[role + P_ROLES * (int)(st->turn++ % (unsigned)st->instances)].port;
}

int e2e_customers_port(stack *st)
{
    return instance_port(st, P_CUSTOMERS);
}

int e2e_orders_port(stack *st)
{
    return instance_port(st, P_ORDERS);
}

/* The service answers GET /<service>/health with 200 {"status": "ok"}
 * while its process keeps running. */
static bool wait_healthy(stack *st, int which)
{
    txm_testsvc *p = &st->procs[which];
    long long end = txm_test_now_ms() + START_MS;
    while (txm_test_now_ms() < end) {
        int status = 0;
        if (txm_testsvc_ended(p, &status)) {
            char how[64], last[512];
            txm_testsvc_describe(status, how, sizeof how);
            txm_testsvc_last_line(p, last, sizeof last);
            return setup_fail(st, "%s ended (%s) before answering GET %s; its last log line: %s",
                              p->name, how, p->health, last);
        }
        if (txm_testsvc_healthy(p, 2000))
            return true;
        txm_test_sleep_ms(POLL_MS);
    }
    return setup_fail(st,
                      "%s did not answer GET %s with 200 {\"status\":\"ok\"} within %d ms; see %s",
                      p->name, p->health, START_MS, p->log);
}

static bool make_urls(stack *st)
{
    if (st->pg_nats) {
        st->customers_url = txm_testdb_create(TXM_TEST_PG);
        st->orders_url = txm_testdb_create(TXM_TEST_PG);
        if (st->customers_url == NULL || st->orders_url == NULL)
            return setup_fail(st, "cannot create the PostgreSQL databases");
        /* The services' durable consumers have fixed names: a private server
         * keeps them apart from other suites and earlier runs. */
        char store[600];
        snprintf(store, sizeof store, "%s/nats", st->dir);
        int port = txm_test_free_port();
        st->nats = txm_testnats_start(store, port);
        if (st->nats <= 0) {
            st->nats = 0;
            return setup_fail(st, "nats-server did not start on port %d", port);
        }
        snprintf(st->broker_url, sizeof st->broker_url, "nats://127.0.0.1:%d", port);
        return true;
    }
    size_t n = strlen(st->dir) + 32;
    st->customers_url = malloc(n);
    st->orders_url = malloc(n);
    snprintf(st->customers_url, n, "sqlite:%s/customers.db", st->dir);
    snprintf(st->orders_url, n, "sqlite:%s/orders.db", st->dir);
    snprintf(st->broker_url, sizeof st->broker_url, "embedded:%s/broker.db", st->dir);
    return true;
}

/* The transport with our watcher queues, declared before any service runs
 * so that they see every event, and the two databases for counting rows. */
static bool open_handles(stack *st)
{
    txm_error err = {0};
    if (txm_transport_open(st->broker_url, NULL, &st->t, &err) != TXM_OK)
        return setup_fail(st, "transport %s: %s", st->broker_url, err.text);
    for (int i = 0; i < W_COUNT; i++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "e2e-watch-%s", e2e_watched_topics[i]);
        txm_test_unique(prefix, st->w[i].queue, sizeof st->w[i].queue);
        if (txm_transport_declare_subscription(st->t, e2e_watched_topics[i], st->w[i].queue, NULL,
                                               &err) != TXM_OK)
            return setup_fail(st, "watch %s: %s", e2e_watched_topics[i], err.text);
    }
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 2;
    if (txm_db_open(st->customers_url, &o, &st->customers_db, &err) != TXM_OK ||
        txm_db_open(st->orders_url, &o, &st->orders_db, &err) != TXM_OK)
        return setup_fail(st, "database: %s", err.text);
    return true;
}

static bool start_stack(stack *st)
{
    st->dir = txm_test_mkdtemp();
    if (st->dir == NULL)
        return setup_fail(st, "cannot create a temporary folder");
    fprintf(stderr, "e2e %s: logs in %s\n", st->name, st->dir);
    if (!make_urls(st) || !open_handles(st))
        return false;
    int ports[2 * MAX_INSTANCES] = {0};
    for (int i = 0; i < 2 * st->instances; i++) {
        bool taken = true;
        while (taken) {
            ports[i] = txm_test_free_port();
            taken = false;
            for (int k = 0; k < i; k++)
                taken = taken || ports[k] == ports[i];
        }
    }
    for (int i = 0; i < e2e_n_procs(st); i++) {
        int role = i % P_ROLES, k = i / P_ROLES;
        bool customers = role == P_CUSTOMERS || role == P_CUSTOMERS_RELAY;
        bool service = role == P_CUSTOMERS || role == P_ORDERS;
        const char *bin =
            service ? (customers ? TXM_CUSTOMERS_BIN : TXM_ORDERS_BIN) : TXM_RELAY_BIN;
        char name[32];
        snprintf(name, sizeof name, k == 0 ? "%s" : "%s-%d", role_names[role], k + 1);
        txm_testsvc_init(&st->procs[i], name, bin, customers ? st->customers_url : st->orders_url,
                         st->broker_url, service ? (customers ? "customers" : "orders") : NULL,
                         service ? ports[2 * k + (customers ? 0 : 1)] : 0, st->dir);
    }
    /* Every process at once: the second relay of each database stands by. */
    for (int i = 0; i < e2e_n_procs(st); i++)
        if (!e2e_start_proc(st, i))
            return false;
    for (int i = 0; i < e2e_n_procs(st); i++)
        if (st->procs[i].port != 0 && !wait_healthy(st, i))
            return false;
    return true;
}

static int setup_stack(void **state, bool pg_nats, int instances)
{
    stack *st = calloc(1, sizeof *st);
    if (st == NULL)
        return -1;
    *state = st;
    st->pg_nats = pg_nats;
    st->instances = instances;
    if (instances == 1)
        st->name = pg_nats ? "postgresql+nats" : "embedded";
    else
        st->name = pg_nats ? "postgresql+nats, 2 instances" : "embedded, 2 instances";
    if (pg_nats && (!txm_testdb_available(TXM_TEST_PG) || !txm_testbroker_available(TXM_TEST_NATS)))
        return 0;
    st->ready = true;
    start_stack(st); /* a failure is reported by every scenario */
    return 0;
}

int e2e_setup_embedded(void **state)
{
    return setup_stack(state, false, 1);
}

int e2e_setup_pg_nats(void **state)
{
    return setup_stack(state, true, 1);
}

int e2e_setup_embedded_twice(void **state)
{
    return setup_stack(state, false, 2);
}

int e2e_setup_pg_nats_twice(void **state)
{
    return setup_stack(state, true, 2);
}

/* Prints the end of each process's log. */
static void print_logs(const stack *st)
{
    for (int i = 0; i < e2e_n_procs(st); i++) {
        FILE *f = fopen(st->procs[i].log, "r");
        if (f == NULL)
            continue;
        char buf[4096];
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        fprintf(stderr, "---- end of %s ----\n%s\n", st->procs[i].log, buf);
    }
}

/* The relays' walsenders end a moment after the relays: their slots must be
 * inactive before the databases (and slots) can be dropped. */
static void wait_slots_inactive(stack *st)
{
    if (st->orders_db == NULL || st->customers_url == NULL || st->orders_url == NULL)
        return;
    txm_value p[2] = {TXM_TEXT(txm_testdb_pg_name(st->customers_url)),
                      TXM_TEXT(txm_testdb_pg_name(st->orders_url))};
    long long end = txm_test_now_ms() + 10000;
    while (txm_test_now_ms() < end) {
        txm_rows *rows = NULL;
        if (txm_db_exec(st->orders_db,
                        "SELECT count(*) FROM pg_replication_slots"
                        " WHERE active AND database IN ($1, $2)",
                        p, 2, &rows, NULL, NULL) != TXM_OK)
            return;
        int64_t active = txm_rows_int(rows, 0, 0);
        txm_rows_free(rows);
        if (active == 0)
            return;
        txm_test_sleep_ms(POLL_MS);
    }
}

int e2e_teardown(void **state)
{
    stack *st = *state;
    for (int i = 0; i < e2e_n_procs(st); i++)
        txm_testsvc_kill(&st->procs[i], SIGKILL);
    bool failed = st->begun != st->finished || st->setup_error[0] != '\0';
    if (failed && st->dir != NULL)
        print_logs(st);
    if (st->pg_nats)
        wait_slots_inactive(st);
    txm_db_close(st->customers_db);
    txm_db_close(st->orders_db);
    txm_transport_close(st->t);
    for (int i = 0; i < W_COUNT; i++) {
        for (size_t k = 0; k < st->w[i].n; k++)
            txm_msg_free(st->w[i].msgs[k]);
        free(st->w[i].msgs);
    }
    if (st->nats > 0)
        txm_testnats_stop(st->nats);
    if (st->pg_nats) {
        txm_testdb_drop(TXM_TEST_PG, st->customers_url);
        txm_testdb_drop(TXM_TEST_PG, st->orders_url);
    } else {
        free(st->customers_url);
        free(st->orders_url);
    }
    if (st->dir != NULL) {
        if (failed || getenv("TXM_TEST_KEEP") != NULL)
            fprintf(stderr, "e2e %s: logs kept in %s\n", st->name, st->dir);
        else
            txm_test_rmdir(st->dir);
        free(st->dir);
    }
    free(st);
    return 0;
}

/* The stack for a scenario; skips when its servers are missing. */
stack *e2e_scenario_begin(void **state)
{
    stack *st = *state;
    if (!st->ready) {
        fprintf(stderr, "skipped: %s needs TXMSG_TEST_PG_URL and TXMSG_TEST_NATS_URL\n", st->name);
        skip();
    }
    st->begun++;
    if (st->setup_error[0] != '\0')
        fail_msg("%s stack did not start: %s", st->name, st->setup_error);
    return st;
}

void e2e_scenario_end(stack *st)
{
    st->finished++;
}

/* ---- the orders relays, stopped to hold orders in PENDING ---- */

/* Waits for a process sent SIGTERM to exit 0. */
static void expect_clean_exit(txm_testsvc *p)
{
    int status = txm_testsvc_wait(p, STOP_MS);
    char how[64] = "still running, killed";
    if (status != -1)
        txm_testsvc_describe(status, how, sizeof how);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: %s after SIGTERM (waited up to %d ms), want exit 0; see %s", p->name, how,
                 STOP_MS, p->log);
}

/* Stops every instance of the roles first..last, all asked at once. */
void e2e_expect_clean_stop_all(stack *st, int first, int last)
{
    for (int i = 0; i < e2e_n_procs(st); i++) {
        txm_testsvc *p = &st->procs[i];
        if (i % P_ROLES < first || i % P_ROLES > last)
            continue;
        if (p->pid <= 0)
            fail_msg("%s is not running; see %s", p->name, p->log);
        kill(p->pid, SIGTERM);
    }
    for (int i = 0; i < e2e_n_procs(st); i++)
        if (i % P_ROLES >= first && i % P_ROLES <= last)
            expect_clean_exit(&st->procs[i]);
}

void e2e_stop_orders_relays(stack *st)
{
    e2e_expect_clean_stop_all(st, P_ORDERS_RELAY, P_ORDERS_RELAY);
}

void e2e_restart_orders_relays(stack *st)
{
    for (int k = 0; k < st->instances; k++)
        if (!e2e_start_proc(st, P_ORDERS_RELAY + P_ROLES * k))
            fail_msg("%s", st->setup_error);
}
