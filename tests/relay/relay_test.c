/* txmsg-relay end to end: committed outbox rows reach the broker in commit
 * order, rolled-back ones never do; PostgreSQL restarts, broker outages and
 * relay failover lose nothing, and the relay never moves to another slot nor
 * streams from a new one that would skip rows. Runs on every database x
 * transport pair, and the first three on PostgreSQL in messages mode. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testhttp.h"
#include "testproc.h"
#include "testrelay.h"

typedef struct names {
    char topic_a[96], topic_b[96], queue_a[96], queue_b[96];
    char seen[128][TXM_UUID_LEN + 1]; /* ids committed to topic a, in order */
    int n_seen;
    bool once; /* a message received again fails the test (no failure under way) */
} names;

static void declare_pair(txm_relay_fixture *fx, names *nm)
{
    txm_test_unique("ta", nm->topic_a, sizeof nm->topic_a);
    txm_test_unique("tb", nm->topic_b, sizeof nm->topic_b);
    txm_test_unique("qa", nm->queue_a, sizeof nm->queue_a);
    txm_test_unique("qb", nm->queue_b, sizeof nm->queue_b);
    assert_int_equal(
        txm_transport_declare_subscription(fx->t, nm->topic_a, nm->queue_a, NULL, NULL), TXM_OK);
    assert_int_equal(
        txm_transport_declare_subscription(fx->t, nm->topic_b, nm->queue_b, NULL, NULL), TXM_OK);
}

/* Receives one message of queue within timeout_ms, acks it, returns it
 * decoded (NULL on timeout; a failing receive is retried until then). */
static txm_msg *next_msg(txm_relay_fixture *fx, const char *queue, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    while (txm_test_now_ms() < end) {
        txm_delivery **list = NULL;
        size_t n = 0;
        /* Right after a broker restart the client may still be reconnecting. */
        if (txm_transport_receive(fx->t, queue, 1, 200, &list, &n, NULL) != TXM_OK) {
            txm_test_sleep_ms(100);
            continue;
        }
        if (n == 0) {
            txm_free(list);
            continue;
        }
        size_t len = 0;
        const char *body = txm_delivery_body(list[0], &len);
        txm_msg *m = NULL;
        assert_int_equal(txm_msg_decode(body, len, &m, NULL), TXM_OK);
        assert_int_equal(txm_transport_ack(fx->t, list[0], NULL), TXM_OK);
        txm_delivery_list_free(list, n);
        return m;
    }
    return NULL;
}

