/* PostgreSQL tailer (tail_pg.c) against a real server: commit order and
 * fields, rollbacks, large transactions split across batches, resuming from
 * the confirmed position, a standby waiting for the slot, and a PostgreSQL
 * restart. The first cases run again with the database in messages mode
 * (pg_logical_emit_message records instead of rows), and two more mix the
 * modes and bad records. Skipped without TXMSG_TEST_PG_URL. The restart case
 * restarts the shared test cluster, so this program must run alone
 * (RUN_SERIAL). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "tail.h"
#include "testdb.h"

#define WAIT_MS 5000
#define ID_LEN (TXM_UUID_LEN + 1)

typedef struct fixture {
    char *url;
    txm_db *db;
    char slot[64];
    relay_tail_config cfg;
    bool messages;         /* the database is in messages mode */
    int log_errors;        /* log calls at level 3 */
    char last_error[1024]; /* text of the last of them */
    char last_warn[1024];  /* text of the last warning */
} fixture;

/* What a test read: ids in arrival order, and each batch's size and position. */
typedef struct reading {
    char (*ids)[ID_LEN];
    size_t count;
    size_t cap;
    size_t batch_sizes[64];
    uint64_t positions[64];
    size_t batches;
} reading;

static void record_log(void *ctx, int level, const char *text)
{
    fixture *fx = ctx;
    if (level >= 3) {
        fx->log_errors++;
        snprintf(fx->last_error, sizeof fx->last_error, "%s", text);
    }
    if (level == 2)
        snprintf(fx->last_warn, sizeof fx->last_warn, "%s", text);
    if (getenv("TXM_TEST_VERBOSE") != NULL)
        fprintf(stderr, "log %d: %s\n", level, text);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    static int counter;
    fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    *state = fx;
    txm_db_options o;
    txm_db_options_init(&o);
    if (txm_testdb_open(TXM_TEST_PG, &o, &fx->url, &fx->db) != 0)
        return -1;
    if (fx->db == NULL)
        return 0;
    /* Slots belong to the cluster, not the database: one name per test. */
    snprintf(fx->slot, sizeof fx->slot, "txmtest_slot_%d_%d", (int)getpid(), counter++);
    fx->cfg.database_url = fx->url;
    fx->cfg.slot_name = fx->slot;
    fx->cfg.publication_name = "txmtest_pub";
    fx->cfg.log = record_log;
    fx->cfg.log_ctx = fx;
    return 0;
}

