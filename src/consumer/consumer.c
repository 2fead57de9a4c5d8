/* Idempotent consumer runtime: for every delivery, decode; inbox insert,
 * handler and commit in one unit of work; then ack. Duplicates are acked
 * without calling the handler; failures are nacked with backoff, and the
 * transport dead-letters them after max_receive_count.
 *
 * Outages are not failures of the message: a unit of work that fails with
 * TXM_UNAVAILABLE (the database or another dependency cannot be reached)
 * keeps the delivery, extends its lease, and tries again with a growing
 * pause, so the subscription stops fetching until the database is back and
 * no receive is used up. A broker that is away pauses receiving the same
 * way, and a subscription declared while the broker was away is declared
 * by its workers once it is back.
 *
 * Thread safety: registrations are fixed once started. Each subscription
 * runs its own worker threads; counters are atomics; `stopping` is the only
 * state shared between the stopping thread and the workers. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumer/backoff.h"
#include "core/alloc.h"
#include "txmsg/consumer.h"
#include "txmsg/inbox.h"

#define MAX_SUBSCRIPTIONS 64
#define MAX_CONCURRENCY 64
#define CONFLICT_RETRIES 8 /* immediate re-runs after TXM_CONFLICT */
#define OUTAGE_PAUSE_MIN_MS 100
#define OUTAGE_PAUSE_MAX_MS 5000
#define SLEEP_SLICE_MS 50 /* how often a pause looks at stopping */

typedef struct subscription {
    struct txm_consumer *owner;
    char *topic;
    char *queue;
    txm_handler_fn handler;
    void *ctx;
    txm_handler_options opts;
    char *dlq;              /* owned copy, for a declaration put off (NULL: default) */
    atomic_bool declared;   /* the transport knows the subscription */
    atomic_int outage_logs; /* workers inside an outage, for one log line each way */
    pthread_t threads[MAX_CONCURRENCY];
    int n_threads; /* started */
    atomic_uint_fast64_t processed, duplicates, failures, dead_lettered;
} subscription;

struct txm_consumer {
    txm_db *db;               /* borrowed */
    txm_transport *transport; /* borrowed */
    txm_consumer_options opts;
    subscription *subs[MAX_SUBSCRIPTIONS];
    int n_subs;
    atomic_bool stopping;
    bool started;
};

void txm_consumer_options_init(txm_consumer_options *o)
{
    memset(o, 0, sizeof *o);
    o->backoff_base_ms = 1000;
    o->backoff_max_ms = 60000;
}

void txm_handler_options_init(txm_handler_options *o)
{
    memset(o, 0, sizeof *o);
    o->concurrency = 1;
    o->batch_size = 16;
    o->wait_ms = 500;
    txm_subscription_options_init(&o->subscription);
}

txm_status txm_consumer_open(txm_db *db, txm_transport *transport, const txm_consumer_options *opts,
                             txm_consumer **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (db == NULL || transport == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "consumer_open: NULL argument");
    txm_consumer *c = txm__calloc(1, sizeof *c);
    if (c == NULL)
        return txm_errf(err, TXM_NOMEM, "consumer_open: out of memory");
    c->db = db;
    c->transport = transport;
    if (opts != NULL)
        c->opts = *opts;
    else
        txm_consumer_options_init(&c->opts);
    atomic_init(&c->stopping, false);
    *out = c;
    return TXM_OK;
}

static void subscription_free(subscription *s)
{
    if (s == NULL)
        return;
    free(s->topic);
    free(s->queue);
    free(s->dlq);
    free(s);
}

static txm_status check_add(const txm_consumer *c, const char *queue, txm_handler_fn handler,
                            const txm_handler_options *o, txm_error *err)
{
    if (handler == NULL || queue == NULL)
        return txm_errf(err, TXM_INVALID, "consumer_subscribe: NULL handler or queue");
    if (c->started)
        return txm_errf(err, TXM_STATE, "consumer_subscribe: consumer already started");
    if (c->n_subs == MAX_SUBSCRIPTIONS)
        return txm_errf(err, TXM_TOO_BIG, "consumer_subscribe: more than %d subscriptions",
                        MAX_SUBSCRIPTIONS);
    if (o->concurrency < 1 || o->concurrency > MAX_CONCURRENCY || o->batch_size < 1 ||
        o->batch_size > 1000 || o->wait_ms < 0)
        return txm_errf(err, TXM_INVALID,
                        "consumer_subscribe: concurrency must be 1..%d, batch_size 1..1000",
                        MAX_CONCURRENCY);
    for (int i = 0; i < c->n_subs; i++)
        if (strcmp(c->subs[i]->queue, queue) == 0)
            return txm_errf(err, TXM_INVALID, "consumer_subscribe: queue %s registered twice",
                            queue);
    return TXM_OK;
}

