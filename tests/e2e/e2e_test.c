/* End to end, the scenarios of issue 5: customers-service, orders-service and
 * a txmsg-relay for each, started as real processes and spoken to over HTTP
 * as a user does, with the events they publish watched on the transport.
 * Runs on the embedded default (SQLite files, embedded broker) and on
 * PostgreSQL with a private NATS JetStream server; the second stack is
 * skipped when TXMSG_TEST_PG_URL or TXMSG_TEST_NATS_URL is not set. The
 * saga scenarios and the concurrent burst run again on each stack with two
 * instances of each service, sharing database and queues, requests spread
 * over both, and two relays per database (one active, one standing by). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "e2e.h"
#include "testbroker.h"
#include "testdb.h"
#include "testhttp.h"
#include "testproc.h"
#include "testsvc.h"
#include "txmsg/txmsg.h"

/* ---- HTTP ---- */

typedef struct reply {
    int status;
    json_t *json;       /* the body, parsed; NULL when it is not JSON */
    char cid[UUID_BUF]; /* the X-Correlation-Id sent, and echoed */
    char what[160];     /* "POST /orders", for messages */
    char body[400];     /* the body's start, for messages */
} reply;

static void reply_free(reply *r)
{
    json_decref(r->json);
    r->json = NULL;
}

/* Sends one request with a new X-Correlation-Id and fails unless the answer
 * carries the same one back. */
static void call(stack *st, int port, const char *method, const char *path, const char *body,
                 size_t body_len, reply *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(txm_uuid_v7(r->cid, NULL), TXM_OK);
    snprintf(r->what, sizeof r->what, "%s %s", method, path);
    char cid_header[96];
    snprintf(cid_header, sizeof cid_header, "X-Correlation-Id: %s", r->cid);
    const char *headers[] = {cid_header, "Content-Type: application/json", NULL};
    txm_testhttp_response resp;
    if (txm_testhttp_request(method, "127.0.0.1", port, path, headers, body, body_len, HTTP_MS,
                             &resp) != 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", resp.error);
        txm_testhttp_response_fini(&resp);
        fail_msg("%s: %s (logs in %s)", r->what, why, st->dir);
    }
    r->status = resp.status;
    snprintf(r->body, sizeof r->body, "%s", resp.body);
    r->json = json_loadb(resp.body, resp.body_len, 0, NULL);
    const char *echo = txm_testhttp_header_get(&resp, "X-Correlation-Id");
    char got[160];
    snprintf(got, sizeof got, "%s", echo != NULL ? echo : "(none)");
    txm_testhttp_response_fini(&resp);
    if (strcmp(got, r->cid) != 0)
        fail_msg("%s: X-Correlation-Id %s in the answer, %s sent", r->what, got, r->cid);
}

static void call_json(stack *st, int port, const char *method, const char *path, const char *body,
                      reply *r)
{
    call(st, port, method, path, body, body != NULL ? strlen(body) : 0, r);
}

static void expect_status(const reply *r, int want)
{
    if (r->status != want)
        fail_msg("%s: status %d, want %d; body %s", r->what, r->status, want, r->body);
    if (r->json == NULL || !json_is_object(r->json))
        fail_msg("%s: body is not a JSON object: %s", r->what, r->body);
}

static void expect_error(const reply *r, int status, const char *code)
{
    expect_status(r, status);
    const char *got = json_string_value(json_object_get(r->json, "error"));
    if (got == NULL || strcmp(got, code) != 0)
        fail_msg("%s: error %s, want %s; body %s", r->what, got != NULL ? got : "(none)", code,
                 r->body);
}

static void expect_validation_error(const reply *r)
{
    expect_error(r, 400, "VALIDATION_ERROR");
    const char *detail = json_string_value(json_object_get(r->json, "detail"));
    if (detail == NULL || detail[0] == '\0')
        fail_msg("%s: VALIDATION_ERROR without a detail: %s", r->what, r->body);
}

/* Field getters that name what is missing. */
static const char *get_str(json_t *obj, const char *key, const char *what)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL) {
        char *text = json_dumps(obj, JSON_COMPACT);
        fail_msg("%s: \"%s\" is not a string in %s", what, key, text != NULL ? text : "?");
    }
    return s;
}

static json_int_t get_int(json_t *obj, const char *key, const char *what)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        char *text = json_dumps(obj, JSON_COMPACT);
        fail_msg("%s: \"%s\" is not an integer in %s", what, key, text != NULL ? text : "?");
    }
    return json_integer_value(v);
}

static const char *link_href(json_t *obj, const char *rel, const char *what)
{
    json_t *links = json_object_get(obj, "_links");
    if (!json_is_object(links))
        fail_msg("%s: no _links object", what);
    char where[200];
    snprintf(where, sizeof where, "%s: _links.%s", what, rel);
    return get_str(json_object_get(links, rel), "href", where);
}

static void expect_recent_time(json_t *obj, const char *key, const char *what)
{
    const char *s = get_str(obj, key, what);
    int64_t us = 0;
    if (txm_time_parse(s, &us, NULL) != TXM_OK)
        fail_msg("%s: %s \"%s\" is not RFC 3339", what, key, s);
    int64_t skew = us - txm_now_us();
    if (skew < -600 * 1000000LL || skew > 600 * 1000000LL)
        fail_msg("%s: %s \"%s\" is not about now", what, key, s);
}

/* ---- the services' API ---- */

static void create_customer(stack *st, const char *name, json_int_t limit, char id[UUID_BUF],
                            char cid[UUID_BUF])
{
    json_t *b = json_pack("{s:s, s:I}", "name", name, "credit_limit", limit);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    reply r;
    call_json(st, e2e_customers_port(st), "POST", "/customers", text, &r);
    free(text);
    expect_status(&r, 200);
    const char *got = get_str(r.json, "id", r.what);
    if (!txm_uuid_is_valid(got))
        fail_msg("%s: id \"%s\" is not a UUID", r.what, got);
    snprintf(id, UUID_BUF, "%s", got);
    char want[80];
    snprintf(want, sizeof want, "/customer/%s", id);
    assert_string_equal(link_href(r.json, "self", r.what), want);
    if (cid != NULL)
        memcpy(cid, r.cid, UUID_BUF);
    reply_free(&r);
}

