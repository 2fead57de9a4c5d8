/* SQLite driver: WAL mode, a counting busy handler with SQLite's own timeout
 * steps, prepared statements cached per connection, $N parameters bound by
 * number. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "db/db_int.h"

struct txm__conn {
    sqlite3 *db;
    txm__stmt_cache cache;             /* handles are sqlite3_stmt * */
    int busy_timeout_ms;               /* the busy handler's total sleep */
    atomic_uint_least64_t *busy_waits; /* the handle's count of busy handler calls */
};

txm_status txm__sqlite_status(int rc, int sys_errno, txm_status other)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return TXM_NO_SPACE;
    case SQLITE_IOERR:
        return sys_errno == ENOSPC || sys_errno == EFBIG ? TXM_NO_SPACE : other;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TXM_BUSY;
    case SQLITE_NOMEM:
        return TXM_NOMEM;
    case SQLITE_TOOBIG:
        return TXM_TOO_BIG;
    default:
        return other;
    }
}

/* Called right after the SQLite call that failed with rc, which the caller
 * made with errno cleared: SQLite 3.40 leaves sqlite3_system_errno() at 0
 * for a failed write to the WAL (EFBIG past RLIMIT_FSIZE), but errno still
 * holds it, as nothing SQLite does after the write fails sets it again. */
static txm_status fail(txm__conn *c, int rc, const char *what, txm_error *err)
{
    int sys = errno;
    if (sqlite3_system_errno(c->db) != 0)
        sys = sqlite3_system_errno(c->db);
    txm_status st =
        (rc & 0xff) == SQLITE_CONSTRAINT ? TXM_CONSTRAINT : txm__sqlite_status(rc, sys, TXM_DB);
    txm_errf(err, st, "sqlite: %s: %s", what, sqlite3_errmsg(c->db));
    if (err != NULL && st == TXM_NO_SPACE)
        err->sys_errno = sys;
    return st;
}

static txm_status run_simple(txm__conn *c, const char *sql, txm_error *err)
{
    errno = 0; /* see fail */
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? TXM_OK : fail(c, rc, sql, err);
}

static void finalize(void *stmt)
{
    sqlite3_finalize(stmt);
}

static void sqlite_disconnect(txm__conn *c)
{
    if (c == NULL)
        return;
    txm__stmt_cache_fini(&c->cache, finalize);
    sqlite3_close(c->db);
    free(c);
}

static void sqlite_process_init_once(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* SQLITE_MISUSE once initialised: kept as is */
}

void txm__sqlite_process_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_process_init_once);
}

/* SQLite busy handler: sqlite3_busy_timeout's waits (sqliteDefaultBusyCallback
 * with usleep: steps of 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100
 * ms, the last one cut so that the sleeps add up to the busy timeout), and
 * one count per call in the handle's busy_waits. Returns 0 to give up
 * (SQLITE_BUSY). The handle's own writers queue before they take the lock,
 * so a call here means a writer of another process or handle holds it. */
