/* The driver interface: db.c dispatches to db_sqlite.c or db_pg.c. */
#ifndef TXM_DB_DB_INT_H
#define TXM_DB_DB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "db/db.h"
#include "db/wal_watch.h"

/* A driver. Connections are opaque txm__conn pointers owned by the pool;
 * each is used by one thread at a time, so drivers need no locking. */
typedef struct txm__driver {
    const char *dialect; /* "sqlite" or "postgresql" */
    txm__dialect id;
    /* True when the database takes one writer at a time (SQLite): db.c then
     * queues the writers of a handle (write_queue.c) before they begin. */
    bool serial_writers;
    /* Opens one connection to url (the full txmsg URL). busy_waits is where
     * a serial-writer driver counts the sleeps of its busy handler, which
     * waits for other processes' writers (PostgreSQL ignores it). */
    txm_status (*connect)(const char *url, const txm_db_options *opts,
                          atomic_uint_least64_t *busy_waits, txm__conn **out, txm_error *err);
    void (*disconnect)(txm__conn *conn); /* NULL-safe */
    /* Prepares sql once per connection (cached by text), binds params
     * ($1..$n), runs it. See txm__conn_exec for the statuses. */
    txm_status (*exec)(txm__conn *conn, const char *sql, const txm_value *params, size_t n,
                       txm_rows **rows, int64_t *changes, txm_error *err);
    txm_status (*begin)(txm__conn *conn, txm_error *err);
    txm_status (*commit)(txm__conn *conn, txm_error *err);
    void (*rollback)(txm__conn *conn);
    /* True when the connection is unusable and must not return to the pool. */
    bool (*is_broken)(const txm__conn *conn);
    /* Serial writers: true when sql, run on its own (autocommit), would
     * write; it is prepared and cached for the exec that follows. False when
     * it cannot be prepared: the exec then reports why. */
    bool (*is_write)(txm__conn *conn, const char *sql);
} txm__driver;

extern const txm__driver txm__driver_sqlite;
extern const txm__driver txm__driver_pg;

typedef struct txm__write_waiter txm__write_waiter;

/* The writers of one handle in arrival order (write_queue.c). A connection
 * holds the turn from before BEGIN IMMEDIATE (or an autocommit write) until
 * its transaction ends. Thread safety: mu guards the fields. */
typedef struct txm__write_queue {
    pthread_mutex_t mu;
    const txm__conn *holder;        /* the connection whose turn it is; NULL if none */
    txm__write_waiter *head, *tail; /* waiting writers, first come first */
} txm__write_queue;

void txm__write_queue_init(txm__write_queue *q);
void txm__write_queue_fini(txm__write_queue *q); /* no turn may be held or awaited */

/* Waits up to timeout_ms for conn's turn, behind the writers queued before
 * it. TXM_BUSY when the time runs out (the writer ahead holds its
 * transaction that long). Thread: any; conn must not hold the turn already. */
txm_status txm__write_queue_acquire(txm__write_queue *q, const txm__conn *conn, int timeout_ms,
                                    txm_error *err);

/* Ends conn's turn and hands it to the first waiter. A no-op when conn does
 * not hold the turn, so every path that ends a transaction may call it. */
void txm__write_queue_release(txm__write_queue *q, const txm__conn *conn);

/* Thread safety: mu guards the pool fields; connections themselves are used
 * outside the lock by whichever thread acquired them. */
struct txm_db {
    const txm__driver *drv;
    char *url;
    txm_db_options opts;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a connection returns */
    txm__conn **idle;  /* pool_size slots */
    int n_idle;
    int n_open; /* idle + in use */
    /* SQLite: the WAL watch of txm_db_wait_for_commit, opened by its first
     * call; NULL until then and on PostgreSQL. Used by one thread at a time. */
    txm__wal_watch *watch;
    /* Serial-writer drivers (SQLite): the queue of this handle's writers,
     * and the number of times a connection's busy handler was called, which
     * with the queue means another process (or another handle) held the
     * write lock. */
    txm__write_queue writers;
    atomic_uint_least64_t busy_waits;
    /* PostgreSQL: the txm_outbox_mode publishes use, read at open
     * (settings.c) and changed by txm_outbox_set_mode on this handle. */
    atomic_int outbox_mode;
};

/* The number of statements each connection keeps prepared. */
#define TXM__STMT_CACHE_SIZE 64

/* One prepared statement a driver connection keeps, keyed by its SQL text. */
typedef struct txm__stmt_slot {
    char *sql;          /* key, owned; NULL when the slot is free */
    void *handle;       /* the driver's statement (sqlite3_stmt *), or NULL */
    uint64_t id;        /* the driver's number for it (PostgreSQL names it "txm_<id>") */
    uint64_t last_used; /* the cache's use count at the last hit; 0 when free */
} txm__stmt_slot;

/* The per-connection LRU statement cache both drivers use (stmt_cache.c).
 * Thread: the connection's, like the connection itself. */
typedef struct txm__stmt_cache {
    txm__stmt_slot slot[TXM__STMT_CACHE_SIZE];
    uint64_t uses; /* counts hits and inserts */
} txm__stmt_cache;

/* Returns the slot holding sql, marked as just used, or NULL on a miss with
 * *victim set to a free slot or else the least recently used one, which the
 * driver empties (txm__stmt_cache_drop) before txm__stmt_cache_put. */
txm__stmt_slot *txm__stmt_cache_find(txm__stmt_cache *c, const char *sql, txm__stmt_slot **victim);

/* Fills the empty slot with a new statement. Owns: takes *key (a txm__malloc
 * copy of the SQL text) and sets *key = NULL; the handle stays the driver's
 * to finalize. */
void txm__stmt_cache_put(txm__stmt_cache *c, txm__stmt_slot *slot, char **key, void *handle,
                         uint64_t id);

/* Frees slot's key and marks it free; the driver finalizes the handle first. */
void txm__stmt_cache_drop(txm__stmt_slot *slot);

/* Empties every slot, calling finalize (may be NULL) on each non-NULL handle. */
void txm__stmt_cache_fini(txm__stmt_cache *c, void (*finalize)(void *handle));

#endif
