/* SQLite tailer: reads outbox rows by sequence number after a cursor kept
 * in the same database. Writers hold SQLite's single write lock from begin
 * to commit, so sequence order is commit order and no row can appear later
 * behind the cursor. Idle, it sleeps on the WAL watch and wakes on the next
 * commit. The saved cursor is also the dispatch mark: rows up to every
 * relay's cursor count as dispatched, so nothing marks published rows one by
 * one.
 *
 * Relays sharing a cursor are one active and standbys: the active one holds
 * an exclusive flock on a file beside the database, named for the cursor,
 * which the kernel releases when its process ends however it ends. A
 * standby tries the lock on each read and takes over from the saved cursor.
 * Thread safety: one thread uses a tailer. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "tail.h"

typedef struct sqlite_tailer {
    relay_tailer base;
    txm_db *db;
    char *cursor_name;
    int64_t read_seq;      /* last sequence handed out by next() */
    int64_t confirmed_seq; /* last sequence stored in the cursor row */
    char *lock_path;       /* the cursor's lock file; NULL for an in-memory database */
    int lock_fd;           /* open lock file, -1 when none */
    bool active;           /* this tailer holds the lock */
    bool standby;          /* the last try found it held by another relay */
    txm_log_fn log;        /* may be NULL */
    void *log_ctx;
} sqlite_tailer;

static const char SQL_CURSOR[] = "SELECT position FROM txmsg_relay_cursor WHERE name = $1";
static const char SQL_SAVE_CURSOR[] =
    "INSERT INTO txmsg_relay_cursor (name, position, updated_at) VALUES ($1, $2, $3)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
    " updated_at = excluded.updated_at";
static const char SQL_NEXT[] =
    "SELECT seq, message_id, source, aggregate_id, correlation_id, topic, payload, created_at,"
    " json_valid(payload) FROM txmsg_outbox WHERE seq > $1 ORDER BY seq LIMIT $2";

/* A row the relay skips as invalid (logged and counted, never published)
 * would count as dispatched once the cursor passes it. It is marked -1 when
 * read, before the cursor can move past it, so it stays not dispatched until
 * `txmsg outbox dispatch` marks it; a row marked already keeps its mark. */
static const char SQL_MARK_SKIPPED[] =
    "UPDATE txmsg_outbox SET is_dispatched = -1 WHERE is_dispatched = 0"
    " AND seq IN (SELECT value FROM json_each($1))";

/* The sequence numbers of a batch's skipped rows as a JSON array. */
typedef struct skipped {
    char *json; /* NULL while there is none */
    size_t len, cap;
} skipped;

static txm_status skipped_add(skipped *s, size_t batch_rows, int64_t seq, txm_error *err)
{
    if (s->json == NULL) {
        s->cap = batch_rows * 22 + 3; /* "-9223372036854775808," per row, "[]" and NUL */
        if ((s->json = malloc(s->cap)) == NULL)
            return txm_errf(err, TXM_NOMEM, "relay: out of memory");
        s->len = (size_t)snprintf(s->json, s->cap, "[");
    }
    s->len += (size_t)snprintf(s->json + s->len, s->cap - s->len, "%s%" PRId64,
                               s->len > 1 ? "," : "", seq);
    return TXM_OK;
}

static txm_status mark_skipped(sqlite_tailer *t, skipped *s, txm_error *err)
{
    if (s->json == NULL)
        return TXM_OK;
    snprintf(s->json + s->len, s->cap - s->len, "]");
    txm_value p = TXM_TEXT(s->json);
    txm_status st = txm_db_exec(t->db, SQL_MARK_SKIPPED, &p, 1, NULL, NULL, err);
    free(s->json);
    s->json = NULL;
    return st;
}

