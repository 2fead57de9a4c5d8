/* Database handle: picks the driver from the URL and keeps a bounded pool of
 * connections, each used by one thread at a time.
 *
 * On SQLite the writers of a handle also queue for their turn at the write
 * lock (write_queue.c): units of work from txm__conn_begin to their commit or
 * rollback, and txm_db_exec statements that write, for their one statement.
 *
 * Thread safety: db->mu guards the pool (idle list and counts), and
 * db->writers has a lock of its own. A connection taken with txm__db_acquire
 * belongs to the taking thread until released. */
#include "db/db_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "db/migrate.h"

void txm_db_options_init(txm_db_options *o)
{
    memset(o, 0, sizeof *o);
    o->pool_size = 4;
    o->busy_timeout_ms = 5000;
    o->migrate = true;
    o->pg_relay_slot = true;
}

static const txm__driver *driver_for(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return &txm__driver_sqlite;
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return &txm__driver_pg;
    return NULL;
}

txm_status txm_db_open(const char *url, const txm_db_options *opts, txm_db **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (url == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "db_open: NULL argument");
    const txm__driver *drv = driver_for(url);
    if (drv == NULL)
        return txm_errf(err, TXM_INVALID,
                        "db_open: unknown database URL scheme (want sqlite:PATH or "
                        "postgresql://...)");
    txm_db *db = txm__calloc(1, sizeof *db);
    if (db == NULL)
        return txm_errf(err, TXM_NOMEM, "db_open: out of memory");
    if (opts != NULL)
        db->opts = *opts;
    else
        txm_db_options_init(&db->opts);
    if (db->opts.pool_size <= 0)
        db->opts.pool_size = 1;
    db->drv = drv;
    db->url = txm__strdup(url);
    db->idle = txm__calloc((size_t)db->opts.pool_size, sizeof *db->idle);
    if (db->url == NULL || db->idle == NULL) {
        free(db->url);
        free(db->idle);
        free(db);
        return txm_errf(err, TXM_NOMEM, "db_open: out of memory");
    }
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    txm__write_queue_init(&db->writers);
    atomic_init(&db->busy_waits, 0);
    atomic_init(&db->outbox_mode, TXM_OUTBOX_TABLE);

    /* Connect once now, so a wrong URL fails here and not at first use. */
    txm__conn *conn = NULL;
    txm_status st = txm__db_acquire(db, &conn, err);
    txm__db_release(db, conn);
    if (st == TXM_OK && db->opts.migrate)
        st = txm_db_migrate(db, err);
    /* Read once: a changed setting reaches running processes at restart. */
    if (st == TXM_OK)
        st = txm__db_settings_load(db, err);
    if (st != TXM_OK) {
        txm_db_close(db);
        return st;
    }
    *out = db;
    return TXM_OK;
}

void txm_db_close(txm_db *db)
{
    if (db == NULL)
        return;
    for (int i = 0; i < db->n_idle; i++)
        db->drv->disconnect(db->idle[i]);
    txm__wal_watch_close(db->watch);
    txm__write_queue_fini(&db->writers);
    pthread_cond_destroy(&db->cv);
    pthread_mutex_destroy(&db->mu);
    free(db->idle);
    free(db->url);
    free(db);
}

txm_status txm_db_wait_for_commit(txm_db *db, int timeout_ms, txm_error *err)
{
    if (db == NULL || timeout_ms < 0)
        return txm_errf(err, TXM_INVALID, "db_wait_for_commit: NULL db or negative timeout");
    if (db->drv->id != TXM__DIALECT_SQLITE)
        return txm_errf(err, TXM_UNSUPPORTED, "db_wait_for_commit: SQLite only");
    /* The watch queues what happens after it opens, so a commit between the
     * caller's last read and its wait is not lost once the watch exists. */
    if (db->watch == NULL) {
        txm_status st = txm__wal_watch_open(db->url + strlen("sqlite:"), &db->watch, err);
        if (st != TXM_OK)
            return st;
    }
    if (timeout_ms > 0)
        txm__wal_watch_wait(db->watch, timeout_ms);
    return TXM_OK;
}

const char *txm_db_dialect(const txm_db *db)
{
    return db == NULL ? "" : db->drv->dialect;
}