static int busy_wait(void *ctx, int count)
{
    static const int delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    static const int totals[] = {0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228};
    enum { NDELAY = sizeof delays / sizeof delays[0] };
    txm__conn *c = ctx;
    atomic_fetch_add_explicit(c->busy_waits, 1, memory_order_relaxed);
    int delay = delays[NDELAY - 1];
    long long prior = totals[NDELAY - 1] + (long long)delay * (count - (NDELAY - 1));
    if (count < NDELAY) {
        delay = delays[count];
        prior = totals[count];
    }
    if (prior + delay > c->busy_timeout_ms) {
        delay = (int)(c->busy_timeout_ms - prior);
        if (delay <= 0)
            return 0;
    }
    struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

static txm_status sqlite_connect(const char *url, const txm_db_options *o,
                                 atomic_uint_least64_t *busy_waits, txm__conn **out, txm_error *err)
{
    *out = NULL;
    const char *path = url + strlen("sqlite:");
    if (path[0] == '\0')
        return txm_errf(err, TXM_INVALID, "sqlite: empty path in URL");
    txm__conn *c = txm__calloc(1, sizeof *c);
    if (c == NULL)
        return txm_errf(err, TXM_NOMEM, "sqlite: out of memory");
    c->busy_timeout_ms = o->busy_timeout_ms;
    c->busy_waits = busy_waits;
    /* NOMUTEX: the pool hands a connection to one thread at a time. */
    txm__sqlite_process_init();
    errno = 0; /* see fail */
    int rc = sqlite3_open_v2(
        path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    txm_status st = rc == SQLITE_OK ? TXM_OK : fail(c, rc, path, err);
    if (st == TXM_OK)
        sqlite3_busy_handler(c->db, busy_wait, c);
    if (st == TXM_OK)
        st = run_simple(c, "PRAGMA journal_mode=WAL", err);
    if (st == TXM_OK)
        st = run_simple(
            c, o->sqlite_sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err);
    if (st == TXM_OK)
        st = run_simple(c, "PRAGMA foreign_keys=ON", err);
    if (st == TXM_OK && o->sqlite_cache_kb > 0) {
        char sql[64]; /* from an int option, never from input text */
        snprintf(sql, sizeof sql, "PRAGMA cache_size=-%d", o->sqlite_cache_kb);
        st = run_simple(c, sql, err);
    }
    if (st != TXM_OK) {
        sqlite_disconnect(c);
        return st;
    }
    *out = c;
    return TXM_OK;
}

/* Returns the cached statement for sql, preparing (and evicting the least
 * recently used entry) on a miss. */
static txm_status prepare(txm__conn *c, const char *sql, sqlite3_stmt **out, txm_error *err)
{
    txm__stmt_slot *victim = NULL;
    txm__stmt_slot *hit = txm__stmt_cache_find(&c->cache, sql, &victim);
    if (hit != NULL) {
        *out = hit->handle;
        return TXM_OK;
    }
    char *key = txm__strdup(sql);
    if (key == NULL)
        return txm_errf(err, TXM_NOMEM, "sqlite: out of memory");
    sqlite3_stmt *stmt = NULL;
    errno = 0; /* see fail */
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK) {
        free(key);
        return fail(c, rc, "prepare", err);
    }
    sqlite3_finalize(victim->handle);
    txm__stmt_cache_drop(victim);
    txm__stmt_cache_put(&c->cache, victim, &key, stmt, 0);
    *out = stmt;
    return TXM_OK;
}

/* Binds params to the statement's parameters: "$N" or "?N" takes params[N-1],
 * a bare "?" takes the parameter at its position. */
static txm_status bind_all(txm__conn *c, sqlite3_stmt *stmt, const txm_value *params, size_t n,
                           txm_error *err)
{
    int count = sqlite3_bind_parameter_count(stmt);
    for (int j = 1; j <= count; j++) {
        const char *name = sqlite3_bind_parameter_name(stmt, j);
        long idx = j;
        if (name != NULL) {
            char *end = NULL;
            idx = strtol(name + 1, &end, 10);
            if ((name[0] != '$' && name[0] != '?') || end == name + 1 || *end != '\0')
                return txm_errf(err, TXM_INVALID, "sqlite: parameter %s is not $N", name);
        }
        if (idx < 1 || (size_t)idx > n)
            return txm_errf(err, TXM_INVALID, "sqlite: statement uses $%ld, %zu given", idx, n);
        const txm_value *v = &params[idx - 1];
        int rc = SQLITE_OK;
        if (v->type == TXM_VALUE_INT)
            rc = sqlite3_bind_int64(stmt, j, v->i);
        else if (v->type == TXM_VALUE_TEXT && v->text != NULL)
            rc = sqlite3_bind_text(stmt, j, v->text, -1, SQLITE_STATIC);
        else
            rc = sqlite3_bind_null(stmt, j);
        if (rc != SQLITE_OK)
            return fail(c, rc, "bind", err);
    }
    return TXM_OK;
}

static txm_status collect_row(sqlite3_stmt *stmt, txm_rows *rows)
{
    enum { MAX_COLS = 64 };
    const char *vals[MAX_COLS];
    size_t lens[MAX_COLS];
    int ncol = sqlite3_column_count(stmt);
    if (ncol > MAX_COLS)
        return TXM_TOO_BIG;
    for (int i = 0; i < ncol; i++) {
        vals[i] = (const char *)sqlite3_column_text(stmt, i);
        lens[i] = (size_t)sqlite3_column_bytes(stmt, i);
    }
    return txm__rows_add(rows, vals, lens);
}

static txm_status sqlite_exec(txm__conn *c, const char *sql, const txm_value *params, size_t n,
                              txm_rows **rows, int64_t *changes, txm_error *err)
{
    sqlite3_stmt *stmt = NULL;
    txm_status st = prepare(c, sql, &stmt, err);
    if (st == TXM_OK)
        st = bind_all(c, stmt, params, n, err);
    txm_rows *result = NULL;
    if (st == TXM_OK && rows != NULL &&
        (result = txm__rows_new((size_t)sqlite3_column_count(stmt))) == NULL)
        st = txm_errf(err, TXM_NOMEM, "sqlite: out of memory");
    while (st == TXM_OK) {
        errno = 0; /* see fail */
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW)
            st = fail(c, rc, "step", err);
        else if (result != NULL && (st = collect_row(stmt, result)) != TXM_OK)
            txm_errf(err, st, "sqlite: result too large or out of memory");
    }
    if (stmt != NULL) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
    if (st != TXM_OK) {
        txm_rows_free(result);
        return st;
    }
    if (changes != NULL)
        *changes = sqlite3_changes64(c->db);
    if (rows != NULL)
        *rows = result;
    return TXM_OK;
}

/* IMMEDIATE takes the write lock now: WAL readers that upgrade later can
 * fail with SQLITE_BUSY_SNAPSHOT, which no busy timeout can wait out. */
static txm_status sqlite_begin(txm__conn *c, txm_error *err)
{
    return run_simple(c, "BEGIN IMMEDIATE", err);
}

static txm_status sqlite_commit(txm__conn *c, txm_error *err)
{
    return run_simple(c, "COMMIT", err);
}

static void sqlite_rollback(txm__conn *c)
{
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static bool sqlite_is_broken(const txm__conn *c)
{
    return !sqlite3_get_autocommit(c->db); /* left inside a transaction */
}

static bool sqlite_is_write(txm__conn *c, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    return prepare(c, sql, &stmt, NULL) == TXM_OK && !sqlite3_stmt_readonly(stmt);
}

const txm__driver txm__driver_sqlite = {
    .dialect = "sqlite",
    .id = TXM__DIALECT_SQLITE,
    .serial_writers = true,
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .exec = sqlite_exec,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .is_broken = sqlite_is_broken,
    .is_write = sqlite_is_write,
};
