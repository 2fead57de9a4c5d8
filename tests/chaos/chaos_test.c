/* Chaos (issue 9): the Customers and Orders example under load from CLIENTS
 * HTTP clients while its services and relays are SIGKILLed and restarted at
 * random, its private nats-server is SIGKILLed and restarted on the same
 * store, and (on PostgreSQL) the database is stopped -m immediate and
 * started again. Once the load stops and every process is up, the ledger
 * must settle within DRAIN_MS: no order PENDING, every outbox row
 * dispatched, per customer the credit reservations exactly its APPROVED
 * orders, every acknowledged request kept, and no dead letters. A failure
 * prints which orders are stuck and where their messages went.
 * Runs on PostgreSQL + NATS and on SQLite + NATS (no database restart
 * there); TXM_CHAOS_LOAD_S sets the load's length, TXM_TEST_KEEP keeps the
 * logs of a passing run. */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <nats/nats.h>

#include "testbroker.h"
#include "testdb.h"
#include "testhttp.h"
#include "testproc.h"
#include "testsvc.h"
#include "txmsg/txmsg.h"

enum {
    CLIENTS = 4,
    LOAD_S = 40,            /* default length of the load */
    DRAIN_MS = 60000,       /* for the ledger to settle once everything is up */
    START_MS = 60000,       /* for every process to be up and healthy */
    HTTP_MS = 5000,         /* one client request */
    STOP_MS = 20000,        /* a process exiting after SIGTERM */
    TICK_MS = 50,           /* the chaos loop's period */
    RESTART_DELAY_MS = 300, /* before restarting a process that ended by itself */
    CLIENT_PAUSE_MS = 25,   /* between two requests of a client */
    MAX_CUSTOMERS = 512,
    MAX_ORDERS = 16384,
    SHOW_MAX = 25, /* examples printed per kind of failure */
    MAX_ADVISORIES = 4096,
};

#define UUID_BUF (TXM_UUID_LEN + 1)

enum { P_CUSTOMERS, P_ORDERS, P_CUSTOMERS_RELAY, P_ORDERS_RELAY, P_COUNT };
static const char *const proc_names[P_COUNT] = {"customers", "orders", "customers-relay",
                                                "orders-relay"};

/* The example's queues: customers consume the first two, orders the rest. */
enum { Q_COUNT = 5 };
static const char *const queue_names[Q_COUNT] = {
    "customer--order-created", "customer--order-cancelled", "order--customer-credit-reserved",
    "order--customer-credit-reservation-failed", "order--customer-validation-failed"};

/* The answers of the customers service, and the orders queue of each. */
static const char *const answer_topics[3] = {"customer--credit-reserved",
                                             "customer--credit-reservation-failed",
                                             "customer--validation-failed"};

/* Client operations and how each request ended. */
enum { OP_CUSTOMER, OP_ORDER, OP_BAD_ORDER, OP_CANCEL, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"POST /customers", "POST /orders",
                                               "POST /orders (unknown customer)",
                                               "POST /order/<id>/cancel"};
enum { OUT_2XX, OUT_4XX, OUT_5XX, OUT_NONE, OUT_COUNT };

typedef struct acked_order {
    char id[UUID_BUF];
    bool cancel_acked; /* a cancel answered 200 */
} acked_order;

/* A message that reached its consumer's MaxDeliver: JetStream delivers it
 * no more, so unless that last delivery settled it, it stays in the stream. */
typedef struct max_delivery {
    char consumer[80];
    uint64_t stream_seq;
    int deliveries;
} max_delivery;

typedef struct chaos {
    const char *name; /* "postgresql+nats" or "sqlite+nats" */
    bool pg;
    bool ready;            /* false: servers missing, the test skips */
    char setup_error[768]; /* why the stack did not start; "" when it did */
    bool failed;           /* keeps the logs */
    char *dir;             /* logs, SQLite files, NATS store */
    char *customers_url;
    char *orders_url;
    char store[600];    /* nats-server -sd */
    char nats_log[640]; /* nats-server output, appended across restarts */
    int nats_port, nats_monitor_port;
    pid_t nats; /* 0 while down */
    char broker_url[64];
    txm_testsvc procs[P_COUNT];
    long long restart_at[P_COUNT]; /* ms; 0 when no restart is due */
    long long nats_up_at;          /* ms; when a killed nats-server starts again */
    bool pg_down;
    long long pg_up_at;
    long long t0; /* ms at the start of the load */
    int kills[P_COUNT], exits[P_COUNT], nats_kills, pg_stops;
    /* what the clients learned */
    pthread_mutex_t mu;
    char (*customers)[UUID_BUF]; /* created and acknowledged */
    size_t n_customers;
    acked_order *orders; /* created and acknowledged */
    size_t n_orders;
    atomic_bool stop_clients;
    atomic_int outcomes[OP_COUNT][OUT_COUNT];
    /* JetStream's max-deliveries advisories, watched through the restarts */
    natsConnection *watch;
    natsSubscription *advisories;
    max_delivery maxed[MAX_ADVISORIES];
    size_t n_maxed;
} chaos;

static void chaos_log(const chaos *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void chaos_log(const chaos *c, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    long long t = c->t0 > 0 ? txm_test_now_ms() - c->t0 : 0;
    fprintf(stderr, "chaos %s +%lld.%01llds: %s\n", c->name, t / 1000, (t % 1000) / 100, text);
}

static bool setup_fail(chaos *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool setup_fail(chaos *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->setup_error, sizeof c->setup_error, fmt, ap);
    va_end(ap);
    return false;
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static int load_seconds(void)
{
    const char *s = getenv("TXM_CHAOS_LOAD_S");
    int n = s != NULL ? (int)strtol(s, NULL, 10) : 0;
    return n > 0 ? n : LOAD_S;
}

/* ---- the stack: databases, nats-server, four processes ---- */

static bool start_nats(chaos *c)
{
    c->nats = txm_testnats_start_ext(c->store, c->nats_port, c->nats_monitor_port, c->nats_log);
    if (c->nats <= 0) {
        c->nats = 0;
        return false;
    }
    return true;
}

static void on_advisory(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc;
    (void)sub;
    chaos *c = closure;
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    pthread_mutex_lock(&c->mu);
    if (j != NULL && c->n_maxed < MAX_ADVISORIES) {
        max_delivery *d = &c->maxed[c->n_maxed++];
        copy_text(d->consumer, sizeof d->consumer,
                  json_string_value(json_object_get(j, "consumer")));
        d->stream_seq = (uint64_t)json_integer_value(json_object_get(j, "stream_seq"));
        d->deliveries = (int)json_integer_value(json_object_get(j, "deliveries"));
    }
    pthread_mutex_unlock(&c->mu);
    json_decref(j);
    natsMsg_Destroy(m);
}

/* Listens to JetStream's max-deliveries advisories for the whole run; the
 * connection reconnects by itself after each nats-server restart. */
static bool watch_advisories(chaos *c)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, c->broker_url);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->watch, o);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&c->advisories, c->watch,
                                     "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>", on_advisory,
                                     c);
    natsOptions_Destroy(o);
    return s == NATS_OK;
}

