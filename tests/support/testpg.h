/* Test support: private PostgreSQL clusters, for suites whose settings
 * (max_slot_wal_keep_size, tiny WAL segments) or whose crashes (a primary
 * killed, a standby promoted) must not touch the shared test server. The
 * binaries come from TXMSG_TEST_PG_BIN; run as root, the clusters run as
 * the postgres user, as scripts/with-servers does. */
#ifndef TXM_TESTPG_H
#define TXM_TESTPG_H

#include <stdbool.h>

/* One cluster. Caller-allocated; txm_testpg_init fills it. */
typedef struct txm_testpg {
    char dir[64];  /* temporary folder: data, log, socket */
    char data[96]; /* the data directory */
    char log[96];  /* the server log */
    int port;      /* on 127.0.0.1 */
    char url[128]; /* postgresql://postgres@127.0.0.1:PORT/postgres */
    bool running;  /* started and not stopped */
} txm_testpg;

/* True when TXMSG_TEST_PG_BIN is set (tests skip otherwise). */
bool txm_testpg_available(void);

/* initdb (with wal_segsize_mb MB WAL segments, 0 for the default) into a new
 * temporary folder, appends conf (NULL-terminated "name = value" lines, may
 * be NULL) to the defaults (loopback on a free port, wal_level logical,
 * fsync off), and starts it. False, with the reason on stderr, on failure. */
bool txm_testpg_init(txm_testpg *pg, int wal_segsize_mb, const char *const *conf);

/* A streaming standby of primary (pg_basebackup -R) on a port of its own,
 * started. Asynchronous unless the primary names it in
 * synchronous_standby_names. */
bool txm_testpg_standby(const txm_testpg *primary, txm_testpg *standby);

/* pg_ctl stop with mode "fast" or "immediate" (a crash: no checkpoint, no
 * goodbye to clients); start; promote a standby (waits until it accepts
 * writes). */
bool txm_testpg_stop(txm_testpg *pg, const char *mode);
bool txm_testpg_start(txm_testpg *pg);
bool txm_testpg_promote(txm_testpg *pg);

/* Runs sql (no result rows wanted) on the cluster's postgres database. */
bool txm_testpg_exec(const txm_testpg *pg, const char *sql);

/* Creates database name and writes its URL into url (len bytes). */
bool txm_testpg_create_db(const txm_testpg *pg, const char *name, char *url, int len);

/* Stops the cluster if it runs (immediate) and removes its folder. */
void txm_testpg_cleanup(txm_testpg *pg);

#endif
