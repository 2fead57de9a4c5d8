/* Schema migrations: each version is a list of statements applied in one
 * transaction and recorded in txmsg_schema_migrations. Concurrent starts are
 * serialised by the SQLite write lock or a PostgreSQL advisory lock, so every
 * version is applied exactly once. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "db/db_int.h"
#include "db/migrate.h"

typedef struct migration {
    int version;
    const char *const *statements; /* NULL-terminated */
} migration;

static const char *const sqlite_v1[] = {
    "CREATE TABLE txmsg_outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " message_id TEXT NOT NULL UNIQUE,"
    " source TEXT NOT NULL DEFAULT '',"
    " aggregate_id TEXT NOT NULL,"
    " correlation_id TEXT NOT NULL,"
    " topic TEXT NOT NULL,"
    " payload TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " approximate_dispatch_count INTEGER NOT NULL DEFAULT 0,"
    " is_dispatched INTEGER NOT NULL DEFAULT 0,"
    " last_dispatched_at TEXT)",
    "CREATE INDEX txmsg_outbox_not_dispatched ON txmsg_outbox (seq) WHERE is_dispatched = 0",
    "CREATE INDEX txmsg_outbox_created_at ON txmsg_outbox (created_at)",
    "CREATE TABLE txmsg_inbox ("
    " subscription TEXT NOT NULL,"
    " message_id TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " PRIMARY KEY (subscription, message_id)) WITHOUT ROWID",
    "CREATE INDEX txmsg_inbox_created_at ON txmsg_inbox (created_at)",
    /* The relay's position in the outbox (PostgreSQL keeps it in the slot). */
    "CREATE TABLE txmsg_relay_cursor ("
    " name TEXT PRIMARY KEY,"
    " position INTEGER NOT NULL,"
    " updated_at TEXT NOT NULL)",
    NULL,
};

static const char *const pg_v1[] = {
    "CREATE TABLE txmsg_outbox ("
    " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " message_id text NOT NULL UNIQUE,"
    " source text NOT NULL DEFAULT '',"
    " aggregate_id text NOT NULL,"
    " correlation_id text NOT NULL,"
    " topic text NOT NULL,"
    " payload jsonb NOT NULL,"
    " created_at timestamptz NOT NULL,"
    " approximate_dispatch_count integer NOT NULL DEFAULT 0,"
    " is_dispatched boolean NOT NULL DEFAULT false,"
    " last_dispatched_at timestamptz)",
    "CREATE INDEX txmsg_outbox_not_dispatched ON txmsg_outbox (seq) WHERE NOT is_dispatched",
    "CREATE INDEX txmsg_outbox_created_at ON txmsg_outbox (created_at)",
    "CREATE TABLE txmsg_inbox ("
    " subscription text NOT NULL,"
    " message_id text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (subscription, message_id))",
    "CREATE INDEX txmsg_inbox_created_at ON txmsg_inbox (created_at)",
    /* Inserts only: the relay's own "mark dispatched" updates never come
     * back to it. Created with the table, so no row predates it. */
    "CREATE PUBLICATION " TXM_PUBLICATION_NAME " FOR TABLE txmsg_outbox WITH (publish = 'insert')",
    NULL,
};

/* The relay's cursors are the dispatch mark and rows the relay passed
 * without publishing them (invalid) are marked is_dispatched = -1; this
 * index finds those few (see TXM__SQLITE_NOT_DISPATCHED in store_int.h). */
static const char *const sqlite_v2[] = {
    "CREATE INDEX txmsg_outbox_skipped ON txmsg_outbox (seq) WHERE is_dispatched = -1",
    NULL,
};

/* Settings of the database itself, read by every process that opens it:
 * "outbox_mode" ("table" or "messages", txm_outbox_set_mode). */
static const char *const pg_v2[] = {
    "CREATE TABLE txmsg_settings (name text PRIMARY KEY, value text NOT NULL)",
    NULL,
};

