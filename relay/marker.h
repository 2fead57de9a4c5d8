/* Marking published messages dispatched, on a thread of its own, so the
 * relay reads and publishes the next batch meanwhile. */
#ifndef RELAY_MARKER_H
#define RELAY_MARKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay.h"

typedef struct relay_marker relay_marker;

/* Starts the marker over db (NULL or !enabled: nothing is marked and
 * positions pass straight through). Returns TXM_NOMEM when out of memory,
 * TXM_IO when no thread can start. Owns: *out (relay_marker_close), NULL on
 * failure. Borrows db and stats until closed. */
txm_status relay_marker_open(txm_db *db, bool enabled, relay_stats *stats, txm_log_fn log,
                             void *log_ctx, relay_marker **out, txm_error *err);

/* Queues the ids of a published batch (copied) and its position. Waits while
 * the queue is full. TXM_NOMEM when the ids cannot be copied.
 * Thread: the relay loop. */
txm_status relay_marker_push(relay_marker *m, const char *const *ids, size_t n, uint64_t position,
                             txm_error *err);

/* The highest position whose batch, and every batch before it, is marked:
 * the relay confirms up to here, so a confirmed row is always marked. */
uint64_t relay_marker_done(relay_marker *m);

/* Waits until every queued batch is marked, or given up: at this point a
 * batch whose marking fails is not retried, and neither its position nor
 * any later one becomes done. For shutdown. */
void relay_marker_drain(relay_marker *m);

/* Drains, stops the thread and frees. NULL-safe. */
void relay_marker_close(relay_marker *m);

#endif
