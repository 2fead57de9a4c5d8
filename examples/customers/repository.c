/* Customers repository: the customers and credit_reservations tables on
 * SQLite or PostgreSQL. Available credit is computed from the reservations
 * in the same statement that reads the customer, so it is always
 * consistent with the version read. */
#include <stdio.h>
#include <string.h>

#include "customers.h"

static const char *const SQLITE_SCHEMA[] = {
    "CREATE TABLE IF NOT EXISTS customers ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),"
    " version INTEGER NOT NULL,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT)",
    "CREATE TABLE IF NOT EXISTS credit_reservations ("
    " customer_id TEXT NOT NULL REFERENCES customers (id),"
    " order_id TEXT NOT NULL,"
    " amount INTEGER NOT NULL CHECK (amount >= 0),"
    " PRIMARY KEY (customer_id, order_id))",
    NULL,
};

static const char *const PG_SCHEMA[] = {
    "CREATE TABLE IF NOT EXISTS customers ("
    " id text PRIMARY KEY,"
    " name text NOT NULL,"
    " credit_limit bigint NOT NULL CHECK (credit_limit >= 0),"
    " version bigint NOT NULL,"
    " created_at timestamptz NOT NULL,"
    " updated_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS credit_reservations ("
    " customer_id text NOT NULL REFERENCES customers (id),"
    " order_id text NOT NULL,"
    " amount bigint NOT NULL CHECK (amount >= 0),"
    " PRIMARY KEY (customer_id, order_id))",
    NULL,
};

/* Columns: id, name, credit_limit, available_credit, version, created_at,
 * updated_at. PostgreSQL formats its timestamps as the RFC 3339 text SQLite
 * stores (the connection runs in UTC). */
#define AVAILABLE                                                                                  \
    " c.credit_limit - COALESCE((SELECT SUM(r.amount) FROM credit_reservations r"                  \
    " WHERE r.customer_id = c.id), 0),"
static const char SQLITE_FIND[] =
    "SELECT c.id, c.name, c.credit_limit," AVAILABLE " c.version, c.created_at, c.updated_at"
    " FROM customers c WHERE c.id = $1";
static const char PG_FIND[] = "SELECT c.id, c.name, c.credit_limit," AVAILABLE " c.version,"
                              " to_char(c.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                              " to_char(c.updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                              " FROM customers c WHERE c.id = $1";

static const char SQL_INSERT[] = "INSERT INTO customers (id, name, credit_limit, version,"
                                 " created_at) VALUES ($1, $2, $3, $4, $5)";
static const char SQL_RESERVE[] =
    "INSERT INTO credit_reservations (customer_id, order_id, amount) VALUES ($1, $2, $3)";
static const char SQL_RELEASE[] =
    "DELETE FROM credit_reservations WHERE customer_id = $1 AND order_id = $2";
static const char SQL_BUMP[] = "UPDATE customers SET version = version + 1, updated_at = $1"
                               " WHERE id = $2 AND version = $3";

static bool is_pg(txm_db *db)
{
    return strcmp(txm_db_dialect(db), "postgresql") == 0;
}

txm_status customers_schema(txm_db *db, txm_error *err)
{
    return ex_exec_all(db, is_pg(db) ? PG_SCHEMA : SQLITE_SCHEMA, err);
}

txm_status customers_insert(txm_uow *uow, const customer *c, txm_error *err)
{
    const txm_value p[] = {TXM_TEXT(c->id), TXM_TEXT(c->name), TXM_INT(c->credit_limit),
                           TXM_INT(c->version), TXM_TEXT(c->created_at)};
    return txm_uow_exec(uow, SQL_INSERT, p, 5, NULL, NULL, err);
}

txm_status customers_find(txm_db *db, txm_uow *uow, const char *id, customer *out, txm_error *err)
{
    txm_db *d = uow != NULL ? txm_uow_db(uow) : db;
    const txm_value p[] = {TXM_TEXT(id)};
    txm_rows *rows = NULL;
    txm_status st = ex_exec(d, uow, is_pg(d) ? PG_FIND : SQLITE_FIND, p, 1, &rows, NULL, err);
    if (st == TXM_OK && txm_rows_count(rows) == 0)
        st = txm_errf(err, TXM_NOT_FOUND, "customer %s not found", id);
    if (st == TXM_OK) {
        memset(out, 0, sizeof *out);
        snprintf(out->id, sizeof out->id, "%s", txm_rows_text(rows, 0, 0));
        snprintf(out->name, sizeof out->name, "%s", txm_rows_text(rows, 0, 1));
        out->credit_limit = txm_rows_int(rows, 0, 2);
        out->available_credit = txm_rows_int(rows, 0, 3);
        out->version = txm_rows_int(rows, 0, 4);
        ex_copy_time(txm_rows_text(rows, 0, 5), out->created_at);
        ex_copy_time(txm_rows_text(rows, 0, 6), out->updated_at);
    }
    txm_rows_free(rows);
    return st;
}

txm_status customers_reservation_add(txm_uow *uow, const char *customer_id, const char *order_id,
                                     int64_t amount, txm_error *err)
{
    const txm_value p[] = {TXM_TEXT(customer_id), TXM_TEXT(order_id), TXM_INT(amount)};
    return txm_uow_exec(uow, SQL_RESERVE, p, 3, NULL, NULL, err);
}

txm_status customers_reservation_remove(txm_uow *uow, const char *customer_id, const char *order_id,
                                        bool *removed, txm_error *err)
{
    const txm_value p[] = {TXM_TEXT(customer_id), TXM_TEXT(order_id)};
    int64_t changes = 0;
    txm_status st = txm_uow_exec(uow, SQL_RELEASE, p, 2, NULL, &changes, err);
    *removed = st == TXM_OK && changes > 0;
    return st;
}

txm_status customers_bump_version(txm_uow *uow, const customer *c, txm_error *err)
{
    ex_time now;
    ex_now(now);
    const txm_value p[] = {TXM_TEXT(now), TXM_TEXT(c->id), TXM_INT(c->version)};
    return txm_uow_exec_versioned(uow, SQL_BUMP, p, 3, err);
}