/* Tracing by correlation id: the inbox keeps the correlation id, topic and
 * source of what it recorded (NULL in rows from before). Adding a nullable
 * column without a default only changes the catalogue on both databases.
 * No index on the correlation id, in either table: one costs every
 * producer and consumer a B-tree insert per message (measured: the
 * consumer 19 % slower on SQLite, 10 % on PostgreSQL, with the inbox's),
 * for a lookup people make by hand; a trace scans instead (about 0.2 s
 * for a million rows in each table, cached, on SQLite here), and retention
 * (`txmsg outbox purge`, `txmsg inbox purge`) keeps the tables small. */
static const char *const sqlite_v3[] = {
    "ALTER TABLE txmsg_inbox ADD COLUMN correlation_id TEXT",
    "ALTER TABLE txmsg_inbox ADD COLUMN topic TEXT",
    "ALTER TABLE txmsg_inbox ADD COLUMN source TEXT",
    NULL,
};

static const char *const pg_v3[] = {
    "ALTER TABLE txmsg_inbox ADD COLUMN correlation_id text,"
    " ADD COLUMN topic text, ADD COLUMN source text",
    NULL,
};

static const migration sqlite_migrations[] = {{1, sqlite_v1}, {2, sqlite_v2}, {3, sqlite_v3}};
static const migration pg_migrations[] = {{1, pg_v1}, {2, pg_v2}, {3, pg_v3}};

static const char SQL_SQLITE_TABLE[] =
    "CREATE TABLE IF NOT EXISTS txmsg_schema_migrations ("
    " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)";
static const char SQL_PG_TABLE[] =
    "CREATE TABLE IF NOT EXISTS txmsg_schema_migrations ("
    " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";
/* An arbitrary constant naming the txmsg migration lock among advisory locks. */
static const char SQL_PG_LOCK[] = "SELECT pg_advisory_xact_lock(7316871640)";
static const char SQL_CURRENT[] = "SELECT COALESCE(MAX(version), 0) FROM txmsg_schema_migrations";
static const char SQL_RECORD[] = "INSERT INTO txmsg_schema_migrations (version) VALUES ($1)";

static txm_status apply_missing(txm_db *db, txm__conn *c, txm_error *err)
{
    bool pg = txm__db_dialect(db) == TXM__DIALECT_PG;
    const migration *list = pg ? pg_migrations : sqlite_migrations;
    size_t count = pg ? sizeof pg_migrations / sizeof *pg_migrations
                      : sizeof sqlite_migrations / sizeof *sqlite_migrations;
    txm_status st = TXM_OK;
    if (pg)
        st = txm__conn_exec(db, c, SQL_PG_LOCK, NULL, 0, NULL, NULL, err);
    if (st == TXM_OK)
        st = txm__conn_exec(db, c, pg ? SQL_PG_TABLE : SQL_SQLITE_TABLE, NULL, 0, NULL, NULL, err);
    txm_rows *rows = NULL;
    if (st == TXM_OK)
        st = txm__conn_exec(db, c, SQL_CURRENT, NULL, 0, &rows, NULL, err);
    int64_t current = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    if (st == TXM_OK && current > TXM__SCHEMA_VERSION)
        return txm_errf(err, TXM_UNSUPPORTED,
                        "db: schema version %lld is newer than this txmsg (%d)", (long long)current,
                        TXM__SCHEMA_VERSION);
    for (size_t m = 0; st == TXM_OK && m < count; m++) {
        if (list[m].version <= current)
            continue;
        for (const char *const *s = list[m].statements; st == TXM_OK && *s != NULL; s++)
            st = txm__conn_exec(db, c, *s, NULL, 0, NULL, NULL, err);
        txm_value v = TXM_INT(list[m].version);
        if (st == TXM_OK)
            st = txm__conn_exec(db, c, SQL_RECORD, &v, 1, NULL, NULL, err);
        if (st == TXM_OK)
            txm_logf(db->opts.log, db->opts.log_ctx, TXM_LOG_INFO,
                     "db: applied schema migration %d", list[m].version);
    }
    return st;
}

