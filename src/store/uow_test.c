/* Unit of Work: atomic commit of domain, outbox and inbox writes, on SQLite
 * and PostgreSQL. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testdb.h"

static const char SQL_TABLE[] =
    "CREATE TABLE accounts (id text PRIMARY KEY, balance bigint NOT NULL, version bigint NOT "
    "NULL)";
static const char SQL_ADD[] = "INSERT INTO accounts (id, balance, version) VALUES ($1, $2, 1)";
static const char SQL_CREDIT[] = "UPDATE accounts SET balance = balance + $1 WHERE id = $2";
static const char SQL_VERSIONED[] =
    "UPDATE accounts SET balance = $1, version = version + 1 WHERE id = $2 AND version = $3";

static int64_t scalar(txm_db *db, const char *sql, const char *arg)
{
    txm_value p = TXM_TEXT(arg);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, sql, &p, arg != NULL ? 1 : 0, &rows, NULL, NULL), TXM_OK);
    int64_t v = txm_rows_count(rows) == 0 ? -1 : txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return v;
}

static int64_t balance(txm_db *db, const char *id)
{
    return scalar(db, "SELECT balance FROM accounts WHERE id = $1", id);
}

static int64_t outbox_count(txm_db *db)
{
    return scalar(db, "SELECT count(*) FROM txmsg_outbox", NULL);
}

static txm_db *setup_accounts(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    assert_int_equal(txm_db_exec(fx->db, SQL_TABLE, NULL, 0, NULL, NULL, NULL), TXM_OK);
    txm_value p[2] = {TXM_TEXT("acc-1"), TXM_INT(100)};
    assert_int_equal(txm_db_exec(fx->db, SQL_ADD, p, 2, NULL, NULL, NULL), TXM_OK);
    return fx->db;
}

static txm_msg *new_msg(const char *topic)
{
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(topic, "acc-1", NULL, "{\"amount\":5}", &m, NULL), TXM_OK);
    return m;
}

static void uow_commit_writes_domain_and_outbox_together(void **state)
{
    txm_db *db = setup_accounts(state);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    txm_value p[2] = {TXM_INT(5), TXM_TEXT("acc-1")};
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    txm_msg *m = new_msg("account--credited");
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_null(m);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_null(uow);
    assert_int_equal(balance(db, "acc-1"), 105);
    assert_int_equal(outbox_count(db), 1);
}

static void uow_failure_after_domain_and_outbox_leaves_neither(void **state)
{
    txm_db *db = setup_accounts(state);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    txm_value p[2] = {TXM_INT(5), TXM_TEXT("acc-1")};
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    txm_msg *m = new_msg("account--credited");
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    /* A later domain statement fails (the row exists): the whole unit fails. */
    txm_value dup[2] = {TXM_TEXT("acc-1"), TXM_INT(1)};
    txm_error err;
    assert_int_equal(txm_uow_exec(uow, SQL_ADD, dup, 2, NULL, NULL, &err), TXM_CONSTRAINT);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_CONSTRAINT);
    assert_int_equal(err.status, TXM_CONSTRAINT);
    assert_int_equal(balance(db, "acc-1"), 100);
    assert_int_equal(outbox_count(db), 0);

    /* An explicit rollback after both writes leaves neither too. */
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    m = new_msg("account--credited");
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    txm_uow_rollback(&uow);
    assert_null(uow);
    assert_int_equal(balance(db, "acc-1"), 100);
    assert_int_equal(outbox_count(db), 0);
}

static void uow_duplicate_inbox_key_rolls_back_domain_write(void **state)
{
    txm_db *db = setup_accounts(state);
    txm_uow *uow = NULL;
    txm_value p[2] = {TXM_INT(5), TXM_TEXT("acc-1")};
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save(uow, "sub-a", "msg-1", NULL), TXM_OK);
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);

    /* The same message again: domain write first, then the inbox row. */
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    txm_msg *m = new_msg("account--credited");
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    txm_error err;
    assert_int_equal(txm_inbox_save(uow, "sub-a", "msg-1", &err), TXM_DUPLICATE);
    /* Later statements report the failure instead of running. */
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_DUPLICATE);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_DUPLICATE);
    assert_non_null(strstr(err.text, "already processed"));
    assert_int_equal(balance(db, "acc-1"), 105);
    assert_int_equal(outbox_count(db), 0);
}

typedef struct racer {
    txm_db *db;
    pthread_barrier_t *start;
    txm_status result;
} racer;

static void *race_inbox(void *arg)
{
    racer *r = arg;
    txm_uow *uow = NULL;
    pthread_barrier_wait(r->start);
    r->result = txm_uow_begin(r->db, &uow, NULL);
    if (r->result != TXM_OK)
        return NULL;
    txm_value p[2] = {TXM_INT(7), TXM_TEXT("acc-1")};
    txm_inbox_save(uow, "sub-race", "msg-race", NULL);
    txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL);
    r->result = txm_uow_commit(&uow, NULL);
    return NULL;
}

