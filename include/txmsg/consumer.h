/* Idempotent consumer runtime: a receiver per subscription hands messages
 * to ordered lanes, which run them in batches, each batch in one unit of
 * work behind the inbox, so a message's effects and the messages it
 * publishes commit once. */
#ifndef TXMSG_CONSUMER_H
#define TXMSG_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "txmsg/db.h"
#include "txmsg/message.h"
#include "txmsg/transport.h"
#include "txmsg/uow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct txm_consumer txm_consumer;

/* Handles one message inside uow, after its inbox row was added. Domain
 * writes go through txm_uow_exec; messages to send through
 * txm_outbox_publish. Several messages may share one uow (see batch_size):
 * a handler must not commit, roll back or set savepoints on it, and its
 * work is undone alone if it fails. Return TXM_OK to keep the work;
 * TXM_CONFLICT (an optimistic-lock conflict, see txm_uow_exec_versioned)
 * re-runs this message at once, up to 8 times; TXM_UNAVAILABLE (a
 * dependency is away) or TXM_NO_SPACE (its disk is full) holds the whole
 * batch and tries it again later,
 * without counting a receive; any other status undoes this message's work
 * and retries it after a growing pause, holding back the later messages of
 * its key, until it succeeds or max_receive_count attempts failed: then it
 * goes to the dead-letter queue. Thread: a lane thread of the
 * subscription; with concurrency > 1, several at once (for different
 * keys). */
typedef txm_status (*txm_handler_fn)(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err);

typedef struct txm_consumer_options {
    int backoff_base_ms; /* first retry delay after a failure; default 1000 */
    int backoff_max_ms;  /* cap of the doubling delay; default 60000 */
    txm_log_fn log;      /* optional */
    void *log_ctx;
    /* Optional: called after a batch's unit of work committed and before
     * its messages are acknowledged, with how many it handled (for tracing,
     * and for tests that crash a consumer at that point). Thread: a lane
     * thread; must not block for long. */
    void (*on_commit)(void *ctx, const char *queue, size_t handled);
    void *on_commit_ctx;
} txm_consumer_options;

TXM_API void txm_consumer_options_init(txm_consumer_options *o);

typedef struct txm_handler_options {
    int concurrency;   /* ordered lanes: messages of one key (the aggregate id, or
                          the message id when it has none) go to one lane and are
                          handled in the order received; lanes run in parallel.
                          1..64, or 0 (the default) for 1 on SQLite, whose writers
                          take turns anyway, and 4 on PostgreSQL */
    size_t batch_size; /* messages per unit of work (one transaction, one commit,
                          one inbox statement, one ack exchange); 1 is a
                          transaction per message. 1..1000; default 256 */
    int max_wait_ms;   /* how long a lane waits for a batch to fill once it has a
                          message; 0 takes what is there (under load, batches
                          fill while the previous one commits); default 0 */
    int wait_ms;       /* long-poll wait; bounds how fast stop is noticed; default 500 */
    txm_subscription_options subscription; /* dead-letter queue, receive count, lease */
} txm_handler_options;

TXM_API void txm_handler_options_init(txm_handler_options *o);

/* Histogram buckets of txm_consumer_stats: batch sizes <= 1, 2, 4, ...,
 * 512, 1024 messages; handle latencies <= 1, 2.5, 5, 10, 25, 50, 100, 250,
 * 500 ms, 1, 2.5, 5, 10, 30, 60 s. The last slot counts the rest (+Inf). */
#define TXM_CONSUMER_BATCH_BUCKETS 11
#define TXM_CONSUMER_LATENCY_BUCKETS 15
TXM_API extern const double txm_consumer_batch_bounds[TXM_CONSUMER_BATCH_BUCKETS];
TXM_API extern const double txm_consumer_latency_bounds_s[TXM_CONSUMER_LATENCY_BUCKETS];

/* Counters of one subscription since start. */
typedef struct txm_consumer_stats {
    uint64_t processed;     /* handled and committed */
    uint64_t duplicates;    /* found in the inbox; acked without calling the handler */
    uint64_t failures;      /* attempts that failed (handler, statement or commit) */
    uint64_t dead_lettered; /* sent to the dead-letter queue by the consumer: undecodable,
                               failed max_receive_count times, or received more than 10
                               times max_receive_count and not in the inbox */
    /* Committed batches: how many messages each held (per bucket, not
     * cumulative), their count and the sum of their sizes. */
    uint64_t batch_buckets[TXM_CONSUMER_BATCH_BUCKETS + 1];
    uint64_t batches;
    uint64_t batch_sum;
    /* Handled messages: from the time in their envelope (when they were
     * published) to their commit, per bucket, with count and sum. Messages
     * without a time are left out. */
    uint64_t latency_buckets[TXM_CONSUMER_LATENCY_BUCKETS + 1];
    uint64_t latencies;
    double latency_sum_s;
} txm_consumer_stats;

/* Creates a consumer over db and transport. Borrows both: they must outlive
 * the consumer. opts may be NULL. Open the transport with deliver_exhausted
 * (txm_app does): a message whose last lease ran out is then acked if its
 * inbox row shows it was processed (its ack was lost), and otherwise run
 * once more as its last attempt: crashes and broker restarts send messages
 * back one receive count higher without their handler having failed. Past
 * 10 times max_receive_count receives it is dead-lettered unrun (it may be
 * what kills its consumer). An outage (TXM_UNAVAILABLE from the handler's unit of work)
 * uses up no receive: the delivery is held, its lease extended, and the
 * unit retried with a growing pause. Owns: *out is the caller's. */
TXM_API txm_status txm_consumer_open(txm_db *db, txm_transport *transport,
                                     const txm_consumer_options *opts, txm_consumer **out,
                                     txm_error *err);

/* Registers handler for queue subscribed to topic and declares that
 * subscription on the transport now. Before txm_consumer_start only.
 * Borrows ctx. TXM_INVALID for bad names or a queue registered twice. */
TXM_API txm_status txm_consumer_subscribe(txm_consumer *c, const char *topic, const char *queue,
                                          txm_handler_fn handler, void *ctx,
                                          const txm_handler_options *opts, txm_error *err);

/* Starts the receiver and lane threads. */
TXM_API txm_status txm_consumer_start(txm_consumer *c, txm_error *err);

/* Graceful stop: receiving ends, lanes finish the messages they were given
 * (commit and ack them), give back the ones held for a retry (nack), then
 * exit; returns when all have. Safe to call twice. Not from a
 * signal handler: set a flag there and call this from the main thread. */
TXM_API void txm_consumer_stop(txm_consumer *c);

/* Counters of queue; TXM_NOT_FOUND if it is not registered. Thread: any. */
TXM_API txm_status txm_consumer_stats_get(txm_consumer *c, const char *queue,
                                          txm_consumer_stats *out, txm_error *err);

/* Stops if running (joining the threads), then frees. NULL-safe. */
TXM_API void txm_consumer_close(txm_consumer *c);

#ifdef __cplusplus
}
#endif
#endif