static txm_status read_rows(sqlite_tailer *t, size_t max, relay_batch *out, txm_error *err)
{
    txm_value p[2] = {TXM_INT(t->read_seq), TXM_INT(max)};
    txm_rows *rows = NULL;
    skipped skip = {0};
    txm_status st = txm_db_exec(t->db, SQL_NEXT, p, 2, &rows, NULL, err);
    for (size_t r = 0; st == TXM_OK && r < txm_rows_count(rows); r++) {
        txm_msg *msg = NULL;
        txm_error why;
        const char *id = txm_rows_text(rows, r, 1);
        /* TEXT takes anything: a payload written by other means than
         * txm_outbox_publish is checked here, in SQLite's own parser. */
        txm_status row_st =
            txm_rows_int(rows, r, 8) == 0 && txm_rows_text(rows, r, 6) != NULL
                ? txm_errf(&why, TXM_MALFORMED, "outbox row: payload is not valid JSON")
                : relay_row_to_msg(id, txm_rows_text(rows, r, 2), txm_rows_text(rows, r, 3),
                                   txm_rows_text(rows, r, 4), txm_rows_text(rows, r, 5),
                                   txm_rows_text(rows, r, 6), txm_rows_text(rows, r, 7), &msg,
                                   &why);
        st = relay_batch_add(out, &msg, id, row_st == TXM_OK ? NULL : why.text);
        if (st != TXM_OK)
            txm_errf(err, st, "relay: out of memory");
        if (st == TXM_OK && row_st != TXM_OK)
            st = skipped_add(&skip, txm_rows_count(rows), txm_rows_int(rows, r, 0), err);
        t->read_seq = txm_rows_int(rows, r, 0);
        out->confirm_position = (uint64_t)t->read_seq;
    }
    txm_rows_free(rows);
    /* On failure the relay drops this batch and reads it again from the
     * confirmed position, so no skipped row is passed unmarked. */
    if (st == TXM_OK)
        st = mark_skipped(t, &skip, err);
    free(skip.json);
    return st;
}

/* Lock file of cursor on the database at url ("sqlite:PATH"):
 * "PATH-relay-CURSOR.lock", with bytes of the cursor name other than
 * [A-Za-z0-9._-] written %XX so that distinct cursors get distinct files.
 * NULL for an in-memory database (no other process can share it) or when
 * out of memory (*nomem set). */
static char *lock_path_for(const char *url, const char *cursor, bool *nomem)
{
    const char *path = url + strlen("sqlite:");
    *nomem = false;
    if (strcmp(path, ":memory:") == 0)
        return NULL;
    size_t cap = strlen(path) + strlen("-relay-") + 3 * strlen(cursor) + strlen(".lock") + 1;
    char *out = malloc(cap);
    if (out == NULL) {
        *nomem = true;
        return NULL;
    }
    size_t n = (size_t)snprintf(out, cap, "%s-relay-", path);
    for (const unsigned char *c = (const unsigned char *)cursor; *c != '\0'; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-';
        n += (size_t)snprintf(out + n, cap - n, plain ? "%c" : "%%%02X", *c);
    }
    snprintf(out + n, cap - n, ".lock");
    return out;
}

/* TXM_IO for a failed syscall on the lock file, keeping errno. */
static txm_status lock_fail(const sqlite_tailer *t, const char *what, txm_error *err)
{
    int e = errno;
    txm_status st = txm_errf(err, TXM_IO, "relay: %s %s: %s", what, t->lock_path, strerror(e));
    if (err != NULL)
        err->sys_errno = e;
    return st;
}

static txm_status load_cursor(sqlite_tailer *t, txm_error *err)
{
    txm_value p = TXM_TEXT(t->cursor_name);
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(t->db, SQL_CURSOR, &p, 1, &rows, NULL, err);
    if (st == TXM_OK)
        t->confirmed_seq = t->read_seq = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return st;
}

/* Becomes the cursor's active relay if no other holds its lock: TXM_BUSY
 * while one does. Taking over reads the cursor again, as the relay before
 * left it. The lock file is never removed: a relay waiting on a removed
 * file would hold a lock nobody else sees. */
static txm_status take_lock(sqlite_tailer *t, txm_error *err)
{
    if (t->active)
        return TXM_OK;
    if (t->lock_fd >= 0 && flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return lock_fail(t, "locking", err);
        t->standby = true; /* the reader logs that it stands by */
        return txm_errf(err, TXM_BUSY, "relay: cursor %s is in use by another relay (%s)",
                        t->cursor_name, t->lock_path);
    }
    txm_status st = load_cursor(t, err);
    if (st != TXM_OK) {
        if (t->lock_fd >= 0)
            flock(t->lock_fd, LOCK_UN);
        return st;
    }
    t->active = true;
    txm_logf(t->log, t->log_ctx, TXM_LOG_INFO, "relay: %s cursor %s at %" PRId64,
             t->standby ? "took over" : "reading from", t->cursor_name, t->confirmed_seq);
    t->standby = false;
    return TXM_OK;
}