/* The same fixture with the database in messages mode. */
static int setup_messages(void **state)
{
    if (setup(state) != 0)
        return -1;
    fixture *fx = *state;
    if (fx->db == NULL)
        return 0;
    txm_error err = {0};
    if (txm_outbox_set_mode(fx->db, TXM_OUTBOX_MESSAGES, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    fx->messages = true;
    return 0;
}

/* Drops the slot, waiting for a walsender still using it to exit. */
static void drop_slot(const char *slot)
{
    PGconn *c = PQconnectdb(getenv("TXMSG_TEST_PG_URL"));
    const char *const params[] = {slot};
    for (int i = 0; i < 100 && PQstatus(c) == CONNECTION_OK; i++) {
        PGresult *r = PQexecParams(c,
                                   "SELECT pg_drop_replication_slot(slot_name)"
                                   " FROM pg_replication_slots WHERE slot_name = $1",
                                   1, NULL, params, NULL, NULL, 0);
        bool done = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (done)
            break;
        sleep_ms(100);
    }
    PQfinish(c);
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx->url != NULL)
        drop_slot(fx->slot);
    txm_testdb_close(TXM_TEST_PG, fx->url, fx->db);
    free(fx);
    return 0;
}

static fixture *get(void **state)
{
    fixture *fx = *state;
    txm_testdb_require(TXM_TEST_PG, fx->db);
    return fx;
}

static relay_tailer *open_tailer(fixture *fx)
{
    relay_tailer *t = NULL;
    txm_error err = {0};
    txm_status st = relay_tail_open_pg(&fx->cfg, &t, &err);
    if (st != TXM_OK)
        fail_msg("open: %s: %s", txm_status_name(st), err.text);
    return t;
}

/* Commits one unit of work with n messages (or rolls it back) and appends
 * copies of them to kept (may be NULL). The pool may hold sessions broken by
 * a restart, so a failed begin or commit is retried a few times. */
static void commit_messages(fixture *fx, size_t n, const char *topic, bool rollback, txm_msg **kept)
{
    for (int attempt = 0;; attempt++) {
        txm_uow *uow = NULL;
        txm_error err = {0};
        txm_status st = txm_uow_begin(fx->db, &uow, &err);
        for (size_t i = 0; st == TXM_OK && i < n; i++) {
            txm_msg *m = NULL;
            char agg[32];
            char payload[64];
            snprintf(agg, sizeof agg, "order-%zu", i);
            snprintf(payload, sizeof payload, "{\"n\":%zu,\"note\":\"caf\xc3\xa9\"}", i);
            st = txm_msg_new(topic, agg, NULL, payload, &m, &err);
            if (st == TXM_OK)
                st = txm_msg_set_source(m, "orders", &err);
            if (st == TXM_OK && kept != NULL)
                kept[i] = txm_msg_copy(m);
            if (st == TXM_OK)
                st = txm_outbox_publish(uow, &m, &err);
            txm_msg_free(m);
        }
        if (uow != NULL && rollback) {
            txm_uow_rollback(&uow);
            return;
        }
        if (st == TXM_OK)
            st = txm_uow_commit(&uow, &err);
        else
            txm_uow_rollback(&uow);
        if (st == TXM_OK)
            return;
        if (attempt == 10)
            fail_msg("commit: %s: %s", txm_status_name(st), err.text);
        for (size_t i = 0; kept != NULL && i < n; i++) {
            txm_msg_free(kept[i]);
            kept[i] = NULL;
        }
        sleep_ms(200);
    }
}

static void reading_add(reading *r, const relay_batch *b)
{
    if (r->count + b->count > r->cap) {
        r->cap = (r->count + b->count) * 2;
        r->ids = realloc(r->ids, r->cap * sizeof *r->ids);
        assert_non_null(r->ids);
    }
    for (size_t i = 0; i < b->count; i++) {
        assert_non_null(b->entries[i].message_id);
        snprintf(r->ids[r->count++], ID_LEN, "%s", b->entries[i].message_id);
    }
    if (r->batches < 64) {
        r->batch_sizes[r->batches] = b->count;
        r->positions[r->batches++] = b->confirm_position;
    }
}

/* Calls next() until want entries arrived (all batches are recorded), riding
 * out TXM_BUSY and, when tolerate_errors, failures while PostgreSQL comes back.
 * Confirms each batch's position when confirm is set. */
static void read_entries(relay_tailer *t, size_t want, size_t max, bool confirm,
                         bool tolerate_errors, reading *r)
{
    relay_batch b;
    relay_batch_init(&b);
    long long give_up = mono_ms() + 60000;
    size_t start = r->count;
    while (r->count - start < want) {
        if (mono_ms() > give_up)
            fail_msg("read %zu of %zu entries", r->count - start, want);
        txm_error err = {0};
        txm_status st = t->ops->next(t, max, WAIT_MS, &b, &err);
        if (st == TXM_BUSY || (tolerate_errors && st != TXM_OK)) {
            relay_batch_clear(&b);
            sleep_ms(100);
            continue;
        }
        if (st != TXM_OK)
            fail_msg("next: %s: %s", txm_status_name(st), err.text);
        for (size_t i = 0; i < b.count; i++)
            if (b.entries[i].msg == NULL)
                fail_msg("entry %s: %s", b.entries[i].message_id, b.entries[i].bad_reason);
        if (b.count > 0 || b.confirm_position != 0)
            reading_add(r, &b);
        if (confirm && b.confirm_position != 0)
            assert_int_equal(t->ops->confirm(t, b.confirm_position, &err), TXM_OK);
        relay_batch_clear(&b);
    }
    free(b.entries);
}

/* Asserts that next() yields no entry within wait_ms. */
static void expect_nothing(relay_tailer *t, int wait_ms)
{
    relay_batch b;
    relay_batch_init(&b);
    txm_error err = {0};
    long long end = mono_ms() + wait_ms;
    while (mono_ms() < end) {
        assert_int_equal(t->ops->next(t, 100, 200, &b, &err), TXM_OK);
        assert_int_equal(b.count, 0);
        relay_batch_clear(&b);
    }
    free(b.entries);
}

static void free_msgs(txm_msg **m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        txm_msg_free(m[i]);
}

static void tail_pg_reads_messages_in_commit_order_with_their_fields(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    txm_msg *sent[4] = {0};
    commit_messages(fx, 2, "order--created", false, sent);
    commit_messages(fx, 1, "order--cancelled", false, sent + 2);
    commit_messages(fx, 1, "order--approved", false, sent + 3);

    relay_batch b;
    relay_batch_init(&b);
    txm_error err = {0};
    size_t got = 0;
    uint64_t position = 0;
    while (got < 4) {
        assert_int_equal(t->ops->next(t, 100, WAIT_MS, &b, &err), TXM_OK);
        assert_true(b.count > 0);
        for (size_t i = 0; i < b.count; i++, got++) {
            const txm_msg *m = b.entries[i].msg;
            assert_non_null(m);
            assert_null(b.entries[i].bad_reason);
            assert_int_equal(b.entries[i].no_row, fx->messages);
            assert_string_equal(b.entries[i].message_id, txm_msg_id(sent[got]));
            assert_string_equal(txm_msg_id(m), txm_msg_id(sent[got]));
            assert_string_equal(txm_msg_source(m), "orders");
            assert_string_equal(txm_msg_topic(m), txm_msg_topic(sent[got]));
            assert_string_equal(txm_msg_aggregate_id(m), txm_msg_aggregate_id(sent[got]));
            assert_string_equal(txm_msg_correlation_id(m), txm_msg_correlation_id(sent[got]));
            assert_string_equal(txm_msg_payload(m), txm_msg_payload(sent[got]));
            assert_int_equal(txm_msg_created_at_us(m), txm_msg_created_at_us(sent[got]));
        }
        assert_true(b.confirm_position > position);
        position = b.confirm_position;
        relay_batch_clear(&b);
    }
    free(b.entries);
    assert_int_equal(t->ops->confirm(t, position, &err), TXM_OK);
    char text[32];
    char expect[32];
    t->ops->position_text(t, text, sizeof text);
    snprintf(expect, sizeof expect, "%X/%X", (unsigned)(position >> 32), (unsigned)position);
    assert_string_equal(text, expect);
    expect_nothing(t, 300);
    t->ops->close(t);
    free_msgs(sent, 4);
    assert_int_equal(fx->log_errors, 0);
}

static void tail_pg_rolled_back_transaction_yields_nothing(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    commit_messages(fx, 3, "order--created", true, NULL);
    expect_nothing(t, 500);
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    reading r = {0};
    read_entries(t, 1, 100, false, false, &r);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.ids[0], txm_msg_id(sent[0]));
    t->ops->close(t);
    free(r.ids);
    free_msgs(sent, 1);
}

