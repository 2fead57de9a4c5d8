/* Embedded broker ("embedded:PATH"): SNS-style topics fanned out to SQS-style
 * queues in one SQLite file shared by every process of one host, with leases,
 * receive counts, dead-letter queues, and long polls woken by inotify. */

/*
 * Thread safety
 * -------------
 * A broker handle may be used by any number of threads at once. It keeps a
 * pool of at most POOL_MAX SQLite connections, opened on demand and guarded
 * by mu/cv; a thread borrows one connection for one statement or one
 * transaction and gives it back before doing anything else. Connections are
 * opened with SQLITE_OPEN_NOMUTEX because the pool hands each one to a single
 * thread at a time. A long-polling receiver returns its connection before it
 * blocks in poll() on a commit watch of its own (src/db/wal_watch.c, taken
 * from a stack of reusable ones, also guarded by mu), so a waiting receiver holds no lock and
 * no connection that a publisher of this process needs. Writers
 * serialise on SQLite's database write lock (BEGIN IMMEDIATE with a busy
 * timeout), which is also what serialises them with other processes.
 * txm_transport_close must not race with any other call on the handle.
 *
 * Durability
 * ----------
 * The file runs in WAL mode with synchronous=NORMAL: a committed transaction
 * is in the WAL file when COMMIT returns, so it survives the crash or SIGKILL
 * of any process, which is the failure txmsg guards against on one host. Only
 * an operating-system crash or power loss may lose the last commits, because
 * NORMAL does not fsync the WAL on every commit; FULL would, at a large cost
 * per publish.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "db/db.h"
#include "db/wal_watch.h"
#include "transport/transport_int.h"

enum {
    POOL_MAX = 8,         /* most open SQLite connections per broker handle */
    SAFETY_WAIT_MS = 100, /* longest sleep between re-checks while inotify watches */
    RECHECK_WAIT_MS = 1,  /* first re-check after a wake-up that found nothing */
    PATH_MAX_LEN = 4096,  /* longest broker file path accepted, bytes */
    WATCH_MAX = 64,       /* most idle commit watches kept for reuse */
};

/* The schema, created idempotently at open. A dead-lettered message keeps
 * its row: its queue becomes the dead-letter queue and origin remembers the
 * source queue, so redrive knows where it goes back to even when several
 * subscriptions share one dead-letter queue. */
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS subscriptions("
    " queue TEXT PRIMARY KEY, topic TEXT NOT NULL, dlq TEXT NOT NULL,"
    " max_receive_count INTEGER NOT NULL, visibility_timeout_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions(topic);"
    "CREATE TABLE IF NOT EXISTS messages("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,"
    " topic TEXT NOT NULL, body BLOB NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0,"
    " visible_at_us INTEGER NOT NULL, lease INTEGER, last_error TEXT,"
    " enqueued_at_us INTEGER NOT NULL, origin TEXT);"
    "CREATE INDEX IF NOT EXISTS messages_visible ON messages(queue, visible_at_us, id);"
    "CREATE INDEX IF NOT EXISTS messages_fifo ON messages(queue, id);"
    "CREATE TABLE IF NOT EXISTS blobs("
    " key TEXT PRIMARY KEY, body BLOB NOT NULL, created_at_us INTEGER NOT NULL);";

/* Every statement the broker runs; names and values are always bound. */
typedef enum {
    Q_BEGIN_READ,
    Q_BEGIN_WRITE,
    Q_COMMIT,
    Q_TOPIC_ADD,
    Q_SUB_GET,
    Q_NAME_CLASH,
    Q_SUB_PUT,
    Q_PUBLISH,
    Q_PEEK,
    Q_CLAIM,
    Q_LEASE,
    Q_TO_DLQ,
    Q_SETTLE_GET,
    Q_ACK,
    Q_NACK,
    Q_EXTEND,
    Q_DEPTH,
    Q_QUEUES,
    Q_DLQ_LIST,
    Q_REDRIVE,
    Q_DLQ_DELETE,
    Q_BLOB_PUT,
    Q_BLOB_GET,
    Q_BLOB_EXPIRE,
    Q_COUNT
} sql_id;

static const char *const SQL[Q_COUNT] = {
    [Q_BEGIN_READ] = "BEGIN",
    [Q_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_TOPIC_ADD] = "INSERT OR IGNORE INTO topics(name) VALUES(?1)",
    [Q_SUB_GET] = "SELECT topic, dlq, max_receive_count, visibility_timeout_ms FROM subscriptions "
                  "WHERE queue = ?1",
    /* ?1 queue, ?2 its dead-letter queue: the dead-letter queue may not be
     * another subscription's queue, nor the queue another one's dead-letter
     * queue. */
    [Q_NAME_CLASH] = "SELECT queue FROM subscriptions "
                     "WHERE (queue = ?2 AND queue <> ?1) OR (dlq = ?1 AND queue <> ?1) LIMIT 1",
    [Q_SUB_PUT] = "INSERT INTO subscriptions(queue, topic, dlq, max_receive_count, "
                  "visibility_timeout_ms) VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(queue) DO "
                  "UPDATE SET dlq = excluded.dlq, max_receive_count = excluded.max_receive_count,"
                  " visibility_timeout_ms = excluded.visibility_timeout_ms",
    /* The SNS fan-out: one row per queue subscribed to the topic. */
    [Q_PUBLISH] = "INSERT INTO messages(queue, message_id, topic, body, receive_count, "
                  "visible_at_us, lease, last_error, enqueued_at_us) "
                  "SELECT queue, ?2, ?1, ?3, 0, ?4, NULL, NULL, ?4 FROM subscriptions "
                  "WHERE topic = ?1 ORDER BY queue",
    [Q_PEEK] = "SELECT (SELECT 1 FROM subscriptions WHERE queue = ?1), "
               "(SELECT MIN(visible_at_us) FROM messages WHERE queue = ?1)",
    /* FIFO: walk the queue in id order, skipping leased rows, and stop after
     * ?3 visible ones; messages_fifo makes that a range scan without a sort. */
    [Q_CLAIM] = "SELECT id, message_id, topic, body, receive_count, last_error "
                "FROM messages INDEXED BY messages_fifo "
                "WHERE queue = ?1 AND visible_at_us <= ?2 ORDER BY id LIMIT ?3",
    [Q_LEASE] = "UPDATE messages SET receive_count = receive_count + 1, visible_at_us = ?2, "
                "lease = ?3 WHERE id = ?1",
    /* SET expressions see the old row, so origin takes the source queue. */
    [Q_TO_DLQ] = "UPDATE messages SET origin = queue, queue = ?2, lease = NULL, "
                 "visible_at_us = ?3, last_error = COALESCE(?4, last_error, "
                 "'dead-lettered after ' || receive_count || ' receives') WHERE id = ?1",
    [Q_SETTLE_GET] = "SELECT m.receive_count, s.max_receive_count, s.dlq FROM messages m "
                     "JOIN subscriptions s ON s.queue = m.queue WHERE m.id = ?1 AND m.lease = ?2",
    [Q_ACK] = "DELETE FROM messages WHERE id = ?1 AND lease = ?2",
    [Q_NACK] = "UPDATE messages SET visible_at_us = ?3, lease = NULL, "
               "last_error = COALESCE(?4, last_error) WHERE id = ?1 AND lease = ?2",
    [Q_EXTEND] = "UPDATE messages SET visible_at_us = ?3 + 1000 * (SELECT visibility_timeout_ms "
                 "FROM subscriptions s WHERE s.queue = messages.queue) "
                 "WHERE id = ?1 AND lease = ?2",
    [Q_DEPTH] = "SELECT COUNT(*) FROM messages WHERE queue = ?1",
    /* In flight: leased, the lease not run out (?1 now); dead letters: the
     * DLQ's rows that came from this queue. Each count is a range scan of
     * messages_fifo. */
    [Q_QUEUES] = "SELECT s.queue, s.topic, s.dlq,"
                 " (SELECT COUNT(*) FROM messages m WHERE m.queue = s.queue),"
                 " (SELECT COUNT(*) FROM messages m WHERE m.queue = s.queue"
                 "  AND m.lease IS NOT NULL AND m.visible_at_us > ?1),"
                 " (SELECT COUNT(*) FROM messages m WHERE m.queue = s.dlq AND m.origin = s.queue)"
                 " FROM subscriptions s ORDER BY s.queue LIMIT ?2",
    /* A dead letter's visible_at_us is when it was dead-lettered (Q_TO_DLQ). */
    [Q_DLQ_LIST] = "SELECT id, message_id, topic, body, receive_count, last_error, visible_at_us "
                   "FROM messages INDEXED BY messages_fifo "
                   "WHERE queue = ?1 AND origin = ?2 ORDER BY id LIMIT ?3",
    /* Redriven messages get new ids: they join the back of the queue, as
     * after an SQS redrive. ?3 NULL selects every message. */
    [Q_REDRIVE] = "INSERT INTO messages(queue, message_id, topic, body, receive_count, "
                  "visible_at_us, lease, last_error, enqueued_at_us) "
                  "SELECT ?2, message_id, topic, body, 0, ?4, NULL, last_error, enqueued_at_us "
                  "FROM messages WHERE queue = ?1 AND origin = ?2 "
                  "AND (?3 IS NULL OR message_id = ?3) ORDER BY id",
    [Q_DLQ_DELETE] =
        "DELETE FROM messages WHERE queue = ?1 AND origin = ?2 AND (?3 IS NULL OR message_id = ?3)",
    [Q_BLOB_PUT] = "INSERT OR REPLACE INTO blobs(key, body, created_at_us) VALUES(?1, ?2, ?3)",
    [Q_BLOB_GET] = "SELECT body FROM blobs WHERE key = ?1",
    [Q_BLOB_EXPIRE] = "DELETE FROM blobs WHERE created_at_us < ?1",
};

/* One pooled connection with its prepared statements. */
typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[Q_COUNT]; /* prepared on first use, indexed by sql_id */
    int busy_timeout_ms;         /* longest wait for a lock */
    int64_t busy_since_ms;       /* monotonic start of the current lock wait */
} conn;

