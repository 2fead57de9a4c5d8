/* The txmsg CLI end to end: the real binary runs as a child process against
 * each database x transport pair. A stopped relay makes monitor fail on age
 * and dispatch delivers the stuck messages once in effect; purges remove
 * only what they should; a failing handler fills the dead-letter queue,
 * which monitor reports and redrive empties; bad arguments are usage errors. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testconsumer.h"
#include "testhttp.h"
#include "testproc.h"
#include "testrelay.h"
#include "txmsg/admin.h"

#define OUT_MAX 65536
#define ARGS_MAX 24

/* What one run of the binary printed and returned. */
typedef struct cli_result {
    int code;          /* exit code; -1 if killed by a signal or timed out */
    char out[OUT_MAX]; /* stdout */
    char err[OUT_MAX]; /* stderr */
} cli_result;

static cli_result result; /* the last run */
static char *scratch_dir; /* output files of runs without a fixture */

/* ---- running the binary --------------------------------------------------- */

/* Starts txmsg with args (NULL-terminated) and the fixture's URLs in its
 * environment (none when fx is NULL); stdout and stderr go to files in dir. */
static pid_t cli_spawn(const txm_relay_fixture *fx, const char *dir, const char *const *args)
{
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof out_path, "%s/cli.out", dir);
    snprintf(err_path, sizeof err_path, "%s/cli.err", dir);
    char *argv[ARGS_MAX + 2] = {TXM_CLI_BIN};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < ARGS_MAX; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    unsetenv("TXMSG_DATABASE_URL");
    unsetenv("TXMSG_BROKER_URL");
    if (fx != NULL) {
        setenv("TXMSG_DATABASE_URL", fx->db_url, 1);
        setenv("TXMSG_BROKER_URL", fx->broker_url, 1);
    }
    int in = open("/dev/null", O_RDONLY); /* no terminal: nothing waits for an answer */
    if (in >= 0) {
        dup2(in, STDIN_FILENO);
        close(in);
    }
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0)
        _exit(126);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    close(out);
    close(err);
    execv(TXM_CLI_BIN, argv);
    _exit(127);
}

/* Waits up to timeout_ms for pid; kills it after that. Returns its exit
 * code, or -1 when a signal ended it. */
static int cli_wait(pid_t pid, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (txm_test_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "txmsg did not finish within %d ms\n", timeout_ms);
            return -1;
        }
        txm_test_sleep_ms(10);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void read_into(const char *dir, const char *name, char *buf)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, OUT_MAX - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Collects the outputs of a finished run into result. */
static cli_result *collect(const char *dir, int code)
{
    result.code = code;
    read_into(dir, "cli.out", result.out);
    read_into(dir, "cli.err", result.err);
    return &result;
}

