/* PostgreSQL driver over libpq: statements prepared once per connection under
 * generated names (an LRU cache of TXM__STMT_CACHE_SIZE), parameters bound as
 * text, and SQLSTATEs mapped to txmsg statuses. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "db/db_int.h"

/* Most parameters one statement may bind: they are formatted on the stack. */
#define PG_MAX_PARAMS 64
/* Room for an int64 in decimal: 19 digits, a sign and the NUL. */
#define PG_INT_LEN 24
/* Used unless the URL sets connect_timeout, so an unreachable server cannot
 * hold a pool slot forever. */
#define PG_CONNECT_TIMEOUT_S "10"

typedef txm__stmt_slot cached_stmt; /* id n names the server-side statement "txm_<n>" */

/* Room for "txm_" and a uint64 in decimal. */
#define PG_STMT_NAME_LEN 32

struct txm__conn {
    PGconn *pg;
    txm__stmt_cache cache; /* handles unused: statements live on the server */
    uint64_t next_id;      /* suffix of the next statement name; names are never reused */
    bool broken;           /* the session is unusable and must not return to the pool */
    txm_log_fn log;        /* copied from the options; may be NULL */
    void *log_ctx;
};

/* Copies a libpq message into buf as one line: inner newlines become spaces
 * and the trailing newline is dropped. Returns buf. */
static const char *one_line(const char *msg, char *buf, size_t len)
{
    snprintf(buf, len, "%s", msg != NULL ? msg : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *p = buf; *p != '\0'; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return buf;
}

/* Passes server notices (WARNING and above: see client_min_messages) to the
 * log callback. libpq's default processor would print them to stderr. */
static void on_notice(void *arg, const char *message)
{
    const txm__conn *c = arg;
    char line[TXM_ERROR_TEXT_LEN];
    txm_logf(c->log, c->log_ctx, TXM_LOG_WARN, "postgresql: %s",
             one_line(message, line, sizeof line));
}

static const char *sqlstate(const PGresult *res)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

/* Class 08 (connection exception), 57P01..57P03 (admin or crash shutdown,
 * cannot connect now: "the database system is starting up") and 53300 (too
 * many connections) are the server being away, not the statement failing. */
static bool is_outage(const char *state)
{
    return strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 ||
           strcmp(state, "53300") == 0;
}

static txm_status status_for(const char *state)
{
    if (is_outage(state))
        return TXM_UNAVAILABLE;
    if (strncmp(state, "23", 2) == 0) /* integrity constraint violation */
        return TXM_CONSTRAINT;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) /* serialization, deadlock */
        return TXM_CONFLICT;
    if (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0) /* lock, statement timeout */
        return TXM_BUSY;
    if (strcmp(state, "53100") == 0) /* disk_full: a table or index could not grow */
        return TXM_NO_SPACE;
    return TXM_DB;
}

/* Turns a failed result (res may be NULL) into a status and err's text. A lost
 * connection marks c broken, so the pool closes it instead of reusing it. */
static txm_status fail(txm__conn *c, const PGresult *res, txm_error *err)
{
    const char *state = sqlstate(res);
    char line[TXM_ERROR_TEXT_LEN];
    if (PQstatus(c->pg) != CONNECTION_OK) {
        c->broken = true;
        return txm_errf(err, TXM_UNAVAILABLE, "postgresql: connection lost: %s",
                        one_line(PQerrorMessage(c->pg), line, sizeof line));
    }
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL) {
        const char *raw = res != NULL ? PQresultErrorMessage(res) : "";
        msg = one_line(raw[0] != '\0' ? raw : PQerrorMessage(c->pg), line, sizeof line);
    }
    if (state[0] == '\0')
        return txm_errf(err, TXM_DB, "postgresql: %s", msg);
    if (is_outage(state)) /* the session is ending: the pool replaces it */
        c->broken = true;
    return txm_errf(err, status_for(state), "postgresql: %s (SQLSTATE %s)", msg, state);
}

/* Runs a parameterless command that returns no rows. */
static txm_status run_simple(txm__conn *c, const char *sql, txm_error *err)
{
    PGresult *res = PQexec(c->pg, sql);
    txm_status st = PQresultStatus(res) == PGRES_COMMAND_OK ? TXM_OK : fail(c, res, err);
    PQclear(res);
    return st;
}

static void pg_disconnect(txm__conn *c)
{
    if (c == NULL)
        return;
    txm__stmt_cache_fini(&c->cache, NULL);
    PQfinish(c->pg); /* NULL-safe */
    free(c);
}

