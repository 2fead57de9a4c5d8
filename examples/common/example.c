/* Helpers shared by the example services: request validation with
 * VALIDATION_ERROR answers, JSON answers, event messages, event payload
 * reading, and units of work re-run on optimistic-lock conflicts. */
#include "example.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONFLICT_RETRIES 8
#define DETAIL_MAX 256

static void reply_invalid(txm_http_request *req, const char *detail)
{
    txm_http_reply_error(req, 400, "VALIDATION_ERROR", detail, NULL);
}

json_t *ex_body_object(txm_http_request *req)
{
    size_t len = 0;
    const char *body = txm_http_request_body(req, &len);
    json_error_t jerr;
    json_t *obj = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (len > 0 && obj == NULL) {
        char detail[DETAIL_MAX];
        snprintf(detail, sizeof detail, "malformed JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        reply_invalid(req, detail);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        reply_invalid(req, "the request body must be a JSON object");
        return NULL;
    }
    return obj;
}

bool ex_field_cents(txm_http_request *req, const json_t *obj, const char *field, int64_t min,
                    int64_t *out)
{
    const json_t *v = json_object_get(obj, field);
    char detail[DETAIL_MAX];
    if (v == NULL) {
        snprintf(detail, sizeof detail, "%s is required", field);
        reply_invalid(req, detail);
        return false;
    }
    /* jansson reads 100.5 and 1e3 as reals, so only plain integers pass. */
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    if (!json_is_integer(v) || n < min || n > EX_CENTS_MAX) {
        snprintf(detail, sizeof detail, "%s must be an integer number of cents from %lld to %lld",
                 field, (long long)min, EX_CENTS_MAX);
        reply_invalid(req, detail);
        return false;
    }
    *out = (int64_t)n;
    return true;
}

/* Copies a valid UUID into out in lower case; false if s is not one. */
static bool copy_uuid(const char *s, char out[TXM_UUID_LEN + 1])
{
    if (s == NULL || !txm_uuid_is_valid(s))
        return false;
    for (size_t i = 0; i < TXM_UUID_LEN; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[TXM_UUID_LEN] = '\0';
    return true;
}

bool ex_field_uuid(txm_http_request *req, const json_t *obj, const char *field,
                   char out[TXM_UUID_LEN + 1])
{
    const json_t *v = json_object_get(obj, field);
    char detail[DETAIL_MAX];
    if (v == NULL) {
        snprintf(detail, sizeof detail, "%s is required", field);
        reply_invalid(req, detail);
        return false;
    }
    if (!copy_uuid(json_string_value(v), out)) {
        snprintf(detail, sizeof detail, "%s must be a UUID string", field);
        reply_invalid(req, detail);
        return false;
    }
    return true;
}

bool ex_path_uuid(txm_http_request *req, const char *param, char out[TXM_UUID_LEN + 1])
{
    if (copy_uuid(txm_http_request_param(req, param), out))
        return true;
    char detail[DETAIL_MAX];
    snprintf(detail, sizeof detail, "%s in the path must be a UUID", param);
    reply_invalid(req, detail);
    return false;
}

void ex_reply_json(txm_http_request *req, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL || txm_http_reply(req, status, text, NULL) != TXM_OK)
        txm_http_reply_error(req, 500, "SYSTEM_ERROR", NULL, NULL);
    free(text);
}

void ex_reply_system_error(txm_http_request *req, const txm_logger *log, const char *what,
                           const txm_error *err)
{
    txm_log_write(log, TXM_LOG_ERROR, txm_http_request_correlation_id(req), "%s failed: %s: %s",
                  what, txm_status_name(err->status), err->text);
    /* The database being away, too busy to answer in time, or on a full
     * disk, is temporary: 503 tells the client to try again, and nothing
     * was committed. A full disk is named: it lasts until someone frees
     * space, so retrying at once will not help. */
    if (err->status == TXM_NO_SPACE)
        txm_http_reply_error(req, 503, "STORAGE_FULL",
                             "the database's disk is full; retry once space is freed", NULL);
    else if (err->status == TXM_UNAVAILABLE || err->status == TXM_BUSY ||
             err->status == TXM_TIMEOUT)
        txm_http_reply_error(req, 503, "SERVICE_UNAVAILABLE", "the database is unavailable; retry",
                             NULL);
    else
        txm_http_reply_error(req, 500, "SYSTEM_ERROR", NULL, NULL);
}

json_t *ex_links(const char *prefix, const char *id, bool with_cancel)
{
    char self[128], cancel[136];
    snprintf(self, sizeof self, "%s%s", prefix, id);
    snprintf(cancel, sizeof cancel, "%s/cancel", self);
    json_t *links = json_pack("{s:{s:s}}", "self", "href", self);
    if (links != NULL && with_cancel &&
        json_object_set_new(links, "cancel", json_pack("{s:s}", "href", cancel)) != 0) {
        json_decref(links);
        return NULL;
    }
    return links;
}

/* ---- events ---- */

txm_status ex_event_new(const char *source, const char *topic, const char *aggregate_id,
                        const char *correlation_id, json_t *data, txm_msg **out, txm_error *err)
{
    *out = NULL;
    char id[TXM_UUID_LEN + 1];
    txm_status st = data != NULL ? txm_uuid_v7(id, err)
                                 : txm_errf(err, TXM_NOMEM, "event %s: out of memory", topic);
    int64_t now_us = txm_now_us();
    ex_time created;
    txm_time_format(now_us, created);
    if (st == TXM_OK &&
        (json_object_set_new(data, "event_id", json_string(id)) != 0 ||
         json_object_set_new(data, "correlation_id", json_string(correlation_id)) != 0 ||
         json_object_set_new(data, "created_at", json_string(created)) != 0))
        st = txm_errf(err, TXM_NOMEM, "event %s: out of memory", topic);
    char *payload = st == TXM_OK ? json_dumps(data, JSON_COMPACT) : NULL;
    if (st == TXM_OK && payload == NULL)
        st = txm_errf(err, TXM_NOMEM, "event %s: out of memory", topic);
    if (st == TXM_OK)
        st = txm_msg_new_with(id, source, topic, aggregate_id, correlation_id, payload, now_us, out,
                              err);
    free(payload);
    json_decref(data);
    return st;
}

txm_status ex_msg_object(const txm_msg *msg, json_t **out, txm_error *err)
{
    json_error_t jerr;
    *out = json_loads(txm_msg_payload(msg), JSON_REJECT_DUPLICATES, &jerr);
    if (json_is_object(*out))
        return TXM_OK;
    json_decref(*out);
    *out = NULL;
    return txm_errf(err, TXM_MALFORMED, "%s %s: the data is not a JSON object", txm_msg_topic(msg),
                    txm_msg_id(msg));
}

txm_status ex_msg_uuid(const json_t *obj, const char *field, char out[TXM_UUID_LEN + 1],
                       txm_error *err)
{
    if (copy_uuid(json_string_value(json_object_get(obj, field)), out))
        return TXM_OK;
    return txm_errf(err, TXM_MALFORMED, "event field %s is missing or not a UUID", field);
}

txm_status ex_msg_cents(const json_t *obj, const char *field, int64_t *out, txm_error *err)
{
    const json_t *v = json_object_get(obj, field);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > EX_CENTS_MAX)
        return txm_errf(err, TXM_MALFORMED, "event field %s is missing or not cents", field);
    *out = (int64_t)json_integer_value(v);
    return TXM_OK;
}

