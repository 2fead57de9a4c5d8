/* Outbox administration: filtered listing, counters, the relay's position
 * (SQLite cursor row or PostgreSQL replication slot) and retention purge in
 * bounded batches. Every query binds its inputs; nothing is spliced into SQL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/store_int.h"
#include "txmsg/admin.h"

static const char SQLITE_COUNTS[] =
    "SELECT " TXM__SQLITE_COUNT_NOT_DISPATCHED ", (SELECT COALESCE(max(seq), 0) FROM txmsg_outbox)";
static const char PG_COUNTS[] =
    "SELECT (SELECT count(*) FROM txmsg_outbox WHERE NOT is_dispatched),"
    " (SELECT COALESCE(max(seq), 0) FROM txmsg_outbox)";
static const char SQL_CURSOR[] = "SELECT position FROM txmsg_relay_cursor WHERE name = $1";
static const char SQL_AFTER_CURSOR[] =
    "SELECT created_at FROM txmsg_outbox WHERE seq > $1 ORDER BY seq LIMIT 1";
static const char PG_SLOT[] =
    "SELECT active, confirmed_flush_lsn::text,"
    " COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint"
    " FROM pg_replication_slots WHERE slot_name = $1";
/* SQLite: a dispatched row goes only once every relay cursor has passed it,
 * so purge never takes a row from under a relay that has yet to publish it
 * (a row marked by hand ahead of the cursors stays). With no cursor at all
 * no relay has run, and rows marked by hand may go. */
static const char SQLITE_PURGE[] =
    "DELETE FROM txmsg_outbox WHERE seq IN (SELECT seq FROM txmsg_outbox"
    " WHERE ((is_dispatched = 1 AND seq <= COALESCE(" TXM__SQLITE_CURSOR_MIN
    ", 9223372036854775807)) OR (is_dispatched = 0 AND seq <= " TXM__SQLITE_PASSED "))"
    " AND created_at < $1 ORDER BY seq LIMIT $2)";
static const char PG_PURGE[] =
    "DELETE FROM txmsg_outbox WHERE seq IN (SELECT seq FROM txmsg_outbox"
    " WHERE is_dispatched AND created_at < $1::timestamptz ORDER BY seq LIMIT $2::bigint)";

void txm_outbox_filter_init(txm_outbox_filter *f)
{
    if (f == NULL)
        return;
    memset(f, 0, sizeof *f);
    f->limit = 100;
}

txm_status txm_outbox_stats_get(txm_db *db, txm_outbox_stats *out, txm_error *err)
{
    if (db == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "outbox_stats_get: NULL argument");
    memset(out, 0, sizeof *out);
    txm_rows *rows = NULL;
    txm_status st =
        txm_db_exec(db, TXM__SQL(db, SQLITE_COUNTS, PG_COUNTS), NULL, 0, &rows, NULL, err);
    if (st == TXM_OK) {
        out->not_dispatched = txm_rows_int(rows, 0, 0);
        out->max_seq = txm_rows_int(rows, 0, 1);
    }
    txm_rows_free(rows);
    if (st == TXM_OK)
        st = txm_outbox_oldest_age(db, &out->oldest_age_us, &out->has_oldest, err);
    return st;
}

/* SQLite: the cursor row, the rows after it and the oldest one's age. */
static txm_status sqlite_relay(txm_db *db, txm_relay_status *out, txm_error *err)
{
    txm_value p = TXM_TEXT(out->name);
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, SQL_CURSOR, &p, 1, &rows, NULL, err);
    out->found = txm_rows_count(rows) > 0;
    int64_t position = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    rows = NULL;
    snprintf(out->position, sizeof out->position, "%lld", (long long)position);
    txm_outbox_stats stats;
    if (st == TXM_OK)
        st = txm_outbox_stats_get(db, &stats, err);
    if (st == TXM_OK)
        out->behind = stats.max_seq > position ? stats.max_seq - position : 0;
    txm_value q = TXM_INT(position);
    if (st == TXM_OK)
        st = txm_db_exec(db, SQL_AFTER_CURSOR, &q, 1, &rows, NULL, err);
    int64_t created = 0;
    if (st == TXM_OK && txm_rows_count(rows) > 0)
        st = txm_time_parse(txm_rows_text(rows, 0, 0), &created, err);
    if (st == TXM_OK && txm_rows_count(rows) > 0) {
        out->has_lag = true;
        out->lag_us = txm_now_us() - created;
    }
    txm_rows_free(rows);
    return st;
}

/* PostgreSQL: the slot's row in pg_replication_slots, and the age of the
 * oldest not-dispatched message as the lag in time. */
static txm_status pg_relay(txm_db *db, txm_relay_status *out, txm_error *err)
{
    txm_value p = TXM_TEXT(out->name);
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, PG_SLOT, &p, 1, &rows, NULL, err);
    if (st == TXM_OK && txm_rows_count(rows) > 0) {
        out->found = true;
        out->active = txm_rows_int(rows, 0, 0) != 0;
        const char *lsn = txm_rows_text(rows, 0, 1);
        snprintf(out->position, sizeof out->position, "%s", lsn != NULL ? lsn : "");
        out->behind = txm_rows_int(rows, 0, 2);
    }
    txm_rows_free(rows);
    if (st == TXM_OK)
        st = txm_outbox_oldest_age(db, &out->lag_us, &out->has_lag, err);
    return st;
}

txm_status txm_outbox_relay_status(txm_db *db, const char *name, txm_relay_status *out,
                                   txm_error *err)
{
    if (db == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "outbox_relay_status: NULL argument");
    memset(out, 0, sizeof *out);
    bool pg = txm__db_dialect(db) == TXM__DIALECT_PG;
    if (name != NULL && strlen(name) > TXM_SLOT_NAME_MAX)
        return txm_errf(err, TXM_INVALID, "outbox_relay_status: name longer than %d bytes",
                        TXM_SLOT_NAME_MAX);
    txm_status st = TXM_OK;
    if (name != NULL)
        snprintf(out->name, sizeof out->name, "%s", name);
    else if (pg)
        st = txm_db_relay_slot(db, out->name, err);
    else
        snprintf(out->name, sizeof out->name, "default");
    if (st == TXM_OK)
        st = pg ? pg_relay(db, out, err) : sqlite_relay(db, out, err);
    return st;
}

txm_status txm_outbox_purge_dispatched(txm_db *db, int64_t created_before_us, size_t batch,
                                       size_t *deleted, txm_error *err)
{
    return txm__store_purge(db, "outbox_purge", SQLITE_PURGE, PG_PURGE, created_before_us, batch,
                            deleted, err);
}
