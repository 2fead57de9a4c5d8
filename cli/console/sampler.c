/* The console's sampler: a thread that reads every service and the broker
 * each interval into a ring of CONSOLE_SAMPLES samples, and the reading
 * itself, which GET /api/overview shares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console.h"

void console_connect(console *c)
{
    for (size_t i = 0; i < c->n_services; i++) {
        console_service *s = &c->services[i];
        pthread_mutex_lock(&c->lock);
        bool open = s->db != NULL;
        pthread_mutex_unlock(&c->lock);
        if (open)
            continue;
        txm_db *db = NULL;
        txm_error err = {0};
        txm_status st = cli_db_open_url(s->cfg.url, &db, &err);
        pthread_mutex_lock(&c->lock);
        s->db = db;
        snprintf(s->error, sizeof s->error, "%s", st == TXM_OK ? "" : err.text);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_lock(&c->lock);
    bool open = c->t != NULL;
    pthread_mutex_unlock(&c->lock);
    if (open || c->broker_url == NULL || c->broker_url[0] == '\0')
        return;
    txm_transport *t = NULL;
    txm_error err = {0};
    /* An unreachable NATS is opened anyway and connects in the background. */
    txm_status st = cli_transport_open_url(c->broker_url, true, &t, &err);
    pthread_mutex_lock(&c->lock);
    c->t = t;
    snprintf(c->broker_error, sizeof c->broker_error, "%s", st == TXM_OK ? "" : err.text);
    pthread_mutex_unlock(&c->lock);
}

static void read_service(console *c, console_service *s, int64_t since_us, console_live_svc *l)
{
    pthread_mutex_lock(&c->lock);
    txm_db *db = s->db;
    snprintf(l->error, sizeof l->error, "%s", s->error);
    pthread_mutex_unlock(&c->lock);
    if (db == NULL)
        return;
    txm_error err = {0};
    l->mode = txm_outbox_mode_get(db);
    txm_status st = txm_outbox_stats_get(db, &l->stats, &err);
    if (st == TXM_OK)
        l->relay_ok = txm_outbox_relay_status(db, NULL, &l->relay, NULL) == TXM_OK;
    if (st == TXM_OK)
        st = txm_inbox_handled_since(db, since_us, &l->handled, &l->n_handled, &err);
    l->ok = st == TXM_OK;
    snprintf(l->error, sizeof l->error, "%s", l->ok ? "" : err.text);
}

void console_live_read(console *c, console_live *l)
{
    memset(l, 0, sizeof *l);
    l->at_us = txm_now_us();
    int64_t since = l->at_us - (int64_t)CONSOLE_HANDLED_WINDOW_S * 1000000;
    for (size_t i = 0; i < c->n_services; i++)
        read_service(c, &c->services[i], since, &l->svc[i]);
    pthread_mutex_lock(&c->lock);
    txm_transport *t = c->t;
    snprintf(l->broker_error, sizeof l->broker_error, "%s",
             c->broker_error[0] != '\0' ? c->broker_error : "no broker configured");
    pthread_mutex_unlock(&c->lock);
    if (t == NULL)
        return;
    txm_error err = {0};
    if (!txm_transport_is_available(t)) {
        snprintf(l->broker_error, sizeof l->broker_error, "the broker cannot be reached");
        return;
    }
    l->broker_ok = txm_transport_queues(t, &l->queues, &l->n_queues, &err) == TXM_OK;
    snprintf(l->broker_error, sizeof l->broker_error, "%s", l->broker_ok ? "" : err.text);
}

void console_live_free(console_live *l)
{
    for (size_t i = 0; i < CLI_SERVICES_MAX; i++)
        txm_free(l->svc[i].handled);
    txm_free(l->queues);
    memset(l, 0, sizeof *l);
}

/* The history index of queue, registering it; -1 when the table is full.
 * Called with c->lock held. */
