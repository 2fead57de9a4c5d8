/* A full disk under PostgreSQL: a table in a tablespace on a small tmpfs
 * of the test's own, filled to the last block. The server cannot extend
 * the table (SQLSTATE 53100 disk_full): the unit of work fails with
 * TXM_NO_SPACE and keeps nothing, neither the row nor its outbox row, and
 * commits once space returns. A private cluster (TXMSG_TEST_PG_BIN, as
 * under scripts/with-servers) started inside the test's mount namespace,
 * so that the server sees the tmpfs. Exits 77 where it may not mount. */
#include <errno.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "diskfull.h"
#include "testbroker.h"
#include "testfs.h"
#include "testpg.h"
#include "txmsg/txmsg.h"

enum { FS_KB = 4096 };

typedef struct fixture {
    char *dir;
    char ts[256]; /* the tablespace's folder, a tmpfs */
    bool mounted;
    txm_testpg pg;
    char url[256];
    txm_db *db;
} fixture;

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx == NULL)
        return 0;
    txm_db_close(fx->db);
    txm_testpg_cleanup(&fx->pg);
    if (fx->mounted)
        txm_testfs_umount(fx->ts);
    txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    *state = NULL;
    return 0;
}

/* The tmpfs, owned by the postgres user, and a cluster with a tablespace
 * on it. False when a step fails (said on stderr). */
static bool prepare(fixture *fx)
{
    char why[512];
    snprintf(fx->ts, sizeof fx->ts, "%s/ts", fx->dir);
    /* The server, running as postgres, must pass through our folder. */
    if (chmod(fx->dir, 0711) != 0 || mkdir(fx->ts, 0700) != 0 ||
        !txm_testfs_mount(fx->ts, FS_KB, why, sizeof why)) {
        fprintf(stderr, "setup: %s: %s\n", fx->ts, why);
        return false;
    }
    fx->mounted = true;
    const struct passwd *pw = getpwnam("postgres");
    if (getuid() == 0 && (pw == NULL || chown(fx->ts, pw->pw_uid, pw->pw_gid) != 0)) {
        fprintf(stderr, "setup: cannot give %s to the postgres user\n", fx->ts);
        return false;
    }
    if (!txm_testpg_init(&fx->pg, 0, NULL))
        return false;
    /* A folder name of our own making; CREATE TABLESPACE takes no
     * parameters. */
    char sql[400];
    snprintf(sql, sizeof sql, "CREATE TABLESPACE small LOCATION '%s'", fx->ts);
    if (!txm_testpg_exec(&fx->pg, sql) || !txm_testpg_create_db(&fx->pg, "app", fx->url, 256))
        return false;
    txm_error err = {0};
    if (txm_db_open(fx->url, NULL, &fx->db, &err) != TXM_OK ||
        txm_db_migrate(fx->db, &err) != TXM_OK ||
        txm_db_exec(fx->db, "CREATE TABLE items (id text PRIMARY KEY) TABLESPACE small", NULL, 0,
                    NULL, NULL, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return false;
    }
    return true;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (fx == NULL)
        return -1;
    if (!txm_testpg_available())
        return 0;
    if ((fx->dir = txm_test_mkdtemp()) == NULL || !prepare(fx)) {
        teardown(state);
        return -1;
    }
    return 0;
}

static void table_on_full_disk_is_no_space_and_keeps_nothing(void **state)
{
    fixture *fx = *state;
    if (fx->db == NULL) {
        fprintf(stderr, "skipped: needs TXMSG_TEST_PG_BIN (scripts/with-servers)\n");
        skip();
    }
    if (!txm_testfs_fill(fx->ts))
        fail_msg("cannot fill %s to ENOSPC", fx->ts);
    txm_error err = {0};
    txm_status st = diskfull_add_item(fx->db, "a", &err);
    if (st != TXM_NO_SPACE)
        fail_msg("a unit of work on a full tablespace: %s (%s), want NO_SPACE", txm_status_name(st),
                 err.text);
    assert_non_null(strstr(err.text, "53100"));
    assert_int_equal(diskfull_count(fx->db, "SELECT COUNT(*) FROM items"), 0);
    assert_int_equal(diskfull_count(fx->db, "SELECT COUNT(*) FROM txmsg_outbox"), 0);

    txm_testfs_empty(fx->ts);
    assert_int_equal(diskfull_add_item(fx->db, "a", &err), TXM_OK);
    assert_int_equal(diskfull_count(fx->db, "SELECT COUNT(*) FROM items"), 1);
    assert_int_equal(diskfull_count(fx->db, "SELECT COUNT(*) FROM txmsg_outbox"), 1);
}

int main(void)
{
    char why[512];
    if (!txm_testfs_usable(why, sizeof why)) {
        fprintf(stderr, "skipped: a full disk needs a tmpfs of the test's own, and %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(table_on_full_disk_is_no_space_and_keeps_nothing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("diskfull_pg", tests, NULL, NULL);
}
