/* Customers message handlers. Each runs inside the consumer's unit of work,
 * behind the inbox, and publishes through the outbox of that same unit, so
 * a reservation and its event commit once or not at all. Events carry the
 * incoming message's correlation id.
 *   order--created   (queue customer--order-created):   reserve credit
 *   order--cancelled (queue customer--order-cancelled): release it */
#include "customers.h"

/* The fields of an order event this service reads. */
typedef struct order_ref {
    char order_id[TXM_UUID_LEN + 1];
    char customer_id[TXM_UUID_LEN + 1];
    int64_t order_total; /* cents; order--created only */
} order_ref;

/* Reads the order event; TXM_MALFORMED (the message ends in the dead-letter
 * queue after its receives) when a field is missing or wrong. */
static txm_status read_order(const txm_msg *msg, bool with_total, order_ref *out, txm_error *err)
{
    json_t *data = NULL;
    txm_status st = ex_msg_object(msg, &data, err);
    if (st == TXM_OK)
        st = ex_msg_uuid(data, "order_id", out->order_id, err);
    if (st == TXM_OK)
        st = ex_msg_uuid(data, "customer_id", out->customer_id, err);
    if (st == TXM_OK && with_total)
        st = ex_msg_cents(data, "order_total", &out->order_total, err);
    json_decref(data);
    return st;
}

/* Reserves the order's total when the available credit covers it, with
 * the customer's version checked, and publishes the outcome. */
static txm_status reserve(const customers_svc *svc, txm_uow *uow, const customer *c,
                          const order_ref *o, const char *cid, txm_error *err)
{
    bool enough = c->available_credit >= o->order_total;
    txm_msg *event = NULL;
    txm_status st = TXM_OK;
    if (enough) {
        st = customers_reservation_add(uow, c->id, o->order_id, o->order_total, err);
        if (st == TXM_OK)
            st = customers_bump_version(uow, c, err);
    }
    if (st == TXM_OK)
        st =
            customers_event_credit(enough ? TOPIC_CREDIT_RESERVED : TOPIC_CREDIT_RESERVATION_FAILED,
                                   c->id, o->order_id, o->order_total, cid, &event, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &event, err);
    if (st == TXM_OK)
        txm_log_write(svc->log, TXM_LOG_INFO, cid,
                      "order %s: %lld of customer %s's %lld available %s", o->order_id,
                      (long long)o->order_total, c->id, (long long)c->available_credit,
                      enough ? "reserved" : "not reserved: credit limit exceeded");
    return st;
}

static txm_status on_order_created(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    const customers_svc *svc = ctx;
    const char *cid = txm_msg_correlation_id(msg);
    order_ref o = {.order_total = 0};
    txm_status st = read_order(msg, true, &o, err);
    customer c;
    if (st == TXM_OK)
        st = customers_find(NULL, uow, o.customer_id, &c, err);
    if (st == TXM_OK)
        return reserve(svc, uow, &c, &o, cid, err);
    if (st != TXM_NOT_FOUND)
        return st;
    txm_msg *event = NULL;
    st = customers_event_validation_failed(o.customer_id, o.order_id, CUSTOMER_NOT_FOUND_ERROR, cid,
                                           &event, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &event, err);
    if (st == TXM_OK)
        txm_log_write(svc->log, TXM_LOG_WARN, cid, "order %s: customer %s not found", o.order_id,
                      o.customer_id);
    return st;
}

static txm_status on_order_cancelled(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    const customers_svc *svc = ctx;
    const char *cid = txm_msg_correlation_id(msg);
    order_ref o = {.order_total = 0};
    customer c;
    bool removed = false;
    txm_status st = read_order(msg, false, &o, err);
    if (st == TXM_OK)
        st = customers_find(NULL, uow, o.customer_id, &c, err);
    if (st == TXM_OK)
        st = customers_reservation_remove(uow, c.id, o.order_id, &removed, err);
    if (st == TXM_OK && removed)
        st = customers_bump_version(uow, &c, err);
    if (st == TXM_NOT_FOUND || (st == TXM_OK && !removed)) {
        /* Nothing is reserved for this order: releasing is already done. */
        txm_log_write(svc->log, TXM_LOG_WARN, cid,
                      "order %s cancelled: no credit of customer %s reserved for it", o.order_id,
                      o.customer_id);
        return TXM_OK;
    }
    if (st == TXM_OK)
        txm_log_write(svc->log, TXM_LOG_INFO, cid,
                      "order %s cancelled: credit of customer %s released", o.order_id, c.id);
    return st;
}

txm_status customers_handlers_register(txm_app *app, customers_svc *svc, txm_error *err)
{
    /* Defaults: one ordered lane per queue, units of work of up to 64
     * messages, "<queue>--dlq", max_receive_count 3. */
    txm_status st = txm_app_subscribe(app, TOPIC_ORDER_CREATED, QUEUE_ORDER_CREATED,
                                      on_order_created, svc, NULL, err);
    if (st == TXM_OK)
        st = txm_app_subscribe(app, TOPIC_ORDER_CANCELLED, QUEUE_ORDER_CANCELLED,
                               on_order_cancelled, svc, NULL, err);
    return st;
}
