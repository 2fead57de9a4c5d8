/* Runs a lane's batch in one unit of work: one inbox statement records
 * every message id and tells the duplicates, the handlers run in order,
 * and one commit keeps it all.
 *
 * A failing message must not cost the others their work. Savepoints would
 * isolate each message, but cost two more round trips per message on
 * PostgreSQL, and more than 64 subtransactions in one transaction slow
 * every snapshot of the server. So a batch first runs without them; only
 * when a handler fails (rare) is the batch run again with a savepoint
 * around each message, in units of at most 64 messages, which undoes the
 * failing one's work and its inbox row while the others commit. If even
 * that commit fails (a deferred constraint, say), each message of that
 * unit runs in a unit of its own, which finds the culprit. Once a message
 * of a key has failed, the later ones of that key in the batch are
 * skipped: they wait behind it (lane.c). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumer/consumer_int.h"
#include "core/alloc.h"
#include "txmsg/inbox.h"

#define CONFLICT_RETRIES 8 /* immediate re-runs after TXM_CONFLICT */
/* Messages per unit when running with savepoints: PostgreSQL keeps the
 * subtransactions of 64 per transaction in shared memory; past that every
 * snapshot of every session gets slower until the transaction ends. */
#define ISOLATED_MAX 64
#define SAVEPOINT_CONFLICT_RETRIES 2 /* re-runs inside a savepoint */
/* A delivery received more than this many times max_receive_count without
 * ever failing here is not run again: it may be what kills its consumer.
 * 3 was too few: under the chaos test on a slow (ASan) run, 117 healthy
 * messages reached 10 receives through SIGKILLs of their consumer and
 * broker restarts alone, and were dead-lettered unrun. */
#define LAST_CHANCE_FACTOR 10

/* Statuses that say nothing about the message: the database is away, its
 * lock did not come in time, or its disk is full. The batch is held and
 * tried again; a full disk must not use up the message's receives and
 * dead-letter it, as a failing handler would. */
static bool transient(txm_status st)
{
    return st == TXM_UNAVAILABLE || st == TXM_BUSY || st == TXM_NO_SPACE;
}

static void reset(txm__item **b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        b[i]->outcome = TXM__PENDING;
        if (b[i]->failed_run)
            continue; /* keeps its failure */
        b[i]->status = TXM_OK;
        free(b[i]->error);
        b[i]->error = NULL;
    }
}

static void set_failed(txm__item *it, txm_status st, const txm_error *err)
{
    it->outcome = TXM__FAILED;
    it->status = st;
    free(it->error);
    it->error = txm__strdup(err->text[0] != '\0' ? err->text : txm_strerror(st));
}

/* True when an earlier message of b[i]'s key failed or was skipped. */
static bool key_failed_before(txm__item **b, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if ((b[k]->outcome == TXM__FAILED || b[k]->outcome == TXM__SKIPPED) &&
            b[k]->key_hash == b[i]->key_hash && strcmp(b[k]->key, b[i]->key) == 0)
            return true;
    return false;
}

/* A short random pause before re-running after a conflict, growing with
 * the retry, so that the writers that collided do not collide again. */
static void conflict_pause(int retry)
{
    unsigned seed = (unsigned)txm_now_us();
    struct timespec pause = {0, (long)(retry * (100 + rand_r(&seed) % 900)) * 1000L};
    nanosleep(&pause, NULL);
}

/* Runs the handler of it in uow; with isolate, inside a savepoint, rolled
 * back to on failure, and re-run at once after a conflict. */
static txm_status handle(txm__subscription *s, txm_uow *uow, txm__item *it, bool isolate,
                         txm_error *err)
{
    for (int retry = 1;; retry++) {
        txm_status st = isolate ? txm_uow_savepoint(uow, err) : TXM_OK;
        if (st != TXM_OK)
            return st;
        st = s->handler(s->ctx, uow, it->msg, err);
        /* A statement that failed while the handler said OK fails here. */
        if (st == TXM_OK && isolate)
            st = txm_uow_release_savepoint(uow, err);
        if (st == TXM_OK || !isolate)
            return st;
        txm_error e;
        txm_status back = txm_uow_rollback_to_savepoint(uow, &e);
        if (back != TXM_OK) {
            if (err != NULL)
                *err = e;
            return back;
        }
        /* Again at once, for an optimistic-lock conflict; a deadlock that
         * keeps coming back ends the unit, releasing its locks (below). */
        if (st != TXM_CONFLICT || retry > SAVEPOINT_CONFLICT_RETRIES)
            return st;
        conflict_pause(retry);
    }
}

/* A delivery whose last lease ran out after max_receive_count receives
 * (crashes and broker restarts each send it back one count higher) runs
 * once more as its last attempt; only past LAST_CHANCE_FACTOR times that
 * is it dead-lettered unrun, and only if the inbox does not have it. */
static bool beyond_last_chance(const txm__subscription *s, const txm__item *it)
{
    int max = s->opts.subscription.max_receive_count;
    return txm_delivery_is_exhausted(it->d) && max > 0 &&
           txm_delivery_receive_count(it->d) > LAST_CHANCE_FACTOR * max;
}