static bool make_stack(chaos *c)
{
    c->dir = txm_test_mkdtemp();
    if (c->dir == NULL)
        return setup_fail(c, "cannot create a temporary folder");
    fprintf(stderr, "chaos %s: logs in %s\n", c->name, c->dir);
    if (c->pg) {
        c->customers_url = txm_testdb_create(TXM_TEST_PG);
        c->orders_url = txm_testdb_create(TXM_TEST_PG);
        if (c->customers_url == NULL || c->orders_url == NULL)
            return setup_fail(c, "cannot create the PostgreSQL databases");
    } else {
        size_t n = strlen(c->dir) + 32;
        c->customers_url = malloc(n);
        c->orders_url = malloc(n);
        snprintf(c->customers_url, n, "sqlite:%s/customers.db", c->dir);
        snprintf(c->orders_url, n, "sqlite:%s/orders.db", c->dir);
    }
    snprintf(c->store, sizeof c->store, "%s/nats", c->dir);
    snprintf(c->nats_log, sizeof c->nats_log, "%s/nats-server.log", c->dir);
    c->nats_port = txm_test_free_port();
    do
        c->nats_monitor_port = txm_test_free_port();
    while (c->nats_monitor_port == c->nats_port);
    snprintf(c->broker_url, sizeof c->broker_url, "nats://127.0.0.1:%d", c->nats_port);
    if (!start_nats(c))
        return setup_fail(c, "nats-server did not start on port %d", c->nats_port);
    if (!watch_advisories(c))
        return setup_fail(c, "cannot watch the advisories of nats-server");
    int customers_port = txm_test_free_port(), orders_port;
    do
        orders_port = txm_test_free_port();
    while (orders_port == customers_port);
    txm_testsvc_init(&c->procs[P_CUSTOMERS], proc_names[P_CUSTOMERS], TXM_CUSTOMERS_BIN,
                     c->customers_url, c->broker_url, "customers", customers_port, c->dir);
    txm_testsvc_init(&c->procs[P_ORDERS], proc_names[P_ORDERS], TXM_ORDERS_BIN, c->orders_url,
                     c->broker_url, "orders", orders_port, c->dir);
    txm_testsvc_init(&c->procs[P_CUSTOMERS_RELAY], proc_names[P_CUSTOMERS_RELAY], TXM_RELAY_BIN,
                     c->customers_url, c->broker_url, NULL, 0, c->dir);
    txm_testsvc_init(&c->procs[P_ORDERS_RELAY], proc_names[P_ORDERS_RELAY], TXM_RELAY_BIN,
                     c->orders_url, c->broker_url, NULL, 0, c->dir);
    /* The services first: they create their schemas (and on PostgreSQL the
     * relays' slots) before a relay looks for them. */
    for (int i = 0; i < P_COUNT; i++) {
        if (!txm_testsvc_start(&c->procs[i]))
            return setup_fail(c, "cannot start %s", proc_names[i]);
        if (i == P_ORDERS) {
            long long end = txm_test_now_ms() + START_MS;
            while (!(txm_testsvc_healthy(&c->procs[P_CUSTOMERS], 2000) &&
                     txm_testsvc_healthy(&c->procs[P_ORDERS], 2000))) {
                if (txm_test_now_ms() > end)
                    return setup_fail(c, "the services did not become healthy; see %s", c->dir);
                txm_test_sleep_ms(100);
            }
        }
    }
    return true;
}

static int setup_stack(void **state, bool pg)
{
    chaos *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    *state = c;
    c->pg = pg;
    c->name = pg ? "postgresql+nats" : "sqlite+nats";
    pthread_mutex_init(&c->mu, NULL);
    c->customers = calloc(MAX_CUSTOMERS, sizeof *c->customers);
    c->orders = calloc(MAX_ORDERS, sizeof *c->orders);
    if (c->customers == NULL || c->orders == NULL)
        return -1;
    bool pg_ok = txm_testdb_available(TXM_TEST_PG) && getenv("TXMSG_TEST_PG_DATA") != NULL &&
                 getenv("TXMSG_TEST_PG_BIN") != NULL;
    if (!txm_testbroker_available(TXM_TEST_NATS) || (pg && !pg_ok))
        return 0;
    c->ready = true;
    make_stack(c); /* a failure is reported by the test */
    return 0;
}

static int setup_pg_nats(void **state)
{
    return setup_stack(state, true);
}

static int setup_sqlite_nats(void **state)
{
    return setup_stack(state, false);
}

/* The relays' walsenders end a moment after the relays: their slots must be
 * inactive before the databases (and slots) can be dropped. */
static void wait_slots_inactive(const chaos *c)
{
    txm_db *db = NULL;
    if (txm_db_open(getenv("TXMSG_TEST_PG_URL"), NULL, &db, NULL) != TXM_OK)
        return;
    txm_value p[2] = {TXM_TEXT(txm_testdb_pg_name(c->customers_url)),
                      TXM_TEXT(txm_testdb_pg_name(c->orders_url))};
    long long end = txm_test_now_ms() + 10000;
    while (txm_test_now_ms() < end) {
        txm_rows *rows = NULL;
        if (txm_db_exec(db,
                        "SELECT count(*) FROM pg_replication_slots"
                        " WHERE active AND database IN ($1, $2)",
                        p, 2, &rows, NULL, NULL) != TXM_OK)
            break;
        int64_t active = txm_rows_int(rows, 0, 0);
        txm_rows_free(rows);
        if (active == 0)
            break;
        txm_test_sleep_ms(100);
    }
    txm_db_close(db);
}

static int teardown_stack(void **state)
{
    chaos *c = *state;
    for (int i = 0; i < P_COUNT; i++)
        txm_testsvc_stop(&c->procs[i], STOP_MS);
    if (c->pg_down && !txm_testdb_pg_start())
        fprintf(stderr, "chaos %s: PostgreSQL did not start again\n", c->name);
    if (c->watch != NULL)
        natsConnection_Close(c->watch);
    natsSubscription_Destroy(c->advisories);
    natsConnection_Destroy(c->watch);
    if (c->nats > 0)
        txm_testnats_stop(c->nats);
    if (c->pg) {
        if (c->customers_url != NULL && c->orders_url != NULL)
            wait_slots_inactive(c);
        txm_testdb_drop(TXM_TEST_PG, c->customers_url);
        txm_testdb_drop(TXM_TEST_PG, c->orders_url);
    } else {
        free(c->customers_url);
        free(c->orders_url);
    }
    if (c->dir != NULL) {
        if (c->failed || c->setup_error[0] != '\0' || getenv("TXM_TEST_KEEP") != NULL)
            fprintf(stderr, "chaos %s: logs kept in %s\n", c->name, c->dir);
        else
            txm_test_rmdir(c->dir);
        free(c->dir);
    }
    pthread_mutex_destroy(&c->mu);
    free(c->customers);
    free(c->orders);
    free(c);
    return 0;
}

/* ---- clients ---- */

/* One request; returns the HTTP status, 0 when there was no answer, and
 * counts the outcome. *json (may be NULL) gets the parsed body of a 2xx. */
