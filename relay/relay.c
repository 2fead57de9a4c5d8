/* The relay loop. Each batch is published and acknowledged before its
 * position is confirmed, so a relay killed at any instant loses nothing and
 * at worst publishes the unconfirmed tail again (consumers are idempotent).
 * Any failure drops the tailer and the batch; reopening the tailer rewinds
 * to the confirmed position, which keeps commit order across retries. */
#include "relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay_int.h"

#define MAX_TOPICS 1024
#define BACKOFF_MAX_MS 5000
#define POP_WAIT_MS 100 /* how often an idle publisher looks at stopping */

void relay_config_init(relay_config *c)
{
    memset(c, 0, sizeof *c);
    c->batch_size = 500;
    c->idle_wait_ms = 200;
    c->mark_dispatched = true;
}

void relay_sleep_ms(const relay_loop *l, int ms)
{
    for (int slept = 0; slept < ms && !*l->stop; slept += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

struct timespec relay_deadline(int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

void relay_back_off(const relay_loop *l, int *backoff_ms)
{
    *backoff_ms = *backoff_ms == 0 ? 100 : *backoff_ms * 2;
    if (*backoff_ms > BACKOFF_MAX_MS)
        *backoff_ms = BACKOFF_MAX_MS;
    relay_sleep_ms(l, *backoff_ms);
}

txm_status relay_slot_decide(const relay_config *cfg, txm_db *db, char out[TXM_SLOT_NAME_MAX + 1],
                             txm_error *err)
{
    if (out != NULL)
        out[0] = '\0';
    if (cfg == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "relay_slot_decide: NULL argument");
    if (cfg->tail.slot_name != NULL) {
        if (strlen(cfg->tail.slot_name) > TXM_SLOT_NAME_MAX)
            return txm_errf(err, TXM_INVALID, "relay: slot name \"%.64s\" is too long",
                            cfg->tail.slot_name);
        snprintf(out, TXM_SLOT_NAME_MAX + 1, "%s", cfg->tail.slot_name);
        return TXM_OK;
    }
    if (db == NULL)
        return txm_errf(err, TXM_INVALID, "relay_slot_decide: no database");
    txm_error why = {0};
    txm_status st = txm_db_relay_slot(db, out, &why);
    if (st != TXM_OK) {
        out[0] = '\0';
        return txm_errf(err, st, "relay: cannot look up the replication slot name: %s", why.text);
    }
    return TXM_OK;
}

/* Declares topics the transport has not seen from this relay yet. */
static txm_status declare_topics(relay_loop *l, const relay_batch *b, txm_error *err)
{
    for (size_t i = 0; i < b->count; i++) {
        if (b->entries[i].msg == NULL)
            continue;
        const char *topic = txm_msg_topic(b->entries[i].msg);
        bool known = false;
        for (size_t k = 0; k < l->n_topics && !known; k++)
            known = strcmp(l->topics[k], topic) == 0;
        if (known)
            continue;
        txm_status st = txm_transport_declare_topic(l->transport, topic, err);
        if (st != TXM_OK)
            return st;
        if (l->n_topics < MAX_TOPICS && (l->topics[l->n_topics] = strdup(topic)) != NULL)
            l->n_topics++;
    }
    return TXM_OK;
}

/* Counts each published message of b in the latency histogram: from its
 * creation (inside its unit of work) to the broker's acknowledgement. */
static void observe_latency(relay_stats *s, const relay_batch *b)
{
    int64_t now = txm_now_us();
    int64_t newest_us = 0;
    uint64_t sum_us = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (b->entries[i].msg == NULL)
            continue;
        int64_t created = txm_msg_created_at_us(b->entries[i].msg);
        if (created > newest_us)
            newest_us = created;
        int64_t us = now > created ? now - created : 0;
        size_t k = 0;
        while (k < TXM_CONSUMER_LATENCY_BUCKETS &&
               (double)us / 1e6 > txm_consumer_latency_bounds_s[k])
            k++;
        atomic_fetch_add(&s->latency_buckets[k], 1);
        sum_us += (uint64_t)us;
    }
    atomic_fetch_add(&s->latency_sum_us, sum_us);
    atomic_store(&s->lag_us, now - newest_us);
}

/* Hands the published batch's ids to the marker, with its position. ids
 * has room for b->count pointers. */
static txm_status hand_to_marker(relay_loop *l, const relay_batch *b, const char **ids,
                                 txm_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < b->count; i++)
        if (b->entries[i].msg != NULL && !b->entries[i].no_row) /* messages mode: no row */
            ids[n++] = txm_msg_id(b->entries[i].msg);
    txm_status st = relay_marker_push(l->marker, ids, n, b->confirm_position, err);
    if (st == TXM_OK && b->confirm_position > atomic_load(&l->pushed))
        atomic_store(&l->pushed, b->confirm_position);
    return st;
}

/* A batch the publisher took from the queue, on its way to the broker. */
typedef struct flight {
    relay_batch *b;   /* its queue slot */
    txm_publish *pub; /* NULL when nothing was sent (no valid entry) */
    size_t n;         /* messages sent */
    txm_status st;    /* a failure before anything was sent */
    txm_error err;
    txm_outgoing *out; /* the batch as sent, b->count of them */
    size_t cap;
} flight;

/* Starts publishing every valid entry of f->b in order, from the envelopes
 * the reader encoded; logs and counts the others. */
static void start_batch(relay_loop *l, flight *f)
{
    const relay_batch *b = f->b;
    f->pub = NULL;
    f->n = 0;
    f->st = TXM_OK;
    if (b->count > f->cap) {
        txm_outgoing *out = realloc(f->out, b->count * sizeof *out);
        if (out == NULL) {
            f->st = txm_errf(&f->err, TXM_NOMEM, "out of memory for a batch of %zu", b->count);
            return;
        }
        f->out = out;
        f->cap = b->count;
    }
    for (size_t i = 0; i < b->count; i++) {
        const relay_entry *e = &b->entries[i];
        if (e->msg == NULL) {
            atomic_fetch_add(&l->stats->bad_rows, 1);
            txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_ERROR,
                     "relay: skipping outbox row %s: %s",
                     e->message_id != NULL ? e->message_id : "(no id)", e->bad_reason);
            continue;
        }
        f->out[f->n++] =
            (txm_outgoing){txm_msg_topic(e->msg), txm_msg_id(e->msg), e->body, e->body_len};
    }
    if (l->transport == NULL)
        f->st = txm_transport_open(l->cfg->broker_url, NULL, &l->transport, &f->err);
    if (f->st == TXM_OK)
        f->st = declare_topics(l, b, &f->err);
    if (f->st == TXM_OK && f->n > 0)
        f->st = txm_transport_publish_start(l->transport, f->out, f->n, &f->pub, &f->err);
}

