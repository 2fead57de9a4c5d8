/* Customers events, with the seed's fields: event_id, correlation_id,
 * customer_id, created_at, and per event the name and credit limit, the
 * order id and total, or the validation error. Amounts are cents. */
#include "customers.h"

txm_status customers_event_created(const customer *c, const char *correlation_id, txm_msg **out,
                                   txm_error *err)
{
    json_t *data = json_pack("{s:s, s:s, s:I}", "customer_id", c->id, "name", c->name,
                             "credit_limit", (json_int_t)c->credit_limit);
    return ex_event_new(CUSTOMERS_SOURCE, TOPIC_CUSTOMER_CREATED, c->id, correlation_id, data, out,
                        err);
}

txm_status customers_event_credit(const char *topic, const char *customer_id, const char *order_id,
                                  int64_t order_total, const char *correlation_id, txm_msg **out,
                                  txm_error *err)
{
    json_t *data = json_pack("{s:s, s:s, s:I}", "customer_id", customer_id, "order_id", order_id,
                             "order_total", (json_int_t)order_total);
    return ex_event_new(CUSTOMERS_SOURCE, topic, customer_id, correlation_id, data, out, err);
}

txm_status customers_event_validation_failed(const char *customer_id, const char *order_id,
                                             const char *error, const char *correlation_id,
                                             txm_msg **out, txm_error *err)
{
    json_t *data = json_pack("{s:s, s:s, s:s}", "customer_id", customer_id, "order_id", order_id,
                             "error", error);
    return ex_event_new(CUSTOMERS_SOURCE, TOPIC_VALIDATION_FAILED, customer_id, correlation_id,
                        data, out, err);
}