txm_status txm_db_relay_slot(txm_db *db, char out[TXM_SLOT_NAME_MAX + 1], txm_error *err)
{
    out[0] = '\0';
    if (db == NULL || txm__db_dialect(db) != TXM__DIALECT_PG)
        return txm_errf(err, TXM_UNSUPPORTED, "relay slots exist on PostgreSQL only");
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, "SELECT current_database()", NULL, 0, &rows, NULL, err);
    const char *name = txm_rows_text(rows, 0, 0);
    if (st == TXM_OK && name == NULL)
        st = txm_errf(err, TXM_DB, "db: no current database");
    if (st == TXM_OK) {
        size_t n = (size_t)snprintf(out, TXM_SLOT_NAME_MAX + 1, "txmsg_%s", name);
        for (size_t i = 6; i < n && i < TXM_SLOT_NAME_MAX; i++) {
            char ch = out[i];
            if (ch >= 'A' && ch <= 'Z')
                out[i] = (char)(ch - 'A' + 'a');
            else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
                out[i] = '_';
        }
    }
    txm_rows_free(rows);
    return st;
}

static bool is_true(const char *v)
{
    return v != NULL && strcmp(v, "t") == 0;
}

static const char SQL_SLOT_STATE[] =
    "SELECT to_regclass('txmsg_outbox') IS NOT NULL,"
    " EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";

/* Creates the relay's slot when the schema is brand new. It runs before the
 * migration that creates the outbox, so the slot's start precedes every
 * outbox row: rows written before a slot exists would never be decoded.
 * Once the outbox exists, a missing slot is not created here: a new slot
 * would silently skip the rows committed before it, so the relay creates it
 * itself and republishes them from the table, and this only warns. Failure
 * (wal_level is not logical, no free slot) is logged, not fatal: the library
 * works without a relay, and the relay reports the problem itself. */
static void ensure_relay_slot(txm_db *db)
{
    char slot[TXM_SLOT_NAME_MAX + 1];
    txm_error err;
    txm_rows *rows = NULL;
    txm_status st = txm_db_relay_slot(db, slot, &err);
    txm_value p = TXM_TEXT(slot);
    if (st == TXM_OK)
        st = txm_db_exec(db, SQL_SLOT_STATE, &p, 1, &rows, NULL, &err);
    bool has_outbox = st == TXM_OK && is_true(txm_rows_text(rows, 0, 0));
    bool exists = st == TXM_OK && is_true(txm_rows_text(rows, 0, 1));
    txm_rows_free(rows);
    if (st == TXM_OK && !exists && has_outbox) {
        txm_logf(db->opts.log, db->opts.log_ctx, TXM_LOG_WARN,
                 "db: replication slot %s is missing but the outbox exists; not creating it "
                 "here, since a new slot never sees rows written before it. txmsg-relay "
                 "creates it and first republishes the outbox rows not dispatched",
                 slot);
        return;
    }
    if (st == TXM_OK && !exists)
        st = txm_db_exec(db, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &p, 1,
                         NULL, NULL, &err);
    if (st == TXM_OK && !exists)
        txm_logf(db->opts.log, db->opts.log_ctx, TXM_LOG_INFO,
                 "db: created logical replication slot %s", slot);
    else if (st != TXM_OK && st != TXM_CONSTRAINT) /* CONSTRAINT: another process won */
        txm_logf(db->opts.log, db->opts.log_ctx, TXM_LOG_WARN,
                 "db: cannot create replication slot %s for the relay: %s", slot, err.text);
}

txm_status txm_db_migrate(txm_db *db, txm_error *err)
{
    if (db == NULL)
        return txm_errf(err, TXM_INVALID, "db_migrate: NULL db");
    if (txm__db_dialect(db) == TXM__DIALECT_PG && db->opts.pg_relay_slot)
        ensure_relay_slot(db);
    txm__conn *c = NULL;
    txm_status st = txm__db_acquire(db, &c, err);
    if (st == TXM_OK)
        st = txm__conn_begin(db, c, err);
    if (st == TXM_OK)
        st = apply_missing(db, c, err);
    if (st == TXM_OK)
        st = txm__conn_commit(db, c, err);
    else if (c != NULL)
        txm__conn_rollback(db, c);
    txm__db_release(db, c);
    return st;
}
