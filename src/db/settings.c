/* Database settings: the txmsg_settings table of PostgreSQL (schema version
 * 2), read once when a handle opens, and the outbox mode kept on the handle.
 *
 * Thread safety: the mode is an atomic on the handle; the rest runs on
 * pooled connections like any txm_db_exec. */
#include <stdatomic.h>
#include <string.h>

#include "db/db_int.h"

static const char SQL_HAS_TABLE[] = "SELECT to_regclass('txmsg_settings') IS NOT NULL";
static const char SQL_GET[] = "SELECT value FROM txmsg_settings WHERE name = $1";
static const char SQL_PUT[] = "INSERT INTO txmsg_settings (name, value) VALUES ($1, $2)"
                              " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";

/* Whether the schema has txmsg_settings: a handle opened without migrating
 * may face a schema of version 1. */
static txm_status has_table(txm_db *db, bool *out, txm_error *err)
{
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, SQL_HAS_TABLE, NULL, 0, &rows, NULL, err);
    const char *v = txm_rows_text(rows, 0, 0);
    *out = st == TXM_OK && v != NULL && strcmp(v, "t") == 0;
    txm_rows_free(rows);
    return st;
}

txm_status txm__db_settings_load(txm_db *db, txm_error *err)
{
    if (txm__db_dialect(db) != TXM__DIALECT_PG)
        return TXM_OK;
    bool exists = false;
    txm_status st = has_table(db, &exists, err);
    if (st != TXM_OK || !exists)
        return st;
    txm_value p = TXM_TEXT("outbox_mode");
    txm_rows *rows = NULL;
    st = txm_db_exec(db, SQL_GET, &p, 1, &rows, NULL, err);
    const char *v = txm_rows_text(rows, 0, 0);
    txm_outbox_mode mode = TXM_OUTBOX_TABLE;
    if (v != NULL && strcmp(v, "messages") == 0)
        mode = TXM_OUTBOX_MESSAGES;
    else if (v != NULL && strcmp(v, "table") != 0)
        /* Table mode loses nothing, and the relay reads both. */
        txm_logf(db->opts.log, db->opts.log_ctx, TXM_LOG_WARN,
                 "db: txmsg_settings outbox_mode \"%.32s\" is neither table nor messages; "
                 "using table",
                 v);
    txm_rows_free(rows);
    if (st == TXM_OK)
        txm__db_set_outbox_mode(db, mode);
    return st;
}

txm_status txm__db_setting_put(txm_db *db, const char *name, const char *value, txm_error *err)
{
    bool exists = false;
    txm_status st = has_table(db, &exists, err);
    if (st == TXM_OK && !exists)
        return txm_errf(err, TXM_STATE,
                        "db: no txmsg_settings table: the schema predates version 2 (start a "
                        "service or the relay once; they migrate it)");
    txm_value p[2] = {TXM_TEXT(name), TXM_TEXT(value)};
    if (st == TXM_OK)
        st = txm_db_exec(db, SQL_PUT, p, 2, NULL, NULL, err);
    return st;
}

txm_outbox_mode txm__db_outbox_mode(const txm_db *db)
{
    return (txm_outbox_mode)atomic_load_explicit(&db->outbox_mode, memory_order_relaxed);
}

void txm__db_set_outbox_mode(txm_db *db, txm_outbox_mode mode)
{
    atomic_store_explicit(&db->outbox_mode, (int)mode, memory_order_relaxed);
}