/* Runs txmsg with the NULL-terminated arguments and returns the result. */
static cli_result *cli_run(const txm_relay_fixture *fx, ...)
{
    const char *args[ARGS_MAX + 1];
    size_t n = 0;
    va_list ap;
    va_start(ap, fx);
    for (const char *a = va_arg(ap, const char *); a != NULL && n < ARGS_MAX;
         a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    const char *dir = fx != NULL ? fx->dir : scratch_dir;
    return collect(dir, cli_wait(cli_spawn(fx, dir, args), 60000));
}

static void expect_code(const cli_result *r, int code)
{
    if (r->code != code)
        fail_msg("exit code %d, want %d\nstdout: %s\nstderr: %s", r->code, code, r->out, r->err);
}

static void expect_text(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("\"%s\" not found in:\n%s", needle, haystack);
}

static void expect_usage_error(cli_result *r, const char *mention)
{
    expect_code(r, 2);
    expect_text(r->err, mention);
    assert_string_equal(r->out, "");
}

/* Parses the last run's stdout as JSON; the caller decrefs. */
static json_t *out_json(void)
{
    json_error_t je;
    json_t *doc = json_loads(result.out, 0, &je);
    if (doc == NULL)
        fail_msg("stdout is not JSON (%s): %s", je.text, result.out);
    return doc;
}

/* ---- what the tests share ----------------------------------------------- */

/* A consumer of one queue whose handler records each message id in the
 * consumer database's effects table, or fails while fail is set. */
typedef struct handler_ctx {
    atomic_int fail;
    atomic_int calls;
} handler_ctx;

static txm_status record_effect(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    handler_ctx *h = ctx;
    atomic_fetch_add(&h->calls, 1);
    if (atomic_load(&h->fail))
        return txm_errf(err, TXM_INVALID, "handler broken on purpose");
    txm_value p = TXM_TEXT(txm_msg_id(msg));
    return txm_uow_exec(uow, "INSERT INTO effects (message_id) VALUES ($1)", &p, 1, NULL, NULL,
                        err);
}

/* What a test leaves running is stopped by the teardown too, so a failed
 * assertion never leaves a consumer on a closed database or a relay behind. */
static handler_ctx handler;
static txm_consumer *running_consumer;
static txm_app *running_apps[2]; /* serving /metrics over the test's databases */
static pid_t running_relay;
static pid_t running_cli; /* txmsg started with cli_spawn and not waited for */

static void stop_running(void)
{
    txm_consumer_close(running_consumer);
    running_consumer = NULL;
    for (int i = 0; i < 2; i++) {
        txm_app_close(running_apps[i]);
        running_apps[i] = NULL;
    }
    if (running_relay > 0)
        txm_proc_kill(running_relay, SIGTERM);
    running_relay = 0;
    if (running_cli > 0)
        txm_proc_kill(running_cli, SIGKILL);
    running_cli = 0;
}

static int cli_teardown(void **state)
{
    stop_running();
    return txm_relay_teardown(state);
}

/* Four cmocka entries for f, one per database x transport pair. */
/* clang-format off */
#define CLI_TESTS(f)                                                                           \
    {#f "/sqlite+embedded", f, txm_relay_setup, cli_teardown,                                  \
     (void *)&txm_combo_sqlite_embedded},                                                      \
    {#f "/sqlite+nats", f, txm_relay_setup, cli_teardown, (void *)&txm_combo_sqlite_nats},     \
    {#f "/postgresql+embedded", f, txm_relay_setup, cli_teardown,                              \
     (void *)&txm_combo_pg_embedded},                                                          \
    {#f "/postgresql+nats", f, txm_relay_setup, cli_teardown, (void *)&txm_combo_pg_nats}
/* clang-format on */

/* Starts a consumer of queue with the shared handler (failing when fail). */
static handler_ctx *start_consumer(txm_relay_fixture *fx, const char *topic, const char *queue,
                                   int fail)
{
    handler_ctx *h = &handler;
    atomic_store(&h->fail, fail);
    atomic_store(&h->calls, 0);
    txm_consumer_options co;
    txm_handler_options ho;
    txm_test_consumer_options(&co, &ho);
    ho.subscription.max_receive_count = 3;
    txm_consumer *c = NULL;
    assert_int_equal(txm_consumer_open(fx->consumer_db, fx->t, &co, &c, NULL), TXM_OK);
    running_consumer = c;
    assert_int_equal(txm_consumer_subscribe(c, topic, queue, record_effect, h, &ho, NULL), TXM_OK);
    assert_int_equal(txm_consumer_start(c, NULL), TXM_OK);
    return h;
}

/* Starts an app on db_url (port 0) that serves /metrics; with a queue, the
 * app hosts the test's handler on it instead of a bare consumer, so its
 * consumer and dead-letter metrics follow what the test does. */
static txm_app *start_metrics_app(txm_relay_fixture *fx, const char *db_url, const char *topic,
                                  const char *queue)
{
    txm_app_options o;
    txm_app_options_init(&o, queue != NULL ? "cli-consumer" : "cli-outbox", 0);
    o.port = 0;
    o.database_url = db_url;
    o.broker_url = fx->broker_url;
    o.min_log_level = TXM_LOG_WARN;
    txm_app *app = NULL;
    txm_error err;
    if (txm_app_open(&o, &app, &err) != TXM_OK)
        fail_msg("app: %s", err.text);
    running_apps[queue != NULL ? 0 : 1] = app;
    if (queue != NULL) {
        txm_handler_options ho;
        txm_handler_options_init(&ho);
        ho.wait_ms = 100;
        ho.subscription.max_receive_count = 3;
        assert_int_equal(txm_app_subscribe(app, topic, queue, record_effect, &handler, &ho, &err),
                         TXM_OK);
    }
    if (txm_app_start(app, &err) != TXM_OK)
        fail_msg("app start: %s", err.text);
    return app;
}

/* The value of the series line starting with series (name and labels) on
 * app's /metrics, which must also pass promtool; -1 if absent. */
static double metric(txm_app *app, const char *series)
{
    txm_testhttp_response r;
    assert_int_equal(txm_testhttp_request("GET", "127.0.0.1", txm_app_port(app), "/metrics", NULL,
                                          NULL, 0, 5000, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(txm_promtool_check(r.body, r.body_len), 0);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
    txm_testhttp_response_fini(&r);
    return v;
}

static int64_t effects_of(txm_relay_fixture *fx, const char *id)
{
    txm_rows *rows = NULL;
    txm_value p = TXM_TEXT(id);
    txm_status st = id != NULL ? txm_db_exec(fx->consumer_db,
                                             "SELECT count(*) FROM effects WHERE message_id = $1",
                                             &p, 1, &rows, NULL, NULL)
                               : txm_db_exec(fx->consumer_db, "SELECT count(*) FROM effects", NULL,
                                             0, &rows, NULL, NULL);
    assert_int_equal(st, TXM_OK);
    int64_t n = txm_rows_int(rows, 0, 0);
    txm_rows_free(rows);
    return n;
}

/* Waits up to timeout_ms for the effects of id (all when NULL) to reach want. */
static void await_effects(txm_relay_fixture *fx, const char *id, int64_t want, int timeout_ms)
{
    long long end = txm_test_now_ms() + timeout_ms;
    while (effects_of(fx, id) < want && txm_test_now_ms() < end)
        txm_test_sleep_ms(50);
    assert_int_equal(effects_of(fx, id), want);
}

/* Commits one outbox message created at created_us; its id goes to id_out. */
static void commit_at(txm_relay_fixture *fx, const char *topic, int64_t created_us, char *id_out)
{
    char id[TXM_UUID_LEN + 1], corr[TXM_UUID_LEN + 1];
    assert_int_equal(txm_uuid_v7(id, NULL), TXM_OK);
    assert_int_equal(txm_uuid_v7(corr, NULL), TXM_OK);
    txm_msg *m = NULL;
    assert_int_equal(
        txm_msg_new_with(id, "cli-test", topic, "agg-1", corr, "{\"k\":1}", created_us, &m, NULL),
        TXM_OK);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    memcpy(id_out, id, sizeof id);
}

static bool outbox_has(txm_relay_fixture *fx, const char *id)
{
    txm_outbox_entry *e = NULL;
    txm_status st = txm_outbox_get(fx->db, id, &e, NULL);
    txm_outbox_entry_free(e);
    assert_true(st == TXM_OK || st == TXM_NOT_FOUND);
    return st == TXM_OK;
}

/* ---- outbox: monitor, status, list, dispatch ------------------------------ */

static void check_stuck_outbox_is_reported(txm_relay_fixture *fx)
{
    expect_code(cli_run(fx, "monitor", "--max-outbox-age", "1h", NULL), 0);
    assert_string_equal(result.out, "");
    txm_test_sleep_ms(1100);
    cli_result *r = cli_run(fx, "monitor", "--max-outbox-age", "1s", NULL);
    expect_code(r, 1);
    /* The age is over 1 s; how far over depends on the machine's load. */
    expect_text(r->out, "outbox: oldest not-dispatched message is ");
    expect_text(r->out, "s old (max 1s; 3 not dispatched)");
    expect_code(cli_run(fx, "--json", "monitor", "--max-outbox-age", "1s", NULL), 1);
    json_t *doc = out_json();
    assert_false(json_is_true(json_object_get(doc, "ok")));
    json_t *outbox = json_object_get(json_object_get(doc, "measurements"), "outbox");
    assert_int_equal(json_integer_value(json_object_get(outbox, "not_dispatched")), 3);
    assert_true(json_real_value(json_object_get(outbox, "oldest_not_dispatched_age_seconds")) >
                1.0);
    assert_int_equal(json_array_size(json_object_get(doc, "violations")), 1);
    json_decref(doc);

    expect_code(cli_run(fx, "monitor", "--max-relay-lag", "1s", NULL), 1);
    expect_text(result.out, "relay: lag is ");

    expect_code(cli_run(fx, "outbox", "status", NULL), 0);
    expect_text(result.out, "outbox: 3 not dispatched, oldest ");
    expect_code(cli_run(fx, "outbox", "status", "--json", NULL), 0);
    doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "not_dispatched")), 3);
    json_t *relay = json_object_get(doc, "relay");
    assert_non_null(relay);
    assert_true(json_real_value(json_object_get(relay, "lag_seconds")) > 1.0);
    json_decref(doc);
}

/* --max-slot-wal: the relay's slot retains little WAL while it exists; a
 * threshold below what it retains, or a missing slot, crosses it. */
static void monitor_max_slot_wal_checks_the_slot(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    expect_code(cli_run(fx, "monitor", "--max-slot-wal", "1GB", NULL), 0);
    assert_string_equal(result.out, "");
    expect_code(cli_run(fx, "--json", "monitor", "--max-slot-wal", "1GB", NULL), 0);
    json_t *doc = out_json();
    json_t *slot = json_object_get(json_object_get(doc, "measurements"), "slot");
    assert_string_equal(json_string_value(json_object_get(slot, "name")), fx->slot);
    assert_true(json_is_true(json_object_get(slot, "found")));
    assert_string_equal(json_string_value(json_object_get(slot, "wal_status")), "reserved");
    assert_true(json_integer_value(json_object_get(slot, "retained_wal_bytes")) >= 0);
    assert_true(json_is_false(json_object_get(slot, "resync_pending")));
    json_decref(doc);

    /* No relay runs: the slot keeps the WAL of this commit. */
    txm_relay_commit(fx, "order--created", 0, NULL);
    expect_code(cli_run(fx, "monitor", "--max-slot-wal", "1", NULL), 1);
    char line[160];
    snprintf(line, sizeof line, "slot: replication slot %s retains ", fx->slot);
    expect_text(result.out, line);
    expect_text(result.out, "of WAL (max 1B)");

    txm_value p = TXM_TEXT(fx->slot);
    assert_int_equal(
        txm_db_exec(fx->db, "SELECT pg_drop_replication_slot($1)", &p, 1, NULL, NULL, NULL),
        TXM_OK);
    expect_code(cli_run(fx, "monitor", "--max-slot-wal", "1GB", NULL), 1);
    snprintf(line, sizeof line, "slot: replication slot %s does not exist", fx->slot);
    expect_text(result.out, line);
}

static void check_list(txm_relay_fixture *fx, const char *topic, char ids[3][TXM_UUID_LEN + 1])
{
    expect_code(cli_run(fx, "outbox", "list", "--not-dispatched", "--older-than", "1s", "--topic",
                        topic, "--json", NULL),
                0);
    json_t *doc = out_json();
    json_t *msgs = json_object_get(doc, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        assert_string_equal(json_string_value(json_object_get(m, "message_id")), ids[i]);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "payload"), "n")),
                         (json_int_t)i);
    }
    json_decref(doc);
    expect_code(cli_run(fx, "outbox", "list", "--limit", "2", NULL), 0);
    expect_text(result.out, ids[1]);
    assert_null(strstr(result.out, ids[2]));
    expect_code(cli_run(fx, "outbox", "list", "--older-than", "1h", NULL), 0);
    assert_null(strstr(result.out, ids[0]));
}

