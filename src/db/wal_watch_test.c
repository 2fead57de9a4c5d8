/* The SQLite commit watch: woken by writes to its database, also after the
 * -wal file was removed and created again, and not by another database in
 * the same folder. */
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db/wal_watch.h"

typedef struct folder {
    char dir[64];
    char a[96]; /* the watched database */
    char b[96]; /* another one beside it */
} folder;

static int folder_setup(void **state)
{
    folder *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/txm-walwatch-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->a, sizeof f->a, "%s/a.db", f->dir);
    snprintf(f->b, sizeof f->b, "%s/b.db", f->dir);
    *state = f;
    return 0;
}

static int folder_teardown(void **state)
{
    folder *f = *state;
    const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[128];
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s%s", f->a, suffixes[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s%s", f->b, suffixes[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static sqlite3 *open_wal(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode=WAL;"
                                  " CREATE TABLE IF NOT EXISTS t (a INTEGER)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void insert(sqlite3 *db)
{
    assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (1)", NULL, NULL, NULL), SQLITE_OK);
}

static void wal_watch_ignores_another_database_in_its_folder(void **state)
{
    folder *f = *state;
    sqlite3 *a = open_wal(f->a);
    txm__wal_watch *w = NULL;
    assert_int_equal(txm__wal_watch_open(f->a, &w, NULL), TXM_OK);
    if (txm__wal_watch_is_polling(w)) {
        txm__wal_watch_close(w);
        sqlite3_close(a);
        skip();
    }
    sqlite3 *b = open_wal(f->b);
    for (int i = 0; i < 10; i++)
        insert(b);
    assert_false(txm__wal_watch_drain(w));
    insert(a);
    assert_true(txm__wal_watch_drain(w));
    assert_false(txm__wal_watch_drain(w));
    sqlite3_close(b);
    sqlite3_close(a);
    txm__wal_watch_close(w);
}

/* The last connection's close removes the -wal, which ends a watch on the
 * file itself; the next writer creates it again. */
static void wal_watch_wakes_after_the_wal_is_created_again(void **state)
{
    folder *f = *state;
    txm__wal_watch *w = NULL;
    assert_int_equal(txm__wal_watch_open(f->a, &w, NULL), TXM_OK);
    if (txm__wal_watch_is_polling(w)) {
        txm__wal_watch_close(w);
        skip();
    }
    sqlite3 *a = open_wal(f->a);
    insert(a);
    sqlite3_close(a);
    char wal[128];
    snprintf(wal, sizeof wal, "%s-wal", f->a);
    assert_int_equal(access(wal, F_OK), -1); /* removed by the last close */
    assert_true(txm__wal_watch_drain(w));
    a = open_wal(f->a);
    insert(a);
    assert_true(txm__wal_watch_drain(w)); /* the -wal created again */
    insert(a);
    assert_true(txm__wal_watch_wait(w, 5000)); /* a plain write, on the new watch */
    sqlite3_close(a);
    txm__wal_watch_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(wal_watch_ignores_another_database_in_its_folder,
                                        folder_setup, folder_teardown),
        cmocka_unit_test_setup_teardown(wal_watch_wakes_after_the_wal_is_created_again,
                                        folder_setup, folder_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
