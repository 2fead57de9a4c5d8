/* Orders message handlers: the Customers service's answers move a PENDING
 * order on. Each runs inside the consumer's unit of work, behind the
 * inbox, with the order's version checked; its event goes through the
 * outbox of the same unit and carries the incoming correlation id.
 *   customer--credit-reserved           -> APPROVED, order--approved
 *   customer--credit-reservation-failed -> REJECTED, order--rejected
 *   customer--validation-failed         -> REJECTED, order--rejected
 * An answer for an order that is no longer PENDING changes nothing. */
#include <string.h>

#include "orders.h"

/* Moves the message's order from PENDING to state and publishes topic.
 * An unknown order returns TXM_NOT_FOUND, so the message is retried and
 * then dead-lettered where an operator can see it. */
static txm_status decide(const orders_svc *svc, txm_uow *uow, const txm_msg *msg, const char *state,
                         const char *topic, txm_error *err)
{
    const char *cid = txm_msg_correlation_id(msg);
    json_t *data = NULL;
    char id[TXM_UUID_LEN + 1];
    order o;
    txm_status st = ex_msg_object(msg, &data, err);
    if (st == TXM_OK)
        st = ex_msg_uuid(data, "order_id", id, err);
    json_decref(data);
    if (st == TXM_OK)
        st = orders_find(NULL, uow, id, &o, err);
    if (st != TXM_OK)
        return st;
    if (strcmp(o.state, ORDER_PENDING) != 0) {
        txm_log_write(svc->log, TXM_LOG_INFO, cid, "order %s is %s: %s changes nothing", o.id,
                      o.state, txm_msg_topic(msg));
        return TXM_OK;
    }
    txm_msg *event = NULL;
    st = orders_set_state(uow, &o, state, err);
    if (st == TXM_OK)
        st = orders_event(topic, &o, cid, &event, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &event, err);
    txm_msg_free(event);
    if (st == TXM_OK)
        txm_log_write(svc->log, TXM_LOG_INFO, cid, "order %s %s (%s)", o.id, state,
                      txm_msg_topic(msg));
    return st;
}

static txm_status on_credit_reserved(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    return decide(ctx, uow, msg, ORDER_APPROVED, TOPIC_ORDER_APPROVED, err);
}

static txm_status on_rejection(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    return decide(ctx, uow, msg, ORDER_REJECTED, TOPIC_ORDER_REJECTED, err);
}

txm_status orders_handlers_register(txm_app *app, orders_svc *svc, txm_error *err)
{
    /* Defaults: one ordered lane per queue, units of work of up to 64
     * messages, "<queue>--dlq", max_receive_count 3. */
    txm_status st = txm_app_subscribe(app, TOPIC_CREDIT_RESERVED, QUEUE_CREDIT_RESERVED,
                                      on_credit_reserved, svc, NULL, err);
    if (st == TXM_OK)
        st = txm_app_subscribe(app, TOPIC_CREDIT_RESERVATION_FAILED,
                               QUEUE_CREDIT_RESERVATION_FAILED, on_rejection, svc, NULL, err);
    if (st == TXM_OK)
        st = txm_app_subscribe(app, TOPIC_VALIDATION_FAILED, QUEUE_VALIDATION_FAILED, on_rejection,
                               svc, NULL, err);
    return st;
}
