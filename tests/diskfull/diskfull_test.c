/* A full disk under the example on SQLite and the embedded broker: the
 * services' databases on one small tmpfs and the broker file on another,
 * each filled to the last block with a ballast file and emptied again.
 * While the broker's disk is full, requests still commit to the outbox,
 * and the relay's publishes and the consumer's leases fail and are retried;
 * while the databases' disk is full, writes answer 503 STORAGE_FULL and
 * leave nothing behind, reads and /health answer, and a service and a relay
 * restart; while only the databases' disk is full, the consumer holds what
 * it received instead of dead-lettering it. Once space returns, the backlog
 * goes through exactly once and a new saga completes. Mounting needs root
 * (CAP_SYS_ADMIN): without it the program exits 77, which CTest reports as
 * skipped. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "diskfull.h"
#include "testbroker.h"
#include "testfs.h"
#include "testhttp.h"
#include "testsvc.h"
#include "txmsg/txmsg.h"

enum {
    FS_KB = 16 * 1024, /* each small filesystem: room for the files, little more */
    START_MS = 30000,  /* a service answering its health check */
    ASYNC_MS = 30000,  /* an asynchronous outcome: relay, broker, consumer */
    HTTP_MS = 10000,   /* one HTTP exchange */
    STOP_MS = 10000,   /* a process exiting after SIGTERM */
    POLL_MS = 50,
    /* Held this long with the databases' disk full, a failing message
     * would have had its max_receive_count (3) attempts (backoff 1 + 2 s). */
    HOLD_MS = 5000,
    BACKLOG = 5,       /* orders: 1 in the broker as its disk fills, 4 committed after */
    LIMIT = 1000000,   /* the customer's credit limit, cents */
    FIRST_TOTAL = 100, /* the warm-up order */
    TOTAL = 1000,      /* each order of the backlog */
};

enum { P_CUSTOMERS, P_ORDERS, P_CUSTOMERS_RELAY, P_ORDERS_RELAY, P_COUNT };

#define UUID_BUF (TXM_UUID_LEN + 1)
#define QUEUE "customer--order-created"
#define DLQ QUEUE "--dlq"

typedef struct fixture {
    char *dir;       /* logs and the two mount points */
    char db_fs[256]; /* tmpfs with customers.db and orders.db */
    char broker_fs[256];
    bool mounted[2];
    char customers_url[320], orders_url[320], broker_url[320];
    txm_testsvc p[P_COUNT];
    txm_db *customers_db, *orders_db; /* for counts and integrity checks */
    txm_transport *t;                 /* for the dead-letter queue's depth */
    bool passed;
} fixture;

static bool wait_healthy(fixture *fx, txm_testsvc *s)
{
    long long end = txm_test_now_ms() + START_MS;
    char how[64] = "still starting";
    while (txm_test_now_ms() < end) {
        if (txm_testsvc_healthy(s, 2000))
            return true;
        int status = 0;
        if (txm_testsvc_ended(s, &status)) {
            txm_testsvc_describe(status, how, sizeof how);
            break;
        }
        txm_test_sleep_ms(POLL_MS);
    }
    char last[512];
    txm_testsvc_last_line(s, last, sizeof last);
    fprintf(stderr, "setup: %s did not become healthy within %d ms (%s); its last log line: %s\n",
            s->name, START_MS, how, last);
    (void)fx;
    return false;
}

static bool start_all(fixture *fx)
{
    int cport = txm_test_free_port(), oport = txm_test_free_port();
    while (oport == cport)
        oport = txm_test_free_port();
    txm_testsvc_init(&fx->p[P_CUSTOMERS], "customers", TXM_CUSTOMERS_BIN, fx->customers_url,
                     fx->broker_url, "customers", cport, fx->dir);
    txm_testsvc_init(&fx->p[P_ORDERS], "orders", TXM_ORDERS_BIN, fx->orders_url, fx->broker_url,
                     "orders", oport, fx->dir);
    txm_testsvc_init(&fx->p[P_CUSTOMERS_RELAY], "customers-relay", TXM_RELAY_BIN, fx->customers_url,
                     fx->broker_url, NULL, 0, fx->dir);
    txm_testsvc_init(&fx->p[P_ORDERS_RELAY], "orders-relay", TXM_RELAY_BIN, fx->orders_url,
                     fx->broker_url, NULL, 0, fx->dir);
    for (int i = 0; i < P_COUNT; i++)
        if (!txm_testsvc_start(&fx->p[i]))
            return false;
    return wait_healthy(fx, &fx->p[P_CUSTOMERS]) && wait_healthy(fx, &fx->p[P_ORDERS]);
}

