/* Test support for relay suites: a service database, a broker, and the
 * txmsg-relay process between them, for each database x transport pair. */
#ifndef TXM_TESTRELAY_H
#define TXM_TESTRELAY_H

#include <stdbool.h>
#include <sys/types.h>

#include "testbroker.h"
#include "testdb.h"
#include "txmsg/txmsg.h"

typedef struct txm_relay_combo {
    txm_test_backend db;
    txm_test_transport transport;
    bool messages; /* PostgreSQL: the database is in messages mode (no outbox rows) */
} txm_relay_combo;

extern const txm_relay_combo txm_combo_sqlite_embedded;
extern const txm_relay_combo txm_combo_sqlite_nats;
extern const txm_relay_combo txm_combo_pg_embedded;
extern const txm_relay_combo txm_combo_pg_nats;
extern const txm_relay_combo txm_combo_pgmsg_nats;

typedef struct txm_relay_fixture {
    txm_relay_combo combo;
    char *dir;    /* temporary folder: logs, SQLite files, broker */
    char *db_url; /* the service database with the outbox */
    char broker_url[512];
    char slot[TXM_SLOT_NAME_MAX + 1]; /* PostgreSQL replication slot of this test */
    txm_db *db;
    txm_transport *t;
    txm_db *consumer_db; /* the consumer side (SQLite), with table effects */
    char log_path[600];  /* relay logs */
    pid_t relays[16];    /* started and not yet stopped: teardown kills them */
    int n_relays;
    bool ready;        /* false: combo unavailable, test skips */
    bool default_slot; /* start relays without --slot: they look the slot up */
    pid_t nats;        /* private nats-server (txm_relay_private_nats), 0 if none */
    int nats_port;
} txm_relay_fixture;

/* cmocka setup/teardown: *state holds a txm_relay_combo* on entry. */
int txm_relay_setup(void **state);
int txm_relay_teardown(void **state);
/* The fixture, or skip() when the combo is unavailable. */
txm_relay_fixture *txm_relay_get(void **state);

/* Starts txmsg-relay for the fixture; extra_args (NULL-terminated, may be
 * NULL) are appended. */
pid_t txm_relay_start(txm_relay_fixture *fx, const char *const *extra_args);

/* Sends sig to a relay started by txm_relay_start and waits for it;
 * returns the wait status. */
int txm_relay_kill(txm_relay_fixture *fx, pid_t pid, int sig);

/* Points broker_url and t at a private nats-server on a free port, which the
 * test may stop and start again on the same store; teardown stops it.
 * NATS combos only. Returns false when it cannot start. */
bool txm_relay_private_nats(txm_relay_fixture *fx);
void txm_relay_nats_stop(txm_relay_fixture *fx);
bool txm_relay_nats_start(txm_relay_fixture *fx);

/* True once the relay log holds a line containing text, within timeout_ms. */
bool txm_relay_log_wait(txm_relay_fixture *fx, const char *text, int timeout_ms);
/* How many lines of the relay log contain text. */
int txm_relay_log_count(txm_relay_fixture *fx, const char *text);

/* Inserts, with plain SQL, an outbox row of topic and payload (either
 * invalid, so the relay skips the row) created now; its id goes to id_out. */
void txm_relay_insert_bad_row(txm_relay_fixture *fx, const char *topic, const char *payload,
                              char *id_out);

/* Commits one message in its own unit of work. */
void txm_relay_commit(txm_relay_fixture *fx, const char *topic, int n, char *id_out);

/* Four cmocka entries for f, one per combo. */
#define TXM_RELAY_TESTS(f)                                                                         \
    {#f "/sqlite+embedded", f, txm_relay_setup, txm_relay_teardown,                                \
     (void *)&txm_combo_sqlite_embedded},                                                          \
        {#f "/sqlite+nats", f, txm_relay_setup, txm_relay_teardown,                                \
         (void *)&txm_combo_sqlite_nats},                                                          \
        {#f "/postgresql+embedded", f, txm_relay_setup, txm_relay_teardown,                        \
         (void *)&txm_combo_pg_embedded},                                                          \
    {                                                                                              \
#f "/postgresql+nats", f, txm_relay_setup, txm_relay_teardown, (void *)&txm_combo_pg_nats  \
    }

/* Two entries for f: the PostgreSQL pairs only (slot failover, restarts). */
#define TXM_RELAY_TESTS_PG(f)                                                                      \
    {#f "/postgresql+embedded", f, txm_relay_setup, txm_relay_teardown,                            \
     (void *)&txm_combo_pg_embedded},                                                              \
    {                                                                                              \
#f "/postgresql+nats", f, txm_relay_setup, txm_relay_teardown, (void *)&txm_combo_pg_nats  \
    }

/* One entry for f: PostgreSQL in messages mode, with NATS. */
#define TXM_RELAY_TESTS_PGMSG(f)                                                                   \
    {                                                                                              \
#f "/postgresql-messages+nats", f, txm_relay_setup, txm_relay_teardown,                    \
            (void *)&txm_combo_pgmsg_nats                                                          \
    }

#endif