static void stuck_messages_fail_monitor_and_dispatch_delivers_them_once(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    char topic[96], queue[96], ids[3][TXM_UUID_LEN + 1];
    txm_test_unique("cli-t", topic, sizeof topic);
    txm_test_unique("cli-q", queue, sizeof queue);
    start_consumer(fx, topic, queue, 0);
    for (int i = 0; i < 3; i++)
        txm_relay_commit(fx, topic, i, ids[i]);
    check_stuck_outbox_is_reported(fx);
    check_list(fx, topic, ids);
    txm_app *outbox = start_metrics_app(fx, fx->db_url, NULL, NULL);
    assert_true(metric(outbox, "txmsg_outbox_not_dispatched") == 3);
    assert_true(metric(outbox, "txmsg_outbox_oldest_not_dispatched_age_seconds") >= 1.0);

    expect_code(cli_run(fx, "outbox", "dispatch", "--older-than", "1s", "--dry-run", NULL), 0);
    expect_text(result.out, "3 messages would be dispatched");
    expect_text(result.out, ids[2]);
    expect_code(cli_run(fx, "outbox", "dispatch", "--older-than", "1s", NULL), 0);
    expect_text(result.out, "dispatched 3 messages");
    await_effects(fx, NULL, 3, 20000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(effects_of(fx, ids[i]), 1);
    expect_code(cli_run(fx, "monitor", "--max-outbox-age", "1s", NULL), 0);
    assert_string_equal(result.out, "");
    assert_true(metric(outbox, "txmsg_outbox_not_dispatched") == 0);
    assert_true(metric(outbox, "txmsg_outbox_oldest_not_dispatched_age_seconds") == 0);
    expect_code(cli_run(fx, "outbox", "dispatch", "--older-than", "1s", NULL), 0);
    expect_text(result.out, "dispatched 0 messages");

    /* A message published twice (relay and CLI both at it) is processed
     * once: undo the mark and dispatch it again by id. */
    txm_value p = TXM_TEXT(ids[1]);
    assert_int_equal(
        txm_db_exec(fx->db, "UPDATE txmsg_outbox SET is_dispatched = '0' WHERE message_id = $1", &p,
                    1, NULL, NULL, NULL),
        TXM_OK);
    expect_code(cli_run(fx, "outbox", "dispatch", "--id", ids[1], "--json", NULL), 0);
    json_t *doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "dispatched")), 1);
    json_decref(doc);
    expect_code(cli_run(fx, "outbox", "dispatch", "--id", ids[1], NULL), 0);
    expect_text(result.err, "dispatched already");
    expect_code(cli_run(fx, "outbox", "dispatch", "--id", "no-such-id", NULL), 1);
    txm_test_sleep_ms(1500);
    assert_int_equal(effects_of(fx, NULL), 3);
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, ids[1], &e, NULL), TXM_OK);
    assert_int_equal(txm_outbox_entry_dispatch_count(e), 2);
    txm_outbox_entry_free(e);
    stop_running();
}

/* Waits up to 30 s until the outbox has nothing left to dispatch. */
static void await_all_dispatched(txm_relay_fixture *fx)
{
    long long end = txm_test_now_ms() + 30000;
    txm_outbox_stats s = {.not_dispatched = 1};
    while (s.not_dispatched > 0 && txm_test_now_ms() < end) {
        txm_test_sleep_ms(100);
        assert_int_equal(txm_outbox_stats_get(fx->db, &s, NULL), TXM_OK);
    }
    assert_int_equal(s.not_dispatched, 0);
}

static void status_and_monitor_follow_a_running_relay(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    char topic[96];
    txm_test_unique("cli-r", topic, sizeof topic);
    txm_relay_commit(fx, topic, 1, NULL);
    txm_relay_commit(fx, topic, 2, NULL);
    running_relay = txm_relay_start(fx, NULL);
    assert_true(running_relay > 0);
    await_all_dispatched(fx);
    /* The SQLite cursor is saved once the broker has the batch: wait for it. */
    long long end = txm_test_now_ms() + 10000;
    json_t *doc = NULL, *r = NULL;
    do {
        json_decref(doc);
        txm_test_sleep_ms(100);
        expect_code(cli_run(fx, "outbox", "status", "--json", NULL), 0);
        doc = out_json();
        r = json_object_get(doc, "relay");
    } while (json_is_null(json_object_get(r, "lag_seconds")) == false && txm_test_now_ms() < end);
    assert_true(json_is_true(json_object_get(r, "found")));
    assert_true(json_is_null(json_object_get(r, "lag_seconds")));
    if (fx->combo.db == TXM_TEST_PG) {
        assert_string_equal(json_string_value(json_object_get(r, "name")), fx->slot);
        assert_true(json_is_true(json_object_get(r, "active")));
    } else {
        assert_string_equal(json_string_value(json_object_get(r, "position")), "2");
        assert_int_equal(json_integer_value(json_object_get(r, "rows_behind")), 0);
    }
    json_decref(doc);
    txm_test_sleep_ms(1100);
    expect_code(cli_run(fx, "monitor", "--max-outbox-age", "1s", "--max-relay-lag", "1s", NULL), 0);
    stop_running();
}

/* ---- SQLite: the relay's cursor is the dispatch mark ----------------------- */

/* Runs `txmsg outbox status --json`: the not-dispatched count and the
 * default cursor's position. */
static int64_t status_not_dispatched(txm_relay_fixture *fx, int64_t *position)
{
    expect_code(cli_run(fx, "outbox", "status", "--json", NULL), 0);
    json_t *doc = out_json();
    int64_t n = json_integer_value(json_object_get(doc, "not_dispatched"));
    const char *pos = json_string_value(json_object_get(json_object_get(doc, "relay"), "position"));
    *position = pos != NULL ? strtoll(pos, NULL, 10) : -1;
    json_decref(doc);
    return n;
}

static int64_t seq_of(txm_relay_fixture *fx, const char *id)
{
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, id, &e, NULL), TXM_OK);
    int64_t seq = txm_outbox_entry_seq(e);
    txm_outbox_entry_free(e);
    return seq;
}

/* Status, `list --not-dispatched` and the /metrics gauge agree with what
 * the relay published: the messages of ids[0..n) up to its cursor reached
 * the consumer, the others are listed (in order) and counted, and so are
 * the skipped rows. The relay is settled or stopped. */
