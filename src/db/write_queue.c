/* The in-process queue of writers of one SQLite txm_db: its connections take
 * turns at the database's write lock in arrival order, each waiting on its
 * own condition variable, instead of polling in SQLite's busy handler, which
 * sleeps in growing steps (1, 2, 5 ... 100 ms) and lets a late arrival win
 * over a writer that has waited long. The busy handler is then left to cover
 * writers of other processes.
 *
 * The queue belongs to the handle, not to the file: one queue per file in a
 * process would need a registry of open files, mutable state shared by all
 * handles (which the library does not keep), and a process normally opens
 * its database once (the app runtime does). Two handles on one file stay
 * correct: their writers meet in the busy handler, as other processes' do,
 * and txm_db_busy_waits counts it.
 *
 * Thread safety: q->mu guards every field of the queue. A waiter's node lives
 * on its own stack and is linked into the queue only while it waits; the
 * releasing thread hands the turn over (granted, holder) under q->mu, so the
 * waiter needs no second look at the lock. */
#include "db/db_int.h"

#include <assert.h>
#include <errno.h>
#include <time.h>

/* One thread waiting for its turn. */
struct txm__write_waiter {
    pthread_cond_t cv;              /* signalled when the turn is handed to it */
    const txm__conn *conn;          /* the connection that will hold the turn */
    bool granted;                   /* set by the releasing thread */
    struct txm__write_waiter *next; /* the one after it in the queue */
};

void txm__write_queue_init(txm__write_queue *q)
{
    pthread_mutex_init(&q->mu, NULL);
    q->holder = NULL;
    q->head = q->tail = NULL;
}

void txm__write_queue_fini(txm__write_queue *q)
{
    assert(q->holder == NULL && q->head == NULL);
    pthread_mutex_destroy(&q->mu);
}

static void deadline_after_ms(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Unlinks w, which timed out, from the queue. */
static void unlink_waiter(txm__write_queue *q, txm__write_waiter *w)
{
    txm__write_waiter **p = &q->head;
    txm__write_waiter *prev = NULL;
    while (*p != w) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = w->next;
    if (q->tail == w)
        q->tail = prev;
}

/* Waits on w, queued last, until the turn is handed to it or timeout_ms
 * passes. Called and returns with q->mu held. */
static bool wait_turn(txm__write_queue *q, txm__write_waiter *w, int timeout_ms)
{
    struct timespec deadline;
    deadline_after_ms(&deadline, timeout_ms);
    while (!w->granted) {
        if (pthread_cond_timedwait(&w->cv, &q->mu, &deadline) == ETIMEDOUT && !w->granted) {
            unlink_waiter(q, w);
            return false;
        }
    }
    return true;
}

/* Condition variables on CLOCK_MONOTONIC, so a clock step neither cuts a wait
 * short nor stretches it. */
static bool cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    bool ok =
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 && pthread_cond_init(cv, &attr) == 0;
    pthread_condattr_destroy(&attr);
    return ok;
}

txm_status txm__write_queue_acquire(txm__write_queue *q, const txm__conn *conn, int timeout_ms,
                                    txm_error *err)
{
    pthread_mutex_lock(&q->mu);
    assert(q->holder != conn); /* a connection writes one transaction at a time */
    if (q->holder == NULL && q->head == NULL) {
        q->holder = conn;
        pthread_mutex_unlock(&q->mu);
        return TXM_OK;
    }
    txm__write_waiter w = {.conn = conn};
    if (!cond_init_monotonic(&w.cv)) {
        pthread_mutex_unlock(&q->mu);
        return txm_errf(err, TXM_NOMEM, "db: cannot create a condition variable");
    }
    if (q->tail != NULL)
        q->tail->next = &w;
    else
        q->head = &w;
    q->tail = &w;
    bool got = wait_turn(q, &w, timeout_ms);
    pthread_mutex_unlock(&q->mu);
    pthread_cond_destroy(&w.cv);
    if (!got)
        return txm_errf(err, TXM_BUSY,
                        "db: another writer of this process held the write lock for %d ms",
                        timeout_ms);
    return TXM_OK;
}

void txm__write_queue_release(txm__write_queue *q, const txm__conn *conn)
{
    pthread_mutex_lock(&q->mu);
    if (q->holder == conn) {
        q->holder = NULL;
        txm__write_waiter *w = q->head;
        if (w != NULL) {
            q->head = w->next;
            if (q->head == NULL)
                q->tail = NULL;
            q->holder = w->conn;
            w->granted = true;
            pthread_cond_signal(&w->cv);
        }
    }
    pthread_mutex_unlock(&q->mu);
}