static void create_order(stack *st, const char *customer_id, json_int_t total, char id[UUID_BUF],
                         char cid[UUID_BUF])
{
    json_t *b = json_pack("{s:s, s:I}", "customer_id", customer_id, "order_total", total);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    reply r;
    call_json(st, e2e_orders_port(st), "POST", "/orders", text, &r);
    free(text);
    expect_status(&r, 200);
    const char *got = get_str(r.json, "id", r.what);
    if (!txm_uuid_is_valid(got))
        fail_msg("%s: id \"%s\" is not a UUID", r.what, got);
    snprintf(id, UUID_BUF, "%s", got);
    char want[96];
    snprintf(want, sizeof want, "/order/%s", id);
    assert_string_equal(link_href(r.json, "self", r.what), want);
    snprintf(want, sizeof want, "/order/%s/cancel", id);
    assert_string_equal(link_href(r.json, "cancel", r.what), want);
    if (cid != NULL)
        memcpy(cid, r.cid, UUID_BUF);
    reply_free(&r);
}

/* GET /customer/<id> or /order/<id>: 200 with the object, returned (the
 * caller's), its id and self link checked. */
static json_t *get_resource(stack *st, int port, const char *kind, const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/%s/%s", kind, id);
    reply r;
    call_json(st, port, "GET", path, NULL, &r);
    expect_status(&r, 200);
    assert_string_equal(get_str(r.json, "id", r.what), id);
    assert_string_equal(link_href(r.json, "self", r.what), path);
    json_t *j = r.json;
    r.json = NULL;
    return j;
}

static json_t *get_customer(stack *st, const char *id)
{
    return get_resource(st, e2e_customers_port(st), "customer", id);
}

static json_t *get_order(stack *st, const char *id)
{
    return get_resource(st, e2e_orders_port(st), "order", id);
}

static json_int_t available_credit(stack *st, const char *customer_id)
{
    json_t *c = get_customer(st, customer_id);
    json_int_t v = get_int(c, "available_credit", "GET /customer");
    json_decref(c);
    return v;
}

static json_int_t version_of(json_t *obj)
{
    return get_int(obj, "version", "version");
}

/* Polls GET /order/<id> until the order leaves PENDING, which only APPROVED
 * or REJECTED may follow. Returns the order (the caller's). */
static json_t *wait_order_decided(stack *st, const char *id)
{
    long long end = txm_test_now_ms() + ASYNC_MS;
    for (;;) {
        json_t *o = get_order(st, id);
        const char *s = get_str(o, "state", "GET /order");
        if (strcmp(s, "PENDING") != 0) {
            if (strcmp(s, "APPROVED") != 0 && strcmp(s, "REJECTED") != 0)
                fail_msg("order %s went from PENDING to %s", id, s);
            return o;
        }
        json_decref(o);
        if (txm_test_now_ms() >= end)
            fail_msg("order %s still PENDING after %d ms (logs in %s)", id, ASYNC_MS, st->dir);
        txm_test_sleep_ms(POLL_MS);
    }
}

static json_t *expect_order_decided_as(stack *st, const char *id, const char *want)
{
    json_t *o = wait_order_decided(st, id);
    const char *s = get_str(o, "state", "GET /order");
    if (strcmp(s, want) != 0)
        fail_msg("order %s is %s, want %s (logs in %s)", id, s, want, st->dir);
    return o;
}

static void expect_state(json_t *order, const char *want)
{
    assert_string_equal(get_str(order, "state", "GET /order"), want);
}

/* Polls the customer's available credit until it is want; it must never be
 * negative on the way. */
static void wait_available(stack *st, const char *customer_id, json_int_t want)
{
    long long end = txm_test_now_ms() + ASYNC_MS;
    for (;;) {
        json_int_t got = available_credit(st, customer_id);
        if (got == want)
            return;
        if (got < 0)
            fail_msg("customer %s: available_credit %lld is negative", customer_id, (long long)got);
        if (txm_test_now_ms() >= end)
            fail_msg("customer %s: available_credit %lld after %d ms, want %lld", customer_id,
                     (long long)got, ASYNC_MS, (long long)want);
        txm_test_sleep_ms(POLL_MS);
    }
}

static void cancel_order(stack *st, const char *id, reply *r)
{
    char path[96];
    snprintf(path, sizeof path, "/order/%s/cancel", id);
    call_json(st, e2e_orders_port(st), "POST", path, NULL, r);
}

static void expect_cancelled_answer(const reply *r, const char *id)
{
    expect_status(r, 200);
    assert_string_equal(get_str(r->json, "id", r->what), id);
    if (!json_is_object(json_object_get(r->json, "_links")))
        fail_msg("%s: no _links: %s", r->what, r->body);
}

/* ---- events ---- */

/* Receives what is waiting on the watcher's queue (up to wait_ms for the
 * first), keeps it decoded and acknowledges it. */
static void watcher_pull(stack *st, int which, int wait_ms)
{
    watcher *w = &st->w[which];
    txm_delivery **list = NULL;
    size_t n = 0;
    txm_error err = {0};
    if (txm_transport_receive(st->t, w->queue, 64, wait_ms, &list, &n, &err) != TXM_OK)
        fail_msg("receive %s: %s", w->queue, err.text);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *body = txm_delivery_body(list[i], &len);
        txm_msg *m = NULL;
        if (txm_msg_decode(body, len, &m, &err) != TXM_OK)
            fail_msg("%s: an event that does not decode (%s): %.*s", e2e_watched_topics[which],
                     err.text, (int)(len > 300 ? 300 : len), body);
        assert_string_equal(txm_msg_topic(m), e2e_watched_topics[which]);
        if (w->n == w->cap) {
            w->cap = w->cap == 0 ? 64 : w->cap * 2;
            w->msgs = realloc(w->msgs, w->cap * sizeof *w->msgs);
            assert_non_null(w->msgs);
        }
        w->msgs[w->n++] = m;
        assert_int_equal(txm_transport_ack(st->t, list[i], NULL), TXM_OK);
    }
    txm_delivery_list_free(list, n);
}