struct txm__broker {
    bool deliver_exhausted; /* return over-limit messages flagged, not dead-lettered */
    char *path;             /* the SQLite file, as given in the URL */
    char *db_file;          /* its absolute name, whose folder is watched for commits */
    int busy_timeout_ms;    /* SQLite lock wait */
    txm_log_fn log;         /* optional */
    void *log_ctx;
    atomic_bool warned_poll; /* the inotify fallback was logged once */
    pthread_mutex_t mu;      /* guards idle, n_idle, n_open, watch, n_watch */
    pthread_cond_t cv;       /* signalled when a connection is returned */
    conn *idle[POOL_MAX];    /* connections not in use */
    size_t n_idle;
    size_t n_open;                    /* idle plus borrowed */
    txm__wal_watch *watch[WATCH_MAX]; /* idle commit watches on db_file */
    size_t n_watch;
};

/* What ack and nack need to find the leased row again. */
typedef struct lease {
    int64_t row_id; /* messages.id */
    int64_t token;  /* messages.lease while this receive holds it */
} lease;

/* A bound statement parameter. */
typedef struct arg {
    enum { ARG_NULL, ARG_INT, ARG_TEXT, ARG_BLOB } kind;
    int64_t i;     /* ARG_INT */
    const void *p; /* ARG_TEXT (NUL-terminated) or ARG_BLOB */
    size_t len;    /* ARG_BLOB: bytes */
} arg;

static arg a_int(int64_t v)
{
    return (arg){ARG_INT, v, NULL, 0};
}

static arg a_text(const char *s)
{
    return (arg){s != NULL ? ARG_TEXT : ARG_NULL, 0, s, 0};
}

static arg a_blob(const void *p, size_t len)
{
    return (arg){ARG_BLOB, 0, p != NULL ? p : "", p != NULL ? len : 0};
}

#define NARGS(a) (sizeof(a) / sizeof((a)[0]))

/* Called right after the SQLite call that failed with rc, made with errno
 * cleared: errno then still holds a failed write's ENOSPC or EFBIG, which
 * SQLite 3.40's sqlite3_system_errno() does not report for the WAL. */
static txm_status fail(sqlite3 *db, int rc, const char *what, txm_error *err)
{
    int sys = errno;
    if (db != NULL && sqlite3_system_errno(db) != 0)
        sys = sqlite3_system_errno(db);
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_BUSY)
        return txm_errf(err, TXM_BUSY,
                        "embedded broker: %s: database locked past the busy timeout (%s)", what,
                        msg);
    txm_status st = txm__sqlite_status(rc, sys, TXM_BROKER);
    txm_errf(err, st, "embedded broker: %s: %s", what, msg);
    if (err != NULL && st == TXM_NO_SPACE)
        err->sys_errno = sys;
    return st;
}

static void log_text(const txm__broker *b, int level, const char *text)
{
    if (b->log != NULL)
        b->log(b->log_ctx, level, text);
}

/* Returns statement q of c, prepared on first use, reset and with args
 * bound. Borrows: the statement stays c's. */
static txm_status prep(conn *c, sql_id q, const arg *args, size_t n, sqlite3_stmt **out,
                       txm_error *err)
{
    *out = NULL;
    if (c->stmt[q] == NULL) {
        errno = 0; /* see fail */
        int rc =
            sqlite3_prepare_v3(c->db, SQL[q], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL);
        if (rc != SQLITE_OK)
            return fail(c->db, rc, "prepare", err);
    }
    sqlite3_stmt *s = c->stmt[q];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    for (size_t j = 0; j < n; j++) {
        int idx = (int)j + 1;
        int rc = SQLITE_OK;
        if (args[j].kind == ARG_INT)
            rc = sqlite3_bind_int64(s, idx, args[j].i);
        else if (args[j].kind == ARG_TEXT)
            rc = sqlite3_bind_text(s, idx, args[j].p, -1, SQLITE_STATIC);
        else if (args[j].kind == ARG_BLOB)
            rc = sqlite3_bind_blob64(s, idx, args[j].p, args[j].len, SQLITE_STATIC);
        else
            rc = sqlite3_bind_null(s, idx);
        if (rc != SQLITE_OK)
            return fail(c->db, rc, "bind", err);
    }
    *out = s;
    return TXM_OK;
}

