/* quickstart: the smallest complete txmsg service. POST /greetings/NAME
 * stores a greeting and publishes "greeting--sent" in one unit of work: the
 * row and the message commit together or not at all. txmsg-relay carries
 * the message to the broker, and this service's own subscriber counts it
 * behind the inbox, exactly once. GET /greetings/NAME shows both counts.
 *   ./quickstart     (port 9799; sqlite:./quickstart.db, embedded:./txmsg-broker.db)
 *   TXMSG_DATABASE_URL=sqlite:./quickstart.db \
 *   TXMSG_BROKER_URL=embedded:./txmsg-broker.db txmsg-relay
 *   curl -X POST localhost:9799/greetings/ada */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <txmsg/txmsg.h>

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS greetings(name TEXT PRIMARY KEY, "
    "sent INTEGER NOT NULL DEFAULT 0, received INTEGER NOT NULL DEFAULT 0)";

/* NAME: 1..32 of [a-z], so it needs no escaping in JSON. */
static const char *valid_name(txm_http_request *req)
{
    const char *name = txm_http_request_param(req, "name");
    size_t len = strlen(name);
    if (len == 0 || len > 32 || strspn(name, "abcdefghijklmnopqrstuvwxyz") != len) {
        txm_http_reply_error(req, 400, "VALIDATION_FAILED", "name: 1 to 32 of a-z", NULL);
        return NULL;
    }
    return name;
}

/* POST /greetings/:name: the row and its message, one unit of work. */
static void send_greeting(void *ctx, txm_http_request *req)
{
    txm_db *db = ctx;
    const char *name = valid_name(req);
    if (name == NULL)
        return;
    char payload[64];
    snprintf(payload, sizeof payload, "{\"name\":\"%s\"}", name);
    txm_value p[] = {TXM_TEXT(name)};
    txm_msg *msg = NULL;
    txm_uow *uow = NULL;
    txm_error err = {0};
    txm_status st = txm_msg_new("greeting--sent", name, txm_http_request_correlation_id(req),
                                payload, &msg, &err);
    if (st == TXM_OK)
        st = txm_uow_begin(db, &uow, &err);
    if (st == TXM_OK) {
        txm_uow_exec(uow,
                     "INSERT INTO greetings(name, sent) VALUES($1, 1) "
                     "ON CONFLICT(name) DO UPDATE SET sent = sent + 1",
                     p, 1, NULL, NULL, &err);
        txm_outbox_publish(uow, &msg, &err); /* takes msg */
        st = txm_uow_commit(&uow, &err);     /* the first failure, if any */
    }
    txm_msg_free(msg);
    bool retry = st == TXM_UNAVAILABLE || st == TXM_BUSY || st == TXM_NO_SPACE;
    if (st == TXM_OK)
        txm_http_reply(req, 202, payload, NULL);
    else
        txm_http_reply_error(req, retry ? 503 : 500, txm_status_name(st), err.text, NULL);
}

/* GET /greetings/:name: how many were sent and how many the subscriber saw. */
static void get_greeting(void *ctx, txm_http_request *req)
{
    const char *name = valid_name(req);
    if (name == NULL)
        return;
    txm_value p[] = {TXM_TEXT(name)};
    txm_rows *rows = NULL;
    txm_error err = {0};
    if (txm_db_exec(ctx, "SELECT sent, received FROM greetings WHERE name = $1", p, 1, &rows, NULL,
                    &err) != TXM_OK) {
        txm_http_reply_error(req, 503, "UNAVAILABLE", err.text, NULL);
        return;
    }
    if (txm_rows_count(rows) == 0) {
        txm_http_reply_error(req, 404, "NOT_FOUND", name, NULL);
    } else {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"sent\":%lld,\"received\":%lld}", name,
                 (long long)txm_rows_int(rows, 0, 0), (long long)txm_rows_int(rows, 0, 1));
        txm_http_reply(req, 200, body, NULL);
    }
    txm_rows_free(rows);
}

/* The subscriber: runs once per message, in the unit of work that records
 * it in the inbox, so a redelivered copy changes nothing. */
static txm_status on_greeting(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)ctx;
    txm_value p[] = {TXM_TEXT(txm_msg_aggregate_id(msg))};
    return txm_uow_exec(uow, "UPDATE greetings SET received = received + 1 WHERE name = $1", p, 1,
                        NULL, NULL, err);
}

int main(void)
{
    txm_app_options o;
    txm_app_options_init(&o, "quickstart", 9799);
    txm_app *app = NULL;
    txm_error err = {0};
    txm_status st = txm_app_open(&o, &app, &err);
    txm_db *db = txm_app_db(app);
    if (st == TXM_OK)
        st = txm_db_exec(db, SCHEMA, NULL, 0, NULL, NULL, &err);
    if (st == TXM_OK)
        st = txm_app_route(app, "POST", "/greetings/:name", send_greeting, db, &err);
    if (st == TXM_OK)
        st = txm_app_route(app, "GET", "/greetings/:name", get_greeting, db, &err);
    if (st == TXM_OK)
        st = txm_app_subscribe(app, "greeting--sent", "quickstart--greeting-sent", on_greeting,
                               NULL, NULL, &err);
    if (st == TXM_OK)
        st = txm_app_run(app, &err); /* until SIGTERM or SIGINT */
    if (st != TXM_OK)
        fprintf(stderr, "quickstart: %s: %s\n", txm_status_name(st), err.text);
    txm_app_close(app);
    return st == TXM_OK ? 0 : 1;
}