static void expect_mark_agrees(txm_relay_fixture *fx, txm_app *app, const char *topic,
                               char ids[][TXM_UUID_LEN + 1], size_t n, int64_t skipped)
{
    int64_t position = 0;
    int64_t count = status_not_dispatched(fx, &position);
    expect_code(cli_run(fx, "outbox", "list", "--not-dispatched", "--topic", topic, "--json", NULL),
                0);
    json_t *doc = out_json();
    json_t *listed = json_object_get(doc, "messages");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        txm_outbox_entry *e = NULL;
        assert_int_equal(txm_outbox_get(fx->db, ids[i], &e, NULL), TXM_OK);
        bool passed = txm_outbox_entry_seq(e) <= position;
        assert_true(txm_outbox_entry_is_dispatched(e) == passed);
        txm_outbox_entry_free(e);
        if (passed) {
            await_effects(fx, ids[i], 1, 20000);
            continue;
        }
        json_t *m = json_array_get(listed, k++);
        assert_string_equal(json_string_value(json_object_get(m, "message_id")), ids[i]);
        assert_true(json_is_false(json_object_get(m, "is_dispatched")));
    }
    assert_int_equal(json_array_size(listed), k);
    json_decref(doc);
    assert_int_equal(count, (int64_t)k + skipped);
    assert_true(metric(app, "txmsg_outbox_not_dispatched") == (double)count);
}

/* Waits up to 20 s for the relay to have confirmed every row. */
static void await_not_dispatched(txm_relay_fixture *fx, int64_t want)
{
    long long end = txm_test_now_ms() + 20000;
    int64_t position = 0;
    while (status_not_dispatched(fx, &position) != want && txm_test_now_ms() < end)
        txm_test_sleep_ms(100);
    assert_int_equal(status_not_dispatched(fx, &position), want);
}

static void sqlite_cursor_is_the_dispatch_mark(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    char topic[96], queue[96], bad_topic[96], ids[8][TXM_UUID_LEN + 1], bad[TXM_UUID_LEN + 1];
    txm_test_unique("cli-m", topic, sizeof topic);
    txm_test_unique("cli-mq", queue, sizeof queue);
    txm_test_unique("cli-mbad", bad_topic, sizeof bad_topic);
    start_consumer(fx, topic, queue, 0);
    txm_app *app = start_metrics_app(fx, fx->db_url, NULL, NULL);
    for (int i = 0; i < 4; i++) {
        if (i == 2)
            txm_relay_insert_bad_row(fx, bad_topic, "{not json", bad);
        txm_relay_commit(fx, topic, i, ids[i]);
    }
    expect_mark_agrees(fx, app, topic, ids, 4, 1);

    /* The relay publishes the valid rows and skips the bad one, which stays
     * not dispatched when its cursor passes it. */
    running_relay = txm_relay_start(fx, NULL);
    await_not_dispatched(fx, 1);
    assert_true(txm_relay_log_wait(fx, "skipping outbox row", 5000));
    expect_mark_agrees(fx, app, topic, ids, 4, 1);
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(fx->db, ids[0], &e, NULL), TXM_OK);
    assert_int_equal(txm_outbox_entry_dispatch_count(e), 1);
    txm_outbox_entry_free(e);

    /* Killed with messages in flight: the marks are whatever the cursor
     * says, and the restarted relay publishes the rest. */
    for (int i = 4; i < 8; i++)
        txm_relay_commit(fx, topic, i, ids[i]);
    txm_test_sleep_ms(rand() % 40);
    int status = txm_relay_kill(fx, running_relay, SIGKILL);
    running_relay = 0;
    assert_true(WIFSIGNALED(status));
    expect_mark_agrees(fx, app, topic, ids, 8, 1);
    running_relay = txm_relay_start(fx, NULL);
    await_effects(fx, NULL, 8, 20000);
    await_not_dispatched(fx, 1);
    expect_mark_agrees(fx, app, topic, ids, 8, 1);

    /* The stuck message, once its row is repaired, is dispatched by hand. */
    txm_value p = TXM_TEXT(bad);
    assert_int_equal(txm_db_exec(fx->db,
                                 "UPDATE txmsg_outbox SET payload = '{}'"
                                 " WHERE message_id = $1",
                                 &p, 1, NULL, NULL, NULL),
                     TXM_OK);
    expect_code(cli_run(fx, "outbox", "list", "--not-dispatched", NULL), 0);
    expect_text(result.out, bad);
    expect_code(cli_run(fx, "outbox", "dispatch", "--id", bad, NULL), 0);
    expect_text(result.out, "dispatched 1 messages");
    await_not_dispatched(fx, 0);
    assert_true(metric(app, "txmsg_outbox_oldest_not_dispatched_age_seconds") == 0);

    /* A second relay behind the first: rows count as dispatched, and are
     * purged, only once every cursor has passed them. */
    txm_value behind = TXM_INT(seq_of(fx, ids[1]));
    assert_int_equal(txm_db_exec(fx->db,
                                 "INSERT INTO txmsg_relay_cursor (name, position, updated_at)"
                                 " VALUES ('behind', $1, '2026-01-01T00:00:00.000000Z')",
                                 &behind, 1, NULL, NULL, NULL),
                     TXM_OK);
    int64_t position = 0;
    assert_int_equal(status_not_dispatched(fx, &position), 6);
    assert_true(metric(app, "txmsg_outbox_not_dispatched") == 6);
    expect_code(
        cli_run(fx, "outbox", "purge", "--dispatched", "--older-than", "1ms", "--json", NULL), 0);
    json_t *doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "deleted")), 2);
    json_decref(doc);
    assert_false(outbox_has(fx, ids[1]));
    assert_true(outbox_has(fx, bad)); /* dispatched by hand, not passed by "behind" */
    assert_true(outbox_has(fx, ids[2]));
    stop_running();
}

/* ---- retention purges ----------------------------------------------------- */

#define DAY_US (86400LL * 1000000)

static void outbox_purge_removes_only_old_dispatched_messages(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    char topic[96], old_sent[3][TXM_UUID_LEN + 1], old_pending[2][TXM_UUID_LEN + 1],
        new_sent[2][TXM_UUID_LEN + 1];
    txm_test_unique("cli-p", topic, sizeof topic);
    int64_t old = txm_now_us() - 10 * DAY_US;
    for (int i = 0; i < 3; i++)
        commit_at(fx, topic, old + i, old_sent[i]);
    for (int i = 0; i < 2; i++)
        commit_at(fx, topic, old + 10 + i, old_pending[i]);
    for (int i = 0; i < 2; i++)
        commit_at(fx, topic, txm_now_us(), new_sent[i]);
    const char *sent[] = {old_sent[0], old_sent[1], old_sent[2], new_sent[0], new_sent[1]};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, sent, 5, NULL, NULL), TXM_OK);

    expect_code(cli_run(fx, "outbox", "purge", "--older-than", "1d", NULL), 2);
    expect_text(result.err, "--dispatched");
    expect_code(cli_run(fx, "outbox", "purge", "--dispatched", "--older-than", "1d", "--batch", "2",
                        "--json", NULL),
                0);
    json_t *doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "deleted")), 3);
    assert_int_equal(json_integer_value(json_object_get(doc, "batches")), 2);
    json_decref(doc);
    for (int i = 0; i < 3; i++)
        assert_false(outbox_has(fx, old_sent[i]));
    for (int i = 0; i < 2; i++) {
        assert_true(outbox_has(fx, old_pending[i]));
        assert_true(outbox_has(fx, new_sent[i]));
    }
    expect_code(cli_run(fx, "outbox", "purge", "--dispatched", "--older-than", "1d", NULL), 0);
    expect_text(result.out, "deleted 0 dispatched messages");
}

