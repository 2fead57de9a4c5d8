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

/* One subscription queue the broker knows, with its figures: a value type
 * txm_transport_queues fills. */
typedef struct txm_queue_info {
    char name[TXM_TOPIC_MAX + 1];  /* the queue (subscription) */
    char topic[TXM_TOPIC_MAX + 1]; /* the topic it is subscribed to */
    char dlq[TXM_TOPIC_MAX + 9];   /* its dead-letter queue */
    int64_t depth;                 /* messages waiting, visible or leased
                                      (as txm_transport_queue_depth) */
    int64_t in_flight;             /* leased now: embedded, a lease not run out;
                                      NATS, the consumer's num_ack_pending */
    int64_t dead_letters;          /* messages in its dead-letter queue; on NATS all
                                      of the DLQ's subject, so queues sharing a DLQ
                                      count each other's */
} txm_queue_info;

/* Most queues one txm_transport_queues call returns. */
#define TXM_TRANSPORT_QUEUES_MAX 1000

/* Lists the subscription queues the broker knows (not the dead-letter
 * queues themselves) by name, at most TXM_TRANSPORT_QUEUES_MAX, with their
 * depth, messages in flight and dead letters: the embedded broker's
 * subscriptions, or the durable consumers of the TXMSG stream on NATS.
 * Returns TXM_INVALID for a NULL argument, TXM_UNAVAILABLE while the broker
 * is away, TXM_BROKER/TXM_DB on broker errors. Owns: *out is an array of
 * *count entries, the caller's (txm_free); NULL and 0 when there are none or
 * on failure. Thread: any. */
