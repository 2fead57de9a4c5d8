/* The marker thread. Batches go through a small queue in publish order; the
 * done position only moves past a batch once it is marked, so confirming
 * up to it never leaves a confirmed row unmarked after a crash.
 *
 * Thread safety: mu guards the queue, done and stopping; the relay loop
 * pushes and reads done, the marker thread pops and marks. */
#include "marker.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_MAX 4 /* batches waiting: bounds memory and how far marking lags */

typedef struct pending {
    char *arena;      /* every id, NUL-separated */
    const char **ids; /* n pointers into arena */
    size_t n;
    uint64_t position; /* 0: the batch completes no position */
} pending;

struct relay_marker {
    txm_db *db;
    bool enabled;
    relay_stats *stats;
    txm_log_fn log;
    void *log_ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue changed, or stopping */
    pending queue[QUEUE_MAX];
    size_t head, count;
    bool stopping;
    uint64_t done;
};

/* PostgreSQL may stream a commit a moment before it is visible to other
 * sessions, so an UPDATE right after can miss rows: mark what is visible,
 * then retry the rest briefly without counting the others twice. Returns
 * false when the database failed; rows that are not in the outbox at all
 * (purged) count as done. */
static bool mark_ids(relay_marker *m, const char **ids, size_t n)
{
    txm_error err;
    size_t marked = 0;
    txm_status st = txm_outbox_mark_dispatched(m->db, ids, n, &marked, &err);
    size_t total = marked;
    for (int attempt = 0; st == TXM_OK && total < n && attempt < 6; attempt++) {
        struct timespec pause = {0, (2L << attempt) * 1000000L};
        nanosleep(&pause, NULL);
        st = txm_outbox_mark_dispatched_new(m->db, ids, n, &marked, &err);
        total += marked;
    }
    if (st != TXM_OK) {
        atomic_fetch_add(&m->stats->errors_db, 1);
        txm_logf(m->log, m->log_ctx, TXM_LOG_WARN,
                 "relay: marking %zu messages dispatched failed, will retry: %s: %s", n,
                 txm_status_name(st), err.text);
        return false;
    }
    if (total < n)
        txm_logf(m->log, m->log_ctx, TXM_LOG_WARN,
                 "relay: marked %zu of %zu published messages dispatched; the rest are not"
                 " in the outbox (purged?)",
                 total, n);
    return true;
}

/* Marks a batch, retrying with back-off while the database is away, until
 * it works or the marker stops. False when it stopped with the batch
 * unmarked: its position must then never be confirmed, or its rows would
 * stay not dispatched for good (they are published again after a restart,
 * which consumers drop as duplicates). */