static void inbox_purge_removes_only_old_records(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    int64_t old = txm_now_us() - 10 * DAY_US;
    char id[32];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "old-%d", i);
        txm_testdb_inbox_insert_at(fx->db, "sub-a", id, old + i);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(id, sizeof id, "new-%d", i);
        txm_testdb_inbox_insert_at(fx->db, "sub-a", id, txm_now_us() - 3600LL * 1000000);
    }
    expect_code(cli_run(fx, "inbox", "purge", "--older-than", "1d", "--batch", "2", "--json", NULL),
                0);
    json_t *doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "deleted")), 5);
    assert_int_equal(json_integer_value(json_object_get(doc, "batches")), 3);
    json_decref(doc);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "old-%d", i);
        assert_int_equal(txm_inbox_get(fx->db, "sub-a", id, NULL, NULL), TXM_NOT_FOUND);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(id, sizeof id, "new-%d", i);
        assert_int_equal(txm_inbox_get(fx->db, "sub-a", id, NULL, NULL), TXM_OK);
    }
}

static void purge_every_repeats_until_sigterm(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    const char *args[] = {"inbox", "purge", "--older-than", "1d", "--every", "200ms", NULL};
    pid_t pid = running_cli = cli_spawn(fx, fx->dir, args);
    txm_test_sleep_ms(500);
    txm_testdb_inbox_insert_at(fx->db, "sub-b", "late", txm_now_us() - 2 * DAY_US);
    long long end = txm_test_now_ms() + 10000;
    while (txm_inbox_get(fx->db, "sub-b", "late", NULL, NULL) == TXM_OK && txm_test_now_ms() < end)
        txm_test_sleep_ms(50);
    assert_int_equal(txm_inbox_get(fx->db, "sub-b", "late", NULL, NULL), TXM_NOT_FOUND);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0); /* still running */
    kill(pid, SIGTERM);
    cli_result *r = collect(fx->dir, cli_wait(pid, 5000));
    running_cli = 0;
    expect_code(r, 0);
    expect_text(r->out, "inbox purge: deleted 1 inbox records");
}

/* ---- dead-letter queue ---------------------------------------------------- */

static size_t dlq_depth(txm_relay_fixture *fx, const char *queue)
{
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, queue, 100, &list, &n, NULL), TXM_OK);
    txm_delivery_list_free(list, n);
    return n;
}

static void await_dlq_depth(txm_relay_fixture *fx, const char *queue, size_t want)
{
    long long end = txm_test_now_ms() + 30000;
    while (dlq_depth(fx, queue) != want && txm_test_now_ms() < end)
        txm_test_sleep_ms(100);
    assert_int_equal(dlq_depth(fx, queue), want);
}

/* Publishes one message straight to the broker; its id goes to id_out. */
static void publish_one(txm_relay_fixture *fx, const char *topic, char *id_out)
{
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(topic, "agg-9", NULL, "{\"poison\":true}", &m, NULL), TXM_OK);
    memcpy(id_out, txm_msg_id(m), TXM_UUID_LEN + 1);
    const txm_msg *one[] = {m};
    assert_int_equal(txm_transport_publish_msgs(fx->t, one, 1, NULL, NULL), TXM_OK);
    txm_msg_free(m);
}

static void check_dlq_reported(txm_relay_fixture *fx, const char *queue, const char *id)
{
    char want[200];
    snprintf(want, sizeof want, "dlq: %s has 1 dead letters (max 0)", queue);
    expect_code(cli_run(fx, "monitor", "--max-dlq-depth", "0", "--queue", queue, NULL), 1);
    expect_text(result.out, want);
    expect_code(cli_run(fx, "monitor", "--json", "--max-dlq-depth", "0", "--queue", queue, NULL),
                1);
    json_t *doc = out_json();
    json_t *dlq = json_object_get(json_object_get(doc, "measurements"), "dlq");
    assert_int_equal(json_integer_value(json_object_get(dlq, queue)), 1);
    json_decref(doc);

    expect_code(cli_run(fx, "dlq", "list", queue, NULL), 0);
    expect_text(result.out, id);
    expect_text(result.out, "broken on purpose");
    expect_code(cli_run(fx, "dlq", "list", queue, "--json", NULL), 0);
    doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 1);
    json_t *m = json_array_get(json_object_get(doc, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "message_id")), id);
    assert_true(json_integer_value(json_object_get(m, "receive_count")) >= 1);
    json_decref(doc);

    expect_code(cli_run(fx, "dlq", "show", queue, id, NULL), 0);
    expect_text(result.out, "receive count:");
    expect_text(result.out, "last error:     failed 3 times: INVALID: handler broken on purpose");
    expect_text(result.out, "\n  \"specversion\": \"1.0\"");
    expect_text(result.out, "\"poison\": true");
    expect_code(cli_run(fx, "dlq", "show", queue, id, "--json", NULL), 0);
    doc = out_json();
    json_t *body = json_object_get(doc, "body");
    assert_string_equal(json_string_value(json_object_get(body, "id")), id);
    json_decref(doc);
    expect_code(cli_run(fx, "dlq", "show", queue, "no-such-id", NULL), 1);
}

static void failing_handler_fills_dlq_and_redrive_processes_it(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    char topic[96], queue[96], id[TXM_UUID_LEN + 1], id2[TXM_UUID_LEN + 1];
    txm_test_unique("cli-dt", topic, sizeof topic);
    txm_test_unique("cli-dq", queue, sizeof queue);
    handler_ctx *h = &handler;
    atomic_store(&h->fail, 1);
    atomic_store(&h->calls, 0);
    char consumer_url[700];
    snprintf(consumer_url, sizeof consumer_url, "sqlite:%s/consumer.db", fx->dir);
    txm_app *app = start_metrics_app(fx, consumer_url, topic, queue);
    char dlq_series[200], failures_series[200], processed_series[200];
    snprintf(dlq_series, sizeof dlq_series, "txmsg_dlq_depth{queue=\"%s\"}", queue);
    snprintf(failures_series, sizeof failures_series, "txmsg_consumer_failures_total{queue=\"%s\"}",
             queue);
    snprintf(processed_series, sizeof processed_series,
             "txmsg_consumer_processed_total{queue=\"%s\"}", queue);
    assert_true(metric(app, dlq_series) == 0);
    expect_code(cli_run(fx, "monitor", "--max-dlq-depth", "0", "--queue", queue, NULL), 0);
    publish_one(fx, topic, id);
    await_dlq_depth(fx, queue, 1);
    check_dlq_reported(fx, queue, id);
    assert_true(metric(app, dlq_series) == 1);
    assert_true(metric(app, failures_series) == 3);
    assert_true(metric(app, processed_series) == 0);

    atomic_store(&h->fail, 0); /* the handler is fixed */
    expect_code(cli_run(fx, "dlq", "redrive", queue, NULL), 0);
    expect_text(result.out, "moved 1 dead letters back to");
    await_effects(fx, id, 1, 20000);
    await_dlq_depth(fx, queue, 0);
    assert_true(metric(app, dlq_series) == 0);
    long long until = txm_test_now_ms() + 5000; /* counted after the commit */
    while (metric(app, processed_series) != 1 && txm_test_now_ms() < until)
        txm_test_sleep_ms(20);
    assert_true(metric(app, processed_series) == 1);
    expect_code(cli_run(fx, "monitor", "--max-dlq-depth", "0", "--queue", queue, NULL), 0);
    expect_code(cli_run(fx, "dlq", "redrive", queue, "--id", id, NULL), 1);

    atomic_store(&h->fail, 1); /* broken again: this one is purged instead */
    publish_one(fx, topic, id2);
    await_dlq_depth(fx, queue, 1);
    expect_code(cli_run(fx, "dlq", "purge", queue, "--json", NULL), 0);
    json_t *doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "purged")), 1);
    json_decref(doc);
    assert_int_equal(dlq_depth(fx, queue), 0);
    expect_code(cli_run(fx, "monitor", "--max-dlq-depth", "0", "--queue", queue, NULL), 0);
    assert_int_equal(effects_of(fx, id2), 0);
    stop_running();
}