static int request(chaos *c, int op, int port, const char *path, const char *body, json_t **json)
{
    const char *headers[] = {"Content-Type: application/json", NULL};
    txm_testhttp_response r;
    int status = 0;
    if (txm_testhttp_request("POST", "127.0.0.1", port, path, headers, body,
                             body != NULL ? strlen(body) : 0, HTTP_MS, &r) == 0)
        status = r.status;
    int out = status == 0 ? OUT_NONE : status >= 500 ? OUT_5XX : status >= 400 ? OUT_4XX : OUT_2XX;
    atomic_fetch_add(&c->outcomes[op][out], 1);
    if (json != NULL)
        *json = out == OUT_2XX ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    txm_testhttp_response_fini(&r);
    return status;
}

static void create_customer(chaos *c, unsigned *seed)
{
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"chaos %u\",\"credit_limit\":%d}", rand_r(seed),
             10000 + (int)(rand_r(seed) % 30000));
    json_t *j = NULL;
    request(c, OP_CUSTOMER, c->procs[P_CUSTOMERS].port, "/customers", body, &j);
    const char *id = json_string_value(json_object_get(j, "id"));
    pthread_mutex_lock(&c->mu);
    if (id != NULL && strlen(id) == TXM_UUID_LEN && c->n_customers < MAX_CUSTOMERS)
        snprintf(c->customers[c->n_customers++], UUID_BUF, "%s", id);
    pthread_mutex_unlock(&c->mu);
    json_decref(j);
}

static void create_order(chaos *c, unsigned *seed, bool unknown_customer)
{
    char customer[UUID_BUF] = "";
    if (unknown_customer) {
        txm_uuid_v7(customer, NULL);
    } else {
        pthread_mutex_lock(&c->mu);
        if (c->n_customers > 0)
            snprintf(customer, sizeof customer, "%s",
                     c->customers[(size_t)rand_r(seed) % c->n_customers]);
        pthread_mutex_unlock(&c->mu);
    }
    if (customer[0] == '\0')
        return;
    char body[160];
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"order_total\":%d}", customer,
             500 + (int)(rand_r(seed) % 5500));
    json_t *j = NULL;
    request(c, unknown_customer ? OP_BAD_ORDER : OP_ORDER, c->procs[P_ORDERS].port, "/orders", body,
            &j);
    const char *id = json_string_value(json_object_get(j, "id"));
    pthread_mutex_lock(&c->mu);
    if (id != NULL && strlen(id) == TXM_UUID_LEN && c->n_orders < MAX_ORDERS)
        snprintf(c->orders[c->n_orders++].id, UUID_BUF, "%s", id);
    pthread_mutex_unlock(&c->mu);
    json_decref(j);
}

/* Cancels a random acknowledged order: 200 when it was APPROVED (or
 * CANCELLED already), 400 while PENDING or when REJECTED. */
static void cancel_order(chaos *c, unsigned *seed)
{
    char id[UUID_BUF] = "";
    size_t k = 0;
    pthread_mutex_lock(&c->mu);
    if (c->n_orders > 0) {
        k = (size_t)rand_r(seed) % c->n_orders;
        snprintf(id, sizeof id, "%s", c->orders[k].id);
    }
    pthread_mutex_unlock(&c->mu);
    if (id[0] == '\0')
        return;
    char path[96];
    snprintf(path, sizeof path, "/order/%s/cancel", id);
    if (request(c, OP_CANCEL, c->procs[P_ORDERS].port, path, NULL, NULL) == 200) {
        pthread_mutex_lock(&c->mu);
        c->orders[k].cancel_acked = true;
        pthread_mutex_unlock(&c->mu);
    }
}

typedef struct client {
    chaos *c;
    unsigned seed;
} client;

static void *client_main(void *arg)
{
    client *cl = arg;
    chaos *c = cl->c;
    while (!atomic_load(&c->stop_clients)) {
        pthread_mutex_lock(&c->mu);
        size_t customers = c->n_customers;
        pthread_mutex_unlock(&c->mu);
        int r = (int)(rand_r(&cl->seed) % 100);
        if (customers < 2 * CLIENTS || r < 6)
            create_customer(c, &cl->seed);
        else if (r < 10)
            create_order(c, &cl->seed, true);
        else if (r < 75)
            create_order(c, &cl->seed, false);
        else
            cancel_order(c, &cl->seed);
        txm_test_sleep_ms(CLIENT_PAUSE_MS);
    }
    return NULL;
}

/* ---- chaos: kills, restarts, outages ---- */

static int rand_between(int lo, int hi)
{
    return lo + rand() % (hi - lo + 1);
}

/* Restarts whatever is down and due: nats-server, PostgreSQL, and the
 * processes, which may also have ended by themselves (a service that cannot
 * reach its database or broker at start, say). */
static void supervise(chaos *c)
{
    long long now = txm_test_now_ms();
    if (c->nats == 0 && now >= c->nats_up_at) {
        if (start_nats(c))
            chaos_log(c, "nats-server started again");
        else
            c->nats_up_at = now + 500;
    }
    if (c->pg_down && now >= c->pg_up_at) {
        if (txm_testdb_pg_start()) {
            c->pg_down = false;
            chaos_log(c, "PostgreSQL started again");
        } else {
            c->pg_up_at = now + 500;
        }
    }
    for (int i = 0; i < P_COUNT; i++) {
        txm_testsvc *p = &c->procs[i];
        int status = 0;
        if (txm_testsvc_ended(p, &status)) {
            char how[64];
            txm_testsvc_describe(status, how, sizeof how);
            chaos_log(c, "%s ended by itself (%s); restarting it", p->name, how);
            c->exits[i]++;
            c->restart_at[i] = now + RESTART_DELAY_MS;
        }
        if (p->pid == 0 && c->restart_at[i] > 0 && now >= c->restart_at[i]) {
            c->restart_at[i] = 0;
            if (!txm_testsvc_start(p))
                c->restart_at[i] = now + RESTART_DELAY_MS;
        }
    }
}

static void kill_random_process(chaos *c)
{
    int i = rand() % P_COUNT;
    txm_testsvc *p = &c->procs[i];
    if (p->pid == 0)
        return;
    txm_testsvc_kill(p, SIGKILL);
    c->kills[i]++;
    c->restart_at[i] = txm_test_now_ms() + rand_between(0, 1000);
    chaos_log(c, "SIGKILL %s", p->name);
}

/* How nats-server is taken down: SIGKILL, or SIGTERM with
 * TXM_CHAOS_NATS_SIGNAL=TERM (a clean shutdown, which with interest
 * retention lost messages too). */
static int nats_signal(void)
{
    const char *s = getenv("TXM_CHAOS_NATS_SIGNAL");
    return s != NULL && strcmp(s, "TERM") == 0 ? SIGTERM : SIGKILL;
}

static void kill_nats(chaos *c)
{
    if (c->nats == 0)
        return;
    int status = 0;
    int sig = nats_signal();
    kill(c->nats, sig);
    waitpid(c->nats, &status, 0);
    c->nats = 0;
    c->nats_kills++;
    int down = rand_between(500, 2500);
    c->nats_up_at = txm_test_now_ms() + down;
    chaos_log(c, "%s nats-server (down for %d ms)", sig == SIGKILL ? "SIGKILL" : "SIGTERM", down);
}

