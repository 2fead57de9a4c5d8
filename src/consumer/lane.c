/* A lane: runs the messages of its keys in batches, in the order received.
 *
 * A message that fails stays in the lane, held with its lease kept, and is
 * tried again after a growing pause (the consumer's backoff); the later
 * messages of its key wait behind it in `held`, while other keys go on.
 * When it succeeds, or is dead-lettered after max_receive_count attempts,
 * its key's waiting messages move to `ready` and run next, in order. The
 * retry stays in this process instead of going back to the broker, which
 * could hand it to another consumer or after later messages of its key;
 * and it cannot jam the lane: a full lane stops receiving, never the retry.
 * When the consumer stops, held messages are given back (nacked, with the
 * rest of their pause as delay).
 *
 * Thread safety: the lane's thread alone uses held and ready;
 * incoming is shared with the receiver under mu (consumer_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer/backoff.h"
#include "consumer/consumer_int.h"
#include "core/alloc.h"
#include "txmsg/inbox.h"

#define IDLE_WAIT_MS 200    /* longest sleep of an idle lane between checks */
#define HELD_PER_CAPACITY 8 /* held messages, at most, per message of lane capacity */

void txm__list_push(txm__list *l, txm__item *it)
{
    it->next = NULL;
    if (l->tail != NULL)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->len++;
}

static void list_push_front(txm__list *l, txm__item *it)
{
    it->next = l->head;
    l->head = it;
    if (l->tail == NULL)
        l->tail = it;
    l->len++;
}

txm__item *txm__list_pop(txm__list *l)
{
    txm__item *it = l->head;
    if (it == NULL)
        return NULL;
    l->head = it->next;
    if (l->head == NULL)
        l->tail = NULL;
    l->len--;
    it->next = NULL;
    return it;
}

/* Unlinks it, whose predecessor is prev (NULL for the head). */
static void list_unlink(txm__list *l, txm__item *prev, txm__item *it)
{
    if (prev != NULL)
        prev->next = it->next;
    else
        l->head = it->next;
    if (l->tail == it)
        l->tail = prev;
    l->len--;
    it->next = NULL;
}

void txm__item_free(txm__item *it)
{
    if (it == NULL)
        return;
    txm_delivery_free(it->d);
    txm_msg_free(it->msg);
    free(it->error);
    free(it);
}

static bool same_key(const txm__item *a, const txm__item *b)
{
    return a->key_hash == b->key_hash && strcmp(a->key, b->key) == 0;
}

/* True when a message of it's key is held back. */
static bool blocked(const txm__lane *l, const txm__item *it)
{
    for (const txm__item *h = l->held.head; h != NULL; h = h->next)
        if (same_key(h, it))
            return true;
    return false;
}

/* Queues it behind its key's held messages, or to run next if none. */
static void park(txm__lane *l, txm__item *it)
{
    txm__list_push(blocked(l, it) ? &l->held : &l->ready, it);
}

/* Moves the held messages of it's key to ready, in order. */
static void release_key(txm__lane *l, const txm__item *it)
{
    if (l->held.len == 0)
        return;
    txm__item *prev = NULL, *h = l->held.head;
    while (h != NULL) {
        txm__item *next = h->next;
        if (same_key(h, it)) {
            list_unlink(&l->held, prev, h);
            txm__list_push(&l->ready, h);
        } else {
            prev = h;
        }
        h = next;
    }
}

/* Keeps the lease of each message in list that has had it for a third of
 * a lease: messages wait here while earlier ones of their key fail, or
 * while slow handlers work through the batches before theirs. */
static void keep_list(txm__lane *l, txm__list *list, int64_t now)
{
    int64_t third = (int64_t)txm__lease_ms(l->s) * 1000 / 3;
    for (txm__item *h = list->head; h != NULL; h = h->next)
        if (now - h->leased_at >= third)
            txm__extend(l->s, h);
}

static void keep_leases(txm__lane *l, int64_t now)
{
    keep_list(l, &l->held, now);
    keep_list(l, &l->ready, now);
    pthread_mutex_lock(&l->mu);
    keep_list(l, &l->incoming, now);
    pthread_mutex_unlock(&l->mu);
}

/* In an outage: keeps the leases of everything the lane has. */
static void keep_all_leases(txm__lane *l, txm__item **b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        txm__extend(l->s, b[i]);
    int64_t later = txm_now_us() + (int64_t)txm__lease_ms(l->s) * 1000;
    keep_list(l, &l->held, later);
    keep_list(l, &l->ready, later);
    pthread_mutex_lock(&l->mu);
    keep_list(l, &l->incoming, later);
    pthread_mutex_unlock(&l->mu);
}

/* Adds it to the batch, or holds it back behind its key. */
static void take(txm__lane *l, txm__item *it, txm__item **b, size_t *n)
{
    if (blocked(l, it))
        txm__list_push(&l->held, it);
    else
        b[(*n)++] = it;
}

