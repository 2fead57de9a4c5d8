/* Waiting for another process's commit to a SQLite database without
 * polling hard: inotify on the database's folder, filtered on its files. */
#ifndef TXM_DB_WAL_WATCH_H
#define TXM_DB_WAL_WATCH_H

#include "txmsg/error.h"

typedef struct txm__wal_watch txm__wal_watch;

/* Watches the database file at path (and its -wal). If inotify is not
 * available the watch still works, waking every 10 ms. Owns: *out. */
txm_status txm__wal_watch_open(const char *path, txm__wal_watch **out, txm_error *err);

/* Returns when the database may have changed, or after timeout_ms. Spurious
 * wake-ups are allowed: the caller re-reads. Thread: one thread at a time. */
void txm__wal_watch_wait(txm__wal_watch *w, int timeout_ms);

void txm__wal_watch_close(txm__wal_watch *w); /* NULL-safe */

#endif