static void relay_publishes_commits_in_order_and_never_rollbacks(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    enum { TXNS = 10, PER_TXN = 6 };
    txm_msg *sent[TXNS * PER_TXN];
    for (int t = 0; t < TXNS; t++) {
        txm_uow *uow = NULL;
        assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
        for (int i = 0; i < PER_TXN; i++) {
            int n = t * PER_TXN + i;
            char payload[48];
            snprintf(payload, sizeof payload, "{\"n\":%d,\"s\":\"x\\u00e9\"}", n);
            txm_msg *m = NULL;
            assert_int_equal(
                txm_msg_new(n % 2 ? nm.topic_b : nm.topic_a, "agg-7", NULL, payload, &m, NULL),
                TXM_OK);
            assert_int_equal(txm_msg_set_source(m, "orders", NULL), TXM_OK);
            sent[n] = txm_msg_copy(m);
            assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
        }
        assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
        if (t == 4) { /* a rolled-back transaction in the middle */
            assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
            txm_msg *m = NULL;
            assert_int_equal(txm_msg_new(nm.topic_a, "agg-7", NULL, "{\"rolled\":1}", &m, NULL),
                             TXM_OK);
            assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
            txm_uow_rollback(&uow);
        }
    }
    pid_t relay = txm_relay_start(fx, NULL);
    /* Each queue sees its topic's messages in commit order. */
    for (int parity = 0; parity < 2; parity++) {
        for (int n = parity; n < TXNS * PER_TXN; n += 2) {
            txm_msg *got = next_msg(fx, parity ? nm.queue_b : nm.queue_a, 15000);
            assert_non_null(got);
            assert_string_equal(txm_msg_id(got), txm_msg_id(sent[n]));
            assert_string_equal(txm_msg_topic(got), txm_msg_topic(sent[n]));
            assert_string_equal(txm_msg_source(got), "orders");
            assert_string_equal(txm_msg_aggregate_id(got), "agg-7");
            assert_string_equal(txm_msg_correlation_id(got), txm_msg_correlation_id(sent[n]));
            assert_string_equal(txm_msg_payload(got), txm_msg_payload(sent[n]));
            assert_int_equal(txm_msg_created_at_us(got), txm_msg_created_at_us(sent[n]));
            txm_msg_free(got);
        }
    }
    /* Nothing else: the rolled-back message never leaves. */
    assert_null(next_msg(fx, nm.queue_a, 700));
    if (fx->combo.messages) {
        /* No row was written, so the marker had nothing to look for. */
        txm_rows *rows = NULL;
        assert_int_equal(
            txm_db_exec(fx->db, "SELECT count(*) FROM txmsg_outbox", NULL, 0, &rows, NULL, NULL),
            TXM_OK);
        assert_int_equal(txm_rows_int(rows, 0, 0), 0);
        txm_rows_free(rows);
        int status = txm_relay_kill(fx, relay, SIGTERM);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(txm_relay_log_count(fx, "purged?"), 0);
        for (int n = 0; n < TXNS * PER_TXN; n++)
            txm_msg_free(sent[n]);
        return;
    }
    /* The relay marks what it published. */
    bool found = true;
    int64_t age = 0;
    long long end = txm_test_now_ms() + 5000;
    while (found && txm_test_now_ms() < end) {
        assert_int_equal(txm_outbox_oldest_age(fx->db, &age, &found, NULL), TXM_OK);
        txm_test_sleep_ms(50);
    }
    assert_false(found);
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, txm_msg_id(sent[0]), &e, NULL), TXM_OK);
    assert_true(txm_outbox_entry_is_dispatched(e));
    assert_true(txm_outbox_entry_dispatch_count(e) >= 1);
    txm_outbox_entry_free(e);
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int n = 0; n < TXNS * PER_TXN; n++)
        txm_msg_free(sent[n]);
}

/* Receives from queue a the next count messages of nm->seen (committed
 * already): first deliveries in commit order; a re-delivery of an earlier
 * message (at-least-once after a failure) is allowed unless nm->once. */
static void expect_seen(txm_relay_fixture *fx, names *nm, int count)
{
    int next = nm->n_seen;
    while (next < nm->n_seen + count) {
        txm_msg *got = next_msg(fx, nm->queue_a, 30000);
        assert_non_null(got);
        if (strcmp(txm_msg_id(got), nm->seen[next]) == 0) {
            next++;
        } else {
            bool earlier = false;
            for (int k = 0; k < next && !earlier; k++)
                earlier = strcmp(txm_msg_id(got), nm->seen[k]) == 0;
            assert_true(earlier);
            if (nm->once)
                fail_msg("message %s was published twice", txm_msg_id(got));
        }
        txm_msg_free(got);
    }
    nm->n_seen = next;
}

/* Commits count messages to topic a, then receives them from queue a. */
static void commit_and_expect(txm_relay_fixture *fx, names *nm, int from, int count)
{
    assert_true(nm->n_seen + count <= 128);
    for (int i = 0; i < count; i++)
        txm_relay_commit(fx, nm->topic_a, from + i, nm->seen[nm->n_seen + i]);
    expect_seen(fx, nm, count);
}

