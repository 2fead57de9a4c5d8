/* Inbox repository: (subscription, message id) pairs a consumer has
 * processed, the key of the Idempotent Consumer. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/store_int.h"
#include "txmsg/inbox.h"
#include "txmsg/message.h"

static const char SQL_INSERT[] =
    "INSERT INTO txmsg_inbox (subscription, message_id, created_at) VALUES ($1, $2, $3)";
static const char SQLITE_GET[] =
    "SELECT created_at FROM txmsg_inbox WHERE subscription = $1 AND message_id = $2";
static const char PG_GET[] = "SELECT " TXM__PG_TIME(
    "created_at") " FROM txmsg_inbox WHERE subscription = $1 AND message_id = $2";

/* The ids travel as one JSON array: one statement text for any batch size.
 * "WHERE true" tells SQLite's parser the ON CONFLICT is the upsert's. */
static const char SQLITE_INSERT_MANY[] =
    "INSERT INTO txmsg_inbox (subscription, message_id, created_at)"
    " SELECT $1, value, $2 FROM json_each($3) WHERE true"
    " ON CONFLICT DO NOTHING RETURNING message_id";
static const char PG_INSERT_MANY[] =
    "INSERT INTO txmsg_inbox (subscription, message_id, created_at)"
    " SELECT $1, id, $2::timestamptz FROM json_array_elements_text($3::json) AS id"
    " ON CONFLICT DO NOTHING RETURNING message_id";
/* The same with what a trace shows of each message: one JSON array of
 * [id, correlation id, topic, source] arrays, still one statement. */
static const char SQLITE_INSERT_MSGS[] =
    "INSERT INTO txmsg_inbox (subscription, message_id, created_at, correlation_id, topic, source)"
    " SELECT $1, json_extract(value, '$[0]'), $2, NULLIF(json_extract(value, '$[1]'), ''),"
    " json_extract(value, '$[2]'), NULLIF(json_extract(value, '$[3]'), '')"
    " FROM json_each($3) WHERE true ON CONFLICT DO NOTHING RETURNING message_id";
static const char PG_INSERT_MSGS[] =
    "INSERT INTO txmsg_inbox (subscription, message_id, created_at, correlation_id, topic, source)"
    " SELECT $1, m->>0, $2::timestamptz, NULLIF(m->>1, ''), m->>2, NULLIF(m->>3, '')"
    " FROM json_array_elements($3::json) AS m ON CONFLICT DO NOTHING RETURNING message_id";
static const char SQL_DELETE[] =
    "DELETE FROM txmsg_inbox WHERE subscription = $1 AND message_id = $2";

static txm_status check_key(const char *sub, const char *id, txm_error *err)
{
    if (sub == NULL || id == NULL)
        return txm_errf(err, TXM_INVALID, "inbox: NULL subscription or message id");
    size_t ls = strlen(sub), li = strlen(id);
    if (ls == 0 || ls > TXM_TOPIC_MAX || li == 0 || li > TXM_ID_MAX)
        return txm_errf(err, TXM_INVALID, "inbox: subscription or message id empty or too long");
    return TXM_OK;
}

txm_status txm_inbox_save(txm_uow *uow, const char *subscription, const char *message_id,
                          txm_error *err)
{
    if (uow == NULL)
        return txm_errf(err, TXM_INVALID, "inbox_save: NULL unit of work");
    txm_status st = check_key(subscription, message_id, err);
    if (st != TXM_OK)
        return st;
    char now[TXM_TIME_LEN + 1];
    txm_time_format(txm_now_us(), now);
    txm_value p[3] = {TXM_TEXT(subscription), TXM_TEXT(message_id), TXM_TEXT(now)};
    st = txm__uow_exec(uow, SQL_INSERT, p, 3, NULL, NULL, TXM_DUPLICATE, err);
    if (st == TXM_DUPLICATE) {
        txm_errf(err, st, "inbox: %s already processed by %s", message_id, subscription);
        /* The commit reports the failure again; give it the same words. */
        txm_errf(&uow->failure, st, "inbox: %s already processed by %s", message_id, subscription);
    }
    return st;
}

