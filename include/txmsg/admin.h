/* Operations on the outbox and inbox tables: filtered listing, the state
 * of the relay's position, and retention cleanup in bounded batches. The
 * txmsg CLI is built on these; services may call them too.
 * Thread: like txm_db, any thread may call them on a shared db. */
#ifndef TXMSG_ADMIN_H
#define TXMSG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/db.h"
#include "txmsg/message.h"
#include "txmsg/outbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which outbox rows txm_outbox_list returns. Caller-allocated value type. */
typedef struct txm_outbox_filter {
    bool not_dispatched_only;  /* only rows not yet dispatched */
    int64_t created_before_us; /* only rows created strictly before this time,
                                  microseconds since the epoch; 0: any time */
    const char *topic;         /* only this topic; NULL: any. Borrowed */
    int64_t after_seq;         /* only rows with a sequence number above this; 0: all */
    size_t limit;              /* most rows returned, 1..1000000; default 100 */
    const char *aggregate_id;  /* only this aggregate id; NULL: any. Borrowed */
    bool dispatched_only;      /* only rows dispatched already (not with
                                  not_dispatched_only: that matches nothing) */
} txm_outbox_filter;

/* Fills f with the defaults: every row, limit 100. */
TXM_API void txm_outbox_filter_init(txm_outbox_filter *f);

/* Lists the outbox rows f selects, lowest sequence (oldest) first, in one
 * statement: the one listing call (not_dispatched_only gives the rows the
 * relay has still to publish). Returns TXM_INVALID for a NULL argument or a limit
 * outside 1..1000000, TXM_DB on database errors. Owns: *out is an array of *count entries, freed
 * with txm_outbox_list_free; NULL and 0 on failure. Borrows f. */
TXM_API txm_status txm_outbox_list(txm_db *db, const txm_outbox_filter *f, txm_outbox_entry ***out,
                                   size_t *count, txm_error *err);

/* What the outbox holds, as monitoring wants it. */
typedef struct txm_outbox_stats {
    int64_t not_dispatched; /* rows not yet dispatched */
    bool has_oldest;        /* false when every row is dispatched */
    int64_t oldest_age_us;  /* age of the oldest not-dispatched row, from created_at */
    int64_t max_seq;        /* highest sequence number; 0 for an empty outbox */
} txm_outbox_stats;

/* Reads the counters above. TXM_DB on database errors. */
TXM_API txm_status txm_outbox_stats_get(txm_db *db, txm_outbox_stats *out, txm_error *err);

#define TXM_RELAY_POSITION_MAX 63

/* Where txmsg-relay stands in the outbox's log. */
typedef struct txm_relay_status {
    char name[TXM_SLOT_NAME_MAX + 1];          /* SQLite cursor or PostgreSQL slot name */
    bool found;                                /* the cursor row or the slot exists */
    char position[TXM_RELAY_POSITION_MAX + 1]; /* SQLite: last published sequence number;
                                                  PostgreSQL: confirmed_flush_lsn; "" if none */
    bool active;    /* PostgreSQL: a relay is connected to the slot; SQLite: false */
    int64_t behind; /* SQLite: max(seq) - position, in rows; PostgreSQL: WAL bytes
                       from confirmed_flush_lsn to pg_current_wal_lsn() */
    bool has_lag;   /* false when nothing waits for the relay */
    int64_t lag_us; /* SQLite: age of the oldest row after the position;
                       PostgreSQL: age of the oldest not-dispatched row
                       (meaningful when the relay marks rows dispatched) */
} txm_relay_status;

/* Reads the relay's position. name: the SQLite cursor row (NULL: "default")
 * or the PostgreSQL replication slot (NULL: txm_db_relay_slot). A missing
 * cursor counts as position 0 with found = false; a missing slot gives
 * found = false. Returns TXM_INVALID for a name longer than
 * TXM_SLOT_NAME_MAX bytes, TXM_DB on database errors. Borrows name. */
TXM_API txm_status txm_outbox_relay_status(txm_db *db, const char *name, txm_relay_status *out,
                                           txm_error *err);

/* Deletes at most batch (1..100000) dispatched outbox rows created before
 * created_before_us (microseconds since the epoch), oldest first, in one
 * short statement of its own, so a large purge is many small transactions
 * and never holds a long lock. Rows not yet dispatched are never deleted;
 * on SQLite neither are rows some relay cursor has not passed (marked rows
 * may go when there is no cursor at all).
 * *deleted (may be NULL) receives how many went; call again until it is 0.
 * Returns TXM_INVALID for bad arguments, TXM_BUSY/TXM_DB on database errors. */