/* ---- trace ---------------------------------------------------------------- */

/* The customers side of a saga: records the order in its inbox (the
 * consumer does) and publishes its reply with the same correlation id. */
static txm_status reserve_credit(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    const char *reply_topic = ctx;
    txm_msg *reply = NULL;
    txm_status st = txm_msg_new(reply_topic, txm_msg_aggregate_id(msg), txm_msg_correlation_id(msg),
                                "{\"reserved\":true}", &reply, err);
    if (st == TXM_OK)
        st = txm_msg_set_source(reply, "customers", err);
    if (st == TXM_OK)
        return txm_outbox_publish(uow, &reply, err);
    txm_msg_free(reply);
    return st;
}

/* Waits until db's trace of corr has want entries, the first one
 * dispatched when first_dispatched. */
static void await_trace(txm_db *db, const char *corr, size_t want, bool first_dispatched)
{
    long long end = txm_test_now_ms() + 30000;
    for (;;) {
        txm_trace_entry *t = NULL;
        size_t n = 0;
        assert_int_equal(txm_trace_list(db, corr, 100, &t, &n, NULL), TXM_OK);
        bool done = n == want && (!first_dispatched || t[0].dispatched);
        txm_free(t);
        if (done)
            return;
        if (txm_test_now_ms() > end)
            fail_msg("trace of %s: %zu entries, want %zu", corr, n, want);
        txm_test_sleep_ms(50);
    }
}

/* orders publishes order--created; the relay brings it to customers, whose
 * consumer processes it and publishes its reply, which no relay carries:
 * the timeline shows the three steps in order and says where it stopped.
 * In messages mode the orders outbox keeps no row, and the trace says so. */
static void trace_follows_a_flow_across_two_services(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    bool table = !fx->combo.messages;
    char topic[96], queue[96], reply_topic[96], corr[TXM_UUID_LEN + 1];
    txm_test_unique("order--created", topic, sizeof topic);
    txm_test_unique("customer--order-created", queue, sizeof queue);
    txm_test_unique("customer--credit-reserved", reply_topic, sizeof reply_topic);
    assert_int_equal(txm_uuid_v7(corr, NULL), TXM_OK);
    txm_consumer_options co;
    txm_handler_options ho;
    txm_test_consumer_options(&co, &ho);
    assert_int_equal(txm_consumer_open(fx->consumer_db, fx->t, &co, &running_consumer, NULL),
                     TXM_OK);
    assert_int_equal(txm_consumer_subscribe(running_consumer, topic, queue, reserve_credit,
                                            reply_topic, &ho, NULL),
                     TXM_OK);
    assert_int_equal(txm_consumer_start(running_consumer, NULL), TXM_OK);
    running_relay = txm_relay_start(fx, NULL);
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new(topic, "order-7", corr, "{\"total\":40}", &m, NULL), TXM_OK);
    char order_id[TXM_UUID_LEN + 1];
    memcpy(order_id, txm_msg_id(m), sizeof order_id);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    await_trace(fx->consumer_db, corr, 2, false);
    if (table)
        await_trace(fx->db, corr, 1, true);
    stop_running();

    char orders[800], customers[800];
    snprintf(orders, sizeof orders, "orders=%s", fx->db_url);
    snprintf(customers, sizeof customers, "customers=sqlite:%s/consumer.db", fx->dir);
    expect_code(cli_run(NULL, "trace", corr, "--service", orders, "--service", customers, NULL), 0);
    char line[400];
    const char *p = result.out;
    if (table) {
        snprintf(line, sizeof line,
                 " orders       outbox %-32s %s published, aggregate order-7, "
                 "dispatched\n",
                 topic, order_id);
        expect_text(p, line);
        p = strstr(p, line);
    } else {
        expect_text(result.err, "service orders is in messages mode");
    }
    snprintf(line, sizeof line, " customers    inbox  %-32s %s processed by %s\n", topic, order_id,
             queue);
    expect_text(p, line);
    p = strstr(p, line);
    snprintf(line, sizeof line, " customers    outbox %s", reply_topic);
    expect_text(p, line);
    snprintf(line, sizeof line, "last step: customers published %s", reply_topic);
    expect_text(p, line);
    snprintf(line, sizeof line, "waiting: %s from customers", reply_topic);
    expect_text(p, line);
    expect_text(p, "not dispatched yet");

    expect_code(
        cli_run(NULL, "trace", corr, "--json", "--service", orders, "--service", customers, NULL),
        0);
    json_t *doc = out_json();
    json_t *entries = json_object_get(doc, "entries");
    size_t first = table ? 1 : 0;
    assert_int_equal(json_array_size(entries), first + 2);
    json_t *e = json_array_get(entries, first);
    assert_string_equal(json_string_value(json_object_get(e, "service")), "customers");
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "inbox");
    assert_string_equal(json_string_value(json_object_get(e, "message_id")), order_id);
    assert_string_equal(json_string_value(json_object_get(e, "subscription")), queue);
    e = json_array_get(entries, first + 1);
    assert_string_equal(json_string_value(json_object_get(e, "topic")), reply_topic);
    assert_string_equal(json_string_value(json_object_get(e, "source")), "customers");
    assert_true(json_is_false(json_object_get(e, "dispatched")));
    json_t *waiting = json_object_get(doc, "waiting");
    assert_int_equal(json_array_size(waiting), 1);
    assert_string_equal(json_string_value(json_array_get(waiting, 0)),
                        json_string_value(json_object_get(e, "message_id")));
    json_t *svc = json_array_get(json_object_get(doc, "services"), 0);
    assert_string_equal(json_string_value(json_object_get(svc, "outbox_mode")),
                        table ? "table" : "messages");
    json_decref(doc);

    /* The default service is the one database, named after it. */
    expect_code(cli_run(fx, "trace", corr, "--limit", "1", NULL), 0);
    expect_text(result.out, table ? "1 entry in 1 service" : "0 entries in 1 service");
    expect_code(cli_run(fx, "trace", "no-such-flow", NULL), 0);
    expect_text(result.out, "trace no-such-flow: 0 entries in 1 service\n");
}

/* ---- dead letters by cause -------------------------------------------------- */

/* Publishes one message to queue's topic per reason and dead-letters it
 * with that reason. */
static void dead_letter_with(txm_relay_fixture *fx, const char *topic, const char *queue,
                             const char *const *reasons, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char id[TXM_UUID_LEN + 1];
        publish_one(fx, topic, id);
    }
    for (size_t done = 0; done < n;) {
        txm_delivery **list = NULL;
        size_t got = 0;
        assert_int_equal(txm_transport_receive(fx->t, queue, n, 5000, &list, &got, NULL), TXM_OK);
        assert_true(got > 0);
        for (size_t k = 0; k < got; k++)
            assert_int_equal(txm_transport_dead_letter(fx->t, list[k], reasons[done++], NULL),
                             TXM_OK);
        txm_delivery_list_free(list, got);
    }
}

