/* Customers HTTP API (paths and JSON as in the seed, amounts in cents):
 *   POST /customers {"name": "Jane Doe", "credit_limit": 25000}
 *   GET  /customer/<id>
 * Invalid input answers 400 VALIDATION_ERROR naming the field, and nothing
 * is written; a new customer and its customer--created event commit in one
 * unit of work. */
#include <stdio.h>
#include <string.h>

#include "customers.h"

/* Characters (UTF-8 code points) in s; jansson has checked the encoding. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static bool blank(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* Reads "name": a string of 1..255 characters, not only blanks. */
static bool read_name(txm_http_request *req, const json_t *body,
                      char out[CUSTOMER_NAME_MAX_BYTES + 1])
{
    const json_t *v = json_object_get(body, "name");
    const char *s = json_string_value(v);
    /* jansson rejects invalid UTF-8 and \u0000 unless asked not to. */
    const char *problem = v == NULL   ? "name is required"
                          : s == NULL ? "name must be a string"
                          : blank(s)  ? "name must not be empty"
                          : utf8_chars(s) > CUSTOMER_NAME_MAX_CHARS
                              ? "name must be at most 255 characters"
                              : NULL;
    if (problem != NULL) {
        txm_http_reply_error(req, 400, "VALIDATION_ERROR", problem, NULL);
        return false;
    }
    snprintf(out, CUSTOMER_NAME_MAX_BYTES + 1, "%s", s);
    return true;
}

/* Inserts the customer and its customer--created event in one unit. */
static txm_status create_unit(txm_db *db, const customer *c, const char *cid, txm_error *err)
{
    txm_msg *event = NULL;
    txm_uow *uow = NULL;
    txm_status st = customers_event_created(c, cid, &event, err);
    if (st == TXM_OK)
        st = txm_uow_begin(db, &uow, err);
    if (st == TXM_OK)
        st = customers_insert(uow, c, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &event, err);
    if (uow != NULL && st == TXM_OK)
        st = txm_uow_commit(&uow, err);
    txm_uow_rollback(&uow);
    txm_msg_free(event);
    return st;
}

static void create_customer(void *ctx, txm_http_request *req)
{
    customers_svc *svc = ctx;
    const char *cid = txm_http_request_correlation_id(req);
    json_t *body = ex_body_object(req);
    if (body == NULL)
        return;
    customer c = {.version = 0};
    bool ok = read_name(req, body, c.name) &&
              ex_field_cents(req, body, "credit_limit", 0, &c.credit_limit);
    json_decref(body);
    if (!ok)
        return;
    txm_error err = {0};
    txm_status st = txm_uuid_v7(c.id, &err);
    ex_now(c.created_at);
    if (st == TXM_OK)
        st = create_unit(svc->db, &c, cid, &err);
    if (st != TXM_OK) {
        ex_reply_system_error(req, svc->log, "create customer", &err);
        return;
    }
    txm_log_write(svc->log, TXM_LOG_INFO, cid, "customer %s created, credit limit %lld", c.id,
                  (long long)c.credit_limit);
    json_t *answer =
        json_pack("{s:s, s:o}", "id", c.id, "_links", ex_links("/customer/", c.id, false));
    ex_reply_json(req, 200, answer);
}

static json_t *customer_json(const customer *c)
{
    json_t *updated = c->updated_at[0] != '\0' ? json_string(c->updated_at) : json_null();
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:o, s:o}", "id", c->id, "name", c->name,
                     "credit_limit", (json_int_t)c->credit_limit, "available_credit",
                     (json_int_t)c->available_credit, "version", (json_int_t)c->version,
                     "created_at", c->created_at, "updated_at", updated, "_links",
                     ex_links("/customer/", c->id, false));
}

static void get_customer(void *ctx, txm_http_request *req)
{
    customers_svc *svc = ctx;
    char id[TXM_UUID_LEN + 1];
    if (!ex_path_uuid(req, "id", id))
        return;
    customer c;
    txm_error err = {0};
    txm_status st = customers_find(svc->db, NULL, id, &c, &err);
    if (st == TXM_NOT_FOUND) {
        ex_reply_json(req, 404,
                      json_pack("{s:s, s:o}", "error", CUSTOMER_NOT_FOUND_ERROR, "_links",
                                ex_links("/customer/", id, false)));
        return;
    }
    if (st != TXM_OK) {
        ex_reply_system_error(req, svc->log, "get customer", &err);
        return;
    }
    ex_reply_json(req, 200, customer_json(&c));
}

txm_status customers_http_register(txm_app *app, customers_svc *svc, txm_error *err)
{
    txm_status st = txm_app_route(app, "POST", "/customers", create_customer, svc, err);
    if (st == TXM_OK)
        st = txm_app_route(app, "GET", "/customer/:id", get_customer, svc, err);
    return st;
}
