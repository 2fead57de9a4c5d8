/* Inbox administration: retention purge of processed-message rows in
 * bounded batches, each its own short statement, and the count of rows each
 * subscription recorded lately. */
#include <stdio.h>

#include "core/alloc.h"
#include "store/store_int.h"
#include "txmsg/admin.h"

/* The inbox has no sequence number, so each batch is selected by its key. */
static const char SQLITE_PURGE[] =
    "DELETE FROM txmsg_inbox WHERE (subscription, message_id) IN"
    " (SELECT subscription, message_id FROM txmsg_inbox WHERE created_at < $1"
    " ORDER BY created_at LIMIT $2)";
static const char PG_PURGE[] =
    "DELETE FROM txmsg_inbox WHERE (subscription, message_id) IN"
    " (SELECT subscription, message_id FROM txmsg_inbox WHERE created_at < $1::timestamptz"
    " ORDER BY created_at LIMIT $2::bigint)";

txm_status txm_inbox_purge(txm_db *db, int64_t created_before_us, size_t batch, size_t *deleted,
                           txm_error *err)
{
    return txm__store_purge(db, "inbox_purge", SQLITE_PURGE, PG_PURGE, created_before_us, batch,
                            deleted, err);
}

/* The created_at index finds the window's rows; SQLite stores RFC 3339 text,
 * which sorts as time does. */
static const char SQLITE_HANDLED[] =
    "SELECT subscription, count(*) FROM txmsg_inbox WHERE created_at >= $1"
    " GROUP BY subscription ORDER BY subscription LIMIT $2";
static const char PG_HANDLED[] =
    "SELECT subscription, count(*) FROM txmsg_inbox WHERE created_at >= $1::timestamptz"
    " GROUP BY subscription ORDER BY subscription LIMIT $2::bigint";

txm_status txm_inbox_handled_since(txm_db *db, int64_t since_us, txm_inbox_handled **out,
                                   size_t *count, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (db == NULL || out == NULL || count == NULL)
        return txm_errf(err, TXM_INVALID, "inbox_handled_since: NULL argument");
    char since[TXM_TIME_LEN + 1];
    txm_time_format(since_us, since);
    txm_value p[2] = {TXM_TEXT(since), TXM_INT(TXM_INBOX_HANDLED_MAX)};
    txm_rows *rows = NULL;
    txm_status st =
        txm_db_exec(db, TXM__SQL(db, SQLITE_HANDLED, PG_HANDLED), p, 2, &rows, NULL, err);
    size_t n = txm_rows_count(rows);
    txm_inbox_handled *list = NULL;
    if (st == TXM_OK && n > 0 && (list = txm__calloc(n, sizeof *list)) == NULL)
        st = txm_errf(err, TXM_NOMEM, "inbox_handled_since: out of memory");
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        snprintf(list[i].subscription, sizeof list[i].subscription, "%s",
                 txm_rows_text(rows, i, 0));
        list[i].count = txm_rows_int(rows, i, 1);
    }
    txm_rows_free(rows);
    if (st != TXM_OK) {
        txm_free(list);
        return st;
    }
    *out = list;
    *count = n;
    return TXM_OK;
}
