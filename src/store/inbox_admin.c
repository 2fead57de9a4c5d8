/* Inbox administration: retention purge of processed-message rows in
 * bounded batches, each its own short statement. */
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