txm_status txm_consumer_subscribe(txm_consumer *c, const char *topic, const char *queue,
                                  txm_handler_fn handler, void *ctx,
                                  const txm_handler_options *opts, txm_error *err)
{
    if (c == NULL)
        return txm_errf(err, TXM_INVALID, "consumer_subscribe: NULL consumer");
    txm_handler_options o;
    if (opts != NULL)
        o = *opts;
    else
        txm_handler_options_init(&o);
    txm_status st = check_add(c, queue, handler, &o, err);
    if (st == TXM_OK)
        st = txm_transport_declare_subscription(c->transport, topic, queue, &o.subscription, err);
    /* A broker that is away now is declared by the workers once it is back. */
    bool later = st == TXM_UNAVAILABLE;
    if (st != TXM_OK && !later)
        return st;
    if (later)
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: broker unavailable, subscribing once it is back: %s", queue,
                 err != NULL ? err->text : "");
    subscription *s = txm__calloc(1, sizeof *s);
    if (s == NULL || (s->topic = txm__strdup(topic)) == NULL ||
        (s->queue = txm__strdup(queue)) == NULL ||
        (o.subscription.dlq != NULL && (s->dlq = txm__strdup(o.subscription.dlq)) == NULL)) {
        subscription_free(s);
        return txm_errf(err, TXM_NOMEM, "consumer_subscribe: out of memory");
    }
    s->owner = c;
    s->handler = handler;
    s->ctx = ctx;
    s->opts = o;
    s->opts.subscription.dlq = s->dlq; /* owned copy, not the caller's pointer */
    atomic_init(&s->declared, !later);
    atomic_init(&s->outage_logs, 0);
    c->subs[c->n_subs++] = s;
    return TXM_OK;
}

/* Runs the handler for msg in one unit of work behind the inbox. */
static txm_status handle_in_uow(subscription *s, const txm_msg *msg, txm_error *err)
{
    txm_uow *uow = NULL;
    txm_status st = txm_uow_begin(s->owner->db, &uow, err);
    if (st != TXM_OK)
        return st;
    st = txm_inbox_save(uow, s->queue, txm_msg_id(msg), err);
    if (st == TXM_OK) {
        st = s->handler(s->ctx, uow, msg, err);
        if (st != TXM_OK) {
            txm_uow_rollback(&uow);
            return st;
        }
    }
    return txm_uow_commit(&uow, err);
}

/* Sleeps ms in slices; false when stop was requested meanwhile. */
static bool pause_ms(const txm_consumer *c, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&c->stopping); slept += SLEEP_SLICE_MS) {
        struct timespec ts = {0, SLEEP_SLICE_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return !atomic_load(&c->stopping);
}

/* The pause before the attempt-th retry in an outage: doubling from
 * OUTAGE_PAUSE_MIN_MS, capped so that leases are extended well before they
 * run out. */
static int outage_pause_ms(const subscription *s, int attempt)
{
    int cap = OUTAGE_PAUSE_MAX_MS;
    int lease = s->opts.subscription.visibility_timeout_ms;
    if (lease > 0 && lease / 3 < cap)
        cap = lease / 3 > SLEEP_SLICE_MS ? lease / 3 : SLEEP_SLICE_MS;
    int ms = OUTAGE_PAUSE_MIN_MS;
    for (int i = 1; i < attempt && ms < cap; i++)
        ms *= 2;
    return ms < cap ? ms : cap;
}

/* One log line when the first worker of the subscription meets an outage. */
static void outage_begins(subscription *s, const txm_error *err)
{
    if (atomic_fetch_add(&s->outage_logs, 1) == 0)
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: paused, a dependency is unavailable: %s", s->queue, err->text);
}

static void outage_ends(subscription *s)
{
    if (atomic_fetch_sub(&s->outage_logs, 1) == 1)
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_INFO, "consumer %s: resumed",
                 s->queue);
}

/* A delivery whose lease ran out after its last allowed receive (the
 * worker holding it died, or its ack was lost with the broker): acked as a
 * duplicate when the inbox says it was processed, else dead-lettered. Only
 * TXM_UNAVAILABLE is returned to the caller, which keeps the delivery. */
