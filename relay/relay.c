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

#include "marker.h"

#define MAX_TOPICS 1024
#define BACKOFF_MAX_MS 5000

typedef struct loop {
    const relay_config *cfg;
    relay_stats *stats;
    volatile sig_atomic_t *stop;
    txm_transport *transport;
    txm_db *db; /* for marking dispatched */
    /* PostgreSQL: the replication slot, decided once ("" until then) and
     * kept for the process lifetime: the relay never changes slots. */
    char slot[TXM_SLOT_NAME_MAX + 1];
    relay_tailer *tailer;
    relay_marker *marker;     /* marks published batches dispatched */
    uint64_t confirmed;       /* last position confirmed to the tailer */
    uint64_t pushed;          /* last position handed to the marker */
    char *topics[MAX_TOPICS]; /* declared already on the transport */
    size_t n_topics;
    int backoff_ms;
} loop;

void relay_config_init(relay_config *c)
{
    memset(c, 0, sizeof *c);
    c->batch_size = 500;
    c->idle_wait_ms = 200;
    c->mark_dispatched = true;
}

static void sleep_ms(const loop *l, int ms)
{
    for (int slept = 0; slept < ms && !*l->stop; slept += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void back_off(loop *l)
{
    l->backoff_ms = l->backoff_ms == 0 ? 100 : l->backoff_ms * 2;
    if (l->backoff_ms > BACKOFF_MAX_MS)
        l->backoff_ms = BACKOFF_MAX_MS;
    sleep_ms(l, l->backoff_ms);
}

static void drop_tailer(loop *l)
{
    if (l->tailer != NULL)
        l->tailer->ops->close(l->tailer);
    l->tailer = NULL;
    l->confirmed = l->pushed = 0; /* a new tailer starts from its own position */
    atomic_store(&l->stats->connected, false);
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

static txm_status open_db(loop *l, txm_error *err)
{
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    /* Migrating a brand-new schema creates the database's default slot
     * before the outbox exists. With --slot that slot is not the relay's,
     * and the relay creates no slot but its own. */
    o.pg_relay_slot = l->cfg->tail.slot_name == NULL;
    return txm_db_open(l->cfg->database_url, &o, &l->db, err);
}

static txm_status connect_all(loop *l, txm_error *err)
{
    txm_status st = TXM_OK;
    if (l->transport == NULL)
        st = txm_transport_open(l->cfg->broker_url, NULL, &l->transport, err);
    if (st == TXM_OK && l->db == NULL)
        st = open_db(l, err);
    if (st == TXM_OK && l->marker == NULL)
        st = relay_marker_open(l->db, l->cfg->mark_dispatched, l->stats, l->cfg->log,
                               l->cfg->log_ctx, &l->marker, err);
    if (st == TXM_OK && l->tailer == NULL) {
        relay_tail_config tc = l->cfg->tail;
        tc.database_url = l->cfg->database_url;
        bool pg = strncmp(tc.database_url, "sqlite:", 7) != 0;
        /* A failed lookup fails this attempt (the loop backs off and tries
         * again); falling back to some other slot would skip every row
         * between the real slot's position and the new slot's start. */
        if (pg && l->slot[0] == '\0' &&
            (st = relay_slot_decide(l->cfg, l->db, l->slot, err)) == TXM_OK)
            txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_INFO, "relay: using replication slot %s",
                     l->slot);
        tc.slot_name = pg ? l->slot : NULL;
        tc.no_mark_dispatched = !l->cfg->mark_dispatched;
        tc.log = l->cfg->log;
        tc.log_ctx = l->cfg->log_ctx;
        if (st == TXM_OK)
            st = pg ? relay_tail_open_pg(&tc, &l->tailer, err)
                    : relay_tail_open_sqlite(&tc, &l->tailer, err);
    }
    return st;
}

/* Declares topics the transport has not seen from this relay yet. */
static txm_status declare_topics(loop *l, const relay_batch *b, txm_error *err)
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

/* Publishes every valid entry of b in order; logs and counts the others. */
static txm_status publish_batch(loop *l, const relay_batch *b, txm_error *err)
{
    const txm_msg **msgs = calloc(b->count, sizeof *msgs);
    if (msgs == NULL)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    size_t n = 0;
    int64_t newest_us = 0;
    for (size_t i = 0; i < b->count; i++) {
        const relay_entry *e = &b->entries[i];
        if (e->msg == NULL) {
            atomic_fetch_add(&l->stats->bad_rows, 1);
            txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_ERROR,
                     "relay: skipping outbox row %s: %s",
                     e->message_id != NULL ? e->message_id : "(no id)", e->bad_reason);
            continue;
        }
        msgs[n++] = e->msg;
        if (txm_msg_created_at_us(e->msg) > newest_us)
            newest_us = txm_msg_created_at_us(e->msg);
    }
    txm_status st = declare_topics(l, b, err);
    if (st == TXM_OK && n > 0)
        st = txm_transport_publish_msgs(l->transport, msgs, n, NULL, err);
    free(msgs);
    if (st == TXM_OK && n > 0) {
        atomic_fetch_add(&l->stats->published, n);
        atomic_fetch_add(&l->stats->batches, 1);
        atomic_store(&l->stats->lag_us, txm_now_us() - newest_us);
    }
    return st;
}

/* Hands the published batch's ids to the marker, with its position. */
static txm_status hand_to_marker(loop *l, const relay_batch *b, txm_error *err)
{
    const char **ids = b->count > 0 ? calloc(b->count, sizeof *ids) : NULL;
    if (b->count > 0 && ids == NULL)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < b->count; i++)
        if (b->entries[i].msg != NULL && !b->entries[i].no_row) /* messages mode: no row */
            ids[n++] = txm_msg_id(b->entries[i].msg);
    txm_status st = relay_marker_push(l->marker, ids, n, b->confirm_position, err);
    free(ids);
    if (st == TXM_OK && b->confirm_position > l->pushed)
        l->pushed = b->confirm_position;
    return st;
}