/* The ms until the first held retry is due (IDLE_WAIT_MS at most). */
static int64_t until_due(const txm__lane *l, int64_t now)
{
    int64_t ms = IDLE_WAIT_MS;
    for (const txm__item *h = l->held.head; h != NULL; h = h->next)
        if (h->retry_at > 0 && (h->retry_at - now) / 1000 < ms)
            ms = h->retry_at > now ? (h->retry_at - now) / 1000 + 1 : 0;
    return ms;
}

/* Fills b with up to cap messages: retries that are due, then released
 * ones, then incoming. Returns 0 with *done when the receiver has ended
 * and nothing is left to run. */
static size_t collect(txm__lane *l, txm__item **b, size_t cap, bool *done)
{
    const txm__subscription *s = l->s;
    int64_t now = txm_now_us();
    keep_leases(l, now);
    size_t n = 0;
    txm__item *prev = NULL, *h = l->held.head;
    while (h != NULL && n < cap) {
        txm__item *next = h->next;
        if (h->retry_at > 0 && h->retry_at <= now) {
            list_unlink(&l->held, prev, h);
            h->retry_at = 0;
            b[n++] = h;
        } else {
            prev = h;
        }
        h = next;
    }
    txm__item *it;
    while (n < cap && (it = txm__list_pop(&l->ready)) != NULL)
        take(l, it, b, &n);
    int64_t fill_until = 0;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        size_t before = l->incoming.len;
        /* Messages held back behind failing keys are bounded: past that,
         * the lane takes no more, its incoming fills, and receiving waits
         * until a retry settles (the retries go on regardless). Once stop
         * is requested, everything is taken, to be given back. */
        bool room_held =
            l->held.len < HELD_PER_CAPACITY * l->capacity || atomic_load(&s->owner->stopping);
        while (n < cap && room_held && (it = txm__list_pop(&l->incoming)) != NULL)
            take(l, it, b, &n);
        if (l->incoming.len < before)
            pthread_cond_signal(&l->room);
        bool ended = atomic_load(&s->received);
        if (n == 0 && ended && l->incoming.len == 0 && l->ready.len == 0) {
            *done = true;
            break;
        }
        if (n == 0) {
            txm__cond_wait_ms(&l->work, &l->mu, until_due(l, txm_now_us()));
            break;
        }
        /* Wait a little for a fuller batch, if asked to. */
        if (n == cap || s->opts.max_wait_ms == 0 || ended)
            break;
        if (fill_until == 0)
            fill_until = now + (int64_t)s->opts.max_wait_ms * 1000;
        int64_t left_ms = (fill_until - txm_now_us()) / 1000;
        if (left_ms <= 0)
            break;
        txm__cond_wait_ms(&l->work, &l->mu, left_ms);
    }
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* Runs the batch, holding it through outages. False when stop came first:
 * then nothing of it was settled. */
static bool run(txm__lane *l, txm__item **b, size_t n)
{
    txm__subscription *s = l->s;
    txm_error err;
    bool outage = false;
    txm_status st;
    for (int attempt = 1; (st = txm__unit_run(s, b, n, &err)) == TXM_UNAVAILABLE; attempt++) {
        if (!outage)
            txm__outage_begins(s, err.text);
        outage = true;
        if (!txm__pause_ms(s->owner, txm__outage_pause_ms(s, attempt)))
            break;
        keep_all_leases(l, b, n);
    }
    if (outage)
        txm__outage_ends(s);
    return st != TXM_UNAVAILABLE;
}

static void dead_letter(txm__lane *l, txm__item *it, const char *reason)
{
    txm_consumer *c = l->s->owner;
    txm_error err;
    txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
             "consumer %s: dead-lettering message %s: %s", l->s->queue, txm_msg_id(it->msg),
             reason);
    if (txm_transport_dead_letter(c->transport, it->d, reason, &err) == TXM_OK)
        atomic_fetch_add(&l->s->dead_lettered, 1);
    else
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: cannot dead-letter %s (it will come back): %s", l->s->queue,
                 txm_msg_id(it->msg), err.text);
}

/* A failed message: held for another attempt, or dead-lettered when it had
 * its max_receive_count attempts (then its key goes on). Takes it. */
static void settle_failed(txm__lane *l, txm__item *it, int64_t now)
{
    txm__subscription *s = l->s;
    txm_consumer *c = s->owner;
    atomic_fetch_add(&s->failures, 1);
    if (it->attempt >= s->opts.subscription.max_receive_count) {
        char reason[TXM_ERROR_TEXT_LEN + 96];
        snprintf(reason, sizeof reason, "failed %d times: %s: %s", it->attempt,
                 txm_status_name(it->status), it->error != NULL ? it->error : "");
        dead_letter(l, it, reason);
        release_key(l, it);
        txm__item_free(it);
        return;
    }
    int delay = txm__backoff_ms(c->opts.backoff_base_ms, c->opts.backoff_max_ms, it->attempt);
    txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
             "consumer %s: message %s failed (attempt %d, retry in %d ms): %s: %s", s->queue,
             txm_msg_id(it->msg), it->attempt, delay, txm_status_name(it->status),
             it->error != NULL ? it->error : "");
    it->attempt++;
    it->retry_at = now + (int64_t)delay * 1000;
    if (it->retry_at == 0)
        it->retry_at = 1;
    /* First in held: before the messages of its key already waiting. */
    list_push_front(&l->held, it);
}