/* True if the event is about id: its subject (aggregate), or a top-level
 * string of its data. */
static bool mentions(const txm_msg *m, const char *id)
{
    if (strcmp(txm_msg_aggregate_id(m), id) == 0)
        return true;
    json_t *data = json_loads(txm_msg_payload(m), 0, NULL);
    bool found = false;
    const char *key;
    json_t *v;
    json_object_foreach(data, key, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
            found = true;
    }
    json_decref(data);
    return found;
}

/* How many distinct events (by message id) received so far are about id;
 * *first (may be NULL) receives the first. */
static size_t events_about(const watcher *w, const char *id, const txm_msg **first)
{
    size_t count = 0;
    const char *seen[64];
    for (size_t i = 0; i < w->n; i++) {
        if (!mentions(w->msgs[i], id))
            continue;
        bool again = false;
        for (size_t k = 0; k < count && k < 64 && !again; k++)
            again = strcmp(seen[k], txm_msg_id(w->msgs[i])) == 0;
        if (again)
            continue;
        if (count == 0 && first != NULL)
            *first = w->msgs[i];
        if (count < 64)
            seen[count] = txm_msg_id(w->msgs[i]);
        count++;
    }
    return count;
}

/* Waits for the first event of the watched topic about id. Borrows: the
 * result lives as long as the stack. */
static const txm_msg *wait_event(stack *st, int which, const char *id)
{
    long long end = txm_test_now_ms() + ASYNC_MS;
    const txm_msg *m = NULL;
    while (events_about(&st->w[which], id, &m) == 0) {
        if (txm_test_now_ms() >= end)
            fail_msg("no %s event about %s within %d ms (logs in %s)", e2e_watched_topics[which],
                     id, ASYNC_MS, st->dir);
        watcher_pull(st, which, 200);
    }
    return m;
}

/* The event's data (the caller's), after checking its source and the
 * correlation id of the request that caused it, on the envelope and in the
 * data, with the seed's common fields. */
static json_t *event_data(const txm_msg *m, const char *source, const char *cid)
{
    const char *what = txm_msg_topic(m);
    if (strcmp(txm_msg_correlation_id(m), cid) != 0)
        fail_msg("%s event %s: correlation id %s, the request sent %s", what, txm_msg_id(m),
                 txm_msg_correlation_id(m), cid);
    assert_string_equal(txm_msg_source(m), source);
    json_t *data = json_loads(txm_msg_payload(m), 0, NULL);
    if (!json_is_object(data))
        fail_msg("%s event: data is not an object: %s", what, txm_msg_payload(m));
    assert_string_equal(get_str(data, "correlation_id", what), cid);
    assert_string_equal(get_str(data, "event_id", what), txm_msg_id(m));
    expect_recent_time(data, "created_at", what);
    return data;
}

/* Rows of sql (a count) on db. */
static int64_t count_rows(txm_db *db, const char *sql, const txm_value *params, size_t n)
{
    txm_rows *rows = NULL;
    txm_error err = {0};
    if (txm_db_exec(db, sql, params, n, &rows, NULL, &err) != TXM_OK)
        fail_msg("%s: %s", sql, err.text);
    int64_t v = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return v;
}

static int64_t outbox_rows(txm_db *db, const char *topic, const char *aggregate_id)
{
    txm_value p[2] = {TXM_TEXT(topic), TXM_TEXT(aggregate_id)};
    return count_rows(
        db, "SELECT count(*) FROM txmsg_outbox WHERE topic = $1 AND aggregate_id = $2", p, 2);
}

/* Receives from the watcher until the queue stays empty for quiet_ms. */
static void drain_watcher(stack *st, int which, int quiet_ms)
{
    size_t before;
    do {
        before = st->w[which].n;
        watcher_pull(st, which, quiet_ms);
    } while (st->w[which].n != before);
}

/* ---- scenarios ---- */

static void customer_is_created_readable_and_published(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char id[UUID_BUF], cid[UUID_BUF];
    create_customer(st, "Jane Doe", 24999, id, cid);

    json_t *c = get_customer(st, id);
    assert_string_equal(get_str(c, "name", "GET /customer"), "Jane Doe");
    assert_int_equal(get_int(c, "credit_limit", "GET /customer"), 24999);
    assert_int_equal(get_int(c, "available_credit", "GET /customer"), 24999);
    version_of(c);
    expect_recent_time(c, "created_at", "GET /customer");
    if (!json_is_null(json_object_get(c, "updated_at")))
        fail_msg("GET /customer: updated_at is not null for an unchanged customer");
    json_decref(c);

    json_t *data = event_data(wait_event(st, W_CUSTOMER_CREATED, id), "customers", cid);
    assert_string_equal(get_str(data, "customer_id", "customer--created"), id);
    assert_int_equal(get_int(data, "credit_limit", "customer--created"), 24999);
    assert_string_equal(get_str(data, "name", "customer--created"), "Jane Doe");
    json_decref(data);
    e2e_scenario_end(st);
}

static void unknown_customer_is_404(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char id[UUID_BUF], path[64];
    assert_int_equal(txm_uuid_v7(id, NULL), TXM_OK);
    snprintf(path, sizeof path, "/customer/%s", id);
    reply r;
    call_json(st, e2e_customers_port(st), "GET", path, NULL, &r);
    expect_error(&r, 404, "CUSTOMER_NOT_FOUND_ERROR");
    if (!json_is_object(json_object_get(r.json, "_links")))
        fail_msg("%s: 404 without _links: %s", r.what, r.body);
    reply_free(&r);
    e2e_scenario_end(st);
}