static int teardown(void **state);

/* A setup that fails cleans up itself: cmocka may not call teardown then. */
static int setup_failed(void **state)
{
    teardown(state);
    *state = NULL;
    return -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (fx == NULL || (fx->dir = txm_test_mkdtemp()) == NULL)
        return setup_failed(state);
    fprintf(stderr, "diskfull: logs in %s\n", fx->dir);
    snprintf(fx->db_fs, sizeof fx->db_fs, "%s/dbfs", fx->dir);
    snprintf(fx->broker_fs, sizeof fx->broker_fs, "%s/brokerfs", fx->dir);
    char why[512];
    const char *fs[2] = {fx->db_fs, fx->broker_fs};
    for (int i = 0; i < 2; i++) {
        if (mkdir(fs[i], 0755) != 0)
            return setup_failed(state);
        if (!txm_testfs_mount(fs[i], FS_KB, why, sizeof why)) {
            fprintf(stderr, "setup: %s\n", why);
            return setup_failed(state);
        }
        fx->mounted[i] = true;
    }
    snprintf(fx->customers_url, sizeof fx->customers_url, "sqlite:%s/customers.db", fx->db_fs);
    snprintf(fx->orders_url, sizeof fx->orders_url, "sqlite:%s/orders.db", fx->db_fs);
    snprintf(fx->broker_url, sizeof fx->broker_url, "embedded:%s/broker.db", fx->broker_fs);
    if (!start_all(fx))
        return setup_failed(state);
    txm_error err = {0};
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    if (txm_db_open(fx->customers_url, &o, &fx->customers_db, &err) != TXM_OK ||
        txm_db_open(fx->orders_url, &o, &fx->orders_db, &err) != TXM_OK ||
        txm_transport_open(fx->broker_url, NULL, &fx->t, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return setup_failed(state);
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx == NULL)
        return 0;
    for (int i = 0; i < P_COUNT; i++) {
        if (fx->p[i].pid > 0)
            kill(fx->p[i].pid, SIGCONT); /* a failure may leave it frozen */
        txm_testsvc_stop(&fx->p[i], STOP_MS);
    }
    txm_transport_close(fx->t);
    txm_db_close(fx->customers_db);
    txm_db_close(fx->orders_db);
    if (fx->mounted[0])
        txm_testfs_umount(fx->db_fs);
    if (fx->mounted[1])
        txm_testfs_umount(fx->broker_fs);
    if (fx->passed)
        txm_test_rmdir(fx->dir);
    else if (fx->dir != NULL)
        fprintf(stderr, "diskfull: failed; logs kept in %s\n", fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

/* ---- HTTP ---- */

typedef struct reply {
    int status;
    json_t *json; /* the body, NULL when it is not JSON */
    char body[512];
} reply;

static void call(fixture *fx, int port, const char *method, const char *path, const char *body,
                 reply *r)
{
    txm_testhttp_response resp;
    const char *headers[] = {"Content-Type: application/json", NULL};
    if (txm_testhttp_request(method, "127.0.0.1", port, path, headers, body,
                             body != NULL ? strlen(body) : 0, HTTP_MS, &resp) != 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", resp.error);
        txm_testhttp_response_fini(&resp);
        fail_msg("%s %s: %s (logs in %s)", method, path, why, fx->dir);
    }
    r->status = resp.status;
    snprintf(r->body, sizeof r->body, "%s", resp.body);
    r->json = json_loadb(resp.body, resp.body_len, 0, NULL);
    txm_testhttp_response_fini(&resp);
}

static void post(fixture *fx, int port, const char *path, json_t *body, reply *r)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    call(fx, port, "POST", path, text, r);
    free(text);
}

static const char *str_of(const reply *r, const char *key)
{
    const char *s = json_string_value(json_object_get(r->json, key));
    if (s == NULL)
        fail_msg("no string %s in %s", key, r->body);
    return s;
}

/* POSTs and expects 200 with an "id", copied to id. */
static void create(fixture *fx, int role, const char *path, json_t *body, char id[UUID_BUF])
{
    reply r;
    post(fx, fx->p[role].port, path, body, &r);
    if (r.status != 200)
        fail_msg("POST %s: status %d, want 200: %s (logs in %s)", path, r.status, r.body, fx->dir);
    snprintf(id, UUID_BUF, "%s", str_of(&r, "id"));
    json_decref(r.json);
}

static void create_customer(fixture *fx, char id[UUID_BUF])
{
    create(fx, P_CUSTOMERS, "/customers",
           json_pack("{s:s, s:I}", "name", "Disk Full", "credit_limit", (json_int_t)LIMIT), id);
}

static void create_order(fixture *fx, const char *customer, int total, char id[UUID_BUF])
{
    create(fx, P_ORDERS, "/orders",
           json_pack("{s:s, s:I}", "customer_id", customer, "order_total", (json_int_t)total), id);
}

/* A write on the full disk: 503 with a JSON error naming the full disk. */
static void expect_full(fixture *fx, int role, const char *path, json_t *body)
{
    reply r;
    post(fx, fx->p[role].port, path, body, &r);
    if (r.status != 503 || r.json == NULL)
        fail_msg("POST %s on a full disk: status %d, want 503 JSON: %s", path, r.status, r.body);
    assert_string_equal(str_of(&r, "error"), "STORAGE_FULL");
    if (strstr(str_of(&r, "detail"), "full") == NULL)
        fail_msg("POST %s on a full disk: the detail does not say so: %s", path, r.body);
    json_decref(r.json);
}

static void get_json(fixture *fx, int role, const char *path, reply *r)
{
    call(fx, fx->p[role].port, "GET", path, NULL, r);
    if (r->status != 200 || r->json == NULL)
        fail_msg("GET %s: status %d, want 200 JSON: %s", path, r->status, r->body);
}

static void order_state(fixture *fx, const char *id, char *out, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "/order/%s", id);
    reply r;
    get_json(fx, P_ORDERS, path, &r);
    snprintf(out, cap, "%s", str_of(&r, "state"));
    json_decref(r.json);
}

static void wait_approved(fixture *fx, const char *id)
{
    long long end = txm_test_now_ms() + ASYNC_MS;
    char state[32];
    for (order_state(fx, id, state, sizeof state); strcmp(state, "APPROVED") != 0;
         order_state(fx, id, state, sizeof state)) {
        if (strcmp(state, "PENDING") != 0 || txm_test_now_ms() >= end)
            fail_msg("order %s is %s, want APPROVED (logs in %s)", id, state, fx->dir);
        txm_test_sleep_ms(POLL_MS);
    }
}

static long long available_credit(fixture *fx, const char *customer)
{
    char path[96];
    snprintf(path, sizeof path, "/customer/%s", customer);
    reply r;
    get_json(fx, P_CUSTOMERS, path, &r);
    json_t *v = json_object_get(r.json, "available_credit");
    if (!json_is_integer(v))
        fail_msg("GET %s: no available_credit: %s", path, r.body);
    long long n = (long long)json_integer_value(v);
    json_decref(r.json);
    return n;
}

/* ---- databases, broker, processes ---- */

static void expect_intact(txm_db *db)
{
    txm_rows *rows = NULL;
    txm_error err = {0};
    if (txm_db_exec(db, "PRAGMA integrity_check", NULL, 0, &rows, NULL, &err) != TXM_OK)
        fail_msg("integrity_check: %s", err.text);
    assert_int_equal(txm_rows_count(rows), 1);
    assert_string_equal(txm_rows_text(rows, 0, 0), "ok");
    txm_rows_free(rows);
}

static void expect_nothing_dead_lettered(fixture *fx)
{
    int64_t depth = -1;
    txm_error err = {0};
    if (txm_transport_queue_depth(fx->t, DLQ, &depth, &err) != TXM_OK)
        fail_msg("depth of %s: %s", DLQ, err.text);
    if (depth != 0)
        fail_msg("%lld messages dead-lettered to %s (logs in %s)", (long long)depth, DLQ, fx->dir);
}

static void expect_running(fixture *fx)
{
    for (int i = 0; i < P_COUNT; i++) {
        int status = 0;
        if (txm_testsvc_ended(&fx->p[i], &status)) {
            char how[64];
            txm_testsvc_describe(status, how, sizeof how);
            fail_msg("%s ended (%s); see %s", fx->p[i].name, how, fx->p[i].log);
        }
    }
}

static void fill(fixture *fx, const char *fs)
{
    if (!txm_testfs_fill(fs))
        fail_msg("cannot fill %s to ENOSPC", fs);
    if (txm_testfs_free_kb(fs) != 0)
        fail_msg("%s still has %ld KiB free", fs, txm_testfs_free_kb(fs));
    (void)fx;
}

/* ---- the scenario ---- */

static const char *const COUNT_CUSTOMERS = "SELECT COUNT(*) FROM customers";
static const char *const COUNT_ORDERS = "SELECT COUNT(*) FROM orders";
static const char *const COUNT_OUTBOX = "SELECT COUNT(*) FROM txmsg_outbox";

/* The databases' disk full: both writes answer 503 and leave no row of
 * theirs nor of their events; reads and the health check still answer. */
static void writes_fail_cleanly(fixture *fx, const char *customer)
{
    long long customers = diskfull_count(fx->customers_db, COUNT_CUSTOMERS);
    long long orders = diskfull_count(fx->orders_db, COUNT_ORDERS);
    long long c_out = diskfull_count(fx->customers_db, COUNT_OUTBOX);
    long long o_out = diskfull_count(fx->orders_db, COUNT_OUTBOX);
    expect_full(fx, P_CUSTOMERS, "/customers",
                json_pack("{s:s, s:I}", "name", "No Room", "credit_limit", (json_int_t)5));
    expect_full(fx, P_ORDERS, "/orders",
                json_pack("{s:s, s:I}", "customer_id", customer, "order_total", (json_int_t)7));
    assert_int_equal(diskfull_count(fx->customers_db, COUNT_CUSTOMERS), customers);
    assert_int_equal(diskfull_count(fx->orders_db, COUNT_ORDERS), orders);
    assert_int_equal(diskfull_count(fx->customers_db, COUNT_OUTBOX), c_out);
    assert_int_equal(diskfull_count(fx->orders_db, COUNT_OUTBOX), o_out);
    expect_intact(fx->customers_db);
    expect_intact(fx->orders_db);
    /* Reads need no space: the customer is still served, and so is the
     * health check (the database answers). */
    assert_int_equal(available_credit(fx, customer), LIMIT - FIRST_TOTAL);
    reply r;
    get_json(fx, P_CUSTOMERS, "/customers/health", &r);
    assert_string_equal(str_of(&r, "status"), "ok");
    json_decref(r.json);
}

/* Both disks full: a service and a relay stopped now start again (an
 * operator restarting them, or a crash): they need no space to start. */
static void restart_on_full_disks(fixture *fx)
{
    const int roles[] = {P_CUSTOMERS, P_ORDERS_RELAY};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        txm_testsvc *p = &fx->p[roles[i]];
        int status = txm_testsvc_stop(p, STOP_MS);
        char how[64];
        txm_testsvc_describe(status, how, sizeof how);
        if (status != 0)
            fail_msg("%s stopped on full disks with %s, want exit 0; see %s", p->name, how, p->log);
        if (!txm_testsvc_start(p))
            fail_msg("cannot start %s again", p->name);
    }
    if (!wait_healthy(fx, &fx->p[P_CUSTOMERS]))
        fail_msg("customers did not start on a full disk; see %s", fx->p[P_CUSTOMERS].log);
}