/* Acks what was handled or found done, dead-letters what is exhausted,
 * holds what failed and parks what was skipped. Takes every item. */
static void settle(txm__lane *l, txm__item **b, size_t n)
{
    txm__subscription *s = l->s;
    txm_consumer *c = s->owner;
    int64_t now = txm_now_us();
    txm__observe_batch(s, b, n, now);
    txm_delivery *acks[TXM_INBOX_BATCH_MAX];
    txm_status results[TXM_INBOX_BATCH_MAX];
    size_t na = 0, done = 0, dups = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i]->outcome == TXM__DONE || b[i]->outcome == TXM__DUPLICATE)
            acks[na++] = b[i]->d;
        done += b[i]->outcome == TXM__DONE;
        dups += b[i]->outcome == TXM__DUPLICATE;
    }
    if (done > 0 && c->opts.on_commit != NULL)
        c->opts.on_commit(c->opts.on_commit_ctx, s->queue, done);
    atomic_fetch_add(&s->processed, done);
    atomic_fetch_add(&s->duplicates, dups);
    txm_error err;
    if (na > 0 && txm_transport_ack_batch(c->transport, acks, na, results, &err) != TXM_OK) {
        size_t failed = 0;
        for (size_t i = 0; i < na; i++)
            failed += results[i] != TXM_OK;
        txm_logf(c->opts.log, c->opts.log_ctx, TXM_LOG_WARN,
                 "consumer %s: %zu of %zu acks failed (they will come back as duplicates): %s",
                 s->queue, failed, na, err.text);
    }
    for (size_t i = 0; i < n; i++) {
        txm__item *it = b[i];
        switch (it->outcome) {
        case TXM__FAILED:
            settle_failed(l, it, now);
            break;
        case TXM__SKIPPED:
            park(l, it);
            break;
        case TXM__EXHAUSTED: {
            char reason[160];
            snprintf(reason, sizeof reason,
                     "received %d times, more than max_receive_count (the last lease ran out)",
                     txm_delivery_receive_count(it->d));
            dead_letter(l, it, reason);
            release_key(l, it);
            txm__item_free(it);
            break;
        }
        default:
            /* A retry that worked lets the messages waiting behind it go. */
            release_key(l, it);
            txm__item_free(it);
            break;
        }
    }
}

/* On stop: held messages go back to the broker, due after the rest of
 * their pause; the ones waiting behind them at once. */
static void give_back(txm__lane *l)
{
    txm_consumer *c = l->s->owner;
    int64_t now = txm_now_us();
    txm__item *it;
    while ((it = txm__list_pop(&l->held)) != NULL) {
        int64_t delay = it->retry_at > now ? (it->retry_at - now) / 1000 : 0;
        txm_transport_nack(c->transport, it->d, (int)delay,
                           it->error != NULL ? it->error : "consumer stopped", NULL);
        txm__item_free(it);
    }
}

/* After an outage cut short by stop: everything still here is left to its
 * lease, unsettled (the database was away: it cannot be known what was
 * handled). The incoming list is emptied so the receiver can end. */
static void abandon(txm__lane *l, txm__item **b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        txm__item_free(b[i]);
    txm__item *it;
    while ((it = txm__list_pop(&l->held)) != NULL)
        txm__item_free(it);
    while ((it = txm__list_pop(&l->ready)) != NULL)
        txm__item_free(it);
    pthread_mutex_lock(&l->mu);
    while (!atomic_load(&l->s->received) || l->incoming.len > 0) {
        while ((it = txm__list_pop(&l->incoming)) != NULL)
            txm__item_free(it);
        pthread_cond_broadcast(&l->room);
        if (!atomic_load(&l->s->received))
            txm__cond_wait_ms(&l->work, &l->mu, 50);
    }
    pthread_mutex_unlock(&l->mu);
}

void *txm__lane_main(void *arg)
{
    txm__lane *l = arg;
    size_t cap = l->s->opts.batch_size;
    txm__item **b = txm__calloc(cap, sizeof *b);
    bool done = false;
    while (b != NULL && !done) {
        size_t n = collect(l, b, cap, &done);
        if (n == 0)
            continue;
        if (!run(l, b, n)) {
            abandon(l, b, n);
            free(b);
            return NULL;
        }
        settle(l, b, n);
    }
    if (b == NULL) {
        /* Out of memory at start: the lane cannot run; its messages go
         * back after their lease. */
        txm_logf(l->s->owner->opts.log, l->s->owner->opts.log_ctx, TXM_LOG_ERROR,
                 "consumer %s: a lane cannot start: out of memory", l->s->queue);
        done = false;
        abandon(l, NULL, 0);
    }
    give_back(l);
    free(b);
    return NULL;
}