static void dlq_groups_redrive_and_purge_by_cause(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    char topic[96], queue[96];
    txm_test_unique("cli-gt", topic, sizeof topic);
    txm_test_unique("cli-gq", queue, sizeof queue);
    txm_subscription_options so;
    txm_subscription_options_init(&so);
    assert_int_equal(txm_transport_declare_topic(fx->t, topic, NULL), TXM_OK);
    assert_int_equal(txm_transport_declare_subscription(fx->t, topic, queue, &so, NULL), TXM_OK);
    static const char *const reasons[] = {
        "order 0193a7c2-5f1e-7c3a-9a51-2f0c8d4e7b10: balance 12 < 40 in \"abc\"",
        "order 0193a7c2-5f1e-7c3a-9a51-2f0c8d4e7b11: balance 7 < 99 in \"de\"",
        "db timeout after 30 s",
        "order 0193a7c2-5f1e-7c3a-9a51-2f0c8d4e7b12: balance 0 < 1 in \"<script>\"",
        "db timeout after 31 s",
    };
    dead_letter_with(fx, topic, queue, reasons, 5);

    expect_code(cli_run(fx, "dlq", "groups", queue, NULL), 0);
    expect_text(result.out, "GROUP        COUNT   FIRST_SEEN");
    expect_text(result.out, " 3       ");
    expect_text(result.out, "order <id>: balance <n> < <n> in \"<s>\"\n");
    expect_text(result.out, "db timeout after <n> s\n");
    expect_code(cli_run(fx, "dlq", "groups", queue, "--json", NULL), 0);
    json_t *doc = out_json();
    json_t *groups = json_object_get(doc, "groups");
    assert_int_equal(json_array_size(groups), 2);
    json_t *big = json_array_get(groups, 0), *small = json_array_get(groups, 1);
    assert_int_equal(json_integer_value(json_object_get(big, "count")), 3);
    assert_true(json_is_string(json_object_get(big, "first_seen")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(small, "sample"), "last_error")),
        "db timeout after 30 s");
    char big_id[TXM_DLQ_GROUP_ID_LEN + 1], small_id[TXM_DLQ_GROUP_ID_LEN + 1];
    snprintf(big_id, sizeof big_id, "%s", json_string_value(json_object_get(big, "id")));
    snprintf(small_id, sizeof small_id, "%s", json_string_value(json_object_get(small, "id")));
    json_decref(doc);

    /* Three messages at 20 per second: the third goes 100 ms after the first. */
    expect_code(
        cli_run(fx, "dlq", "redrive", queue, "--group", big_id, "--rate", "20", "--json", NULL), 0);
    doc = out_json();
    assert_int_equal(json_integer_value(json_object_get(doc, "redriven")), 3);
    assert_true(json_real_value(json_object_get(doc, "seconds")) >= 0.08);
    json_decref(doc);
    expect_code(cli_run(fx, "dlq", "redrive", queue, "--group", big_id, NULL), 1);
    expect_text(result.err, "no dead letter of");

    /* A group purge without a terminal needs --yes, and changes nothing. */
    expect_usage_error(cli_run(fx, "dlq", "purge", queue, "--group", small_id, NULL), "--yes");
    assert_int_equal(dlq_depth(fx, queue), 2);
    expect_code(cli_run(fx, "dlq", "purge", queue, "--group", big_id, "--yes", NULL), 1);
    expect_code(cli_run(fx, "dlq", "purge", queue, "--group", small_id, "--yes", NULL), 0);
    expect_text(result.out, "deleted 2 dead letters of group");
    assert_int_equal(dlq_depth(fx, queue), 0);
    expect_code(cli_run(fx, "dlq", "groups", queue, "--json", NULL), 0);
    expect_text(result.out, "\"groups\":[]");
}

/* ---- outbox mode ---------------------------------------------------------- */

static void outbox_mode_shows_sets_and_is_read_at_open(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state);
    bool pg = fx->combo.db == TXM_TEST_PG;
    expect_code(cli_run(fx, "outbox", "mode", "--json", NULL), 0);
    json_t *doc = out_json();
    assert_string_equal(json_string_value(json_object_get(doc, "outbox_mode")), "table");
    assert_true(json_is_false(json_object_get(doc, "changed")));
    json_decref(doc);
    cli_result *r = cli_run(fx, "outbox", "mode", "messages", NULL);
    if (!pg) {
        expect_code(r, 1);
        expect_text(r->err, "messages mode needs PostgreSQL");
        expect_code(cli_run(fx, "outbox", "mode", "table", NULL), 0);
        return;
    }
    expect_code(r, 0);
    expect_text(r->out, "outbox mode: messages (was table); restart the services");
    /* A handle opened before the change keeps its mode; a new one reads it. */
    assert_int_equal(txm_outbox_mode_get(fx->db), TXM_OUTBOX_TABLE);
    txm_db *again = NULL;
    assert_int_equal(txm_db_open(fx->db_url, NULL, &again, NULL), TXM_OK);
    assert_int_equal(txm_outbox_mode_get(again), TXM_OUTBOX_MESSAGES);
    txm_db_close(again);
    expect_code(cli_run(fx, "outbox", "status", "--json", NULL), 0);
    doc = out_json();
    assert_string_equal(json_string_value(json_object_get(doc, "outbox_mode")), "messages");
    json_decref(doc);
    r = cli_run(fx, "outbox", "status", NULL);
    expect_code(r, 0);
    expect_text(r->out, "messages mode, no backlog table");
    expect_text(r->out, "lag unknown (see bytes behind)");
    r = cli_run(fx, "outbox", "list", "--json", NULL);
    expect_code(r, 0);
    expect_text(r->err, "only the rows left from table mode");
    json_decref(out_json());
    expect_code(cli_run(fx, "outbox", "mode", "table", "--json", NULL), 0);
    doc = out_json();
    assert_string_equal(json_string_value(json_object_get(doc, "previous")), "messages");
    assert_true(json_is_true(json_object_get(doc, "changed")));
    json_decref(doc);
}

/* ---- arguments ------------------------------------------------------------ */