/* The JSON array of ids. Owns: *out (free). */
static txm_status ids_json(const char *subscription, const char *const *ids, size_t n, char **out,
                           txm_error *err)
{
    *out = NULL;
    json_t *arr = json_array();
    txm_status st = arr != NULL ? TXM_OK : txm_errf(err, TXM_NOMEM, "inbox: out of memory");
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        st = check_key(subscription, ids[i], err);
        if (st == TXM_OK && json_array_append_new(arr, json_string(ids[i])) != 0)
            st = txm_errf(err, TXM_INVALID, "inbox: message id %zu is not UTF-8", i);
    }
    if (st == TXM_OK && (*out = json_dumps(arr, JSON_COMPACT)) == NULL)
        st = txm_errf(err, TXM_NOMEM, "inbox: out of memory");
    json_decref(arr);
    return st;
}

/* The JSON array of [id, correlation id, topic, source] arrays. Owns: *out
 * (free). */
static txm_status msgs_json(const char *subscription, const txm_msg *const *msgs, size_t n,
                            char **out, txm_error *err)
{
    *out = NULL;
    json_t *arr = json_array();
    txm_status st = arr != NULL ? TXM_OK : txm_errf(err, TXM_NOMEM, "inbox: out of memory");
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        const txm_msg *m = msgs[i];
        st = m != NULL ? check_key(subscription, txm_msg_id(m), err)
                       : txm_errf(err, TXM_INVALID, "inbox: message %zu is NULL", i);
        json_t *row = st == TXM_OK ? json_pack("[ssss]", txm_msg_id(m), txm_msg_correlation_id(m),
                                               txm_msg_topic(m), txm_msg_source(m))
                                   : NULL;
        if (st == TXM_OK && json_array_append_new(arr, row) != 0)
            st = txm_errf(err, TXM_INVALID, "inbox: message %zu is not UTF-8", i);
    }
    if (st == TXM_OK && (*out = json_dumps(arr, JSON_COMPACT)) == NULL)
        st = txm_errf(err, TXM_NOMEM, "inbox: out of memory");
    json_decref(arr);
    return st;
}

/* Runs the batch insert of json (what ids_json or msgs_json made; taken
 * and freed) and returns the ids that came back. Owns: *rows (free). */
static txm_status insert_many(txm_uow *uow, const char *sql, const char *subscription, char *json,
                              txm_rows **rows, txm_error *err)
{
    char now[TXM_TIME_LEN + 1];
    txm_time_format(txm_now_us(), now);
    txm_value p[3] = {TXM_TEXT(subscription), TXM_TEXT(now), TXM_TEXT(json)};
    txm_status st = txm__uow_exec(uow, sql, p, 3, rows, NULL, TXM_OK, err);
    free(json);
    return st;
}

/* An id is fresh when it came back and no earlier slot had it. */
static void mark_fresh(const txm_rows *rows, const char *const *ids, size_t n, bool *fresh)
{
    size_t nr = txm_rows_count(rows);
    for (size_t i = 0; i < n; i++) {
        fresh[i] = false;
        for (size_t r = 0; r < nr && !fresh[i]; r++)
            fresh[i] = strcmp(txm_rows_text(rows, r, 0), ids[i]) == 0;
        for (size_t k = 0; k < i && fresh[i]; k++)
            fresh[i] = strcmp(ids[k], ids[i]) != 0;
    }
}

/* Inserts the batch json (made with status st; taken and freed) with sql
 * and sets fresh[i] for each of the n ids. */
