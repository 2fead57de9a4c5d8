/* Database internals shared with other modules (store, relay, transport):
 * pooled connections and dialect-specific SQL selection. */
#ifndef TXM_DB_DB_H
#define TXM_DB_DB_H

#include <stdbool.h>

#include "txmsg/db.h"
#include "txmsg/outbox.h"

typedef struct txm__conn txm__conn; /* one driver connection, used by one thread at a time */

typedef enum { TXM__DIALECT_SQLITE, TXM__DIALECT_PG } txm__dialect;

txm__dialect txm__db_dialect(const txm_db *db);

/* Called before txmsg opens any SQLite connection: turns SQLite's memory
 * statistics off when txmsg is the first to use SQLite in the process. They
 * take one process-wide mutex on every SQLite allocation, which threads
 * using SQLite at once (the relay's reader and publisher) contend for.
 * Once per process; a process that initialised SQLite first keeps its
 * settings (sqlite3_config then refuses). Thread: any. */
void txm__sqlite_process_init(void);

/* Takes an idle connection from the pool, opening one when the pool is not
 * full, else waits up to the busy timeout (TXM_BUSY). Thread: any. */
txm_status txm__db_acquire(txm_db *db, txm__conn **conn, txm_error *err);

/* Returns conn to the pool; a connection the driver reports broken is closed
 * instead. NULL-safe. */
void txm__db_release(txm_db *db, txm__conn *conn);

/* Runs one statement on conn (prepared once per connection and cached).
 * rows, changes may be NULL. TXM_CONSTRAINT on constraint violations,
 * TXM_BUSY on lock timeouts, TXM_DB otherwise. */
txm_status txm__conn_exec(txm_db *db, txm__conn *conn, const char *sql, const txm_value *params,
                          size_t n_params, txm_rows **rows, int64_t *changes, txm_error *err);

/* Transaction control on conn. begin takes the write lock at once on SQLite,
 * after waiting for its turn among the handle's writers (TXM_BUSY when the
 * writer ahead keeps it past the busy timeout); commit (when it succeeds) and
 * rollback hand the turn on, as does txm__db_release for a connection still
 * in its transaction. */
txm_status txm__conn_begin(txm_db *db, txm__conn *conn, txm_error *err);
txm_status txm__conn_commit(txm_db *db, txm__conn *conn, txm_error *err);
void txm__conn_rollback(txm_db *db, txm__conn *conn);

/* Reads the database's settings into db (settings.c): PostgreSQL's outbox
 * mode; nothing on SQLite. A schema without txmsg_settings (older than
 * version 2, opened without migrating) reads as the defaults. An unknown
 * value is logged and read as TXM_OUTBOX_TABLE. TXM_DB when a query fails. */
txm_status txm__db_settings_load(txm_db *db, txm_error *err);

/* Stores value under name in txmsg_settings (insert or replace), in
 * autocommit. TXM_STATE when the schema has no txmsg_settings yet. */
txm_status txm__db_setting_put(txm_db *db, const char *name, const char *value, txm_error *err);

/* The outbox mode of db's publishes; setting it changes this handle only. */
txm_outbox_mode txm__db_outbox_mode(const txm_db *db);
void txm__db_set_outbox_mode(txm_db *db, txm_outbox_mode mode);

/* Builds a result set row by row (drivers use these). */
txm_rows *txm__rows_new(size_t columns);
/* Appends one row of columns values; vals[i] NULL for SQL NULL, lens[i] its
 * length. TXM_NOMEM / TXM_TOO_BIG (past 1 GiB of result). */
txm_status txm__rows_add(txm_rows *rows, const char *const *vals, const size_t *lens);

/* Maps a SQLite result code (extended codes allowed) to a status: TXM_BUSY for
 * a lock held past the busy timeout, TXM_NOMEM, TXM_TOO_BIG, TXM_NO_SPACE for
 * a full disk, and other for the rest. sys_errno is sqlite3_system_errno() of
 * the connection (0 if unknown): SQLite reports ENOSPC on a write as
 * SQLITE_FULL, but a write past RLIMIT_FSIZE (EFBIG), and ENOSPC where it
 * grows the WAL index or preallocates, as one of its SQLITE_IOERR codes.
 * The one mapping for every SQLite user in the library (the SQLite driver and
 * the embedded broker); callers that give constraint violations a status of
 * their own test SQLITE_CONSTRAINT first. */
txm_status txm__sqlite_status(int rc, int sys_errno, txm_status other);

#endif
