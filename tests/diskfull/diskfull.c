#include "diskfull.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

long long diskfull_count(txm_db *db, const char *sql)
{
    txm_rows *rows = NULL;
    txm_error err = {0};
    if (txm_db_exec(db, sql, NULL, 0, &rows, NULL, &err) != TXM_OK)
        fail_msg("%s: %s", sql, err.text);
    long long n = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return n;
}

txm_status diskfull_add_item(txm_db *db, const char *id, txm_error *err)
{
    txm_uow *uow = NULL;
    txm_msg *msg = NULL;
    const txm_value v[] = {TXM_TEXT(id)};
    txm_status st = txm_uow_begin(db, &uow, err);
    if (st == TXM_OK)
        st = txm_uow_exec(uow, "INSERT INTO items (id) VALUES ($1)", v, 1, NULL, NULL, err);
    if (st == TXM_OK)
        st = txm_msg_new("item--added", id, NULL, "{\"n\":1}", &msg, err);
    if (st == TXM_OK)
        st = txm_outbox_publish(uow, &msg, err);
    if (st == TXM_OK)
        return txm_uow_commit(&uow, err);
    txm_msg_free(msg);
    txm_uow_rollback(&uow);
    return st;
}
