/* bench_commit_raw: the database's ceiling for POST /orders of the orders
 * example, the same two writes (the order row and its outbox row) committed
 * in one transaction per order by THREADS threads with a connection each,
 * with no txmsg, HTTP or JSON in the way:
 *   SQLite: the orders service's schema and the library's settings (WAL,
 *   synchronous=NORMAL, foreign_keys=ON), BEGIN IMMEDIATE; the threads take
 *   turns at a mutex, the best a process can do with one write lock.
 *   PostgreSQL: libpq, prepared statements, BEGIN / INSERT / INSERT / COMMIT.
 * and, to tell the library's share from the HTTP layer's, the same through
 * txmsg without HTTP: a unit of work per order, the order row by
 * txm_uow_exec and its event by txm_outbox_publish (the message is built
 * before the unit begins), on a txm_db with a pool of THREADS.
 *   bench_commit_raw sqlite PATH THREADS SECONDS
 *   bench_commit_raw pg URL THREADS SECONDS
 *   bench_commit_raw txmsg sqlite:PATH|postgresql://... THREADS SECONDS
 * PATH is created (and must not exist); on PostgreSQL the tables are
 * dropped and created again. Prints "rate=COMMITS_PER_S seconds=S commits=N". */
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define MAX_THREADS 64

/* The orders example's table and the txmsg outbox as migrated (v1). */
static const char SQLITE_TABLES[] =
    "CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')),"
    " order_total INTEGER NOT NULL CHECK (order_total > 0), version INTEGER NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT);"
    "CREATE TABLE txmsg_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " message_id TEXT NOT NULL UNIQUE, source TEXT NOT NULL DEFAULT '',"
    " aggregate_id TEXT NOT NULL, correlation_id TEXT NOT NULL, topic TEXT NOT NULL,"
    " payload TEXT NOT NULL, created_at TEXT NOT NULL,"
    " approximate_dispatch_count INTEGER NOT NULL DEFAULT 0,"
    " is_dispatched INTEGER NOT NULL DEFAULT 0, last_dispatched_at TEXT);"
    "CREATE INDEX txmsg_outbox_not_dispatched ON txmsg_outbox (seq) WHERE is_dispatched = 0;"
    "CREATE INDEX txmsg_outbox_created_at ON txmsg_outbox (created_at);";
static const char PG_TABLES[] =
    "DROP TABLE IF EXISTS bench_orders, bench_outbox;"
    "CREATE TABLE bench_orders (id text PRIMARY KEY, customer_id text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')),"
    " order_total bigint NOT NULL CHECK (order_total > 0), version bigint NOT NULL,"
    " created_at timestamptz NOT NULL, updated_at timestamptz);"
    "CREATE TABLE bench_outbox (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " message_id text NOT NULL UNIQUE, source text NOT NULL DEFAULT '',"
    " aggregate_id text NOT NULL, correlation_id text NOT NULL, topic text NOT NULL,"
    " payload jsonb NOT NULL, created_at timestamptz NOT NULL,"
    " approximate_dispatch_count integer NOT NULL DEFAULT 0,"
    " is_dispatched boolean NOT NULL DEFAULT false, last_dispatched_at timestamptz);"
    "CREATE INDEX ON bench_outbox (seq) WHERE NOT is_dispatched;"
    "CREATE INDEX ON bench_outbox (created_at);";