static void relay_survives_postgresql_restart(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    pid_t relay = txm_relay_start(fx, NULL);
    commit_and_expect(fx, &nm, 0, 10);
    assert_true(txm_testdb_pg_restart());
    /* The fixture's own pool reconnects on its next use. */
    txm_db_close(fx->db);
    assert_int_equal(txm_db_open(fx->db_url, NULL, &fx->db, NULL), TXM_OK);
    commit_and_expect(fx, &nm, 10, 10);
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Two relays on one slot or SQLite cursor: one publishes, the other stands
 * by (nothing is published twice while both run), and takes over when the
 * first is killed, losing nothing. */
static void relay_standby_takes_over_when_active_is_killed(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    pid_t active = txm_relay_start(fx, NULL);
    nm.once = true;
    commit_and_expect(fx, &nm, 0, 5); /* the first relay holds the slot or cursor now */
    pid_t standby = txm_relay_start(fx, NULL);
    assert_true(txm_relay_log_wait(fx, "standing by", 10000));
    commit_and_expect(fx, &nm, 5, 5);
    /* A second publisher would send these again at once: none comes. */
    txm_msg *again = next_msg(fx, nm.queue_a, 300);
    if (again != NULL)
        fail_msg("message %s was published twice", txm_msg_id(again));
    long long killed_at = txm_test_now_ms();
    txm_relay_kill(fx, active, SIGKILL);
    nm.once = false; /* the killed relay's unconfirmed tail may come again */
    commit_and_expect(fx, &nm, 10, 20);
    fprintf(stderr, "relay failover: rest delivered %lld ms after SIGKILL\n",
            txm_test_now_ms() - killed_at);
    assert_true(txm_relay_log_wait(fx, "took over", 0));
    int status = txm_relay_kill(fx, standby, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static double metric_value(const char *text, const char *name)
{
    const char *p = text;
    size_t n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

static void relay_metrics_track_publishing_and_pass_promtool(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    int port = txm_test_free_port();
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    const char *args[] = {"--metrics-port", port_arg, NULL};
    pid_t relay = txm_relay_start(fx, args);
    commit_and_expect(fx, &nm, 0, 3);
    txm_testhttp_response r;
    long long end = txm_test_now_ms() + 5000;
    double published = -1, pending = -1, position = -1;
    do { /* marking dispatched and confirming follow the publish */
        assert_int_equal(
            txm_testhttp_request("GET", "127.0.0.1", port, "/metrics", NULL, NULL, 0, 5000, &r), 0);
        assert_int_equal(r.status, 200);
        published = metric_value(r.body, "txmsg_relay_published_total");
        pending = metric_value(r.body, "txmsg_outbox_not_dispatched");
        position = metric_value(r.body, "txmsg_relay_position");
        if (pending != 0 || position <= 0)
            txm_testhttp_response_fini(&r);
    } while ((pending != 0 || position <= 0) && txm_test_now_ms() < end);
    assert_true(published >= 3);
    assert_true(pending == 0);
    assert_true(metric_value(r.body, "txmsg_relay_lag_seconds") >= 0);
    /* Every published message is in the latency histogram, within a minute. */
    const char *lat = "txmsg_relay_publish_latency_seconds";
    char series[128];
    snprintf(series, sizeof series, "%s_count", lat);
    assert_true(metric_value(r.body, series) == published);
    snprintf(series, sizeof series, "%s_bucket{le=\"60\"}", lat);
    assert_true(metric_value(r.body, series) == published);
    snprintf(series, sizeof series, "%s_sum", lat);
    assert_true(metric_value(r.body, series) >= 0);
    assert_true(position > 0);
    assert_int_equal(txm_promtool_check(r.body, r.body_len), 0);
    txm_testhttp_response_fini(&r);
    assert_int_equal(
        txm_testhttp_request("GET", "127.0.0.1", port, "/health", NULL, NULL, 0, 5000, &r), 0);
    assert_int_equal(r.status, 200);
    txm_testhttp_response_fini(&r);
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A row no envelope can be made of (its topic has a space; on SQLite also
 * one whose payload is not JSON): the relay logs and counts it, the rows
 * after it still go out, and it stays not dispatched (on SQLite too, where
 * the cursor passes it). */
static void relay_skips_a_bad_row_and_counts_it(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    char bad_id[TXM_UUID_LEN + 1];
    txm_relay_insert_bad_row(fx, "not a topic", "{}", bad_id);
    /* SQLite's TEXT column takes a payload that is not JSON (PostgreSQL's
     * jsonb refuses it): the relay, which does not parse payloads, must
     * still catch it. */
    bool sqlite = strncmp(fx->db_url, "sqlite:", 7) == 0;
    char bad_json_id[TXM_UUID_LEN + 1] = "";
    if (sqlite)
        txm_relay_insert_bad_row(fx, "topic", "{\"a\":}", bad_json_id);
    int port = txm_test_free_port();
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    const char *args[] = {"--metrics-port", port_arg, NULL};
    pid_t relay = txm_relay_start(fx, args);
    commit_and_expect(fx, &nm, 0, 3);
    txm_testhttp_response r;
    assert_int_equal(
        txm_testhttp_request("GET", "127.0.0.1", port, "/metrics", NULL, NULL, 0, 5000, &r), 0);
    assert_true(metric_value(r.body, "txmsg_relay_bad_rows_total") == (sqlite ? 2 : 1));
    txm_testhttp_response_fini(&r);
    long long end = txm_test_now_ms() + 5000;
    int64_t pending = -1;
    do { /* the three are marked or passed by the cursor; the bad rows stay */
        txm_test_sleep_ms(20);
        assert_int_equal(txm_outbox_count_not_dispatched(fx->db, &pending, NULL), TXM_OK);
    } while (pending != (sqlite ? 2 : 1) && txm_test_now_ms() < end);
    assert_int_equal(pending, sqlite ? 2 : 1);
    txm_test_sleep_ms(300); /* and stays so */
    assert_int_equal(txm_outbox_count_not_dispatched(fx->db, &pending, NULL), TXM_OK);
    assert_int_equal(pending, sqlite ? 2 : 1);
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    FILE *log = fopen(fx->log_path, "r");
    assert_non_null(log);
    char line[2048];
    bool logged = false;
    bool logged_json = !sqlite;
    while ((!logged || !logged_json) && fgets(line, sizeof line, log) != NULL) {
        logged = logged || (strstr(line, bad_id) != NULL && strstr(line, "skipping") != NULL);
        logged_json = logged_json || (strstr(line, bad_json_id) != NULL &&
                                      strstr(line, "payload is not valid JSON") != NULL);
    }
    fclose(log);
    assert_true(logged);
    assert_true(logged_json);
}

/* Replication slots of the fixture's database other than its own, and any
 * slot named txmsg_relay (the old silent default) in the cluster. */
static int64_t foreign_slots(txm_relay_fixture *fx)
{
    txm_value p = TXM_TEXT(fx->slot);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(fx->db,
                                 "SELECT count(*) FROM pg_replication_slots WHERE slot_name ="
                                 " 'txmsg_relay' OR (database = current_database() AND"
                                 " slot_name <> $1)",
                                 &p, 1, &rows, NULL, NULL),
                     TXM_OK);
    int64_t n = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return n;
}

/* Issue #9: a publish fails (the broker is down), PostgreSQL restarts while
 * the relay backs off (its pooled session dies), and the broker comes back.
 * The relay, started without --slot so that it looks the name up, stays on
 * the database's slot: every committed message arrives, no other slot was
 * created, and the relay created none. */
static void relay_keeps_its_slot_across_broker_failure_and_postgresql_restart(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    assert_true(txm_relay_private_nats(fx));
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    fx->default_slot = true;
    pid_t relay = txm_relay_start(fx, NULL);
    commit_and_expect(fx, &nm, 0, 5);

    txm_relay_nats_stop(fx);
    enum { DURING = 8 };
    for (int i = 0; i < DURING; i++)
        txm_relay_commit(fx, nm.topic_a, 5 + i, nm.seen[nm.n_seen + i]);
    /* The timing: the failed attempts back off up to 5 s (100 ms
     * doubling, so from the 7th on), and PostgreSQL restarts within that
     * wait, so the next attempt finds it up but the relay's pooled session
     * dead. A slot lookup there fails. */
    long long end = txm_test_now_ms() + 60000;
    while (txm_relay_log_count(fx, "failed, will retry") < 7 && txm_test_now_ms() < end)
        txm_test_sleep_ms(20);
    assert_true(txm_relay_log_count(fx, "failed, will retry") >= 7);
    assert_true(txm_testdb_pg_restart());
    assert_true(txm_relay_nats_start(fx));
    /* The fixture's own pool reconnects on its next use. */
    txm_db_close(fx->db);
    assert_int_equal(txm_db_open(fx->db_url, NULL, &fx->db, NULL), TXM_OK);

    expect_seen(fx, &nm, DURING);
    commit_and_expect(fx, &nm, 5 + DURING, 5);
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(foreign_slots(fx), 0);
    assert_true(txm_testdb_pg_slot_exists(fx->db, fx->slot));
    assert_false(txm_relay_log_wait(fx, "created replication slot", 0));
}

/* The slot is lost (dropped) while rows wait that are not dispatched: the
 * relay creates its slot again, republishes those rows from the outbox
 * table (a resync, logged and counted), then streams what comes after. */
static void relay_resyncs_a_dropped_slot_from_the_outbox_table(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    static names nm;
    memset(&nm, 0, sizeof nm);
    declare_pair(fx, &nm);
    enum { OLD = 3 };
    for (int i = 0; i < OLD; i++)
        txm_relay_commit(fx, nm.topic_a, i, nm.seen[i]);
    txm_value p = TXM_TEXT(fx->slot);
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT pg_drop_replication_slot($1)", &p, 1, NULL, NULL, NULL),
        TXM_OK);

    pid_t relay = txm_relay_start(fx, NULL);
    expect_seen(fx, &nm, OLD);
    char why[160];
    snprintf(why, sizeof why, "replication slot %s is missing", fx->slot);
    assert_true(txm_relay_log_wait(fx, why, 5000));
    assert_true(txm_relay_log_wait(fx, "republishing the 3 outbox rows not dispatched", 0));
    assert_true(txm_relay_log_wait(fx, "created replication slot", 0));
    commit_and_expect(fx, &nm, OLD, 5);
    assert_true(txm_relay_log_wait(fx, "resync of slot", 5000));
    assert_true(txm_testdb_pg_slot_exists(fx->db, fx->slot));
    int status = txm_relay_kill(fx, relay, SIGTERM);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(foreign_slots(fx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TXM_RELAY_TESTS(relay_publishes_commits_in_order_and_never_rollbacks),
        TXM_RELAY_TESTS(relay_metrics_track_publishing_and_pass_promtool),
        TXM_RELAY_TESTS(relay_skips_a_bad_row_and_counts_it),
        TXM_RELAY_TESTS_PG(relay_survives_postgresql_restart),
        TXM_RELAY_TESTS(relay_standby_takes_over_when_active_is_killed),
        TXM_RELAY_TESTS_PG(relay_resyncs_a_dropped_slot_from_the_outbox_table),
        TXM_RELAY_TESTS_PGMSG(relay_publishes_commits_in_order_and_never_rollbacks),
        TXM_RELAY_TESTS_PGMSG(relay_survives_postgresql_restart),
        TXM_RELAY_TESTS_PGMSG(relay_standby_takes_over_when_active_is_killed),
        /* Only NATS can be stopped and started again. */
        {"relay_keeps_its_slot_across_broker_failure_and_postgresql_restart/postgresql+nats",
         relay_keeps_its_slot_across_broker_failure_and_postgresql_restart, txm_relay_setup,
         txm_relay_teardown, (void *)&txm_combo_pg_nats},
    };
    if (getenv("TXM_TEST_FILTER") != NULL) /* e.g. "relay_resyncs*" */
        cmocka_set_test_filter(getenv("TXM_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