static void stop_pg(chaos *c)
{
    if (c->pg_down)
        return;
    int down = rand_between(1000, 3000);
    if (!txm_testdb_pg_crash()) {
        chaos_log(c, "pg_ctl stop -m immediate failed");
        return;
    }
    c->pg_down = true;
    c->pg_stops++;
    c->pg_up_at = txm_test_now_ms() + down;
    chaos_log(c, "PostgreSQL stopped -m immediate (down for %d ms)", down);
}

/* The load: CLIENTS clients for load_s seconds, with a process SIGKILLed
 * every 1.5-3.5 s, nats-server every 6-15 s and PostgreSQL every 6-15 s. */
static void run_load(chaos *c, int load_s)
{
    client cl[CLIENTS];
    pthread_t th[CLIENTS];
    c->t0 = txm_test_now_ms();
    srand((unsigned)c->t0);
    atomic_store(&c->stop_clients, false);
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){c, (unsigned)c->t0 * 31u + (unsigned)i};
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    long long end = c->t0 + (long long)load_s * 1000;
    long long next_kill = c->t0 + rand_between(1500, 3500);
    long long next_nats = c->t0 + rand_between(4000, 8000);
    long long next_pg = c->t0 + rand_between(6000, 10000);
    for (long long now = c->t0; now < end; now = txm_test_now_ms()) {
        supervise(c);
        if (now >= next_kill) {
            kill_random_process(c);
            next_kill = now + rand_between(1500, 3500);
        }
        if (now >= next_nats) {
            kill_nats(c);
            next_nats = now + rand_between(6000, 15000);
        }
        if (c->pg && now >= next_pg) {
            stop_pg(c);
            next_pg = now + rand_between(6000, 15000);
        }
        txm_test_sleep_ms(TICK_MS);
    }
    atomic_store(&c->stop_clients, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    chaos_log(c, "load stopped");
}

/* A process that runs but does not answer: its threads' stacks go to
 * <name>.stacks beside its log, and their innermost frames to stderr,
 * which is all a CI log keeps. */
static void report_stuck(chaos *c, const txm_testsvc *p)
{
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/%s.stacks", c->dir, p->name);
    fprintf(stderr, "stack: %s (pid %d) runs but does not answer; its stacks: %s\n", p->name,
            (int)p->pid, path);
    if (!txm_proc_dump_stacks(p->pid, path))
        fprintf(stderr, "stack: gdb could not read them\n");
    FILE *f = fopen(path, "r");
    for (int shown = 0; f != NULL && shown < 80 && fgets(line, sizeof line, f) != NULL;) {
        bool top = strncmp(line, "Thread ", 7) == 0 ||
                   (line[0] == '#' && line[1] >= '0' && line[1] <= '5' && line[2] == ' ');
        if (top) {
            fprintf(stderr, "stack: %s", line);
            shown++;
        }
    }
    if (f != NULL)
        fclose(f);
}

/* Brings every server and process up and waits until both services answer
 * their health checks. */
static bool bring_up(chaos *c)
{
    c->nats_up_at = 0;
    c->pg_up_at = 0;
    for (int i = 0; i < P_COUNT; i++)
        if (c->procs[i].pid == 0)
            c->restart_at[i] = 1;
    long long end = txm_test_now_ms() + START_MS;
    while (txm_test_now_ms() < end) {
        supervise(c);
        bool up = c->nats > 0 && !c->pg_down;
        for (int i = 0; i < P_COUNT && up; i++)
            up = txm_testsvc_healthy(&c->procs[i], 2000);
        if (up) {
            chaos_log(c, "every process is up");
            return true;
        }
        txm_test_sleep_ms(200);
    }
    for (int i = 0; i < P_COUNT; i++)
        if (c->procs[i].pid > 0 && !txm_testsvc_healthy(&c->procs[i], 2000))
            report_stuck(c, &c->procs[i]);
    return false;
}

/* ---- the ledger: what the databases and the broker say ---- */

typedef struct order_row {
    char id[UUID_BUF];
    char customer[UUID_BUF];
    char state[16];
    int64_t total;
} order_row;

typedef struct reservation_row {
    char customer[UUID_BUF];
    char order[UUID_BUF];
    int64_t amount;
} reservation_row;

typedef struct customer_row {
    char id[UUID_BUF];
    int64_t limit;
    int64_t reserved; /* sum of its reservations */
} customer_row;

typedef struct outbox_row {
    int64_t seq;
    char id[80];
    char topic[80];
    char aggregate[80];
    char order[UUID_BUF]; /* the payload's order_id; "" if none */
    bool dispatched;
    char created[40];
} outbox_row;

typedef struct inbox_row {
    char key[200]; /* "<subscription> <message id>" */
} inbox_row;

typedef struct dead_letter {
    char queue[80];
    char id[80];
    char topic[80];
    int receive_count;
    char error[200];
} dead_letter;

enum { DB_CUSTOMERS, DB_ORDERS, DB_COUNT };
static const char *const db_names[DB_COUNT] = {"customers", "orders"};

typedef struct ledger {
    order_row *orders;
    size_t n_orders;
    reservation_row *reservations;
    size_t n_reservations;
    customer_row *customers;
    size_t n_customers;
    outbox_row *outbox[DB_COUNT]; /* all rows when full, else the not dispatched */
    size_t n_outbox[DB_COUNT];
    inbox_row *inbox[DB_COUNT];
    size_t n_inbox[DB_COUNT];
    dead_letter *dlq;
    size_t n_dlq;
    /* the verdict */
    size_t pending, missing, extra, mismatched, overspent, undispatched[DB_COUNT];
    size_t lost_orders, lost_cancels;
    char error[400]; /* a database or broker that could not be read */
} ledger;

static void ledger_free(ledger *l)
{
    free(l->orders);
    free(l->reservations);
    free(l->customers);
    for (int i = 0; i < DB_COUNT; i++) {
        free(l->outbox[i]);
        free(l->inbox[i]);
    }
    free(l->dlq);
    memset(l, 0, sizeof *l);
}

/* Runs sql and returns its rows, or NULL with l->error set. */
static txm_rows *query(txm_db *db, const char *sql, ledger *l)
{
    txm_rows *rows = NULL;
    txm_error err = {0};
    if (txm_db_exec(db, sql, NULL, 0, &rows, NULL, &err) != TXM_OK) {
        snprintf(l->error, sizeof l->error, "%.60s...: %.300s", sql, err.text);
        return NULL;
    }
    return rows;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const order_row *)a)->id, ((const order_row *)b)->id);
}

static int by_order(const void *a, const void *b)
{
    return strcmp(((const reservation_row *)a)->order, ((const reservation_row *)b)->order);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const inbox_row *)a)->key, ((const inbox_row *)b)->key);
}

