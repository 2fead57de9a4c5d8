/* PostgreSQL high availability on a private cluster (tests/support/testpg):
 * the relay's slot dropped while the relay is down, the slot invalidated by
 * max_slot_wal_keep_size, a relay killed in the middle of the resync that
 * follows, and a primary crash with its streaming standby promoted, reached
 * through a multi-host URL. In each case every outbox message reaches the
 * broker (repeats allowed: consumers' inboxes absorb them). The cases share
 * one cluster and run in order; the last one kills its primary. Skipped
 * without TXMSG_TEST_PG_BIN. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "testbroker.h"
#include "testhttp.h"
#include "testpg.h"
#include "testproc.h"
#include "txmsg/txmsg.h"

#define ID_LEN (TXM_UUID_LEN + 1)
#define DRAIN_MS 60000

typedef struct suite {
    txm_testpg primary;
    txm_testpg standby;
    char *dir; /* logs and the embedded brokers */
    int cases;
    bool ready;
    struct run *current; /* the case's run, freed by case_teardown if it failed */
} suite;

/* One case: a database of the cluster, a broker, a relay, and the ids of
 * every message committed. */
typedef struct run {
    suite *s;
    char db_url[512];
    char broker_url[600];
    char log_path[600];
    char slot[TXM_SLOT_NAME_MAX + 1];
    txm_db *db;
    txm_transport *t;
    char topic[96], queue[96];
    char (*ids)[ID_LEN]; /* committed, in order */
    size_t n_ids, cap;
    char (*seen)[ID_LEN]; /* distinct ids received, sorted */
    size_t n_seen, seen_cap;
    pid_t relay;
    int metrics_port;
    long long started_ms; /* for the case's duration */
} run;

static int suite_setup(void **state)
{
    suite *s = calloc(1, sizeof *s);
    *state = s;
    if (s == NULL || !txm_testpg_available())
        return s == NULL ? -1 : 0;
    s->dir = txm_test_mkdtemp();
    /* 1 MB segments, so that (b) fills max_slot_wal_keep_size quickly; the
     * limit itself is lowered by that case only. No timed checkpoints. */
    const char *const conf[] = {
        "max_slot_wal_keep_size = 64MB", "wal_keep_size = 0",       "min_wal_size = 2MB",
        "max_wal_size = 32MB",           "checkpoint_timeout = 1h", NULL};
    s->ready = s->dir != NULL && txm_testpg_init(&s->primary, 1, conf);
    return s->ready ? 0 : -1;
}

static int suite_teardown(void **state)
{
    suite *s = *state;
    txm_testpg_cleanup(&s->standby);
    txm_testpg_cleanup(&s->primary);
    if (s->dir != NULL && getenv("TXM_TEST_KEEP") == NULL)
        txm_test_rmdir(s->dir);
    free(s->dir);
    free(s);
    return 0;
}

/* A new database on the primary (its schema and slot made by opening it),
 * a broker with the case's queue, and no relay yet. With standby, the
 * relay and the writer use a multi-host URL naming both servers, which
 * libpq tries in order for one that accepts writes. */
static run *run_new(suite *s, const txm_testpg *standby)
{
    if (!s->ready)
        skip();
    run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->s = s;
    char name[32];
    snprintf(name, sizeof name, "ha_%d", s->cases++);
    assert_true(txm_testpg_create_db(&s->primary, name, r->db_url, sizeof r->db_url));
    if (standby != NULL)
        snprintf(r->db_url, sizeof r->db_url,
                 "postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/%s"
                 "?target_session_attrs=read-write",
                 s->primary.port, standby->port, name);
    snprintf(r->broker_url, sizeof r->broker_url, "embedded:%s/%s.broker", s->dir, name);
    snprintf(r->log_path, sizeof r->log_path, "%s/%s.relay.log", s->dir, name);
    txm_error err = {0};
    if (txm_db_open(r->db_url, NULL, &r->db, &err) != TXM_OK)
        fail_msg("open %s: %s", r->db_url, err.text);
    assert_int_equal(txm_db_relay_slot(r->db, r->slot, NULL), TXM_OK);
    assert_int_equal(txm_transport_open(r->broker_url, NULL, &r->t, NULL), TXM_OK);
    txm_test_unique("ha", r->topic, sizeof r->topic);
    txm_test_unique("haq", r->queue, sizeof r->queue);
    assert_int_equal(txm_transport_declare_subscription(r->t, r->topic, r->queue, NULL, NULL),
                     TXM_OK);
    r->metrics_port = txm_test_free_port();
    r->started_ms = txm_test_now_ms();
    s->current = r;
    return r;
}

