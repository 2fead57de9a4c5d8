/* PostgreSQL tailer: reads outbox inserts, and the outbox records of
 * messages mode (transactional logical decoding messages with the prefix
 * TXM_OUTBOX_MESSAGE_PREFIX), in commit order from a logical replication
 * slot with the pgoutput plugin, over libpq's streaming replication
 * protocol (replication=database, START_REPLICATION ... LOGICAL).
 * The slot's flush position advances only to what the caller confirmed, so
 * after any failure PostgreSQL resends everything not yet published.
 *
 * A slot that is missing (dropped, or absent on a promoted standby) or
 * invalidated (max_slot_wal_keep_size) is recreated, and the outbox rows
 * not dispatched are first served from the table (a resync), under a
 * durable mark that makes a relay stopped midway resync again.
 *
 * Thread safety: a tailer is used by one thread; it keeps no global state,
 * so different tailers may run in different threads. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"
#include "tail.h"

#define OUTBOX_TABLE "txmsg_outbox"
/* The columns a message is made of, in relay_row_to_msg's order. */
#define OUTBOX_COLS 7
static const char *const OUTBOX_COL_NAMES[OUTBOX_COLS] = {
    "message_id", "source", "aggregate_id", "correlation_id", "topic", "payload", "created_at"};
/* Longest slot or publication name: PostgreSQL's NAMEDATALEN - 1. */
#define NAME_MAX_LEN 63
/* A standby status update goes out at least this often, well inside the
 * server's wal_sender_timeout (60 s by default). */
#define STATUS_INTERVAL_MS 10000
/* Used unless the URL sets connect_timeout. */
#define CONNECT_TIMEOUT_S "10"
/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_OFFSET_US 946684800000000LL
/* XLogData: Byte1('w'), Int64 walStart, Int64 walEnd, Int64 sendTime, then
 * the pgoutput message. */
#define XLOGDATA_HEADER_LEN 25
/* Primary keepalive: Byte1('k'), Int64 walEnd, Int64 sendTime, Byte1 reply. */
#define KEEPALIVE_LEN 18
/* Standby status update: Byte1('r'), Int64 write, flush and apply positions,
 * Int64 clock, Byte1 reply requested. */
#define STATUS_LEN 34
/* Advisory lock (class, hashtext(slot)) held exclusively while a relay
 * creates or resyncs its slot, and shared while one starts streaming from
 * it; the one-bigint keys (migrations) are a separate space. */
#define SLOT_LOCK_CLASS "7316872"
/* Batch positions remembered until confirmed: more than the relay's queues
 * hold between reading a batch and confirming it. */
#define SERVED_MAX 64

typedef struct tail_pg {
    relay_tailer base; /* first member: the ops receive &base */
    char *url;
    char slot[NAME_MAX_LEN + 1];
    char publication[NAME_MAX_LEN + 1];
    bool no_mark_dispatched; /* the relay leaves rows not dispatched (log wording) */
    txm_log_fn log;          /* may be NULL */
    void *log_ctx;
    PGconn *conn;            /* replication connection; NULL while disconnected */
    bool streaming;          /* conn is copying after START_REPLICATION */
    bool standby;            /* the last start found the slot in use */
    relay_pgoutput dec;      /* relation cache of the current session */
    bool in_txn;             /* between a Begin and its Commit */
    size_t txn_rows;         /* outbox rows and records of the open transaction */
    uint64_t received_lsn;   /* highest WAL position seen in the stream */
    uint64_t confirmed_lsn;  /* the flush position: published and confirmed */
    uint64_t flush_sent;     /* flush position last reported in this session */
    uint64_t row_commit_lsn; /* end LSN of the last transaction that had outbox rows */
    long long status_due_ms; /* monotonic time when a status update is due */
    char *held;              /* a CopyData message read but left for the next batch */
    int held_len;            /* its bytes */
    char *payload;           /* an Insert's payload made compact, reused */
    size_t payload_cap;
    atomic_uint_fast64_t *resyncs; /* counts resyncs; may be NULL */
    /* Resync from the outbox table after the slot was lost or went missing
     * (recover): served by pg_next before streaming starts. */
    PGconn *resync_conn;    /* normal session holding the slot's lock exclusively */
    long long resync_after; /* seq of the last row served */
    long long resync_rows;  /* rows served */
    bool resync_served;     /* the last resync batch went out */
    bool resync_clear;      /* the mark goes once resync_end is confirmed */
    uint64_t resync_end;    /* the last resync batch's position: the new slot's start */
    /* Positions handed out in batches of this session and not confirmed
     * yet, oldest first: a confirmation of anything else comes from an
     * earlier session (perhaps on the old primary) and is not reported. */
    uint64_t served[SERVED_MAX];
    size_t served_head, served_count;
} tail_pg;

/* What pg_replication_slots says about the slot. */
typedef struct slot_info {
    bool exists;
    bool active;            /* a walsender streams from it now */
    bool lost;              /* invalidated: wal_status 'lost' */
    bool marked;            /* a resync of it was begun and not confirmed */
    uint64_t confirmed_lsn; /* its confirmed_flush_lsn, 0 if none */
} slot_info;

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Server notices go to the log; libpq's default would print them to stderr. */
static void on_notice(void *arg, const char *message)
{
    const tail_pg *t = arg;
    char line[TXM_ERROR_TEXT_LEN];
    txm_logf(t->log, t->log_ctx, TXM_LOG_WARN, "postgresql: %s",
             relay_one_line(message, line, sizeof line));
}

/* Identifiers cannot be bound as parameters, so the names spliced into
 * CREATE PUBLICATION and the replication commands are restricted to
 * [a-z0-9_]{1,63}. */
static bool valid_name(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");
    return n >= 1 && n <= NAME_MAX_LEN && s[n] == '\0';
}

/* "X/X" as PostgreSQL prints a pg_lsn. False for anything else. */
static bool parse_lsn(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long hi = strtoull(s, &end, 16);
    if (end == s || *end != '/' || hi > UINT32_MAX || errno != 0)
        return false;
    const char *lo_text = end + 1;
    unsigned long long lo = strtoull(lo_text, &end, 16);
    if (end == lo_text || *end != '\0' || lo > UINT32_MAX || errno != 0)
        return false;
    *out = (uint64_t)hi << 32 | lo;
    return true;
}

/* Checks that res has status want. Otherwise fills err (TXM_DB) and state
 * with the SQLSTATE ("" when the server sent none). */