static bool load_orders(txm_db *db, ledger *l)
{
    txm_rows *r = query(db, "SELECT id, customer_id, state, order_total FROM orders", l);
    if (r == NULL)
        return false;
    l->n_orders = txm_rows_count(r);
    l->orders = calloc(l->n_orders + 1, sizeof *l->orders);
    for (size_t i = 0; i < l->n_orders; i++) {
        order_row *o = &l->orders[i];
        copy_text(o->id, sizeof o->id, txm_rows_text(r, i, 0));
        copy_text(o->customer, sizeof o->customer, txm_rows_text(r, i, 1));
        copy_text(o->state, sizeof o->state, txm_rows_text(r, i, 2));
        o->total = txm_rows_int(r, i, 3);
    }
    txm_rows_free(r);
    qsort(l->orders, l->n_orders, sizeof *l->orders, by_id);
    return true;
}

static bool load_customers(txm_db *db, ledger *l)
{
    txm_rows *r = query(db, "SELECT customer_id, order_id, amount FROM credit_reservations", l);
    if (r == NULL)
        return false;
    l->n_reservations = txm_rows_count(r);
    l->reservations = calloc(l->n_reservations + 1, sizeof *l->reservations);
    for (size_t i = 0; i < l->n_reservations; i++) {
        reservation_row *v = &l->reservations[i];
        copy_text(v->customer, sizeof v->customer, txm_rows_text(r, i, 0));
        copy_text(v->order, sizeof v->order, txm_rows_text(r, i, 1));
        v->amount = txm_rows_int(r, i, 2);
    }
    txm_rows_free(r);
    qsort(l->reservations, l->n_reservations, sizeof *l->reservations, by_order);
    r = query(db,
              "SELECT c.id, c.credit_limit, COALESCE((SELECT SUM(r.amount) FROM"
              " credit_reservations r WHERE r.customer_id = c.id), 0) FROM customers c",
              l);
    if (r == NULL)
        return false;
    l->n_customers = txm_rows_count(r);
    l->customers = calloc(l->n_customers + 1, sizeof *l->customers);
    for (size_t i = 0; i < l->n_customers; i++) {
        copy_text(l->customers[i].id, sizeof l->customers[i].id, txm_rows_text(r, i, 0));
        l->customers[i].limit = txm_rows_int(r, i, 1);
        l->customers[i].reserved = txm_rows_int(r, i, 2);
    }
    txm_rows_free(r);
    return true;
}

/* The order id in an event's payload ("order_id": "<uuid>"), or "". */
static void payload_order(const char *payload, char out[UUID_BUF])
{
    out[0] = '\0';
    const char *p = payload != NULL ? strstr(payload, "\"order_id\"") : NULL;
    if (p == NULL || (p = strchr(p + 10, '"')) == NULL)
        return;
    snprintf(out, UUID_BUF, "%.*s", TXM_UUID_LEN, p + 1);
}

/* SQLite: marked, or passed by every relay cursor and not skipped (the
 * library's definition of dispatched, see txmsg/outbox.h). */
#define SQLITE_DISPATCHED                                                                          \
    "(is_dispatched = 1 OR (is_dispatched = 0 AND seq <= COALESCE((SELECT min(position)"           \
    " FROM txmsg_relay_cursor), 0)))"

static bool load_outbox(txm_db *db, bool pg, bool all, int which, ledger *l)
{
    char sql[600];
    snprintf(sql, sizeof sql,
             "SELECT seq, message_id, topic, aggregate_id, %s, %s, %s FROM txmsg_outbox%s"
             " ORDER BY seq",
             pg ? "is_dispatched::int" : SQLITE_DISPATCHED, pg ? "payload::text" : "payload",
             pg ? "created_at::text" : "created_at",
             all  ? ""
             : pg ? " WHERE NOT is_dispatched"
                  : " WHERE NOT " SQLITE_DISPATCHED);
    txm_rows *r = query(db, sql, l);
    if (r == NULL)
        return false;
    size_t n = txm_rows_count(r);
    outbox_row *rows = calloc(n + 1, sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        outbox_row *o = &rows[i];
        o->seq = txm_rows_int(r, i, 0);
        copy_text(o->id, sizeof o->id, txm_rows_text(r, i, 1));
        copy_text(o->topic, sizeof o->topic, txm_rows_text(r, i, 2));
        copy_text(o->aggregate, sizeof o->aggregate, txm_rows_text(r, i, 3));
        o->dispatched = txm_rows_int(r, i, 4) != 0;
        payload_order(txm_rows_text(r, i, 5), o->order);
        copy_text(o->created, sizeof o->created, txm_rows_text(r, i, 6));
        l->undispatched[which] += !o->dispatched;
    }
    txm_rows_free(r);
    l->outbox[which] = rows;
    l->n_outbox[which] = n;
    return true;
}

static bool load_inbox(txm_db *db, int which, ledger *l)
{
    txm_rows *r = query(db, "SELECT subscription, message_id FROM txmsg_inbox", l);
    if (r == NULL)
        return false;
    size_t n = txm_rows_count(r);
    inbox_row *rows = calloc(n + 1, sizeof *rows);
    for (size_t i = 0; i < n; i++)
        snprintf(rows[i].key, sizeof rows[i].key, "%s %s", txm_rows_text(r, i, 0),
                 txm_rows_text(r, i, 1));
    txm_rows_free(r);
    qsort(rows, n, sizeof *rows, by_key);
    l->inbox[which] = rows;
    l->n_inbox[which] = n;
    return true;
}

static bool load_dlq(const chaos *c, ledger *l)
{
    txm_transport *t = NULL;
    txm_error err = {0};
    if (txm_transport_open(c->broker_url, NULL, &t, &err) != TXM_OK) {
        snprintf(l->error, sizeof l->error, "transport: %s", err.text);
        return false;
    }
    size_t cap = 64;
    l->dlq = calloc(cap, sizeof *l->dlq);
    bool ok = true;
    for (int q = 0; q < Q_COUNT && ok; q++) {
        txm_delivery **list = NULL;
        size_t n = 0;
        if (txm_transport_dlq_list(t, queue_names[q], 10000, &list, &n, &err) != TXM_OK) {
            snprintf(l->error, sizeof l->error, "dlq list %s: %s", queue_names[q], err.text);
            ok = false;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (l->n_dlq == cap) {
                cap *= 2;
                l->dlq = realloc(l->dlq, cap * sizeof *l->dlq);
            }
            dead_letter *d = &l->dlq[l->n_dlq++];
            memset(d, 0, sizeof *d);
            copy_text(d->queue, sizeof d->queue, queue_names[q]);
            copy_text(d->id, sizeof d->id, txm_delivery_message_id(list[i]));
            copy_text(d->topic, sizeof d->topic, txm_delivery_topic(list[i]));
            copy_text(d->error, sizeof d->error, txm_delivery_last_error(list[i]));
            d->receive_count = txm_delivery_receive_count(list[i]);
        }
        txm_delivery_list_free(list, n);
    }
    txm_transport_close(t);
    return ok;
}

static const order_row *find_order(const ledger *l, const char *id)
{
    order_row key;
    copy_text(key.id, sizeof key.id, id);
    return bsearch(&key, l->orders, l->n_orders, sizeof *l->orders, by_id);
}

static const reservation_row *find_reservation(const ledger *l, const char *order)
{
    reservation_row key;
    copy_text(key.order, sizeof key.order, order);
    return bsearch(&key, l->reservations, l->n_reservations, sizeof *l->reservations, by_order);
}

