/* Retention purge, one batch per call: the body shared by
 * txm_outbox_purge_dispatched and txm_inbox_purge, which differ only in SQL. */
#include "store/store_int.h"
#include "txmsg/admin.h"

txm_status txm__store_purge(txm_db *db, const char *what, const char *sqlite_sql,
                            const char *pg_sql, int64_t created_before_us, size_t batch,
                            size_t *deleted, txm_error *err)
{
    if (deleted != NULL)
        *deleted = 0;
    if (db == NULL || batch == 0 || batch > TXM__PURGE_BATCH_MAX || created_before_us <= 0)
        return txm_errf(err, TXM_INVALID, "%s: NULL db, batch not 1..%d or no cutoff time", what,
                        TXM__PURGE_BATCH_MAX);
    char before[TXM_TIME_LEN + 1];
    txm_time_format(created_before_us, before);
    txm_value p[2] = {TXM_TEXT(before), TXM_INT(batch)};
    int64_t changes = 0;
    txm_status st = txm_db_exec(db, TXM__SQL(db, sqlite_sql, pg_sql), p, 2, NULL, &changes, err);
    if (st == TXM_OK && deleted != NULL)
        *deleted = (size_t)changes;
    return st;
}
