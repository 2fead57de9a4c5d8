/* Inbox administration: retention purge of processed-message rows in
 * bounded batches, each its own short statement. */
#include "store/store_int.h"
#include "txmsg/admin.h"

#define PURGE_BATCH_MAX 100000

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
    if (deleted != NULL)
        *deleted = 0;
    if (db == NULL || batch == 0 || batch > PURGE_BATCH_MAX || created_before_us <= 0)
        return txm_errf(err, TXM_INVALID, "inbox_purge: NULL db, batch not 1..%d or no cutoff time",
                        PURGE_BATCH_MAX);
    char before[TXM_TIME_LEN + 1];
    txm_time_format(created_before_us, before);
    txm_value p[2] = {TXM_TEXT(before), TXM_INT(batch)};
    int64_t changes = 0;
    txm_status st =
        txm_db_exec(db, TXM__SQL(db, SQLITE_PURGE, PG_PURGE), p, 2, NULL, &changes, err);
    if (st == TXM_OK && deleted != NULL)
        *deleted = (size_t)changes;
    return st;
}