TXM_API txm_status txm_transport_queues(txm_transport *t, txm_queue_info **out, size_t *count,
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

/* ---- dead letters by cause ---- */

/* When a delivery from txm_transport_dlq_list was dead-lettered,
 * microseconds since the epoch (the embedded broker's move, the JetStream
 * DLQ stream's time); 0 when unknown (other deliveries). */
TXM_API int64_t txm_delivery_dead_lettered_at_us(const txm_delivery *d);

/* Deletes queue's dead letters with message_id (a message dead-lettered
 * twice has two). *deleted (may be NULL) receives how many; 0 when none
 * matched. TXM_INVALID for a bad queue or an empty id. */
TXM_API txm_status txm_transport_dlq_delete(txm_transport *t, const char *queue,
                                            const char *message_id, size_t *deleted,
                                            txm_error *err);

#define TXM_DLQ_FINGERPRINT_MAX 255 /* bytes of a fingerprint, without the NUL */
#define TXM_DLQ_GROUP_ID_LEN 12     /* hexadecimal characters of a group id */
#define TXM_DLQ_ERROR_MAX 1023      /* bytes of a group's sample error kept */
#define TXM_DLQ_SCAN_MAX 100000     /* most dead letters one call reads */

/* Writes the fingerprint of a dead letter's last error into out: the text
 * with UUIDs and hexadecimal ids (8 or more hex digits, at least one a
 * digit) replaced by <id>, other numbers by <n>, and what is in double or
 * single quotes by <s>, cut at TXM_DLQ_FINGERPRINT_MAX bytes. So
 * `order 0193a7c2-...: balance 12 < 40 in "abc"` becomes
 * `order <id>: balance <n> < <n> in "<s>"`. NULL error: "". Thread: any. */
TXM_API void txm_dlq_fingerprint(const char *error, char out[TXM_DLQ_FINGERPRINT_MAX + 1]);

/* Writes the group id of a fingerprint into out: TXM_DLQ_GROUP_ID_LEN
 * lower-case hex digits of its 64-bit FNV-1a hash, the same in every
 * process and version that masks alike. */
TXM_API void txm_dlq_group_id(const char *fingerprint, char out[TXM_DLQ_GROUP_ID_LEN + 1]);

/* The dead letters of one queue with one fingerprint. Value type. */
typedef struct txm_dlq_group {
    char id[TXM_DLQ_GROUP_ID_LEN + 1];             /* txm_dlq_group_id of fingerprint */
    char fingerprint[TXM_DLQ_FINGERPRINT_MAX + 1]; /* the masked last error */
    size_t count;                                  /* dead letters in the group */
    int64_t first_seen_us;                    /* earliest dead-lettered time, microseconds since the
                                                 epoch; 0 when the transport did not say */
    int64_t last_seen_us;                     /* latest one; 0 likewise */
    char sample_id[TXM_ID_MAX + 1];           /* message id of the oldest member */
    char sample_error[TXM_DLQ_ERROR_MAX + 1]; /* its last error, unmasked (cut) */
} txm_dlq_group;

/* Reads up to scan_limit (1..TXM_DLQ_SCAN_MAX) dead letters of queue, oldest
 * first, and groups them by fingerprint: largest group first, then by first
 * seen. *truncated (may be NULL) is set when the queue had scan_limit or
 * more, so later ones were not read. TXM_INVALID for bad arguments,
 * TXM_NOT_FOUND for a queue the embedded broker does not know, what
 * txm_transport_dlq_list returns otherwise. Owns: *out is an array of
 * *count groups, the caller's (txm_free); NULL and 0 when the DLQ is empty
 * or on failure. Thread: as txm_transport_dlq_list. */
TXM_API txm_status txm_transport_dlq_groups(txm_transport *t, const char *queue, size_t scan_limit,
                                            txm_dlq_group **out, size_t *count, bool *truncated,
                                            txm_error *err);

/* What txm_transport_dlq_redrive_group moves and how fast. Value type. */
typedef struct txm_dlq_redrive_options {
    const char *group_id; /* only this group (txm_dlq_group.id); NULL: any group. Borrowed */
    const char *match;    /* only dead letters whose last error contains this text;
                             NULL: any. Borrowed */
    double rate_per_s;    /* most messages moved per second; 0: no limit */
    size_t scan_limit;    /* dead letters read, 1..TXM_DLQ_SCAN_MAX; default 10000 */
    /* Optional: asked before each message; true stops the redrive there
     * (a Ctrl-C flag). Thread: the caller's. */
    bool (*should_stop)(void *ctx);
    /* Optional: after each message, with how many were moved of total. */
    void (*progress)(void *ctx, size_t moved, size_t total);
    void *ctx; /* passed to both; borrowed */
} txm_dlq_redrive_options;

/* Fills o with the defaults: every dead letter, no rate limit, scan 10000. */
TXM_API void txm_dlq_redrive_options_init(txm_dlq_redrive_options *o);

/* Moves the dead letters of queue that o selects back to queue, one message
 * id at a time (txm_transport_dlq_redrive), message k no earlier than k /
 * rate_per_s seconds after the start, so a fixed consumer is not flooded.
 * Blocks until done or should_stop says so. *moved (may be NULL) receives
 * how many moved, also on failure. TXM_INVALID for bad arguments (a rate
 * below 0 or above 1000000, a bad scan limit), TXM_NOT_FOUND when no dead
 * letter matched, transport statuses otherwise. Borrows o. */
TXM_API txm_status txm_transport_dlq_redrive_group(txm_transport *t, const char *queue,
                                                   const txm_dlq_redrive_options *o, size_t *moved,
                                                   txm_error *err);

/* Deletes the dead letters of queue in group group_id among the first
 * scan_limit (1..TXM_DLQ_SCAN_MAX). *purged (may be NULL) receives how many.
 * TXM_NOT_FOUND when the group has no member; as above otherwise. */
TXM_API txm_status txm_transport_dlq_purge_group(txm_transport *t, const char *queue,
                                                 const char *group_id, size_t scan_limit,
                                                 size_t *purged, txm_error *err);

#ifdef __cplusplus
}
#endif
#endif
