/* Outbox repository: inserts inside a unit of work, dispatch bookkeeping and
 * the queries monitoring needs. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/store_int.h"
#include "txmsg/admin.h"
#include "txmsg/outbox.h"

struct txm_outbox_entry {
    txm_msg *msg;
    int64_t seq; /* commit-ordered sequence number */
    bool is_dispatched;
    int64_t dispatch_count;        /* approximate_dispatch_count */
    int64_t last_dispatched_at_us; /* 0 if never */
};

static const char SQL_INSERT[] =
    "INSERT INTO txmsg_outbox (message_id, source, aggregate_id, correlation_id, topic, payload,"
    " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/* SQLite's is_dispatched column holds the marks; whether a row is
 * dispatched also depends on the relay cursors (TXM__SQLITE_DISPATCHED), and
 * a row the cursors passed was published once more by the relay, unless it
 * skipped the row (-1). last_dispatched_at is the time of the last mark. */
#define SQLITE_COLUMNS                                                                             \
    "SELECT seq, message_id, source, aggregate_id, correlation_id, topic, payload, created_at,"    \
    " approximate_dispatch_count + (is_dispatched >= 0 AND seq <= " TXM__SQLITE_PASSED             \
    "), " TXM__SQLITE_DISPATCHED ", last_dispatched_at FROM txmsg_outbox "
#define PG_COLUMNS                                                                                 \
    "SELECT seq, message_id, source, aggregate_id, correlation_id, topic, "                        \
    "payload::text, " TXM__PG_TIME("created_at") ", approximate_dispatch_count, "                  \
                                                 "is_dispatched, " TXM__PG_TIME(                   \
                                                     "last_dispatched_at") " FROM txmsg_outbox "

static const char SQLITE_GET[] = SQLITE_COLUMNS "WHERE message_id = $1";
static const char PG_GET[] = PG_COLUMNS "WHERE message_id = $1";
/* Optional filters are NULL parameters; PostgreSQL needs each parameter's
 * type spelled out because "$n IS NULL" alone does not determine it. */
static const char SQLITE_LIST[] =
    SQLITE_COLUMNS "WHERE seq > $1 AND (($2 & 1) = 0 OR " TXM__SQLITE_NOT_DISPATCHED ")"
                   " AND (($2 & 2) = 0 OR " TXM__SQLITE_DISPATCHED ")"
                   " AND ($3 IS NULL OR created_at < $3) AND ($4 IS NULL OR topic = $4)"
                   " AND ($6 IS NULL OR aggregate_id = $6) ORDER BY seq LIMIT $5";
static const char PG_LIST[] =
    PG_COLUMNS "WHERE seq > $1::bigint AND (($2::int & 1) = 0 OR NOT is_dispatched)"
               " AND (($2::int & 2) = 0 OR is_dispatched)"
               " AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)"
               " AND ($4::text IS NULL OR topic = $4::text)"
               " AND ($6::text IS NULL OR aggregate_id = $6::text) ORDER BY seq LIMIT $5::bigint";
/* SQLite: the lower of the first skipped row and the first row past the
 * cursors, each found through its partial index (min() skips a NULL). */
static const char SQLITE_OLDEST[] =
    "SELECT created_at FROM txmsg_outbox WHERE seq = (SELECT min(seq) FROM"
    " (SELECT min(seq) AS seq FROM txmsg_outbox WHERE is_dispatched = -1 UNION ALL"
    " SELECT min(seq) FROM txmsg_outbox WHERE is_dispatched = 0 AND seq > " TXM__SQLITE_PASSED "))";
static const char PG_OLDEST[] = "SELECT " TXM__PG_TIME(
    "created_at") " FROM txmsg_outbox WHERE NOT is_dispatched ORDER BY seq LIMIT 1";
/* The same, for rows not dispatched yet: a retry must not count twice. */
static const char SQLITE_MARK_NEW[] =
    "UPDATE txmsg_outbox SET is_dispatched = 1, last_dispatched_at = $1,"
    " approximate_dispatch_count = approximate_dispatch_count + 1"
    " WHERE " TXM__SQLITE_NOT_DISPATCHED " AND message_id IN (SELECT value FROM json_each($2))";
static const char PG_MARK_NEW[] =
    "UPDATE txmsg_outbox SET is_dispatched = true, last_dispatched_at = $1::timestamptz,"
    " approximate_dispatch_count = approximate_dispatch_count + 1"
    " WHERE NOT is_dispatched AND message_id IN (SELECT json_array_elements_text($2::json))";

