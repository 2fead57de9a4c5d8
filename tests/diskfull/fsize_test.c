/* A write refused by RLIMIT_FSIZE (EFBIG), the other way a process meets
 * "no space": SQLite reports it as an I/O error, not SQLITE_FULL, and the
 * library must still say TXM_NO_SPACE, keep nothing of the failed call,
 * and work again once the limit is lifted. Needs no privilege: the test
 * lowers its own soft limit around the failing calls, with SIGXFSZ
 * ignored (its default action ends the process). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "diskfull.h"
#include "testbroker.h"
#include "txmsg/txmsg.h"

enum { LEASE_MS = 300 }; /* the broker's visibility timeout here */

typedef struct fixture {
    char *dir;
    struct rlimit saved; /* the limit before the test lowered it */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (fx == NULL || (fx->dir = txm_test_mkdtemp()) == NULL ||
        getrlimit(RLIMIT_FSIZE, &fx->saved) != 0 || signal(SIGXFSZ, SIG_IGN) == SIG_ERR)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx == NULL)
        return 0;
    setrlimit(RLIMIT_FSIZE, &fx->saved);
    txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

/* No file of this process may grow past the current size of path's WAL:
 * the next commit appends to it, and fails. */
static void limit_to_wal(fixture *fx, const char *path)
{
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    struct rlimit r = {(rlim_t)sb.st_size, fx->saved.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

static void lift_limit(fixture *fx)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &fx->saved), 0);
}

static void uow_past_file_size_limit_is_no_space_and_keeps_nothing(void **state)
{
    fixture *fx = *state;
    char path[600], url[610];
    snprintf(path, sizeof path, "%s/app.db", fx->dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    txm_db *db = NULL;
    txm_error err = {0};
    assert_int_equal(txm_db_open(url, NULL, &db, &err), TXM_OK);
    assert_int_equal(txm_db_migrate(db, &err), TXM_OK);
    assert_int_equal(
        txm_db_exec(db, "CREATE TABLE items (id TEXT PRIMARY KEY)", NULL, 0, NULL, NULL, &err),
        TXM_OK);

    limit_to_wal(fx, path);
    txm_status st = diskfull_add_item(db, "a", &err);
    lift_limit(fx);
    if (st != TXM_NO_SPACE)
        fail_msg("a unit of work past RLIMIT_FSIZE: %s (%s), want NO_SPACE", txm_status_name(st),
                 err.text);
    assert_int_equal(err.sys_errno, EFBIG);
    assert_int_equal(diskfull_count(db, "SELECT COUNT(*) FROM items"), 0);
    assert_int_equal(diskfull_count(db, "SELECT COUNT(*) FROM txmsg_outbox"), 0);

    /* The limit lifted, the same unit commits, whole. */
    assert_int_equal(diskfull_add_item(db, "a", &err), TXM_OK);
    assert_int_equal(diskfull_count(db, "SELECT COUNT(*) FROM items"), 1);
    assert_int_equal(diskfull_count(db, "SELECT COUNT(*) FROM txmsg_outbox"), 1);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, "PRAGMA integrity_check", NULL, 0, &rows, NULL, &err), TXM_OK);
    assert_string_equal(txm_rows_text(rows, 0, 0), "ok");
    txm_rows_free(rows);
    txm_db_close(db);
}

static txm_status publish_one(txm_transport *t, const char *id, txm_error *err)
{
    const txm_outgoing m = {"item--added", id, "{}", 2};
    return txm_transport_publish(t, &m, 1, NULL, err);
}

static void embedded_broker_past_file_size_limit_is_no_space(void **state)
{
    fixture *fx = *state;
    char path[600], url[610];
    snprintf(path, sizeof path, "%s/broker.db", fx->dir);
    snprintf(url, sizeof url, "embedded:%s", path);
    txm_transport *t = NULL;
    txm_error err = {0};
    assert_int_equal(txm_transport_open(url, NULL, &t, &err), TXM_OK);
    txm_subscription_options o;
    txm_subscription_options_init(&o);
    o.visibility_timeout_ms = LEASE_MS;
    assert_int_equal(txm_transport_declare_subscription(t, "item--added", "items", &o, &err),
                     TXM_OK);
    assert_int_equal(publish_one(t, "m1", &err), TXM_OK);
    assert_int_equal(publish_one(t, "m2", &err), TXM_OK);
    txm_delivery **got = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_receive(t, "items", 1, 0, &got, &n, &err), TXM_OK);
    assert_int_equal(n, 1);

    /* Leasing, publishing and acking write to the broker file: each fails
     * and says why; nothing changes. */
    limit_to_wal(fx, path);
    txm_delivery **none = NULL;
    size_t n_none = 0;
    txm_status claim = txm_transport_receive(t, "items", 10, 0, &none, &n_none, &err);
    txm_status pub = publish_one(t, "m3", &err);
    int pub_errno = err.sys_errno;
    txm_status ack = txm_transport_ack(t, got[0], &err);
    lift_limit(fx);
    assert_string_equal(txm_status_name(claim), "NO_SPACE");
    assert_int_equal(n_none, 0);
    assert_string_equal(txm_status_name(pub), "NO_SPACE");
    assert_int_equal(pub_errno, EFBIG);
    assert_string_equal(txm_status_name(ack), "NO_SPACE");
    int64_t depth = 0;
    assert_int_equal(txm_transport_queue_depth(t, "items", &depth, &err), TXM_OK);
    assert_int_equal(depth, 2);

    /* The limit lifted: the message whose ack failed comes back once its
     * lease runs out, the one whose lease failed was not counted as
     * received, and publishing works again. */
    txm_delivery_list_free(got, n);
    txm_test_sleep_ms(LEASE_MS + 100);
    assert_int_equal(publish_one(t, "m3", &err), TXM_OK);
    assert_int_equal(txm_transport_receive(t, "items", 10, 0, &got, &n, &err), TXM_OK);
    assert_int_equal(n, 3);
    assert_string_equal(txm_delivery_message_id(got[0]), "m1");
    assert_int_equal(txm_delivery_receive_count(got[0]), 2);
    assert_string_equal(txm_delivery_message_id(got[1]), "m2");
    assert_int_equal(txm_delivery_receive_count(got[1]), 1);
    assert_string_equal(txm_delivery_message_id(got[2]), "m3");
    txm_status results[3];
    assert_int_equal(txm_transport_ack_batch(t, got, n, results, &err), TXM_OK);
    txm_delivery_list_free(got, n);
    assert_int_equal(txm_transport_queue_depth(t, "items", &depth, &err), TXM_OK);
    assert_int_equal(depth, 0);
    txm_transport_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(uow_past_file_size_limit_is_no_space_and_keeps_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(embedded_broker_past_file_size_limit_is_no_space, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("diskfull_fsize", tests, NULL, NULL);
}