/* Opens a session on url (a libpq URI) in UTC with notices below WARNING
 * suppressed. TXM_UNAVAILABLE when the server cannot be reached (refused,
 * starting up, timed out): libpq reports no SQLSTATE for a failed connect, and
 * a wrong password or database name looks the same to it; *out NULL on failure. */
static txm_status pg_connect(const char *url, const txm_db_options *opts,
                             atomic_uint_least64_t *busy_waits, txm__conn **out, txm_error *err)
{
    (void)busy_waits; /* the server's lock waits are its own */
    *out = NULL;
    if (url == NULL)
        return txm_errf(err, TXM_INVALID, "postgresql: NULL URL");
    /* A URL libpq cannot parse is the caller's mistake, not an outage. */
    char *why = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &why);
    if (parsed == NULL) {
        char reason[TXM_ERROR_TEXT_LEN];
        txm_status bad =
            txm_errf(err, TXM_INVALID, "postgresql: bad URL: %s",
                     one_line(why != NULL ? why : "out of memory", reason, sizeof reason));
        PQfreemem(why);
        return bad;
    }
    PQconninfoFree(parsed);
    txm__conn *c = txm__calloc(1, sizeof *c);
    if (c == NULL)
        return txm_errf(err, TXM_NOMEM, "postgresql: out of memory");
    if (opts != NULL) {
        c->log = opts->log;
        c->log_ctx = opts->log_ctx;
    }
    /* libpq applies keywords in order and the last one set wins, so settings
     * in the URL (expanded from dbname) override the defaults placed before it. */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *const values[] = {PG_CONNECT_TIMEOUT_S, "txmsg", url, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
    txm_status st = TXM_OK;
    char line[TXM_ERROR_TEXT_LEN];
    if (c->pg == NULL)
        st = txm_errf(err, TXM_NOMEM, "postgresql: out of memory");
    else if (PQstatus(c->pg) != CONNECTION_OK)
        st = txm_errf(err, TXM_UNAVAILABLE, "postgresql: %s",
                      one_line(PQerrorMessage(c->pg), line, sizeof line));
    if (st == TXM_OK) {
        PQsetNoticeProcessor(c->pg, on_notice, c);
        st = run_simple(c, "SET TIME ZONE 'UTC'", err);
    }
    if (st == TXM_OK)
        st = run_simple(c, "SET client_min_messages = warning", err);
    if (st != TXM_OK) {
        pg_disconnect(c);
        return st;
    }
    *out = c;
    return TXM_OK;
}

/* Writes e's server-side name into name. Returns name. */
static const char *stmt_name(const cached_stmt *e, char name[PG_STMT_NAME_LEN])
{
    snprintf(name, PG_STMT_NAME_LEN, "txm_%" PRIu64, e->id);
    return name;
}

/* Deallocates e on the server and frees its slot. False when the server
 * refused (say, inside an aborted transaction): the slot then stays in use. */
static bool cache_evict(txm__conn *c, cached_stmt *e)
{
    char name[PG_STMT_NAME_LEN];
    char sql[64];
    snprintf(sql, sizeof sql, "DEALLOCATE %s", stmt_name(e, name));
    PGresult *res = PQexec(c->pg, sql);
    /* 26000: the server already forgot it (DISCARD ALL), which is as good. */
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || strcmp(sqlstate(res), "26000") == 0;
    PQclear(res);
    if (ok)
        txm__stmt_cache_drop(e);
    return ok;
}

/* Finds sql in the cache, or prepares it with n parameters of inferred types
 * in a free slot or the least recently used one. *out NULL (with TXM_OK) means
 * sql must run unnamed, because the victim could not be deallocated; *fresh
 * tells that the statement was prepared by this call. */
static txm_status cache_get(txm__conn *c, const char *sql, size_t n, cached_stmt **out, bool *fresh,
                            txm_error *err)
{
    *fresh = false;
    cached_stmt *victim = NULL;
    *out = txm__stmt_cache_find(&c->cache, sql, &victim);
    if (*out != NULL)
        return TXM_OK;
    if (victim->sql != NULL && !cache_evict(c, victim))
        return TXM_OK;
    char *key = txm__strdup(sql);
    if (key == NULL)
        return txm_errf(err, TXM_NOMEM, "postgresql: out of memory");
    uint64_t id = c->next_id++;
    char name[PG_STMT_NAME_LEN];
    snprintf(name, sizeof name, "txm_%" PRIu64, id);
    PGresult *res = PQprepare(c->pg, name, sql, (int)n, NULL);
    txm_status st = PQresultStatus(res) == PGRES_COMMAND_OK ? TXM_OK : fail(c, res, err);
    PQclear(res);
    if (st != TXM_OK) {
        free(key);
        return st;
    }
    txm__stmt_cache_put(&c->cache, victim, &key, NULL, id);
    *out = victim;
    *fresh = true;
    return TXM_OK;
}