static const char SQLITE_COUNT[] = "SELECT " TXM__SQLITE_COUNT_NOT_DISPATCHED;
static const char PG_COUNT[] = "SELECT count(*) FROM txmsg_outbox WHERE NOT is_dispatched";
/* The ids travel as one JSON array parameter, so one prepared statement
 * serves any batch size. */
static const char SQLITE_MARK[] =
    "UPDATE txmsg_outbox SET is_dispatched = 1, last_dispatched_at = $1,"
    " approximate_dispatch_count = approximate_dispatch_count + 1"
    " WHERE message_id IN (SELECT value FROM json_each($2))";
static const char PG_MARK[] =
    "UPDATE txmsg_outbox SET is_dispatched = true, last_dispatched_at = $1::timestamptz,"
    " approximate_dispatch_count = approximate_dispatch_count + 1"
    " WHERE message_id IN (SELECT json_array_elements_text($2::json))";

/* Messages mode: the record travels as bytea text in hex form ("\\x..."),
 * bound like any parameter. Transactional, so the message is decoded only
 * if the unit of work commits, in its commit order. */
static const char PG_EMIT[] =
    "SELECT pg_logical_emit_message(true, '" TXM_OUTBOX_MESSAGE_PREFIX "', $1::bytea)";

/* Emits m's record inside uow. No table, so a repeated message id is not
 * detected here; the consumers' inboxes absorb it. */
static txm_status publish_message(txm_uow *uow, const txm_msg *m, txm_error *err)
{
    static const char HEX[] = "0123456789abcdef";
    if (uow->failed != TXM_OK) {
        if (err != NULL)
            *err = uow->failure;
        return uow->failed;
    }
    uint8_t *rec = NULL;
    size_t len = 0;
    txm_error local = {0};
    txm_status st = txm_outbox_record_encode(m, &rec, &len, &local);
    char *text = st == TXM_OK ? txm__malloc(2 * len + 3) : NULL;
    if (st == TXM_OK && text == NULL)
        st = txm_errf(&local, TXM_NOMEM, "outbox: out of memory");
    /* As a failing INSERT would, a message that cannot be emitted fails the
     * unit of work: its commit must not go through without it. */
    if (st != TXM_OK) {
        uow->failed = st;
        uow->failure = local;
        if (err != NULL)
            *err = local;
    }
    if (st == TXM_OK) {
        text[0] = '\\';
        text[1] = 'x';
        for (size_t i = 0; i < len; i++) {
            text[2 + 2 * i] = HEX[rec[i] >> 4];
            text[3 + 2 * i] = HEX[rec[i] & 15];
        }
        text[2 + 2 * len] = '\0';
        txm_value p = TXM_TEXT(text);
        st = txm__uow_exec(uow, PG_EMIT, &p, 1, NULL, NULL, TXM_OK, err);
    }
    free(text);
    free(rec);
    return st;
}

txm_status txm_outbox_publish(txm_uow *uow, txm_msg **msg, txm_error *err)
{
    if (msg == NULL || *msg == NULL || uow == NULL) {
        if (msg != NULL) {
            txm_msg_free(*msg);
            *msg = NULL;
        }
        return txm_errf(err, TXM_INVALID, "outbox_publish: NULL argument");
    }
    txm_msg *m = *msg;
    *msg = NULL;
    if (txm__db_dialect(uow->db) == TXM__DIALECT_PG &&
        txm__db_outbox_mode(uow->db) == TXM_OUTBOX_MESSAGES) {
        txm_status st = publish_message(uow, m, err);
        txm_msg_free(m);
        return st;
    }
    char created[TXM_TIME_LEN + 1];
    txm_time_format(txm_msg_created_at_us(m), created);
    txm_value p[7] = {
        TXM_TEXT(txm_msg_id(m)),
        TXM_TEXT(txm_msg_source(m)),
        TXM_TEXT(txm_msg_aggregate_id(m)),
        TXM_TEXT(txm_msg_correlation_id(m)),
        TXM_TEXT(txm_msg_topic(m)),
        TXM_TEXT(txm_msg_payload(m)),
        TXM_TEXT(created),
    };
    txm_status st = txm__uow_exec(uow, SQL_INSERT, p, 7, NULL, NULL, TXM_ALREADY_PUBLISHED, err);
    if (st == TXM_ALREADY_PUBLISHED)
        txm_errf(err, st, "outbox: message %s is already in the outbox", txm_msg_id(m));
    txm_msg_free(m);
    return st;
}