static void tail_pg_large_transaction_is_split_with_position_on_last(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    enum { N = 1200 };
    txm_msg **sent = calloc(N, sizeof *sent);
    assert_non_null(sent);
    commit_messages(fx, N, "order--created", false, sent);
    reading r = {0};
    read_entries(t, N, 500, false, false, &r);
    assert_int_equal(r.batches, 3);
    assert_int_equal(r.batch_sizes[0], 500);
    assert_int_equal(r.batch_sizes[1], 500);
    assert_int_equal(r.batch_sizes[2], 200);
    assert_int_equal(r.positions[0], 0);
    assert_int_equal(r.positions[1], 0);
    assert_true(r.positions[2] != 0);
    for (size_t i = 0; i < N; i++)
        assert_string_equal(r.ids[i], txm_msg_id(sent[i]));
    t->ops->close(t);
    free(r.ids);
    free_msgs(sent, N);
    free(sent);
}

static void tail_pg_reopen_resumes_after_confirmed_position(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    txm_msg *sent[3] = {0};
    for (size_t i = 0; i < 3; i++)
        commit_messages(fx, 1, "order--created", false, sent + i);
    /* One row per batch: each completes its transaction. */
    reading r = {0};
    read_entries(t, 1, 1, true, false, &r);
    read_entries(t, 1, 1, false, false, &r);
    assert_string_equal(r.ids[0], txm_msg_id(sent[0]));
    assert_string_equal(r.ids[1], txm_msg_id(sent[1]));
    assert_true(r.positions[0] != 0 && r.positions[1] > r.positions[0]);
    t->ops->close(t);

    /* The first was confirmed; the second was read but not confirmed. */
    for (int round = 0; round < 2; round++) {
        t = open_tailer(fx);
        reading again = {0};
        read_entries(t, 2, 100, false, false, &again);
        assert_int_equal(again.count, 2);
        assert_string_equal(again.ids[0], txm_msg_id(sent[1]));
        assert_string_equal(again.ids[1], txm_msg_id(sent[2]));
        expect_nothing(t, 300);
        t->ops->close(t); /* nothing confirmed: the next round gets the same */
        free(again.ids);
    }
    free(r.ids);
    free_msgs(sent, 3);
}

