/* Test support: a fresh, private database per test on each backend. */
#ifndef TXM_TESTDB_H
#define TXM_TESTDB_H

#include <stdbool.h>

/* Backends tests run on. PostgreSQL is used when TXMSG_TEST_PG_URL names an
 * admin URL (make test sets it); without it PostgreSQL cases are skipped. */
typedef enum { TXM_TEST_SQLITE, TXM_TEST_PG } txm_test_backend;

/* True if the backend can be used in this run. */
bool txm_testdb_available(txm_test_backend b);

/* Creates an empty database (a temporary SQLite file, or a new PostgreSQL
 * database) and returns its txmsg URL, owned by the caller (free()). NULL on
 * failure, with a message on stderr. */
char *txm_testdb_create(txm_test_backend b);

/* Removes what txm_testdb_create made and frees url. NULL-safe. */
void txm_testdb_drop(txm_test_backend b, char *url);

const char *txm_testdb_name(txm_test_backend b); /* "sqlite" or "postgresql" */

#endif

/* cmocka fixture: a fresh migrated database per test, on one backend. */
#include "txmsg/txmsg.h"

typedef struct txm_fixture {
    txm_test_backend backend;
    char *url;
    txm_db *db; /* NULL when the backend is not available: the test skips */
} txm_fixture;

extern const txm_test_backend txm_backend_sqlite;
extern const txm_test_backend txm_backend_pg;

/* Creates a fresh database on backend b and opens it (migrated) with o,
 * NULL for the fixture's options (a pool of 16). Returns 0 with *url and
 * *db NULL when b is not available, -1 after saying why when creating or
 * opening fails (*url, if set, is still the caller's to drop). */
int txm_testdb_open(txm_test_backend b, const txm_db_options *o, char **url, txm_db **db);

/* Closes db and drops the database at url (frees url). NULL-safe. */
void txm_testdb_close(txm_test_backend b, char *url, txm_db *db);

/* Skips the running test when db is NULL: its backend is not available. */
void txm_testdb_require(txm_test_backend b, const txm_db *db);

/* Inserts an inbox row (sub, id) created at us (microseconds since the
 * epoch) with plain SQL, so a test can make old rows; the test fails when
 * the insert does. */
void txm_testdb_inbox_insert_at(txm_db *db, const char *sub, const char *id, int64_t us);

/* PostgreSQL: whether the replication slot exists (the test fails when
 * the query does). */
bool txm_testdb_pg_slot_exists(txm_db *db, const char *slot);

/* setup: *state points to a txm_test_backend on entry, a txm_fixture after. */
int txm_fixture_setup(void **state);
int txm_fixture_teardown(void **state);

/* Returns the fixture, or skips the test when its backend is unavailable. */
txm_fixture *txm_fixture_get(void **state);

/* Two cmocka test entries for f: one on SQLite, one on PostgreSQL. */
#define TXM_TEST_BOTH(f)                                                                           \
    {#f "/sqlite", f, txm_fixture_setup, txm_fixture_teardown, (void *)&txm_backend_sqlite},       \
    {                                                                                              \
#f "/postgresql", f, txm_fixture_setup, txm_fixture_teardown, (void *)&txm_backend_pg      \
    }

/* Restarts the test PostgreSQL cluster (pg_ctl restart -m fast). Returns
 * true when it is accepting connections again. */
bool txm_testdb_pg_restart(void);

/* Stops the test PostgreSQL cluster as a crash would (pg_ctl stop -m
 * immediate: no checkpoint, sessions cut), and starts it again; each returns
 * true when pg_ctl succeeded. Tests using them must run alone (RUN_SERIAL). */
bool txm_testdb_pg_crash(void);
bool txm_testdb_pg_start(void);

/* The database name at the end of a PostgreSQL URL. Borrows url. */
const char *txm_testdb_pg_name(const char *url);
