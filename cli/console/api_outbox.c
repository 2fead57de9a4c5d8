/* The console's outbox routes (list, one message with its envelope,
 * dispatch now) and GET /api/trace across every configured service. */
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "dispatch.h"
#include "duration.h"
#include "trace_doc.h"

#define OUTBOX_LIMIT_MAX 1000
#define OUTBOX_LIMIT_DEFAULT 100

static void bad_parameter(txm_http_request *req, const char *name, const char *detail)
{
    console_reply_json(req, 400,
                       json_pack("{s:s, s:s, s:s}", "error", "INVALID_PARAMETER", "parameter", name,
                                 "detail", detail));
}

/* One outbox row as the API lists it. NULL when out of memory. */
static json_t *entry_json(const txm_outbox_entry *e)
{
    const txm_msg *m = txm_outbox_entry_msg(e);
    char created[TXM_TIME_LEN + 1];
    txm_time_format(txm_msg_created_at_us(m), created);
    return json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:o}", "message_id",
                     txm_msg_id(m), "seq", (json_int_t)txm_outbox_entry_seq(e), "topic",
                     txm_msg_topic(m), "aggregate_id", txm_msg_aggregate_id(m), "correlation_id",
                     txm_msg_correlation_id(m), "source", txm_msg_source(m), "created_at", created,
                     "created_at_ms", (json_int_t)(txm_msg_created_at_us(m) / 1000), "dispatched",
                     txm_outbox_entry_is_dispatched(e), "dispatch_count",
                     (json_int_t)txm_outbox_entry_dispatch_count(e), "last_dispatched_at",
                     console_time_json(txm_outbox_entry_last_dispatched_at_us(e)));
}

/* Reads state, older_than, topic and aggregate_id into f; false after
 * answering 400. */
static bool parse_filter(txm_http_request *req, txm_outbox_filter *f)
{
    const char *state = txm_http_request_query(req, "state");
    if (state != NULL && strcmp(state, "pending") == 0) {
        f->not_dispatched_only = true;
    } else if (state != NULL && strcmp(state, "dispatched") == 0) {
        f->dispatched_only = true;
    } else if (state != NULL && strcmp(state, "all") != 0) {
        bad_parameter(req, "state", "state is all, pending or dispatched");
        return false;
    }
    const char *older = txm_http_request_query(req, "older_than");
    int64_t ms = 0;
    if (older != NULL && cli_duration_parse(older, &ms) != 0) {
        bad_parameter(req, "older_than", "a duration such as 30s, 5m, 2h");
        return false;
    }
    if (older != NULL)
        f->created_before_us = txm_now_us() - ms * 1000 > 1 ? txm_now_us() - ms * 1000 : 1;
    f->topic = txm_http_request_query(req, "topic");
    f->aggregate_id = txm_http_request_query(req, "aggregate_id");
    if ((f->topic != NULL && (f->topic[0] == '\0' || strlen(f->topic) > TXM_TOPIC_MAX)) ||
        (f->aggregate_id != NULL && strlen(f->aggregate_id) > TXM_ID_MAX)) {
        bad_parameter(req, f->topic != NULL && f->topic[0] == '\0' ? "topic" : "aggregate_id",
                      "empty or too long");
        return false;
    }
    return true;
}

static void get_outbox(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    if (!console_host_ok(c, req))
        return;
    const char *name = txm_http_request_query(req, "service");
    if (name == NULL) {
        bad_parameter(req, "service", "service is required");
        return;
    }
    txm_outbox_filter f;
    txm_outbox_filter_init(&f);
    long long limit = 0, after = 0;
    if (!parse_filter(req, &f) ||
        !console_query_int(req, "limit", 1, OUTBOX_LIMIT_MAX, OUTBOX_LIMIT_DEFAULT, &limit) ||
        !console_query_int(req, "after_seq", 0, INT64_MAX, 0, &after))
        return;
    f.limit = (size_t)limit;
    f.after_seq = after;
    console_service *s = console_find_service(c, req, name);
    txm_db *db = s != NULL ? console_service_db(c, req, s) : NULL;
    if (db == NULL)
        return;
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    txm_error err;
    if (txm_outbox_list(db, &f, &list, &n, &err) != TXM_OK) {
        console_reply_error(req, 503, "DATABASE_UNAVAILABLE", "service %s: %s", name, err.text);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++)
        json_array_append_new(arr, entry_json(list[i]));
    json_t *next = n == f.limit ? json_integer(txm_outbox_entry_seq(list[n - 1])) : json_null();
    txm_outbox_list_free(list, n);
    console_reply_json(req, 200,
                       json_pack("{s:s, s:s, s:o, s:o}", "service", s->cfg.name, "outbox_mode",
                                 txm_outbox_mode_name(txm_outbox_mode_get(db)), "messages", arr,
                                 "next_after_seq", next));
}