static void order_within_credit_is_approved_and_over_it_rejected(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF], order[UUID_BUF];
    create_customer(st, "Reserve", 24999, customer, NULL);
    json_t *c = get_customer(st, customer);
    json_int_t version = version_of(c);
    json_decref(c);

    create_order(st, customer, 14999, order, NULL);
    json_decref(expect_order_decided_as(st, order, "APPROVED"));
    /* The reservation committed before the event that approved the order. */
    c = get_customer(st, customer);
    assert_int_equal(get_int(c, "available_credit", "GET /customer"), 10000);
    assert_int_equal(get_int(c, "credit_limit", "GET /customer"), 24999);
    assert_int_equal(version_of(c), version + 1);
    expect_recent_time(c, "updated_at", "GET /customer after a reservation");
    json_decref(c);

    create_order(st, customer, 30000, order, NULL);
    json_decref(expect_order_decided_as(st, order, "REJECTED"));
    c = get_customer(st, customer);
    assert_int_equal(get_int(c, "available_credit", "GET /customer"), 10000);
    assert_int_equal(version_of(c), version + 1);
    json_decref(c);

    /* Exactly what is left is enough. */
    create_order(st, customer, 10000, order, NULL);
    json_decref(expect_order_decided_as(st, order, "APPROVED"));
    assert_int_equal(available_credit(st, customer), 0);
    e2e_scenario_end(st);
}

static void order_for_unknown_customer_is_rejected_by_validation_failed(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF], order[UUID_BUF], cid[UUID_BUF];
    assert_int_equal(txm_uuid_v7(customer, NULL), TXM_OK);
    create_order(st, customer, 100, order, cid);
    json_decref(expect_order_decided_as(st, order, "REJECTED"));

    json_t *data = event_data(wait_event(st, W_VALIDATION_FAILED, order), "customers", cid);
    assert_string_equal(get_str(data, "order_id", "customer--validation-failed"), order);
    assert_string_equal(get_str(data, "customer_id", "customer--validation-failed"), customer);
    assert_string_equal(get_str(data, "error", "customer--validation-failed"),
                        "CUSTOMER_NOT_FOUND_ERROR");
    json_decref(data);
    e2e_scenario_end(st);
}

static void new_order_is_pending_at_once_and_published(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF], order[UUID_BUF], cid[UUID_BUF];
    create_customer(st, "Pending", 24999, customer, NULL);
    /* With the orders relay stopped nothing can move the order on, so the
     * state the POST left is what GET shows. */
    e2e_stop_orders_relays(st);
    create_order(st, customer, 14999, order, cid);
    json_t *o = get_order(st, order);
    expect_state(o, "PENDING");
    assert_string_equal(get_str(o, "customer_id", "GET /order"), customer);
    assert_int_equal(get_int(o, "order_total", "GET /order"), 14999);
    version_of(o);
    expect_recent_time(o, "created_at", "GET /order");
    if (!json_is_null(json_object_get(o, "updated_at")))
        fail_msg("GET /order: updated_at is not null for an unchanged order");
    json_decref(o);
    assert_int_equal(outbox_rows(st->orders_db, "order--created", order), 1);
    e2e_restart_orders_relays(st);

    json_t *data = event_data(wait_event(st, W_ORDER_CREATED, order), "orders", cid);
    assert_string_equal(get_str(data, "order_id", "order--created"), order);
    assert_string_equal(get_str(data, "customer_id", "order--created"), customer);
    assert_int_equal(get_int(data, "order_total", "order--created"), 14999);
    assert_string_equal(get_str(data, "state", "order--created"), "PENDING");
    json_decref(data);
    json_decref(expect_order_decided_as(st, order, "APPROVED"));
    e2e_scenario_end(st);
}

static void unknown_order_is_404(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char id[UUID_BUF], path[80];
    assert_int_equal(txm_uuid_v7(id, NULL), TXM_OK);
    snprintf(path, sizeof path, "/order/%s", id);
    reply r;
    call_json(st, e2e_orders_port(st), "GET", path, NULL, &r);
    expect_error(&r, 404, "ORDER_NOT_FOUND_ERROR");
    reply_free(&r);
    cancel_order(st, id, &r);
    expect_error(&r, 404, "ORDER_NOT_FOUND_ERROR");
    reply_free(&r);
    e2e_scenario_end(st);
}

static void cancelling_approved_order_releases_credit_and_publishes(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF], order[UUID_BUF];
    create_customer(st, "Cancel", 24999, customer, NULL);
    create_order(st, customer, 14999, order, NULL);
    json_t *o = expect_order_decided_as(st, order, "APPROVED");
    json_int_t version = version_of(o);
    json_decref(o);
    wait_available(st, customer, 10000);

    reply r;
    cancel_order(st, order, &r);
    expect_cancelled_answer(&r, order);
    o = get_order(st, order);
    expect_state(o, "CANCELLED");
    assert_int_equal(version_of(o), version + 1);
    expect_recent_time(o, "updated_at", "GET /order after cancel");
    json_decref(o);

    json_t *data = event_data(wait_event(st, W_ORDER_CANCELLED, order), "orders", r.cid);
    assert_string_equal(get_str(data, "order_id", "order--cancelled"), order);
    assert_string_equal(get_str(data, "customer_id", "order--cancelled"), customer);
    assert_int_equal(get_int(data, "order_total", "order--cancelled"), 14999);
    assert_string_equal(get_str(data, "state", "order--cancelled"), "CANCELLED");
    json_decref(data);
    reply_free(&r);
    wait_available(st, customer, 24999);
    e2e_scenario_end(st);
}

static void cancelling_pending_order_is_400_and_keeps_it_pending(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF], order[UUID_BUF];
    create_customer(st, "Early", 24999, customer, NULL);
    e2e_stop_orders_relays(st);
    create_order(st, customer, 1000, order, NULL);
    json_t *o = get_order(st, order);
    json_int_t version = version_of(o);
    json_decref(o);

    reply r;
    cancel_order(st, order, &r);
    expect_error(&r, 400, "PENDING_ORDER_CANNOT_BE_CANCELLED_ERROR");
    reply_free(&r);
    o = get_order(st, order);
    expect_state(o, "PENDING");
    assert_int_equal(version_of(o), version);
    json_decref(o);
    assert_int_equal(outbox_rows(st->orders_db, "order--cancelled", order), 0);

    /* Still a live order: once the relay runs, it is approved as usual. */
    e2e_restart_orders_relays(st);
    json_decref(expect_order_decided_as(st, order, "APPROVED"));
    wait_available(st, customer, 23999);
    e2e_scenario_end(st);
}