/* Steps s once: *row is true when it produced a row. On the last row or an
 * error the statement is reset, so it holds no read lock afterwards. */
static txm_status step(conn *c, sqlite3_stmt *s, bool *row, txm_error *err)
{
    errno = 0; /* see fail */
    int rc = sqlite3_step(s);
    *row = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW)
        return TXM_OK;
    txm_status st = rc == SQLITE_DONE ? TXM_OK : fail(c->db, rc, "step", err);
    sqlite3_reset(s);
    return st;
}

/* Runs statement q, which returns no rows; *changes (may be NULL) receives
 * the rows it wrote. */
static txm_status run(conn *c, sql_id q, const arg *args, size_t n, int64_t *changes,
                      txm_error *err)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, q, args, n, &s, err);
    while (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row) {
    }
    if (changes != NULL)
        *changes = st == TXM_OK ? sqlite3_changes64(c->db) : 0;
    return st;
}

/* SQLite busy handler: waits for a lock in short steps, 100 us at first and
 * then 1 ms, up to the busy timeout. SQLite's own sqlite3_busy_timeout sleeps
 * up to 100 ms at a time, and a receiver woken by a commit usually finds the
 * publisher still releasing its write lock: short steps keep its wake-up
 * latency well under a millisecond. Returns 0 to give up (SQLITE_BUSY). */
static int busy_wait(void *ctx, int count)
{
    conn *c = ctx;
    if (count == 0)
        c->busy_since_ms = txm__mono_ms();
    else if (txm__mono_ms() - c->busy_since_ms >= c->busy_timeout_ms)
        return 0;
    struct timespec ts = {0, count < 10 ? 100000L : 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

static void conn_close(conn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Runs a PRAGMA that answers with one text row; want (may be NULL) is the
 * answer required, for example "wal" for journal_mode. */
static txm_status pragma(sqlite3 *db, const char *sql, const char *want, txm_error *err)
{
    sqlite3_stmt *s = NULL;
    errno = 0; /* see fail */
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(s)) != SQLITE_ROW)
            break;
        const char *got = (const char *)sqlite3_column_text(s, 0);
        if (want != NULL && (got == NULL || strcmp(got, want) != 0)) {
            txm_status st = txm_errf(err, TXM_BROKER, "embedded broker: %s answered %s, not %s",
                                     sql, got != NULL ? got : "NULL", want);
            sqlite3_finalize(s);
            return st;
        }
    }
    txm_status st = rc == SQLITE_DONE ? TXM_OK : fail(db, rc, sql, err);
    sqlite3_finalize(s);
    return st;
}

static txm_status conn_open(const txm__broker *b, conn **out, txm_error *err)
{
    *out = NULL;
    conn *c = txm__calloc(1, sizeof *c);
    if (c == NULL)
        return txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    c->busy_timeout_ms = b->busy_timeout_ms;
    txm__sqlite_process_init();
    errno = 0; /* see fail */
    int rc = sqlite3_open_v2(
        b->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    txm_status st = rc == SQLITE_OK ? TXM_OK : fail(c->db, rc, b->path, err);
    if (st == TXM_OK)
        sqlite3_busy_handler(c->db, busy_wait, c);
    /* Setting WAL on a new file takes the write lock, so the busy timeout
     * covers several processes opening the same new file at once. */
    if (st == TXM_OK)
        st = pragma(c->db, "PRAGMA journal_mode=WAL", "wal", err);
    if (st == TXM_OK)
        st = pragma(c->db, "PRAGMA synchronous=NORMAL", NULL, err);
    if (st != TXM_OK) {
        conn_close(c);
        return st;
    }
    *out = c;
    return TXM_OK;
}

/* Borrows a connection from b's pool, opening one while fewer than POOL_MAX
 * exist, else waiting for one to come back. Give it back with pool_put. */
static txm_status pool_get(txm__broker *b, conn **out, txm_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&b->mu);
    while (b->n_idle == 0 && b->n_open == POOL_MAX)
        pthread_cond_wait(&b->cv, &b->mu);
    if (b->n_idle > 0) {
        *out = b->idle[--b->n_idle];
        pthread_mutex_unlock(&b->mu);
        return TXM_OK;
    }
    b->n_open++;
    pthread_mutex_unlock(&b->mu);
    txm_status st = conn_open(b, out, err);
    if (st != TXM_OK) {
        pthread_mutex_lock(&b->mu);
        b->n_open--;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
    return st;
}

static void pool_put(txm__broker *b, conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    b->idle[b->n_idle++] = c;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

typedef enum { TXN_NONE, TXN_READ, TXN_WRITE } txn_mode;
typedef txm_status (*txn_fn)(conn *c, void *ctx, txm_error *err);

/* Runs fn on a pooled connection: alone (autocommit), in a read transaction
 * or in a write transaction taken up front (BEGIN IMMEDIATE), committed when
 * fn returns TXM_OK and rolled back otherwise. */
static txm_status with_conn(txm__broker *b, txn_mode mode, txn_fn fn, void *ctx, txm_error *err)
{
    conn *c = NULL;
    txm_status st = pool_get(b, &c, err);
    if (st != TXM_OK)
        return st;
    if (mode != TXN_NONE)
        st = run(c, mode == TXN_WRITE ? Q_BEGIN_WRITE : Q_BEGIN_READ, NULL, 0, NULL, err);
    if (st == TXM_OK)
        st = fn(c, ctx, err);
    if (st == TXM_OK && mode != TXN_NONE)
        st = run(c, Q_COMMIT, NULL, 0, NULL, err);
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL); /* fn or COMMIT failed */
    pool_put(b, c);
    return st;
}

/* with_conn for an idempotent transaction (schema, declarations), tried
 * again when SQLite answers SQLITE_BUSY without having waited in the busy
 * handler, as it can in WAL mode while connections to a new file open and
 * close (seen under parallel test load: two processes declaring on one new
 * broker file got TXM_BUSY at once, about one run in ten). */
static txm_status with_conn_retry(txm__broker *b, txn_mode mode, txn_fn fn, void *ctx,
                                  txm_error *err)
{
    int64_t until = txm__mono_ms() + b->busy_timeout_ms;
    txm_status st;
    while ((st = with_conn(b, mode, fn, ctx, err)) == TXM_BUSY && txm__mono_ms() < until) {
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return st;
}

/* ---- open and close ---------------------------------------------------- */

static txm_status schema_txn(conn *c, void *ctx, txm_error *err)
{
    txm__broker *b = ctx;
    errno = 0; /* see fail */
    int rc = sqlite3_exec(c->db, SCHEMA, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(c->db, rc, "create schema", err);
    /* SQLite gives the absolute file name, which survives a chdir. */
    const char *file = sqlite3_db_filename(c->db, "main");
    if (file != NULL && file[0] != '\0' && b->db_file == NULL &&
        (b->db_file = txm__strdup(file)) == NULL)
        return txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    return TXM_OK;
}

static void embedded_close(txm__broker *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n_idle; i++)
        conn_close(b->idle[i]);
    for (size_t i = 0; i < b->n_watch; i++)
        txm__wal_watch_close(b->watch[i]);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->db_file);
    free(b->path);
    free(b);
}

/* Opens "embedded:PATH", creating the file and its schema when missing.
 * Returns TXM_INVALID for an empty or too long path, TXM_BROKER or TXM_BUSY
 * when the file cannot be opened. Owns: *out is the caller's (embedded_close). */
static txm_status embedded_open(const char *url, const txm_transport_options *o, txm__broker **out,
                                txm_error *err)
{
    *out = NULL;
    const char *path = url + strlen("embedded:");
    size_t len = strnlen(path, PATH_MAX_LEN + 1);
    if (len == 0 || len > PATH_MAX_LEN)
        return txm_errf(err, TXM_INVALID,
                        "embedded broker: want embedded:PATH with a path of 1..%d bytes",
                        PATH_MAX_LEN);
    txm__broker *b = txm__calloc(1, sizeof *b);
    if (b == NULL)
        return txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return txm_errf(err, TXM_NOMEM, "embedded broker: cannot create a mutex");
    }
    if (pthread_cond_init(&b->cv, NULL) != 0) {
        pthread_mutex_destroy(&b->mu);
        free(b);
        return txm_errf(err, TXM_NOMEM, "embedded broker: cannot create a condition variable");
    }
    b->busy_timeout_ms = o != NULL && o->publish_timeout_ms > 0 ? o->publish_timeout_ms : 10000;
    b->deliver_exhausted = o != NULL && o->deliver_exhausted;
    b->log = o != NULL ? o->log : NULL;
    b->log_ctx = o != NULL ? o->log_ctx : NULL;
    atomic_init(&b->warned_poll, false);
    b->path = txm__strdup(path);
    txm_status st =
        b->path != NULL ? TXM_OK : txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    if (st == TXM_OK)
        st = with_conn_retry(b, TXN_WRITE, schema_txn, b, err);
    if (st != TXM_OK) {
        embedded_close(b);
        return st;
    }
    *out = b;
    return TXM_OK;
}