static const char SQLITE_ORDER[] = "INSERT INTO orders (id, customer_id, state, order_total,"
                                   " version, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQLITE_OUTBOX[] =
    "INSERT INTO txmsg_outbox (message_id, source, aggregate_id, correlation_id, topic,"
    " payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char PG_ORDER[] = "INSERT INTO bench_orders (id, customer_id, state, order_total,"
                               " version, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
static const char PG_OUTBOX[] =
    "INSERT INTO bench_outbox (message_id, source, aggregate_id, correlation_id, topic,"
    " payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

#define CUSTOMER "0190a5b2-7c3e-7a11-8f00-000000000001"
#define CREATED "2026-01-01T00:00:00.000000Z"

/* The text of one order and its event, as the orders service writes them. */
typedef struct order_text {
    char id[64], event_id[64], cid[64];
    char payload[512];
} order_text;

static void order_fill(order_text *o, int thread, unsigned n)
{
    snprintf(o->id, sizeof o->id, "%08d-0000-7000-8000-%012u", thread, n);
    snprintf(o->event_id, sizeof o->event_id, "%08d-0001-7000-8000-%012u", thread, n);
    snprintf(o->cid, sizeof o->cid, "%08d-0002-7000-8000-%012u", thread, n);
    snprintf(o->payload, sizeof o->payload,
             "{\"order_id\":\"%s\",\"customer_id\":\"" CUSTOMER "\",\"state\":\"PENDING\","
             "\"order_total\":10000,\"event_id\":\"%s\",\"correlation_id\":\"%s\","
             "\"created_at\":\"" CREATED "\"}",
             o->id, o->event_id, o->cid);
}

typedef struct shared {
    const char *target;       /* path or URL */
    txm_db *db;               /* txmsg mode */
    int64_t end_ns;           /* when the threads stop */
    pthread_mutex_t write_mu; /* SQLite: one writer at a time */
    atomic_llong commits;     /* over all threads */
} shared;

typedef struct worker {
    pthread_t thread;
    shared *sh;
    int no;
} worker;

/* ---- SQLite ---- */

static void sqlite_ok(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        bench_fail("bench: sqlite: %s: %s", what, sqlite3_errmsg(db));
}

static sqlite3 *sqlite_open(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    sqlite_ok(db, rc, path);
    sqlite3_busy_timeout(db, 5000);
    sqlite_ok(db,
              sqlite3_exec(db,
                           "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                           " PRAGMA foreign_keys=ON",
                           NULL, NULL, NULL),
              "pragmas");
    return db;
}

static void bind_texts(sqlite3_stmt *s, const char *const *v, int n)
{
    for (int i = 0; i < n; i++)
        sqlite3_bind_text(s, i + 1, v[i], -1, SQLITE_STATIC);
}

static void sqlite_one_order(sqlite3 *db, sqlite3_stmt *ins_order, sqlite3_stmt *ins_outbox,
                             const order_text *o)
{
    const char *ov[] = {o->id, CUSTOMER, "PENDING"};
    bind_texts(ins_order, ov, 3);
    sqlite3_bind_int64(ins_order, 4, 10000);
    sqlite3_bind_int64(ins_order, 5, 0);
    sqlite3_bind_text(ins_order, 6, CREATED, -1, SQLITE_STATIC);
    const char *ev[] = {o->event_id,      "orders",   o->id,  o->cid,
                        "order--created", o->payload, CREATED};
    bind_texts(ins_outbox, ev, 7);
    sqlite_ok(db, sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), "begin");
    sqlite_ok(db, sqlite3_step(ins_order), "insert order");
    sqlite_ok(db, sqlite3_step(ins_outbox), "insert outbox");
    sqlite_ok(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
    sqlite3_reset(ins_order);
    sqlite3_reset(ins_outbox);
}

static void *sqlite_worker(void *arg)
{
    worker *w = arg;
    sqlite3 *db = sqlite_open(w->sh->target);
    sqlite3_stmt *ins_order = NULL, *ins_outbox = NULL;
    sqlite_ok(db, sqlite3_prepare_v2(db, SQLITE_ORDER, -1, &ins_order, NULL), "prepare");
    sqlite_ok(db, sqlite3_prepare_v2(db, SQLITE_OUTBOX, -1, &ins_outbox, NULL), "prepare");
    order_text o;
    for (long long n = 0; bench_mono_ns() < w->sh->end_ns; n++) {
        order_fill(&o, w->no, (unsigned)n);
        pthread_mutex_lock(&w->sh->write_mu);
        sqlite_one_order(db, ins_order, ins_outbox, &o);
        pthread_mutex_unlock(&w->sh->write_mu);
        atomic_fetch_add(&w->sh->commits, 1);
    }
    sqlite3_finalize(ins_order);
    sqlite3_finalize(ins_outbox);
    sqlite3_close(db);
    return NULL;
}

static void sqlite_setup(const char *path)
{
    sqlite3 *db = sqlite_open(path);
    sqlite_ok(db, sqlite3_exec(db, SQLITE_TABLES, NULL, NULL, NULL), "schema");
    sqlite3_close(db);
}

/* ---- PostgreSQL ---- */

static void pg_ok(PGconn *pg, PGresult *r, const char *what)
{
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        bench_fail("bench: postgresql: %s: %s", what, PQerrorMessage(pg));
    PQclear(r);
}

static PGconn *pg_open(const char *url)
{
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK)
        bench_fail("bench: postgresql: %s", PQerrorMessage(pg));
    pg_ok(pg, PQexec(pg, "SET client_min_messages = warning"), "set");
    return pg;
}

static void *pg_worker(void *arg)
{
    worker *w = arg;
    PGconn *pg = pg_open(w->sh->target);
    pg_ok(pg, PQprepare(pg, "ins_order", PG_ORDER, 0, NULL), "prepare");
    pg_ok(pg, PQprepare(pg, "ins_outbox", PG_OUTBOX, 0, NULL), "prepare");
    order_text o;
    for (long long n = 0; bench_mono_ns() < w->sh->end_ns; n++) {
        order_fill(&o, w->no, (unsigned)n);
        const char *ov[] = {o.id, CUSTOMER, "PENDING", "10000", "0", CREATED};
        const char *ev[] = {o.event_id,       "orders",  o.id,   o.cid,
                            "order--created", o.payload, CREATED};
        pg_ok(pg, PQexec(pg, "BEGIN"), "begin");
        pg_ok(pg, PQexecPrepared(pg, "ins_order", 6, ov, NULL, NULL, 0), "insert order");
        pg_ok(pg, PQexecPrepared(pg, "ins_outbox", 7, ev, NULL, NULL, 0), "insert outbox");
        pg_ok(pg, PQexec(pg, "COMMIT"), "commit");
        atomic_fetch_add(&w->sh->commits, 1);
    }
    PQfinish(pg);
    return NULL;
}