static void tail_pg_second_tailer_is_busy_until_the_first_closes(void **state)
{
    fixture *fx = get(state);
    relay_tailer *first = open_tailer(fx);
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    reading r = {0};
    read_entries(first, 1, 100, false, false, &r);

    relay_tailer *second = open_tailer(fx);
    relay_batch b;
    relay_batch_init(&b);
    txm_error err = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(second->ops->next(second, 100, 100, &b, &err), TXM_BUSY);
        assert_int_equal(err.status, TXM_BUSY);
        assert_int_equal(b.count, 0);
    }
    first->ops->close(first);
    /* Takeover: the first never confirmed, so the standby starts over. */
    long long start = mono_ms();
    reading taken = {0};
    read_entries(second, 1, 100, false, false, &taken);
    assert_true(mono_ms() - start < 10000);
    assert_string_equal(taken.ids[0], txm_msg_id(sent[0]));
    second->ops->close(second);
    free(b.entries);
    free(r.ids);
    free(taken.ids);
    free_msgs(sent, 1);
}

static uint64_t position_of(const relay_tailer *t)
{
    char text[32];
    unsigned hi = 0;
    unsigned lo = 0;
    t->ops->position_text(t, text, sizeof text);
    assert_int_equal(sscanf(text, "%X/%X", &hi, &lo), 2);
    return (uint64_t)hi << 32 | lo;
}

/* Writes outside the outbox carry nothing to publish: once every outbox row
 * is confirmed, the position follows the server's keepalives, so the slot
 * does not hold WAL back while the outbox is idle. */
static void tail_pg_idle_position_follows_other_writes(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    reading r = {0};
    read_entries(t, 1, 100, true, false, &r);
    uint64_t confirmed = position_of(t);
    assert_int_equal(confirmed, r.positions[r.batches - 1]);
    txm_error err = {0};
    assert_int_equal(txm_db_exec(fx->db, "CREATE TABLE other (x int)", NULL, 0, NULL, NULL, &err),
                     TXM_OK);
    assert_int_equal(txm_db_exec(fx->db, "INSERT INTO other SELECT generate_series(1, 1000)", NULL,
                                 0, NULL, NULL, &err),
                     TXM_OK);
    long long end = mono_ms() + 5000;
    while (position_of(t) == confirmed && mono_ms() < end)
        expect_nothing(t, 200);
    assert_true(position_of(t) > confirmed);
    t->ops->close(t);
    free(r.ids);
    free_msgs(sent, 1);
}

/* A row that cannot become a message comes as an entry with a reason, and
 * the rows after it still come. */
