/* Idempotent consumer runtime: the public calls, and each subscription's
 * receiver. The receiver takes deliveries from the transport, decodes them
 * (an undecodable one goes to the dead-letter queue at once) and hands each
 * to the lane of its key (lane.c), waiting when that lane is full, so a
 * slow lane slows receiving instead of piling messages up. Lanes run the
 * messages in batches, each in one unit of work (unit.c).
 *
 * Outages are not failures of the message: a unit of work that fails with
 * TXM_UNAVAILABLE (the database or another dependency cannot be reached)
 * or TXM_NO_SPACE (its disk is full)
 * keeps its deliveries, extends their leases, and tries again with a
 * growing pause, so the lanes fill up, receiving stops until the database
 * is back, and no receive is used up. A broker that is away pauses
 * receiving the same way, and a subscription declared while the broker was
 * away is declared by its receiver once it is back.
 *
 * Thread safety: registrations are fixed once started. Counters are
 * atomics; `stopping` and each subscription's `received` are the only
 * state shared between the stopping thread, receivers and lanes besides
 * the lanes' incoming lists (see consumer_int.h). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumer/consumer_int.h"
#include "core/alloc.h"
#include "txmsg/inbox.h"

#define MAX_SUBSCRIPTIONS 64
#define OUTAGE_PAUSE_MIN_MS 100
#define OUTAGE_PAUSE_MAX_MS 5000
#define SLEEP_SLICE_MS 50 /* how often a pause looks at stopping */
#define RECEIVE_MAX 1000  /* deliveries asked for in one receive, at most */
#define LANE_CAPACITY_MIN 16
#define ROOM_WAIT_MS 1 /* how often a receiver with no room looks again */

const double txm_consumer_batch_bounds[TXM_CONSUMER_BATCH_BUCKETS] = {1,  2,   4,   8,   16,  32,
                                                                      64, 128, 256, 512, 1024};
const double txm_consumer_latency_bounds_s[TXM_CONSUMER_LATENCY_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

void txm_consumer_options_init(txm_consumer_options *o)
{
    memset(o, 0, sizeof *o);
    o->backoff_base_ms = 1000;
    o->backoff_max_ms = 60000;
}

void txm_handler_options_init(txm_handler_options *o)
{
    memset(o, 0, sizeof *o);
    o->concurrency = 0; /* by database: see lanes_for */
    o->batch_size = 256;
    o->max_wait_ms = 0;
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

static void subscription_free(txm__subscription *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n_lanes; i++) {
        txm__lane *l = &s->lanes[i];
        txm__item *it;
        while ((it = txm__list_pop(&l->incoming)) != NULL)
            txm__item_free(it);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->room);
    }
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
    if (o->concurrency < 0 || o->concurrency > TXM__MAX_LANES || o->batch_size < 1 ||
        o->batch_size > TXM_INBOX_BATCH_MAX || o->wait_ms < 0 || o->max_wait_ms < 0)
        return txm_errf(err, TXM_INVALID,
                        "consumer_subscribe: concurrency must be 0..%d, batch_size 1..%d, "
                        "wait_ms and max_wait_ms >= 0",
                        TXM__MAX_LANES, TXM_INBOX_BATCH_MAX);
    for (int i = 0; i < c->n_subs; i++)
        if (strcmp(c->subs[i]->queue, queue) == 0)
            return txm_errf(err, TXM_INVALID, "consumer_subscribe: queue %s registered twice",
                            queue);
    return TXM_OK;
}

/* The default lanes: SQLite runs one writer at a time, so more lanes only
 * take turns at its lock; PostgreSQL commits several transactions at once,
 * and 4 lanes doubled the rate of 1 (bench/RESULTS.md). */
static int lanes_for(const txm_db *db)
{
    return strcmp(txm_db_dialect(db), "postgresql") == 0 ? 4 : 1;
}

