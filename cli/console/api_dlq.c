/* The console's dead-letter routes: groups by cause, the dead letters of a
 * queue or a group, a redrive (started as a job, see jobs.c) and a group
 * purge. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "dlq_doc.h"

#define DLQ_LIMIT_MAX 1000
#define DLQ_LIMIT_DEFAULT 50
#define DLQ_SCAN 10000     /* dead letters read to group or filter */
#define RATE_DEFAULT 100.0 /* messages per second */
#define RATE_MIN 0.1
#define RATE_MAX 10000.0

static void bad_body(txm_http_request *req, const char *field, const char *detail)
{
    console_reply_json(
        req, 400,
        json_pack("{s:s, s:s, s:s}", "error", "INVALID_BODY", "field", field, "detail", detail));
}

static bool is_group_id(const char *v)
{
    return v != NULL && strlen(v) == TXM_DLQ_GROUP_ID_LEN &&
           strspn(v, "0123456789abcdef") == TXM_DLQ_GROUP_ID_LEN;
}

/* The broker when it knows queue; NULL after answering 404 or 503. NATS
 * says TXM_NOT_FOUND for the depth of a queue it does not know, the
 * embedded broker for its dead letters. */
static txm_transport *known_queue(console *c, txm_http_request *req, const char *queue)
{
    txm_transport *t = console_transport(c, req);
    if (t == NULL)
        return NULL;
    txm_delivery **list = NULL;
    size_t n = 0;
    int64_t depth = 0;
    txm_error err;
    txm_status st = txm_transport_queue_depth(t, queue, &depth, &err);
    if (st == TXM_OK)
        st = txm_transport_dlq_list(t, queue, 1, &list, &n, &err);
    txm_delivery_list_free(list, n);
    if (st == TXM_OK)
        return t;
    if (st == TXM_NOT_FOUND)
        console_reply_error(req, 404, "UNKNOWN_QUEUE", "the broker has no queue %s", queue);
    else
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "%s", err.text);
    return NULL;
}

static void get_groups(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    if (!console_host_ok(c, req))
        return;
    const char *queue = console_queue_param(req);
    txm_transport *t = queue != NULL ? known_queue(c, req, queue) : NULL;
    if (t == NULL)
        return;
    txm_dlq_group *g = NULL;
    size_t n = 0;
    bool truncated = false;
    txm_error err;
    txm_status st = txm_transport_dlq_groups(t, queue, DLQ_SCAN, &g, &n, &truncated, &err);
    if (st != TXM_OK) {
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "%s", err.text);
        return;
    }
    size_t scanned = 0;
    for (size_t i = 0; i < n; i++)
        scanned += g[i].count;
    json_t *doc = cli_dlq_groups_json(queue, g, n, truncated);
    txm_free(g);
    if (doc != NULL)
        json_object_set_new(doc, "scanned", json_integer((json_int_t)scanned));
    console_reply_json(req, 200, doc);
}

/* Keeps the first limit dead letters of list that belong to group (all
 * when group is NULL), freeing the others; returns how many are kept. */
static size_t keep_group(txm_delivery **list, size_t n, const char *group, size_t limit)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char fp[TXM_DLQ_FINGERPRINT_MAX + 1], id[TXM_DLQ_GROUP_ID_LEN + 1];
        txm_dlq_fingerprint(txm_delivery_last_error(list[i]), fp);
        txm_dlq_group_id(fp, id);
        if (k < limit && (group == NULL || strcmp(id, group) == 0))
            list[k++] = list[i];
        else
            txm_delivery_free(list[i]);
    }
    return k;
}

static void get_dlq(void *ctx, txm_http_request *req)
{
    console *c = ctx;
    if (!console_host_ok(c, req))
        return;
    const char *queue = console_queue_param(req);
    const char *group = txm_http_request_query(req, "group");
    long long limit = 0;
    if (queue == NULL ||
        !console_query_int(req, "limit", 1, DLQ_LIMIT_MAX, DLQ_LIMIT_DEFAULT, &limit))
        return;
    if (group != NULL && !is_group_id(group)) {
        console_reply_json(req, 400,
                           json_pack("{s:s, s:s, s:s}", "error", "INVALID_PARAMETER", "parameter",
                                     "group", "detail", "a group id is 12 lower-case hex digits"));
        return;
    }
    txm_transport *t = known_queue(c, req, queue);
    if (t == NULL)
        return;
    txm_delivery **list = NULL;
    size_t n = 0;
    txm_error err;
    txm_status st =
        txm_transport_dlq_list(t, queue, group != NULL ? DLQ_SCAN : (size_t)limit, &list, &n, &err);
    if (st != TXM_OK) {
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "%s", err.text);
        return;
    }
    n = keep_group(list, n, group, (size_t)limit);
    json_t *doc = cli_dlq_list_json(queue, list, n);
    txm_delivery_list_free(list, n);
    console_reply_json(req, 200, doc);
}

/* A string member of body: absent (NULL, true), or 1..max bytes; false
 * after answering 400. */
static bool body_string(txm_http_request *req, json_t *body, const char *key, size_t max,
                        const char **out)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (v == NULL)
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        bad_body(req, key, "a non-empty string, not too long");
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* The body as a JSON object whose members are all in allowed; NULL after
 * answering 400. */
