/* Database: a handle over SQLite or PostgreSQL chosen by URL, holding a small
 * pool of connections, with the txmsg tables migrated at open. */
#ifndef TXMSG_DB_H
#define TXMSG_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/error.h"
#include "txmsg/log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct txm_db txm_db;

typedef struct txm_db_options {
    int pool_size;         /* most open connections; default 4 */
    int busy_timeout_ms;   /* SQLite lock wait, PostgreSQL pool wait; default 5000 */
    bool migrate;          /* apply the txmsg schema at open; default true */
    bool sqlite_sync_full; /* SQLite synchronous=FULL (default NORMAL, durable in WAL
                              except on power loss) */
    int sqlite_cache_kb;   /* SQLite page cache per connection, KiB; 0 (default):
                              SQLite's own, 2 MiB. A reader that streams through a
                              table, like the relay, needs little. */
    bool pg_relay_slot;    /* PostgreSQL: create the relay's logical replication slot
                              (txm_db_relay_slot) at open when missing and the schema
                              is brand new, before the outbox exists, so the relay
                              sees every row; over an existing outbox a missing slot
                              is only logged (warning); default true */
    txm_log_fn log;        /* optional */
    void *log_ctx;
} txm_db_options;

/* Fills o with the defaults. */
TXM_API void txm_db_options_init(txm_db_options *o);

/* Opens url: "sqlite:PATH" (WAL mode; the file is created) or
 * "postgresql://..." / "postgres://..." (libpq connection URI).
 * opts may be NULL for the defaults; it is copied.
 * Returns TXM_INVALID for an unknown scheme, TXM_DB when the database cannot
 * be reached or migrated. Owns: *out is the caller's (txm_db_close); NULL on
 * failure. Thread: the handle may be used from any number of threads. */
TXM_API txm_status txm_db_open(const char *url, const txm_db_options *opts, txm_db **out,
                               txm_error *err);

/* Closes every connection. NULL-safe. No unit of work may be open. */
TXM_API void txm_db_close(txm_db *db);

/* SQLite: returns TXM_OK when another connection or process may have
 * committed to the database, or after timeout_ms (spurious returns are
 * allowed: the caller reads again). The first call starts watching the
 * database's files and queues every commit from then on, so a commit between
 * a read and the next wait is not lost; timeout_ms 0 only starts watching.
 * TXM_UNSUPPORTED on PostgreSQL, TXM_INVALID for a NULL db or a negative
 * timeout. Owns: the watch belongs to db and ends with txm_db_close.
 * Thread: one thread at a time per db. */
TXM_API txm_status txm_db_wait_for_commit(txm_db *db, int timeout_ms, txm_error *err);

/* SQLite: how many times the busy handler of db's connections was called
 * since txm_db_open. Each call sleeps (SQLite's busy-timeout steps, 1 ms
 * growing to 100 ms) or, once busy_timeout_ms is spent, gives up, and the
 * statement fails with TXM_BUSY. The writers of one handle take turns in the
 * process instead (units of work from begin to commit or rollback, and
 * txm_db_exec statements that write), so a rising count means writers of
 * other processes, or of other handles on the same file, such as a relay
 * marking messages dispatched, contend for the write lock. 0 on PostgreSQL
 * and for a NULL db. Thread: any. */
TXM_API uint64_t txm_db_busy_waits(const txm_db *db);

/* "sqlite" or "postgresql": applications write their own SQL per dialect. */
TXM_API const char *txm_db_dialect(const txm_db *db);

/* Applies the txmsg schema migrations. Idempotent; safe when several
 * processes do it at once. txm_db_open calls it unless options say not. */
TXM_API txm_status txm_db_migrate(txm_db *db, txm_error *err);

/* PostgreSQL: the name of the logical replication slot txmsg-relay uses by
 * default for this database, "txmsg_<database>" with characters outside
 * [a-z0-9_] replaced by '_' (at most 63 bytes). Slots are shared by the whole
 * cluster, so the name includes the database. TXM_UNSUPPORTED on SQLite. */
#define TXM_SLOT_NAME_MAX 63
TXM_API txm_status txm_db_relay_slot(txm_db *db, char out[TXM_SLOT_NAME_MAX + 1], txm_error *err);

/* The publication of txmsg_outbox inserts that the relay streams. */
#define TXM_PUBLICATION_NAME "txmsg_outbox_pub"

/* A bound parameter. SQL text uses $1, $2, ... on both dialects; values are
 * always bound, never spliced into the text. */
typedef enum { TXM_VALUE_NULL, TXM_VALUE_INT, TXM_VALUE_TEXT } txm_value_type;

typedef struct txm_value {
    txm_value_type type;
    int64_t i;        /* TXM_VALUE_INT */
    const char *text; /* TXM_VALUE_TEXT, NUL-terminated; borrowed */
} txm_value;

#define TXM_NULL_VALUE ((txm_value){TXM_VALUE_NULL, 0, NULL})
#define TXM_INT(v) ((txm_value){TXM_VALUE_INT, (int64_t)(v), NULL})
#define TXM_TEXT(s) ((txm_value){TXM_VALUE_TEXT, 0, (s)})

/* Rows returned by a query, copied out of the driver. Column values are text
 * (NULL for SQL NULL) in the database's text form. */
typedef struct txm_rows txm_rows;

TXM_API size_t txm_rows_count(const txm_rows *rows);
TXM_API size_t txm_rows_columns(const txm_rows *rows);
/* Borrows: valid while rows lives. NULL for SQL NULL or out of range. */
TXM_API const char *txm_rows_text(const txm_rows *rows, size_t row, size_t col);
/* The value parsed as a decimal integer; 0 for NULL or non-numbers. */
TXM_API int64_t txm_rows_int(const txm_rows *rows, size_t row, size_t col);
TXM_API bool txm_rows_is_null(const txm_rows *rows, size_t row, size_t col);
TXM_API void txm_rows_free(txm_rows *rows); /* NULL-safe */

/* Runs one statement outside any unit of work (autocommit), on a pooled
 * connection. rows (may be NULL) receives the result rows; changes (may be
 * NULL) the number of rows written. Returns TXM_CONSTRAINT on a unique or
 * other constraint violation, TXM_DB on other errors. */
TXM_API txm_status txm_db_exec(txm_db *db, const char *sql, const txm_value *params,
                               size_t n_params, txm_rows **rows, int64_t *changes, txm_error *err);

#ifdef __cplusplus
}
#endif
#endif
