/* Internals shared by the unit of work and the outbox/inbox repositories. */
#ifndef TXM_STORE_STORE_INT_H
#define TXM_STORE_STORE_INT_H

#include "db/db.h"
#include "txmsg/uow.h"

/* Thread safety: a unit of work belongs to the thread that began it. */
struct txm_uow {
    txm_db *db;
    txm__conn *conn;   /* held from begin until commit/rollback */
    txm_status failed; /* first failure; TXM_OK while healthy */
    txm_error failure; /* its detail, returned again by commit */
};

/* Runs sql in uow. On failure maps TXM_CONSTRAINT to on_constraint (when
 * not TXM_OK), records the first failure and fails the unit of work. */
txm_status txm__uow_exec(txm_uow *uow, const char *sql, const txm_value *params, size_t n,
                         txm_rows **rows, int64_t *changes, txm_status on_constraint,
                         txm_error *err);

/* Picks the SQL text for the db's dialect. */
#define TXM__SQL(db, sqlite_sql, pg_sql)                                                           \
    (txm__db_dialect(db) == TXM__DIALECT_PG ? (pg_sql) : (sqlite_sql))

/* A PostgreSQL timestamptz column as RFC 3339 UTC text with microseconds,
 * the form SQLite stores; the connection runs with TIME ZONE 'UTC'. */
#define TXM__PG_TIME(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

#endif