static void cancelling_twice_answers_200_and_publishes_once(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF], order[UUID_BUF];
    create_customer(st, "Twice", 24999, customer, NULL);
    create_order(st, customer, 5000, order, NULL);
    json_t *o = expect_order_decided_as(st, order, "APPROVED");
    json_int_t version = version_of(o);
    json_decref(o);

    reply first, second;
    cancel_order(st, order, &first);
    expect_cancelled_answer(&first, order);
    cancel_order(st, order, &second);
    expect_cancelled_answer(&second, order);
    reply_free(&second);
    o = get_order(st, order);
    expect_state(o, "CANCELLED");
    assert_int_equal(version_of(o), version + 1); /* the second cancel changed nothing */
    json_decref(o);

    /* One event committed. And once a later commit of the same outbox has
     * reached the broker, so has every earlier one: one delivery. */
    assert_int_equal(outbox_rows(st->orders_db, "order--cancelled", order), 1);
    json_decref(event_data(wait_event(st, W_ORDER_CANCELLED, order), "orders", first.cid));
    reply_free(&first);
    char nobody[UUID_BUF], marker[UUID_BUF];
    assert_int_equal(txm_uuid_v7(nobody, NULL), TXM_OK);
    create_order(st, nobody, 1, marker, NULL);
    wait_event(st, W_ORDER_CREATED, marker);
    drain_watcher(st, W_ORDER_CANCELLED, 300);
    assert_int_equal(events_about(&st->w[W_ORDER_CANCELLED], order, NULL), 1);
    wait_available(st, customer, 24999);
    e2e_scenario_end(st);
}

/* ---- concurrency: one burst of orders against one credit limit ---- */

typedef struct burst_job {
    int port;
    const char *customer_id;
    pthread_barrier_t *go;
    int status;        /* HTTP status; -1 when the exchange failed */
    char id[UUID_BUF]; /* the new order */
    char error[300];
} burst_job;

static void *post_order_job(void *arg)
{
    burst_job *j = arg;
    char body[160];
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"order_total\":1000}", j->customer_id);
    const char *headers[] = {"Content-Type: application/json", NULL};
    pthread_barrier_wait(j->go);
    txm_testhttp_response r;
    if (txm_testhttp_request("POST", "127.0.0.1", j->port, "/orders", headers, body, strlen(body),
                             HTTP_MS, &r) != 0) {
        j->status = -1;
        snprintf(j->error, sizeof j->error, "%s", r.error);
    } else {
        j->status = r.status;
        json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
        const char *id = json_string_value(json_object_get(o, "id"));
        snprintf(j->id, sizeof j->id, "%s", id != NULL ? id : "");
        snprintf(j->error, sizeof j->error, "%s", r.body);
        json_decref(o);
    }
    txm_testhttp_response_fini(&r);
    return NULL;
}

typedef struct credit_sampler {
    int port;
    char path[80]; /* GET /customer/<id> */
    atomic_bool stop;
    json_int_t min; /* the lowest available_credit seen */
    long samples;
    long failures;
    char failure[300]; /* the last failed sample */
} credit_sampler;

static void *sample_credit(void *arg)
{
    credit_sampler *s = arg;
    while (!atomic_load(&s->stop)) {
        txm_testhttp_response r;
        json_t *c = NULL;
        if (txm_testhttp_request("GET", "127.0.0.1", s->port, s->path, NULL, NULL, 0, HTTP_MS,
                                 &r) == 0 &&
            r.status == 200)
            c = json_loadb(r.body, r.body_len, 0, NULL);
        json_t *v = json_object_get(c, "available_credit");
        if (json_is_integer(v)) {
            if (s->samples == 0 || json_integer_value(v) < s->min)
                s->min = json_integer_value(v);
            s->samples++;
        } else {
            s->failures++;
            snprintf(s->failure, sizeof s->failure, "status %d: %s %s", r.status,
                     r.body != NULL ? r.body : "", r.error);
        }
        json_decref(c);
        txm_testhttp_response_fini(&r);
        txm_test_sleep_ms(5);
    }
    return NULL;
}

static void fifty_concurrent_orders_never_overspend(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF];
    create_customer(st, "Burst", 20000, customer, NULL);

    credit_sampler s = {.port = e2e_customers_port(st)};
    snprintf(s.path, sizeof s.path, "/customer/%s", customer);
    atomic_init(&s.stop, false);
    pthread_t sampler;
    assert_int_equal(pthread_create(&sampler, NULL, sample_credit, &s), 0);

    static burst_job jobs[BURST_ORDERS];
    pthread_t threads[BURST_ORDERS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, BURST_ORDERS);
    for (int i = 0; i < BURST_ORDERS; i++) {
        jobs[i] = (burst_job){.port = e2e_orders_port(st), .customer_id = customer, .go = &go};
        assert_int_equal(pthread_create(&threads[i], NULL, post_order_job, &jobs[i]), 0);
    }
    for (int i = 0; i < BURST_ORDERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < BURST_ORDERS; i++) {
        if (jobs[i].status != 200 || !txm_uuid_is_valid(jobs[i].id)) {
            atomic_store(&s.stop, true);
            pthread_join(sampler, NULL);
            fail_msg("POST /orders #%d of the burst: status %d: %s", i, jobs[i].status,
                     jobs[i].error);
        }
    }

    /* Every order is decided; the customer's credit is watched meanwhile. */
    int approved = 0, rejected = 0, undecided = BURST_ORDERS;
    bool decided[BURST_ORDERS] = {false};
    long long end = txm_test_now_ms() + BURST_MS;
    while (undecided > 0 && txm_test_now_ms() < end) {
        for (int i = 0; i < BURST_ORDERS; i++) {
            if (decided[i])
                continue;
            json_t *o = get_order(st, jobs[i].id);
            const char *state_text = get_str(o, "state", "GET /order");
            if (strcmp(state_text, "APPROVED") == 0)
                approved++;
            else if (strcmp(state_text, "REJECTED") == 0)
                rejected++;
            else if (strcmp(state_text, "PENDING") != 0)
                fail_msg("order %s of the burst is %s", jobs[i].id, state_text);
            decided[i] = strcmp(state_text, "PENDING") != 0;
            undecided -= decided[i];
            json_decref(o);
        }
        if (undecided > 0)
            txm_test_sleep_ms(100);
    }
    atomic_store(&s.stop, true);
    pthread_join(sampler, NULL);
    if (undecided > 0)
        fail_msg("%d of %d orders still PENDING after %d ms (logs in %s)", undecided, BURST_ORDERS,
                 BURST_MS, st->dir);
    fprintf(stderr, "burst on %s: %ld credit samples, lowest %lld\n", st->name, s.samples,
            (long long)s.min);
    if (s.failures > 0)
        fail_msg("%ld GET %s failed during the burst, last: %s", s.failures, s.path, s.failure);
    assert_true(s.samples > 0);
    if (s.min < 0)
        fail_msg("available_credit went down to %lld", (long long)s.min);
    assert_int_equal(approved, 20);
    assert_int_equal(rejected, 30);
    json_t *c = get_customer(st, customer);
    assert_int_equal(get_int(c, "available_credit", "GET /customer"), 0);
    assert_int_equal(get_int(c, "credit_limit", "GET /customer"), 20000);
    json_decref(c);
    e2e_scenario_end(st);
}