/* Confirms the position up to which batches are published and marked. */
static txm_status confirm_done(loop *l, txm_error *err)
{
    uint64_t done = relay_marker_done(l->marker);
    if (done <= l->confirmed || l->tailer == NULL)
        return TXM_OK;
    txm_status st = l->tailer->ops->confirm(l->tailer, done, err);
    if (st == TXM_OK) {
        l->confirmed = done;
        atomic_store(&l->stats->position, done);
    }
    return st;
}

/* Reads the next batch into b and publishes it. On failure err says what
 * failed and *errors (may be NULL) is the counter it counts against. */
static txm_status read_and_publish(loop *l, relay_batch *b, atomic_uint_fast64_t **errors,
                                   txm_error *err)
{
    *errors = &l->stats->errors_db;
    txm_error why = {0}; /* the inner failure; err gets it with context */
    txm_status st = connect_all(l, &why);
    if (st == TXM_OK && (st = confirm_done(l, &why)) != TXM_OK)
        return txm_errf(err, st, "relay: confirming position failed: %s", why.text);
    /* While a position waits for its marking, look back soon to confirm it. */
    int wait_ms = l->pushed > l->confirmed ? 10 : l->cfg->idle_wait_ms;
    if (st == TXM_OK)
        st = l->tailer->ops->next(l->tailer, l->cfg->batch_size, wait_ms, b, &why);
    if (st == TXM_BUSY) /* standing by: not an error */
        return txm_errf(err, st, "%s", why.text);
    if (st != TXM_OK)
        return txm_errf(err, st, "relay: %s: %s", txm_status_name(st), why.text);
    if (atomic_exchange(&l->stats->standby, false))
        txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_INFO, "relay: active");
    atomic_store(&l->stats->connected, true);
    if (b->count > 0 && (st = publish_batch(l, b, &why)) != TXM_OK) {
        *errors = &l->stats->errors_broker;
        return txm_errf(err, st, "relay: publish of %zu messages failed, will retry: %s", b->count,
                        why.text);
    }
    /* Marking runs beside the next read and publish; the position is
     * confirmed once its batch is marked (confirm_done, next step). */
    *errors = NULL;
    return hand_to_marker(l, b, err);
}

/* One step: read a batch, publish it, confirm it. Any failure is logged,
 * counted, drops the tailer (reopening rewinds to the confirmed position)
 * and backs off. */
static void step(loop *l, relay_batch *b)
{
    txm_error err = {0};
    atomic_uint_fast64_t *errors = NULL;
    txm_status st = read_and_publish(l, b, &errors, &err);
    if (st == TXM_OK) {
        l->backoff_ms = 0;
        return;
    }
    if (st == TXM_BUSY) {
        if (!atomic_exchange(&l->stats->standby, true))
            txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_INFO, "relay: standing by: %s",
                     err.text);
        sleep_ms(l, 1000);
        return;
    }
    if (errors != NULL)
        atomic_fetch_add(errors, 1);
    txm_logf(l->cfg->log, l->cfg->log_ctx, TXM_LOG_ERROR, "%s", err.text);
    drop_tailer(l);
    back_off(l);
}

txm_status relay_run(const relay_config *cfg, relay_stats *stats, volatile sig_atomic_t *stop,
                     txm_error *err)
{
    if (cfg == NULL || stats == NULL || stop == NULL || cfg->database_url == NULL ||
        cfg->broker_url == NULL)
        return txm_errf(err, TXM_INVALID, "relay_run: NULL argument or URL");
    loop l = {.cfg = cfg, .stats = stats, .stop = stop};
    relay_batch b;
    relay_batch_init(&b);
    txm_logf(l.cfg->log, l.cfg->log_ctx, TXM_LOG_INFO, "relay: starting");
    while (!*stop) {
        step(&l, &b);
        relay_batch_clear(&b);
    }
    free(b.entries);
    if (l.marker != NULL) { /* what is published and marked is confirmed before leaving */
        txm_error why = {0};
        relay_marker_drain(l.marker);
        if (confirm_done(&l, &why) != TXM_OK)
            txm_logf(l.cfg->log, l.cfg->log_ctx, TXM_LOG_WARN,
                     "relay: confirming the last position failed: %s", why.text);
    }
    relay_marker_close(l.marker);
    drop_tailer(&l);
    txm_transport_close(l.transport);
    txm_db_close(l.db);
    for (size_t i = 0; i < l.n_topics; i++)
        free(l.topics[i]);
    txm_logf(l.cfg->log, l.cfg->log_ctx, TXM_LOG_INFO, "relay: stopped");
    return TXM_OK;
}
