/* Orders HTTP API (paths and JSON as in the seed, amounts in cents):
 *   POST /orders {"customer_id": "<uuid>", "order_total": 10000}
 *   GET  /order/<id>
 *   POST /order/<id>/cancel
 * Invalid input answers 400 VALIDATION_ERROR naming the field, and nothing
 * is written. Each change and its event commit in one unit of work, re-run
 * on an optimistic-lock conflict.
 * Cancelling: APPROVED -> CANCELLED with order--cancelled; CANCELLED again
 * answers 200 with no event; PENDING answers 400
 * PENDING_ORDER_CANNOT_BE_CANCELLED_ERROR; REJECTED answers 400
 * ORDER_CANNOT_BE_CANCELLED_ERROR. */
#include <stdio.h>
#include <string.h>

#include "orders.h"

#define ORDER_NOT_FOUND_ERROR "ORDER_NOT_FOUND_ERROR"
#define PENDING_NOT_CANCELLABLE "PENDING_ORDER_CANNOT_BE_CANCELLED_ERROR"
#define NOT_CANCELLABLE "ORDER_CANNOT_BE_CANCELLED_ERROR"

/* The order and the request's correlation id for one unit of work. */
typedef struct create_ctx {
    order o;
    const char *cid;
} create_ctx;

static txm_status create_unit(void *ctx, txm_uow *uow, txm_error *err)
{
    const create_ctx *c = ctx;
    txm_msg *event = NULL;
    txm_status st = orders_event(TOPIC_ORDER_CREATED, &c->o, c->cid, &event, err);
    if (st == TXM_OK)
        st = orders_insert(uow, &c->o, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &event, err);
    txm_msg_free(event);
    return st;
}

static json_t *id_and_links(const char *id)
{
    return json_pack("{s:s, s:o}", "id", id, "_links", ex_links("/order/", id, true));
}

static void reply_not_found(txm_http_request *req, const char *id)
{
    ex_reply_json(req, 404,
                  json_pack("{s:s, s:o}", "error", ORDER_NOT_FOUND_ERROR, "_links",
                            ex_links("/order/", id, false)));
}

static void create_order(void *ctx, txm_http_request *req)
{
    orders_svc *svc = ctx;
    create_ctx c = {.cid = txm_http_request_correlation_id(req)};
    json_t *body = ex_body_object(req);
    if (body == NULL)
        return;
    bool ok = ex_field_uuid(req, body, "customer_id", c.o.customer_id) &&
              ex_field_cents(req, body, "order_total", 1, &c.o.order_total);
    json_decref(body);
    if (!ok)
        return;
    snprintf(c.o.state, sizeof c.o.state, "%s", ORDER_PENDING);
    ex_now(c.o.created_at);
    txm_error err = {0};
    txm_status st = txm_uuid_v7(c.o.id, &err);
    if (st == TXM_OK)
        st = ex_run_unit(svc->db, create_unit, &c, &err);
    if (st != TXM_OK) {
        ex_reply_system_error(req, svc->log, "create order", &err);
        return;
    }
    txm_log_write(svc->log, TXM_LOG_INFO, c.cid, "order %s created: %lld for customer %s", c.o.id,
                  (long long)c.o.order_total, c.o.customer_id);
    ex_reply_json(req, 200, id_and_links(c.o.id));
}

static json_t *order_json(const order *o)
{
    json_t *updated = o->updated_at[0] != '\0' ? json_string(o->updated_at) : json_null();
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o}", "id", o->id, "customer_id",
                     o->customer_id, "state", o->state, "order_total", (json_int_t)o->order_total,
                     "version", (json_int_t)o->version, "created_at", o->created_at, "updated_at",
                     updated, "_links", ex_links("/order/", o->id, true));
}

static void get_order(void *ctx, txm_http_request *req)
{
    orders_svc *svc = ctx;
    char id[TXM_UUID_LEN + 1];
    if (!ex_path_uuid(req, "id", id))
        return;
    order o;
    txm_error err = {0};
    txm_status st = orders_find(svc->db, NULL, id, &o, &err);
    if (st == TXM_NOT_FOUND)
        reply_not_found(req, id);
    else if (st != TXM_OK)
        ex_reply_system_error(req, svc->log, "get order", &err);
    else
        ex_reply_json(req, 200, order_json(&o));
}

/* One cancel attempt and its outcome. */
typedef struct cancel_ctx {
    const char *id;
    const char *cid;
    order o;
    bool found;
    const char *refusal; /* error code of a 400, or NULL */
    bool cancelled;      /* this attempt moved the order and published */
} cancel_ctx;

static txm_status cancel_unit(void *ctx, txm_uow *uow, txm_error *err)
{
    cancel_ctx *c = ctx;
    c->found = c->cancelled = false;
    c->refusal = NULL;
    txm_status st = orders_find(NULL, uow, c->id, &c->o, err);
    if (st == TXM_NOT_FOUND)
        return TXM_OK;
    if (st != TXM_OK)
        return st;
    c->found = true;
    if (strcmp(c->o.state, ORDER_CANCELLED) == 0)
        return TXM_OK; /* cancelled already: the same answer, no second event */
    if (strcmp(c->o.state, ORDER_APPROVED) != 0) {
        c->refusal =
            strcmp(c->o.state, ORDER_PENDING) == 0 ? PENDING_NOT_CANCELLABLE : NOT_CANCELLABLE;
        return TXM_OK;
    }
    txm_msg *event = NULL;
    st = orders_set_state(uow, &c->o, ORDER_CANCELLED, err);
    if (st == TXM_OK)
        st = orders_event(TOPIC_ORDER_CANCELLED, &c->o, c->cid, &event, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &event, err);
    txm_msg_free(event);
    c->cancelled = st == TXM_OK;
    return st;
}

static void cancel_order(void *ctx, txm_http_request *req)
{
    orders_svc *svc = ctx;
    cancel_ctx c = {.cid = txm_http_request_correlation_id(req)};
    char id[TXM_UUID_LEN + 1];
    if (!ex_path_uuid(req, "id", id))
        return;
    c.id = id;
    txm_error err = {0};
    txm_status st = ex_run_unit(svc->db, cancel_unit, &c, &err);
    if (st != TXM_OK) {
        ex_reply_system_error(req, svc->log, "cancel order", &err);
    } else if (!c.found) {
        reply_not_found(req, id);
    } else if (c.refusal != NULL) {
        char detail[160];
        snprintf(detail, sizeof detail, "order %s is %s; only APPROVED orders can be cancelled", id,
                 c.o.state);
        txm_http_reply_error(req, 400, c.refusal, detail, NULL);
    } else {
        if (c.cancelled)
            txm_log_write(svc->log, TXM_LOG_INFO, c.cid, "order %s cancelled", id);
        ex_reply_json(req, 200, id_and_links(id));
    }
}

txm_status orders_http_register(txm_app *app, orders_svc *svc, txm_error *err)
{
    txm_status st = txm_app_route(app, "POST", "/orders", create_order, svc, err);
    if (st == TXM_OK)
        st = txm_app_route(app, "GET", "/order/:id", get_order, svc, err);
    if (st == TXM_OK)
        st = txm_app_route(app, "POST", "/order/:id/cancel", cancel_order, svc, err);
    return st;
}