/* Creates an order while the customers service is frozen (SIGSTOP, left
 * so), and waits until its event waits in the customers' queue. */
static void queue_order(fixture *fx, const char *customer, char id[UUID_BUF])
{
    assert_int_equal(kill(fx->p[P_CUSTOMERS].pid, SIGSTOP), 0);
    create_order(fx, customer, TOTAL, id);
    long long end = txm_test_now_ms() + ASYNC_MS;
    int64_t depth = 0;
    txm_error err = {0};
    while (depth == 0) {
        if (txm_transport_queue_depth(fx->t, QUEUE, &depth, &err) != TXM_OK)
            fail_msg("depth of %s: %s", QUEUE, err.text);
        if (depth == 0 && txm_test_now_ms() >= end)
            fail_msg("order %s: its event never reached %s (logs in %s)", id, QUEUE, fx->dir);
        txm_test_sleep_ms(POLL_MS);
    }
}

/* True once the customers' consumer ran a unit for the backlog: held for
 * an outage ("paused") or failed as a message ("failed (attempt"). */
static bool backlog_handled(const char *log)
{
    long long end = txm_test_now_ms() + ASYNC_MS;
    while (txm_test_file_count(log, "paused, a dependency") == 0 &&
           txm_test_file_count(log, "failed (attempt") == 0) {
        if (txm_test_now_ms() >= end)
            return false;
        txm_test_sleep_ms(POLL_MS);
    }
    return true;
}