/* ---- declarations ------------------------------------------------------ */

static txm_status topic_txn(conn *c, void *ctx, txm_error *err)
{
    const arg a[] = {a_text(ctx)};
    return run(c, Q_TOPIC_ADD, a, NARGS(a), NULL, err);
}

static txm_status embedded_declare_topic(txm__broker *b, const char *topic, txm_error *err)
{
    return with_conn_retry(b, TXN_NONE, topic_txn, (void *)topic, err);
}

typedef struct sub_ctx {
    const char *topic;
    const char *queue;
    const char *dlq;
    const txm_subscription_options *o;
} sub_ctx;

/* Fails with TXM_CONFLICT when queue is subscribed to another topic or its
 * names clash with another subscription's queue or dead-letter queue. */
static txm_status sub_check(conn *c, const sub_ctx *x, txm_error *err)
{
    const arg a[] = {a_text(x->queue), a_text(x->dlq)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_SUB_GET, a, 1, &s, err);
    if (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row) {
        const char *had = (const char *)sqlite3_column_text(s, 0);
        if (had != NULL && strcmp(had, x->topic) != 0)
            st = txm_errf(err, TXM_CONFLICT,
                          "declare_subscription: queue %s is subscribed to topic %s, not %s",
                          x->queue, had, x->topic);
        sqlite3_reset(s);
    }
    if (st == TXM_OK && strcmp(x->queue, x->dlq) == 0)
        st = txm_errf(err, TXM_CONFLICT,
                      "declare_subscription: queue %s cannot be its own dead-letter queue",
                      x->queue);
    if (st == TXM_OK && (st = prep(c, Q_NAME_CLASH, a, NARGS(a), &s, err)) == TXM_OK &&
        (st = step(c, s, &row, err)) == TXM_OK && row) {
        st = txm_errf(err, TXM_CONFLICT,
                      "declare_subscription: queue %s or dead-letter queue %s "
                      "clashes with subscription %s",
                      x->queue, x->dlq, (const char *)sqlite3_column_text(s, 0));
        sqlite3_reset(s);
    }
    return st;
}

static txm_status sub_txn(conn *c, void *ctx, txm_error *err)
{
    const sub_ctx *x = ctx;
    const arg t[] = {a_text(x->topic)};
    txm_status st = run(c, Q_TOPIC_ADD, t, NARGS(t), NULL, err);
    if (st == TXM_OK)
        st = sub_check(c, x, err);
    const arg a[] = {a_text(x->queue), a_text(x->topic), a_text(x->dlq),
                     a_int(x->o->max_receive_count), a_int(x->o->visibility_timeout_ms)};
    if (st == TXM_OK)
        st = run(c, Q_SUB_PUT, a, NARGS(a), NULL, err);
    return st;
}

/* Subscribes queue to topic. Declaring it again with the same topic updates
 * its dead-letter queue, max_receive_count and visibility timeout (the last
 * declaration wins); with another topic it returns TXM_CONFLICT. */
static txm_status embedded_declare_subscription(txm__broker *b, const char *topic,
                                                const char *queue,
                                                const txm_subscription_options *o, txm_error *err)
{
    char dlq[TXM__DLQ_NAME_MAX];
    txm__transport_dlq_name(queue, o, dlq);
    if (!txm__transport_name_ok(dlq))
        return txm_errf(err, TXM_INVALID,
                        "declare_subscription: dead-letter queue name %s is too long", dlq);
    sub_ctx x = {topic, queue, dlq, o};
    return with_conn_retry(b, TXN_WRITE, sub_txn, &x, err);
}

/* ---- publish ----------------------------------------------------------- */

typedef struct publish_ctx {
    const txm_outgoing *msgs;
    size_t n;
} publish_ctx;

static txm_status publish_txn(conn *c, void *ctx, txm_error *err)
{
    const publish_ctx *x = ctx;
    int64_t now = txm_now_us();
    txm_status st = TXM_OK;
    for (size_t i = 0; st == TXM_OK && i < x->n; i++) {
        const txm_outgoing *m = &x->msgs[i];
        const arg a[] = {a_text(m->topic), a_text(m->message_id), a_blob(m->body, m->len),
                         a_int(now)};
        st = run(c, Q_PUBLISH, a, NARGS(a), NULL, err);
    }
    return st;
}

/* Fans the whole batch out in one write transaction: its commit is the
 * durable acceptance of every message, so the results are all TXM_OK or all
 * the failure. */
static txm_status embedded_publish(txm__broker *b, const txm_outgoing *msgs, size_t n,
                                   txm_status *results, txm_error *err)
{
    publish_ctx x = {msgs, n};
    txm_status st = with_conn(b, TXN_WRITE, publish_txn, &x, err);
    for (size_t i = 0; results != NULL && i < n; i++)
        results[i] = st;
    return st;
}