static void tail_pg_bad_row_becomes_an_entry_with_a_reason(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    txm_error err = {0};
    assert_int_equal(txm_db_exec(fx->db,
                                 "INSERT INTO txmsg_outbox (message_id, aggregate_id,"
                                 " correlation_id, topic, payload, created_at) VALUES"
                                 " ('not-a-uuid', 'order-1', 'x', 'bad topic!', '{}', now())",
                                 NULL, 0, NULL, NULL, &err),
                     TXM_OK);
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    relay_batch b;
    relay_batch_init(&b);
    size_t got = 0;
    while (got < 2) {
        assert_int_equal(t->ops->next(t, 100, WAIT_MS, &b, &err), TXM_OK);
        for (size_t i = 0; i < b.count; i++, got++) {
            if (got == 0) {
                assert_null(b.entries[i].msg);
                assert_string_equal(b.entries[i].message_id, "not-a-uuid");
                assert_non_null(b.entries[i].bad_reason);
            } else {
                assert_non_null(b.entries[i].msg);
                assert_string_equal(b.entries[i].message_id, txm_msg_id(sent[0]));
            }
        }
        relay_batch_clear(&b);
    }
    free(b.entries);
    t->ops->close(t);
    free_msgs(sent, 1);
}

static void tail_pg_open_fails_when_the_server_is_unreachable(void **state)
{
    fixture *fx = get(state);
    relay_tail_config cfg = fx->cfg;
    cfg.database_url = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2";
    relay_tailer *t = NULL;
    txm_error err = {0};
    assert_int_equal(relay_tail_open_pg(&cfg, &t, &err), TXM_UNAVAILABLE);
    assert_null(t);
    assert_true(err.text[0] != '\0');
}

static void tail_pg_rejects_bad_names(void **state)
{
    fixture *fx = get(state);
    static const char *const bad[] = {
        "",
        "Upper",
        "semi;colon",
        "quote'",
        "a-b",
        "x123456789012345678901234567890123456789012345678901234567890"
        "1234"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        relay_tail_config cfg = fx->cfg;
        relay_tailer *t = (relay_tailer *)&cfg; /* must be set to NULL */
        txm_error err = {0};
        cfg.slot_name = bad[i];
        assert_int_equal(relay_tail_open_pg(&cfg, &t, &err), TXM_INVALID);
        assert_null(t);
        cfg.slot_name = fx->slot;
        cfg.publication_name = bad[i];
        assert_int_equal(relay_tail_open_pg(&cfg, &t, &err), TXM_INVALID);
    }
    relay_tailer *t = NULL;
    assert_int_equal(relay_tail_open_pg(NULL, &t, NULL), TXM_INVALID);
    /* No slot name is no default slot either. */
    relay_tail_config cfg = fx->cfg;
    cfg.slot_name = NULL;
    assert_int_equal(relay_tail_open_pg(&cfg, &t, NULL), TXM_INVALID);
    assert_null(t);
}

/* Rows committed before the tailer's slot exists would never be decoded
 * from it: opening creates the slot and the tailer first serves every row
 * not dispatched from the table, the last page carrying the slot's start
 * as position, then streams. A resync whose last batch was not confirmed
 * is done again by the next tailer (its mark stays); once confirmed, the
 * mark is gone and a new tailer streams at once. */