TXM_API txm_status txm_outbox_purge_dispatched(txm_db *db, int64_t created_before_us, size_t batch,
                                               size_t *deleted, txm_error *err);

/* Deletes at most batch (1..100000) inbox rows created before
 * created_before_us, oldest first, in one statement of its own; as above.
 * A message redelivered after its row is gone would be processed again, so
 * the cutoff must lie well beyond any redelivery. */
TXM_API txm_status txm_inbox_purge(txm_db *db, int64_t created_before_us, size_t batch,
                                   size_t *deleted, txm_error *err);

/* How many inbox rows one subscription recorded: txm_inbox_handled_since. */
typedef struct txm_inbox_handled {
    char subscription[TXM_TOPIC_MAX + 1]; /* the subscription (queue) name */
    int64_t count;                        /* rows it recorded in the window */
} txm_inbox_handled;

/* Most subscriptions one txm_inbox_handled_since call returns. */
#define TXM_INBOX_HANDLED_MAX 1000

/* Counts the inbox rows each subscription recorded at or after since_us
 * (microseconds since the epoch), in one statement on the created_at
 * index, by subscription name, at most TXM_INBOX_HANDLED_MAX of them: how
 * many messages each processed lately (handled per second is the count
 * over the window). Subscriptions with no row in the window are absent.
 * Returns TXM_INVALID for a NULL argument, TXM_DB on database errors.
 * Owns: *out is an array of *count entries, the caller's (txm_free); NULL
 * and 0 when there are none or on failure. Thread: any, on a shared db. */
TXM_API txm_status txm_inbox_handled_since(txm_db *db, int64_t since_us, txm_inbox_handled **out,
                                           size_t *count, txm_error *err);

/* What one entry of a trace is: a message this database published or one
 * a subscription here processed. Append only. */
typedef enum txm_trace_kind {
    TXM_TRACE_OUTBOX = 0,
    TXM_TRACE_INBOX = 1,
} txm_trace_kind;

/* One entry of a trace. Caller-visible value type. */
typedef struct txm_trace_entry {
    txm_trace_kind kind;
    int64_t at_us;                        /* outbox: created_at; inbox: when processed;
                                             microseconds since the epoch */
    char message_id[TXM_ID_MAX + 1];      /* the message's id */
    char topic[TXM_TOPIC_MAX + 1];        /* "" for inbox rows from before schema v3 */
    char source[TXM_ID_MAX + 1];          /* the publishing service; "" when unknown */
    char aggregate_id[TXM_ID_MAX + 1];    /* outbox only; "" for inbox entries */
    char subscription[TXM_TOPIC_MAX + 1]; /* inbox only: the queue that processed it */
    bool dispatched;                      /* outbox only: the relay has published it */
} txm_trace_entry;

/* Most entries one txm_trace_list call returns. */
#define TXM_TRACE_LIMIT_MAX 10000

/* Lists the outbox messages and inbox entries of db with correlation_id, in
 * time order (at_us; an outbox entry before an inbox entry of the same
 * time), at most limit (1..TXM_TRACE_LIMIT_MAX) of them, in one statement
 * that scans both tables (the correlation id is indexed nowhere, to keep
 * producers and consumers free of the cost; about 0.2 s a million rows on
 * SQLite, so purge them with retention). Inbox rows recorded before schema
 * version 3 have no correlation id and are not found; outbox rows removed by
 * a retention purge are gone. On PostgreSQL in messages mode
 * (txm_outbox_mode_get) published messages leave no row, so only the inbox
 * side (and rows left from table mode) is seen.
 * Returns TXM_INVALID for a NULL argument, an empty or too long correlation
 * id or a bad limit, TXM_DB on database errors.
 * Owns: *out is an array of *count entries, the caller's (txm_free); NULL
 * and 0 when there are none or on failure. Borrows correlation_id.
 * Thread: any thread, on a shared db. */
TXM_API txm_status txm_trace_list(txm_db *db, const char *correlation_id, size_t limit,
                                  txm_trace_entry **out, size_t *count, txm_error *err);

#ifdef __cplusplus
}
#endif
#endif