/* ---- bad input ---- */

typedef struct table_counts {
    int64_t customers, orders, customers_outbox, orders_outbox;
} table_counts;

static table_counts count_tables(stack *st)
{
    return (table_counts){
        .customers = count_rows(st->customers_db, "SELECT count(*) FROM customers", NULL, 0),
        .orders = count_rows(st->orders_db, "SELECT count(*) FROM orders", NULL, 0),
        .customers_outbox =
            count_rows(st->customers_db, "SELECT count(*) FROM txmsg_outbox", NULL, 0),
        .orders_outbox = count_rows(st->orders_db, "SELECT count(*) FROM txmsg_outbox", NULL, 0),
    };
}

/* The counts once two looks 300 ms apart agree: consumers may still be
 * finishing what earlier scenarios started. */
static table_counts settled_counts(stack *st)
{
    table_counts prev = count_tables(st);
    long long end = txm_test_now_ms() + ASYNC_MS;
    for (;;) {
        txm_test_sleep_ms(300);
        table_counts cur = count_tables(st);
        if (memcmp(&cur, &prev, sizeof cur) == 0 || txm_test_now_ms() >= end)
            return cur;
        prev = cur;
    }
}

/* A body of len bytes that would be a valid customer but for its size. */
static char *big_customer_body(size_t len)
{
    char *b = malloc(len + 1);
    assert_non_null(b);
    memset(b, 'a', len);
    memcpy(b, "{\"credit_limit\":1,\"name\":\"", 26);
    memcpy(b + len - 2, "\"}", 2);
    b[len] = '\0';
    return b;
}

static void bad_input_gets_4xx_and_changes_nothing(void **state)
{
    stack *st = e2e_scenario_begin(state);
    char customer[UUID_BUF];
    create_customer(st, "Valid", 1000, customer, NULL);
    table_counts before = settled_counts(st);

    char long_name[2100];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    char long_name_body[2200];
    snprintf(long_name_body, sizeof long_name_body, "{\"name\":\"%s\",\"credit_limit\":100}",
             long_name);
    static const char *const bad_customers[] = {
        "{\"name\": \"Jane\", \"credit_limit\": 1", /* malformed JSON */
        "not json at all",
        "",
        "[\"Jane\", 100]",         /* not an object */
        "{\"credit_limit\": 100}", /* missing */
        "{\"name\": \"Jane\"}",
        "{\"name\": 5, \"credit_limit\": 100}", /* wrongly typed */
        "{\"name\": null, \"credit_limit\": 100}",
        "{\"name\": \"Jane\", \"credit_limit\": \"100\"}",
        "{\"name\": \"Jane\", \"credit_limit\": true}",
        "{\"name\": \"Jane\", \"credit_limit\": null}",
        "{\"name\": \"Jane\", \"credit_limit\": -1}",   /* negative */
        "{\"name\": \"Jane\", \"credit_limit\": 10.5}", /* not an integer */
        "{\"name\": \"Jane\", \"credit_limit\": 100000000000000000000000}",
        "{\"name\": \"\", \"credit_limit\": 100}", /* empty name */
    };
    reply r;
    for (size_t i = 0; i < sizeof bad_customers / sizeof bad_customers[0]; i++) {
        call_json(st, e2e_customers_port(st), "POST", "/customers", bad_customers[i], &r);
        if (r.status != 400)
            fail_msg("POST /customers %s: status %d, want 400; body %s", bad_customers[i], r.status,
                     r.body);
        expect_validation_error(&r);
        reply_free(&r);
    }
    call_json(st, e2e_customers_port(st), "POST", "/customers", long_name_body, &r);
    expect_validation_error(&r);
    reply_free(&r);

    char orders_body[12][200];
    static const char *const bad_orders[] = {
        "{\"customer_id\": \"%s\", \"order_total\": ",
        "{\"order_total\": 100}",
        "{\"customer_id\": \"%s\"}",
        "{\"customer_id\": 42, \"order_total\": 100}",
        "{\"customer_id\": \"not-a-uuid\", \"order_total\": 100}",
        "{\"customer_id\": \"%s\", \"order_total\": \"100\"}",
        "{\"customer_id\": \"%s\", \"order_total\": -100}",
        "{\"customer_id\": \"%s\", \"order_total\": 99.5}",
        "{\"customer_id\": null, \"order_total\": 100}",
        "{\"customer_id\": \"%s\", \"order_total\": [100]}",
        "[]",
    };
    size_t n_bad_orders = sizeof bad_orders / sizeof bad_orders[0];
    for (size_t i = 0; i < n_bad_orders; i++) {
        /* The customer exists: a missing check would create an order. */
        const char *fmt = bad_orders[i];
        const char *hole = strstr(fmt, "%s");
        if (hole != NULL)
            snprintf(orders_body[i], sizeof orders_body[i], "%.*s%s%s", (int)(hole - fmt), fmt,
                     customer, hole + 2);
        else
            snprintf(orders_body[i], sizeof orders_body[i], "%s", fmt);
        call_json(st, e2e_orders_port(st), "POST", "/orders", orders_body[i], &r);
        if (r.status != 400)
            fail_msg("POST /orders %s: status %d, want 400; body %s", orders_body[i], r.status,
                     r.body);
        expect_validation_error(&r);
        reply_free(&r);
    }

    /* Malformed UUIDs in paths. */
    static const struct {
        bool orders;
        const char *method, *path;
    } bad_paths[] = {
        {false, "GET", "/customer/not-a-uuid"},
        {false, "GET", "/customer/0000000g-0000-4000-8000-000000000000"},
        {true, "GET", "/order/not-a-uuid"},
        {true, "GET", "/order/12345"},
        {true, "POST", "/order/not-a-uuid/cancel"},
    };
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        call_json(st, bad_paths[i].orders ? e2e_orders_port(st) : e2e_customers_port(st),
                  bad_paths[i].method, bad_paths[i].path, NULL, &r);
        expect_validation_error(&r);
        reply_free(&r);
    }

    /* Bodies over the limit. */
    size_t big_len = 2u << 20;
    char *big = big_customer_body(big_len);
    call(st, e2e_customers_port(st), "POST", "/customers", big, big_len, &r);
    expect_status(&r, 413);
    reply_free(&r);
    call(st, e2e_orders_port(st), "POST", "/orders", big, big_len, &r);
    expect_status(&r, 413);
    reply_free(&r);
    free(big);

    table_counts after = count_tables(st);
    assert_int_equal(after.customers, before.customers);
    assert_int_equal(after.orders, before.orders);
    assert_int_equal(after.customers_outbox, before.customers_outbox);
    assert_int_equal(after.orders_outbox, before.orders_outbox);
    /* The services still work. */
    assert_int_equal(available_credit(st, customer), 1000);
    e2e_scenario_end(st);
}