/* The path's message id: 1..TXM_ID_MAX bytes; false after answering 400. */
static const char *message_param(txm_http_request *req)
{
    const char *id = txm_http_request_param(req, "message_id");
    if (id == NULL || id[0] == '\0' || strlen(id) > TXM_ID_MAX) {
        bad_parameter(req, "message_id", "1..255 bytes");
        return NULL;
    }
    return id;
}

/* The envelope as the broker carries it, as JSON. */
static json_t *envelope_json(const txm_msg *m)
{
    char *text = NULL;
    size_t len = 0;
    if (txm_msg_encode(m, &text, &len, NULL) != TXM_OK)
        return json_null();
    json_t *doc = json_loadb(text, len, 0, NULL);
    txm_free(text);
    return doc != NULL ? doc : json_null();
}

/* The path's service, its database and the message id; false after
 * answering 400, 404 or 503. */
static bool message_target(console *c, txm_http_request *req, console_service **s, txm_db **db,
                           const char **id)
{
    *id = message_param(req);
    *s = *id != NULL ? console_find_service(c, req, txm_http_request_param(req, "service")) : NULL;
    *db = *s != NULL ? console_service_db(c, req, *s) : NULL;
    return *db != NULL;
}

static void get_message(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    console_service *s = NULL;
    txm_db *db = NULL;
    const char *id = NULL;
    if (!console_host_ok(c, req) || !message_target(c, req, &s, &db, &id))
        return;
    txm_outbox_entry *e = NULL;
    txm_error err;
    txm_status st = txm_outbox_get(db, id, &e, &err);
    if (st == TXM_NOT_FOUND) {
        console_reply_error(req, 404, "UNKNOWN_MESSAGE", "no message %s in the outbox of %s", id,
                            s->cfg.name);
        return;
    }
    if (st != TXM_OK) {
        console_reply_error(req, 503, "DATABASE_UNAVAILABLE", "%s", err.text);
        return;
    }
    json_t *doc = entry_json(e);
    if (doc != NULL)
        json_object_set_new(doc, "envelope", envelope_json(txm_outbox_entry_msg(e)));
    txm_outbox_entry_free(e);
    console_reply_json(req, 200, doc);
}

static void post_dispatch(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    console_service *s = NULL;
    txm_db *db = NULL;
    const char *id = NULL;
    if (!console_action_ok(c, req) || !message_target(c, req, &s, &db, &id))
        return;
    txm_transport *t = console_transport(c, req);
    if (t == NULL)
        return;
    txm_error err;
    txm_status st = cli_dispatch_id(db, t, id, &err);
    if (st == TXM_OK)
        console_reply_json(req, 200, json_pack("{s:s, s:b}", "message_id", id, "dispatched", true));
    else if (st == TXM_NOT_FOUND)
        console_reply_error(req, 404, "UNKNOWN_MESSAGE", "%s", err.text);
    else if (st == TXM_CONFLICT)
        console_reply_error(req, 409, "ALREADY_DISPATCHED", "%s", err.text);
    else if (st == TXM_DB || st == TXM_BUSY)
        console_reply_error(req, 503, "DATABASE_UNAVAILABLE", "%s", err.text);
    else
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "%s", err.text);
}

static void get_trace(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    if (!console_host_ok(c, req))
        return;
    const char *corr = txm_http_request_param(req, "correlation_id");
    long long limit = 0;
    if (corr == NULL || corr[0] == '\0' || strlen(corr) > TXM_ID_MAX) {
        bad_parameter(req, "correlation_id", "1..255 bytes");
        return;
    }
    if (!console_query_int(req, "limit", 1, TXM_TRACE_LIMIT_MAX, 1000, &limit))
        return;
    cli_trace_source src[CLI_SERVICES_MAX];
    memset(src, 0, sizeof src);
    for (size_t i = 0; i < c->n_services; i++) {
        src[i].name = c->services[i].cfg.name;
        pthread_mutex_lock(&c->lock);
        src[i].db = c->services[i].db;
        pthread_mutex_unlock(&c->lock);
    }
    cli_trace_doc tr = {.services = src, .n_services = c->n_services};
    size_t failed = 0;
    txm_error err;
    if (cli_trace_read(&tr, corr, (size_t)limit, &failed, &err) != TXM_OK)
        console_reply_error(req, 503, "DATABASE_UNAVAILABLE", "%s", err.text);
    else
        console_reply_json(req, 200, cli_trace_json(&tr, corr, true));
    cli_trace_fini(&tr);
}

txm_status console_api_outbox_routes(console *c, txm_error *err)
{
    txm_status st = txm_http_route(c->srv, "GET", "/api/outbox", get_outbox, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "GET", "/api/outbox/:service/:message_id", get_message, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "POST", "/api/outbox/:service/:message_id/dispatch",
                            post_dispatch, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "GET", "/api/trace/:correlation_id", get_trace, c, err);
    return st;
}