/* True when an outcome of b[0..first) is a failure (or a skip). */
static bool failed_before(txm__item **b, size_t first)
{
    for (size_t k = 0; k < first; k++)
        if (b[k]->outcome == TXM__FAILED || b[k]->outcome == TXM__SKIPPED)
            return true;
    return false;
}

/* One try of b[first..first+n) in one unit of work, after the outcomes of
 * b[0..first). Without isolate, a failing handler ends the try (rolled
 * back) with *isolate_next set. */
static txm_status try_unit(txm__subscription *s, txm__item **b, size_t first, size_t n,
                           bool isolate, bool *isolate_next, txm_error *err)
{
    const char *ids[TXM_INBOX_BATCH_MAX];
    const txm_msg *msgs[TXM_INBOX_BATCH_MAX];
    bool fresh[TXM_INBOX_BATCH_MAX];
    *isolate_next = false;
    reset(b + first, n);
    for (size_t i = 0; i < n; i++) {
        msgs[i] = b[first + i]->msg;
        ids[i] = txm_msg_id(msgs[i]);
    }
    txm_uow *uow = NULL;
    txm_status st = txm_uow_begin(s->owner->db, &uow, err);
    if (st != TXM_OK)
        return st;
    /* With each id its correlation id, topic and source, for tracing: still
     * one statement for the batch. */
    st = txm_inbox_save_msgs(uow, s->queue, msgs, n, fresh, err);
    bool any_failed = failed_before(b, first);
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        txm__item *it = b[first + i];
        if (!fresh[i]) {
            /* Processed before, also when exhausted: its ack was lost. */
            it->outcome = TXM__DUPLICATE;
            continue;
        }
        if (beyond_last_chance(s, it) || (any_failed && key_failed_before(b, first + i))) {
            it->outcome = beyond_last_chance(s, it) ? TXM__EXHAUSTED : TXM__SKIPPED;
            st = txm_inbox_remove(uow, s->queue, ids[i], err);
            continue;
        }
        if (it->failed_run) {
            /* It failed in the try before this one: not run twice. */
            it->outcome = TXM__FAILED;
            any_failed = true;
            st = txm_inbox_remove(uow, s->queue, ids[i], err);
            continue;
        }
        st = handle(s, uow, it, isolate, err);
        if (st == TXM_OK) {
            it->outcome = TXM__DONE;
        } else if (st == TXM_CONFLICT) {
            /* Not the message's failure: without savepoints, the isolated
             * try runs it again; with them, a conflict that outlived its
             * re-runs is a deadlock with another lane or process, and only
             * ending this unit (and its locks) lets the other one go on.
             * Each message then runs alone (one_by_one). */
            *isolate_next = !isolate;
        } else if (!transient(st) && isolate) {
            set_failed(it, st, err);
            any_failed = true;
            st = txm_inbox_remove(uow, s->queue, ids[i], err);
        } else if (!transient(st)) {
            set_failed(it, st, err);
            it->failed_run = true;
            *isolate_next = true;
        }
    }
    if (st != TXM_OK) {
        txm_uow_rollback(&uow);
        return st;
    }
    return txm_uow_commit(&uow, err);
}

/* Each message of b[first..first+n) in a unit of its own: what is left
 * when a unit's commit fails. A conflict re-runs the message's unit. */
static txm_status one_by_one(txm__subscription *s, txm__item **b, size_t first, size_t n,
                             txm_error *err)
{
    bool isolate_next;
    for (size_t i = first; i < first + n; i++) {
        b[i]->failed_run = false;
        if (key_failed_before(b, i)) {
            reset(b + i, 1);
            b[i]->outcome = TXM__SKIPPED;
            continue;
        }
        txm_status st = try_unit(s, b, i, 1, false, &isolate_next, err);
        for (int retry = 1; st == TXM_CONFLICT && retry <= CONFLICT_RETRIES; retry++) {
            conflict_pause(retry);
            st = try_unit(s, b, i, 1, false, &isolate_next, err);
        }
        if (transient(st))
            return TXM_UNAVAILABLE;
        if (st != TXM_OK)
            set_failed(b[i], st, err);
    }
    return TXM_OK;
}

txm_status txm__unit_run(txm__subscription *s, txm__item **b, size_t n, txm_error *err)
{
    txm_error_clear(err);
    for (size_t i = 0; i < n; i++)
        b[i]->failed_run = false;
    if (n == 1)
        return one_by_one(s, b, 0, n, err);
    bool isolate_next = false;
    txm_status st = try_unit(s, b, 0, n, false, &isolate_next, err);
    if (st == TXM_OK || transient(st))
        return st == TXM_OK ? TXM_OK : TXM_UNAVAILABLE;
    /* A handler failed, or the commit did (which can be a statement a
     * handler ignored): find which message with savepoints, in units of at
     * most ISOLATED_MAX messages. What a unit commits stays committed if a
     * later one meets an outage: the next run finds it in the inbox. */
    for (size_t first = 0; first < n; first += ISOLATED_MAX) {
        size_t m = n - first < ISOLATED_MAX ? n - first : ISOLATED_MAX;
        st = try_unit(s, b, first, m, true, &isolate_next, err);
        if (st != TXM_OK && !transient(st))
            st = one_by_one(s, b, first, m, err);
        if (transient(st))
            return TXM_UNAVAILABLE;
    }
    return TXM_OK;
}