static void relay_stop(run *r, int sig)
{
    if (r->relay > 0)
        txm_proc_kill(r->relay, sig);
    r->relay = 0;
}

static void run_free(run *r)
{
    r->s->current = NULL;
    fprintf(stderr, "  took %lld ms\n", txm_test_now_ms() - r->started_ms);
    relay_stop(r, SIGKILL);
    txm_transport_close(r->t);
    txm_db_close(r->db);
    free(r->ids);
    free(r->seen);
    free(r);
}

/* A failed assertion leaves the case's run (and its relay) behind. */
static int case_teardown(void **state)
{
    suite *s = *state;
    if (s->current != NULL)
        run_free(s->current);
    return 0;
}

static void relay_start(run *r, const char *batch_size)
{
    char port[16];
    snprintf(port, sizeof port, "%d", r->metrics_port);
    char *argv[] = {
        TXM_RELAY_BIN,  "--database-url",   r->db_url,        "--broker-url", r->broker_url,
        "--batch-size", (char *)batch_size, "--metrics-port", port,           NULL};
    r->relay = txm_proc_start(TXM_RELAY_BIN, argv, NULL, r->log_path);
    assert_true(r->relay > 0);
}

static void remember(run *r, const char *id)
{
    if (r->n_ids == r->cap) {
        r->cap = r->cap == 0 ? 256 : r->cap * 2;
        r->ids = realloc(r->ids, r->cap * sizeof *r->ids);
        assert_non_null(r->ids);
    }
    snprintf(r->ids[r->n_ids++], ID_LEN, "%.*s", ID_LEN - 1, id);
}

/* Commits n messages in units of work of up to per_uow. With retry, a
 * failed unit of work is tried again for up to 30 s (the pool reconnects
 * through the multi-host URL); its ids count only once it committed. */
static void commit(run *r, size_t n, size_t per_uow, bool retry)
{
    long long give_up = txm_test_now_ms() + 30000;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per_uow ? n - done : per_uow;
        char ids[128][ID_LEN];
        txm_uow *uow = NULL;
        txm_error err = {0};
        txm_status st = txm_uow_begin(r->db, &uow, &err);
        for (size_t i = 0; st == TXM_OK && i < k; i++) {
            txm_msg *m = NULL;
            char payload[64];
            snprintf(payload, sizeof payload, "{\"n\":%zu}", r->n_ids + i);
            st = txm_msg_new(r->topic, "aggregate-1", NULL, payload, &m, &err);
            if (st == TXM_OK)
                snprintf(ids[i], ID_LEN, "%.*s", ID_LEN - 1, txm_msg_id(m));
            if (st == TXM_OK)
                st = txm_outbox_publish(uow, &m, &err);
            txm_msg_free(m);
        }
        if (st == TXM_OK)
            st = txm_uow_commit(&uow, &err);
        else
            txm_uow_rollback(&uow);
        if (st != TXM_OK && (!retry || txm_test_now_ms() > give_up))
            fail_msg("commit: %s: %s", txm_status_name(st), err.text);
        if (st != TXM_OK) {
            txm_test_sleep_ms(200);
            continue;
        }
        for (size_t i = 0; i < k; i++)
            remember(r, ids[i]);
        done += k;
    }
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Adds id to the sorted set of ids received, once. */
static bool was_seen(const run *r, const char *id)
{
    return r->n_seen > 0 && bsearch(id, r->seen, r->n_seen, ID_LEN, cmp_id) != NULL;
}

static void saw(run *r, const char *id)
{
    if (was_seen(r, id))
        return;
    if (r->n_seen == r->seen_cap) {
        r->seen_cap = r->seen_cap == 0 ? 256 : r->seen_cap * 2;
        r->seen = realloc(r->seen, r->seen_cap * sizeof *r->seen);
        assert_non_null(r->seen);
    }
    size_t at = r->n_seen;
    while (at > 0 && strcmp(r->seen[at - 1], id) > 0)
        at--;
    if (at < r->n_seen)
        memmove(r->seen + at + 1, r->seen + at, (r->n_seen - at) * sizeof *r->seen);
    snprintf(r->seen[at], ID_LEN, "%.*s", ID_LEN - 1, id);
    r->n_seen++;
}

