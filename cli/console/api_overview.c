/* GET /api/overview: each service's outbox, relay and handled rates, the
 * broker's queues, and the history the sampler kept. */
#include <string.h>

#include "console.h"

/* An integer, or null when has is false. */
static json_t *int_or_null(bool has, int64_t v)
{
    return has ? json_integer(v) : json_null();
}

static json_t *relay_json(const console_service *s, const console_live_svc *v)
{
    if (!v->ok || !v->relay_ok)
        return json_null();
    const txm_relay_status *r = &v->relay;
    return json_pack("{s:s, s:b, s:s, s:b, s:o, s:o, s:o}", "name", r->name, "found", r->found,
                     "position", r->position, "active", r->active, "behind",
                     int_or_null(!s->pg, r->behind), "lag_ms",
                     int_or_null(r->has_lag, r->lag_us / 1000), "retained_wal_bytes",
                     int_or_null(s->pg && r->found, r->behind));
}

static json_t *handled_json(const console_live_svc *v)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < v->n_handled; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:f}", "subscription", v->handled[i].subscription, "per_second",
                           (double)v->handled[i].count / CONSOLE_HANDLED_WINDOW_S));
    return arr;
}

static json_t *service_json(const console_service *s, const console_live_svc *v)
{
    json_t *outbox =
        v->ok ? json_pack("{s:I, s:o}", "not_dispatched", (json_int_t)v->stats.not_dispatched,
                          "oldest_age_ms",
                          int_or_null(v->stats.has_oldest, v->stats.oldest_age_us / 1000))
              : json_null();
    return json_pack("{s:s, s:s, s:o, s:b, s:o, s:o, s:o, s:o}", "name", s->cfg.name, "database",
                     s->pg ? "postgresql" : "sqlite", "outbox_mode",
                     v->ok ? json_string(txm_outbox_mode_name(v->mode)) : json_null(), "available",
                     v->ok, "error", v->ok ? json_null() : console_json_text(v->error), "outbox",
                     outbox, "relay", relay_json(s, v), "handled",
                     v->ok ? handled_json(v) : json_null());
}

static json_t *queues_json(console *c, const console_live *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && l->broker_ok && i < l->n_queues; i++) {
        const txm_queue_info *q = &l->queues[i];
        double rate = 0;
        bool has_rate = console_live_rate(c, l, q->name, &rate);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:o}", "name", q->name,
                                             "topic", q->topic, "depth", (json_int_t)q->depth,
                                             "in_flight", (json_int_t)q->in_flight, "dead_letters",
                                             (json_int_t)q->dead_letters, "handled_per_second",
                                             has_rate ? json_real(rate) : json_null()));
    }
    return arr;
}

/* Appends v (or null) to the array called key of obj, creating it. */
static void push(json_t *obj, const char *key, json_t *v)
{
    json_t *arr = json_object_get(obj, key);
    if (arr == NULL) {
        arr = json_array();
        json_object_set_new(obj, key, arr);
    }
    json_array_append_new(arr, v != NULL ? v : json_null());
}

static void history_sample(console *c, const console_sample *s, json_t *at, json_t *svcs,
                           json_t *queues)
{
    json_array_append_new(at, json_integer(s->at_ms));
    for (size_t i = 0; i < c->n_services; i++) {
        const console_svc_fig *f = &s->svc[i];
        json_t *o = json_object_get(svcs, c->services[i].cfg.name);
        push(o, "not_dispatched", f->ok ? json_integer(f->not_dispatched) : NULL);
        push(o, "oldest_age_ms", f->has_oldest ? json_integer(f->oldest_age_ms) : NULL);
        push(o, "lag_ms", f->has_lag ? json_integer(f->lag_ms) : NULL);
    }
    for (size_t k = 0; k < c->n_queue_names; k++) {
        const console_queue_fig *f = &s->queue[k];
        json_t *o = json_object_get(queues, c->queue_names[k]);
        push(o, "depth", f->ok ? json_integer(f->depth) : NULL);
        push(o, "in_flight", f->ok ? json_integer(f->in_flight) : NULL);
        push(o, "dead_letters", f->ok ? json_integer(f->dead_letters) : NULL);
        push(o, "handled_per_second",
             f->ok && f->has_rate ? json_real(f->handled_per_second) : NULL);
    }
}

/* The ring as arrays per series, oldest first. Called with c->lock held
 * (the ring and the queue names are the sampler's). */
static json_t *history_json(console *c)
{
    json_t *at = json_array(), *svcs = json_object(), *queues = json_object();
    for (size_t i = 0; svcs != NULL && i < c->n_services; i++)
        json_object_set_new(svcs, c->services[i].cfg.name, json_object());
    for (size_t k = 0; queues != NULL && k < c->n_queue_names; k++)
        json_object_set_new(queues, c->queue_names[k], json_object());
    for (size_t i = 0; at != NULL && svcs != NULL && queues != NULL && i < c->ring_count; i++)
        history_sample(c, &c->ring[(c->ring_start + i) % CONSOLE_SAMPLES], at, svcs, queues);
    return json_pack("{s:o, s:o, s:o}", "at_ms", at, "services", svcs, "queues", queues);
}

static void get_overview(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    if (!console_host_ok(c, req))
        return;
    console_live l;
    console_live_read(c, &l);
    json_t *svcs = json_array();
    for (size_t i = 0; svcs != NULL && i < c->n_services; i++)
        json_array_append_new(svcs, service_json(&c->services[i], &l.svc[i]));
    json_t *queues = queues_json(c, &l);
    char now[TXM_TIME_LEN + 1];
    txm_time_format(l.at_us, now);
    pthread_mutex_lock(&c->lock);
    json_t *history = history_json(c);
    pthread_mutex_unlock(&c->lock);
    json_t *doc = json_pack(
        "{s:s, s:I, s:I, s:{s:b, s:b}, s:o, s:{s:o, s:b, s:o}, s:o, s:o}", "now", now, "now_ms",
        (json_int_t)(l.at_us / 1000), "interval_ms", (json_int_t)c->interval_ms, "actions",
        "enabled", c->has_token && !c->read_only, "read_only", c->read_only, "services", svcs,
        "broker", "url", c->broker_url != NULL ? console_json_text(c->broker_url) : json_null(),
        "available", l.broker_ok, "error",
        l.broker_ok ? json_null() : console_json_text(l.broker_error), "queues", queues, "history",
        history);
    console_live_free(&l);
    console_reply_json(req, 200, doc);
}

txm_status console_api_overview_routes(console *c, txm_error *err)
{
    return txm_http_route(c->srv, "GET", "/api/overview", get_overview, c, err);
}
