/* Orders repository: the orders table on SQLite or PostgreSQL. */
#include <stdio.h>
#include <string.h>

#include "orders.h"

static const char *const SQLITE_SCHEMA[] = {
    "CREATE TABLE IF NOT EXISTS orders ("
    " id TEXT PRIMARY KEY,"
    " customer_id TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')),"
    " order_total INTEGER NOT NULL CHECK (order_total > 0),"
    " version INTEGER NOT NULL,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT)",
    NULL,
};

static const char *const PG_SCHEMA[] = {
    "CREATE TABLE IF NOT EXISTS orders ("
    " id text PRIMARY KEY,"
    " customer_id text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED')),"
    " order_total bigint NOT NULL CHECK (order_total > 0),"
    " version bigint NOT NULL,"
    " created_at timestamptz NOT NULL,"
    " updated_at timestamptz)",
    NULL,
};

/* PostgreSQL formats its timestamps as the RFC 3339 text SQLite stores
 * (the connection runs in UTC). */
static const char SQLITE_FIND[] =
    "SELECT id, customer_id, state, order_total, version, created_at, updated_at"
    " FROM orders WHERE id = $1";
static const char PG_FIND[] = "SELECT id, customer_id, state, order_total, version,"
                              " to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                              " to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                              " FROM orders WHERE id = $1";
static const char SQL_INSERT[] = "INSERT INTO orders (id, customer_id, state, order_total,"
                                 " version, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
static const char SQL_SET_STATE[] = "UPDATE orders SET state = $1, version = version + 1,"
                                    " updated_at = $2 WHERE id = $3 AND version = $4";

static bool is_pg(txm_db *db)
{
    return strcmp(txm_db_dialect(db), "postgresql") == 0;
}

txm_status orders_schema(txm_db *db, txm_error *err)
{
    return ex_exec_all(db, is_pg(db) ? PG_SCHEMA : SQLITE_SCHEMA, err);
}

txm_status orders_insert(txm_uow *uow, const order *o, txm_error *err)
{
    const txm_value p[] = {TXM_TEXT(o->id),     TXM_TEXT(o->customer_id),
                           TXM_TEXT(o->state),  TXM_INT(o->order_total),
                           TXM_INT(o->version), TXM_TEXT(o->created_at)};
    return txm_uow_exec(uow, SQL_INSERT, p, 6, NULL, NULL, err);
}

txm_status orders_find(txm_db *db, txm_uow *uow, const char *id, order *out, txm_error *err)
{
    txm_db *d = uow != NULL ? txm_uow_db(uow) : db;
    const txm_value p[] = {TXM_TEXT(id)};
    txm_rows *rows = NULL;
    txm_status st = ex_exec(d, uow, is_pg(d) ? PG_FIND : SQLITE_FIND, p, 1, &rows, NULL, err);
    if (st == TXM_OK && txm_rows_count(rows) == 0)
        st = txm_errf(err, TXM_NOT_FOUND, "order %s not found", id);
    if (st == TXM_OK) {
        memset(out, 0, sizeof *out);
        snprintf(out->id, sizeof out->id, "%s", txm_rows_text(rows, 0, 0));
        snprintf(out->customer_id, sizeof out->customer_id, "%s", txm_rows_text(rows, 0, 1));
        snprintf(out->state, sizeof out->state, "%s", txm_rows_text(rows, 0, 2));
        out->order_total = txm_rows_int(rows, 0, 3);
        out->version = txm_rows_int(rows, 0, 4);
        ex_copy_time(txm_rows_text(rows, 0, 5), out->created_at);
        ex_copy_time(txm_rows_text(rows, 0, 6), out->updated_at);
    }
    txm_rows_free(rows);
    return st;
}

txm_status orders_set_state(txm_uow *uow, order *o, const char *state, txm_error *err)
{
    ex_time now;
    ex_now(now);
    const txm_value p[] = {TXM_TEXT(state), TXM_TEXT(now), TXM_TEXT(o->id), TXM_INT(o->version)};
    txm_status st = txm_uow_exec_versioned(uow, SQL_SET_STATE, p, 4, err);
    if (st == TXM_OK) {
        snprintf(o->state, sizeof o->state, "%s", state);
        o->version++;
        ex_copy_time(now, o->updated_at);
    }
    return st;
}
