/* relay_slot_decide (relay.c): the relay's replication slot comes from
 * --slot or the database's name for it, and a failed lookup is an error,
 * never some default slot (issue #9: the database restarted between a
 * broker failure and the reconnect, and the relay moved to a new slot). The
 * PostgreSQL cases are skipped without TXMSG_TEST_PG_URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "relay.h"
#include "testdb.h"

static void relay_slot_decide_takes_the_slot_option_without_a_database(void **state)
{
    (void)state;
    relay_config cfg;
    relay_config_init(&cfg);
    cfg.tail.slot_name = "orders_slot";
    char slot[TXM_SLOT_NAME_MAX + 1] = "x";
    assert_int_equal(relay_slot_decide(&cfg, NULL, slot, NULL), TXM_OK);
    assert_string_equal(slot, "orders_slot");
    cfg.tail.slot_name = NULL;
    txm_error err = {0};
    assert_int_equal(relay_slot_decide(&cfg, NULL, slot, &err), TXM_INVALID);
    assert_string_equal(slot, "");
    assert_int_equal(relay_slot_decide(NULL, NULL, slot, NULL), TXM_INVALID);
}

/* Ends every session of the database but the admin's own, as a restart does. */
static void terminate_sessions(const char *dbname)
{
    PGconn *c = PQconnectdb(getenv("TXMSG_TEST_PG_URL"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    const char *const params[] = {dbname};
    PGresult *r = PQexecParams(c,
                               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = $1 AND pid <> pg_backend_pid()",
                               1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_true(PQntuples(r) >= 1);
    PQclear(r);
    PQfinish(c);
}

/* Lets the database take new sessions or not (ALLOW_CONNECTIONS), so the
 * pool's replacement for a dead session cannot connect while it is closed. */
static void allow_connections(const char *dbname, bool allow)
{
    PGconn *c = PQconnectdb(getenv("TXMSG_TEST_PG_URL"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char *ident = PQescapeIdentifier(c, dbname, strlen(dbname));
    assert_non_null(ident);
    char sql[256];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS %s", ident,
             allow ? "true" : "false");
    PQfreemem(ident);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

static void relay_slot_decide_fails_on_a_dead_session_instead_of_a_default(void **state)
{
    (void)state;
    if (!txm_testdb_available(TXM_TEST_PG))
        skip();
    char *url = txm_testdb_create(TXM_TEST_PG);
    assert_non_null(url);
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1; /* as the relay opens it */
    txm_db *db = NULL;
    assert_int_equal(txm_db_open(url, &o, &db, NULL), TXM_OK);
    relay_config cfg;
    relay_config_init(&cfg);
    char expect[TXM_SLOT_NAME_MAX + 1];
    snprintf(expect, sizeof expect, "txmsg_%s", txm_testdb_pg_name(url));

    /* The pooled session died and no new one can be had (the database is
     * restarting): the lookup fails, and the caller gets the failure, not a
     * name to stream from. */
    allow_connections(txm_testdb_pg_name(url), false);
    terminate_sessions(txm_testdb_pg_name(url));
    char slot[TXM_SLOT_NAME_MAX + 1] = "x";
    txm_error err = {0};
    assert_int_equal(relay_slot_decide(&cfg, db, slot, &err), TXM_UNAVAILABLE);
    assert_string_equal(slot, "");
    assert_non_null(strstr(err.text, "slot"));

    /* The next attempt (the loop's retry) gets the database's own slot. */
    allow_connections(txm_testdb_pg_name(url), true);
    assert_int_equal(relay_slot_decide(&cfg, db, slot, &err), TXM_OK);
    assert_string_equal(slot, expect);

    txm_db_close(db);
    txm_testdb_drop(TXM_TEST_PG, url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relay_slot_decide_takes_the_slot_option_without_a_database),
        cmocka_unit_test(relay_slot_decide_fails_on_a_dead_session_instead_of_a_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