static void tail_pg_resyncs_a_new_slot_from_undispatched_rows(void **state)
{
    fixture *fx = get(state);
    txm_msg *old[3] = {0};
    txm_msg *sent[2] = {0};
    commit_messages(fx, 3, "order--created", false, old);
    const char *ids[] = {txm_msg_id(old[0])};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, ids, 1, NULL, NULL), TXM_OK);
    for (int round = 0; round < 2; round++) {
        relay_tailer *t = open_tailer(fx);
        assert_true(txm_testdb_pg_slot_exists(fx->db, fx->slot));
        reading r = {0};
        read_entries(t, 2, 1, round == 1, false, &r); /* pages of one row */
        assert_string_equal(r.ids[0], txm_msg_id(old[1]));
        assert_string_equal(r.ids[1], txm_msg_id(old[2]));
        /* Only the last page (here an empty one) carries the position. */
        relay_batch b;
        relay_batch_init(&b);
        assert_int_equal(t->ops->next(t, 1, WAIT_MS, &b, NULL), TXM_OK);
        assert_int_equal(b.count, 0);
        assert_int_equal(r.positions[0], 0);
        assert_true(b.confirm_position != 0);
        if (round == 1)
            assert_int_equal(t->ops->confirm(t, b.confirm_position, NULL), TXM_OK);
        relay_batch_clear(&b);
        free(b.entries);
        /* Then the stream. */
        commit_messages(fx, 1, "order--created", false, sent + round);
        reading after = {0};
        read_entries(t, (size_t)round + 1, 100, false, false, &after);
        assert_string_equal(after.ids[after.count - 1], txm_msg_id(sent[round]));
        /* Published and marked, as the relay does, but not confirmed. */
        const char *sent_id[] = {txm_msg_id(sent[round])};
        assert_int_equal(txm_outbox_mark_dispatched(fx->db, sent_id, 1, NULL, NULL), TXM_OK);
        t->ops->close(t);
        free(r.ids);
        free(after.ids);
    }
    assert_int_equal(fx->log_errors, 0);
    assert_true(strstr(fx->last_warn, "republishing the 2 outbox rows") != NULL);
    /* Confirmed: the next tailer streams at once from the slot's start (the
     * commits after it were never confirmed). */
    relay_tailer *t = open_tailer(fx);
    reading r = {0};
    read_entries(t, 2, 100, false, false, &r);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.ids[0], txm_msg_id(sent[0]));
    assert_string_equal(r.ids[1], txm_msg_id(sent[1]));
    t->ops->close(t);
    free(r.ids);
    free_msgs(old, 3);
    free_msgs(sent, 2);
}

/* A tailer reports to its slot only positions it handed out itself: one
 * from an earlier session (after a failover, another server's LSN) would
 * move the slot past WAL this session has not had confirmed. */
static void tail_pg_ignores_a_position_it_did_not_hand_out(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    reading r = {0};
    read_entries(t, 1, 100, false, false, &r);
    /* A position past it that this session never handed out. */
    assert_int_equal(
        txm_db_exec(fx->db, "CREATE TABLE elsewhere (x int)", NULL, 0, NULL, NULL, NULL), TXM_OK);
    txm_rows *rows = NULL;
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT pg_current_wal_lsn()::text", NULL, 0, &rows, NULL, NULL),
        TXM_OK);
    unsigned hi = 0, lo = 0;
    assert_int_equal(sscanf(txm_rows_text(rows, 0, 0), "%X/%X", &hi, &lo), 2);
    txm_rows_free(rows);
    uint64_t foreign = (uint64_t)hi << 32 | lo;
    assert_true(foreign > r.positions[r.batches - 1]);
    assert_int_equal(t->ops->confirm(t, foreign, NULL), TXM_OK);
    t->ops->close(t);
    t = open_tailer(fx);
    reading again = {0};
    read_entries(t, 1, 100, false, false, &again);
    assert_string_equal(again.ids[0], txm_msg_id(sent[0]));
    t->ops->close(t);
    free(r.ids);
    free(again.ids);
    free_msgs(sent, 1);
}

/* Messages mode keeps no rows: a slot dropped with records in its WAL
 * cannot be resynced from a table, and the tailer says so. */
static void tail_pg_messages_mode_says_a_dropped_slot_took_its_records(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    t->ops->close(t);
    commit_messages(fx, 2, "order--created", false, NULL);
    drop_slot(fx->slot);
    fx->last_warn[0] = '\0';
    t = open_tailer(fx);
    assert_non_null(strstr(fx->last_warn, "messages mode"));
    assert_non_null(strstr(fx->last_warn, "are lost for good"));
    assert_non_null(strstr(fx->last_warn, fx->slot));
    /* What comes after is streamed. */
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    reading r = {0};
    read_entries(t, 1, 100, false, false, &r);
    assert_string_equal(r.ids[0], txm_msg_id(sent[0]));
    t->ops->close(t);
    free(r.ids);
    free_msgs(sent, 1);
}

/* Starts pg_ctl as the cluster's owner (runuser when root, as with-servers
 * does), from "/" since the postgres user may not read the current folder.
 * Returns the child's pid. */