static void uow_eight_threads_same_inbox_key_exactly_one_commits(void **state)
{
    enum { N = 8 };
    txm_db *db = setup_accounts(state);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    pthread_t threads[N];
    racer racers[N];
    for (int i = 0; i < N; i++) {
        racers[i] = (racer){db, &start, TXM_DB};
        assert_int_equal(pthread_create(&threads[i], NULL, race_inbox, &racers[i]), 0);
    }
    int ok = 0, dup = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        ok += racers[i].result == TXM_OK;
        dup += racers[i].result == TXM_DUPLICATE;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(ok, 1);
    assert_int_equal(dup, N - 1);
    assert_int_equal(balance(db, "acc-1"), 107);
}

static void uow_versioned_update_of_stale_version_is_conflict(void **state)
{
    txm_db *db = setup_accounts(state);
    txm_uow *uow = NULL;
    txm_value fresh[3] = {TXM_INT(50), TXM_TEXT("acc-1"), TXM_INT(1)};
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec_versioned(uow, SQL_VERSIONED, fresh, 3, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);

    /* A writer that read version 1 before that commit now conflicts. */
    txm_value stale[3] = {TXM_INT(999), TXM_TEXT("acc-1"), TXM_INT(1)};
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    txm_msg *m = new_msg("account--changed");
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec_versioned(uow, SQL_VERSIONED, stale, 3, NULL), TXM_CONFLICT);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_CONFLICT);
    assert_int_equal(balance(db, "acc-1"), 50);
    assert_int_equal(outbox_count(db), 0);
}

static void uow_rollback_to_savepoint_keeps_earlier_work_and_clears_the_failure(void **state)
{
    txm_db *db = setup_accounts(state);
    txm_uow *uow = NULL;
    txm_error err;
    txm_value p[2] = {TXM_INT(5), TXM_TEXT("acc-1")};
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    /* A piece that fails (a constraint) is undone, and the unit goes on. */
    assert_int_equal(txm_uow_savepoint(uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_savepoint(uow, &err), TXM_STATE);
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    txm_value dup[2] = {TXM_TEXT("acc-1"), TXM_INT(1)};
    assert_int_equal(txm_uow_exec(uow, SQL_ADD, dup, 2, NULL, NULL, NULL), TXM_CONSTRAINT);
    assert_int_equal(txm_uow_rollback_to_savepoint(uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_rollback_to_savepoint(uow, &err), TXM_STATE);
    /* A piece that works is kept. */
    assert_int_equal(txm_uow_savepoint(uow, NULL), TXM_OK);
    txm_msg *m = new_msg("account--credited");
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_release_savepoint(uow, NULL), TXM_OK);
    /* Undone without a failure too. */
    assert_int_equal(txm_uow_savepoint(uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec(uow, SQL_CREDIT, p, 2, NULL, NULL, NULL), TXM_OK);
    assert_int_equal(txm_uow_rollback_to_savepoint(uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_int_equal(balance(db, "acc-1"), 105);
    assert_int_equal(outbox_count(db), 1);

    /* A unit that failed before the savepoint cannot set one, and still fails. */
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_uow_exec(uow, SQL_ADD, dup, 2, NULL, NULL, NULL), TXM_CONSTRAINT);
    assert_int_equal(txm_uow_savepoint(uow, NULL), TXM_CONSTRAINT);
    assert_int_equal(txm_uow_rollback_to_savepoint(uow, NULL), TXM_STATE);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_CONSTRAINT);
}

static void uow_bad_arguments_are_invalid(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(NULL, &uow, NULL), TXM_INVALID);
    assert_int_equal(txm_uow_commit(NULL, NULL), TXM_INVALID);
    txm_uow_rollback(NULL);
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    /* A statement naming $2 with one parameter is refused before it runs. */
    txm_value p = TXM_INT(1);
    txm_error err;
    assert_int_equal(txm_uow_exec(uow, "SELECT $1 + $2", &p, 1, NULL, NULL, &err),
                     fx->backend == TXM_TEST_PG ? TXM_DB : TXM_INVALID);
    txm_uow_rollback(&uow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_TEST_BOTH(uow_commit_writes_domain_and_outbox_together),
        TXM_TEST_BOTH(uow_failure_after_domain_and_outbox_leaves_neither),
        TXM_TEST_BOTH(uow_duplicate_inbox_key_rolls_back_domain_write),
        TXM_TEST_BOTH(uow_rollback_to_savepoint_keeps_earlier_work_and_clears_the_failure),
        TXM_TEST_BOTH(uow_eight_threads_same_inbox_key_exactly_one_commits),
        TXM_TEST_BOTH(uow_versioned_update_of_stale_version_is_conflict),
        TXM_TEST_BOTH(uow_bad_arguments_are_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