static bool mark_batch(relay_marker *m, const pending *p)
{
    int pause_ms = 100;
    while (!mark_ids(m, p->ids, p->n)) {
        for (int slept = 0; slept < pause_ms; slept += 50) {
            pthread_mutex_lock(&m->mu);
            bool stopping = m->stopping;
            pthread_mutex_unlock(&m->mu);
            if (stopping)
                return false;
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        pause_ms = pause_ms < 2000 ? pause_ms * 2 : 2000;
    }
    return true;
}

/* Joins the k queued batches from the head into one: marking them in one
 * statement costs PostgreSQL far less than k statements. Under mu. Owns:
 * out->ids (free); the arenas stay the batches'. False when out of memory
 * (then the head batch is marked alone). */
static bool join_queued(relay_marker *m, size_t k, pending *out)
{
    size_t n = 0;
    for (size_t j = 0; j < k; j++)
        n += m->queue[(m->head + j) % QUEUE_MAX].n;
    out->ids = calloc(n + 1, sizeof *out->ids);
    if (out->ids == NULL)
        return false;
    out->n = 0;
    out->position = 0;
    for (size_t j = 0; j < k; j++) {
        const pending *p = &m->queue[(m->head + j) % QUEUE_MAX];
        memcpy(out->ids + out->n, p->ids, p->n * sizeof *p->ids);
        out->n += p->n;
        if (p->position != 0)
            out->position = p->position;
    }
    return true;
}

static void *run(void *arg)
{
    relay_marker *m = arg;
    bool failed = false; /* a batch stayed unmarked: no later position is done */
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (m->count == 0 && !m->stopping)
            pthread_cond_wait(&m->cv, &m->mu);
        if (m->count == 0)
            break;
        /* Every batch queued while the last statement ran goes in the next. */
        size_t k = m->count;
        pending joined = {0};
        if (k > 1 && !join_queued(m, k, &joined))
            k = 1;
        const pending *p = k > 1 ? &joined : &m->queue[m->head];
        pthread_mutex_unlock(&m->mu);
        bool marked = !failed && mark_batch(m, p);
        pthread_mutex_lock(&m->mu);
        failed = !marked;
        if (marked && p->position != 0)
            m->done = p->position;
        free(joined.ids);
        for (size_t j = 0; j < k; j++) {
            free(m->queue[m->head].arena);
            free(m->queue[m->head].ids);
            m->head = (m->head + 1) % QUEUE_MAX;
            m->count--;
        }
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

txm_status relay_marker_open(txm_db *db, bool enabled, relay_stats *stats, txm_log_fn log,
                             void *log_ctx, relay_marker **out, txm_error *err)
{
    *out = NULL;
    relay_marker *m = calloc(1, sizeof *m);
    if (m == NULL)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory for the marker");
    *m = (relay_marker){
        .db = db, .enabled = enabled && db != NULL, .stats = stats, .log = log, .log_ctx = log_ctx};
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    int rc = m->enabled ? pthread_create(&m->thread, NULL, run, m) : 0;
    if (rc != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        txm_status st =
            txm_errf(err, TXM_IO, "relay: cannot start the marker thread: %s", strerror(rc));
        if (err != NULL)
            err->sys_errno = rc;
        return st;
    }
    *out = m;
    return TXM_OK;
}

/* Copies n ids into one arena: one allocation per batch, not per id. */
static txm_status copy_ids(pending *p, const char *const *ids, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(ids[i]) + 1;
    p->arena = malloc(bytes);
    p->ids = calloc(n, sizeof *p->ids);
    if (p->arena == NULL || p->ids == NULL) {
        free(p->arena);
        free(p->ids);
        return TXM_NOMEM;
    }
    char *at = p->arena;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(ids[i]) + 1;
        memcpy(at, ids[i], len);
        p->ids[i] = at;
        at += len;
    }
    p->n = n;
    return TXM_OK;
}

txm_status relay_marker_push(relay_marker *m, const char *const *ids, size_t n, uint64_t position,
                             txm_error *err)
{
    if (!m->enabled || n == 0) {
        /* Nothing to mark: the position is done once the batches before it are. */
        pthread_mutex_lock(&m->mu);
        while (m->enabled && m->count > 0)
            pthread_cond_wait(&m->cv, &m->mu);
        if (position != 0)
            m->done = position;
        pthread_mutex_unlock(&m->mu);
        return TXM_OK;
    }
    pending p = {.position = position};
    if (copy_ids(&p, ids, n) != TXM_OK)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory for %zu ids to mark", n);
    pthread_mutex_lock(&m->mu);
    while (m->count == QUEUE_MAX)
        pthread_cond_wait(&m->cv, &m->mu);
    m->queue[(m->head + m->count) % QUEUE_MAX] = p;
    m->count++;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return TXM_OK;
}

uint64_t relay_marker_done(relay_marker *m)
{
    pthread_mutex_lock(&m->mu);
    uint64_t done = m->done;
    pthread_mutex_unlock(&m->mu);
    return done;
}

void relay_marker_drain(relay_marker *m)
{
    pthread_mutex_lock(&m->mu);
    /* At shutdown a batch whose marking keeps failing is given up (its
     * position stays unconfirmed) instead of holding the relay. */
    m->stopping = true;
    pthread_cond_broadcast(&m->cv);
    while (m->count > 0)
        pthread_cond_wait(&m->cv, &m->mu);
    pthread_mutex_unlock(&m->mu);
}

void relay_marker_close(relay_marker *m)
{
    if (m == NULL)
        return;
    if (m->enabled) {
        pthread_mutex_lock(&m->mu);
        m->stopping = true;
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
    }
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
