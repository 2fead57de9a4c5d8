/* Unit of Work: one database transaction holding the domain writes, the
 * outbox messages and the inbox row of one business transaction. */
#ifndef TXMSG_UOW_H
#define TXMSG_UOW_H

#include <stddef.h>
#include <stdint.h>

#include "txmsg/db.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct txm_uow txm_uow;

/* Begins a transaction on a connection taken from db's pool (waiting up to
 * the busy timeout). On SQLite the write lock is taken at once, so units of
 * work never deadlock and commit in begin order.
 * Returns TXM_BUSY when no connection or lock came in time, TXM_DB otherwise.
 * Owns: *out is the caller's; it must end in txm_uow_commit or
 * txm_uow_rollback, which free it. Thread: one thread at a time. */
TXM_API txm_status txm_uow_begin(txm_db *db, txm_uow **out, txm_error *err);

/* Runs a domain statement inside the unit of work. Same contract as
 * txm_db_exec. A failing statement fails the whole unit of work: later calls
 * return the first failure and commit rolls back. */
TXM_API txm_status txm_uow_exec(txm_uow *uow, const char *sql, const txm_value *params,
                                size_t n_params, txm_rows **rows, int64_t *changes, txm_error *err);

/* Runs an update guarded by a version check (..., version = version + 1
 * WHERE id = $n AND version = $m) and returns TXM_CONFLICT, failing the unit
 * of work, unless exactly one row changed. */
TXM_API txm_status txm_uow_exec_versioned(txm_uow *uow, const char *sql, const txm_value *params,
                                          size_t n_params, txm_error *err);

/* One savepoint inside the unit of work, for a caller that runs several
 * independent pieces in one transaction (the consumer's batches): set it,
 * run a piece, then release it (keep the piece) or roll back to it (undo
 * the piece and clear a failure the piece caused, so the unit of work goes
 * on). One level: setting a second before releasing or rolling back the
 * first returns TXM_STATE. Setting fails with the unit's first failure when
 * it has failed already. A savepoint costs a round trip on PostgreSQL, and
 * more than 64 in one transaction slow the server's snapshots down. */
TXM_API txm_status txm_uow_savepoint(txm_uow *uow, txm_error *err);
TXM_API txm_status txm_uow_release_savepoint(txm_uow *uow, txm_error *err);
TXM_API txm_status txm_uow_rollback_to_savepoint(txm_uow *uow, txm_error *err);

/* Commits atomically and frees uow (takes *uow, sets it NULL). If any earlier
 * call failed, rolls back instead and returns that first status
 * (TXM_DUPLICATE, TXM_ALREADY_PUBLISHED, TXM_CONFLICT, ...). */
TXM_API txm_status txm_uow_commit(txm_uow **uow, txm_error *err);

/* Rolls back and frees uow (takes *uow, sets it NULL). NULL-safe. */
TXM_API void txm_uow_rollback(txm_uow **uow);

/* The db the unit of work runs on. Borrows. */
TXM_API txm_db *txm_uow_db(const txm_uow *uow);

#ifdef __cplusplus
}
#endif
#endif
