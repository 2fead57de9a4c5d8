/* Relay fixtures: databases, broker and relay process per test. */
#include "testrelay.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testproc.h"

const txm_relay_combo txm_combo_sqlite_embedded = {TXM_TEST_SQLITE, TXM_TEST_EMBEDDED, false};
const txm_relay_combo txm_combo_sqlite_nats = {TXM_TEST_SQLITE, TXM_TEST_NATS, false};
const txm_relay_combo txm_combo_pg_embedded = {TXM_TEST_PG, TXM_TEST_EMBEDDED, false};
const txm_relay_combo txm_combo_pg_nats = {TXM_TEST_PG, TXM_TEST_NATS, false};
const txm_relay_combo txm_combo_pgmsg_nats = {TXM_TEST_PG, TXM_TEST_NATS, true};

int txm_relay_setup(void **state)
{
    txm_relay_fixture *fx = calloc(1, sizeof *fx);
    fx->combo = *(const txm_relay_combo *)*state;
    *state = fx;
    if (!txm_testdb_available(fx->combo.db) || !txm_testbroker_available(fx->combo.transport))
        return 0;
    fx->dir = txm_test_mkdtemp();
    snprintf(fx->log_path, sizeof fx->log_path, "%s/relay.log", fx->dir);
    if (fx->combo.db == TXM_TEST_PG) {
        fx->db_url = txm_testdb_create(TXM_TEST_PG);
    } else {
        size_t n = strlen(fx->dir) + 32;
        fx->db_url = malloc(n);
        snprintf(fx->db_url, n, "sqlite:%s/service.db", fx->dir);
    }
    if (fx->combo.transport == TXM_TEST_NATS)
        snprintf(fx->broker_url, sizeof fx->broker_url, "%s", getenv("TXMSG_TEST_NATS_URL"));
    else
        snprintf(fx->broker_url, sizeof fx->broker_url, "embedded:%s/broker.db", fx->dir);
    char consumer_url[600];
    snprintf(consumer_url, sizeof consumer_url, "sqlite:%s/consumer.db", fx->dir);
    txm_error err;
    if (fx->db_url == NULL || txm_db_open(fx->db_url, NULL, &fx->db, &err) != TXM_OK ||
        txm_transport_open(fx->broker_url, NULL, &fx->t, &err) != TXM_OK ||
        txm_db_open(consumer_url, NULL, &fx->consumer_db, &err) != TXM_OK) {
        fprintf(stderr, "relay setup: %s\n", err.text);
        return -1;
    }
    if (fx->combo.messages && txm_outbox_set_mode(fx->db, TXM_OUTBOX_MESSAGES, &err) != TXM_OK) {
        fprintf(stderr, "relay setup: %s\n", err.text);
        return -1;
    }
    if (fx->combo.db == TXM_TEST_PG && txm_db_relay_slot(fx->db, fx->slot, &err) != TXM_OK)
        return -1;
    else if (fx->combo.db != TXM_TEST_PG)
        snprintf(fx->slot, sizeof fx->slot, "none");
    txm_db_exec(fx->consumer_db, "CREATE TABLE effects (message_id text NOT NULL)", NULL, 0, NULL,
                NULL, NULL);
    fx->ready = true;
    return 0;
}

int txm_relay_teardown(void **state)
{
    txm_relay_fixture *fx = *state;
    while (fx->n_relays > 0) /* a failed assertion left them running */
        txm_relay_kill(fx, fx->relays[0], SIGKILL);
    if (fx->db != NULL && fx->combo.db == TXM_TEST_PG) {
        txm_value p = TXM_TEXT(fx->slot);
        txm_db_exec(fx->db,
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = $1 AND NOT active",
                    &p, 1, NULL, NULL, NULL);
    }
    txm_db_close(fx->db);
    txm_db_close(fx->consumer_db);
    txm_transport_close(fx->t);
    if (fx->nats > 0)
        txm_testnats_stop(fx->nats);
    if (fx->combo.db == TXM_TEST_PG)
        txm_testdb_drop(TXM_TEST_PG, fx->db_url);
    else
        free(fx->db_url);
    if (fx->dir != NULL && getenv("TXM_TEST_KEEP") == NULL)
        txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

txm_relay_fixture *txm_relay_get(void **state)
{
    txm_relay_fixture *fx = *state;
    if (!fx->ready) {
        fprintf(stderr, "skipped: database or broker not available\n");
        skip();
    }
    return fx;
}

pid_t txm_relay_start(txm_relay_fixture *fx, const char *const *extra_args)
{
    static char db_env[1024], broker_env[1024];
    snprintf(db_env, sizeof db_env, "TXMSG_DATABASE_URL=%s", fx->db_url);
    snprintf(broker_env, sizeof broker_env, "TXMSG_BROKER_URL=%s", fx->broker_url);
    char *env[] = {db_env, broker_env, NULL};
    char *argv[24] = {TXM_RELAY_BIN, "--slot", fx->slot, NULL};
    size_t n = fx->default_slot ? 1 : 3;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 23; i++)
        argv[n++] = (char *)extra_args[i];
    argv[n] = NULL;
    pid_t pid = txm_proc_start(TXM_RELAY_BIN, argv, env, fx->log_path);
    if (pid > 0 && fx->n_relays < 16)
        fx->relays[fx->n_relays++] = pid;
    return pid;
}

