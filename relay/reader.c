/* The reader thread: opens the database, the marker and the tailer, reads
 * batches into the queue ahead of the publisher and confirms what the
 * marker reports done. Any failure of its own is logged, counted, drops
 * the tailer (reopening rewinds to the confirmed position) and backs off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay_int.h"

#define QUEUE_WAIT_MS 50    /* a reader waiting for room confirms this often */
#define CONFIRM_EVERY_MS 50 /* confirmations, at most */

void relay_drop_tailer(relay_loop *l)
{
    if (l->tailer != NULL)
        l->tailer->ops->close(l->tailer);
    l->tailer = NULL;
    l->confirmed = 0; /* a new tailer starts from its own position */
    atomic_store(&l->stats->connected, false);
}

static txm_status open_db(relay_loop *l, txm_error *err)
{
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    o.sqlite_cache_kb = RELAY_SQLITE_CACHE_KB;
    /* Migrating a brand-new schema creates the database's default slot
     * before the outbox exists. With --slot that slot is not the relay's,
     * and the relay creates no slot but its own. */
    o.pg_relay_slot = l->cfg->tail.slot_name == NULL;
    return txm_db_open(l->cfg->database_url, &o, &l->db, err);
}

static txm_status open_marker(relay_loop *l, txm_error *err)
{
    /* On SQLite the saved cursor is the dispatch mark, so only PostgreSQL
     * marks published rows (and --no-mark-dispatched matters only there). */
    bool pg = strncmp(l->cfg->database_url, "sqlite:", 7) != 0;
    relay_marker *m = NULL;
    txm_status st = relay_marker_open(l->db, pg && l->cfg->mark_dispatched, l->stats, l->cfg->log,
                                      l->cfg->log_ctx, &m, err);
    if (st == TXM_OK) {
        pthread_mutex_lock(&l->mu);
        l->marker = m;
        pthread_mutex_unlock(&l->mu);
    }
    return st;
}

static txm_status open_tailer(relay_loop *l, txm_error *err)
{
    relay_tail_config tc = l->cfg->tail;
    tc.database_url = l->cfg->database_url;
    bool pg = strncmp(tc.database_url, "sqlite:", 7) != 0;
    txm_status st = TXM_OK;
    /* A failed lookup fails this attempt (the reader backs off and tries
     * again); falling back to some other slot would skip every row between
     * the real slot's position and the new slot's start. */
    if (pg && l->slot[0] == '\0' &&
        (st = relay_slot_decide(l->cfg, l->db, l->slot, err)) == TXM_OK) {
        txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_INFO, "relay: using replication slot %s",
                 l->slot);
        snprintf(l->stats->slot, sizeof l->stats->slot, "%s", l->slot);
        atomic_store(&l->stats->slot_known, true); /* the metrics thread reads slot after */
    }
    tc.slot_name = pg ? l->slot : NULL;
    tc.no_mark_dispatched = !l->cfg->mark_dispatched;
    tc.slot_resyncs = &l->stats->slot_resyncs;
    tc.log = l->cfg->log;
    tc.log_ctx = l->cfg->log_ctx;
    if (st == TXM_OK)
        st = pg ? relay_tail_open_pg(&tc, &l->tailer, err)
                : relay_tail_open_sqlite(&tc, &l->tailer, err);
    return st;
}

static txm_status connect_reader(relay_loop *l, txm_error *err)
{
    txm_status st = TXM_OK;
    if (l->db == NULL)
        st = open_db(l, err);
    if (st == TXM_OK && l->marker == NULL)
        st = open_marker(l, err);
    if (st == TXM_OK && l->tailer == NULL)
        st = open_tailer(l, err);
    return st;
}

txm_status relay_confirm_done(relay_loop *l, bool now, txm_error *err)
{
    uint64_t done = l->marker != NULL ? relay_marker_done(l->marker) : 0;
    /* Not "<=": after a failover the new tailer's positions (another
     * server's LSNs) may be below the old one's last, and the tailer
     * ignores positions it did not hand out itself. */
    if (done == l->confirmed || l->tailer == NULL)
        return TXM_OK;
    /* On SQLite each confirmation is a write, which a service's commit may
     * have to wait for (sleeping in SQLite's busy handler): one per
     * CONFIRM_EVERY_MS at most, at the cost of publishing a little more
     * again after a crash. */
    long long at = relay_mono_ms();
    if (!now && at - l->confirmed_at_ms < CONFIRM_EVERY_MS)
        return TXM_OK;
    txm_status st = l->tailer->ops->confirm(l->tailer, done, err);
    if (st == TXM_OK) {
        l->confirmed = done;
        l->confirmed_at_ms = at;
        atomic_store(&l->stats->position, done);
    }
    return st;
}

/* Waits up to QUEUE_WAIT_MS for a free queue slot. False when there is
 * none yet, or the publisher asked for a rewind (*gen is then stale). */