static void pg_setup(const char *url)
{
    PGconn *pg = pg_open(url);
    pg_ok(pg, PQexec(pg, PG_TABLES), "schema");
    PQfinish(pg);
}

/* ---- txmsg ---- */

static const char TXM_ORDERS_SQLITE[] =
    "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')),"
    " order_total INTEGER NOT NULL CHECK (order_total > 0), version INTEGER NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT)";
static const char TXM_ORDERS_PG[] =
    "CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, customer_id text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')),"
    " order_total bigint NOT NULL CHECK (order_total > 0), version bigint NOT NULL,"
    " created_at timestamptz NOT NULL, updated_at timestamptz)";
static const char TXM_ORDER[] = "INSERT INTO orders (id, customer_id, state, order_total,"
                                " version, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

static void txm_one_order(txm_db *db, const order_text *o)
{
    txm_error err = {0};
    txm_msg *event = NULL;
    bench_check(txm_msg_new_with(o->event_id, "orders", "order--created", o->id, o->cid, o->payload,
                                 txm_now_us(), &event, &err),
                &err, "message");
    const txm_value p[] = {TXM_TEXT(o->id), TXM_TEXT(CUSTOMER), TXM_TEXT("PENDING"),
                           TXM_INT(10000),  TXM_INT(0),         TXM_TEXT(CREATED)};
    txm_uow *uow = NULL;
    bench_check(txm_uow_begin(db, &uow, &err), &err, "begin");
    bench_check(txm_uow_exec(uow, TXM_ORDER, p, 6, NULL, NULL, &err), &err, "insert order");
    bench_check(txm_outbox_publish(uow, &event, &err), &err, "publish");
    bench_check(txm_uow_commit(&uow, &err), &err, "commit");
}

static void *txm_worker(void *arg)
{
    worker *w = arg;
    order_text o;
    for (long long n = 0; bench_mono_ns() < w->sh->end_ns; n++) {
        order_fill(&o, w->no, (unsigned)n);
        txm_one_order(w->sh->db, &o);
        atomic_fetch_add(&w->sh->commits, 1);
    }
    return NULL;
}

static void txm_setup(shared *sh, int threads)
{
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = threads;
    o.pg_relay_slot = false;
    txm_error err = {0};
    bench_check(txm_db_open(sh->target, &o, &sh->db, &err), &err, "open");
    bool pg = strcmp(txm_db_dialect(sh->db), "postgresql") == 0;
    bench_check(
        txm_db_exec(sh->db, pg ? TXM_ORDERS_PG : TXM_ORDERS_SQLITE, NULL, 0, NULL, NULL, &err),
        &err, "orders table");
}

int main(int argc, char **argv)
{
    const char *mode = argc == 5 ? argv[1] : "";
    bool sqlite = strcmp(mode, "sqlite") == 0, txmsg = strcmp(mode, "txmsg") == 0;
    if (!sqlite && !txmsg && strcmp(mode, "pg") != 0)
        bench_fail("usage: bench_commit_raw sqlite|pg|txmsg PATH|URL THREADS SECONDS");
    int threads = (int)bench_arg_int(argv[3], 1, MAX_THREADS, "THREADS");
    int seconds = (int)bench_arg_int(argv[4], 1, 3600, "SECONDS");
    shared sh = {.target = argv[2]};
    pthread_mutex_init(&sh.write_mu, NULL);
    atomic_init(&sh.commits, 0);
    if (txmsg)
        txm_setup(&sh, threads);
    else if (sqlite)
        sqlite_setup(sh.target);
    else
        pg_setup(sh.target);
    void *(*run)(void *) = txmsg ? txm_worker : sqlite ? sqlite_worker : pg_worker;
    worker w[MAX_THREADS];
    int64_t start = bench_mono_ns();
    sh.end_ns = start + (int64_t)seconds * 1000000000LL;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.sh = &sh, .no = i};
        if (pthread_create(&w[i].thread, NULL, run, &w[i]) != 0)
            bench_fail("bench: cannot start a thread");
    }
    for (int i = 0; i < threads; i++)
        pthread_join(w[i].thread, NULL);
    double s = (double)(bench_mono_ns() - start) / 1e9;
    long long n = atomic_load(&sh.commits);
    printf("rate=%.0f seconds=%.2f commits=%lld\n", (double)n / s, s, n);
    txm_db_close(sh.db);
    pthread_mutex_destroy(&sh.write_mu);
    return 0;
}
