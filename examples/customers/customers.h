/* The Customers service: customers with a credit limit and credit
 * reservations per order. Shared between its files: the aggregate, the
 * repository, the events, and the registration of routes and handlers. */
#ifndef CUSTOMERS_H
#define CUSTOMERS_H

#include <stdbool.h>
#include <stdint.h>

#include "example.h"

#define CUSTOMERS_SOURCE "customers"
#define CUSTOMERS_PORT 9701

/* Topics and queues, exactly as in the seed. */
#define TOPIC_CUSTOMER_CREATED "customer--created"
#define TOPIC_CREDIT_RESERVED "customer--credit-reserved"
#define TOPIC_CREDIT_RESERVATION_FAILED "customer--credit-reservation-failed"
#define TOPIC_VALIDATION_FAILED "customer--validation-failed"
#define TOPIC_ORDER_CREATED "order--created"
#define TOPIC_ORDER_CANCELLED "order--cancelled"
#define QUEUE_ORDER_CREATED "customer--order-created"
#define QUEUE_ORDER_CANCELLED "customer--order-cancelled"

#define CUSTOMER_NOT_FOUND_ERROR "CUSTOMER_NOT_FOUND_ERROR"
#define CUSTOMER_NAME_MAX_CHARS 255
#define CUSTOMER_NAME_MAX_BYTES (4 * CUSTOMER_NAME_MAX_CHARS) /* UTF-8 */

/* What routes and handlers share. Borrows: db and log belong to the app. */
typedef struct customers_svc {
    txm_db *db;
    const txm_logger *log;
} customers_svc;

/* One customer as stored, with its available credit. */
typedef struct customer {
    char id[TXM_UUID_LEN + 1];
    char name[CUSTOMER_NAME_MAX_BYTES + 1];
    int64_t credit_limit;     /* cents */
    int64_t available_credit; /* cents: credit_limit minus the reservations */
    int64_t version;          /* 0 at creation, + 1 on every change */
    ex_time created_at;
    ex_time updated_at; /* "" until the first change */
} customer;

/* ---- repository.c: SQL, $N parameters only ---- */

/* Creates the tables unless they exist. Idempotent. */
txm_status customers_schema(txm_db *db, txm_error *err);

/* Inserts c (id, name, credit_limit, version, created_at) inside uow. */
txm_status customers_insert(txm_uow *uow, const customer *c, txm_error *err);

/* Reads customer id into out, inside uow when it is not NULL, else on db.
 * Returns TXM_NOT_FOUND when there is none. */
txm_status customers_find(txm_db *db, txm_uow *uow, const char *id, customer *out, txm_error *err);

/* Records that order_id holds amount cents of customer_id's credit. */
txm_status customers_reservation_add(txm_uow *uow, const char *customer_id, const char *order_id,
                                     int64_t amount, txm_error *err);

/* Deletes the reservation of order_id; *removed says whether there was one. */
txm_status customers_reservation_remove(txm_uow *uow, const char *customer_id, const char *order_id,
                                        bool *removed, txm_error *err);

/* Increments c's version and sets updated_at, only if the stored version is
 * still c->version: TXM_CONFLICT (failing the unit) otherwise. */
txm_status customers_bump_version(txm_uow *uow, const customer *c, txm_error *err);

/* ---- events.c: event messages (Owns: *out is the caller's) ---- */

txm_status customers_event_created(const customer *c, const char *correlation_id, txm_msg **out,
                                   txm_error *err);

/* customer--credit-reserved or customer--credit-reservation-failed. */
txm_status customers_event_credit(const char *topic, const char *customer_id, const char *order_id,
                                  int64_t order_total, const char *correlation_id, txm_msg **out,
                                  txm_error *err);

/* customer--validation-failed with error (e.g. CUSTOMER_NOT_FOUND_ERROR). */
txm_status customers_event_validation_failed(const char *customer_id, const char *order_id,
                                             const char *error, const char *correlation_id,
                                             txm_msg **out, txm_error *err);

/* ---- http_api.c and handlers.c: registration (Borrows: svc) ---- */

txm_status customers_http_register(txm_app *app, customers_svc *svc, txm_error *err);
txm_status customers_handlers_register(txm_app *app, customers_svc *svc, txm_error *err);

#endif