/* ---- receive ----------------------------------------------------------- */

/* A subscription's settings, read where a message is leased or settled. */
typedef struct sub_limits {
    char dlq[TXM__DLQ_NAME_MAX];
    int max_receive_count;
    int64_t visibility_timeout_ms;
} sub_limits;

/* The longest visibility timeout a row may give, in ms (100 years), so that
 * now + timeout in microseconds cannot overflow. */
#define VISIBILITY_MAX_MS (100LL * 366 * 24 * 3600 * 1000)

/* An integer column clamped to lo..hi: the broker file may hold rows it did
 * not write (any type, any value), and a count near INT_MAX must not
 * overflow when incremented. */
static int64_t column_clamped(sqlite3_stmt *s, int col, int64_t lo, int64_t hi)
{
    int64_t v = sqlite3_column_int64(s, col);
    return v < lo ? lo : v > hi ? hi : v;
}

/* A receive count read from a row: 0..INT_MAX - 1, so + 1 still fits. */
static int column_count(sqlite3_stmt *s, int col)
{
    return (int)column_clamped(s, col, 0, INT_MAX - 1);
}

/* Reads queue's subscription; TXM_NOT_FOUND when it was never declared. */
static txm_status limits_get(conn *c, const char *queue, sub_limits *out, txm_error *err)
{
    const arg a[] = {a_text(queue)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_SUB_GET, a, NARGS(a), &s, err);
    if (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && !row)
        return txm_errf(err, TXM_NOT_FOUND, "embedded broker: queue %s is not declared", queue);
    if (st != TXM_OK)
        return st;
    const char *dlq = (const char *)sqlite3_column_text(s, 1);
    snprintf(out->dlq, sizeof out->dlq, "%s", dlq != NULL ? dlq : "");
    out->max_receive_count = column_count(s, 2);
    out->visibility_timeout_ms = column_clamped(s, 3, 0, VISIBILITY_MAX_MS);
    sqlite3_reset(s);
    return TXM_OK;
}

/* Builds a delivery of queue from a row of (id, message_id, topic, body,
 * receive_count, last_error). Owns: takes handle (freed on failure too). */
static txm_status row_delivery(sqlite3_stmt *s, const char *queue, int receive_count, lease *handle,
                               txm_delivery **out, txm_error *err)
{
    const void *body = sqlite3_column_blob(s, 3);
    size_t len = (size_t)sqlite3_column_bytes(s, 3);
    *out = NULL;
    if (body != NULL || len == 0)
        *out = txm__delivery_new(
            body != NULL ? body : "", len, (const char *)sqlite3_column_text(s, 1),
            (const char *)sqlite3_column_text(s, 2), queue, (const char *)sqlite3_column_text(s, 5),
            receive_count, handle, handle != NULL ? free : NULL);
    if (*out != NULL)
        return TXM_OK;
    free(handle);
    return txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
}

typedef struct claim_ctx {
    const char *queue;
    size_t max;
    bool deliver_exhausted;
    txm_delivery **list; /* max slots: the leased deliveries */
    size_t count;
    int64_t *dead; /* max slots: row ids to dead-letter */
    size_t n_dead;
} claim_ctx;

/* Reads up to max visible rows of the queue in FIFO order: rows received
 * max_receive_count times already (their last lease ran out) are marked for
 * the dead-letter queue, unless deliver_exhausted returns them flagged; the
 * others become deliveries with a new lease. */
static txm_status claim_scan(conn *c, claim_ctx *x, const sub_limits *lim, int64_t now,
                             txm_error *err)
{
    const arg a[] = {a_text(x->queue), a_int(now), a_int((int64_t)x->max)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_CLAIM, a, NARGS(a), &s, err);
    while (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row) {
        int64_t id = sqlite3_column_int64(s, 0);
        int received = column_count(s, 4);
        bool exhausted = received >= lim->max_receive_count;
        if (exhausted && !x->deliver_exhausted) {
            x->dead[x->n_dead++] = id;
            continue;
        }
        lease *l = txm__malloc(sizeof *l);
        if (l == NULL) {
            st = txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
            break;
        }
        *l = (lease){id, 0};
        sqlite3_randomness(sizeof l->token, &l->token);
        st = row_delivery(s, x->queue, received + 1, l, &x->list[x->count], err);
        if (st == TXM_OK)
            x->list[x->count++]->exhausted = exhausted;
    }
    if (s != NULL)
        sqlite3_reset(s); /* the scan may stop early; the updates below need it closed */
    return st;
}

static txm_status claim_txn(conn *c, void *ctx, txm_error *err)
{
    claim_ctx *x = ctx;
    sub_limits lim;
    int64_t now = txm_now_us();
    txm_status st = limits_get(c, x->queue, &lim, err);
    if (st == TXM_OK)
        st = claim_scan(c, x, &lim, now, err);
    for (size_t i = 0; st == TXM_OK && i < x->count; i++) {
        const lease *l = x->list[i]->handle;
        const arg a[] = {a_int(l->row_id), a_int(now + lim.visibility_timeout_ms * 1000),
                         a_int(l->token)};
        st = run(c, Q_LEASE, a, NARGS(a), NULL, err);
    }
    for (size_t i = 0; st == TXM_OK && i < x->n_dead; i++) {
        const arg a[] = {a_int(x->dead[i]), a_text(lim.dlq), a_int(now), a_text(NULL)};
        st = run(c, Q_TO_DLQ, a, NARGS(a), NULL, err);
    }
    return st;
}

/* Leases up to max visible messages of queue in one write transaction. */
static txm_status claim(txm__broker *b, const char *queue, size_t max, txm_delivery ***out,
                        size_t *count, txm_error *err)
{
    claim_ctx x = {.queue = queue, .max = max, .deliver_exhausted = b->deliver_exhausted};
    x.list = txm__calloc(max, sizeof *x.list);
    x.dead = txm__calloc(max, sizeof *x.dead);
    txm_status st = x.list != NULL && x.dead != NULL
                        ? with_conn(b, TXN_WRITE, claim_txn, &x, err)
                        : txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    free(x.dead);
    if (st != TXM_OK || x.count == 0) {
        txm_delivery_list_free(x.list, x.count);
        return st;
    }
    *out = x.list;
    *count = x.count;
    return TXM_OK;
}

typedef struct peek_ctx {
    const char *queue;
    bool declared;
    int64_t next_visible_us; /* INT64_MAX when the queue is empty */
} peek_ctx;

static txm_status peek_txn(conn *c, void *ctx, txm_error *err)
{
    peek_ctx *x = ctx;
    const arg a[] = {a_text(x->queue)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_PEEK, a, NARGS(a), &s, err);
    if (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row) {
        x->declared = sqlite3_column_type(s, 0) != SQLITE_NULL;
        if (sqlite3_column_type(s, 1) != SQLITE_NULL)
            x->next_visible_us = sqlite3_column_int64(s, 1);
        sqlite3_reset(s);
    }
    return st;
}