/* Receives and acks until want distinct ids arrived or timeout_ms passed;
 * returns how many distinct ids arrived so far. */
static size_t drain(run *r, size_t want, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    while (r->n_seen < want && txm_test_now_ms() < end) {
        txm_delivery **list = NULL;
        size_t n = 0;
        if (txm_transport_receive(r->t, r->queue, 200, 100, &list, &n, NULL) != TXM_OK) {
            txm_test_sleep_ms(50);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            saw(r, txm_delivery_message_id(list[i]));
        if (n > 0)
            assert_int_equal(txm_transport_ack_batch(r->t, list, n, NULL, NULL), TXM_OK);
        txm_delivery_list_free(list, n);
    }
    return r->n_seen;
}

/* Asserts that every id in ids (n of them) was received. */
static void expect_all(run *r, char (*ids)[ID_LEN], size_t n)
{
    drain(r, n, DRAIN_MS);
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        if (!was_seen(r, ids[i]))
            missing++;
    if (missing > 0)
        fail_msg("%zu of %zu messages never arrived (log: %s)", missing, n, r->log_path);
}

static bool log_wait(const run *r, const char *text, int timeout_ms)
{
    return txm_test_file_wait(r->log_path, text, timeout_ms);
}

/* One value of the database (NULL when no row); the caller frees it. */
static char *query(run *r, const char *sql)
{
    txm_value p = TXM_TEXT(r->slot);
    txm_rows *rows = NULL;
    txm_error err = {0};
    if (txm_db_exec(r->db, sql, strstr(sql, "$1") != NULL ? &p : NULL,
                    strstr(sql, "$1") != NULL ? 1 : 0, &rows, NULL, &err) != TXM_OK)
        fail_msg("%s: %s", sql, err.text);
    const char *v = txm_rows_text(rows, 0, 0);
    char *out = v != NULL ? strdup(v) : NULL;
    txm_rows_free(rows);
    return out;
}

static long long query_int(run *r, const char *sql)
{
    char *v = query(r, sql);
    long long n = v != NULL ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

static double metric(run *r, const char *name)
{
    txm_testhttp_response resp;
    double v = -1;
    if (txm_testhttp_request("GET", "127.0.0.1", r->metrics_port, "/metrics", NULL, NULL, 0, 5000,
                             &resp) == 0) {
        size_t n = strlen(name);
        for (const char *p = resp.body; p != NULL && (p = strstr(p, name)) != NULL; p += n)
            if ((p == resp.body || p[-1] == '\n') && p[n] == ' ') {
                v = strtod(p + n + 1, NULL);
                break;
            }
    }
    txm_testhttp_response_fini(&resp);
    return v;
}

/* The relay has published n messages once and stopped: what follows is
 * committed while no relay runs. */
static void publish_then_stop(run *r, size_t n)
{
    relay_start(r, "100");
    commit(r, n, 10, false);
    expect_all(r, r->ids, r->n_ids);
    relay_stop(r, SIGTERM);
}

/* (a) The slot is dropped while the relay is down and rows are committed
 * before and after: the relay recreates it and republishes every row not
 * dispatched from the table. */
static void slot_dropped_while_the_relay_is_down_loses_nothing(void **state)
{
    run *r = run_new(*state, NULL);
    publish_then_stop(r, 20);
    commit(r, 30, 10, false);
    free(query(r, "SELECT pg_drop_replication_slot($1)::text"));
    commit(r, 20, 10, false);
    relay_start(r, "100");
    expect_all(r, r->ids, r->n_ids);
    assert_true(log_wait(r, "is missing", 0));
    assert_true(log_wait(r, "republishing the 50 outbox rows", 0));
    /* The mark goes once the relay confirmed the resync, and then it
     * streams as usual. */
    assert_true(log_wait(r, "republished and confirmed", 10000));
    assert_int_equal(query_int(r, "SELECT count(*) FROM txmsg_settings WHERE name LIKE 'relay%'"),
                     0);
    commit(r, 10, 10, false);
    expect_all(r, r->ids, r->n_ids);
    assert_true(metric(r, "txmsg_relay_slot_resyncs_total") == 1);
    run_free(r);
}

/* Runs txmsg monitor --max-slot-wal 1GB on the case's database; returns
 * its exit status, its output in out. */
static int monitor(run *r, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' monitor --max-slot-wal 1GB --database-url '%s'", TXM_CLI_BIN,
             r->db_url);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void set_keep_size(run *r, const char *size)
{
    char sql[128];
    snprintf(sql, sizeof sql, "ALTER SYSTEM SET max_slot_wal_keep_size = '%s'", size);
    assert_true(txm_testpg_exec(&r->s->primary, size != NULL ? sql
                                                             : "ALTER SYSTEM RESET "
                                                               "max_slot_wal_keep_size"));
    assert_true(txm_testpg_exec(&r->s->primary, "SELECT pg_reload_conf()"));
}

/* Writes WAL into another table until the slot is a fifth of
 * max_slot_wal_keep_size (8MB) away from invalidation, where the monitor
 * warns; then on, with segment switches and checkpoints (which invalidate
 * slots that hold more than the limit), until it is invalidated. */
static void invalidate_slot(run *r)
{
    set_keep_size(r, "8MB");
    free(query(r, "CREATE TABLE filler (x text)"));
    char out[2048];
    assert_int_equal(monitor(r, out, sizeof out), 0);
    for (int round = 0; round < 40; round++) {
        long long safe =
            query_int(r, "SELECT safe_wal_size FROM pg_replication_slots WHERE slot_name = $1");
        if (safe >= 0 && safe < (8 << 20) / 5)
            break;
        free(query(r, "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 200)"));
    }
    assert_int_equal(monitor(r, out, sizeof out), 1);
    assert_non_null(strstr(out, "is invalidated after"));
    for (int round = 0; round < 20; round++) {
        char *status = query(r, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1");
        bool lost = status != NULL && strcmp(status, "lost") == 0;
        free(status);
        if (lost)
            break;
        free(query(r, "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 4000)"));
        free(query(r, "SELECT pg_switch_wal()::text"));
        free(query(r, "CHECKPOINT"));
    }
    assert_int_equal(monitor(r, out, sizeof out), 1);
    assert_non_null(strstr(out, "was invalidated (wal_status lost"));
    set_keep_size(r, NULL);
}

/* (b) While the relay is stopped, enough WAL is written for the slot to be
 * invalidated (wal_status lost): the relay drops it, creates a new one and
 * republishes from the table; nothing is lost, and the metrics say so. */
static void slot_invalidated_by_max_slot_wal_keep_size_recovers_from_the_table(void **state)
{
    run *r = run_new(*state, NULL);
    publish_then_stop(r, 20);
    commit(r, 30, 10, false);
    invalidate_slot(r);
    char *status = query(r, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1");
    assert_non_null(status);
    assert_string_equal(status, "lost");
    free(status);
    commit(r, 20, 10, false);
    relay_start(r, "100");
    expect_all(r, r->ids, r->n_ids);
    assert_true(log_wait(r, "was invalidated (wal_status lost", 0));
    assert_true(log_wait(r, "republished and confirmed", 10000));
    assert_true(metric(r, "txmsg_relay_slot_resyncs_total") == 1);
    assert_true(metric(r, "txmsg_relay_slot_retained_wal_bytes") >= 0);
    char *again = query(r, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1");
    assert_non_null(again);
    assert_string_not_equal(again, "lost");
    free(again);
    run_free(r);
}

/* A relay killed while it republishes a large backlog leaves the resync
 * mark; the next relay resyncs again from the table (the rows marked
 * dispatched meanwhile are not sent twice) and nothing is lost. */
static void relay_killed_in_the_middle_of_a_resync_loses_nothing(void **state)
{
    run *r = run_new(*state, NULL);
    publish_then_stop(r, 10);
    commit(r, 2000, 100, false);
    free(query(r, "SELECT pg_drop_replication_slot($1)::text"));
    relay_start(r, "20");
    assert_true(log_wait(r, "resyncing", 20000));
    drain(r, 10 + 200, DRAIN_MS);
    relay_stop(r, SIGKILL);
    assert_int_equal(
        query_int(r, "SELECT count(*) FROM txmsg_settings WHERE name = 'relay_resync:' || $1"), 1);
    size_t before = r->n_seen;
    relay_start(r, "100");
    expect_all(r, r->ids, r->n_ids);
    assert_true(before < r->n_ids);
    assert_true(log_wait(r, "was being resynced when a relay stopped", 0));
    assert_true(log_wait(r, "republished and confirmed", 10000));
    assert_int_equal(
        query_int(r, "SELECT count(*) FROM txmsg_settings WHERE name = 'relay_resync:' || $1"), 0);
    run_free(r);
}

/* Waits until the standby replayed everything the primary wrote so far. */
static void wait_replayed(run *r, const txm_testpg *standby)
{
    char *target = query(r, "SELECT pg_current_wal_lsn()::text");
    assert_non_null(target);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn", target);
    free(target);
    long long end = txm_test_now_ms() + 20000;
    for (;;) {
        PGconn *c = PQconnectdb(standby->url);
        PGresult *res = PQexec(c, sql);
        bool done =
            PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        PQfinish(c);
        if (done)
            return;
        assert_true(txm_test_now_ms() < end);
        txm_test_sleep_ms(50);
    }
}

/* (c) Asynchronous streaming standby: the primary is killed (stop -m
 * immediate) with messages still in flight, the standby promoted. The
 * writer (a service's pool) and the relay use one multi-host URL with
 * target_session_attrs=read-write and reconnect to the promoted standby
 * by themselves; the relay finds no slot there (PostgreSQL 15 does not
 * carry slots over) and republishes every row the standby has that it
 * does not show dispatched. Every outbox row of the standby is delivered,
 * and writes go on. */
static void promoted_standby_delivers_every_outbox_row_it_has(void **state)
{
    suite *s = *state;
    if (!s->ready)
        skip();
    /* The standby first: the case's database reaches it by replication. */
    assert_true(txm_testpg_standby(&s->primary, &s->standby));
    run *r = run_new(s, &s->standby);
    relay_start(r, "100");
    commit(r, 50, 5, false);
    expect_all(r, r->ids, r->n_ids);
    wait_replayed(r, &s->standby);
    size_t replayed = r->n_ids;
    /* Committed, not yet published when the primary dies (the relay is
     * paused), replicated to the standby or not. */
    assert_int_equal(kill(r->relay, SIGSTOP), 0);
    commit(r, 50, 5, false);
    assert_true(txm_testpg_stop(&s->primary, "immediate"));
    assert_int_equal(kill(r->relay, SIGCONT), 0);
    assert_true(txm_testpg_promote(&s->standby));
    size_t before_promotion = r->n_ids;
    commit(r, 30, 5, true); /* the pool finds the promoted standby */

    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(r->db, "SELECT message_id FROM txmsg_outbox ORDER BY seq", NULL, 0,
                                 &rows, NULL, NULL),
                     TXM_OK);
    size_t n = txm_rows_count(rows);
    char(*on_standby)[ID_LEN] = calloc(n + 1, sizeof *on_standby);
    assert_non_null(on_standby);
    for (size_t i = 0; i < n; i++)
        snprintf(on_standby[i], ID_LEN, "%.*s", ID_LEN - 1, txm_rows_text(rows, i, 0));
    txm_rows_free(rows);
    expect_all(r, on_standby, n);
    /* What the standby must have: everything replayed before the crash and
     * everything committed after the promotion. */
    qsort(on_standby, n, ID_LEN, cmp_id);
    for (size_t i = 0; i < r->n_ids; i++)
        if (i < replayed || i >= before_promotion)
            assert_non_null(bsearch(r->ids[i], on_standby, n, ID_LEN, cmp_id));
    size_t reached = n - replayed - (r->n_ids - before_promotion);
    fprintf(stderr,
            "failover: %zu of the %zu messages in flight at the crash reached the standby\n",
            reached, before_promotion - replayed);
    assert_true(log_wait(r, "created replication slot", 0));
    assert_true(reached == 0 || log_wait(r, "this server is a promoted standby", 0));
    free(on_standby);
    run_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(slot_dropped_while_the_relay_is_down_loses_nothing,
                                  case_teardown),
        cmocka_unit_test_teardown(
            slot_invalidated_by_max_slot_wal_keep_size_recovers_from_the_table, case_teardown),
        cmocka_unit_test_teardown(relay_killed_in_the_middle_of_a_resync_loses_nothing,
                                  case_teardown),
        cmocka_unit_test_teardown(promoted_standby_delivers_every_outbox_row_it_has, case_teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