static txm_status parse_time(const char *text, int64_t *us, txm_error *err)
{
    *us = 0;
    return text == NULL ? TXM_OK : txm_time_parse(text, us, err);
}

/* Builds an entry from row r of a *_COLUMNS query. */
static txm_status entry_from_row(const txm_rows *rows, size_t r, txm_outbox_entry **out,
                                 txm_error *err)
{
    *out = NULL;
    txm_outbox_entry *e = txm__calloc(1, sizeof *e);
    if (e == NULL)
        return txm_errf(err, TXM_NOMEM, "outbox: out of memory");
    int64_t created_us = 0;
    txm_status st = parse_time(txm_rows_text(rows, r, 7), &created_us, err);
    if (st == TXM_OK)
        st = parse_time(txm_rows_text(rows, r, 10), &e->last_dispatched_at_us, err);
    if (st == TXM_OK)
        st = txm_msg_new_with(txm_rows_text(rows, r, 1), txm_rows_text(rows, r, 2),
                              txm_rows_text(rows, r, 5), txm_rows_text(rows, r, 3),
                              txm_rows_text(rows, r, 4), txm_rows_text(rows, r, 6), created_us,
                              &e->msg, err);
    if (st != TXM_OK) {
        free(e);
        return st;
    }
    e->seq = txm_rows_int(rows, r, 0);
    e->dispatch_count = txm_rows_int(rows, r, 8);
    e->is_dispatched = txm_rows_int(rows, r, 9) != 0;
    *out = e;
    return TXM_OK;
}

txm_status txm_outbox_get(txm_db *db, const char *message_id, txm_outbox_entry **out,
                          txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (db == NULL || message_id == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "outbox_get: NULL argument");
    txm_value p = TXM_TEXT(message_id);
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, TXM__SQL(db, SQLITE_GET, PG_GET), &p, 1, &rows, NULL, err);
    if (st == TXM_OK && txm_rows_count(rows) == 0)
        st = txm_errf(err, TXM_NOT_FOUND, "outbox: no message %s", message_id);
    if (st == TXM_OK)
        st = entry_from_row(rows, 0, out, err);
    txm_rows_free(rows);
    return st;
}

static txm_status ids_to_json(const char *const *ids, size_t count, char **out, txm_error *err)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < count; i++) {
        if (ids[i] == NULL || json_array_append_new(arr, json_string(ids[i])) != 0) {
            json_decref(arr);
            return txm_errf(err, TXM_INVALID, "outbox: id %zu is NULL or not UTF-8", i);
        }
    }
    *out = arr == NULL ? NULL : json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return *out == NULL ? txm_errf(err, TXM_NOMEM, "outbox: out of memory") : TXM_OK;
}

static txm_status mark(txm_db *db, const char *sqlite_sql, const char *pg_sql,
                       const char *const *message_ids, size_t count, size_t *marked, txm_error *err)
{
    if (marked != NULL)
        *marked = 0;
    if (db == NULL || (count > 0 && message_ids == NULL))
        return txm_errf(err, TXM_INVALID, "outbox_mark_dispatched: NULL argument");
    if (count == 0)
        return TXM_OK;
    char *json = NULL;
    txm_status st = ids_to_json(message_ids, count, &json, err);
    if (st != TXM_OK)
        return st;
    char now[TXM_TIME_LEN + 1];
    txm_time_format(txm_now_us(), now);
    txm_value p[2] = {TXM_TEXT(now), TXM_TEXT(json)};
    int64_t changes = 0;
    st = txm_db_exec(db, TXM__SQL(db, sqlite_sql, pg_sql), p, 2, NULL, &changes, err);
    free(json);
    if (st == TXM_OK && marked != NULL)
        *marked = (size_t)changes;
    return st;
}

txm_status txm_outbox_mark_dispatched(txm_db *db, const char *const *message_ids, size_t count,
                                      size_t *marked, txm_error *err)
{
    return mark(db, SQLITE_MARK, PG_MARK, message_ids, count, marked, err);
}

txm_status txm_outbox_mark_dispatched_new(txm_db *db, const char *const *message_ids, size_t count,
                                          size_t *marked, txm_error *err)
{
    return mark(db, SQLITE_MARK_NEW, PG_MARK_NEW, message_ids, count, marked, err);
}