/* One attempt: a read-only look first, so that idle receivers never take the
 * write lock, then a claim when a message is visible. *next_visible_us
 * receives when the queue's next message becomes visible (INT64_MAX: none). */
static txm_status attempt(txm__broker *b, const char *queue, size_t max, txm_delivery ***out,
                          size_t *count, int64_t *next_visible_us, txm_error *err)
{
    peek_ctx x = {queue, false, INT64_MAX};
    txm_status st = with_conn(b, TXN_NONE, peek_txn, &x, err);
    *next_visible_us = x.next_visible_us;
    if (st == TXM_OK && !x.declared)
        return txm_errf(err, TXM_NOT_FOUND, "receive: queue %s is not declared", queue);
    if (st != TXM_OK || x.next_visible_us > txm_now_us())
        return st;
    st = claim(b, queue, max, out, count, err);
    if (st == TXM_OK && *count == 0)
        *next_visible_us = 0; /* dead-lettered some or lost a race: look again at once */
    return st;
}

/* Opens a commit watch on the broker file (see src/db/wal_watch.c for why
 * its folder is watched). NULL, or a watch that polls, when inotify cannot
 * be used; either way txm__wal_watch_wait then sleeps at most 10 ms and the
 * caller's re-check is the poll. */
static txm__wal_watch *watch_open(txm__broker *b)
{
    txm__wal_watch *w = NULL;
    if (b->db_file != NULL)
        txm__wal_watch_open(b->db_file, &w, NULL);
    if (txm__wal_watch_is_polling(w) && !atomic_exchange(&b->warned_poll, true))
        log_text(b, 2, "embedded broker: inotify unavailable, receivers poll every 10 ms");
    return w;
}

/* Takes a watch from b's idle stack, or opens one. Closing an inotify
 * descriptor waits for a kernel RCU grace period (milliseconds), so watches
 * are kept for reuse instead; the events they gathered while idle are
 * drained here, before the caller's re-check. */
static txm__wal_watch *watch_get(txm__broker *b)
{
    txm__wal_watch *w = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->n_watch > 0)
        w = b->watch[--b->n_watch];
    pthread_mutex_unlock(&b->mu);
    if (w == NULL)
        return watch_open(b);
    txm__wal_watch_drain(w);
    return w;
}

static void watch_put(txm__broker *b, txm__wal_watch *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    bool kept = b->n_watch < WATCH_MAX;
    if (kept)
        b->watch[b->n_watch++] = w;
    pthread_mutex_unlock(&b->mu);
    if (!kept)
        txm__wal_watch_close(w);
}

/* How long to sleep: until the deadline, the next lease expiry, or the
 * re-check cap, whichever is first. */
static int wait_timeout(int64_t remaining_ms, int64_t next_visible_us, int cap_ms)
{
    int64_t t = remaining_ms < cap_ms ? remaining_ms : cap_ms;
    if (next_visible_us != INT64_MAX) {
        int64_t until = (next_visible_us - txm_now_us() + 999) / 1000;
        if (until < t)
            t = until;
    }
    return t < 0 ? 0 : (int)t;
}

/* Long poll. The watch is armed before the re-check that follows it, so a
 * commit between the check and poll() still wakes us. A wake-up can come
 * after the WAL write but before the committing process has published its
 * commit in the shared WAL index; then the re-check finds nothing, so the
 * next ones follow 1, 2, 4, ... ms later, backing off to SAFETY_WAIT_MS. */
static txm_status embedded_receive(txm__broker *b, const char *queue, size_t max, int wait_ms,
                                   txm_delivery ***out, size_t *count, txm_error *err)
{
    int64_t deadline = txm__mono_ms() + wait_ms;
    txm__wal_watch *w = NULL;
    bool armed = false;
    int cap_ms = SAFETY_WAIT_MS;
    txm_status st = TXM_OK;
    for (;;) {
        int64_t next_visible_us = INT64_MAX;
        st = attempt(b, queue, max, out, count, &next_visible_us, err);
        int64_t remaining = deadline - txm__mono_ms();
        if (st != TXM_OK || *count > 0 || remaining <= 0)
            break;
        if (!armed) {
            w = watch_get(b);
            armed = true;
            continue;
        }
        int timeout = wait_timeout(remaining, next_visible_us, cap_ms);
        /* Polling the broker file's data_version instead would not do: that
         * value is per connection, and the pool gives no fixed connection to
         * compare; the re-check re-runs the receive's read-only peek. */
        cap_ms = txm__wal_watch_wait(w, timeout) ? RECHECK_WAIT_MS : cap_ms * 2;
        if (cap_ms > SAFETY_WAIT_MS)
            cap_ms = SAFETY_WAIT_MS;
    }
    watch_put(b, w);
    return st;
}

/* ---- settle ------------------------------------------------------------ */

static txm_status ack_txn(conn *c, void *ctx, txm_error *err)
{
    const lease *l = ctx;
    const arg a[] = {a_int(l->row_id), a_int(l->token)};
    int64_t changes = 0;
    txm_status st = run(c, Q_ACK, a, NARGS(a), &changes, err);
    if (st == TXM_OK && changes == 0)
        st = txm_errf(err, TXM_NOT_FOUND,
                      "ack: lease lost (the visibility timeout ran out "
                      "and the message was received again, or it is gone)");
    return st;
}

static txm_status embedded_ack(txm__broker *b, txm_delivery *d, txm_error *err)
{
    return with_conn(b, TXN_NONE, ack_txn, d->handle, err);
}

typedef struct ack_batch_ctx {
    txm_delivery *const *ds;
    size_t n;
    txm_status *results; /* n: each delivery's outcome */
    txm_status first;    /* the first lease lost, TXM_OK if none */
    txm_error lost;      /* its text */
} ack_batch_ctx;

/* Acks each delivery of the batch as ack_txn does. One whose lease was lost
 * gets TXM_NOT_FOUND and the others are acked all the same: only a failing
 * statement fails, and rolls back, the whole transaction. Runs again from
 * the start when with_conn_retry retries. */
static txm_status ack_batch_txn(conn *c, void *ctx, txm_error *err)
{
    ack_batch_ctx *x = ctx;
    x->first = TXM_OK;
    for (size_t i = 0; i < x->n; i++) {
        txm_error later;
        txm_status st = ack_txn(c, x->ds[i]->handle, x->first == TXM_OK ? &x->lost : &later);
        if (st != TXM_OK && st != TXM_NOT_FOUND) {
            if (err != NULL)
                *err = x->first == TXM_OK ? x->lost : later;
            return st;
        }
        x->results[i] = st;
        if (x->first == TXM_OK)
            x->first = st;
    }
    return TXM_OK;
}

/* All the acks in one write transaction: one commit, and one wait for the
 * write lock, instead of one per message. Retried on SQLITE_BUSY as the
 * idempotent transactions are (with_conn_retry): a batch that could not
 * take the lock or commit was rolled back and changed nothing. */
