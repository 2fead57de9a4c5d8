/* What the relay's two threads share: the reader (reader.c) owns the tailer
 * and reads batches ahead into a small queue; the publisher (relay.c, the
 * caller's thread) publishes them in order and hands them to the marker.
 * Reading the next batch while the previous one is published is what lets
 * the relay use a second core.
 *
 * Thread safety: mu guards the queue, gen and marker; the fields marked
 * "reader" or "publisher" belong to that thread alone (to the caller's
 * thread again once the reader has been joined). */
#ifndef RELAY_RELAY_INT_H
#define RELAY_RELAY_INT_H

#include <pthread.h>
#include <time.h>

#include "marker.h"
#include "relay.h"

/* Batches queued: two the publisher holds (one sent, one acknowledged) and
 * one the reader fills ahead. Bounds memory and wasted reads on a rewind. */
#define RELAY_QUEUE 3

typedef struct relay_loop {
    const relay_config *cfg;
    relay_stats *stats;
    volatile sig_atomic_t *stop;

    /* reader */
    txm_db *db; /* slot lookup and the marker's updates */
    /* PostgreSQL: the replication slot, decided once ("" until then) and
     * kept for the process lifetime: the relay never changes slots. */
    char slot[TXM_SLOT_NAME_MAX + 1];
    relay_tailer *tailer;
    uint64_t confirmed;        /* last position confirmed to the tailer */
    long long confirmed_at_ms; /* when (relay_mono_ms) */
    int reader_backoff_ms;

    /* publisher */
    txm_transport *transport;
    char **topics; /* declared already on the transport */
    size_t n_topics;
    int backoff_ms;

    /* shared */
    atomic_uint_fast64_t pushed; /* last position handed to the marker */
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* the queue or gen changed, or stopping */
    relay_marker *marker; /* set once by the reader, then read by both */
    relay_batch queue[RELAY_QUEUE];
    uint64_t queue_gen[RELAY_QUEUE]; /* gen each queued batch was read in */
    size_t head, count;
    size_t taken; /* queued batches from head on that the publisher holds */
    /* Bumped by the publisher when a publish fails: the reader drops its
     * tailer, which rewinds to the confirmed position, and batches read
     * before are dropped unpublished. */
    uint64_t gen;
} relay_loop;

/* Sleeps up to ms, waking early when the relay stops. */
void relay_sleep_ms(const relay_loop *l, int ms);

/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait. */
struct timespec relay_deadline(int ms);

/* Doubles *backoff_ms (100 ms to 5 s) and sleeps that long. */
void relay_back_off(const relay_loop *l, int *backoff_ms);

/* The reader thread's body: reads until *l->stop. */
void *relay_reader_main(void *arg);

/* Confirms to the tailer the position up to which batches are published
 * and marked: at once when now, else when the last confirmation is a
 * moment old. Thread: the reader, or the caller once the reader is joined. */
txm_status relay_confirm_done(relay_loop *l, bool now, txm_error *err);

/* Closes the tailer; the next one starts from the confirmed position. */
void relay_drop_tailer(relay_loop *l);

#endif
