/* Idempotent consumer runtime: workers receive from subscriptions and run
 * each message's handler inside a unit of work behind the inbox, so a
 * message's effects and the messages it publishes commit once. */
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
 * txm_outbox_publish. Return TXM_OK to commit; TXM_CONFLICT (an
 * optimistic-lock conflict, see txm_uow_exec_versioned) re-runs the unit of
 * work at once, up to 8 times; any other status rolls back and the message
 * is redelivered later (and dead-lettered after the subscription's
 * max_receive_count). Thread: a worker thread of the
 * subscription; with concurrency > 1, several at once. */
typedef txm_status (*txm_handler_fn)(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err);

typedef struct txm_consumer_options {
    int backoff_base_ms; /* first redelivery delay after a failure; default 1000 */
    int backoff_max_ms;  /* cap of the doubling delay; default 60000 */
    txm_log_fn log;      /* optional */
    void *log_ctx;
} txm_consumer_options;

TXM_API void txm_consumer_options_init(txm_consumer_options *o);

typedef struct txm_handler_options {
    int concurrency;   /* worker threads for this subscription; default 1 */
    size_t batch_size; /* messages per receive; default 16 */
    int wait_ms;       /* long-poll wait; bounds how fast stop is noticed; default 500 */
    txm_subscription_options subscription; /* dead-letter queue, receive count, lease */
} txm_handler_options;

TXM_API void txm_handler_options_init(txm_handler_options *o);

/* Counters of one subscription since start. */
typedef struct txm_consumer_stats {
    uint64_t processed;     /* handled and committed */
    uint64_t duplicates;    /* found in the inbox; acked without calling the handler */
    uint64_t failures;      /* handler or commit failed; nacked */
    uint64_t dead_lettered; /* sent to the dead-letter queue by the consumer: undecodable,
                               or exhausted (see txm_delivery_is_exhausted) and not
                               in the inbox */
} txm_consumer_stats;

/* Creates a consumer over db and transport. Borrows both: they must outlive
 * the consumer. opts may be NULL. Open the transport with deliver_exhausted
 * (txm_app does): a message whose last lease ran out is then acked if its
 * inbox row shows it was processed (its ack was lost), and dead-lettered
 * only if not. An outage (TXM_UNAVAILABLE from the handler's unit of work)
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

/* Starts the worker threads. */
TXM_API txm_status txm_consumer_start(txm_consumer *c, txm_error *err);

/* Graceful stop: workers finish the messages they hold (commit and ack
 * them), then exit; returns when all have. Safe to call twice. Not from a
 * signal handler: set a flag there and call this from the main thread. */
TXM_API void txm_consumer_stop(txm_consumer *c);

/* Counters of queue; TXM_NOT_FOUND if it is not registered. Thread: any. */
TXM_API txm_status txm_consumer_stats_get(txm_consumer *c, const char *queue,
                                          txm_consumer_stats *out, txm_error *err);

/* Stops if running (joining the worker threads), then frees. NULL-safe. */
TXM_API void txm_consumer_close(txm_consumer *c);

#ifdef __cplusplus
}
#endif
#endif