static txm_status embedded_ack_batch(txm__broker *b, txm_delivery *const *ds, size_t n,
                                     txm_status *results, txm_error *err)
{
    ack_batch_ctx x = {.ds = ds, .n = n, .results = results};
    txm_status st = with_conn_retry(b, TXN_WRITE, ack_batch_txn, &x, err);
    if (st != TXM_OK) {
        for (size_t i = 0; i < n; i++)
            results[i] = st;
        return st;
    }
    if (x.first != TXM_OK && err != NULL)
        *err = x.lost;
    return x.first;
}

typedef struct settle_ctx {
    const lease *l;
    int64_t delay_ms;   /* nack delay; < 0 for dead_letter */
    const char *reason; /* may be NULL */
} settle_ctx;

/* nack and dead_letter: the row must still be under this lease. A nack of
 * the max_receive_count-th receive, and every dead_letter, moves it to the
 * dead-letter queue; another nack hides it until the delay has passed. */
static txm_status settle_txn(conn *c, void *ctx, txm_error *err)
{
    const settle_ctx *x = ctx;
    const arg key[] = {a_int(x->l->row_id), a_int(x->l->token)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_SETTLE_GET, key, NARGS(key), &s, err);
    if (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && !row)
        return txm_errf(err, TXM_NOT_FOUND,
                        "nack: lease lost (the visibility timeout ran out "
                        "and the message was received again, or it is gone)");
    if (st != TXM_OK)
        return st;
    bool to_dlq = x->delay_ms < 0 || column_count(s, 0) >= column_count(s, 1);
    char dlq[TXM__DLQ_NAME_MAX];
    const char *name = (const char *)sqlite3_column_text(s, 2);
    snprintf(dlq, sizeof dlq, "%s", name != NULL ? name : "");
    sqlite3_reset(s);
    int64_t now = txm_now_us();
    if (to_dlq) {
        const arg a[] = {a_int(x->l->row_id), a_text(dlq), a_int(now), a_text(x->reason)};
        return run(c, Q_TO_DLQ, a, NARGS(a), NULL, err);
    }
    const arg a[] = {key[0], key[1], a_int(now + x->delay_ms * 1000), a_text(x->reason)};
    return run(c, Q_NACK, a, NARGS(a), NULL, err);
}

static txm_status embedded_nack(txm__broker *b, txm_delivery *d, int delay_ms, const char *reason,
                                txm_error *err)
{
    settle_ctx x = {d->handle, delay_ms, reason};
    return with_conn(b, TXN_WRITE, settle_txn, &x, err);
}

static txm_status embedded_dead_letter(txm__broker *b, txm_delivery *d, const char *reason,
                                       txm_error *err)
{
    settle_ctx x = {d->handle, -1, reason};
    return with_conn(b, TXN_WRITE, settle_txn, &x, err);
}

static txm_status extend_txn(conn *c, void *ctx, txm_error *err)
{
    const lease *l = ctx;
    const arg a[] = {a_int(l->row_id), a_int(l->token), a_int(txm_now_us())};
    int64_t changes = 0;
    txm_status st = run(c, Q_EXTEND, a, NARGS(a), &changes, err);
    if (st == TXM_OK && changes == 0)
        st = txm_errf(err, TXM_NOT_FOUND,
                      "extend: lease lost (the visibility timeout ran out "
                      "and the message was received again, or it is gone)");
    return st;
}

static txm_status embedded_extend(txm__broker *b, txm_delivery *d, txm_error *err)
{
    return with_conn(b, TXN_NONE, extend_txn, d->handle, err);
}

/* ---- queue depth and the dead-letter queue ----------------------------- */

typedef struct queue_ctx {
    const char *queue;
    const char *message_id; /* redrive: one message, or NULL for all */
    size_t limit;           /* dlq_list */
    txm_delivery **list;    /* dlq_list: limit slots */
    size_t count;           /* rows listed, moved or deleted */
    int64_t depth;
} queue_ctx;

