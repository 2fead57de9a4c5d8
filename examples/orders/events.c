/* Orders events, with the seed's fields: event_id, correlation_id,
 * order_id, customer_id, state, created_at, and the order total in cents. */
#include "orders.h"

txm_status orders_event(const char *topic, const order *o, const char *correlation_id,
                        txm_msg **out, txm_error *err)
{
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:I}", "order_id", o->id, "customer_id", o->customer_id, "state",
                  o->state, "order_total", (json_int_t)o->order_total);
    return ex_event_new(ORDERS_SOURCE, topic, o->id, correlation_id, data, out, err);
}
