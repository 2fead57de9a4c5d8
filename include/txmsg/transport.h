/* Transport: topics fanned out to queues, with the semantics of SNS topics
 * and SQS queues (visibility timeout, receive count, dead-letter queue).
 * "embedded:PATH" is a broker in one SQLite file shared by the processes of
 * one host; "nats://host:port" is NATS JetStream, and
 * "nats://h1:p1,h2:p2,h3:p3?replicas=3" a JetStream cluster: any listed
 * server, failing over to the others, with streams of 3 replicas. */
#ifndef TXMSG_TRANSPORT_H
#define TXMSG_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/db.h"
#include "txmsg/error.h"
#include "txmsg/message.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct txm_transport txm_transport;
typedef struct txm_delivery txm_delivery;

typedef struct txm_transport_options {
    int connect_timeout_ms;  /* default 5000 */
    int publish_timeout_ms;  /* wait for the broker's acknowledgements; default 10000 */
    size_t max_message_len;  /* largest body sent through the broker as is; default
                                256 KiB (as SQS). Larger ones (up to TXM_ENVELOPE_MAX)
                                are stored once in the transport's payload store and
                                travel as a reference that receive resolves. */
    bool background_connect; /* when the broker cannot be reached at open, open
                                succeeds and keeps connecting in the background;
                                calls fail with TXM_UNAVAILABLE until it is
                                reached (NATS). Default false: open reports an
                                unreachable broker at once. */
    bool deliver_exhausted;  /* receive returns a message whose last lease ran out
                                after max_receive_count receives, flagged (see
                                txm_delivery_is_exhausted), instead of moving it
                                to the dead-letter queue: for a receiver that can
                                tell whether it was processed already (the
                                consumer runtime's inbox). Default false. */
    txm_log_fn log;          /* optional */
    void *log_ctx;
} txm_transport_options;

TXM_API void txm_transport_options_init(txm_transport_options *o);

typedef struct txm_subscription_options {
    const char *dlq;           /* dead-letter queue name; NULL for "<queue>--dlq" */
    int max_receive_count;     /* receives before dead-lettering; default 3 */
    int visibility_timeout_ms; /* lease of a received message; default 30000 */
} txm_subscription_options;

TXM_API void txm_subscription_options_init(txm_subscription_options *o);

/* Connects to the broker named by url. opts may be NULL; it is copied.
 * Returns TXM_INVALID for an unknown scheme or a malformed URL,
 * TXM_UNAVAILABLE when the broker cannot be reached (unless
 * opts->background_connect), TXM_CONFLICT when a NATS stream exists with
 * settings txmsg cannot use (the text says which and how to fix it),
 * TXM_BROKER/TXM_IO for other failures. Owns: *out is the caller's (txm_transport_close).
 * Thread: all calls may be made from any thread concurrently. */
TXM_API txm_status txm_transport_open(const char *url, const txm_transport_options *opts,
                                      txm_transport **out, txm_error *err);
TXM_API void txm_transport_close(txm_transport *t); /* NULL-safe */

/* Declares a topic. Idempotent; safe when several processes do it at once. */
TXM_API txm_status txm_transport_declare_topic(txm_transport *t, const char *topic, txm_error *err);

/* Subscribes queue to topic (declaring both and the dead-letter queue).
 * Idempotent. opts may be NULL for the defaults. A queue has one topic;
 * declaring it again with another topic returns TXM_CONFLICT. */
TXM_API txm_status txm_transport_declare_subscription(txm_transport *t, const char *topic,
                                                      const char *queue,
                                                      const txm_subscription_options *opts,
                                                      txm_error *err);

/* One message to publish: its body is sent as is (normally a CloudEvents
 * document from txm_msg_encode). Borrows every field. */
typedef struct txm_outgoing {
    const char *topic;
    const char *message_id;
    const char *body;
    size_t len;
} txm_outgoing;

/* Publishes n messages in order and returns after the broker has durably
 * accepted all of them or failed. results (may be NULL) receives a status
 * per message. Returns TXM_OK only if every message was accepted; otherwise
 * the first failure. A message to a topic nobody subscribes to is accepted
 * and dropped, as SNS does. */
TXM_API txm_status txm_transport_publish(txm_transport *t, const txm_outgoing *msgs, size_t n,
                                         txm_status *results, txm_error *err);

/* A publish in two halves, so a caller can send the next batch while the
 * broker acknowledges the last one. start checks and sends msgs as
 * txm_transport_publish does and returns once they are on their way, in
 * order after every batch started before on t; txm_transport_publish_wait
 * then waits for the acknowledgements (results and return value as
 * txm_transport_publish) and frees *out. Wait for batches in the order they
 * were started. A broker whose acknowledgement is the commit of its own
 * transaction (embedded) does the whole publish in start and wait only
 * reports it. start returns TXM_INVALID or TXM_TOO_BIG for bad input, else
 * TXM_OK with *out (NULL only for n == 0) or TXM_NOMEM; a broker failure is
 * wait's to report. If a batch fails, one started after it may still be
 * stored: publish both again (ids dedupe). Owns: *out until wait. Thread:
 * as txm_transport_publish; one thread should start and wait a sequence. */
typedef struct txm_publish txm_publish;
TXM_API txm_status txm_transport_publish_start(txm_transport *t, const txm_outgoing *msgs, size_t n,
                                               txm_publish **out, txm_error *err);