static bool lanes_init(txm__subscription *s)
{
    /* Two batches wait while one runs, so that a lane never waits for a
     * receive; and no more, so that a crash or a broker restart, which
     * sends everything held back one receive count higher, touches few
     * messages, and leases need keeping only behind slow handlers. */
    size_t capacity = 2 * s->opts.batch_size;
    if (capacity < LANE_CAPACITY_MIN)
        capacity = LANE_CAPACITY_MIN;
    for (int i = 0; i < s->opts.concurrency; i++) {
        txm__lane *l = &s->lanes[i];
        l->s = s;
        l->capacity = capacity;
        if (pthread_mutex_init(&l->mu, NULL) != 0)
            return false;
        if (pthread_cond_init(&l->work, NULL) != 0) {
            pthread_mutex_destroy(&l->mu);
            return false;
        }
        if (pthread_cond_init(&l->room, NULL) != 0) {
            pthread_cond_destroy(&l->work);
            pthread_mutex_destroy(&l->mu);
            return false;
        }
        s->n_lanes++;
    }
    return true;
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
    /* A broker that is away now, a cluster electing its leaders (a
     * timeout), or an embedded broker on a full disk, is declared by the
     * receiver once it answers. */
    bool later = st == TXM_UNAVAILABLE || st == TXM_TIMEOUT || st == TXM_NO_SPACE;
    if (st != TXM_OK && !later)
        return st;
    if (later)
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: broker unavailable, subscribing once it is back: %s", queue,
                 err != NULL ? err->text : "");
    txm__subscription *s = txm__calloc(1, sizeof *s);
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
    if (s->opts.concurrency == 0)
        s->opts.concurrency = lanes_for(c->db);
    atomic_init(&s->declared, !later);
    atomic_init(&s->received, false);
    atomic_init(&s->outage_logs, 0);
    if (!lanes_init(s)) {
        subscription_free(s);
        return txm_errf(err, TXM_NOMEM, "consumer_subscribe: cannot create a lane's lock");
    }
    c->subs[c->n_subs++] = s;
    return TXM_OK;
}

bool txm__pause_ms(const txm_consumer *c, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&c->stopping); slept += SLEEP_SLICE_MS) {
        int slice = ms - slept < SLEEP_SLICE_MS ? ms - slept : SLEEP_SLICE_MS;
        struct timespec ts = {0, slice * 1000000L};
        nanosleep(&ts, NULL);
    }
    return !atomic_load(&c->stopping);
}

/* Doubling from OUTAGE_PAUSE_MIN_MS, capped so that leases are extended
 * well before they run out. */
int txm__outage_pause_ms(const txm__subscription *s, int attempt)
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

void txm__outage_begins(txm__subscription *s, const char *why)
{
    if (atomic_fetch_add(&s->outage_logs, 1) == 0)
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: paused, a dependency is unavailable: %s", s->queue, why);
}

void txm__outage_ends(txm__subscription *s)
{
    if (atomic_fetch_sub(&s->outage_logs, 1) == 1)
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_INFO, "consumer %s: resumed",
                 s->queue);
}

static size_t bucket_of(const double *bounds, size_t n, double v)
{
    size_t b = 0;
    while (b < n && v > bounds[b])
        b++;
    return b;
}

void txm__observe_batch(txm__subscription *s, txm__item **b, size_t n, int64_t now_us)
{
    size_t handled = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i]->outcome != TXM__DONE)
            continue;
        handled++;
        int64_t at = txm_msg_created_at_us(b[i]->msg);
        if (at <= 0)
            continue;
        int64_t us = now_us > at ? now_us - at : 0;
        size_t k = bucket_of(txm_consumer_latency_bounds_s, TXM_CONSUMER_LATENCY_BUCKETS,
                             (double)us / 1e6);
        atomic_fetch_add(&s->latency_buckets[k], 1);
        atomic_fetch_add(&s->latencies, 1);
        atomic_fetch_add(&s->latency_sum_us, (uint_fast64_t)us);
    }
    if (handled == 0)
        return;
    size_t k = bucket_of(txm_consumer_batch_bounds, TXM_CONSUMER_BATCH_BUCKETS, (double)handled);
    atomic_fetch_add(&s->batch_buckets[k], 1);
    atomic_fetch_add(&s->batches, 1);
    atomic_fetch_add(&s->batch_sum, handled);
}

/* Declares a subscription whose declaration the broker's absence put off. */
static bool declare_later(txm__subscription *s, txm_error *err)
{
    if (atomic_load(&s->declared))
        return true;
    txm_status st = txm_transport_declare_subscription(s->owner->transport, s->topic, s->queue,
                                                       &s->opts.subscription, err);
    if (st == TXM_OK) {
        atomic_store(&s->declared, true);
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_INFO,
                 "consumer %s: subscribed to %s", s->queue, s->topic);
    } else if (st != TXM_UNAVAILABLE && st != TXM_TIMEOUT && st != TXM_NO_SPACE) {
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_ERROR,
                 "consumer %s: cannot subscribe to %s: %s", s->queue, s->topic, err->text);
    }
    return st == TXM_OK;
}