txm__dialect txm__db_dialect(const txm_db *db)
{
    return db->drv->id;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

txm_status txm__db_acquire(txm_db *db, txm__conn **conn, txm_error *err)
{
    *conn = NULL;
    struct timespec deadline;
    deadline_after(&deadline, db->opts.busy_timeout_ms);
    pthread_mutex_lock(&db->mu);
    while (db->n_idle == 0 && db->n_open >= db->opts.pool_size) {
        if (pthread_cond_timedwait(&db->cv, &db->mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&db->mu);
            return txm_errf(err, TXM_BUSY, "db: no free connection in %d ms (pool of %d)",
                            db->opts.busy_timeout_ms, db->opts.pool_size);
        }
    }
    /* A pooled session the server closed meanwhile (a restart) is replaced
     * here, so the caller's first statement does not fail on it. */
    while (db->n_idle > 0) {
        txm__conn *c = db->idle[--db->n_idle];
        if (!db->drv->is_broken(c)) {
            *conn = c;
            pthread_mutex_unlock(&db->mu);
            return TXM_OK;
        }
        db->drv->disconnect(c);
        db->n_open--;
    }
    db->n_open++; /* reserve the slot, then connect outside the lock */
    pthread_mutex_unlock(&db->mu);
    txm_status st = db->drv->connect(db->url, &db->opts, &db->busy_waits, conn, err);
    if (st != TXM_OK) {
        pthread_mutex_lock(&db->mu);
        db->n_open--;
        pthread_cond_signal(&db->cv);
        pthread_mutex_unlock(&db->mu);
    }
    return st;
}

void txm__db_release(txm_db *db, txm__conn *conn)
{
    if (conn == NULL)
        return;
    bool broken = db->drv->is_broken(conn);
    if (db->drv->serial_writers) {
        /* A connection dropped inside its transaction (the caller neither
         * committed nor rolled back) ends it before the next writer's turn,
         * which would otherwise find the lock still held. The turn goes on
         * while conn still exists: a new connection at the same address
         * must not find itself the holder. */
        if (broken)
            db->drv->rollback(conn);
        txm__write_queue_release(&db->writers, conn);
    }
    if (broken)
        db->drv->disconnect(conn);
    pthread_mutex_lock(&db->mu);
    if (broken)
        db->n_open--;
    else
        db->idle[db->n_idle++] = conn;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

txm_status txm__conn_exec(txm_db *db, txm__conn *conn, const char *sql, const txm_value *params,
                          size_t n_params, txm_rows **rows, int64_t *changes, txm_error *err)
{
    if (rows != NULL)
        *rows = NULL;
    if (changes != NULL)
        *changes = 0;
    if (sql == NULL || (n_params > 0 && params == NULL))
        return txm_errf(err, TXM_INVALID, "db_exec: NULL argument");
    return db->drv->exec(conn, sql, params, n_params, rows, changes, err);
}

txm_status txm__conn_begin(txm_db *db, txm__conn *conn, txm_error *err)
{
    if (!db->drv->serial_writers)
        return db->drv->begin(conn, err);
    txm_status st = txm__write_queue_acquire(&db->writers, conn, db->opts.busy_timeout_ms, err);
    if (st == TXM_OK)
        st = db->drv->begin(conn, err);
    if (st != TXM_OK)
        txm__write_queue_release(&db->writers, conn);
    return st;
}

txm_status txm__conn_commit(txm_db *db, txm__conn *conn, txm_error *err)
{
    txm_status st = db->drv->commit(conn, err);
    /* A failed COMMIT (SQLITE_BUSY) leaves the transaction open: the turn
     * stays with conn until its rollback or release. */
    if (st == TXM_OK && db->drv->serial_writers)
        txm__write_queue_release(&db->writers, conn);
    return st;
}

void txm__conn_rollback(txm_db *db, txm__conn *conn)
{
    db->drv->rollback(conn);
    if (db->drv->serial_writers)
        txm__write_queue_release(&db->writers, conn);
}

uint64_t txm_db_busy_waits(const txm_db *db)
{
    if (db == NULL)
        return 0;
    return atomic_load_explicit(&db->busy_waits, memory_order_relaxed);
}

/* Runs one statement in autocommit. A statement that writes waits for its
 * turn like a unit of work: SQLite would otherwise make it poll for the
 * write lock in the busy handler, against the queued writers. */
static txm_status exec_autocommit(txm_db *db, txm__conn *conn, const char *sql,
                                  const txm_value *params, size_t n_params, txm_rows **rows,
                                  int64_t *changes, txm_error *err)
{
    bool queued = db->drv->serial_writers && sql != NULL && db->drv->is_write(conn, sql);
    if (queued) {
        txm_status st = txm__write_queue_acquire(&db->writers, conn, db->opts.busy_timeout_ms, err);
        if (st != TXM_OK)
            return st;
    }
    txm_status st = txm__conn_exec(db, conn, sql, params, n_params, rows, changes, err);
    if (queued)
        txm__write_queue_release(&db->writers, conn);
    return st;
}

txm_status txm_db_exec(txm_db *db, const char *sql, const txm_value *params, size_t n_params,
                       txm_rows **rows, int64_t *changes, txm_error *err)
{
    if (rows != NULL)
        *rows = NULL;
    if (db == NULL)
        return txm_errf(err, TXM_INVALID, "db_exec: NULL db");
    txm__conn *conn = NULL;
    txm_status st = txm__db_acquire(db, &conn, err);
    if (st == TXM_OK)
        st = exec_autocommit(db, conn, sql, params, n_params, rows, changes, err);
    txm__db_release(db, conn);
    return st;
}