static txm_status save_json(txm_uow *uow, const char *sql, const char *subscription, txm_status st,
                            char *json, const char *const *ids, size_t n, bool *fresh,
                            txm_error *err)
{
    txm_rows *rows = NULL;
    if (st == TXM_OK)
        st = insert_many(uow, sql, subscription, json, &rows, err);
    else
        free(json);
    if (st == TXM_OK)
        mark_fresh(rows, ids, n, fresh);
    txm_rows_free(rows);
    return st;
}

txm_status txm_inbox_save_msgs(txm_uow *uow, const char *subscription, const txm_msg *const *msgs,
                               size_t n, bool *fresh, txm_error *err)
{
    if (uow == NULL || msgs == NULL || fresh == NULL)
        return txm_errf(err, TXM_INVALID, "inbox_save_msgs: NULL argument");
    if (n == 0 || n > TXM_INBOX_BATCH_MAX)
        return txm_errf(err, TXM_INVALID, "inbox_save_msgs: %zu messages, 1..%d allowed", n,
                        TXM_INBOX_BATCH_MAX);
    char *json = NULL;
    txm_status st = msgs_json(subscription, msgs, n, &json, err);
    const char *ids[TXM_INBOX_BATCH_MAX];
    for (size_t i = 0; st == TXM_OK && i < n; i++)
        ids[i] = txm_msg_id(msgs[i]);
    return save_json(uow, TXM__SQL(uow->db, SQLITE_INSERT_MSGS, PG_INSERT_MSGS), subscription, st,
                     json, ids, n, fresh, err);
}

txm_status txm_inbox_save_batch(txm_uow *uow, const char *subscription,
                                const char *const *message_ids, size_t n, bool *fresh,
                                txm_error *err)
{
    if (uow == NULL || message_ids == NULL || fresh == NULL)
        return txm_errf(err, TXM_INVALID, "inbox_save_batch: NULL argument");
    if (n == 0 || n > TXM_INBOX_BATCH_MAX)
        return txm_errf(err, TXM_INVALID, "inbox_save_batch: %zu ids, 1..%d allowed", n,
                        TXM_INBOX_BATCH_MAX);
    char *json = NULL;
    txm_status st = ids_json(subscription, message_ids, n, &json, err);
    return save_json(uow, TXM__SQL(uow->db, SQLITE_INSERT_MANY, PG_INSERT_MANY), subscription, st,
                     json, message_ids, n, fresh, err);
}

txm_status txm_inbox_remove(txm_uow *uow, const char *subscription, const char *message_id,
                            txm_error *err)
{
    if (uow == NULL)
        return txm_errf(err, TXM_INVALID, "inbox_remove: NULL unit of work");
    txm_status st = check_key(subscription, message_id, err);
    txm_value p[2] = {TXM_TEXT(subscription), TXM_TEXT(message_id)};
    if (st == TXM_OK)
        st = txm__uow_exec(uow, SQL_DELETE, p, 2, NULL, NULL, TXM_OK, err);
    return st;
}

txm_status txm_inbox_get(txm_db *db, const char *subscription, const char *message_id,
                         int64_t *created_at_us, txm_error *err)
{
    if (created_at_us != NULL)
        *created_at_us = 0;
    if (db == NULL)
        return txm_errf(err, TXM_INVALID, "inbox_get: NULL db");
    txm_status st = check_key(subscription, message_id, err);
    txm_value p[2] = {TXM_TEXT(subscription), TXM_TEXT(message_id)};
    txm_rows *rows = NULL;
    if (st == TXM_OK)
        st = txm_db_exec(db, TXM__SQL(db, SQLITE_GET, PG_GET), p, 2, &rows, NULL, err);
    if (st == TXM_OK && txm_rows_count(rows) == 0)
        st =
            txm_errf(err, TXM_NOT_FOUND, "inbox: %s not processed by %s", message_id, subscription);
    int64_t at = 0;
    if (st == TXM_OK)
        st = txm_time_parse(txm_rows_text(rows, 0, 0), &at, err);
    if (st == TXM_OK && created_at_us != NULL)
        *created_at_us = at;
    txm_rows_free(rows);
    return st;
}