txm_status txm_outbox_list(txm_db *db, const txm_outbox_filter *f, txm_outbox_entry ***out,
                           size_t *count, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (db == NULL || f == NULL || out == NULL || count == NULL || f->limit == 0 ||
        f->limit > TXM__LIST_LIMIT_MAX)
        return txm_errf(err, TXM_INVALID, "outbox_list: NULL argument or limit not 1..%d",
                        TXM__LIST_LIMIT_MAX);
    char before[TXM_TIME_LEN + 1] = "";
    if (f->created_before_us != 0)
        txm_time_format(f->created_before_us, before);
    txm_value p[6] = {
        TXM_INT(f->after_seq),
        /* 1: not dispatched, 2: dispatched, 3: both, which no row is. */
        TXM_INT((f->not_dispatched_only ? 1 : 0) | (f->dispatched_only ? 2 : 0)),
        f->created_before_us != 0 ? TXM_TEXT(before) : TXM_NULL_VALUE,
        f->topic != NULL ? TXM_TEXT(f->topic) : TXM_NULL_VALUE,
        TXM_INT(f->limit),
        f->aggregate_id != NULL ? TXM_TEXT(f->aggregate_id) : TXM_NULL_VALUE,
    };
    txm_rows *rows = NULL;
    txm_status st = txm_db_exec(db, TXM__SQL(db, SQLITE_LIST, PG_LIST), p, 6, &rows, NULL, err);
    size_t n = txm_rows_count(rows);
    txm_outbox_entry **list = NULL;
    if (st == TXM_OK && (list = txm__calloc(n, sizeof *list)) == NULL)
        st = txm_errf(err, TXM_NOMEM, "outbox: out of memory");
    for (size_t i = 0; st == TXM_OK && i < n; i++)
        st = entry_from_row(rows, i, &list[i], err);
    txm_rows_free(rows);
    if (st != TXM_OK) {
        txm_outbox_list_free(list, n);
        return st;
    }
    *out = list;
    *count = n;
    return TXM_OK;
}

void txm_outbox_list_free(txm_outbox_entry **list, size_t count)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        txm_outbox_entry_free(list[i]);
    free(list);
}

txm_status txm_outbox_oldest_age(txm_db *db, int64_t *age_us, bool *found, txm_error *err)
{
    if (db == NULL || age_us == NULL || found == NULL)
        return txm_errf(err, TXM_INVALID, "outbox_oldest_age: NULL argument");
    *age_us = 0;
    *found = false;
    txm_rows *rows = NULL;
    txm_status st =
        txm_db_exec(db, TXM__SQL(db, SQLITE_OLDEST, PG_OLDEST), NULL, 0, &rows, NULL, err);
    int64_t created = 0;
    if (st == TXM_OK && txm_rows_count(rows) == 1) {
        st = txm_time_parse(txm_rows_text(rows, 0, 0), &created, err);
        if (st == TXM_OK) {
            *found = true;
            *age_us = txm_now_us() - created;
        }
    }
    txm_rows_free(rows);
    return st;
}

txm_status txm_outbox_count_not_dispatched(txm_db *db, int64_t *count, txm_error *err)
{
    if (db == NULL || count == NULL)
        return txm_errf(err, TXM_INVALID, "outbox_count: NULL argument");
    txm_rows *rows = NULL;
    txm_status st =
        txm_db_exec(db, TXM__SQL(db, SQLITE_COUNT, PG_COUNT), NULL, 0, &rows, NULL, err);
    *count = st == TXM_OK ? txm_rows_int(rows, 0, 0) : 0;
    txm_rows_free(rows);
    return st;
}

const txm_msg *txm_outbox_entry_msg(const txm_outbox_entry *e)
{
    return e == NULL ? NULL : e->msg;
}

int64_t txm_outbox_entry_seq(const txm_outbox_entry *e)
{
    return e == NULL ? 0 : e->seq;
}

bool txm_outbox_entry_is_dispatched(const txm_outbox_entry *e)
{
    return e != NULL && e->is_dispatched;
}

int64_t txm_outbox_entry_dispatch_count(const txm_outbox_entry *e)
{
    return e == NULL ? 0 : e->dispatch_count;
}

int64_t txm_outbox_entry_last_dispatched_at_us(const txm_outbox_entry *e)
{
    return e == NULL ? 0 : e->last_dispatched_at_us;
}

void txm_outbox_entry_free(txm_outbox_entry *e)
{
    if (e == NULL)
        return;
    txm_msg_free(e->msg);
    free(e);
}