/* FNV-1a: spreads keys over lanes; the same key always to the same lane. */
static uint64_t key_hash(const char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* Decodes d into an item, or dead-letters it (undecodable) and returns NULL.
 * Takes d either way. */
static txm__item *item_of(txm__subscription *s, txm_delivery *d)
{
    txm_consumer *c = s->owner;
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    txm_msg *msg = NULL;
    txm_error err;
    txm_error_clear(&err);
    txm_status st = txm_msg_decode(body, len, &msg, &err);
    txm__item *it = st == TXM_OK ? txm__calloc(1, sizeof *it) : NULL;
    if (st == TXM_OK && it == NULL) {
        /* Out of memory: left to its lease. */
        txm_msg_free(msg);
        txm_delivery_free(d);
        return NULL;
    }
    if (st != TXM_OK) {
        char reason[TXM_ERROR_TEXT_LEN + 32];
        snprintf(reason, sizeof reason, "undecodable: %s", err.text);
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: dead-lettering message %s: %s", s->queue, txm_delivery_message_id(d),
                 reason);
        if (txm_transport_dead_letter(c->transport, d, reason, &err) == TXM_OK)
            atomic_fetch_add(&s->dead_lettered, 1);
        txm_delivery_free(d);
        return NULL;
    }
    it->d = d;
    it->msg = msg;
    it->leased_at = txm_now_us();
    it->key = txm_msg_aggregate_id(msg);
    if (it->key[0] == '\0')
        it->key = txm_msg_id(msg);
    it->key_hash = key_hash(it->key);
    int max = s->opts.subscription.max_receive_count;
    it->attempt = txm_delivery_receive_count(d) > 0 ? txm_delivery_receive_count(d) : 1;
    /* Received max_receive_count times or more without failing here (a
     * crash or a broker restart each sent it back): its last attempt. */
    if (max > 0 && it->attempt > max)
        it->attempt = max;
    return it;
}

int txm__lease_ms(const txm__subscription *s)
{
    int ms = s->opts.subscription.visibility_timeout_ms;
    return ms > 0 ? ms : 30000;
}

void txm__extend(txm__subscription *s, txm__item *it)
{
    it->leased_at = txm_now_us();
    txm_error err;
    txm_status st = txm_transport_extend(s->owner->transport, it->d, &err);
    if (st != TXM_OK && st != TXM_UNAVAILABLE && st != TXM_NO_SPACE)
        txm_logf(s->owner->opts.log, s->owner->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: cannot keep the lease of %s: %s", s->queue, txm_msg_id(it->msg),
                 err.text);
}

bool txm__cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cond, mu, &ts) == 0;
}

/* Hands the received deliveries to their lanes: each lane's share at
 * once, so that it makes one batch rather than several small ones, waiting
 * for room when the lane is full. Takes every delivery of batch (not the
 * array). */
static void dispatch(txm__subscription *s, txm_delivery **batch, size_t n)
{
    txm__list share[TXM__MAX_LANES];
    memset(share, 0, sizeof share);
    for (size_t i = 0; i < n; i++) {
        txm__item *it = item_of(s, batch[i]);
        if (it != NULL)
            txm__list_push(&share[it->key_hash % (uint64_t)s->n_lanes], it);
    }
    for (int k = 0; k < s->n_lanes; k++) {
        txm__lane *l = &s->lanes[k];
        if (share[k].len == 0)
            continue;
        pthread_mutex_lock(&l->mu);
        txm__item *it;
        while ((it = txm__list_pop(&share[k])) != NULL) {
            /* Lanes drain even while stopping, so this wait ends. A lane
             * held by an outage can take long: meanwhile the leases of
             * what waits here are kept, like the lane's own. */
            while (l->incoming.len >= l->capacity) {
                pthread_cond_signal(&l->work);
                if (!txm__cond_wait_ms(&l->room, &l->mu, txm__lease_ms(s) / 3)) {
                    txm__extend(s, it);
                    for (txm__item *h = share[k].head; h != NULL; h = h->next)
                        txm__extend(s, h);
                }
            }
            txm__list_push(&l->incoming, it);
        }
        pthread_cond_signal(&l->work);
        pthread_mutex_unlock(&l->mu);
    }
}

/* What the lanes can take now: a receive asks for no more, so messages
 * are not held long before they run. */
static size_t room(txm__subscription *s)
{
    size_t free_slots = 0;
    for (int k = 0; k < s->n_lanes; k++) {
        txm__lane *l = &s->lanes[k];
        pthread_mutex_lock(&l->mu);
        if (l->incoming.len < l->capacity)
            free_slots += l->capacity - l->incoming.len;
        pthread_mutex_unlock(&l->mu);
    }
    return free_slots < RECEIVE_MAX ? free_slots : RECEIVE_MAX;
}