/* ---- database ---- */

void ex_now(ex_time out)
{
    txm_time_format(txm_now_us(), out);
}

void ex_copy_time(const char *text, ex_time out)
{
    snprintf(out, sizeof(ex_time), "%s", text != NULL ? text : "");
}

txm_status ex_exec(txm_db *db, txm_uow *uow, const char *sql, const txm_value *params,
                   size_t n_params, txm_rows **rows, int64_t *changes, txm_error *err)
{
    if (uow != NULL)
        return txm_uow_exec(uow, sql, params, n_params, rows, changes, err);
    return txm_db_exec(db, sql, params, n_params, rows, changes, err);
}

/* An arbitrary constant naming the example schema's lock among advisory
 * locks (txmsg's own migrations use another). */
static const char SQL_SCHEMA_LOCK[] = "SELECT pg_advisory_xact_lock(7316871641)";

txm_status ex_exec_all(txm_db *db, const char *const *statements, txm_error *err)
{
    /* One transaction; on PostgreSQL under a lock, since instances starting
     * at once would otherwise race on the catalogs: the CREATE ... IF NOT
     * EXISTS that loses fails on a unique index, or deadlocks on the table a
     * foreign key names. The second instance finds every object made. */
    txm_uow *uow = NULL;
    txm_status st = txm_uow_begin(db, &uow, err);
    if (st == TXM_OK && strcmp(txm_db_dialect(db), "postgresql") == 0)
        st = txm_uow_exec(uow, SQL_SCHEMA_LOCK, NULL, 0, NULL, NULL, err);
    for (size_t i = 0; st == TXM_OK && statements[i] != NULL; i++)
        st = txm_uow_exec(uow, statements[i], NULL, 0, NULL, NULL, err);
    if (st == TXM_OK)
        return txm_uow_commit(&uow, err);
    txm_uow_rollback(&uow);
    return st;
}

txm_status ex_run_unit(txm_db *db, ex_unit_fn fn, void *ctx, txm_error *err)
{
    txm_status st = TXM_CONFLICT;
    unsigned seed = (unsigned)txm_now_us();
    for (int attempt = 0; st == TXM_CONFLICT && attempt <= CONFLICT_RETRIES; attempt++) {
        if (attempt > 0) {
            /* Another writer won the row: wait a little, with jitter, so
             * the contenders do not collide again at once. */
            struct timespec pause = {0, (long)(attempt * (100 + rand_r(&seed) % 900)) * 1000L};
            nanosleep(&pause, NULL);
        }
        txm_uow *uow = NULL;
        st = txm_uow_begin(db, &uow, err);
        if (st != TXM_OK)
            return st;
        st = fn(ctx, uow, err);
        if (st == TXM_OK)
            st = txm_uow_commit(&uow, err);
        else
            txm_uow_rollback(&uow);
    }
    return st;
}

int ex_command_line(int argc, char **argv, const char *service, const char *about, int port)
{
    if (argc < 2)
        return -1;
    char name[64];
    snprintf(name, sizeof name, "%s-service", service);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", name, txm_version());
        return 0;
    }
    bool help = argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    FILE *out = help ? stdout : stderr;
    if (!help)
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", name, argv[1]);
    fprintf(out,
            "usage: %s [--help | --version]\n%s\n\n"
            "Configured by the environment:\n"
            "  TXMSG_DATABASE_URL  database (default sqlite:./%s.db)\n"
            "  TXMSG_BROKER_URL    broker (default embedded:./txmsg-broker.db)\n"
            "  PORT                HTTP port (default %d)\n"
            "  TXMSG_BIND_ADDRESS  HTTP address (default 127.0.0.1)\n"
            "  TXMSG_HTTP_CONNECTION_LIMIT, TXMSG_HTTP_IDLE_TIMEOUT_S,\n"
            "  TXMSG_HTTP_MAX_HEADER_LEN   HTTP limits (default 2048, 30, 16384)\n"
            "SIGTERM or SIGINT stops it after the requests and messages in progress.\n",
            name, about, service, port);
    return help ? 0 : 2;
}