static txm_status check_result(PGconn *c, const PGresult *res, ExecStatusType want, char state[6],
                               txm_error *err)
{
    state[0] = '\0';
    if (res != NULL && PQresultStatus(res) == want)
        return TXM_OK;
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(state, 6, "%s", s != NULL ? s : "");
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    if (msg[0] == '\0')
        msg = PQerrorMessage(c);
    if (msg[0] == '\0' && res != NULL)
        msg = PQresStatus(PQresultStatus(res));
    char line[TXM_ERROR_TEXT_LEN];
    return txm_errf(err, TXM_DB, "postgresql: %s%s%s%s", relay_one_line(msg, line, sizeof line),
                    state[0] != '\0' ? " (SQLSTATE " : "", state, state[0] != '\0' ? ")" : "");
}

/* Runs a command without parameters and checks its result status. */
static txm_status run(PGconn *c, const char *sql, ExecStatusType want, char state[6],
                      txm_error *err)
{
    PGresult *res = PQexec(c, sql);
    txm_status st = check_result(c, res, want, state, err);
    PQclear(res);
    return st;
}

/* Opens a session on the txmsg URL: a normal one for catalog queries, or a
 * walsender one (replication=database) for the replication commands. The
 * keywords after dbname win over the URL's, so replication is always ours. */
static txm_status pg_connect(tail_pg *t, bool replication, PGconn **out, txm_error *err)
{
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                                replication ? "replication" : NULL, NULL};
    const char *const values[] = {CONNECT_TIMEOUT_S, "txmsg-relay", t->url, "database", NULL};
    char state[6];
    *out = PQconnectdbParams(keys, values, 1);
    if (*out == NULL)
        return txm_errf(err, TXM_NOMEM, "postgresql: out of memory");
    if (PQstatus(*out) != CONNECTION_OK) {
        char line[TXM_ERROR_TEXT_LEN];
        txm_status st = txm_errf(err, TXM_DB, "postgresql: connect: %s",
                                 relay_one_line(PQerrorMessage(*out), line, sizeof line));
        PQfinish(*out);
        *out = NULL;
        return st;
    }
    PQsetNoticeProcessor(*out, on_notice, t);
    /* pgoutput prints values with the walsender session's settings; the
     * outbox's created_at must come as ISO text in UTC for relay_row_to_msg. */
    txm_status st = run(*out, "SET DateStyle = 'ISO'", PGRES_COMMAND_OK, state, err);
    if (st == TXM_OK)
        st = run(*out, "SET TimeZone = 'UTC'", PGRES_COMMAND_OK, state, err);
    if (st != TXM_OK) {
        PQfinish(*out);
        *out = NULL;
    }
    return st;
}

/* Migrates the database through the library, so the outbox table exists
 * before the publication names it. The migration creates no slot: the only
 * slot the tailer ever creates is its own, checked (create_checked). */
static txm_status ensure_schema(const tail_pg *t, txm_error *err)
{
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    o.pg_relay_slot = false;
    o.log = t->log;
    o.log_ctx = t->log_ctx;
    txm_db *db = NULL;
    txm_status st = txm_db_open(t->url, &o, &db, err);
    txm_db_close(db);
    return st;
}

static const char SQL_PUBLICATION[] =
    "SELECT p.pubinsert AND EXISTS (SELECT 1 FROM pg_publication_tables pt"
    " WHERE pt.pubname = p.pubname AND pt.tablename = '" OUTBOX_TABLE "')"
    " FROM pg_publication p WHERE p.pubname = $1";

/* Creates the publication unless it exists. It publishes inserts only, so
 * the relay's own "mark dispatched" updates never come back to it. The
 * migration (ensure_schema) creates TXM_PUBLICATION_NAME with the outbox;
 * this covers a --publication of the operator's and one dropped since. */