/* True when res failed because the cached statement e went stale, which
 * drops e from the cache: 26000 when the server no longer knows it (DEALLOCATE
 * ALL, DISCARD ALL), 0A000 when its result columns changed under it ("cached
 * plan must not change result type" after ALTER TABLE). */
static bool drop_if_stale(txm__conn *c, cached_stmt *e, const PGresult *res)
{
    const char *state = sqlstate(res);
    if (strcmp(state, "26000") == 0) {
        txm__stmt_cache_drop(e);
        return true;
    }
    if (strcmp(state, "0A000") == 0) {
        cache_evict(c, e); /* fails in an aborted transaction; the next use retries */
        return true;
    }
    return false;
}

/* Runs sql with vals through the statement cache; *out is the result to
 * inspect (NULL when libpq had no memory). A stale cached statement is
 * prepared again and run once more, but only outside a transaction block:
 * inside one, the error has already aborted the transaction. */
static txm_status run(txm__conn *c, const char *sql, size_t n, const char *const *vals,
                      PGresult **out, txm_error *err)
{
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        cached_stmt *e = NULL;
        bool fresh = false;
        txm_status st = cache_get(c, sql, n, &e, &fresh, err);
        if (st != TXM_OK)
            return st;
        if (e == NULL) {
            *out = PQexecParams(c->pg, sql, (int)n, NULL, vals, NULL, NULL, 0);
            return TXM_OK;
        }
        char name[PG_STMT_NAME_LEN];
        PGresult *res = PQexecPrepared(c->pg, stmt_name(e, name), (int)n, vals, NULL, NULL, 0);
        if (fresh || attempt > 0 || !drop_if_stale(c, e, res) ||
            PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
            *out = res;
            return TXM_OK;
        }
        PQclear(res);
    }
}

/* Formats params as text into vals: integers in decimal (in ints), NULL for
 * SQL NULL. A TXM_VALUE_TEXT with NULL text binds NULL, as on SQLite. */
static txm_status bind_params(const txm_value *params, size_t n, char ints[][PG_INT_LEN],
                              const char **vals, txm_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const txm_value *v = &params[i];
        switch (v->type) {
        case TXM_VALUE_NULL:
            vals[i] = NULL;
            break;
        case TXM_VALUE_INT:
            snprintf(ints[i], PG_INT_LEN, "%" PRId64, v->i);
            vals[i] = ints[i];
            break;
        case TXM_VALUE_TEXT:
            vals[i] = v->text;
            break;
        default:
            return txm_errf(err, TXM_INVALID, "postgresql: parameter $%zu has unknown type %d",
                            i + 1, (int)v->type);
        }
    }
    return TXM_OK;
}

/* Copies the result's rows (none for a command) into a new txm_rows. */
static txm_status copy_rows(const PGresult *res, txm_rows **out, txm_error *err)
{
    int ncols = PQnfields(res);
    int nrows = PQntuples(res);
    txm_rows *rows = txm__rows_new((size_t)ncols);
    /* One spare slot keeps the arrays non-NULL for results without columns. */
    const char **vals = txm__calloc((size_t)ncols + 1, sizeof *vals);
    size_t *lens = txm__calloc((size_t)ncols + 1, sizeof *lens);
    txm_status st = rows != NULL && vals != NULL && lens != NULL ? TXM_OK : TXM_NOMEM;
    for (int r = 0; st == TXM_OK && r < nrows; r++) {
        for (int col = 0; col < ncols; col++) {
            bool null = PQgetisnull(res, r, col);
            vals[col] = null ? NULL : PQgetvalue(res, r, col);
            lens[col] = null ? 0 : (size_t)PQgetlength(res, r, col);
        }
        st = txm__rows_add(rows, (const char *const *)vals, lens);
    }
    free(vals);
    free(lens);
    if (st != TXM_OK) {
        txm_rows_free(rows);
        return txm_errf(err, st, "postgresql: copying the result: %s", txm_strerror(st));
    }
    *out = rows;
    return TXM_OK;
}