/* Polls GET path until it answers http_status with "status": want. */
static void wait_health(stack *st, int port, const char *path, int http_status, const char *want)
{
    long long end = txm_test_now_ms() + START_MS;
    char last[200] = "(no answer)";
    while (txm_test_now_ms() < end) {
        txm_testhttp_response r;
        if (txm_testhttp_request("GET", "127.0.0.1", port, path, NULL, NULL, 0, 2000, &r) == 0) {
            json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
            const char *s = json_string_value(json_object_get(j, "status"));
            bool ok = r.status == http_status && s != NULL && strcmp(s, want) == 0;
            snprintf(last, sizeof last, "%d %s", r.status, r.body);
            json_decref(j);
            txm_testhttp_response_fini(&r);
            if (ok)
                return;
        } else {
            txm_testhttp_response_fini(&r);
        }
        txm_test_sleep_ms(POLL_MS);
    }
    fail_msg("GET %s never answered %d status %s; last %s (logs in %s)", path, http_status, want,
             last, st->dir);
}

static int broker_port(const stack *st)
{
    const char *colon = strrchr(st->broker_url, ':');
    return colon != NULL ? (int)strtol(colon + 1, NULL, 10) : 0;
}

/* Services and relays started while nats-server is down: the services
 * answer (health degraded), take an order into their outbox, and once the
 * broker starts the order is published, reserved and approved. */
static void services_started_before_their_broker_take_orders(void **state)
{
    stack *st = e2e_scenario_begin(state);
    if (!st->pg_nats) { /* the embedded broker is a file: it is never away */
        e2e_scenario_end(st);
        skip();
    }
    for (int i = 0; i < e2e_n_procs(st); i++)
        e2e_stop_proc(&st->procs[i]);
    txm_testnats_stop(st->nats);
    st->nats = 0;
    for (int i = 0; i < e2e_n_procs(st); i++)
        assert_true(e2e_start_proc(st, i));
    wait_health(st, e2e_customers_port(st), "/customers/health", 200, "degraded");
    wait_health(st, e2e_orders_port(st), "/orders/health", 200, "degraded");
    char customer[UUID_BUF], order[UUID_BUF];
    create_customer(st, "Early Bird", 5000, customer, NULL);
    create_order(st, customer, 1500, order, NULL);
    json_t *o = get_order(st, order);
    expect_state(o, "PENDING");
    json_decref(o);

    char store[600];
    snprintf(store, sizeof store, "%s/nats", st->dir);
    st->nats = txm_testnats_start(store, broker_port(st));
    assert_true(st->nats > 0);
    json_decref(expect_order_decided_as(st, order, "APPROVED"));
    wait_available(st, customer, 3500);
    wait_health(st, e2e_orders_port(st), "/orders/health", 200, "ok");
    e2e_scenario_end(st);
}

/* While PostgreSQL is down, a request gets 503 with a JSON error at once and
 * writes nothing; once it is back the same services take orders again. */
static void requests_during_a_database_outage_get_503_and_write_nothing(void **state)
{
    stack *st = e2e_scenario_begin(state);
    if (!st->pg_nats) {
        e2e_scenario_end(st);
        skip();
    }
    char customer[UUID_BUF], order[UUID_BUF];
    create_customer(st, "Patient Customer", 5000, customer, NULL);
    int64_t orders_before = count_rows(st->orders_db, "SELECT count(*) FROM orders", NULL, 0);
    assert_true(txm_testdb_pg_crash());
    json_t *b = json_pack("{s:s, s:I}", "customer_id", customer, "order_total", (json_int_t)100);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    reply r;
    long long t0 = txm_test_now_ms();
    call_json(st, e2e_orders_port(st), "POST", "/orders", text, &r);
    long long took_ms = txm_test_now_ms() - t0;
    free(text);
    expect_error(&r, 503, "SERVICE_UNAVAILABLE");
    reply_free(&r);
    if (took_ms > 10000)
        fail_msg("POST /orders took %lld ms to answer 503", took_ms);
    wait_health(st, e2e_orders_port(st), "/orders/health", 503, "unavailable");
    assert_true(txm_testdb_pg_start());
    wait_health(st, e2e_orders_port(st), "/orders/health", 200, "ok");
    create_order(st, customer, 1000, order, NULL);
    assert_int_equal(count_rows(st->orders_db, "SELECT count(*) FROM orders", NULL, 0),
                     orders_before + 1);
    json_decref(expect_order_decided_as(st, order, "APPROVED"));
    e2e_scenario_end(st);
}

