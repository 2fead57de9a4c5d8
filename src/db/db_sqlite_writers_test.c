/* SQLite writers of one process queue for the write lock (write_queue.c)
 * instead of polling in the busy handler, whose calls txm_db_busy_waits
 * counts; writers of another process are still waited out by the busy
 * timeout, and TXM_BUSY comes back past it. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testbroker.h"
#include "testdb.h"

#define THREADS 16
#define UNITS 200

static const char SQL_TABLE[] = "CREATE TABLE t (id INTEGER PRIMARY KEY, who INTEGER NOT NULL, "
                                "n INTEGER NOT NULL, pad TEXT NOT NULL)";
static const char SQL_INSERT[] = "INSERT INTO t (who, n, pad) VALUES ($1, $2, $3)";
static const char PAD[] = "a row about as long as an order and its outbox message together "
                          "................................................................";

/* One writer thread: its number, how many of its writes go through
 * txm_db_exec in autocommit (every every-th, 0 for none), and what failed. */
typedef struct writer {
    pthread_t thread;
    txm_db *db;
    int who;
    int autocommit_every;
    int done;           /* writes committed */
    txm_status failure; /* the first failure, or TXM_OK */
    txm_error err;
} writer;

static txm_status one_unit(writer *w, int n)
{
    const txm_value p[] = {TXM_INT(w->who), TXM_INT(n), TXM_TEXT(PAD)};
    if (w->autocommit_every > 0 && n % w->autocommit_every == 0)
        return txm_db_exec(w->db, SQL_INSERT, p, 3, NULL, NULL, &w->err);
    txm_uow *uow = NULL;
    txm_status st = txm_uow_begin(w->db, &uow, &w->err);
    if (st != TXM_OK)
        return st;
    st = txm_uow_exec(uow, SQL_INSERT, p, 3, NULL, NULL, &w->err);
    if (st == TXM_OK)
        return txm_uow_commit(&uow, &w->err);
    txm_uow_rollback(&uow);
    return st;
}

/* cmocka's asserts are for the main thread: a writer only records. */
static void *write_units(void *arg)
{
    writer *w = arg;
    for (int n = 0; n < UNITS && w->failure == TXM_OK; n++) {
        txm_status st = one_unit(w, n);
        if (st == TXM_OK)
            w->done++;
        else
            w->failure = st;
    }
    return NULL;
}

static int64_t count_rows(txm_db *db)
{
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, "SELECT count(*) FROM t", NULL, 0, &rows, NULL, NULL), TXM_OK);
    int64_t n = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return n;
}

/* THREADS writers of UNITS writes each on a pool of pool_size: every write
 * commits, none meets TXM_BUSY, and the busy handler is never called. */
