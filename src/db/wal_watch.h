/* Waiting for another process's commit to a SQLite database without
 * polling hard: inotify on the database's files, and on its folder for
 * their creation. */
#ifndef TXM_DB_WAL_WATCH_H
#define TXM_DB_WAL_WATCH_H

#include <stdbool.h>

#include "txmsg/error.h"

typedef struct txm__wal_watch txm__wal_watch;

/* Watches the database file at path (and its -wal). If inotify is not
 * available the watch still works, waking every 10 ms. Owns: *out. */
txm_status txm__wal_watch_open(const char *path, txm__wal_watch **out, txm_error *err);

/* Returns when the database may have changed, or after timeout_ms. Spurious
 * wake-ups are allowed: the caller re-reads. Returns true when a write to the
 * database's files woke it, false after a timeout, an interruption, or a
 * polling wait (which sleeps at most 10 ms). w may be NULL (polling).
 * Thread: one thread at a time. */
bool txm__wal_watch_wait(txm__wal_watch *w, int timeout_ms);

/* Discards the events gathered so far without blocking, so that a watch kept
 * idle for reuse does not wake its next waiter for old writes. Returns true
 * if one of them was a write to the database's files. NULL-safe. */
bool txm__wal_watch_drain(txm__wal_watch *w);

/* True when inotify could not be used and waits poll instead. NULL-safe. */
bool txm__wal_watch_is_polling(const txm__wal_watch *w);

void txm__wal_watch_close(txm__wal_watch *w); /* NULL-safe */

#endif
