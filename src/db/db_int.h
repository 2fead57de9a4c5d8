/* The driver interface: db.c dispatches to db_sqlite.c or db_pg.c. */
#ifndef TXM_DB_DB_INT_H
#define TXM_DB_DB_INT_H

#include <pthread.h>

#include "db/db.h"
#include "db/wal_watch.h"

/* A driver. Connections are opaque txm__conn pointers owned by the pool;
 * each is used by one thread at a time, so drivers need no locking. */
typedef struct txm__driver {
    const char *dialect; /* "sqlite" or "postgresql" */
    txm__dialect id;
    /* Opens one connection to url (the full txmsg URL). */
    txm_status (*connect)(const char *url, const txm_db_options *opts, txm__conn **out,
                          txm_error *err);
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
} txm__driver;

extern const txm__driver txm__driver_sqlite;
extern const txm__driver txm__driver_pg;

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
};

/* The number of statements each connection keeps prepared. */
#define TXM__STMT_CACHE_SIZE 64

#endif
