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

/* Adds msg to the outbox inside uow: a txmsg_outbox row, or in PostgreSQL's
 * messages mode (txm_outbox_mode_get) a transactional logical decoding
 * message carrying its record (txm_outbox_record_encode). Owns: takes *msg
 * on every path and sets *msg = NULL. Returns TXM_ALREADY_PUBLISHED if its id
 * exists in the table (the unit of work then fails); messages mode keeps no
 * table and does not detect a repeated id (consumers' inboxes absorb it).
 * Thread: the uow's thread. */
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

/* Which way txm_outbox_publish records a message on PostgreSQL (SQLite has
 * the table only). Append only. */
typedef enum {
    TXM_OUTBOX_TABLE,    /* a row in txmsg_outbox: listed, dispatched by hand, purged */
    TXM_OUTBOX_MESSAGES, /* pg_logical_emit_message(true, 'txmsg', record): no row; the
                            relay decodes it from the slot */
} txm_outbox_mode;

/* The mode db's publishes use: the database's setting "outbox_mode" in
 * txmsg_settings, read once when db opened (or as last set through db by
 * txm_outbox_set_mode). TXM_OUTBOX_TABLE on SQLite, for NULL, and when the
 * setting is absent. Thread: any. */
TXM_API txm_outbox_mode txm_outbox_mode_get(const txm_db *db);

/* Stores mode as the database's setting and uses it for db's own publishes
 * from now on. Other processes, and other handles, keep the mode they read
 * at open until they open the database again (restart them). Units of work
 * of both modes may be in flight meanwhile: the relay reads both.
 * TXM_UNSUPPORTED for TXM_OUTBOX_MESSAGES on SQLite, TXM_INVALID for NULL or
 * an unknown mode, TXM_DB. Thread: any. */
TXM_API txm_status txm_outbox_set_mode(txm_db *db, txm_outbox_mode mode, txm_error *err);

/* "table" or "messages"; "" for an unknown value. */
TXM_API const char *txm_outbox_mode_name(txm_outbox_mode mode);

/* The prefix of the logical decoding messages of TXM_OUTBOX_MESSAGES. */
#define TXM_OUTBOX_MESSAGE_PREFIX "txmsg"
/* The version byte the record starts with. */
#define TXM_OUTBOX_RECORD_VERSION 1

/* Encodes msg's outbox fields as the binary record messages mode emits:
 * Byte1 version (TXM_OUTBOX_RECORD_VERSION), Int64 created_at in
 * microseconds since the Unix epoch, then six Int32 length-prefixed strings
 * without NUL: message_id, source, aggregate_id, correlation_id, topic, the
 * payload's compact JSON text. Integers are big-endian. Returns TXM_INVALID
 * for NULL, TXM_NOMEM. Owns: *out is the caller's (txm_free), *len its
 * bytes. */
TXM_API txm_status txm_outbox_record_encode(const txm_msg *msg, uint8_t **out, size_t *len,
                                            txm_error *err);

/* Decodes a record of len bytes into a new message. Any byte string either
 * decodes or fails with TXM_MALFORMED and the reason (unknown version,
 * truncated, trailing bytes, a NUL or an over-long field, a field
 * txm_msg_new_trusted refuses: the payload, validated when the record was
 * written, is only checked for its shape); never reads past len. TXM_NOMEM. Owns: *out is
 * the caller's (txm_msg_free), NULL on failure. Borrows buf during the call. */
TXM_API txm_status txm_outbox_record_decode(const uint8_t *buf, size_t len, txm_msg **out,
                                            txm_error *err);

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
