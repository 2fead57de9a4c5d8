/* Test support: stopping and starting the shared test PostgreSQL cluster
 * (TXMSG_TEST_PG_DATA, TXMSG_TEST_PG_BIN), for suites that take the
 * database away from running services. */
#ifndef TXM_TESTPGCTL_H
#define TXM_TESTPGCTL_H

#include <stdbool.h>

/* Stops the cluster with pg_ctl stop -m mode ("immediate" is a crash: no
 * checkpoint, clients cut off) and waits until it is down. Runs pg_ctl as
 * the postgres user when we are root. Returns true when it stopped. */
bool txm_testpg_stop(const char *mode);

/* Starts the cluster again (crash recovery included) and waits until it
 * accepts connections. Returns true when it did. */
bool txm_testpg_start(void);

#endif