static pid_t pg_ctl_start(const char *action)
{
    const char *data = getenv("TXMSG_TEST_PG_DATA");
    char bin[512];
    char log[512];
    snprintf(bin, sizeof bin, "%s/pg_ctl", getenv("TXMSG_TEST_PG_BIN"));
    snprintf(log, sizeof log, "%s/../log", data);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        if (chdir("/") != 0)
            _exit(126);
        if (geteuid() == 0)
            execlp("runuser", "runuser", "-u", "postgres", "--", bin, "-D", data, "-l", log, "-w",
                   "-t", "60", "-m", "fast", action, (char *)NULL);
        else
            execl(bin, bin, "-D", data, "-l", log, "-w", "-t", "60", "-m", "fast", action,
                  (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

static void tail_pg_recovers_after_postgresql_restart(void **state)
{
    fixture *fx = get(state);
    if (getenv("TXMSG_TEST_PG_DATA") == NULL || getenv("TXMSG_TEST_PG_BIN") == NULL)
        skip();
    relay_tailer *t = open_tailer(fx);
    txm_msg *a[3] = {0};
    txm_msg *b[2] = {0};
    txm_msg *c[2] = {0};
    commit_messages(fx, 3, "order--created", false, a);
    reading r = {0};
    read_entries(t, 3, 100, true, false, &r); /* confirmed */
    commit_messages(fx, 2, "order--created", false, b);
    read_entries(t, 2, 100, false, false, &r); /* read, not confirmed */

    /* The tailer keeps reading while PostgreSQL restarts, as the relay
     * does: a shutting-down walsender waits for its client's answer. */
    pid_t pid = pg_ctl_start("restart");
    relay_batch batch;
    relay_batch_init(&batch);
    /* A reconnect before the server goes down may replay what was read but
     * not confirmed (b): at-least-once allows it; the order is checked below. */
    reading after = {0};
    bool failed = false;
    int status = 0;
    long long start = mono_ms();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        txm_error err = {0};
        txm_status st = t->ops->next(t, 100, 100, &batch, &err);
        failed = failed || st == TXM_DB || st == TXM_IO;
        if (st == TXM_OK && batch.count > 0)
            reading_add(&after, &batch);
        relay_batch_clear(&batch);
        if (st != TXM_OK)
            sleep_ms(100);
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(failed);
    assert_true(mono_ms() - start < 20000);
    free(batch.entries);

    commit_messages(fx, 2, "order--created", false, c);
    /* At least b and c come again, in commit order (a may too: PostgreSQL 15
     * keeps a slot's confirmed position on disk only at some checkpoints). */
    while (after.count == 0 || strcmp(after.ids[after.count - 1], txm_msg_id(c[1])) != 0)
        read_entries(t, 1, 100, false, true, &after);
    size_t at = 0;
    const txm_msg *const expect[] = {b[0], b[1], c[0], c[1]};
    for (size_t i = 0; i < after.count && at < 4; i++)
        if (strcmp(after.ids[i], txm_msg_id(expect[at])) == 0)
            at++;
    assert_int_equal(at, 4);
    t->ops->close(t);
    free(r.ids);
    free(after.ids);
    free_msgs(a, 3);
    free_msgs(b, 2);
    free_msgs(c, 2);
}

/* Emits a logical decoding message in its own transaction (or outside
 * any, transactional false) with content given as bytea hex text. */
static void emit(fixture *fx, bool transactional, const char *prefix, const char *hex)
{
    txm_value p[3] = {TXM_INT(transactional ? 1 : 0), TXM_TEXT(prefix), TXM_TEXT(hex)};
    txm_error err = {0};
    txm_status st =
        txm_db_exec(fx->db, "SELECT pg_logical_emit_message($1::int = 1, $2, $3::bytea)", p, 3,
                    NULL, NULL, &err);
    if (st != TXM_OK)
        fail_msg("emit: %s", err.text);
}

/* A database switched between modes while the relay streams: rows and
 * records come in one stream, in commit order; other applications' messages
 * and non-transactional ones are ignored. */
static void tail_pg_mixes_rows_and_records_in_commit_order(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    txm_msg *sent[4] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    assert_int_equal(txm_outbox_set_mode(fx->db, TXM_OUTBOX_MESSAGES, NULL), TXM_OK);
    emit(fx, true, "another_app", "\\x0102");
    emit(fx, false, TXM_OUTBOX_MESSAGE_PREFIX, "\\x01");
    commit_messages(fx, 2, "order--created", false, sent + 1);
    assert_int_equal(txm_outbox_set_mode(fx->db, TXM_OUTBOX_TABLE, NULL), TXM_OK);
    commit_messages(fx, 1, "order--created", false, sent + 3);
    relay_batch b;
    relay_batch_init(&b);
    txm_error err = {0};
    size_t got = 0;
    while (got < 4) {
        assert_int_equal(t->ops->next(t, 100, WAIT_MS, &b, &err), TXM_OK);
        for (size_t i = 0; i < b.count; i++, got++) {
            assert_true(got < 4);
            assert_non_null(b.entries[i].msg);
            assert_string_equal(b.entries[i].message_id, txm_msg_id(sent[got]));
            assert_int_equal(b.entries[i].no_row, got == 1 || got == 2);
        }
        relay_batch_clear(&b);
    }
    free(b.entries);
    expect_nothing(t, 300);
    t->ops->close(t);
    free_msgs(sent, 4);
    assert_int_equal(fx->log_errors, 0);
}

/* A record that does not decode comes as an entry with a reason, and the
 * records after it still come. */
static void tail_pg_bad_record_becomes_an_entry_with_a_reason(void **state)
{
    fixture *fx = get(state);
    relay_tailer *t = open_tailer(fx);
    emit(fx, true, TXM_OUTBOX_MESSAGE_PREFIX, "\\x09deadbeefdeadbeefdeadbeef");
    txm_msg *sent[1] = {0};
    commit_messages(fx, 1, "order--created", false, sent);
    relay_batch b;
    relay_batch_init(&b);
    txm_error err = {0};
    size_t got = 0;
    while (got < 2) {
        assert_int_equal(t->ops->next(t, 100, WAIT_MS, &b, &err), TXM_OK);
        for (size_t i = 0; i < b.count; i++, got++) {
            assert_true(b.entries[i].no_row);
            if (got == 0) {
                assert_null(b.entries[i].msg);
                assert_null(b.entries[i].message_id);
                assert_non_null(strstr(b.entries[i].bad_reason, "unknown version 9"));
            } else {
                assert_string_equal(b.entries[i].message_id, txm_msg_id(sent[0]));
            }
        }
        relay_batch_clear(&b);
    }
    free(b.entries);
    t->ops->close(t);
    free_msgs(sent, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tail_pg_reads_messages_in_commit_order_with_their_fields,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_rolled_back_transaction_yields_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_large_transaction_is_split_with_position_on_last,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_reopen_resumes_after_confirmed_position, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_second_tailer_is_busy_until_the_first_closes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_idle_position_follows_other_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_bad_row_becomes_an_entry_with_a_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_open_fails_when_the_server_is_unreachable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_rejects_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_resyncs_a_new_slot_from_undispatched_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_recovers_after_postgresql_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_ignores_a_position_it_did_not_hand_out, setup,
                                        teardown),
        /* Messages mode. */
        cmocka_unit_test_setup_teardown(tail_pg_reads_messages_in_commit_order_with_their_fields,
                                        setup_messages, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_rolled_back_transaction_yields_nothing,
                                        setup_messages, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_large_transaction_is_split_with_position_on_last,
                                        setup_messages, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_reopen_resumes_after_confirmed_position,
                                        setup_messages, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_second_tailer_is_busy_until_the_first_closes,
                                        setup_messages, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_mixes_rows_and_records_in_commit_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tail_pg_bad_record_becomes_an_entry_with_a_reason,
                                        setup_messages, teardown),
        cmocka_unit_test_setup_teardown(tail_pg_messages_mode_says_a_dropped_slot_took_its_records,
                                        setup_messages, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
