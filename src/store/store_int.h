/* Internals shared by the unit of work and the outbox/inbox repositories. */
#ifndef TXM_STORE_STORE_INT_H
#define TXM_STORE_STORE_INT_H

#include <stdbool.h>

#include "db/db.h"
#include "txmsg/uow.h"

/* Thread safety: a unit of work belongs to the thread that began it. */
struct txm_uow {
    txm_db *db;
    txm__conn *conn;   /* held from begin until commit/rollback */
    txm_status failed; /* first failure; TXM_OK while healthy */
    txm_error failure; /* its detail, returned again by commit */
    bool savepoint;    /* a savepoint is set (txm_uow_savepoint) */
};

/* Runs sql in uow. On failure maps TXM_CONSTRAINT to on_constraint (when
 * not TXM_OK), records the first failure and fails the unit of work. */
txm_status txm__uow_exec(txm_uow *uow, const char *sql, const txm_value *params, size_t n,
                         txm_rows **rows, int64_t *changes, txm_status on_constraint,
                         txm_error *err);

/* Most rows one txm_outbox_list call returns. */
#define TXM__LIST_LIMIT_MAX 1000000

/* Retention purge shared by the outbox and the inbox: runs the dialect's
 * DELETE (parameters $1 the cutoff time as text, $2 the batch size) once,
 * deleting at most batch rows created before created_before_us, and sets
 * *deleted (may be NULL) to the count. what names the caller in errors.
 * TXM_INVALID for a NULL db, batch outside 1..TXM__PURGE_BATCH_MAX or no
 * cutoff time. */
#define TXM__PURGE_BATCH_MAX 100000
txm_status txm__store_purge(txm_db *db, const char *what, const char *sqlite_sql,
                            const char *pg_sql, int64_t created_before_us, size_t batch,
                            size_t *deleted, txm_error *err);

/* Picks the SQL text for the db's dialect. */
#define TXM__SQL(db, sqlite_sql, pg_sql)                                                           \
    (txm__db_dialect(db) == TXM__DIALECT_PG ? (pg_sql) : (sqlite_sql))

/* SQLite: the relay's cursor is the dispatch mark. A row is dispatched when
 * is_dispatched = 1 (marked by txm_outbox_mark_dispatched: `txmsg outbox
 * dispatch`) or when it is_dispatched = 0 and every relay cursor has passed
 * it: the lowest position in txmsg_relay_cursor, 0 while there is none. A
 * row the relay passed without publishing it (invalid, skipped) has
 * is_dispatched = -1 and stays not dispatched until it is marked. The
 * not-dispatched side is written as two arms so each one has its partial
 * index: txmsg_outbox_not_dispatched (is_dispatched = 0) and
 * txmsg_outbox_skipped (is_dispatched = -1). */
#define TXM__SQLITE_CURSOR_MIN "(SELECT min(position) FROM txmsg_relay_cursor)"
#define TXM__SQLITE_PASSED "COALESCE(" TXM__SQLITE_CURSOR_MIN ", 0)"
#define TXM__SQLITE_DISPATCHED                                                                     \
    "(is_dispatched = 1 OR (is_dispatched = 0 AND seq <= " TXM__SQLITE_PASSED "))"
#define TXM__SQLITE_NOT_DISPATCHED                                                                 \
    "(is_dispatched = -1 OR (is_dispatched = 0 AND seq > " TXM__SQLITE_PASSED "))"
#define TXM__SQLITE_COUNT_NOT_DISPATCHED                                                           \
    "(SELECT count(*) FROM txmsg_outbox WHERE is_dispatched = 0 AND seq > " TXM__SQLITE_PASSED     \
    ") + (SELECT count(*) FROM txmsg_outbox WHERE is_dispatched = -1)"

/* A PostgreSQL timestamptz column as RFC 3339 UTC text with microseconds,
 * the form SQLite stores; the connection runs with TIME ZONE 'UTC'. */
#define TXM__PG_TIME(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

#endif
