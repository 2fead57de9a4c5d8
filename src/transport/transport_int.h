/* The transport variant interface: transport.c dispatches to
 * transport_embedded.c and transport_nats.c. */
#ifndef TXM_TRANSPORT_TRANSPORT_INT_H
#define TXM_TRANSPORT_TRANSPORT_INT_H

#include "txmsg/transport.h"

typedef struct txm__broker txm__broker; /* a variant's own state */

typedef struct txm__transport_ops {
    const char *scheme; /* "embedded" or "nats" */
    txm_status (*open)(const char *url, const txm_transport_options *o, txm__broker **out,
                       txm_error *err);
    void (*close)(txm__broker *b);
    txm_status (*declare_topic)(txm__broker *b, const char *topic, txm_error *err);
    txm_status (*declare_subscription)(txm__broker *b, const char *topic, const char *queue,
                                       const txm_subscription_options *o, txm_error *err);
    txm_status (*publish)(txm__broker *b, const txm_outgoing *msgs, size_t n, txm_status *results,
                          txm_error *err);
    /* A publish in two halves: start returns once the batch is sent (in
     * order after any started before) with a handle that wait takes, waits
     * for the answers and frees; msgs (NULL when the caller's are gone)
     * only names ids in the error text. NULL: start runs the whole publish. */
    txm_status (*publish_start)(txm__broker *b, const txm_outgoing *msgs, size_t n, void **handle,
                                txm_error *err);
    txm_status (*publish_wait)(txm__broker *b, void *handle, const txm_outgoing *msgs,
                               txm_status *results, txm_error *err);
    txm_status (*receive)(txm__broker *b, const char *queue, size_t max, int wait_ms,
                          txm_delivery ***out, size_t *count, txm_error *err);
    txm_status (*ack)(txm__broker *b, txm_delivery *d, txm_error *err);
    /* n >= 1 deliveries, each checked ackable; sets results[i] for each
     * (results is never NULL here). NULL: ack one by one. */
    txm_status (*ack_batch)(txm__broker *b, txm_delivery *const *ds, size_t n, txm_status *results,
                            txm_error *err);
    txm_status (*nack)(txm__broker *b, txm_delivery *d, int delay_ms, const char *reason,
                       txm_error *err);
    txm_status (*dead_letter)(txm__broker *b, txm_delivery *d, const char *reason, txm_error *err);
    txm_status (*extend)(txm__broker *b, txm_delivery *d, txm_error *err);
    bool (*is_available)(txm__broker *b); /* NULL: always */
    txm_status (*queue_depth)(txm__broker *b, const char *queue, int64_t *depth, txm_error *err);
    /* Fills *out (the caller's, txm_free) with up to TXM_TRANSPORT_QUEUES_MAX
     * queues sorted by name and *count. */
    txm_status (*queues)(txm__broker *b, txm_queue_info **out, size_t *count, txm_error *err);
    txm_status (*dlq_list)(txm__broker *b, const char *queue, size_t limit, txm_delivery ***out,
                           size_t *count, txm_error *err);
    txm_status (*dlq_redrive)(txm__broker *b, const char *queue, const char *message_id,
                              size_t *moved, txm_error *err);
    txm_status (*dlq_purge)(txm__broker *b, const char *queue, size_t *purged, txm_error *err);
    /* Deletes queue's dead letters with message_id (there may be several
     * copies); *deleted is their count, 0 when none matched. */
    txm_status (*dlq_delete)(txm__broker *b, const char *queue, const char *message_id,
                             size_t *deleted, txm_error *err);
    /* Large payloads (claim check): stores body under key, replacing any
     * earlier one, and reads it back. Owns: *out is the caller's (free). */
    txm_status (*blob_put)(txm__broker *b, const char *key, const char *body, size_t len,
                           txm_error *err);
    txm_status (*blob_get)(txm__broker *b, const char *key, char **out, size_t *len,
                           txm_error *err);
} txm__transport_ops;

extern const txm__transport_ops txm__transport_embedded;
extern const txm__transport_ops txm__transport_nats;

struct txm_transport {
    const txm__transport_ops *ops;
    txm__broker *broker;
    txm_transport_options opts;
};

/* A delivery: common fields, plus the variant's handle for ack/nack. */
struct txm_delivery {
    char *body; /* NUL-terminated copy, len bytes before the NUL */
    size_t len;
    char *message_id;
    char *topic;
    char *queue;
    char *last_error;
    int receive_count;
    void *handle; /* variant-owned: lease token, natsMsg, ... */
    void (*free_handle)(void *handle);
    bool settled;                /* acked, nacked or dead-lettered */
    bool exhausted;              /* past max_receive_count (deliver_exhausted only) */
    int64_t dead_lettered_at_us; /* dlq_list: when it was dead-lettered, microseconds
                                    since the epoch; 0 when unknown */
};

/* Builds a delivery, copying every string (NULL becomes ""). NULL when out of
 * memory. The handle is the variant's; free_handle (may be NULL) frees it. */
txm_delivery *txm__delivery_new(const char *body, size_t len, const char *message_id,
                                const char *topic, const char *queue, const char *last_error,
                                int receive_count, void *handle, void (*free_handle)(void *));

/* Claim check (claim_check.c): stores m's body in the payload store and
 * returns the small document that travels instead. Owns: *claim (free). */
txm_status txm__claim_store(txm_transport *t, const txm_outgoing *m, char **claim, size_t *len,
                            txm_error *err);
/* Swaps a claim document in d for the stored body; leaves d as it is when
 * it is not a claim or the payload is gone. */
void txm__claim_resolve(txm_transport *t, txm_delivery *d);

/* Names: 1..TXM_TOPIC_MAX bytes of [A-Za-z0-9._-] (NATS subject-safe). */
bool txm__transport_name_ok(const char *name);

/* "<queue>--dlq" into out (TXM_TOPIC_MAX + 8 bytes). */
#define TXM__DLQ_NAME_MAX (TXM_TOPIC_MAX + 8)
void txm__transport_dlq_name(const char *queue, const txm_subscription_options *o,
                             char out[TXM__DLQ_NAME_MAX]);

#endif