TXM_API txm_status txm_transport_publish_wait(txm_transport *t, txm_publish *p, txm_status *results,
                                              txm_error *err);

/* Encodes each message as CloudEvents and publishes them as above. */
TXM_API txm_status txm_transport_publish_msgs(txm_transport *t, const txm_msg *const *msgs,
                                              size_t n, txm_status *results, txm_error *err);

/* Receives up to max messages from queue, waiting up to wait_ms for the
 * first. Each is leased for the visibility timeout and its receive count
 * incremented; one received more than max_receive_count times goes to the
 * dead-letter queue instead of being returned. TXM_OK with *count == 0 on
 * timeout. Owns: *out is an array of *count deliveries; free each with
 * txm_delivery_free (after ack/nack) and the array with txm_free. */
TXM_API txm_status txm_transport_receive(txm_transport *t, const char *queue, size_t max,
                                         int wait_ms, txm_delivery ***out, size_t *count,
                                         txm_error *err);

/* Acknowledges: the message is removed from its queue. TXM_NOT_FOUND if the
 * lease expired and another receiver holds it now. */
TXM_API txm_status txm_transport_ack(txm_transport *t, txm_delivery *d, txm_error *err);

/* Acknowledges n deliveries together, as txm_transport_ack does each, but
 * in one exchange with the broker: NATS sends the acks without waiting for
 * a reply to each and then makes one round trip, after which the server has
 * read them all; the embedded broker removes them in one transaction.
 * Leases and redelivery are as for txm_transport_ack: a delivery whose
 * lease ran out may come back once more. results (may be NULL) receives a
 * status per delivery; a delivery acked is settled, one that failed is not
 * and can be acked, nacked or left to its lease. Returns TXM_OK when every
 * delivery was acked, otherwise the first failure. */
TXM_API txm_status txm_transport_ack_batch(txm_transport *t, txm_delivery *const *ds, size_t n,
                                           txm_status *results, txm_error *err);

/* Gives the message back, visible again after delay_ms. reason is kept as
 * its last error. When this was its max_receive_count-th receive it goes to
 * the dead-letter queue now. */
TXM_API txm_status txm_transport_nack(txm_transport *t, txm_delivery *d, int delay_ms,
                                      const char *reason, txm_error *err);

/* Moves the message to the dead-letter queue at once (it cannot be
 * processed, for example it does not decode). */
TXM_API txm_status txm_transport_dead_letter(txm_transport *t, txm_delivery *d, const char *reason,
                                             txm_error *err);

/* Keeps the delivery's lease: the message stays hidden from other receivers
 * for another visibility timeout from now, and its receive count does not
 * change. For a consumer that holds a message while its database is away.
 * TXM_NOT_FOUND if the lease was lost already, TXM_UNAVAILABLE while the
 * broker is away. */
TXM_API txm_status txm_transport_extend(txm_transport *t, txm_delivery *d, txm_error *err);

/* True while the broker can be reached (always for the embedded broker).
 * Thread: any. */
TXM_API bool txm_transport_is_available(txm_transport *t);

/* Messages waiting in queue (visible or leased), without consuming. */
TXM_API txm_status txm_transport_queue_depth(txm_transport *t, const char *queue, int64_t *depth,
                                             txm_error *err);

/* Lists up to limit messages of queue's dead-letter queue without consuming
 * them (queue is the source queue's name). Owns: as txm_transport_receive;
 * the deliveries cannot be acked. */
TXM_API txm_status txm_transport_dlq_list(txm_transport *t, const char *queue, size_t limit,
                                          txm_delivery ***out, size_t *count, txm_error *err);

/* Moves dead-lettered messages back to queue with a fresh receive count:
 * the one with message_id, or all when message_id is NULL. *moved (may be
 * NULL) receives how many. */
TXM_API txm_status txm_transport_dlq_redrive(txm_transport *t, const char *queue,
                                             const char *message_id, size_t *moved, txm_error *err);

/* Deletes every message of queue's dead-letter queue. */
TXM_API txm_status txm_transport_dlq_purge(txm_transport *t, const char *queue, size_t *purged,
                                           txm_error *err);

/* Delivery getters. Borrows: valid while d lives. */
TXM_API const char *txm_delivery_body(const txm_delivery *d, size_t *len);
TXM_API const char *txm_delivery_message_id(const txm_delivery *d); /* "" if unknown */
TXM_API const char *txm_delivery_topic(const txm_delivery *d);
TXM_API const char *txm_delivery_queue(const txm_delivery *d);
TXM_API int txm_delivery_receive_count(const txm_delivery *d); /* 1 on first receive */
/* True for a delivery received more than max_receive_count times (only with
 * the deliver_exhausted option): ack it if it was processed already,
 * otherwise move it to the dead-letter queue (txm_transport_dead_letter). */
TXM_API bool txm_delivery_is_exhausted(const txm_delivery *d);
TXM_API const char *txm_delivery_last_error(const txm_delivery *d); /* "" if none */
TXM_API void txm_delivery_free(txm_delivery *d);                    /* NULL-safe */
/* Frees an array from receive/dlq_list and every delivery in it. */
TXM_API void txm_delivery_list_free(txm_delivery **list, size_t count);

#ifdef __cplusplus
}
#endif
#endif
