/* Unit of Work: one transaction on one pooled connection. The first failing
 * statement fails the unit of work (PostgreSQL aborts the transaction at that
 * point anyway), and commit then rolls back and reports that failure. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/store_int.h"

txm_status txm_uow_begin(txm_db *db, txm_uow **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (db == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "uow_begin: NULL argument");
    txm_uow *uow = txm__calloc(1, sizeof *uow);
    if (uow == NULL)
        return txm_errf(err, TXM_NOMEM, "uow_begin: out of memory");
    uow->db = db;
    txm_status st = txm__db_acquire(db, &uow->conn, err);
    if (st == TXM_OK)
        st = txm__conn_begin(db, uow->conn, err);
    if (st != TXM_OK) {
        txm__db_release(db, uow->conn);
        free(uow);
        return st;
    }
    *out = uow;
    return TXM_OK;
}

static txm_status fail_uow(txm_uow *uow, txm_status st, const txm_error *detail)
{
    if (uow->failed == TXM_OK) {
        uow->failed = st;
        if (detail != NULL)
            uow->failure = *detail;
        else
            txm_errf(&uow->failure, st, "%s", txm_strerror(st));
        uow->failure.status = st;
    }
    return st;
}

txm_status txm__uow_exec(txm_uow *uow, const char *sql, const txm_value *params, size_t n,
                         txm_rows **rows, int64_t *changes, txm_status on_constraint,
                         txm_error *err)
{
    if (rows != NULL)
        *rows = NULL;
    if (uow->failed != TXM_OK) {
        if (err != NULL)
            *err = uow->failure;
        return uow->failed;
    }
    txm_error local;
    txm_error_clear(&local);
    txm_status st = txm__conn_exec(uow->db, uow->conn, sql, params, n, rows, changes, &local);
    if (st == TXM_CONSTRAINT && on_constraint != TXM_OK)
        st = local.status = on_constraint;
    if (st != TXM_OK)
        fail_uow(uow, st, &local);
    if (err != NULL && st != TXM_OK)
        *err = local;
    return st;
}

txm_status txm_uow_exec(txm_uow *uow, const char *sql, const txm_value *params, size_t n_params,
                        txm_rows **rows, int64_t *changes, txm_error *err)
{
    if (uow == NULL || sql == NULL)
        return txm_errf(err, TXM_INVALID, "uow_exec: NULL argument");
    return txm__uow_exec(uow, sql, params, n_params, rows, changes, TXM_OK, err);
}

txm_status txm_uow_exec_versioned(txm_uow *uow, const char *sql, const txm_value *params,
                                  size_t n_params, txm_error *err)
{
    int64_t changes = 0;
    txm_status st = txm_uow_exec(uow, sql, params, n_params, NULL, &changes, err);
    if (st != TXM_OK || changes == 1)
        return st;
    txm_error detail;
    txm_errf(&detail, TXM_CONFLICT, "uow: versioned update changed %lld rows, expected 1",
             (long long)changes);
    fail_uow(uow, TXM_CONFLICT, &detail);
    if (err != NULL)
        *err = detail;
    return TXM_CONFLICT;
}

txm_status txm_uow_savepoint(txm_uow *uow, txm_error *err)
{
    if (uow == NULL)
        return txm_errf(err, TXM_INVALID, "uow_savepoint: NULL unit of work");
    if (uow->savepoint)
        return txm_errf(err, TXM_STATE, "uow_savepoint: a savepoint is set already");
    txm_status st = txm__uow_exec(uow, "SAVEPOINT txm_sp", NULL, 0, NULL, NULL, TXM_OK, err);
    uow->savepoint = st == TXM_OK;
    return st;
}

txm_status txm_uow_release_savepoint(txm_uow *uow, txm_error *err)
{
    if (uow == NULL || !uow->savepoint)
        return txm_errf(err, TXM_STATE, "uow_release_savepoint: no savepoint set");
    uow->savepoint = false;
    return txm__uow_exec(uow, "RELEASE SAVEPOINT txm_sp", NULL, 0, NULL, NULL, TXM_OK, err);
}

/* Runs even when the unit has failed since the savepoint: undoing that
 * failure is the point. */
txm_status txm_uow_rollback_to_savepoint(txm_uow *uow, txm_error *err)
{
    if (uow == NULL || !uow->savepoint)
        return txm_errf(err, TXM_STATE, "uow_rollback_to_savepoint: no savepoint set");
    uow->savepoint = false;
    txm_error local;
    txm_error_clear(&local);
    txm_status st = txm__conn_exec(uow->db, uow->conn, "ROLLBACK TO SAVEPOINT txm_sp", NULL, 0,
                                   NULL, NULL, &local);
    if (st == TXM_OK)
        st = txm__conn_exec(uow->db, uow->conn, "RELEASE SAVEPOINT txm_sp", NULL, 0, NULL, NULL,
                            &local);
    if (st != TXM_OK) {
        uow->failed = TXM_OK; /* the new failure replaces the undone one */
        fail_uow(uow, st, &local);
        if (err != NULL)
            *err = local;
        return st;
    }
    uow->failed = TXM_OK;
    txm_error_clear(&uow->failure);
    return TXM_OK;
}

txm_status txm_uow_commit(txm_uow **p, txm_error *err)
{
    if (p == NULL || *p == NULL)
        return txm_errf(err, TXM_INVALID, "uow_commit: NULL unit of work");
    txm_uow *uow = *p;
    *p = NULL;
    txm_status st = uow->failed;
    if (st != TXM_OK) {
        txm__conn_rollback(uow->db, uow->conn);
        if (err != NULL)
            *err = uow->failure;
    } else {
        st = txm__conn_commit(uow->db, uow->conn, err);
        if (st != TXM_OK)
            txm__conn_rollback(uow->db, uow->conn);
    }
    txm__db_release(uow->db, uow->conn);
    free(uow);
    return st;
}

void txm_uow_rollback(txm_uow **p)
{
    if (p == NULL || *p == NULL)
        return;
    txm_uow *uow = *p;
    *p = NULL;
    txm__conn_rollback(uow->db, uow->conn);
    txm__db_release(uow->db, uow->conn);
    free(uow);
}

txm_db *txm_uow_db(const txm_uow *uow)
{
    return uow == NULL ? NULL : uow->db;
}