static void run_writers(int pool_size, int autocommit_every)
{
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = pool_size;
    char *url = NULL;
    txm_db *db = NULL;
    assert_int_equal(txm_testdb_open(TXM_TEST_SQLITE, &o, &url, &db), 0);
    txm_testdb_require(TXM_TEST_SQLITE, db);
    assert_int_equal(txm_db_exec(db, SQL_TABLE, NULL, 0, NULL, NULL, NULL), TXM_OK);
    writer w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (writer){.db = db, .who = i, .autocommit_every = autocommit_every};
        assert_int_equal(pthread_create(&w[i].thread, NULL, write_units, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(w[i].thread, NULL);
    for (int i = 0; i < THREADS; i++) {
        if (w[i].failure != TXM_OK)
            fail_msg("writer %d: %s: %s", i, txm_status_name(w[i].failure), w[i].err.text);
        assert_int_equal(w[i].done, UNITS);
    }
    assert_int_equal(count_rows(db), THREADS * UNITS);
    assert_int_equal(txm_db_busy_waits(db), 0);
    txm_testdb_close(TXM_TEST_SQLITE, url, db);
}

static void sqlite_writers_16_threads_pool_16_queue_without_busy_waits(void **state)
{
    (void)state;
    run_writers(16, 0);
}

static void sqlite_writers_16_threads_pool_4_queue_without_busy_waits(void **state)
{
    (void)state;
    run_writers(4, 0);
}

static void sqlite_writers_autocommit_writes_queue_too(void **state)
{
    (void)state;
    run_writers(16, 3);
}

/* A unit of work held open past the busy timeout makes the next writer's
 * begin TXM_BUSY after waiting in the queue, not in the busy handler; its
 * rollback hands the turn on. */
static void sqlite_writers_queue_wait_ends_at_busy_timeout(void **state)
{
    (void)state;
    txm_db_options o;
    txm_db_options_init(&o);
    o.busy_timeout_ms = 200;
    char *url = NULL;
    txm_db *db = NULL;
    assert_int_equal(txm_testdb_open(TXM_TEST_SQLITE, &o, &url, &db), 0);
    txm_testdb_require(TXM_TEST_SQLITE, db);
    txm_uow *held = NULL, *next = NULL;
    txm_error err = {0};
    assert_int_equal(txm_uow_begin(db, &held, &err), TXM_OK);
    long long start = txm_test_now_ms();
    assert_int_equal(txm_uow_begin(db, &next, &err), TXM_BUSY);
    assert_true(txm_test_now_ms() - start >= 150);
    assert_null(next);
    txm_uow_rollback(&held);
    assert_int_equal(txm_uow_begin(db, &next, &err), TXM_OK);
    assert_int_equal(txm_uow_commit(&next, &err), TXM_OK);
    assert_int_equal(txm_db_busy_waits(db), 0);
    txm_testdb_close(TXM_TEST_SQLITE, url, db);
}

/* ---- another process ---- */

/* The child: on the go byte, takes the write lock of path, says so, holds
 * it hold_ms, commits and exits. It opens the file only after the fork, so
 * it shares none of the parent's SQLite state. */
static void child_hold_lock(const char *path, int go_fd, int ready_fd, int hold_ms)
{
    char byte = 0;
    if (read(go_fd, &byte, 1) != 1)
        _exit(2);
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        _exit(3);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO t (who, n, pad) VALUES (-1, 0, 'child')",
                     NULL, NULL, NULL) != SQLITE_OK)
        _exit(4);
    if (write(ready_fd, "r", 1) != 1)
        _exit(5);
    struct timespec ts = {hold_ms / 1000, (long)(hold_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    int rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    _exit(rc == SQLITE_OK ? 0 : 6);
}

/* Forks a child holding the write lock for hold_ms, then begins a unit of
 * work with busy_timeout_ms: returns its status, with the busy handler's
 * calls in *waits. */
static txm_status begin_against_other_process(int hold_ms, int busy_timeout_ms, uint64_t *waits)
{
    char *url = txm_testdb_create(TXM_TEST_SQLITE);
    assert_non_null(url);
    int go[2], ready[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_hold_lock(url + strlen("sqlite:"), go[0], ready[1], hold_ms);
    close(go[0]);
    close(ready[1]);
    txm_db_options o;
    txm_db_options_init(&o);
    o.busy_timeout_ms = busy_timeout_ms;
    txm_db *db = NULL;
    txm_error err = {0};
    assert_int_equal(txm_db_open(url, &o, &db, &err), TXM_OK);
    assert_int_equal(txm_db_exec(db, SQL_TABLE, NULL, 0, NULL, NULL, &err), TXM_OK);
    assert_int_equal(write(go[1], "g", 1), 1);
    char byte = 0;
    assert_int_equal(read(ready[0], &byte, 1), 1);
    assert_int_equal(txm_db_busy_waits(db), 0);
    txm_uow *uow = NULL;
    txm_status st = txm_uow_begin(db, &uow, &err);
    *waits = txm_db_busy_waits(db);
    txm_uow_rollback(&uow);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(go[1]);
    close(ready[0]);
    txm_db_close(db);
    txm_testdb_drop(TXM_TEST_SQLITE, url);
    return st;
}

static void sqlite_writers_other_process_waited_out_by_busy_timeout(void **state)
{
    (void)state;
    uint64_t waits = 0;
    assert_int_equal(begin_against_other_process(300, 5000, &waits), TXM_OK);
    assert_true(waits > 0);
}

static void sqlite_writers_other_process_past_busy_timeout_is_busy(void **state)
{
    (void)state;
    uint64_t waits = 0;
    assert_int_equal(begin_against_other_process(1500, 200, &waits), TXM_BUSY);
    assert_true(waits > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sqlite_writers_16_threads_pool_16_queue_without_busy_waits),
        cmocka_unit_test(sqlite_writers_16_threads_pool_4_queue_without_busy_waits),
        cmocka_unit_test(sqlite_writers_autocommit_writes_queue_too),
        cmocka_unit_test(sqlite_writers_queue_wait_ends_at_busy_timeout),
        cmocka_unit_test(sqlite_writers_other_process_waited_out_by_busy_timeout),
        cmocka_unit_test(sqlite_writers_other_process_past_busy_timeout_is_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