int txm_relay_kill(txm_relay_fixture *fx, pid_t pid, int sig)
{
    for (int i = 0; i < fx->n_relays; i++) {
        if (fx->relays[i] == pid) {
            fx->relays[i] = fx->relays[--fx->n_relays];
            return txm_proc_kill(pid, sig);
        }
    }
    return -1;
}

/* The store lives in the fixture's folder, so teardown removes it. */
static pid_t nats_start(txm_relay_fixture *fx)
{
    char store[700];
    snprintf(store, sizeof store, "%s/nats", fx->dir);
    return txm_testnats_start(store, fx->nats_port);
}

bool txm_relay_private_nats(txm_relay_fixture *fx)
{
    if (fx->combo.transport != TXM_TEST_NATS || fx->nats > 0)
        return false;
    fx->nats_port = txm_test_free_port();
    if (fx->nats_port <= 0 || (fx->nats = nats_start(fx)) <= 0) {
        fx->nats = 0;
        return false;
    }
    snprintf(fx->broker_url, sizeof fx->broker_url, "nats://127.0.0.1:%d", fx->nats_port);
    txm_transport_close(fx->t);
    fx->t = NULL;
    return txm_transport_open(fx->broker_url, NULL, &fx->t, NULL) == TXM_OK;
}

void txm_relay_nats_stop(txm_relay_fixture *fx)
{
    if (fx->nats > 0)
        txm_testnats_stop(fx->nats);
    fx->nats = 0;
}

bool txm_relay_nats_start(txm_relay_fixture *fx)
{
    if (fx->nats == 0 && (fx->nats = nats_start(fx)) <= 0)
        fx->nats = 0;
    return fx->nats > 0;
}

int txm_relay_log_count(txm_relay_fixture *fx, const char *text)
{
    return txm_test_file_count(fx->log_path, text);
}

bool txm_relay_log_wait(txm_relay_fixture *fx, const char *text, int timeout_ms)
{
    return txm_test_file_wait(fx->log_path, text, timeout_ms);
}

void txm_relay_insert_bad_row(txm_relay_fixture *fx, const char *topic, const char *payload,
                              char *id_out)
{
    char created[TXM_TIME_LEN + 1];
    txm_time_format(txm_now_us(), created);
    assert_int_equal(txm_uuid_v7(id_out, NULL), TXM_OK);
    txm_value row[] = {TXM_TEXT(id_out), TXM_TEXT(topic), TXM_TEXT(payload), TXM_TEXT(created)};
    assert_int_equal(txm_db_exec(fx->db,
                                 "INSERT INTO txmsg_outbox (message_id, source, aggregate_id,"
                                 " correlation_id, topic, payload, created_at)"
                                 " VALUES ($1, 'test', 'agg', 'corr', $2, $3, $4)",
                                 row, 4, NULL, NULL, NULL),
                     TXM_OK);
}

void txm_relay_commit(txm_relay_fixture *fx, const char *topic, int n, char *id_out)
{
    char payload[64];
    snprintf(payload, sizeof payload, "{\"n\":%d}", n);
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(topic, "aggregate-1", NULL, payload, &m, NULL), TXM_OK);
    if (id_out != NULL)
        memcpy(id_out, txm_msg_id(m), TXM_UUID_LEN + 1);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
}