static bool in_inbox(const ledger *l, int which, const char *subscription, const char *id)
{
    inbox_row key;
    snprintf(key.key, sizeof key.key, "%s %s", subscription, id);
    return bsearch(&key, l->inbox[which], l->n_inbox[which], sizeof key, by_key) != NULL;
}

/* Compares the ledgers: reservations against APPROVED orders, credit
 * against limits, and the clients' acknowledged requests against the
 * orders. */
static void judge(const chaos *c, ledger *l)
{
    for (size_t i = 0; i < l->n_orders; i++) {
        const order_row *o = &l->orders[i];
        const reservation_row *r = find_reservation(l, o->id);
        bool approved = strcmp(o->state, "APPROVED") == 0;
        l->pending += strcmp(o->state, "PENDING") == 0;
        l->missing += approved && r == NULL;
        l->mismatched += approved && r != NULL &&
                         (r->amount != o->total || strcmp(r->customer, o->customer) != 0);
    }
    for (size_t i = 0; i < l->n_reservations; i++) {
        const order_row *o = find_order(l, l->reservations[i].order);
        l->extra += o == NULL || strcmp(o->state, "APPROVED") != 0;
    }
    for (size_t i = 0; i < l->n_customers; i++)
        l->overspent += l->customers[i].reserved > l->customers[i].limit;
    for (size_t i = 0; i < c->n_orders; i++) {
        const order_row *o = find_order(l, c->orders[i].id);
        l->lost_orders += o == NULL;
        l->lost_cancels +=
            o != NULL && c->orders[i].cancel_acked && strcmp(o->state, "CANCELLED") != 0;
    }
}

static bool settled(const ledger *l)
{
    return l->error[0] == '\0' && l->pending == 0 && l->missing == 0 && l->extra == 0 &&
           l->mismatched == 0 && l->overspent == 0 && l->undispatched[DB_CUSTOMERS] == 0 &&
           l->undispatched[DB_ORDERS] == 0 && l->lost_orders == 0 && l->lost_cancels == 0 &&
           l->n_dlq == 0;
}

/* Reads everything; full also reads all outbox rows, the inboxes and the
 * dead-letter queues (for the diagnosis), else only what the verdict needs. */
static void ledger_load(const chaos *c, txm_db *const dbs[DB_COUNT], bool full, ledger *l)
{
    memset(l, 0, sizeof *l);
    bool ok = load_orders(dbs[DB_ORDERS], l) && load_customers(dbs[DB_CUSTOMERS], l);
    for (int i = 0; i < DB_COUNT && ok; i++)
        ok = load_outbox(dbs[i], c->pg, full, i, l) && (!full || load_inbox(dbs[i], i, l));
    if (ok && full)
        ok = load_dlq(c, l);
    if (ok)
        judge(c, l);
}

/* ---- the diagnosis ---- */

static const outbox_row *find_outbox(const ledger *l, int which, const char *topic,
                                     const char *order)
{
    for (size_t i = 0; i < l->n_outbox[which]; i++) {
        const outbox_row *o = &l->outbox[which][i];
        if (strcmp(o->order, order) == 0 && (topic == NULL || strcmp(o->topic, topic) == 0))
            return o;
    }
    return NULL;
}

static const dead_letter *find_dead_letter(const ledger *l, const char *id)
{
    for (size_t i = 0; i < l->n_dlq; i++)
        if (strcmp(l->dlq[i].id, id) == 0)
            return &l->dlq[i];
    return NULL;
}

/* The orders queue that consumes an answer topic. */
static const char *answer_queue(const char *topic)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(topic, answer_topics[i]) == 0)
            return queue_names[2 + i];
    return "?";
}

enum {
    S_NO_CREATED,
    S_CREATED_NOT_DISPATCHED,
    S_CREATED_NOT_CONSUMED,
    S_NO_ANSWER,
    S_ANSWER_NOT_DISPATCHED,
    S_ANSWER_NOT_CONSUMED,
    S_ANSWER_CONSUMED,
    S_COUNT
};
static const char *const stage_names[S_COUNT] = {
    "order--created missing from the orders outbox",
    "order--created not dispatched by the orders relay",
    "order--created dispatched, not in the customers inbox (customer--order-created)",
    "order--created consumed by customers, but no answer in its outbox",
    "answer not dispatched by the customers relay",
    "answer dispatched, not in the orders inbox",
    "answer in the orders inbox, order still PENDING",
};

/* Where a PENDING order's messages stopped. */
static int stage_of(const ledger *l, const order_row *o, char *detail, size_t cap)
{
    const outbox_row *created = find_outbox(l, DB_ORDERS, "order--created", o->id);
    snprintf(detail, cap, "-");
    if (created == NULL)
        return S_NO_CREATED;
    const dead_letter *d = find_dead_letter(l, created->id);
    snprintf(detail, cap, "order--created %s seq %lld%s%.200s", created->id,
             (long long)created->seq, d != NULL ? ", DEAD-LETTERED: " : "",
             d != NULL ? d->error : "");
    if (!created->dispatched)
        return S_CREATED_NOT_DISPATCHED;
    if (!in_inbox(l, DB_CUSTOMERS, queue_names[0], created->id))
        return S_CREATED_NOT_CONSUMED;
    const outbox_row *answer = NULL;
    for (int i = 0; i < 3 && answer == NULL; i++)
        answer = find_outbox(l, DB_CUSTOMERS, answer_topics[i], o->id);
    if (answer == NULL)
        return S_NO_ANSWER;
    d = find_dead_letter(l, answer->id);
    snprintf(detail, cap, "%s %s seq %lld created %s%s%.200s", answer->topic, answer->id,
             (long long)answer->seq, answer->created, d != NULL ? ", DEAD-LETTERED: " : "",
             d != NULL ? d->error : "");
    if (!answer->dispatched)
        return S_ANSWER_NOT_DISPATCHED;
    if (!in_inbox(l, DB_ORDERS, answer_queue(answer->topic), answer->id))
        return S_ANSWER_NOT_CONSUMED;
    return S_ANSWER_CONSUMED;
}

static void diagnose_pending(const ledger *l)
{
    size_t counts[S_COUNT] = {0}, shown = 0, dead = 0;
    fprintf(stderr, "-- orders PENDING: %zu\n", l->pending);
    for (size_t i = 0; i < l->n_orders; i++) {
        const order_row *o = &l->orders[i];
        if (strcmp(o->state, "PENDING") != 0)
            continue;
        char detail[640];
        int s = stage_of(l, o, detail, sizeof detail);
        counts[s]++;
        dead += strstr(detail, "DEAD-LETTERED") != NULL;
        const reservation_row *r = find_reservation(l, o->id);
        if (shown++ < SHOW_MAX)
            fprintf(stderr, "   order %s (customer %s, %lld)%s: %s; %s\n", o->id, o->customer,
                    (long long)o->total, r != NULL ? " HAS A RESERVATION" : "", stage_names[s],
                    detail);
    }
    for (int s = 0; s < S_COUNT; s++)
        if (counts[s] > 0)
            fprintf(stderr, "   %zu stuck at: %s\n", counts[s], stage_names[s]);
    if (dead > 0)
        fprintf(stderr, "   %zu of them with the stuck message in a dead-letter queue\n", dead);
}

