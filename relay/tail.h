/* Tailers read committed outbox rows in commit order: tail_sqlite.c by
 * sequence number, tail_pg.c by PostgreSQL logical replication (pgoutput). */
#ifndef RELAY_TAIL_H
#define RELAY_TAIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/txmsg.h"

/* SQLite page cache of the relay's connections, KiB: it streams through
 * the outbox once, so SQLite's default 2 MiB would only add to its memory. */
#define RELAY_SQLITE_CACHE_KB 256

/* One outbox row, or one record of PostgreSQL's messages mode, as read from
 * the log. */
typedef struct relay_entry {
    txm_msg *msg;     /* NULL when the row cannot become a valid message */
    char *message_id; /* the row's message_id (may be NULL if absent) */
    char *bad_reason; /* why msg is NULL; NULL otherwise */
    char *body;       /* msg as a CloudEvents envelope, once the reader encoded it */
    size_t body_len;
    bool no_row; /* from a logical decoding message: no outbox row to mark */
} relay_entry;

/* A batch of rows, in commit order. */
typedef struct relay_batch {
    relay_entry *entries;
    size_t count;
    size_t cap;
    /* Position to confirm once every entry of this batch and all earlier
     * batches is acknowledged by the broker: the SQLite sequence of the last
     * row, or the end LSN of the last transaction completed in this batch.
     * 0 when the batch completes no transaction (a long one is split). */
    uint64_t confirm_position;
} relay_batch;

typedef struct relay_tailer relay_tailer;

typedef struct relay_tailer_ops {
    /* Appends up to max rows to out (which starts empty), waiting up to
     * wait_ms for the first. TXM_OK with out->count == 0 on timeout.
     * Returns TXM_BUSY while another relay holds the log (standby), TXM_DB or
     * TXM_IO when the database went away (the caller reconnects). */
    txm_status (*next)(relay_tailer *t, size_t max, int wait_ms, relay_batch *out, txm_error *err);
    /* Records that everything up to position is durably published: the
     * SQLite cursor row, or the replication slot's flush LSN. */
    txm_status (*confirm)(relay_tailer *t, uint64_t position, txm_error *err);
    /* The current confirmed position as text ("42" or "0/16B3748"). */
    void (*position_text)(const relay_tailer *t, char *out, size_t len);
    void (*close)(relay_tailer *t);
} relay_tailer_ops;

struct relay_tailer {
    const relay_tailer_ops *ops;
};

typedef struct relay_tail_config {
    const char *database_url;
    const char *slot_name;              /* PostgreSQL: replication slot; required (the relay
                                           decides it with relay_slot_decide) */
    const char *publication_name;       /* PostgreSQL: default TXM_PUBLICATION_NAME */
    const char *cursor_name;            /* SQLite: cursor row name; default "default" */
    bool no_mark_dispatched;            /* PostgreSQL: the relay does not mark rows dispatched,
                                           so a resync republishes every row (log wording) */
    atomic_uint_fast64_t *slot_resyncs; /* PostgreSQL: counts resyncs; may be NULL */
    txm_log_fn log;
    void *log_ctx;
} relay_tail_config;

/* Opens a tailer for cfg->database_url. Owns: *out, closed with ops->close.
 * PostgreSQL creates the publication when missing. A slot that is missing
 * (dropped, or a promoted standby's) or invalidated (wal_status 'lost') is
 * recreated, and ops->next first serves every outbox row not dispatched
 * from the table (a resync, marked durably in txmsg_settings until the
 * relay confirms its last batch), then streams. TXM_BUSY while another
 * relay recovers the slot; TXM_INVALID without cfg->slot_name. */
txm_status relay_tail_open_sqlite(const relay_tail_config *cfg, relay_tailer **out, txm_error *err);
txm_status relay_tail_open_pg(const relay_tail_config *cfg, relay_tailer **out, txm_error *err);

/* Batch helpers. */
void relay_batch_init(relay_batch *b);
/* Appends an entry (no_row false), taking *msg (may be NULL with a reason).
 * Copies strings. */
txm_status relay_batch_add(relay_batch *b, txm_msg **msg, const char *message_id,
                           const char *bad_reason);
/* Frees the entries and empties b for reuse. */
void relay_batch_clear(relay_batch *b);

/* Builds an outbox message from a row's text columns (NULL for SQL NULL);
 * on failure returns NULL msg and a reason. Shared by both tailers. */
txm_status relay_row_to_msg(const char *message_id, const char *source, const char *aggregate_id,
                            const char *correlation_id, const char *topic, const char *payload,
                            const char *created_at, txm_msg **out, txm_error *err);

/* Copies len bytes of valid JSON text to out (len + 1 bytes) without the
 * white space between tokens, NUL-terminated. Returns the bytes written. */
size_t relay_json_compact(const char *text, size_t len, char *out);

/* Milliseconds on the monotonic clock, for deadlines. */
long long relay_mono_ms(void);

/* Copies msg (NULL: "") into buf of len bytes as one log line: inner
 * newlines and tabs become spaces, trailing ones are dropped. Returns buf. */
const char *relay_one_line(const char *msg, char *buf, size_t len);

#endif