/* Waits for f's acknowledgements, counts them and hands the batch to the
 * marker. On failure err says what failed. */
static txm_status finish_batch(relay_loop *l, flight *f, const char **ids, txm_error *err)
{
    txm_error why = {0};
    txm_status st = f->st;
    if (st != TXM_OK)
        why = f->err;
    if (f->pub != NULL) {
        txm_status waited = txm_transport_publish_wait(l->transport, f->pub, NULL, &why);
        f->pub = NULL;
        if (st == TXM_OK)
            st = waited;
    }
    if (st != TXM_OK) {
        atomic_fetch_add(&l->stats->errors_broker, 1);
        return txm_errf(err, st, "relay: publish of %zu messages failed, will retry: %s: %s",
                        f->b->count, txm_status_name(st), why.text);
    }
    if (f->n > 0) {
        atomic_fetch_add(&l->stats->published, f->n);
        atomic_fetch_add(&l->stats->batches, 1);
        observe_latency(l->stats, f->b);
    }
    /* Marking runs beside the publishing; the reader confirms the position
     * once its batch is marked. */
    return hand_to_marker(l, f->b, ids, err);
}

/* Takes the next queued batch of the current gen, dropping stale ones,
 * waiting up to wait_ms. NULL when there is none. The publisher owns the
 * slots it took ([head, head + taken)) until it releases them. */
static relay_batch *pop(relay_loop *l, int wait_ms)
{
    struct timespec until = relay_deadline(wait_ms);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        /* Stale batches come only after a rewind, which released every
         * slot taken: they are at the head. */
        while (l->taken == 0 && l->count > 0 && l->queue_gen[l->head] != l->gen) {
            l->head = (l->head + 1) % RELAY_QUEUE;
            l->count--;
            pthread_cond_broadcast(&l->cv);
        }
        if (l->count > l->taken || *l->stop || wait_ms == 0 ||
            pthread_cond_timedwait(&l->cv, &l->mu, &until) != 0)
            break;
    }
    relay_batch *b = NULL;
    if (l->count > l->taken && l->queue_gen[(l->head + l->taken) % RELAY_QUEUE] == l->gen)
        b = &l->queue[(l->head + l->taken++) % RELAY_QUEUE];
    pthread_mutex_unlock(&l->mu);
    return b; /* the reader never touches a queued slot */
}

/* Gives the oldest taken slot back to the reader, which frees its entries
 * when it swaps its next batch in. */