static txm_status settle_exhausted(subscription *s, txm_delivery *d, const txm_msg *msg,
                                   txm_error *err)
{
    txm_consumer *c = s->owner;
    txm_status st = txm_inbox_get(c->db, s->queue, txm_msg_id(msg), NULL, err);
    if (st == TXM_UNAVAILABLE)
        return st;
    if (st == TXM_OK) {
        atomic_fetch_add(&s->duplicates, 1);
        if (txm_transport_ack(c->transport, d, err) != TXM_OK)
            txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                     "consumer %s: ack of %s failed (it will come back): %s", s->queue,
                     txm_msg_id(msg), err->text);
        return TXM_OK;
    }
    if (st == TXM_NOT_FOUND) {
        char reason[160];
        snprintf(reason, sizeof reason,
                 "received %d times, more than max_receive_count (the last lease ran out)",
                 txm_delivery_receive_count(d));
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: dead-lettering message %s: %s", s->queue, txm_msg_id(msg), reason);
        if (txm_transport_dead_letter(c->transport, d, reason, err) == TXM_OK)
            atomic_fetch_add(&s->dead_lettered, 1);
        return TXM_OK;
    }
    /* Another database error: leave it; it comes back after its lease. */
    txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
             "consumer %s: cannot look up %s in the inbox: %s", s->queue, txm_msg_id(msg),
             err->text);
    return TXM_OK;
}

/* Handles one delivery and settles it, except after an outage: then it
 * returns TXM_UNAVAILABLE and the caller keeps the delivery to try again. */
static txm_status process_one(subscription *s, txm_delivery *d, bool *first_outage)
{
    txm_consumer *c = s->owner;
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    txm_msg *msg = NULL;
    txm_error err;
    txm_error_clear(&err);
    txm_status st = txm_msg_decode(body, len, &msg, &err);
    if (st != TXM_OK) {
        char reason[TXM_ERROR_TEXT_LEN + 32];
        snprintf(reason, sizeof reason, "undecodable: %s", err.text);
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: dead-lettering message %s: %s", s->queue, txm_delivery_message_id(d),
                 reason);
        if (txm_transport_dead_letter(c->transport, d, reason, &err) == TXM_OK)
            atomic_fetch_add(&s->dead_lettered, 1);
        return TXM_OK;
    }
    if (txm_delivery_is_exhausted(d)) {
        st = settle_exhausted(s, d, msg, &err);
        if (st == TXM_UNAVAILABLE && first_outage != NULL && !*first_outage) {
            *first_outage = true;
            outage_begins(s, &err);
        }
        txm_msg_free(msg);
        return st;
    }
    st = handle_in_uow(s, msg, &err);
    /* An optimistic-lock conflict means another writer got there first:
     * run the whole unit again at once rather than through redelivery. */
    unsigned seed = (unsigned)txm_now_us();
    for (int retry = 1; st == TXM_CONFLICT && retry <= CONFLICT_RETRIES; retry++) {
        struct timespec pause = {0, (long)(retry * (100 + rand_r(&seed) % 900)) * 1000L};
        nanosleep(&pause, NULL);
        st = handle_in_uow(s, msg, &err);
    }
    if (st == TXM_UNAVAILABLE) {
        if (first_outage != NULL && !*first_outage) {
            *first_outage = true;
            outage_begins(s, &err);
        }
        txm_msg_free(msg);
        return st;
    }
    if (st == TXM_OK || st == TXM_DUPLICATE) {
        atomic_fetch_add(st == TXM_OK ? &s->processed : &s->duplicates, 1);
        if (txm_transport_ack(c->transport, d, &err) != TXM_OK)
            txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                     "consumer %s: ack of %s failed (it will come back as a duplicate): %s",
                     s->queue, txm_msg_id(msg), err.text);
    } else {
        atomic_fetch_add(&s->failures, 1);
        int delay = txm__backoff_ms(c->opts.backoff_base_ms, c->opts.backoff_max_ms,
                                    txm_delivery_receive_count(d));
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: message %s failed (receive %d, retry in %d ms): %s: %s", s->queue,
                 txm_msg_id(msg), txm_delivery_receive_count(d), delay, txm_status_name(st),
                 err.text);
        char reason[TXM_ERROR_TEXT_LEN + 32];
        snprintf(reason, sizeof reason, "%s: %s", txm_status_name(st), err.text);
        txm_transport_nack(c->transport, d, delay, reason, NULL);
    }
    txm_msg_free(msg);
    return TXM_OK;
}

/* Keeps the leases of the deliveries still held while an outage lasts, so
 * no other receiver gets them and no receive is counted. */
static void extend_all(subscription *s, txm_delivery **held, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        txm_error err;
        txm_status st = txm_transport_extend(s->owner->transport, held[i], &err);
        if (st != TXM_OK && st != TXM_UNAVAILABLE)
            txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_WARN,
                     "consumer %s: cannot keep the lease of %s: %s", s->queue,
                     txm_delivery_message_id(held[i]), err.text);
    }
}

/* Handles a received batch in order. In an outage the worker stays on the
 * delivery it could not handle, pausing and keeping every held lease, until
 * the unit of work goes through or stop is requested; deliveries still held
 * then come back after their lease. */