static txm_status depth_txn(conn *c, void *ctx, txm_error *err)
{
    queue_ctx *x = ctx;
    const arg a[] = {a_text(x->queue)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_DEPTH, a, NARGS(a), &s, err);
    if (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row) {
        x->depth = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    return st;
}

/* Counts queue's messages, visible or leased; 0 for an unknown queue. A
 * dead-letter queue's name counts its messages. */
static txm_status embedded_queue_depth(txm__broker *b, const char *queue, int64_t *depth,
                                       txm_error *err)
{
    queue_ctx x = {.queue = queue};
    txm_status st = with_conn(b, TXN_NONE, depth_txn, &x, err);
    *depth = x.depth;
    return st;
}

/* What queues_txn fills: up to TXM_TRANSPORT_QUEUES_MAX slots. */
typedef struct queues_ctx {
    txm_queue_info *list;
    size_t count;
} queues_ctx;

/* A text column, "" for NULL: a broker file written by something else may
 * hold NULL where the schema says NOT NULL. */
static const char *column_text(sqlite3_stmt *s, int i)
{
    const char *v = (const char *)sqlite3_column_text(s, i);
    return v != NULL ? v : "";
}

static txm_status queues_txn(conn *c, void *ctx, txm_error *err)
{
    queues_ctx *x = ctx;
    const arg a[] = {a_int(txm_now_us()), a_int(TXM_TRANSPORT_QUEUES_MAX)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    x->count = 0; /* a retried transaction starts over */
    txm_status st = prep(c, Q_QUEUES, a, NARGS(a), &s, err);
    while (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row &&
           x->count < TXM_TRANSPORT_QUEUES_MAX) {
        txm_queue_info *q = &x->list[x->count++];
        snprintf(q->name, sizeof q->name, "%s", column_text(s, 0));
        snprintf(q->topic, sizeof q->topic, "%s", column_text(s, 1));
        snprintf(q->dlq, sizeof q->dlq, "%s", column_text(s, 2));
        q->depth = sqlite3_column_int64(s, 3);
        q->in_flight = sqlite3_column_int64(s, 4);
        q->dead_letters = sqlite3_column_int64(s, 5);
    }
    if (s != NULL)
        sqlite3_reset(s);
    return st;
}

static txm_status embedded_queues(txm__broker *b, txm_queue_info **out, size_t *count,
                                  txm_error *err)
{
    queues_ctx x = {.list = txm__calloc(TXM_TRANSPORT_QUEUES_MAX, sizeof(txm_queue_info))};
    if (x.list == NULL)
        return txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    txm_status st = with_conn(b, TXN_NONE, queues_txn, &x, err);
    if (st != TXM_OK || x.count == 0) {
        txm_free(x.list);
        return st;
    }
    *out = x.list;
    *count = x.count;
    return TXM_OK;
}

static txm_status dlq_list_txn(conn *c, void *ctx, txm_error *err)
{
    queue_ctx *x = ctx;
    sub_limits lim;
    txm_status st = limits_get(c, x->queue, &lim, err);
    const arg a[] = {a_text(lim.dlq), a_text(x->queue), a_int((int64_t)x->limit)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    if (st == TXM_OK)
        st = prep(c, Q_DLQ_LIST, a, NARGS(a), &s, err);
    while (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && row) {
        st = row_delivery(s, lim.dlq, column_count(s, 4), NULL, &x->list[x->count], err);
        if (st == TXM_OK)
            x->list[x->count++]->dead_lettered_at_us = sqlite3_column_int64(s, 6);
    }
    if (s != NULL)
        sqlite3_reset(s);
    return st;
}

/* Lists the dead letters that came from queue, oldest first, without
 * consuming them; the deliveries have no lease and cannot be acked.
 * TXM_NOT_FOUND when queue was never declared. */
static txm_status embedded_dlq_list(txm__broker *b, const char *queue, size_t limit,
                                    txm_delivery ***out, size_t *count, txm_error *err)
{
    queue_ctx x = {
        .queue = queue, .limit = limit, .list = txm__calloc(limit, sizeof(txm_delivery *))};
    if (x.list == NULL)
        return txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    txm_status st = with_conn(b, TXN_READ, dlq_list_txn, &x, err);
    if (st != TXM_OK) {
        txm_delivery_list_free(x.list, x.count);
        return st;
    }
    *out = x.list;
    *count = x.count;
    return TXM_OK;
}

static txm_status redrive_txn(conn *c, void *ctx, txm_error *err)
{
    queue_ctx *x = ctx;
    sub_limits lim;
    txm_status st = limits_get(c, x->queue, &lim, err);
    const arg a[] = {a_text(lim.dlq), a_text(x->queue), a_text(x->message_id), a_int(txm_now_us())};
    int64_t moved = 0;
    if (st == TXM_OK)
        st = run(c, Q_REDRIVE, a, NARGS(a), NULL, err);
    if (st == TXM_OK)
        st = run(c, Q_DLQ_DELETE, a, 3, &moved, err);
    x->count = (size_t)moved;
    return st;
}

/* Moves queue's dead letters (one message id, or all) back to the end of
 * queue with receive count 0, visible now. TXM_NOT_FOUND when queue was
 * never declared; TXM_OK with *moved 0 when nothing matched. */
static txm_status embedded_dlq_redrive(txm__broker *b, const char *queue, const char *message_id,
                                       size_t *moved, txm_error *err)
{
    queue_ctx x = {.queue = queue, .message_id = message_id};
    txm_status st = with_conn(b, TXN_WRITE, redrive_txn, &x, err);
    if (moved != NULL)
        *moved = st == TXM_OK ? x.count : 0;
    return st;
}

static txm_status purge_txn(conn *c, void *ctx, txm_error *err)
{
    queue_ctx *x = ctx;
    sub_limits lim;
    txm_status st = limits_get(c, x->queue, &lim, err);
    const arg a[] = {a_text(lim.dlq), a_text(x->queue), a_text(x->message_id)};
    int64_t deleted = 0;
    if (st == TXM_OK)
        st = run(c, Q_DLQ_DELETE, a, NARGS(a), &deleted, err);
    x->count = (size_t)deleted;
    return st;
}

/* Deletes every dead letter that came from queue. TXM_NOT_FOUND when queue
 * was never declared. */
static txm_status embedded_dlq_purge(txm__broker *b, const char *queue, size_t *purged,
                                     txm_error *err)
{
    queue_ctx x = {.queue = queue};
    txm_status st = with_conn(b, TXN_WRITE, purge_txn, &x, err);
    if (purged != NULL)
        *purged = st == TXM_OK ? x.count : 0;
    return st;
}

/* Deletes queue's dead letters with message_id. TXM_NOT_FOUND when queue
 * was never declared; TXM_OK with *deleted 0 when none matched. */
static txm_status embedded_dlq_delete(txm__broker *b, const char *queue, const char *message_id,
                                      size_t *deleted, txm_error *err)
{
    queue_ctx x = {.queue = queue, .message_id = message_id};
    txm_status st = with_conn(b, TXN_WRITE, purge_txn, &x, err);
    if (deleted != NULL)
        *deleted = st == TXM_OK ? x.count : 0;
    return st;
}

/* ---- large payloads ---------------------------------------------------- */

/* Payloads stay as long as a message may wait in a queue or its dead-letter
 * queue; older ones are dropped when a new one is stored. */
#define BLOB_TTL_US (14LL * 24 * 3600 * 1000000)

typedef struct blob_ctx {
    const char *key;
    const char *body; /* put */
    size_t len;
    char *out; /* get */
} blob_ctx;

static txm_status blob_put_txn(conn *c, void *ctx, txm_error *err)
{
    blob_ctx *x = ctx;
    int64_t now = txm_now_us();
    const arg expire[] = {a_int(now - BLOB_TTL_US)};
    const arg a[] = {a_text(x->key), a_blob(x->body, x->len), a_int(now)};
    txm_status st = run(c, Q_BLOB_EXPIRE, expire, NARGS(expire), NULL, err);
    if (st == TXM_OK)
        st = run(c, Q_BLOB_PUT, a, NARGS(a), NULL, err);
    return st;
}

static txm_status embedded_blob_put(txm__broker *b, const char *key, const char *body, size_t len,
                                    txm_error *err)
{
    blob_ctx x = {.key = key, .body = body, .len = len};
    return with_conn(b, TXN_WRITE, blob_put_txn, &x, err);
}

static txm_status blob_get_txn(conn *c, void *ctx, txm_error *err)
{
    blob_ctx *x = ctx;
    const arg a[] = {a_text(x->key)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    txm_status st = prep(c, Q_BLOB_GET, a, NARGS(a), &s, err);
    if (st == TXM_OK && (st = step(c, s, &row, err)) == TXM_OK && !row)
        st = txm_errf(err, TXM_NOT_FOUND, "embedded broker: no payload %s", x->key);
    if (st == TXM_OK) {
        x->len = (size_t)sqlite3_column_bytes(s, 0);
        x->out = txm__strndup(sqlite3_column_blob(s, 0), x->len);
        sqlite3_reset(s);
        if (x->out == NULL)
            st = txm_errf(err, TXM_NOMEM, "embedded broker: out of memory");
    }
    return st;
}

static txm_status embedded_blob_get(txm__broker *b, const char *key, char **out, size_t *len,
                                    txm_error *err)
{
    blob_ctx x = {.key = key};
    txm_status st = with_conn(b, TXN_READ, blob_get_txn, &x, err);
    *out = x.out;
    *len = x.len;
    return st;
}

const txm__transport_ops txm__transport_embedded = {
    .scheme = "embedded",
    .open = embedded_open,
    .close = embedded_close,
    .declare_topic = embedded_declare_topic,
    .declare_subscription = embedded_declare_subscription,
    .publish = embedded_publish,
    .receive = embedded_receive,
    .ack = embedded_ack,
    .ack_batch = embedded_ack_batch,
    .nack = embedded_nack,
    .dead_letter = embedded_dead_letter,
    .extend = embedded_extend,
    .queue_depth = embedded_queue_depth,
    .queues = embedded_queues,
    .dlq_list = embedded_dlq_list,
    .dlq_redrive = embedded_dlq_redrive,
    .dlq_purge = embedded_dlq_purge,
    .dlq_delete = embedded_dlq_delete,
    .blob_put = embedded_blob_put,
    .blob_get = embedded_blob_get,
};