static void bad_arguments_are_usage_errors(void **state)
{
    (void)state;
    expect_usage_error(cli_run(NULL, NULL), "missing command");
    expect_usage_error(cli_run(NULL, "bogus", NULL), "unknown command \"bogus\"");
    expect_usage_error(cli_run(NULL, "outbox", NULL), "missing command");
    expect_usage_error(cli_run(NULL, "outbox", "bogus", NULL), "unknown command \"bogus\"");
    expect_usage_error(cli_run(NULL, "monitor", "--max-outbox-age", "5x", NULL),
                       "--max-outbox-age: bad duration \"5x\"");
    expect_usage_error(cli_run(NULL, "outbox", "purge", "--dispatched", "--older-than", "0s", NULL),
                       "bad duration \"0s\"");
    expect_usage_error(cli_run(NULL, "outbox", "purge", "--dispatched", NULL),
                       "--older-than DURATION is required");
    expect_usage_error(cli_run(NULL, "inbox", "purge", "--dispatched", "--older-than", "1d", NULL),
                       "unknown option --dispatched");
    expect_usage_error(cli_run(NULL, "outbox", "dispatch", NULL), "--id ID or --older-than");
    expect_usage_error(cli_run(NULL, "outbox", "dispatch", "--id", "x", "--older-than", "1s", NULL),
                       "either");
    expect_usage_error(cli_run(NULL, "outbox", "list", "--limit", "abc", NULL), "--limit");
    expect_usage_error(cli_run(NULL, "outbox", "list", "--limit", "0", NULL), "--limit");
    expect_usage_error(cli_run(NULL, "outbox", "list", "--nope", NULL), "unknown option --nope");
    expect_usage_error(cli_run(NULL, "outbox", "list", "--topic", NULL), "needs a value");
    expect_usage_error(cli_run(NULL, "outbox", "list", "extra", NULL), "unexpected argument");
    expect_usage_error(cli_run(NULL, "outbox", "status", NULL), "TXMSG_DATABASE_URL");
    expect_usage_error(cli_run(NULL, "dlq", "list", NULL), "missing QUEUE");
    expect_usage_error(cli_run(NULL, "dlq", "show", "q1", NULL), "missing ID");
    expect_usage_error(cli_run(NULL, "dlq", "purge", "q1", "q2", NULL), "unexpected argument");
    expect_usage_error(cli_run(NULL, "dlq", "redrive", "q1", NULL), "TXMSG_BROKER_URL");
    expect_usage_error(cli_run(NULL, "outbox", "mode", "rows", NULL), "unknown mode \"rows\"");
    expect_usage_error(cli_run(NULL, "outbox", "mode", "table", "messages", NULL), "one mode");
    expect_usage_error(cli_run(NULL, "monitor", NULL), "nothing to check");
    expect_usage_error(cli_run(NULL, "monitor", "--max-slot-wal", "5x", NULL),
                       "--max-slot-wal: bad size \"5x\"");
    expect_usage_error(cli_run(NULL, "monitor", "--max-slot-wal", "1GB", "--database-url",
                               "sqlite:/nonexistent-dir/x.db", NULL),
                       "PostgreSQL only");
    expect_usage_error(cli_run(NULL, "monitor", "--max-dlq-depth", "0", NULL), "go together");
    expect_usage_error(cli_run(NULL, "monitor", "--max-dlq-depth", "-1", "--queue", "q", NULL),
                       "--max-dlq-depth");
    expect_usage_error(cli_run(NULL, "-x", NULL), "unknown option -x");
    expect_usage_error(cli_run(NULL, "dlq", "groups", NULL), "missing QUEUE");
    expect_usage_error(cli_run(NULL, "dlq", "redrive", "q1", "--group", "xyz", NULL),
                       "12 hex digits");
    expect_usage_error(cli_run(NULL, "dlq", "redrive", "q1", "--rate", "0", NULL), "--rate");
    expect_usage_error(cli_run(NULL, "dlq", "redrive", "q1", "--rate", "5x", NULL), "--rate");
    expect_usage_error(
        cli_run(NULL, "dlq", "redrive", "q1", "--id", "m", "--group", "0123456789ab", NULL),
        "--id goes alone");
    expect_usage_error(cli_run(NULL, "dlq", "purge", "q1", "--yes", NULL), "--yes goes with");
    expect_usage_error(cli_run(NULL, "dlq", "list", "q1", "--rate", "5", NULL),
                       "unknown option --rate");
    expect_usage_error(cli_run(NULL, "trace", NULL), "missing CORRELATION_ID");
    expect_usage_error(cli_run(NULL, "trace", "c1", NULL), "TXMSG_DATABASE_URL");
    expect_usage_error(cli_run(NULL, "trace", "c1", "c2", NULL), "one CORRELATION_ID");
    expect_usage_error(cli_run(NULL, "trace", "c1", "--service", "orders", NULL),
                       "NAME=DATABASE_URL");
    expect_usage_error(cli_run(NULL, "trace", "c1", "--service", "a b=sqlite:x", NULL),
                       "characters other than");
    expect_usage_error(cli_run(NULL, "trace", "c1", "--service", "a=", NULL), "no database URL");
    expect_usage_error(
        cli_run(NULL, "trace", "c1", "--service", "a=sqlite:x", "--service", "a=sqlite:y", NULL),
        "given twice");
    expect_usage_error(cli_run(NULL, "trace", "c1", "--limit", "0", NULL), "--limit");
    cli_result *r =
        cli_run(NULL, "outbox", "status", "--database-url", "sqlite:/nonexistent-dir/x.db", NULL);
    expect_code(r, 1);
    expect_text(r->err, "/nonexistent-dir/x.db");
    expect_usage_error(cli_run(NULL, "outbox", "--json", "status", NULL),
                       "options go after the command");
    r = cli_run(NULL, "dlq", "list", "q", "--broker-url", "embedded:/nonexistent-dir/b.db", NULL);
    expect_code(r, 1);
    expect_text(r->err, "/nonexistent-dir/b.db");
    r = cli_run(NULL, "outbox", "status", "--database-url", "mysql://x", NULL);
    expect_code(r, 1);
    expect_text(r->err, "cannot open database");
}

static void help_works_on_every_subcommand(void **state)
{
    (void)state;
    static const char *const cmds[][3] = {
        {"--help", NULL, NULL},        {"-h", NULL, NULL},
        {"outbox", "--help", NULL},    {"outbox", "status", "--help"},
        {"outbox", "list", "--help"},  {"outbox", "dispatch", "--help"},
        {"outbox", "purge", "--help"}, {"inbox", "--help", NULL},
        {"inbox", "purge", "--help"},  {"dlq", "-h", NULL},
        {"dlq", "list", "--help"},     {"dlq", "show", "--help"},
        {"dlq", "redrive", "--help"},  {"dlq", "purge", "-h"},
        {"monitor", "--help", NULL},   {"monitor", "-h", NULL},
        {"outbox", "mode", "--help"},  {"trace", "--help", NULL},
        {"dlq", "groups", "--help"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        cli_result *r = cli_run(NULL, cmds[i][0], cmds[i][1], cmds[i][2], NULL);
        expect_code(r, 0);
        expect_text(r->out, "usage: txmsg");
        assert_string_equal(r->err, "");
    }
}

int main(void)
{
    scratch_dir = txm_test_mkdtemp();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_arguments_are_usage_errors),
        cmocka_unit_test(help_works_on_every_subcommand),
        CLI_TESTS(stuck_messages_fail_monitor_and_dispatch_delivers_them_once),
        CLI_TESTS(status_and_monitor_follow_a_running_relay),
        {"status_and_monitor_follow_a_running_relay/postgresql-messages+nats",
         status_and_monitor_follow_a_running_relay, txm_relay_setup, cli_teardown,
         (void *)&txm_combo_pgmsg_nats},
        {"monitor_max_slot_wal_checks_the_slot/postgresql+embedded",
         monitor_max_slot_wal_checks_the_slot, txm_relay_setup, cli_teardown,
         (void *)&txm_combo_pg_embedded},
        CLI_TESTS(outbox_mode_shows_sets_and_is_read_at_open),
        CLI_TESTS(outbox_purge_removes_only_old_dispatched_messages),
        CLI_TESTS(inbox_purge_removes_only_old_records),
        CLI_TESTS(purge_every_repeats_until_sigterm),
        CLI_TESTS(failing_handler_fills_dlq_and_redrive_processes_it),
        CLI_TESTS(trace_follows_a_flow_across_two_services),
        {"dlq_groups_redrive_and_purge_by_cause/sqlite+embedded",
         dlq_groups_redrive_and_purge_by_cause, txm_relay_setup, cli_teardown,
         (void *)&txm_combo_sqlite_embedded},
        {"dlq_groups_redrive_and_purge_by_cause/sqlite+nats", dlq_groups_redrive_and_purge_by_cause,
         txm_relay_setup, cli_teardown, (void *)&txm_combo_sqlite_nats},
        {"trace_follows_a_flow_across_two_services/postgresql-messages+nats",
         trace_follows_a_flow_across_two_services, txm_relay_setup, cli_teardown,
         (void *)&txm_combo_pgmsg_nats},
        {"sqlite_cursor_is_the_dispatch_mark/sqlite+embedded", sqlite_cursor_is_the_dispatch_mark,
         txm_relay_setup, cli_teardown, (void *)&txm_combo_sqlite_embedded},
        {"sqlite_cursor_is_the_dispatch_mark/sqlite+nats", sqlite_cursor_is_the_dispatch_mark,
         txm_relay_setup, cli_teardown, (void *)&txm_combo_sqlite_nats},
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    txm_test_rmdir(scratch_dir);
    free(scratch_dir);
    return failed;
}