static void process_batch(subscription *s, txm_delivery **batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool in_outage = false;
        txm_status st = process_one(s, batch[i], &in_outage);
        for (int attempt = 1; st == TXM_UNAVAILABLE; attempt++) {
            if (!pause_ms(s->owner, outage_pause_ms(s, attempt)))
                break;
            extend_all(s, batch + i, n - i);
            st = process_one(s, batch[i], NULL);
        }
        if (in_outage)
            outage_ends(s);
        if (st == TXM_UNAVAILABLE)
            return; /* stopping */
    }
}

/* Declares a subscription whose declaration the broker's absence put off. */
static bool declare_later(subscription *s, txm_error *err)
{
    if (atomic_load(&s->declared))
        return true;
    txm_status st = txm_transport_declare_subscription(s->owner->transport, s->topic, s->queue,
                                                       &s->opts.subscription, err);
    if (st == TXM_OK) {
        atomic_store(&s->declared, true);
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_INFO,
                 "consumer %s: subscribed to %s", s->queue, s->topic);
    } else if (st != TXM_UNAVAILABLE) {
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_ERROR,
                 "consumer %s: cannot subscribe to %s: %s", s->queue, s->topic, err->text);
    }
    return st == TXM_OK;
}

static void *worker(void *arg)
{
    subscription *s = arg;
    txm_consumer *c = s->owner;
    int failed = 0; /* receives failed in a row */
    while (!atomic_load(&c->stopping)) {
        txm_delivery **batch = NULL;
        size_t n = 0;
        txm_error err;
        txm_status st = declare_later(s, &err) ? TXM_OK : TXM_UNAVAILABLE;
        if (st == TXM_OK)
            st = txm_transport_receive(c->transport, s->queue, s->opts.batch_size, s->opts.wait_ms,
                                       &batch, &n, &err);
        if (st != TXM_OK) {
            /* Broker away: back off instead of spinning, log once. */
            if (failed++ == 0)
                txm_logf(c->opts.log, c->opts.log_ctx,
                         st == TXM_UNAVAILABLE ? TXM_LOG_WARN : TXM_LOG_ERROR,
                         "consumer %s: receive failed, retrying: %s", s->queue, err.text);
            pause_ms(c, outage_pause_ms(s, failed));
            continue;
        }
        if (failed > 0)
            txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_INFO, "consumer %s: receiving again",
                     s->queue);
        failed = 0;
        /* Once received, a batch is finished even when stop is requested:
         * these messages are in flight and get committed and acked (an
         * outage at that moment leaves them to come back after the lease). */
        process_batch(s, batch, n);
        txm_delivery_list_free(batch, n);
    }
    return NULL;
}

txm_status txm_consumer_start(txm_consumer *c, txm_error *err)
{
    if (c == NULL)
        return txm_errf(err, TXM_INVALID, "consumer_start: NULL consumer");
    if (c->started)
        return txm_errf(err, TXM_STATE, "consumer_start: already started");
    c->started = true;
    for (int i = 0; i < c->n_subs; i++) {
        subscription *s = c->subs[i];
        for (int k = 0; k < s->opts.concurrency; k++) {
            if (pthread_create(&s->threads[k], NULL, worker, s) != 0) {
                txm_consumer_stop(c);
                return txm_errf(err, TXM_IO, "consumer_start: cannot start a thread");
            }
            s->n_threads++;
        }
    }
    return TXM_OK;
}

void txm_consumer_stop(txm_consumer *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->stopping, true);
    for (int i = 0; i < c->n_subs; i++) {
        subscription *s = c->subs[i];
        for (int k = 0; k < s->n_threads; k++)
            pthread_join(s->threads[k], NULL);
        s->n_threads = 0;
    }
}

txm_status txm_consumer_stats_get(txm_consumer *c, const char *queue, txm_consumer_stats *out,
                                  txm_error *err)
{
    if (c == NULL || queue == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "consumer_stats: NULL argument");
    for (int i = 0; i < c->n_subs; i++) {
        subscription *s = c->subs[i];
        if (strcmp(s->queue, queue) != 0)
            continue;
        out->processed = atomic_load(&s->processed);
        out->duplicates = atomic_load(&s->duplicates);
        out->failures = atomic_load(&s->failures);
        out->dead_lettered = atomic_load(&s->dead_lettered);
        return TXM_OK;
    }
    return txm_errf(err, TXM_NOT_FOUND, "consumer_stats: queue %s not registered", queue);
}

void txm_consumer_close(txm_consumer *c)
{
    if (c == NULL)
        return;
    txm_consumer_stop(c);
    for (int i = 0; i < c->n_subs; i++)
        subscription_free(c->subs[i]);
    free(c);
}