static txm_status ensure_publication(tail_pg *t, PGconn *c, txm_error *err)
{
    const char *const params[] = {t->publication};
    char state[6];
    PGresult *res = PQexecParams(c, SQL_PUBLICATION, 1, NULL, params, NULL, NULL, 0);
    txm_status st = check_result(c, res, PGRES_TUPLES_OK, state, err);
    bool exists = st == TXM_OK && PQntuples(res) == 1;
    if (exists && strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        txm_logf(t->log, t->log_ctx, TXM_LOG_WARN,
                 "relay: publication %s does not publish inserts into " OUTBOX_TABLE,
                 t->publication);
    PQclear(res);
    if (st != TXM_OK || exists)
        return st;
    char sql[160];
    snprintf(sql, sizeof sql,
             "CREATE PUBLICATION %s FOR TABLE " OUTBOX_TABLE " WITH (publish = 'insert')",
             t->publication);
    st = run(c, sql, PGRES_COMMAND_OK, state, err);
    /* 42710 duplicate_object: another relay created it first. */
    if (st == TXM_DB && strcmp(state, "42710") == 0)
        return TXM_OK;
    if (st == TXM_OK)
        txm_logf(t->log, t->log_ctx, TXM_LOG_INFO, "relay: created publication %s", t->publication);
    return st;
}

static const char SQL_SLOT[] =
    "SELECT confirmed_flush_lsn::text, active, plugin = 'pgoutput' AND slot_type = 'logical'"
    " AND database = current_database(), COALESCE(wal_status = 'lost', false)"
    " FROM pg_replication_slots WHERE slot_name = $1";

/* The resync mark: a txmsg_settings row per slot, committed before a new
 * slot is created and deleted once the relay confirmed the resync's last
 * batch, so a relay that dies in between resyncs again when it restarts. */
#define MARK_NAME "'relay_resync:' || $1"
static const char SQL_MARK_GET[] = "SELECT value FROM txmsg_settings WHERE name = " MARK_NAME;
static const char SQL_MARK_PUT[] = "INSERT INTO txmsg_settings (name, value) VALUES (" MARK_NAME
                                   ", $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";
static const char SQL_MARK_DEL[] = "DELETE FROM txmsg_settings WHERE name = " MARK_NAME;

static bool is_t(const char *v)
{
    return v != NULL && strcmp(v, "t") == 0;
}

/* Runs sql with the slot's name as $1 (and value as $2 when not NULL) on
 * c, and checks that the result has status want. Owns: *res (PQclear),
 * NULL on failure. */
static txm_status run_slot(tail_pg *t, PGconn *c, const char *sql, const char *value,
                           ExecStatusType want, PGresult **res, txm_error *err)
{
    const char *const params[] = {t->slot, value};
    char state[6];
    *res = PQexecParams(c, sql, value != NULL ? 2 : 1, NULL, params, NULL, NULL, 0);
    txm_status st = check_result(c, *res, want, state, err);
    if (st != TXM_OK) {
        PQclear(*res);
        *res = NULL;
    }
    return st;
}

/* Reads the slot's row and its resync mark. TXM_INVALID when the name
 * belongs to a slot that is not a pgoutput slot of this database. */
static txm_status query_slot(tail_pg *t, PGconn *c, slot_info *out, txm_error *err)
{
    *out = (slot_info){0};
    PGresult *res = NULL;
    txm_status st = run_slot(t, c, SQL_SLOT, NULL, PGRES_TUPLES_OK, &res, err);
    if (st == TXM_OK && PQntuples(res) == 1) {
        out->exists = true;
        out->active = is_t(PQgetvalue(res, 0, 1));
        out->lost = is_t(PQgetvalue(res, 0, 3));
        if (!PQgetisnull(res, 0, 0) && !parse_lsn(PQgetvalue(res, 0, 0), &out->confirmed_lsn))
            st = txm_errf(err, TXM_DB, "postgresql: slot %s: bad LSN \"%.32s\"", t->slot,
                          PQgetvalue(res, 0, 0));
        if (st == TXM_OK && !is_t(PQgetvalue(res, 0, 2)))
            st = txm_errf(err, TXM_INVALID,
                          "relay: slot %s exists but is not a pgoutput slot of this database",
                          t->slot);
    }
    PQclear(res);
    if (st == TXM_OK)
        st = run_slot(t, c, SQL_MARK_GET, NULL, PGRES_TUPLES_OK, &res, err);
    out->marked = st == TXM_OK && PQntuples(res) == 1;
    PQclear(res);
    return st;
}

/* A slot to stream from as it is: present, not invalidated, and not in the
 * middle of a resync. */
static bool healthy(const slot_info *info)
{
    return info->exists && !info->lost && !info->marked;
}

/* Tries to take the slot's advisory lock on c, a normal session: exclusive
 * while a relay creates or resyncs the slot, shared while one starts
 * streaming from it. It lasts until c ends. *got tells whether it was free. */
static txm_status lock_slot(tail_pg *t, PGconn *c, bool exclusive, bool *got, txm_error *err)
{
    const char *sql = exclusive ? "SELECT pg_try_advisory_lock(" SLOT_LOCK_CLASS ", hashtext($1))"
                                : "SELECT pg_try_advisory_lock_shared(" SLOT_LOCK_CLASS
                                  ", hashtext($1))";
    PGresult *res = NULL;
    txm_status st = run_slot(t, c, sql, NULL, PGRES_TUPLES_OK, &res, err);
    *got = st == TXM_OK && PQntuples(res) == 1 && is_t(PQgetvalue(res, 0, 0));
    PQclear(res);
    return st;
}

static txm_status unlock_shared(tail_pg *t, PGconn *c, txm_error *err)
{
    PGresult *res = NULL;
    txm_status st =
        run_slot(t, c, "SELECT pg_advisory_unlock_shared(" SLOT_LOCK_CLASS ", hashtext($1))", NULL,
                 PGRES_TUPLES_OK, &res, err);
    PQclear(res);
    return st;
}

/* Runs a query on c that returns one value, copied into out (len bytes;
 * "" for no row or NULL). */
static txm_status query_text(PGconn *c, const char *sql, char *out, size_t len, txm_error *err)
{
    char state[6];
    PGresult *res = PQexec(c, sql);
    txm_status st = check_result(c, res, PGRES_TUPLES_OK, state, err);
    bool has = st == TXM_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    snprintf(out, len, "%s", has ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return st;
}

static txm_status slot_busy(tail_pg *t, txm_error *err)
{
    if (!t->standby)
        txm_logf(t->log, t->log_ctx, TXM_LOG_INFO,
                 "relay: slot %s is in use by another relay; standing by", t->slot);
    t->standby = true;
    return txm_errf(err, TXM_BUSY, "relay: slot %s is in use by another relay", t->slot);
}

/* Drops an invalidated slot, creates the new one after committing the
 * resync mark (so a crash from here on still resyncs), and reads its
 * position into info. */
static txm_status replace_slot(tail_pg *t, PGconn *c, slot_info *info, const char *why,
                               txm_error *err)
{
    PGresult *res = NULL;
    txm_status st = TXM_OK;
    if (info->lost)
        st =
            run_slot(t, c, "SELECT pg_drop_replication_slot($1)", NULL, PGRES_TUPLES_OK, &res, err);
    PQclear(res);
    if (st == TXM_OK)
        st = run_slot(t, c, SQL_MARK_PUT, why, PGRES_COMMAND_OK, &res, err);
    PQclear(res);
    /* Nothing but this relay creates the slot while it holds the lock, except
     * the migration of a brand-new schema, whose slot predates every row. */
    char state[6] = "";
    if (st == TXM_OK) {
        const char *const params[] = {t->slot};
        res = PQexecParams(c, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", 1, NULL,
                           params, NULL, NULL, 0);
        st = check_result(c, res, PGRES_TUPLES_OK, state, err);
        PQclear(res);
        if (st == TXM_DB && strcmp(state, "42710") == 0) /* duplicate_object */
            st = TXM_OK;
        else if (st == TXM_OK)
            txm_logf(t->log, t->log_ctx, TXM_LOG_INFO, "relay: created replication slot %s",
                     t->slot);
    }
    if (st == TXM_OK)
        st = query_slot(t, c, info, err);
    if (st == TXM_OK && !info->exists)
        st = txm_errf(err, TXM_DB, "relay: replication slot %s vanished after its creation",
                      t->slot);
    return st;
}

/* Logs and counts a resync of count rows (none: a lost slot is still
 * counted, a missing one is new), and in messages mode the records that
 * no table can give back. lost_from is where the lost WAL
 * began as far as known (0: unknown). */
static void log_resync(tail_pg *t, const char *why, long long count, const char *mode,
                       uint64_t lost_from, bool lost)
{
    if (lost || count > 0) {
        if (t->resyncs != NULL)
            atomic_fetch_add(t->resyncs, 1);
        txm_logf(t->log, t->log_ctx, TXM_LOG_WARN,
                 "relay: replication slot %s %s; resyncing: republishing the %lld outbox rows not "
                 "dispatched from the table (consumers absorb the repeats), then streaming from "
                 "%X/%X%s",
                 t->slot, why, count, (unsigned)(t->confirmed_lsn >> 32),
                 (unsigned)t->confirmed_lsn,
                 t->no_mark_dispatched ? "; with --no-mark-dispatched no row is marked "
                                         "dispatched, so every row of the outbox is republished"
                                       : "");
    }
    if (strcmp(mode, "messages") != 0)
        return;
    char from[32] = "an unknown position";
    if (lost_from != 0)
        snprintf(from, sizeof from, "%X/%X", (unsigned)(lost_from >> 32), (unsigned)lost_from);
    txm_logf(t->log, t->log_ctx, lost ? TXM_LOG_ERROR : TXM_LOG_WARN,
             "relay: the database is in messages mode: outbox records committed from %s to "
             "%X/%X %s in the WAL of the slot %s, and are lost for good (messages mode keeps no "
             "rows to republish them from)",
             from, (unsigned)(t->confirmed_lsn >> 32), (unsigned)t->confirmed_lsn,
             lost ? "were" : "were, if the slot existed before,", t->slot);
}

/* Called with c holding the slot's lock exclusively and info read under
 * it, for a slot that is missing, invalidated or marked. Replaces a missing
 * or invalidated slot, then counts the outbox rows not dispatched, after
 * the slot's creation, so that every row the slot will not decode is
 * counted. None: the mark goes and the slot is streamed from at once.
 * Otherwise the resync begins: c and its lock move to t->resync_conn,
 * which pg_next reads pages from until every such row was served, and
 * then starts streaming. */
static txm_status recover(tail_pg *t, PGconn **c, slot_info *info, txm_error *err)
{
    if (info->active) /* another relay streams from it, its resync served */
        return slot_busy(t, err);
    bool lost = info->lost, created = !info->exists || info->lost;
    const char *why = lost            ? "was invalidated (wal_status lost: it held more WAL than "
                                        "max_slot_wal_keep_size allows)"
                      : !info->exists ? "is missing (dropped, or this server is a promoted "
                                        "standby: PostgreSQL 15 does not carry slots over)"
                                      : "was being resynced when a relay stopped";
    uint64_t lost_from = info->exists ? info->confirmed_lsn : t->confirmed_lsn;
    char count[24] = "", mode[16] = "";
    PGresult *res = NULL;
    txm_status st = created ? replace_slot(t, *c, info, why, err) : TXM_OK;
    if (st == TXM_OK)
        st = query_text(*c, "SELECT count(*) FROM " OUTBOX_TABLE " WHERE NOT is_dispatched", count,
                        sizeof count, err);
    if (st == TXM_OK)
        st = query_text(*c, "SELECT value FROM txmsg_settings WHERE name = 'outbox_mode'", mode,
                        sizeof mode, err);
    long long rows = strtoll(count, NULL, 10);
    if (st == TXM_OK && rows == 0)
        st = run_slot(t, *c, SQL_MARK_DEL, NULL, PGRES_COMMAND_OK, &res, err);
    PQclear(res);
    if (st != TXM_OK)
        return st;
    t->confirmed_lsn = info->confirmed_lsn;
    info->marked = false;
    /* Records of messages mode were lost with the slot, not with a resync
     * cut short (the first one said so). */
    if (!created)
        mode[0] = '\0';
    if (lost || rows > 0 || strcmp(mode, "messages") == 0)
        log_resync(t, why, rows, mode, lost_from, lost);
    else
        txm_logf(t->log, t->log_ctx, TXM_LOG_INFO,
                 "relay: replication slot %s %s; no outbox row waits to be dispatched, so "
                 "there is nothing to republish",
                 t->slot, why);
    if (rows == 0)
        return TXM_OK;
    t->resync_conn = *c;
    *c = NULL;
    t->resync_after = 0;
    t->resync_rows = 0;
    t->resync_end = t->confirmed_lsn;
    t->resync_served = false;
    return TXM_OK;
}

/* The slot needs recovering: takes its lock exclusively on *c (a relay
 * that finds it taken stands by), looks again, since another relay may
 * have recovered it meanwhile, and recovers it if not. On TXM_OK *c still
 * holds the lock, unless a resync began (t->resync_conn has it). */
static txm_status claim(tail_pg *t, PGconn **c, slot_info *info, txm_error *err)
{
    bool got = false;
    txm_status st = lock_slot(t, *c, true, &got, err);
    if (st == TXM_OK && !got) {
        if (!t->standby)
            txm_logf(t->log, t->log_ctx, TXM_LOG_INFO,
                     "relay: another relay is creating or resyncing slot %s; standing by", t->slot);
        t->standby = true;
        return txm_errf(err, TXM_BUSY, "relay: another relay is creating or resyncing slot %s",
                        t->slot);
    }
    if (st == TXM_OK)
        st = query_slot(t, *c, info, err);
    if (st == TXM_OK && !healthy(info))
        st = recover(t, c, info, err);
    return st;
}

/* Makes sure the outbox and the publication exist, and that the slot is
 * healthy or being recovered, and starts from the slot's confirmed
 * position. The publication comes before the slot: pgoutput looks it up
 * as of each decoded transaction. */
static txm_status setup(tail_pg *t, txm_error *err)
{
    PGconn *c = NULL;
    slot_info info = {0};
    txm_status st = ensure_schema(t, err);
    if (st == TXM_OK)
        st = pg_connect(t, false, &c, err);
    if (st == TXM_OK)
        st = ensure_publication(t, c, err);
    if (st == TXM_OK)
        st = query_slot(t, c, &info, err);
    if (st == TXM_OK && !healthy(&info))
        st = claim(t, &c, &info, err);
    PQfinish(c); /* ends the lock, unless a resync holds it */
    if (st == TXM_OK)
        t->confirmed_lsn = info.confirmed_lsn;
    return st;
}

/* Ends the replication session and forgets its partial state. What was read
 * but not confirmed comes again from the slot in the next session. */
static void disconnect(tail_pg *t)
{
    PQfreemem(t->held);
    t->held = NULL;
    t->held_len = 0;
    PQfinish(t->conn);
    t->conn = NULL;
    t->streaming = false;
    t->flush_sent = 0;
    t->in_txn = false;
    t->txn_rows = 0;
    relay_pgoutput_reset(&t->dec);
    /* A resync cut short starts again from the table (its mark stays), and
     * what the last session handed out is not confirmed to the next. */
    PQfinish(t->resync_conn);
    t->resync_conn = NULL;
    t->resync_served = false;
    t->resync_clear = false;
    t->served_count = 0;
}

/* Sends a standby status update ('r'). Only confirmed positions are
 * reported as flushed and applied: PostgreSQL keeps the WAL after the flush
 * position and resends it from there after a restart. A flush position
 * already reported goes as 0 (InvalidXLogRecPtr, "no news"), which leaves
 * the slot alone; a shutting-down walsender then compares the write position
 * with what it sent, so PostgreSQL stops promptly even while rows await
 * publishing, instead of waiting wal_sender_timeout for a flush that only
 * the broker can give. */
static txm_status send_status(tail_pg *t, txm_error *err)
{
    uint8_t msg[STATUS_LEN];
    uint64_t write = t->received_lsn > t->confirmed_lsn ? t->received_lsn : t->confirmed_lsn;
    uint64_t flush = t->confirmed_lsn > t->flush_sent ? t->confirmed_lsn : 0;
    msg[0] = 'r';
    put_be64(msg + 1, write);
    put_be64(msg + 9, flush);
    put_be64(msg + 17, flush);
    put_be64(msg + 25, (uint64_t)(txm_now_us() - PG_EPOCH_OFFSET_US));
    msg[33] = 0; /* no reply requested */
    t->status_due_ms = relay_mono_ms() + STATUS_INTERVAL_MS;
    if (PQputCopyData(t->conn, (const char *)msg, STATUS_LEN) != 1 || PQflush(t->conn) != 0) {
        char line[TXM_ERROR_TEXT_LEN];
        return txm_errf(err, TXM_DB, "postgresql: sending status update: %s",
                        relay_one_line(PQerrorMessage(t->conn), line, sizeof line));
    }
    if (flush != 0)
        t->flush_sent = flush;
    return TXM_OK;
}

/* START_REPLICATION on t->conn from the confirmed position. Messages are
 * always asked for, whatever the database's outbox mode: a database may
 * switch modes while units of work of the other mode are still in the WAL
 * (PostgreSQL 15 accepts the option with protocol version 1). 55006
 * object_in_use means another relay streams from the slot: TXM_BUSY. */
static txm_status start_replication(tail_pg *t, txm_error *err)
{
    char sql[256];
    char state[6];
    snprintf(sql, sizeof sql,
             "START_REPLICATION SLOT %s LOGICAL %X/%X (proto_version '1', publication_names "
             "'%s', messages 'true')",
             t->slot, (unsigned)(t->confirmed_lsn >> 32), (unsigned)t->confirmed_lsn,
             t->publication);
    txm_status st = run(t->conn, sql, PGRES_COPY_BOTH, state, err);
    if (st == TXM_DB && strcmp(state, "55006") == 0)
        return slot_busy(t, err);
    /* 55000 object_not_in_prerequisite_state: PostgreSQL 15 says "cannot
     * read from logical replication slot" when the slot was invalidated
     * since check_slot looked; the next attempt finds wal_status 'lost'. */
    if (st == TXM_DB && strcmp(state, "55000") == 0)
        txm_logf(t->log, t->log_ctx, TXM_LOG_WARN,
                 "relay: slot %s cannot be read (invalidated?); the next attempt recreates it "
                 "and resyncs if so",
                 t->slot);
    return st;
}

/* On a normal session: the slot's shared lock (a relay creating or
 * resyncing it holds it exclusively), then its state. A slot missing,
 * invalidated or marked is claimed for recovery, which may begin a resync
 * (t->resync_conn). On TXM_OK *c holds a lock that keeps the slot from
 * being recovered until streaming began. */
static txm_status check_slot(tail_pg *t, PGconn **c, slot_info *info, txm_error *err)
{
    bool free_to_start = false;
    txm_status st = pg_connect(t, false, c, err);
    if (st == TXM_OK)
        st = lock_slot(t, *c, false, &free_to_start, err);
    if (st == TXM_OK && !free_to_start)
        st = slot_busy(t, err);
    if (st == TXM_OK)
        st = query_slot(t, *c, info, err);
    if (st == TXM_OK && !healthy(info)) {
        st = unlock_shared(t, *c, err);
        if (st == TXM_OK)
            st = claim(t, c, info, err);
    }
    if (st == TXM_OK && t->resync_conn == NULL && info->active)
        st = slot_busy(t, err);
    return st;
}

/* Starts a replication session, or a resync that comes first. A slot
 * another walsender holds, or one another relay is recovering, answers
 * TXM_BUSY without opening the replication connection. The lock lasts
 * until streaming began, so a slot is never taken during its recovery. */
static txm_status start_stream(tail_pg *t, txm_error *err)
{
    /* A resync served keeps its lock until the stream it leads to began. */
    PGconn *c = t->resync_conn;
    t->resync_conn = NULL;
    slot_info info = {0};
    txm_status st = c == NULL ? check_slot(t, &c, &info, err) : TXM_OK;
    if (st != TXM_OK || t->resync_conn != NULL) {
        PQfinish(c);
        return st;
    }
    /* Never report less than the slot holds: PostgreSQL 15 would move its
     * confirmed_flush_lsn back (another relay may have advanced it). */
    if (info.confirmed_lsn > t->confirmed_lsn)
        t->confirmed_lsn = info.confirmed_lsn;
    st = pg_connect(t, true, &t->conn, err);
    if (st == TXM_OK)
        st = start_replication(t, err);
    PQfinish(c); /* streaming holds the slot now; the lock may go */
    if (st == TXM_OK) {
        t->streaming = true;
        st = send_status(t, err);
    }
    if (st != TXM_OK) {
        disconnect(t);
        return st;
    }
    txm_logf(t->log, t->log_ctx, TXM_LOG_INFO, "relay: %s slot %s at %X/%X",
             t->standby ? "took over" : "streaming from", t->slot,
             (unsigned)(t->confirmed_lsn >> 32), (unsigned)t->confirmed_lsn);
    t->standby = false;
    return TXM_OK;
}

/* jsonb prints {"a": 1, "b": [2, 3]}: the payload goes out compact, as
 * txm_msg_new wrote it, with the white space between tokens dropped (jsonb
 * text is valid JSON, so nothing is parsed). NULL stays NULL; when out of
 * memory the text goes as it is. Borrows: valid until the next call. */
static const char *compact_payload(tail_pg *t, const char *text)
{
    if (text == NULL)
        return NULL;
    size_t len = strlen(text);
    if (len + 1 > t->payload_cap) {
        char *p = realloc(t->payload, len + 1);
        if (p == NULL)
            return text;
        t->payload = p;
        t->payload_cap = len + 1;
    }
    relay_json_compact(text, len, t->payload);
    return t->payload;
}

/* Turns an outbox row's text columns into a batch entry. A row that is
 * not a valid message becomes an entry with its reason. */
static txm_status add_fields(tail_pg *t, const char *const col[OUTBOX_COLS], relay_batch *out,
                             txm_error *err)
{
    txm_msg *msg = NULL;
    txm_error why = {0};
    txm_status row_st = relay_row_to_msg(col[0], col[1], col[2], col[3], col[4],
                                         compact_payload(t, col[5]), col[6], &msg, &why);
    if (row_st == TXM_NOMEM)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    txm_status st = relay_batch_add(out, &msg, col[0], row_st == TXM_OK ? NULL : why.text);
    if (st != TXM_OK)
        return txm_errf(err, st, "relay: out of memory");
    return TXM_OK;
}

/* Turns an Insert into the outbox into a batch entry, found by column name. */
static txm_status add_row(tail_pg *t, const relay_pgoutput_msg *m, relay_batch *out, txm_error *err)
{
    const char *col[OUTBOX_COLS];
    for (size_t i = 0; i < OUTBOX_COLS; i++)
        col[i] = relay_pgoutput_text(m, OUTBOX_COL_NAMES[i]);
    return add_fields(t, col, out, err);
}

/* Turns a messages-mode record into a batch entry with no row to mark. A
 * record that does not decode becomes an entry with its reason, like a bad
 * row: logged, counted and skipped by the relay. */
static txm_status add_record(const relay_pgoutput_msg *m, relay_batch *out, txm_error *err)
{
    txm_msg *msg = NULL;
    txm_error why = {0};
    txm_status rec_st = txm_outbox_record_decode(m->message.content, m->message.len, &msg, &why);
    if (rec_st == TXM_NOMEM)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    char reason[TXM_ERROR_TEXT_LEN + 64];
    snprintf(reason, sizeof reason, "logical decoding message at %X/%X: %s",
             (unsigned)(m->message.lsn >> 32), (unsigned)m->message.lsn, why.text);
    const char *id = msg != NULL ? txm_msg_id(msg) : NULL;
    txm_status st = relay_batch_add(out, &msg, id, rec_st == TXM_OK ? NULL : reason);
    if (st != TXM_OK)
        return txm_errf(err, st, "relay: out of memory");
    out->entries[out->count - 1].no_row = true;
    return TXM_OK;
}

/* An outbox record: transactional (so it is inside Begin and Commit, in
 * commit order, and only if committed) and of our prefix. Other
 * applications' messages and non-transactional ones are none of ours. */
static bool is_outbox_record(const tail_pg *t, const relay_pgoutput_msg *m)
{
    return t->in_txn && (m->message.flags & RELAY_PGOUTPUT_MESSAGE_TRANSACTIONAL) != 0 &&
           strcmp(m->message.prefix, TXM_OUTBOX_MESSAGE_PREFIX) == 0;
}

/* XLogData ('w'): the header, then one pgoutput message. Begin opens a
 * transaction, each Insert into the outbox and each outbox record adds an
 * entry, and Commit makes its end LSN the batch's position to confirm. */
static txm_status on_xlogdata(tail_pg *t, const uint8_t *buf, size_t len, relay_batch *out,
                              txm_error *err)
{
    if (len < XLOGDATA_HEADER_LEN)
        return txm_errf(err, TXM_MALFORMED, "replication: XLogData of %zu bytes", len);
    uint64_t wal_start = be64(buf + 1);
    if (wal_start > t->received_lsn)
        t->received_lsn = wal_start;
    relay_pgoutput_msg m;
    txm_status st = relay_pgoutput_decode(&t->dec, buf + XLOGDATA_HEADER_LEN,
                                          len - XLOGDATA_HEADER_LEN, &m, err);
    if (st != TXM_OK)
        return st;
    switch (m.type) {
    case RELAY_PGOUTPUT_BEGIN:
        t->in_txn = true;
        t->txn_rows = 0;
        break;
    case RELAY_PGOUTPUT_COMMIT:
        t->in_txn = false;
        out->confirm_position = m.commit.end_lsn;
        if (t->txn_rows > 0)
            t->row_commit_lsn = m.commit.end_lsn;
        if (m.commit.end_lsn > t->received_lsn)
            t->received_lsn = m.commit.end_lsn;
        break;
    case RELAY_PGOUTPUT_INSERT:
        if (strcmp(m.relation->name, OUTBOX_TABLE) != 0)
            break;
        t->txn_rows++;
        return add_row(t, &m, out, err);
    case RELAY_PGOUTPUT_MESSAGE:
        if (!is_outbox_record(t, &m))
            break;
        t->txn_rows++;
        return add_record(&m, out, err);
    default:
        break;
    }
    return TXM_OK;
}

/* Primary keepalive ('k'): the server's WAL end and whether it wants an
 * answer now (it disconnects after wal_sender_timeout without one). */
static txm_status on_keepalive(tail_pg *t, const uint8_t *buf, size_t len, txm_error *err)
{
    if (len < KEEPALIVE_LEN)
        return txm_errf(err, TXM_MALFORMED, "replication: keepalive of %zu bytes", len);
    uint64_t wal_end = be64(buf + 1);
    if (wal_end > t->received_lsn)
        t->received_lsn = wal_end;
    /* Everything before wal_end has been sent to us, and the stream is in
     * order. With no transaction open and every outbox row confirmed, the
     * WAL up to there holds nothing left to publish: advancing the flush
     * position lets PostgreSQL recycle it while the outbox is idle. */
    if (!t->in_txn && t->held == NULL && t->confirmed_lsn >= t->row_commit_lsn &&
        wal_end > t->confirmed_lsn)
        t->confirmed_lsn = wal_end;
    return buf[KEEPALIVE_LEN - 1] != 0 ? send_status(t, err) : TXM_OK;
}

static txm_status on_copy(tail_pg *t, const uint8_t *buf, size_t len, relay_batch *out,
                          txm_error *err)
{
    if (buf[0] == 'w')
        return on_xlogdata(t, buf, len, out, err);
    if (buf[0] == 'k')
        return on_keepalive(t, buf, len, err);
    return txm_errf(err, TXM_MALFORMED, "replication: unknown CopyData message 0x%02x",
                    (unsigned)buf[0]);
}

/* The stream ended: PostgreSQL shut down, was restarted, or failed. */
static txm_status stream_ended(tail_pg *t, txm_error *err)
{
    char line[TXM_ERROR_TEXT_LEN];
    PGresult *res = PQgetResult(t->conn);
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    if (msg[0] == '\0')
        msg = PQerrorMessage(t->conn);
    if (msg[0] == '\0')
        msg = "the server ended it (shutting down?)";
    txm_status st = txm_errf(err, TXM_DB, "postgresql: replication stream ended: %s",
                             relay_one_line(msg, line, sizeof line));
    PQclear(res);
    txm_logf(t->log, t->log_ctx, TXM_LOG_WARN, "relay: %s",
             err != NULL ? err->text : "replication stream ended");
    return st;
}

/* Waits until the socket is readable or timeout_ms passes, and reads what
 * arrived. *interrupted is set when a signal cut the wait short, so the
 * caller's loop can look at its stop flag. */
static txm_status wait_input(tail_pg *t, long long timeout_ms, bool *interrupted, txm_error *err)
{
    struct pollfd p = {.fd = PQsocket(t->conn), .events = POLLIN};
    if (p.fd < 0)
        return txm_errf(err, TXM_DB, "postgresql: replication connection lost");
    int timeout = timeout_ms < 0 ? 0 : timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    int r = poll(&p, 1, timeout);
    if (r < 0 && errno == EINTR) {
        *interrupted = true;
        return TXM_OK;
    }
    if (r < 0) {
        int e = errno;
        txm_status st = txm_errf(err, TXM_IO, "relay: poll: %s", strerror(e));
        if (err != NULL)
            err->sys_errno = e;
        return st;
    }
    if (r > 0 && PQconsumeInput(t->conn) == 0)
        return stream_ended(t, err);
    return TXM_OK;
}

/* An XLogData carrying an Insert or a Message: maybe one more entry, which
 * a full batch leaves for the next call. */
static bool may_add_entry(const char *buf, int len)
{
    return len > XLOGDATA_HEADER_LEN && buf[0] == 'w' &&
           (buf[XLOGDATA_HEADER_LEN] == RELAY_PGOUTPUT_INSERT ||
            buf[XLOGDATA_HEADER_LEN] == RELAY_PGOUTPUT_MESSAGE);
}

/* Worth returning: at a transaction boundary with something to give
 * (entries, or a position to confirm). */
static bool batch_ready(const tail_pg *t, const relay_batch *out)
{
    return !t->in_txn && (out->count > 0 || out->confirm_position != 0);
}

/* Reads the stream into out until a transaction boundary with nothing more
 * buffered, or the deadline. A full batch still takes the messages that add
 * no row, waiting for the next one if need be, so the Commit right after its
 * last row lands in it; an Insert or Message is held back for the next call. pgoutput
 * sends a transaction in one go once it is committed, so that wait is short. */
static txm_status fill(tail_pg *t, size_t max, long long deadline, relay_batch *out, txm_error *err)
{
    for (;;) {
        long long now = relay_mono_ms();
        txm_status st = now >= t->status_due_ms ? send_status(t, err) : TXM_OK;
        if (st != TXM_OK || (now >= deadline && batch_ready(t, out)))
            return st;
        char *buf = t->held;
        int n = buf != NULL ? t->held_len : PQgetCopyData(t->conn, &buf, 1);
        t->held = NULL;
        if (n > 0 && out->count >= max && may_add_entry(buf, n)) {
            t->held = buf;
            t->held_len = n;
            return TXM_OK;
        }
        if (n > 0) {
            st = on_copy(t, (const uint8_t *)buf, (size_t)n, out, err);
            PQfreemem(buf);
            if (st != TXM_OK)
                return st;
            continue;
        }
        if (n < 0)
            return stream_ended(t, err);
        if (batch_ready(t, out) || now >= deadline)
            return TXM_OK;
        long long until = deadline < t->status_due_ms ? deadline : t->status_due_ms;
        bool interrupted = false;
        st = wait_input(t, until - now, &interrupted, err);
        if (st != TXM_OK || interrupted)
            return st;
    }
}

/* A page of the resync: the outbox rows not dispatched after the last one
 * served, in seq order (the partial index txmsg_outbox_not_dispatched),
 * with their text as pgoutput would send it (the session is ISO and UTC). */
static const char SQL_RESYNC_PAGE[] =
    "SELECT message_id, source, aggregate_id, correlation_id, topic, payload, created_at, seq"
    " FROM " OUTBOX_TABLE " WHERE NOT is_dispatched AND seq > $1 ORDER BY seq LIMIT $2";

/* Remembers a position handed out, dropping the oldest when full (its
 * confirmation is then not reported: the slot only lags a little). */
static void served_push(tail_pg *t, uint64_t position)
{
    if (t->served_count == SERVED_MAX) {
        t->served_head = (t->served_head + 1) % SERVED_MAX;
        t->served_count--;
    }
    t->served[(t->served_head + t->served_count++) % SERVED_MAX] = position;
}

/* Whether position was handed out by this session; forgets it and the
 * older ones. Confirmations come in the order the positions went out; one
 * of an earlier session changes nothing. */
static bool served_take(tail_pg *t, uint64_t position)
{
    for (size_t i = 0; i < t->served_count; i++) {
        if (t->served[(t->served_head + i) % SERVED_MAX] != position)
            continue;
        t->served_head = (t->served_head + i + 1) % SERVED_MAX;
        t->served_count -= i + 1;
        return true;
    }
    return false;
}

/* Serves the next page of the resync as a batch. Only the last page (fewer
 * rows than max) carries a position, the new slot's start: its
 * confirmation means every page was published and marked (pg_confirm
 * clears the mark then). Rows committed since the slot's creation come
 * again from the stream: at least once. */
static txm_status resync_fill(tail_pg *t, size_t max, relay_batch *out, txm_error *err)
{
    char after[24], limit[24], state[6];
    snprintf(after, sizeof after, "%lld", t->resync_after);
    snprintf(limit, sizeof limit, "%zu", max);
    const char *const params[] = {after, limit};
    PGresult *res = PQexecParams(t->resync_conn, SQL_RESYNC_PAGE, 2, NULL, params, NULL, NULL, 0);
    txm_status st = check_result(t->resync_conn, res, PGRES_TUPLES_OK, state, err);
    int n = st == TXM_OK ? PQntuples(res) : 0;
    for (int i = 0; st == TXM_OK && i < n; i++) {
        const char *col[OUTBOX_COLS];
        for (int k = 0; k < OUTBOX_COLS; k++)
            col[k] = PQgetisnull(res, i, k) ? NULL : PQgetvalue(res, i, k);
        st = add_fields(t, col, out, err);
        t->resync_after = strtoll(PQgetvalue(res, i, OUTBOX_COLS), NULL, 10);
    }
    PQclear(res);
    if (st != TXM_OK)
        return st;
    t->resync_rows += n;
    if ((size_t)n < max) {
        out->confirm_position = t->resync_end;
        served_push(t, t->resync_end);
        t->resync_served = true;
        t->resync_clear = true;
        txm_logf(t->log, t->log_ctx, TXM_LOG_INFO,
                 "relay: resync of slot %s read %lld outbox rows from the table; streaming next",
                 t->slot, t->resync_rows);
    }
    return TXM_OK;
}

static bool resyncing(const tail_pg *t)
{
    return t->resync_conn != NULL && !t->resync_served;
}

static txm_status pg_next(relay_tailer *base, size_t max, int wait_ms, relay_batch *out,
                          txm_error *err)
{
    tail_pg *t = (tail_pg *)base;
    if (t == NULL || out == NULL || max == 0)
        return txm_errf(err, TXM_INVALID, "tail_pg next: NULL argument or max 0");
    long long deadline = relay_mono_ms() + (wait_ms > 0 ? wait_ms : 0);
    /* Reconnecting is part of reading: while PostgreSQL is away each call
     * tries once and returns TXM_DB, and the caller backs off. */
    txm_status st = t->streaming || resyncing(t) ? TXM_OK : start_stream(t, err);
    if (st == TXM_OK && resyncing(t))
        st = resync_fill(t, max, out, err);
    else if (st == TXM_OK) {
        st = fill(t, max, deadline, out, err);
        if (st == TXM_OK && out->confirm_position != 0)
            served_push(t, out->confirm_position);
    }
    if (st != TXM_OK && st != TXM_BUSY) {
        relay_batch_clear(out);
        disconnect(t);
    }
    return st;
}

/* Deletes the resync mark once the resync's last batch is confirmed. A
 * failure leaves it for the next confirmation (or the next start, which
 * resyncs again: at least once). */
static void clear_mark(tail_pg *t)
{
    PGconn *c = NULL;
    PGresult *res = NULL;
    txm_error why = {0};
    txm_status st = pg_connect(t, false, &c, &why);
    if (st == TXM_OK)
        st = run_slot(t, c, SQL_MARK_DEL, NULL, PGRES_COMMAND_OK, &res, &why);
    PQclear(res);
    PQfinish(c);
    if (st != TXM_OK) {
        txm_logf(t->log, t->log_ctx, TXM_LOG_WARN,
                 "relay: cannot clear the resync mark of slot %s yet: %s", t->slot, why.text);
        return;
    }
    t->resync_clear = false;
    txm_logf(t->log, t->log_ctx, TXM_LOG_INFO,
             "relay: resync of slot %s complete: %lld rows republished and confirmed", t->slot,
             t->resync_rows);
}

/* Records position and reports it at once. A failed send only ends the
 * session: the next one starts from this position anyway. */
static txm_status pg_confirm(relay_tailer *base, uint64_t position, txm_error *err)
{
    tail_pg *t = (tail_pg *)base;
    if (t == NULL)
        return txm_errf(err, TXM_INVALID, "tail_pg confirm: NULL tailer");
    /* A position of an earlier session may belong to another server (the
     * old primary): reported to this slot, it could skip unread WAL. */
    if (!served_take(t, position))
        return TXM_OK;
    if (t->resync_clear && position >= t->resync_end)
        clear_mark(t);
    if (position <= t->confirmed_lsn)
        return TXM_OK;
    t->confirmed_lsn = position;
    txm_error why;
    if (t->streaming && send_status(t, &why) != TXM_OK) {
        txm_logf(t->log, t->log_ctx, TXM_LOG_WARN, "relay: %s; reconnecting", why.text);
        disconnect(t);
    }
    return TXM_OK;
}

static void pg_position_text(const relay_tailer *base, char *out, size_t len)
{
    const tail_pg *t = (const tail_pg *)base;
    if (out == NULL || len == 0)
        return;
    uint64_t lsn = t != NULL ? t->confirmed_lsn : 0;
    snprintf(out, len, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

static void pg_close(relay_tailer *base)
{
    tail_pg *t = (tail_pg *)base;
    if (t == NULL)
        return;
    /* The last confirmed position may not have gone out yet. */
    if (t->streaming)
        send_status(t, NULL);
    disconnect(t);
    relay_pgoutput_fini(&t->dec);
    free(t->url);
    free(t->payload);
    free(t);
}

static const relay_tailer_ops pg_ops = {
    .next = pg_next,
    .confirm = pg_confirm,
    .position_text = pg_position_text,
    .close = pg_close,
};

/* Checks cfg and copies it into a new tailer. */
static txm_status tailer_new(const relay_tail_config *cfg, tail_pg **out, txm_error *err)
{
    const char *slot = cfg->slot_name;
    const char *pub = cfg->publication_name != NULL ? cfg->publication_name : TXM_PUBLICATION_NAME;
    /* No default: a tailer that picked some slot by itself would start at
     * that slot's position and skip what the relay's own slot holds. */
    if (slot == NULL)
        return txm_errf(err, TXM_INVALID, "relay: no replication slot name");
    if (!valid_name(slot))
        return txm_errf(err, TXM_INVALID, "relay: slot name \"%.64s\" is not [a-z0-9_]{1,63}",
                        slot);
    if (!valid_name(pub))
        return txm_errf(err, TXM_INVALID,
                        "relay: publication name \"%.64s\" is not [a-z0-9_]{1,63}", pub);
    tail_pg *t = calloc(1, sizeof *t);
    if (t == NULL || (t->url = strdup(cfg->database_url)) == NULL) {
        free(t);
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    }
    t->base.ops = &pg_ops;
    snprintf(t->slot, sizeof t->slot, "%s", slot);
    snprintf(t->publication, sizeof t->publication, "%s", pub);
    t->no_mark_dispatched = cfg->no_mark_dispatched;
    t->resyncs = cfg->slot_resyncs;
    t->log = cfg->log;
    t->log_ctx = cfg->log_ctx;
    relay_pgoutput_init(&t->dec);
    *out = t;
    return TXM_OK;
}

txm_status relay_tail_open_pg(const relay_tail_config *cfg, relay_tailer **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL || cfg->database_url == NULL)
        return txm_errf(err, TXM_INVALID, "relay_tail_open_pg: NULL argument");
    tail_pg *t = NULL;
    txm_status st = tailer_new(cfg, &t, err);
    if (st == TXM_OK)
        st = setup(t, err);
    if (st != TXM_OK) {
        pg_close(t != NULL ? &t->base : NULL);
        return st;
    }
    *out = &t->base;
    return TXM_OK;
}