static void diagnose_reservations(const ledger *l)
{
    size_t shown = 0;
    fprintf(stderr,
            "-- reservations: %zu for orders not APPROVED, %zu APPROVED orders without one,"
            " %zu with a wrong amount or customer, %zu customers over their limit\n",
            l->extra, l->missing, l->mismatched, l->overspent);
    size_t by_state[5] = {0}; /* PENDING, REJECTED, CANCELLED, APPROVED?, missing order */
    static const char *const states[5] = {"PENDING", "REJECTED", "CANCELLED", "APPROVED",
                                          "no such order"};
    for (size_t i = 0; i < l->n_reservations; i++) {
        const reservation_row *r = &l->reservations[i];
        const order_row *o = find_order(l, r->order);
        if (o != NULL && strcmp(o->state, "APPROVED") == 0)
            continue;
        int k = 4;
        for (int s = 0; s < 4 && o != NULL; s++)
            if (strcmp(o->state, states[s]) == 0)
                k = s;
        by_state[k]++;
        if (shown++ < SHOW_MAX)
            fprintf(stderr, "   reservation of %lld for order %s (customer %s), order is %s\n",
                    (long long)r->amount, r->order, r->customer, states[k]);
    }
    for (int k = 0; k < 5; k++)
        if (by_state[k] > 0)
            fprintf(stderr, "   %zu reservations for orders %s\n", by_state[k], states[k]);
    shown = 0;
    for (size_t i = 0; i < l->n_orders && shown < SHOW_MAX; i++) {
        const order_row *o = &l->orders[i];
        if (strcmp(o->state, "APPROVED") == 0 && find_reservation(l, o->id) == NULL) {
            fprintf(stderr, "   APPROVED order %s (customer %s) has no reservation\n", o->id,
                    o->customer);
            shown++;
        }
    }
}

static void diagnose_outbox(const ledger *l)
{
    for (int w = 0; w < DB_COUNT; w++) {
        fprintf(stderr, "-- %s outbox: %zu rows, %zu not dispatched\n", db_names[w], l->n_outbox[w],
                l->undispatched[w]);
        size_t shown = 0;
        for (size_t i = 0; i < l->n_outbox[w] && shown < SHOW_MAX; i++) {
            const outbox_row *o = &l->outbox[w][i];
            if (o->dispatched)
                continue;
            fprintf(stderr, "   seq %lld %s %s (order %s) created %s\n", (long long)o->seq,
                    o->topic, o->id, o->order, o->created);
            shown++;
        }
    }
}

static void diagnose_dlq(const ledger *l)
{
    fprintf(stderr, "-- dead letters: %zu\n", l->n_dlq);
    for (size_t i = 0; i < l->n_dlq && i < SHOW_MAX; i++)
        fprintf(stderr, "   %s: %s %s, %d receives: %s\n", l->dlq[i].queue, l->dlq[i].topic,
                l->dlq[i].id, l->dlq[i].receive_count, l->dlq[i].error);
}

/* The inbox of the service consuming topic's messages, and its queue. */
static int topic_consumer(const char *topic, const char **queue)
{
    static const char *const topics[Q_COUNT] = {
        "order--created", "order--cancelled", "customer--credit-reserved",
        "customer--credit-reservation-failed", "customer--validation-failed"};
    for (int q = 0; q < Q_COUNT; q++) {
        if (strcmp(topic, topics[q]) == 0) {
            *queue = queue_names[q];
            return q < 2 ? DB_CUSTOMERS : DB_ORDERS;
        }
    }
    *queue = NULL;
    return -1;
}

/* The messages the stream still holds (interest retention: not acked by
 * every queue of their topic, as far as the stream knows), and whether the
 * consuming service has processed each. One that is not processed while
 * its consumer has nothing pending is lost. */
static void print_stream_leftovers(jsCtx *js, const jsStreamInfo *si, const ledger *l)
{
    size_t kept = 0, processed = 0, unprocessed = 0;
    for (uint64_t seq = si->State.FirstSeq; seq <= si->State.LastSeq && seq > 0; seq++) {
        natsMsg *m = NULL;
        if (js_GetMsg(&m, js, "TXMSG", seq, NULL, NULL) != NATS_OK)
            continue;
        kept++;
        const char *id = NULL, *subject = natsMsg_GetSubject(m);
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK)
            id = "";
        const char *queue = NULL;
        int which = topic_consumer(subject + strlen("txmsg."), &queue);
        bool done = which >= 0 && in_inbox(l, which, queue, id);
        processed += done;
        unprocessed += !done;
        if (!done && unprocessed <= SHOW_MAX)
            fprintf(stderr, "   stream seq %" PRIu64 ": %s %s NOT in the inbox of %s\n", seq,
                    subject, id, queue != NULL ? queue : "(no queue)");
        natsMsg_Destroy(m);
    }
    fprintf(stderr,
            "   the stream keeps %zu messages: %zu processed already (their acks were lost),"
            " %zu not processed\n",
            kept, processed, unprocessed);
}

/* The messages that reached MaxDeliver, and what became of each: gone from
 * the stream (settled by that last delivery), or still there, processed or
 * not by its consumer. */
static void print_max_deliveries(chaos *c, jsCtx *js, const ledger *l)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n_maxed;
    pthread_mutex_unlock(&c->mu);
    size_t gone = 0, kept_done = 0, kept_lost = 0;
    for (size_t i = 0; i < n; i++) {
        const max_delivery *d = &c->maxed[i];
        natsMsg *m = NULL;
        if (js_GetMsg(&m, js, "TXMSG", d->stream_seq, NULL, NULL) != NATS_OK) {
            gone++;
            continue;
        }
        const char *id = NULL;
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK)
            id = "";
        int which = strncmp(d->consumer, "customer--", 10) == 0 ? DB_CUSTOMERS : DB_ORDERS;
        bool done = l != NULL && in_inbox(l, which, d->consumer, id);
        kept_done += done;
        kept_lost += !done;
        if (!done && kept_lost <= SHOW_MAX)
            fprintf(stderr,
                    "   MaxDeliver: %s stream seq %" PRIu64 " (%s %s) delivered %d times, still"
                    " in the stream and not processed: it will never be delivered again\n",
                    d->consumer, d->stream_seq, natsMsg_GetSubject(m), id, d->deliveries);
        natsMsg_Destroy(m);
    }
    fprintf(stderr,
            "-- max-deliveries advisories: %zu; %zu gone from the stream, %zu still there but"
            " processed, %zu still there and NOT processed\n",
            n, gone, kept_done, kept_lost);
}

/* What JetStream says about the stream and each queue's consumer; with a
 * full ledger (l not NULL), also the messages the stream still keeps. */