/* Rows written, from the command tag: INSERT, UPDATE, DELETE and MERGE count
 * them (also with RETURNING). A plain SELECT writes none, though libpq counts
 * the rows it returns. */
static int64_t written(PGresult *res)
{
    if (PQresultStatus(res) == PGRES_TUPLES_OK && strncmp(PQcmdStatus(res), "SELECT", 6) == 0)
        return 0;
    const char *tuples = PQcmdTuples(res); /* "" when the command counts nothing */
    char *end = NULL;
    long long v = strtoll(tuples, &end, 10);
    return end == tuples ? 0 : (int64_t)v;
}

/* Checks res and hands its rows and count to the caller (each may be NULL). */
static txm_status collect(txm__conn *c, PGresult *res, txm_rows **rows, int64_t *changes,
                          txm_error *err)
{
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        break;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
        /* The session now waits for COPY data that nothing will exchange. */
        c->broken = true;
        return txm_errf(err, TXM_UNSUPPORTED, "postgresql: COPY is not supported by exec");
    default:
        return fail(c, res, err);
    }
    if (changes != NULL)
        *changes = written(res);
    return rows != NULL ? copy_rows(res, rows, err) : TXM_OK;
}

/* Runs one statement with params bound as text ($1..$n, n <= 64). rows (may
 * be NULL) gets the result, empty for commands; changes (may be NULL) the rows
 * written. TXM_CONSTRAINT, TXM_CONFLICT, TXM_BUSY, TXM_NO_SPACE or TXM_DB by SQLSTATE;
 * TXM_INVALID for bad arguments. */
static txm_status pg_exec(txm__conn *c, const char *sql, const txm_value *params, size_t n,
                          txm_rows **rows, int64_t *changes, txm_error *err)
{
    if (rows != NULL)
        *rows = NULL;
    if (changes != NULL)
        *changes = 0;
    if (c == NULL || sql == NULL || (n > 0 && params == NULL))
        return txm_errf(err, TXM_INVALID, "postgresql: exec: NULL argument");
    if (n > PG_MAX_PARAMS)
        return txm_errf(err, TXM_INVALID, "postgresql: %zu parameters, at most %d allowed", n,
                        PG_MAX_PARAMS);
    char ints[PG_MAX_PARAMS][PG_INT_LEN];
    const char *vals[PG_MAX_PARAMS] = {0};
    txm_status st = bind_params(params, n, ints, vals, err);
    PGresult *res = NULL;
    if (st == TXM_OK)
        st = run(c, sql, n, vals, &res, err);
    if (st == TXM_OK)
        st = collect(c, res, rows, changes, err);
    PQclear(res);
    return st;
}

static txm_status pg_begin(txm__conn *c, txm_error *err)
{
    return run_simple(c, "BEGIN", err);
}

/* COMMIT of a transaction an earlier error aborted succeeds at the protocol
 * level but carries the tag "ROLLBACK": nothing was written, so it fails. */
static txm_status pg_commit(txm__conn *c, txm_error *err)
{
    PGresult *res = PQexec(c->pg, "COMMIT");
    txm_status st = TXM_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        st = fail(c, res, err);
    else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
        st = txm_errf(err, TXM_DB, "postgresql: transaction was aborted");
    PQclear(res);
    return st;
}

/* Ends any open transaction. Errors are ignored: a session that cannot roll
 * back is reported by is_broken and closed by the pool. */
static void pg_rollback(txm__conn *c)
{
    if (c == NULL)
        return;
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    /* Skipped when idle, where the server would warn "no transaction in progress". */
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    if (PQstatus(c->pg) != CONNECTION_OK)
        c->broken = true;
}

/* An idle session has nothing to read. Something there is the server
 * saying goodbye (a FATAL "terminating connection" on shutdown) or the end
 * of the stream: the session is dead although libpq does not know it yet. */
static bool has_unread(const txm__conn *c)
{
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    return p.fd < 0 || poll(&p, 1, 0) != 0;
}

/* A session left inside a transaction is broken too: the next user of the
 * pooled connection would silently join it. */
static bool pg_is_broken(const txm__conn *c)
{
    return c->broken || PQstatus(c->pg) != CONNECTION_OK ||
           PQtransactionStatus(c->pg) != PQTRANS_IDLE || has_unread(c);
}

const txm__driver txm__driver_pg = {
    .dialect = "postgresql",
    .id = TXM__DIALECT_PG,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .exec = pg_exec,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .is_broken = pg_is_broken,
};