static void release(relay_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->head = (l->head + 1) % RELAY_QUEUE;
    l->count--;
    l->taken--;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* A failed publish: every batch read after the confirmed position is read
 * again, in order, by a new tailer (the reader sees gen change). */
static void rewind_reader(relay_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->gen++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    atomic_store(&l->stats->connected, false);
}

/* Waits for what f sent without counting it as published (a failure
 * before it, or a stop), and gives its slot back. */
static void abandon(relay_loop *l, flight *f)
{
    txm_error ignored;
    if (f->pub != NULL)
        txm_transport_publish_wait(l->transport, f->pub, NULL, &ignored);
    f->pub = NULL;
    release(l);
}

/* Publishes the batches the reader queues, until stopped: the next one is
 * sent while the broker still acknowledges the one before, which keeps the
 * broker busy instead of waiting for each batch's last answer. */
static void publish_loop(relay_loop *l)
{
    flight fl[2] = {{0}, {0}};
    flight *prev = NULL; /* sent, its answers awaited */
    const char **ids = NULL;
    size_t ids_cap = 0;
    while (!*l->stop) {
        /* With a batch on its way, take the next only if it is there:
         * a lone batch is finished at once. */
        relay_batch *b = pop(l, prev != NULL ? 0 : POP_WAIT_MS);
        flight *cur = NULL;
        if (b != NULL) {
            cur = prev == &fl[0] ? &fl[1] : &fl[0];
            cur->b = b;
            start_batch(l, cur);
        }
        if (prev == NULL) {
            prev = cur;
            continue;
        }
        txm_error err = {0};
        txm_status st = TXM_OK;
        if (prev->b->count + 1 > ids_cap) {
            const char **grown = realloc(ids, (prev->b->count + 1) * sizeof *ids);
            st = grown == NULL ? txm_errf(&err, TXM_NOMEM, "relay: out of memory") : TXM_OK;
            if (grown != NULL) {
                ids = grown;
                ids_cap = prev->b->count + 1;
            }
        }
        if (st == TXM_OK) {
            st = finish_batch(l, prev, ids, &err);
            release(l);
        } else {
            abandon(l, prev);
        }
        prev = cur;
        if (st == TXM_OK) {
            l->backoff_ms = 0;
            continue;
        }
        /* The batch after it may be stored already, or fail as well: both
         * are read and published again. */
        if (cur != NULL)
            abandon(l, cur);
        prev = NULL;
        txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_ERROR, "%s", err.text);
        rewind_reader(l);
        relay_back_off(l, &l->backoff_ms);
    }
    if (prev != NULL) /* stopping: its answers come, but it counts as not published */
        abandon(l, prev);
    free(fl[0].out);
    free(fl[1].out);
    free(ids);
}

/* After a stop: what is published and marked is confirmed before leaving. */
static void finish(relay_loop *l)
{
    for (size_t i = 0; i < RELAY_QUEUE; i++) { /* what is queued is read again next time */
        relay_batch_clear(&l->queue[i]);
        free(l->queue[i].entries);
    }
    if (l->marker != NULL) {
        txm_error why = {0};
        relay_marker_drain(l->marker);
        if (relay_confirm_done(l, true, &why) != TXM_OK)
            txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_WARN,
                     "relay: confirming the last position failed: %s", why.text);
    }
    relay_marker_close(l->marker);
    relay_drop_tailer(l);
    txm_transport_close(l->transport);
    txm_db_close(l->db);
    for (size_t i = 0; i < l->n_topics; i++)
        free(l->topics[i]);
    free(l->topics);
}

txm_status relay_run(const relay_config *cfg, relay_stats *stats, volatile sig_atomic_t *stop,
                     txm_error *err)
{
    if (cfg == NULL || stats == NULL || stop == NULL || cfg->database_url == NULL ||
        cfg->broker_url == NULL)
        return txm_errf(err, TXM_INVALID, "relay_run: NULL argument or URL");
    relay_loop l = {.cfg = cfg, .stats = stats, .stop = stop};
    l.topics = calloc(MAX_TOPICS, sizeof *l.topics);
    if (l.topics == NULL)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    for (size_t i = 0; i < RELAY_QUEUE; i++)
        relay_batch_init(&l.queue[i]);
    txm_logf(cfg->log, cfg->log_ctx, TXM_LOG_INFO, "relay: starting");
    pthread_t reader;
    int rc = pthread_create(&reader, NULL, relay_reader_main, &l);
    if (rc != 0) {
        free(l.topics);
        return txm_errf(err, TXM_IO, "relay: cannot start the reader thread: %s", strerror(rc));
    }
    publish_loop(&l);
    pthread_mutex_lock(&l.mu);
    pthread_cond_broadcast(&l.cv); /* a reader waiting for room sees the stop */
    pthread_mutex_unlock(&l.mu);
    pthread_join(reader, NULL);
    finish(&l);
    pthread_cond_destroy(&l.cv);
    pthread_mutex_destroy(&l.mu);
    txm_logf(cfg->log, cfg->log_ctx, TXM_LOG_INFO, "relay: stopped");
    return TXM_OK;
}