static txm_status sqlite_next(relay_tailer *base, size_t max, int wait_ms, relay_batch *out,
                              txm_error *err)
{
    sqlite_tailer *t = (sqlite_tailer *)base;
    txm_status locked = take_lock(t, err);
    if (locked != TXM_OK)
        return locked;
    long long end = relay_mono_ms() + wait_ms;
    for (;;) {
        txm_status st = read_rows(t, max, out, err);
        if (st != TXM_OK || out->count > 0)
            return st;
        long long left = end - relay_mono_ms();
        if (left <= 0)
            return TXM_OK;
        /* A commit between the query and the wait is not lost: the watch,
         * started at open, queues its event, so the wait returns at once. */
        st = txm_db_wait_for_commit(t->db, (int)(left < 1000 ? left : 1000), err);
        if (st != TXM_OK)
            return st;
    }
}

static txm_status sqlite_confirm(relay_tailer *base, uint64_t position, txm_error *err)
{
    sqlite_tailer *t = (sqlite_tailer *)base;
    /* A relay that lost the lock (its tailer was reopened after a failure)
     * may still hold positions its marker finished: the active relay owns
     * the cursor now. */
    if (!t->active || position == 0 || (int64_t)position <= t->confirmed_seq)
        return TXM_OK;
    char now[TXM_TIME_LEN + 1];
    txm_time_format(txm_now_us(), now);
    txm_value p[3] = {TXM_TEXT(t->cursor_name), TXM_INT(position), TXM_TEXT(now)};
    txm_status st = txm_db_exec(t->db, SQL_SAVE_CURSOR, p, 3, NULL, NULL, err);
    if (st == TXM_OK)
        t->confirmed_seq = (int64_t)position;
    return st;
}

static void sqlite_position_text(const relay_tailer *base, char *out, size_t len)
{
    const sqlite_tailer *t = (const sqlite_tailer *)base;
    snprintf(out, len, "%" PRId64, t->confirmed_seq);
}

static void sqlite_close(relay_tailer *base)
{
    sqlite_tailer *t = (sqlite_tailer *)base;
    if (t == NULL)
        return;
    txm_db_close(t->db);
    if (t->lock_fd >= 0)
        close(t->lock_fd); /* releases the lock */
    free(t->lock_path);
    free(t->cursor_name);
    free(t);
}

static const relay_tailer_ops sqlite_ops = {
    .next = sqlite_next,
    .confirm = sqlite_confirm,
    .position_text = sqlite_position_text,
    .close = sqlite_close,
};

txm_status relay_tail_open_sqlite(const relay_tail_config *cfg, relay_tailer **out, txm_error *err)
{
    *out = NULL;
    sqlite_tailer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    t->base.ops = &sqlite_ops;
    t->lock_fd = -1;
    t->log = cfg->log;
    t->log_ctx = cfg->log_ctx;
    t->cursor_name = strdup(cfg->cursor_name != NULL ? cfg->cursor_name : "default");
    bool nomem = t->cursor_name == NULL;
    if (!nomem)
        t->lock_path = lock_path_for(cfg->database_url, t->cursor_name, &nomem);
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    o.sqlite_cache_kb = RELAY_SQLITE_CACHE_KB;
    o.log = cfg->log;
    o.log_ctx = cfg->log_ctx;
    txm_status st = nomem ? txm_errf(err, TXM_NOMEM, "relay: out of memory")
                          : txm_db_open(cfg->database_url, &o, &t->db, err);
    if (st == TXM_OK && t->lock_path != NULL &&
        (t->lock_fd = open(t->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        st = lock_fail(t, "opening lock file", err);
    if (st == TXM_OK)
        st = txm_db_wait_for_commit(t->db, 0, err); /* starts watching before the first read */
    if (st == TXM_OK)
        st = load_cursor(t, err); /* what position_text shows while standing by */
    if (st != TXM_OK) {
        sqlite_close(&t->base);
        return st;
    }
    *out = &t->base;
    return TXM_OK;
}
