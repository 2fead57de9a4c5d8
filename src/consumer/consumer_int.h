/* Internals of the consumer runtime shared by its files:
 * consumer.c  the public calls and each subscription's receiver, which
 *             decodes deliveries and hands each to the lane of its key;
 * lane.c      a lane's thread: collects batches, holds back the keys of
 *             failed messages, retries them, settles outcomes, keeps leases;
 * unit.c      runs one batch in one unit of work behind the inbox. */
#ifndef TXM_CONSUMER_CONSUMER_INT_H
#define TXM_CONSUMER_CONSUMER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "txmsg/consumer.h"

#define TXM__MAX_LANES 64

typedef struct txm__subscription txm__subscription;

/* What a batch made of one message. */
typedef enum txm__outcome {
    TXM__PENDING,   /* not run yet */
    TXM__DONE,      /* handled; commits with the batch */
    TXM__DUPLICATE, /* in the inbox already: acked without the handler */
    TXM__FAILED,    /* the handler or its statements failed: retried later */
    TXM__SKIPPED,   /* an earlier message of its key failed in this batch */
    TXM__EXHAUSTED, /* its last lease ran out unprocessed: dead-lettered */
} txm__outcome;

/* One received message on its way through a lane. */
typedef struct txm__item {
    txm_delivery *d;
    txm_msg *msg;
    const char *key;   /* partition key: the aggregate id, else the message id */
    uint64_t key_hash; /* of key */
    int attempt;       /* this attempt's number: receive count plus local retries */
    int64_t retry_at;  /* held after a failure: when to try again (txm_now_us); 0 if not */
    int64_t leased_at; /* when it was received or its lease last kept (txm_now_us) */
    txm__outcome outcome;
    bool failed_run;   /* its handler failed in this run's first try: not run again */
    txm_status status; /* a failure's status */
    char *error;       /* a failure's text (owned), or NULL */
    struct txm__item *next;
} txm__item;

/* A FIFO of items. */
typedef struct txm__list {
    txm__item *head, *tail;
    size_t len;
} txm__list;

/* A lane handles the keys that hash to it, in order, one batch at a time.
 * Thread safety: mu guards incoming (filled by the receiver); held and
 * ready belong to the lane's thread. */
typedef struct txm__lane {
    txm__subscription *s;
    pthread_mutex_t mu;
    pthread_cond_t work; /* incoming grew, or stop */
    pthread_cond_t room; /* incoming shrank */
    txm__list incoming;
    size_t capacity; /* of incoming */
    txm__list held;  /* keys held back: each key's failed item, then its later ones */
    txm__list ready; /* released from held: run before incoming */
    pthread_t thread;
    bool started;
} txm__lane;

struct txm__subscription {
    struct txm_consumer *owner;
    char *topic;
    char *queue;
    txm_handler_fn handler;
    void *ctx;
    txm_handler_options opts;
    char *dlq;              /* owned copy, for a declaration put off (NULL: default) */
    atomic_bool declared;   /* the transport knows the subscription */
    atomic_bool received;   /* the receiver has ended: lanes drain and end */
    atomic_int outage_logs; /* threads inside an outage, for one log line each way */
    pthread_t receiver;
    bool receiving; /* receiver started */
    txm__lane lanes[TXM__MAX_LANES];
    int n_lanes;
    atomic_uint_fast64_t processed, duplicates, failures, dead_lettered;
    /* Histograms: batch sizes and handle latencies (see consumer.h). */
    atomic_uint_fast64_t batch_buckets[TXM_CONSUMER_BATCH_BUCKETS + 1];
    atomic_uint_fast64_t batches, batch_sum;
    atomic_uint_fast64_t latency_buckets[TXM_CONSUMER_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latencies, latency_sum_us;
};

struct txm_consumer {
    txm_db *db;               /* borrowed */
    txm_transport *transport; /* borrowed */
    txm_consumer_options opts;
    txm__subscription *subs[64];
    int n_subs;
    atomic_bool stopping;
    bool started;
};

/* list helpers (lane.c) */
void txm__list_push(txm__list *l, txm__item *it);
txm__item *txm__list_pop(txm__list *l);
void txm__item_free(txm__item *it);

/* The lane's thread (lane.c). */
void *txm__lane_main(void *arg);

/* Runs the n items of b (in order; at most TXM_INBOX_BATCH_MAX) and sets
 * each one's outcome, committing what worked (unit.c). Returns TXM_OK, or
 * TXM_UNAVAILABLE when an outage (database away, lock not had in time)
 * stopped it, with its reason in err: then the outcomes do not count and
 * the caller tries again (what did commit is found in the inbox then). */
txm_status txm__unit_run(txm__subscription *s, txm__item **b, size_t n, txm_error *err);

/* Sleeps ms in slices; false when stop was requested meanwhile (consumer.c). */
bool txm__pause_ms(const struct txm_consumer *c, int ms);

/* The pause before the attempt-th retry in an outage (consumer.c). */
int txm__outage_pause_ms(const txm__subscription *s, int attempt);

/* One log line when the first thread of the subscription meets an outage,
 * one when the last leaves it (consumer.c). */
void txm__outage_begins(txm__subscription *s, const char *why);
void txm__outage_ends(txm__subscription *s);

/* The subscription's lease (visibility timeout) in ms (consumer.c). */
int txm__lease_ms(const txm__subscription *s);

/* Keeps the lease of it, logging a failure other than an outage (consumer.c). */
void txm__extend(txm__subscription *s, txm__item *it);

/* Waits on cond (mu held) up to ms; false on timeout (consumer.c). */
bool txm__cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t ms);

/* Records a committed batch in the histograms (consumer.c). */
void txm__observe_batch(txm__subscription *s, txm__item **b, size_t n, int64_t now_us);

#endif