/* Sum of the txmsg_consumer_processed_total samples on a service's
 * GET /metrics: the messages this instance handled. */
static long processed_by(const txm_testsvc *p)
{
    txm_testhttp_response r;
    if (txm_testhttp_request("GET", "127.0.0.1", p->port, "/metrics", NULL, NULL, 0, HTTP_MS, &r) !=
            0 ||
        r.status != 200) {
        txm_testhttp_response_fini(&r);
        fail_msg("GET /metrics of %s failed (logs in %s)", p->name, p->log);
    }
    long sum = 0;
    static const char name[] = "txmsg_consumer_processed_total{";
    for (const char *at = strstr(r.body, name); at != NULL; at = strstr(at + 1, name)) {
        const char *value = strstr(at, "} ");
        if (value != NULL && (at == r.body || at[-1] == '\n'))
            sum += strtol(value + 2, NULL, 10);
    }
    txm_testhttp_response_fini(&r);
    return sum;
}

/* Two instances: both took messages from the shared queues, and the second
 * relay of each database only stood by: no event reached the watchers
 * twice (a clean stop publishes nothing again). The last scenario ended a
 * while ago, so a second copy would be waiting already. */
static void every_instance_consumed_and_no_event_came_twice(void **state)
{
    stack *st = e2e_scenario_begin(state);
    for (int i = 0; i < e2e_n_procs(st); i++) {
        const txm_testsvc *p = &st->procs[i];
        if (p->port == 0)
            continue;
        long n = processed_by(p);
        fprintf(stderr, "%s on %s: %ld messages processed\n", p->name, st->name, n);
        if (n == 0)
            fail_msg("%s processed no message: its queues are not shared", p->name);
    }
    for (int w = 0; w < W_COUNT; w++) {
        drain_watcher(st, w, 50);
        for (size_t i = 0; i < st->w[w].n; i++)
            for (size_t k = 0; k < i; k++)
                if (strcmp(txm_msg_id(st->w[w].msgs[i]), txm_msg_id(st->w[w].msgs[k])) == 0)
                    fail_msg("%s event %s came twice", e2e_watched_topics[w],
                             txm_msg_id(st->w[w].msgs[i]));
    }
    e2e_scenario_end(st);
}

static void services_and_relays_exit_0_on_sigterm(void **state)
{
    stack *st = e2e_scenario_begin(state);
    /* Services first, so the relays see their last commits. */
    e2e_expect_clean_stop_all(st, P_CUSTOMERS, P_ORDERS);
    e2e_expect_clean_stop_all(st, P_CUSTOMERS_RELAY, P_ORDERS_RELAY);
    e2e_scenario_end(st);
}

int main(void)
{
    const struct CMUnitTest scenarios[] = {
        cmocka_unit_test(customer_is_created_readable_and_published),
        cmocka_unit_test(unknown_customer_is_404),
        cmocka_unit_test(order_within_credit_is_approved_and_over_it_rejected),
        cmocka_unit_test(order_for_unknown_customer_is_rejected_by_validation_failed),
        cmocka_unit_test(new_order_is_pending_at_once_and_published),
        cmocka_unit_test(unknown_order_is_404),
        cmocka_unit_test(cancelling_approved_order_releases_credit_and_publishes),
        cmocka_unit_test(cancelling_pending_order_is_400_and_keeps_it_pending),
        cmocka_unit_test(cancelling_twice_answers_200_and_publishes_once),
        cmocka_unit_test(fifty_concurrent_orders_never_overspend),
        cmocka_unit_test(bad_input_gets_4xx_and_changes_nothing),
        cmocka_unit_test(services_started_before_their_broker_take_orders),
        cmocka_unit_test(requests_during_a_database_outage_get_503_and_write_nothing),
        cmocka_unit_test(services_and_relays_exit_0_on_sigterm),
    };
    int failed = cmocka_run_group_tests_name("e2e embedded (SQLite, embedded broker)", scenarios,
                                             e2e_setup_embedded, e2e_teardown);
    failed += cmocka_run_group_tests_name("e2e postgresql+nats", scenarios, e2e_setup_pg_nats,
                                          e2e_teardown);
    /* Two instances of each service and relay: the sagas and the burst. */
    const struct CMUnitTest twice[] = {
        cmocka_unit_test(order_within_credit_is_approved_and_over_it_rejected),
        cmocka_unit_test(order_for_unknown_customer_is_rejected_by_validation_failed),
        cmocka_unit_test(new_order_is_pending_at_once_and_published),
        cmocka_unit_test(cancelling_approved_order_releases_credit_and_publishes),
        cmocka_unit_test(cancelling_pending_order_is_400_and_keeps_it_pending),
        cmocka_unit_test(cancelling_twice_answers_200_and_publishes_once),
        cmocka_unit_test(fifty_concurrent_orders_never_overspend),
        cmocka_unit_test(every_instance_consumed_and_no_event_came_twice),
        cmocka_unit_test(services_and_relays_exit_0_on_sigterm),
    };
    failed += cmocka_run_group_tests_name("e2e embedded, 2 instances", twice,
                                          e2e_setup_embedded_twice, e2e_teardown);
    failed += cmocka_run_group_tests_name("e2e postgresql+nats, 2 instances", twice,
                                          e2e_setup_pg_nats_twice, e2e_teardown);
    return failed;
}
