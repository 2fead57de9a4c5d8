/* The relay loop: tail the outbox, publish in commit order, mark dispatched,
 * and only then advance the position. */
#ifndef RELAY_RELAY_H
#define RELAY_RELAY_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tail.h"
#include "txmsg/consumer.h"
#include "txmsg/txmsg.h"

typedef struct relay_config {
    const char *database_url;
    const char *broker_url;
    size_t batch_size;      /* rows per publish; default 500 */
    int idle_wait_ms;       /* tailer wait per call; default 200 */
    bool mark_dispatched;   /* default true */
    relay_tail_config tail; /* slot, publication, cursor names */
    txm_log_fn log;
    void *log_ctx;
} relay_config;

void relay_config_init(relay_config *c);

/* Decides the PostgreSQL replication slot the relay uses for its lifetime:
 * cfg->tail.slot_name (--slot) when set, else txm_db_relay_slot(db), the
 * database's "txmsg_<database>". There is no fallback: when the lookup fails
 * (the database is away) it returns that status (TXM_DB) with out = "", and
 * the caller tries again later. TXM_INVALID for a NULL argument, a missing
 * db without --slot, or a name over TXM_SLOT_NAME_MAX bytes. Borrows cfg, db. */
txm_status relay_slot_decide(const relay_config *cfg, txm_db *db, char out[TXM_SLOT_NAME_MAX + 1],
                             txm_error *err);

/* Counters the metrics endpoint reads while the loop runs. */
typedef struct relay_stats {
    atomic_uint_fast64_t published; /* messages acknowledged by the broker */
    atomic_uint_fast64_t batches;
    atomic_uint_fast64_t bad_rows;      /* rows that could not become an envelope */
    atomic_uint_fast64_t errors_db;     /* tailer or marking failures */
    atomic_uint_fast64_t errors_broker; /* publish failures (the batch is retried) */
    atomic_int_fast64_t lag_us;         /* age of the newest published message, at publish */
    /* Creation to publish acknowledgement per message, in the buckets of
     * txm_consumer_latency_bounds_s (the last one is +Inf). */
    atomic_uint_fast64_t latency_buckets[TXM_CONSUMER_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_sum_us;
    atomic_uint_fast64_t position;     /* last confirmed sequence or LSN */
    atomic_bool standby;               /* another relay holds the log */
    atomic_bool connected;             /* tailer and broker are up */
    atomic_uint_fast64_t slot_resyncs; /* PostgreSQL: slots recreated and resynced from the table */
    char slot[TXM_SLOT_NAME_MAX + 1];  /* PostgreSQL: the relay's slot, once slot_known */
    atomic_bool slot_known;            /* set by the reader after writing slot */
} relay_stats;

/* Runs until *stop becomes non-zero; reconnects on failures by itself
 * (logged through cfg->log, never returned). Returns TXM_OK after a clean
 * stop, TXM_INVALID for a NULL argument or URL, TXM_IO when its reader
 * thread cannot start. Borrows cfg, stats and stop until it returns.
 * Thread: publishes on the caller's; reads ahead on a thread of its own,
 * and the marker runs on another. */
txm_status relay_run(const relay_config *cfg, relay_stats *stats, volatile sig_atomic_t *stop,
                     txm_error *err);

#endif
