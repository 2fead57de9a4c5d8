/* Tracing one business flow: the outbox messages and inbox entries of one
 * database with a correlation id, in time order, read in one statement.
 * It scans both tables: schema version 3 keeps the correlation id in the
 * inbox but indexes it nowhere (src/db/migrate.c says why). */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "store/store_int.h"
#include "txmsg/admin.h"

/* Kind 0 (outbox) sorts before kind 1 (inbox) at the same time, and the
 * message id (UUID v7, time-ordered) breaks the remaining ties. */
static const char SQLITE_TRACE[] =
    "SELECT 0 AS k, created_at AS at, message_id, topic, source, aggregate_id, '',"
    " CASE WHEN " TXM__SQLITE_DISPATCHED " THEN 1 ELSE 0 END"
    " FROM txmsg_outbox WHERE correlation_id = $1"
    " UNION ALL"
    " SELECT 1, created_at, message_id, COALESCE(topic, ''), COALESCE(source, ''), '',"
    " subscription, 0 FROM txmsg_inbox WHERE correlation_id = $1"
    " ORDER BY 2, 1, 3 LIMIT $2";
static const char PG_TRACE[] = "SELECT k, " TXM__PG_TIME(
    "at") ", message_id, topic, source, aggregate_id, sub, d FROM ("
          "SELECT 0 AS k, created_at AS at, message_id, topic, source, aggregate_id, '' AS sub,"
          " CASE WHEN is_dispatched THEN 1 ELSE 0 END AS d"
          " FROM txmsg_outbox WHERE correlation_id = $1"
          " UNION ALL"
          " SELECT 1, created_at, message_id, COALESCE(topic, ''), COALESCE(source, ''), '',"
          " subscription, 0 FROM txmsg_inbox WHERE correlation_id = $1) AS t"
          " ORDER BY at, k, message_id LIMIT $2::bigint";

/* Copies column col of row r into dst (size bytes), truncating. */
static void copy_text(char *dst, size_t size, const txm_rows *rows, size_t r, size_t col)
{
    const char *v = txm_rows_text(rows, r, col);
    snprintf(dst, size, "%s", v != NULL ? v : "");
}

static txm_status fill_entry(const txm_rows *rows, size_t r, txm_trace_entry *e, txm_error *err)
{
    e->kind = txm_rows_int(rows, r, 0) == 0 ? TXM_TRACE_OUTBOX : TXM_TRACE_INBOX;
    copy_text(e->message_id, sizeof e->message_id, rows, r, 2);
    copy_text(e->topic, sizeof e->topic, rows, r, 3);
    copy_text(e->source, sizeof e->source, rows, r, 4);
    copy_text(e->aggregate_id, sizeof e->aggregate_id, rows, r, 5);
    copy_text(e->subscription, sizeof e->subscription, rows, r, 6);
    e->dispatched = txm_rows_int(rows, r, 7) != 0;
    return txm_time_parse(txm_rows_text(rows, r, 1), &e->at_us, err);
}

txm_status txm_trace_list(txm_db *db, const char *correlation_id, size_t limit,
                          txm_trace_entry **out, size_t *count, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (db == NULL || correlation_id == NULL || out == NULL || count == NULL)
        return txm_errf(err, TXM_INVALID, "trace_list: NULL argument");
    size_t len = strlen(correlation_id);
    if (len == 0 || len > TXM_ID_MAX)
        return txm_errf(err, TXM_INVALID, "trace_list: correlation id empty or longer than %d",
                        TXM_ID_MAX);
    if (limit == 0 || limit > TXM_TRACE_LIMIT_MAX)
        return txm_errf(err, TXM_INVALID, "trace_list: limit %zu outside 1..%d", limit,
                        TXM_TRACE_LIMIT_MAX);
    txm_value p[2] = {TXM_TEXT(correlation_id), TXM_INT((int64_t)limit)};
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, TXM__SQL(db, SQLITE_TRACE, PG_TRACE), p, 2, &rows, NULL, err);
    size_t n = st == TXM_OK ? txm_rows_count(rows) : 0;
    txm_trace_entry *list = NULL;
    if (n > 0 && (list = txm__calloc(n, sizeof *list)) == NULL)
        st = txm_errf(err, TXM_NOMEM, "trace_list: out of memory");
    for (size_t r = 0; st == TXM_OK && r < n; r++)
        st = fill_entry(rows, r, &list[r], err);
    txm_rows_free(rows);
    if (st != TXM_OK) {
        txm_free(list);
        return st;
    }
    *out = list;
    *count = n;
    return TXM_OK;
}