static void *receiver_main(void *arg)
{
    txm__subscription *s = arg;
    txm_consumer *c = s->owner;
    int failed = 0; /* receives failed in a row */
    while (!atomic_load(&c->stopping)) {
        txm_delivery **batch = NULL;
        size_t n = 0;
        txm_error err;
        size_t max = room(s);
        if (max == 0) {
            txm__pause_ms(c, ROOM_WAIT_MS);
            continue;
        }
        txm_status st = declare_later(s, &err) ? TXM_OK : TXM_UNAVAILABLE;
        if (st == TXM_OK)
            st = txm_transport_receive(c->transport, s->queue, max, s->opts.wait_ms, &batch, &n,
                                       &err);
        if (st != TXM_OK) {
            /* Broker away: back off instead of spinning, log once. */
            if (failed++ == 0)
                txm_logf(c->opts.log, c->opts.log_ctx,
                         st == TXM_UNAVAILABLE || st == TXM_NO_SPACE ? TXM_LOG_WARN : TXM_LOG_ERROR,
                         "consumer %s: receive failed, retrying: %s", s->queue, err.text);
            txm__pause_ms(c, txm__outage_pause_ms(s, failed));
            continue;
        }
        if (failed > 0)
            txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_INFO, "consumer %s: receiving again",
                     s->queue);
        failed = 0;
        /* Once received, messages are handed on even when stop is
         * requested: the lanes commit and ack them before they end. */
        dispatch(s, batch, n);
        txm_free(batch);
    }
    atomic_store(&s->received, true);
    for (int i = 0; i < s->n_lanes; i++) {
        pthread_mutex_lock(&s->lanes[i].mu);
        pthread_cond_signal(&s->lanes[i].work);
        pthread_mutex_unlock(&s->lanes[i].mu);
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
        txm__subscription *s = c->subs[i];
        for (int k = 0; k < s->n_lanes; k++) {
            if (pthread_create(&s->lanes[k].thread, NULL, txm__lane_main, &s->lanes[k]) != 0) {
                txm_consumer_stop(c);
                return txm_errf(err, TXM_IO, "consumer_start: cannot start a thread");
            }
            s->lanes[k].started = true;
        }
        if (pthread_create(&s->receiver, NULL, receiver_main, s) != 0) {
            atomic_store(&s->received, true); /* lanes end by themselves */
            txm_consumer_stop(c);
            return txm_errf(err, TXM_IO, "consumer_start: cannot start a thread");
        }
        s->receiving = true;
    }
    return TXM_OK;
}

void txm_consumer_stop(txm_consumer *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->stopping, true);
    for (int i = 0; i < c->n_subs; i++) {
        txm__subscription *s = c->subs[i];
        if (s->receiving)
            pthread_join(s->receiver, NULL);
        s->receiving = false;
        atomic_store(&s->received, true);
        for (int k = 0; k < s->n_lanes; k++) {
            txm__lane *l = &s->lanes[k];
            pthread_mutex_lock(&l->mu);
            pthread_cond_signal(&l->work);
            pthread_mutex_unlock(&l->mu);
            if (l->started)
                pthread_join(l->thread, NULL);
            l->started = false;
        }
    }
}

txm_status txm_consumer_stats_get(txm_consumer *c, const char *queue, txm_consumer_stats *out,
                                  txm_error *err)
{
    if (c == NULL || queue == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "consumer_stats: NULL argument");
    for (int i = 0; i < c->n_subs; i++) {
        txm__subscription *s = c->subs[i];
        if (strcmp(s->queue, queue) != 0)
            continue;
        memset(out, 0, sizeof *out);
        out->processed = atomic_load(&s->processed);
        out->duplicates = atomic_load(&s->duplicates);
        out->failures = atomic_load(&s->failures);
        out->dead_lettered = atomic_load(&s->dead_lettered);
        for (int k = 0; k <= TXM_CONSUMER_BATCH_BUCKETS; k++)
            out->batch_buckets[k] = atomic_load(&s->batch_buckets[k]);
        out->batches = atomic_load(&s->batches);
        out->batch_sum = atomic_load(&s->batch_sum);
        for (int k = 0; k <= TXM_CONSUMER_LATENCY_BUCKETS; k++)
            out->latency_buckets[k] = atomic_load(&s->latency_buckets[k]);
        out->latencies = atomic_load(&s->latencies);
        out->latency_sum_s = (double)atomic_load(&s->latency_sum_us) / 1e6;
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