static void print_jetstream(chaos *c, const ledger *l)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (natsConnection_ConnectTo(&nc, c->broker_url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        fprintf(stderr, "-- JetStream: cannot connect to %s\n", c->broker_url);
        natsConnection_Destroy(nc);
        return;
    }
    static const char *const streams[] = {"TXMSG", "TXMSG_DLQ"};
    for (int i = 0; i < 2; i++) {
        jsStreamInfo *si = NULL;
        if (js_GetStreamInfo(&si, js, streams[i], NULL, NULL) == NATS_OK) {
            fprintf(stderr,
                    "-- stream %s: %" PRIu64 " messages, sequences %" PRIu64 "..%" PRIu64 "\n",
                    streams[i], si->State.Msgs, si->State.FirstSeq, si->State.LastSeq);
            if (i == 0 && l != NULL && si->State.Msgs > 0)
                print_stream_leftovers(js, si, l);
            jsStreamInfo_Destroy(si);
        }
    }
    print_max_deliveries(c, js, l);
    for (int q = 0; q < Q_COUNT; q++) {
        jsConsumerInfo *ci = NULL;
        if (js_GetConsumerInfo(&ci, js, "TXMSG", queue_names[q], NULL, NULL) != NATS_OK) {
            fprintf(stderr, "   consumer %s: not found\n", queue_names[q]);
            continue;
        }
        fprintf(stderr,
                "   consumer %s: pending %" PRIu64 ", ack pending %" PRId64 ", redelivered %" PRId64
                ", waiting %" PRId64 ", delivered stream seq %" PRIu64
                ", ack floor stream seq %" PRIu64 "\n",
                queue_names[q], ci->NumPending, ci->NumAckPending, ci->NumRedelivered,
                ci->NumWaiting, ci->Delivered.Stream, ci->AckFloor.Stream);
        jsConsumerInfo_Destroy(ci);
    }
    jsCtx_Destroy(js);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

static void print_summary(const chaos *c)
{
    for (int op = 0; op < OP_COUNT; op++)
        fprintf(stderr, "chaos %s: %-32s 2xx %d, 4xx %d, 5xx %d, no answer %d\n", c->name,
                op_names[op], atomic_load(&c->outcomes[op][OUT_2XX]),
                atomic_load(&c->outcomes[op][OUT_4XX]), atomic_load(&c->outcomes[op][OUT_5XX]),
                atomic_load(&c->outcomes[op][OUT_NONE]));
    for (int i = 0; i < P_COUNT; i++)
        fprintf(stderr, "chaos %s: %-16s SIGKILLed %d, ended by itself %d, started %d times\n",
                c->name, proc_names[i], c->kills[i], c->exits[i], c->procs[i].starts);
    fprintf(stderr, "chaos %s: nats-server SIGKILLed %d times, PostgreSQL stopped %d times\n",
            c->name, c->nats_kills, c->pg_stops);
}

static void print_verdict(const chaos *c, const ledger *l, const char *when)
{
    fprintf(stderr,
            "chaos %s: %s: %zu orders (%zu PENDING), %zu reservations (%zu extra, %zu missing,"
            " %zu wrong), %zu customers (%zu over limit), not dispatched: customers %zu, orders"
            " %zu; %zu dead letters; acknowledged but lost: %zu orders, %zu cancels%s%s\n",
            c->name, when, l->n_orders, l->pending, l->n_reservations, l->extra, l->missing,
            l->mismatched, l->n_customers, l->overspent, l->undispatched[DB_CUSTOMERS],
            l->undispatched[DB_ORDERS], l->n_dlq, l->lost_orders, l->lost_cancels,
            l->error[0] != '\0' ? "; error: " : "", l->error);
}

/* ---- the test ---- */

/* Polls the ledger until it settles or DRAIN_MS pass; returns the last
 * full reading in *l. */
static bool drain(chaos *c, txm_db *const dbs[DB_COUNT], ledger *l)
{
    long long start = txm_test_now_ms(), end = start + DRAIN_MS;
    for (;;) {
        supervise(c);
        ledger_load(c, dbs, false, l);
        bool done = settled(l);
        ledger_free(l);
        if (done || txm_test_now_ms() >= end)
            break;
        txm_test_sleep_ms(1000);
    }
    ledger_load(c, dbs, true, l);
    bool ok = settled(l);
    chaos_log(c, "ledger %s after %lld ms of drain", ok ? "settled" : "did NOT settle",
              txm_test_now_ms() - start);
    return ok;
}

static void ledger_settles_after_chaos(void **state)
{
    chaos *c = *state;
    if (!c->ready) {
        fprintf(stderr,
                "skipped: %s needs TXMSG_TEST_NATS_URL (and TXMSG_TEST_PG_URL,"
                " TXMSG_TEST_PG_DATA, TXMSG_TEST_PG_BIN)\n",
                c->name);
        skip();
    }
    if (c->setup_error[0] != '\0') {
        c->failed = true;
        fail_msg("%s stack did not start: %s", c->name, c->setup_error);
    }
    int load_s = load_seconds();
    chaos_log(c, "load: %d clients for %d s", CLIENTS, load_s);
    run_load(c, load_s);
    if (!bring_up(c)) {
        c->failed = true;
        print_summary(c);
        fail_msg("%s: not every process was up and healthy %d ms after the load; logs in %s",
                 c->name, START_MS, c->dir);
    }
    txm_db *dbs[DB_COUNT] = {NULL, NULL};
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 2;
    txm_error err = {0};
    assert_int_equal(txm_db_open(c->customers_url, &o, &dbs[DB_CUSTOMERS], &err), TXM_OK);
    assert_int_equal(txm_db_open(c->orders_url, &o, &dbs[DB_ORDERS], &err), TXM_OK);
    ledger l;
    bool ok = drain(c, dbs, &l);
    print_summary(c);
    print_verdict(c, &l, ok ? "settled" : "NOT settled");
    if (!ok) {
        c->failed = true;
        diagnose_pending(&l);
        diagnose_reservations(&l);
        diagnose_outbox(&l);
        diagnose_dlq(&l);
    }
    print_jetstream(c, ok ? NULL : &l);
    char verdict[600];
    snprintf(verdict, sizeof verdict,
             "%zu PENDING, %zu extra and %zu missing reservations, %zu/%zu not dispatched,"
             " %zu dead letters, %zu orders and %zu cancels lost%s%s",
             l.pending, l.extra, l.missing, l.undispatched[DB_CUSTOMERS], l.undispatched[DB_ORDERS],
             l.n_dlq, l.lost_orders, l.lost_cancels, l.error[0] != '\0' ? "; " : "", l.error);
    ledger_free(&l);
    txm_db_close(dbs[DB_CUSTOMERS]);
    txm_db_close(dbs[DB_ORDERS]);
    if (!ok)
        fail_msg("%s: the ledger did not settle within %d ms: %s; logs in %s", c->name, DRAIN_MS,
                 verdict, c->dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        {"ledger_settles_after_chaos/postgresql+nats", ledger_settles_after_chaos, setup_pg_nats,
         teardown_stack, NULL},
        {"ledger_settles_after_chaos/sqlite+nats", ledger_settles_after_chaos, setup_sqlite_nats,
         teardown_stack, NULL},
    };
    /* "*postgresql*" or "*sqlite*" runs one stack only. */
    const char *only = getenv("TXM_CHAOS_FILTER");
    if (only != NULL && only[0] != '\0')
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