static void full_disk_fails_cleanly_and_recovers(void **state)
{
    fixture *fx = *state;
    char customer[UUID_BUF], first[UUID_BUF], backlog[BACKLOG][UUID_BUF];
    create_customer(fx, customer);
    create_order(fx, customer, FIRST_TOTAL, first);
    wait_approved(fx, first);

    /* The broker's disk full, with a message waiting in it: the customers'
     * consumer cannot lease it, and retries; requests still commit (the
     * outbox is on the other disk); the relay cannot publish, and retries. */
    queue_order(fx, customer, backlog[0]);
    fill(fx, fx->broker_fs);
    kill(fx->p[P_CUSTOMERS].pid, SIGCONT);
    const char *customers_log = fx->p[P_CUSTOMERS].log;
    if (!txm_test_file_wait(customers_log, "receive failed, retrying: embedded broker", ASYNC_MS) ||
        txm_test_file_count(customers_log, "receive failed, retrying: embedded broker: step: "
                                           "database or disk is full") == 0)
        fail_msg("the customers' consumer did not retry a receive on the full broker disk; see %s",
                 customers_log);
    for (int i = 1; i < BACKLOG; i++)
        create_order(fx, customer, TOTAL, backlog[i]);
    const char *relay_log = fx->p[P_ORDERS_RELAY].log;
    if (!txm_test_file_wait(relay_log, "will retry", ASYNC_MS))
        fail_msg("the orders relay did not retry a publish on the full broker disk; see %s",
                 relay_log);
    if (txm_test_file_count(relay_log, "will retry: NO_SPACE: ") == 0)
        fail_msg("the orders relay's retry does not say the disk is full; see %s", relay_log);

    /* The databases' disk full as well. */
    fill(fx, fx->db_fs);
    writes_fail_cleanly(fx, customer);
    restart_on_full_disks(fx);

    /* The broker's space back, the databases' not: the backlog is
     * published, the customers' consumer receives it but cannot commit,
     * and holds it rather than dead-letter it. */
    txm_testfs_empty(fx->broker_fs);
    if (!backlog_handled(customers_log))
        fail_msg("the customers' consumer got nothing of the backlog; see %s", customers_log);
    txm_test_sleep_ms(HOLD_MS);
    expect_running(fx);
    expect_nothing_dead_lettered(fx);
    if (txm_test_file_count(customers_log, "paused, a dependency is unavailable: sqlite") == 0 ||
        txm_test_file_count(customers_log, "disk is full") == 0)
        fail_msg("the customers' consumer did not pause for the full disk; see %s", customers_log);
    char st[32];
    for (int i = 0; i < BACKLOG; i++) {
        order_state(fx, backlog[i], st, sizeof st);
        assert_string_equal(st, "PENDING");
    }

    /* Space back everywhere: the backlog completes, each order reserved
     * once, and a new saga goes through. */
    txm_testfs_empty(fx->db_fs);
    for (int i = 0; i < BACKLOG; i++)
        wait_approved(fx, backlog[i]);
    assert_int_equal(available_credit(fx, customer), LIMIT - FIRST_TOTAL - BACKLOG * TOTAL);
    assert_int_equal(diskfull_count(fx->customers_db, "SELECT COUNT(*) FROM credit_reservations"),
                     1 + BACKLOG);
    char customer2[UUID_BUF], order2[UUID_BUF];
    create_customer(fx, customer2);
    create_order(fx, customer2, TOTAL, order2);
    wait_approved(fx, order2);
    expect_nothing_dead_lettered(fx);
    expect_running(fx);
    expect_intact(fx->customers_db);
    expect_intact(fx->orders_db);
    /* Each process stops cleanly (under ASan: without a leak). */
    for (int i = 0; i < P_COUNT; i++) {
        int status = txm_testsvc_stop(&fx->p[i], STOP_MS);
        if (status != 0) {
            char how[64];
            txm_testsvc_describe(status, how, sizeof how);
            fail_msg("%s stopped with %s, want exit 0; see %s", fx->p[i].name, how, fx->p[i].log);
        }
    }
    fx->passed = true;
}

int main(void)
{
    char why[512];
    if (!txm_testfs_usable(why, sizeof why)) {
        fprintf(stderr, "skipped: a full disk needs a tmpfs of the test's own, and %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(full_disk_fails_cleanly_and_recovers, setup, teardown),
    };
    return cmocka_run_group_tests_name("diskfull", tests, NULL, NULL);
}
