/* Inbox repository: (subscription, message id) pairs a consumer has
 * processed, the key of the Idempotent Consumer. */
#include <string.h>

#include "store/store_int.h"
#include "txmsg/inbox.h"
#include "txmsg/message.h"

static const char SQL_INSERT[] =
    "INSERT INTO txmsg_inbox (subscription, message_id, created_at) VALUES ($1, $2, $3)";
static const char SQLITE_GET[] =
    "SELECT created_at FROM txmsg_inbox WHERE subscription = $1 AND message_id = $2";
static const char PG_GET[] = "SELECT " TXM__PG_TIME(
    "created_at") " FROM txmsg_inbox WHERE subscription = $1 AND message_id = $2";

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