static json_t *body_object(txm_http_request *req, const char *const *allowed)
{
    size_t len = 0;
    const char *text = txm_http_request_body(req, &len);
    json_t *body = json_loadb(text, len, 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        bad_body(req, "body", "a JSON object");
        return NULL;
    }
    const char *key = NULL;
    json_t *v = NULL;
    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; !ok && allowed[i] != NULL; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            bad_body(req, key, "unknown field");
            json_decref(body);
            return NULL;
        }
    }
    return body;
}

/* Reads the redrive body into job; false after answering 400. */
static bool parse_redrive(txm_http_request *req, json_t *body, console_job *job)
{
    const char *group = NULL, *match = NULL, *id = NULL;
    if (!body_string(req, body, "group", TXM_DLQ_GROUP_ID_LEN, &group) ||
        !body_string(req, body, "match", TXM_DLQ_ERROR_MAX, &match) ||
        !body_string(req, body, "message_id", TXM_ID_MAX, &id))
        return false;
    if (group != NULL && !is_group_id(group)) {
        bad_body(req, "group", "a group id is 12 lower-case hex digits");
        return false;
    }
    if (id != NULL && (group != NULL || match != NULL)) {
        bad_body(req, "message_id", "message_id goes alone, without group or match");
        return false;
    }
    if (id == NULL && group == NULL && match == NULL) {
        bad_body(req, "group", "give group, match or message_id");
        return false;
    }
    json_t *rate = json_object_get(body, "rate");
    job->rate = RATE_DEFAULT;
    if (rate != NULL) {
        double r = json_is_number(rate) ? json_number_value(rate) : NAN;
        if (!(r >= RATE_MIN && r <= RATE_MAX)) {
            bad_body(req, "rate", "messages per second, 0.1..10000");
            return false;
        }
        job->rate = r;
    }
    snprintf(job->group, sizeof job->group, "%s", group != NULL ? group : "");
    snprintf(job->match, sizeof job->match, "%s", match != NULL ? match : "");
    snprintf(job->message_id, sizeof job->message_id, "%s", id != NULL ? id : "");
    return true;
}

static void post_redrive(void *ctx, txm_http_request *req)
{
    static const char *const allowed[] = {"group", "match", "message_id", "rate", NULL};
    console *c = ctx;
    if (!console_action_ok(c, req))
        return;
    const char *queue = console_queue_param(req);
    json_t *body = queue != NULL ? body_object(req, allowed) : NULL;
    console_job *job = body != NULL ? calloc(1, sizeof *job) : NULL;
    bool ok = job != NULL && parse_redrive(req, body, job);
    if (body != NULL && job == NULL)
        console_reply_error(req, 500, "SYSTEM_ERROR", "out of memory");
    json_decref(body);
    if (ok && known_queue(c, req, queue) != NULL) {
        snprintf(job->queue, sizeof job->queue, "%s", queue);
        console_job_start(c, req, job);
    }
    free(job);
}

static void post_purge(void *ctx, txm_http_request *req)
{
    static const char *const allowed[] = {"group", "confirm", NULL};
    console *c = ctx;
    if (!console_action_ok(c, req))
        return;
    const char *queue = console_queue_param(req);
    json_t *body = queue != NULL ? body_object(req, allowed) : NULL;
    const char *group = NULL, *confirm = NULL;
    bool ok = body != NULL && body_string(req, body, "group", TXM_DLQ_GROUP_ID_LEN, &group) &&
              body_string(req, body, "confirm", TXM_DLQ_GROUP_ID_LEN, &confirm);
    if (ok && !is_group_id(group)) {
        bad_body(req, "group", "a group id is 12 lower-case hex digits");
        ok = false;
    }
    if (ok && (confirm == NULL || strcmp(confirm, group) != 0)) {
        console_reply_error(req, 400, "CONFIRMATION_REQUIRED", "confirm must repeat the group id");
        ok = false;
    }
    txm_transport *t = ok ? known_queue(c, req, queue) : NULL;
    size_t purged = 0;
    txm_error err;
    txm_status st = t != NULL
                        ? txm_transport_dlq_purge_group(t, queue, group, DLQ_SCAN, &purged, &err)
                        : TXM_OK;
    if (t != NULL && st == TXM_OK)
        console_reply_json(req, 200,
                           json_pack("{s:s, s:s, s:I}", "queue", queue, "group", group, "purged",
                                     (json_int_t)purged));
    else if (t != NULL && st == TXM_NOT_FOUND)
        console_reply_error(req, 404, "UNKNOWN_GROUP", "no dead letter of %s is in group %s", queue,
                            group);
    else if (t != NULL)
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "%s", err.text);
    json_decref(body);
}

txm_status console_api_dlq_routes(console *c, txm_error *err)
{
    txm_status st =
        txm_http_route(c->srv, "GET", "/api/queues/:queue/dlq/groups", get_groups, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "GET", "/api/queues/:queue/dlq", get_dlq, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "POST", "/api/queues/:queue/dlq/redrive", post_redrive, c, err);
    if (st == TXM_OK)
        st = txm_http_route(c->srv, "POST", "/api/queues/:queue/dlq/purge", post_purge, c, err);
    return st;
}
