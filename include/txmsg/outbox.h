/* Outbox repository (Transactional Outbox): messages written in the same
 * transaction as the domain change, later published by the relay. */
#ifndef TXMSG_OUTBOX_H
#define TXMSG_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/db.h"
#include "txmsg/message.h"
#include "txmsg/uow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One outbox row: the message and its dispatch bookkeeping. */
typedef struct txm_outbox_entry txm_outbox_entry;

/* Adds msg to the outbox inside uow. Owns: takes *msg on every path and sets
 * *msg = NULL. Returns TXM_ALREADY_PUBLISHED if its id exists (the unit of
 * work then fails). Thread: the uow's thread. */
TXM_API txm_status txm_outbox_publish(txm_uow *uow, txm_msg **msg, txm_error *err);

/* Reads one row by message id. Returns TXM_NOT_FOUND when absent.
 * "Dispatched", here and in every outbox query: on PostgreSQL the row is
 * marked; on SQLite it is marked (is_dispatched = 1), or every relay cursor
 * in txmsg_relay_cursor has passed it and the relay did not skip it as
 * invalid (is_dispatched = -1). Owns: *out is the caller's
 * (txm_outbox_entry_free). */
TXM_API txm_status txm_outbox_get(txm_db *db, const char *message_id, txm_outbox_entry **out,
                                  txm_error *err);

/* Marks messages as dispatched: is_dispatched = true, last_dispatched_at = now,
 * approximate_dispatch_count + 1, in one statement per call. Unknown ids are
 * ignored; *marked (may be NULL) receives how many rows changed. */
TXM_API txm_status txm_outbox_mark_dispatched(txm_db *db, const char *const *message_ids,
                                              size_t count, size_t *marked, txm_error *err);

/* As txm_outbox_mark_dispatched, for rows not dispatched yet only: *marked
 * counts the rows this call marked, so a retry for rows another snapshot
 * could not see yet does not count the others twice (the relay's marker).
 * TXM_INVALID for a NULL db, or NULL ids with count > 0; TXM_DB on database
 * errors. Borrows message_ids. Thread: any. */
TXM_API txm_status txm_outbox_mark_dispatched_new(txm_db *db, const char *const *message_ids,
                                                  size_t count, size_t *marked, txm_error *err);

/* Frees a list from txm_outbox_list (txmsg/admin.h): its count entries and
 * the array. NULL-safe. */
TXM_API void txm_outbox_list_free(txm_outbox_entry **list, size_t count);

/* Age in microseconds of the oldest not-dispatched message, measured from its
 * created_at; 0 with *found = false when all are dispatched. */
TXM_API txm_status txm_outbox_oldest_age(txm_db *db, int64_t *age_us, bool *found, txm_error *err);

/* Number of not-dispatched messages. */
TXM_API txm_status txm_outbox_count_not_dispatched(txm_db *db, int64_t *count, txm_error *err);

/* Entry getters. Borrows: valid while the entry lives. */
TXM_API const txm_msg *txm_outbox_entry_msg(const txm_outbox_entry *e);
TXM_API int64_t txm_outbox_entry_seq(const txm_outbox_entry *e);
TXM_API bool txm_outbox_entry_is_dispatched(const txm_outbox_entry *e);
TXM_API int64_t txm_outbox_entry_dispatch_count(const txm_outbox_entry *e);
/* The dispatch count is approximate; on SQLite it is the marks plus one once
 * the relay cursors passed the row. Microseconds since the epoch of the last
 * mark; 0 if never marked (on SQLite, the relay marks nothing). */
TXM_API int64_t txm_outbox_entry_last_dispatched_at_us(const txm_outbox_entry *e);
TXM_API void txm_outbox_entry_free(txm_outbox_entry *e); /* NULL-safe */

#ifdef __cplusplus
}
#endif
#endif
