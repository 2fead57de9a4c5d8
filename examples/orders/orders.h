/* The Orders service: orders that go PENDING -> APPROVED or REJECTED as the
 * Customers service answers, and APPROVED -> CANCELLED on request. Shared
 * between its files: the aggregate, the repository, the events, and the
 * registration of routes and handlers. */
#ifndef ORDERS_H
#define ORDERS_H

#include <stdbool.h>
#include <stdint.h>

#include "example.h"

#define ORDERS_SOURCE "orders"
#define ORDERS_PORT 9702

/* Topics and queues, exactly as in the seed. */
#define TOPIC_ORDER_CREATED "order--created"
#define TOPIC_ORDER_APPROVED "order--approved"
#define TOPIC_ORDER_REJECTED "order--rejected"
#define TOPIC_ORDER_CANCELLED "order--cancelled"
#define TOPIC_CREDIT_RESERVED "customer--credit-reserved"
#define TOPIC_CREDIT_RESERVATION_FAILED "customer--credit-reservation-failed"
#define TOPIC_VALIDATION_FAILED "customer--validation-failed"
#define QUEUE_CREDIT_RESERVED "order--customer-credit-reserved"
#define QUEUE_CREDIT_RESERVATION_FAILED "order--customer-credit-reservation-failed"
#define QUEUE_VALIDATION_FAILED "order--customer-validation-failed"

/* States. */
#define ORDER_PENDING "PENDING"
#define ORDER_APPROVED "APPROVED"
#define ORDER_REJECTED "REJECTED"
#define ORDER_CANCELLED "CANCELLED"
#define ORDER_STATE_MAX 15

/* What routes and handlers share. Borrows: db and log belong to the app. */
typedef struct orders_svc {
    txm_db *db;
    const txm_logger *log;
} orders_svc;

/* One order as stored. */
typedef struct order {
    char id[TXM_UUID_LEN + 1];
    char customer_id[TXM_UUID_LEN + 1];
    char state[ORDER_STATE_MAX + 1];
    int64_t order_total; /* cents */
    int64_t version;     /* 0 at creation, + 1 on every change */
    ex_time created_at;
    ex_time updated_at; /* "" until the first change */
} order;

/* ---- repository.c: SQL, $N parameters only ---- */

/* Creates the table unless it exists. Idempotent. */
txm_status orders_schema(txm_db *db, txm_error *err);

/* Inserts o inside uow. */
txm_status orders_insert(txm_uow *uow, const order *o, txm_error *err);

/* Reads order id into out, inside uow when it is not NULL, else on db.
 * Returns TXM_NOT_FOUND when there is none. */
txm_status orders_find(txm_db *db, txm_uow *uow, const char *id, order *out, txm_error *err);

/* Moves o to state, incrementing its version, only if the stored version is
 * still o->version: TXM_CONFLICT (failing the unit) otherwise. Updates o. */
txm_status orders_set_state(txm_uow *uow, order *o, const char *state, txm_error *err);

/* ---- events.c ---- */

/* An order event on topic: order_id, customer_id, state and order_total of
 * o. Owns: *out is the caller's. */
txm_status orders_event(const char *topic, const order *o, const char *correlation_id,
                        txm_msg **out, txm_error *err);

/* ---- http_api.c and handlers.c: registration (Borrows: svc) ---- */

txm_status orders_http_register(txm_app *app, orders_svc *svc, txm_error *err);
txm_status orders_handlers_register(txm_app *app, orders_svc *svc, txm_error *err);

#endif