static bool wait_for_room(relay_loop *l, uint64_t gen)
{
    struct timespec until = relay_deadline(QUEUE_WAIT_MS);
    pthread_mutex_lock(&l->mu);
    while (l->count == RELAY_QUEUE && l->gen == gen && !*l->stop &&
           pthread_cond_timedwait(&l->cv, &l->mu, &until) == 0) {
    }
    bool room = l->count < RELAY_QUEUE && l->gen == gen;
    pthread_mutex_unlock(&l->mu);
    return room;
}

/* Queues b, swapped with the free slot's batch: b then holds what the
 * publisher is done with, which the caller clears (the freeing happens on
 * this thread too). A batch of an old gen is dropped by the publisher. */
static void push(relay_loop *l, relay_batch *b, uint64_t gen)
{
    pthread_mutex_lock(&l->mu);
    size_t at = (l->head + l->count) % RELAY_QUEUE;
    relay_batch free_slot = l->queue[at];
    l->queue[at] = *b;
    l->queue_gen[at] = gen;
    *b = free_slot;
    l->count++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* Encodes each message of b as its envelope, here rather than on the
 * publishing thread, which the broker keeps busy. A message that cannot be
 * encoded (too big) becomes a skipped entry with the reason. */
static txm_status encode(relay_batch *b, txm_error *err)
{
    for (size_t i = 0; i < b->count; i++) {
        relay_entry *e = &b->entries[i];
        txm_error why;
        txm_status st =
            e->msg != NULL ? txm_msg_encode(e->msg, &e->body, &e->body_len, &why) : TXM_OK;
        if (st == TXM_NOMEM)
            return txm_errf(err, st, "relay: out of memory encoding a batch");
        if (st != TXM_OK && (e->bad_reason = strdup(why.text)) == NULL)
            return txm_errf(err, TXM_NOMEM, "relay: out of memory");
        if (st != TXM_OK) {
            txm_msg_free(e->msg);
            e->msg = NULL;
        }
    }
    return TXM_OK;
}

/* Connects, confirms, then reads one batch into the queue. On failure err
 * says what failed. */
static txm_status read_batch(relay_loop *l, relay_batch *b, uint64_t gen, txm_error *err)
{
    txm_error why = {0}; /* the inner failure; err gets it with context */
    txm_status st = connect_reader(l, &why);
    if (st == TXM_OK && (st = relay_confirm_done(l, false, &why)) != TXM_OK)
        return txm_errf(err, st, "relay: confirming position failed: %s: %s", txm_status_name(st),
                        why.text);
    if (st == TXM_OK && !wait_for_room(l, gen))
        return TXM_OK;
    /* While a position waits for its marking, look back soon to confirm it. */
    int wait_ms = atomic_load(&l->pushed) > l->confirmed ? 10 : l->cfg->idle_wait_ms;
    if (st == TXM_OK)
        st = l->tailer->ops->next(l->tailer, l->cfg->batch_size, wait_ms, b, &why);
    if (st == TXM_BUSY) /* standing by: not an error */
        return txm_errf(err, st, "%s", why.text);
    if (st == TXM_OK)
        st = encode(b, &why);
    if (st != TXM_OK)
        return txm_errf(err, st, "relay: %s: %s", txm_status_name(st), why.text);
    if (atomic_exchange(&l->stats->standby, false))
        txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_INFO, "relay: active");
    atomic_store(&l->stats->connected, true);
    if (b->count > 0 || b->confirm_position != 0)
        push(l, b, gen);
    return TXM_OK;
}

void *relay_reader_main(void *arg)
{
    relay_loop *l = arg;
    relay_batch b;
    relay_batch_init(&b);
    pthread_mutex_lock(&l->mu);
    uint64_t gen = l->gen;
    pthread_mutex_unlock(&l->mu);
    while (!*l->stop) {
        pthread_mutex_lock(&l->mu);
        bool rewind = l->gen != gen;
        gen = l->gen;
        pthread_mutex_unlock(&l->mu);
        if (rewind)
            relay_drop_tailer(l);
        txm_error err = {0};
        txm_status st = read_batch(l, &b, gen, &err);
        relay_batch_clear(&b);
        if (st == TXM_OK) {
            l->reader_backoff_ms = 0;
        } else if (st == TXM_BUSY) {
            if (!atomic_exchange(&l->stats->standby, true))
                txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_INFO, "relay: standing by: %s",
                         err.text);
            relay_sleep_ms(l, 1000);
        } else {
            atomic_fetch_add(&l->stats->errors_db, 1);
            txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_ERROR, "%s", err.text);
            relay_drop_tailer(l);
            relay_back_off(l, &l->reader_backoff_ms);
        }
    }
    free(b.entries);
    return NULL;
}