static int queue_index(console *c, const char *queue)
{
    for (size_t i = 0; i < c->n_queue_names; i++)
        if (strcmp(c->queue_names[i], queue) == 0)
            return (int)i;
    if (c->n_queue_names == CONSOLE_QUEUES_MAX)
        return -1;
    snprintf(c->queue_names[c->n_queue_names], sizeof c->queue_names[0], "%s", queue);
    return (int)c->n_queue_names++;
}

bool console_live_rate(console *c, const console_live *l, const char *queue, double *rate)
{
    int64_t rows = 0;
    bool seen = false;
    for (size_t i = 0; i < c->n_services; i++)
        for (size_t k = 0; k < l->svc[i].n_handled; k++)
            if (strcmp(l->svc[i].handled[k].subscription, queue) == 0) {
                rows += l->svc[i].handled[k].count;
                seen = true;
            }
    /* A queue some service recorded once stays consumed: an idle one
     * handles 0 per second, not an unknown number. */
    pthread_mutex_lock(&c->lock);
    int idx = queue_index(c, queue);
    if (idx >= 0 && seen)
        c->queue_consumed[idx] = true;
    if (idx >= 0)
        seen = c->queue_consumed[idx];
    pthread_mutex_unlock(&c->lock);
    *rate = (double)rows / CONSOLE_HANDLED_WINDOW_S;
    return seen;
}

/* Converts l into a sample and appends it to the ring. */
static void record(console *c, const console_live *l)
{
    console_sample s;
    memset(&s, 0, sizeof s);
    s.at_ms = l->at_us / 1000;
    for (size_t i = 0; i < c->n_services; i++) {
        const console_live_svc *v = &l->svc[i];
        console_svc_fig *f = &s.svc[i];
        f->ok = v->ok;
        f->not_dispatched = v->stats.not_dispatched;
        f->has_oldest = v->ok && v->stats.has_oldest;
        f->oldest_age_ms = v->stats.oldest_age_us / 1000;
        f->has_lag = v->ok && v->relay_ok && v->relay.has_lag;
        f->lag_ms = v->relay.lag_us / 1000;
    }
    for (size_t i = 0; l->broker_ok && i < l->n_queues; i++) {
        const txm_queue_info *q = &l->queues[i];
        double rate = 0;
        bool has_rate = console_live_rate(c, l, q->name, &rate);
        pthread_mutex_lock(&c->lock);
        int idx = queue_index(c, q->name);
        pthread_mutex_unlock(&c->lock);
        if (idx < 0)
            continue;
        s.queue[idx] =
            (console_queue_fig){true, q->depth, q->in_flight, q->dead_letters, has_rate, rate};
    }
    pthread_mutex_lock(&c->lock);
    size_t slot = (c->ring_start + c->ring_count) % CONSOLE_SAMPLES;
    c->ring[slot] = s;
    if (c->ring_count < CONSOLE_SAMPLES)
        c->ring_count++;
    else
        c->ring_start = (c->ring_start + 1) % CONSOLE_SAMPLES;
    pthread_mutex_unlock(&c->lock);
}

static void *sampler_main(void *arg)
{
    console *c = arg;
    while (!atomic_load(&c->stopping)) {
        console_connect(c);
        console_live l;
        console_live_read(c, &l);
        record(c, &l);
        console_live_free(&l);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += c->interval_ms / 1000;
        until.tv_nsec += (c->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&c->lock);
        if (!atomic_load(&c->stopping))
            pthread_cond_timedwait(&c->wake, &c->lock, &until);
        pthread_mutex_unlock(&c->lock);
    }
    return NULL;
}

txm_status console_sampler_start(console *c, txm_error *err)
{
    if (pthread_create(&c->sampler, NULL, sampler_main, c) != 0)
        return txm_errf(err, TXM_NOMEM, "console: cannot start the sampler thread");
    c->sampler_started = true;
    return TXM_OK;
}

void console_sampler_stop(console *c)
{
    if (!c->sampler_started)
        return;
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->stopping, true);
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->sampler, NULL);
    c->sampler_started = false;
}
