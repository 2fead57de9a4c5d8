/* txmsg console as its users meet it: the real binary, started as a child
 * process against real databases and a real broker (SQLite + embedded,
 * PostgreSQL + NATS), spoken to over HTTP. Rows are made with the library,
 * as services make them. */
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
#include <jansson.h>

#include "testhttp.h"
#include "testproc.h"
#include "testrelay.h"
#include "txmsg/admin.h"
#include "txmsg/txmsg.h"

#define TOKEN "test-token-0123456789"
#define HTTP_TIMEOUT_MS 15000

/* One running console. */
typedef struct console_proc {
    pid_t pid;
    int port;
    char host[64]; /* "Host: 127.0.0.1:PORT" */
} console_proc;

/* A test's stack: the relay fixture's service database (service "a") and
 * broker, plus a second service database ("b"). */
typedef struct stack {
    txm_relay_fixture *fx;
    char *b_url;
    txm_db *b_db;
    char log[700];
} stack;

/* What a failed assertion would leave behind, for teardown: the consoles
 * still running and the stack of the test. */
#define RUNNING_MAX 8
static pid_t live_consoles[RUNNING_MAX];
static size_t n_live_consoles;
static stack *current;

static stack *stack_get(void **state)
{
    txm_relay_fixture *fx = txm_relay_get(state); /* skips an unavailable combo */
    stack *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->fx = fx;
    assert_int_equal(txm_testdb_open(fx->combo.db, NULL, &s->b_url, &s->b_db), 0);
    assert_non_null(s->b_db);
    snprintf(s->log, sizeof s->log, "%s/console.log", fx->dir);
    current = s;
    return s;
}

/* Stops what a test left running (after a failure) and drops its second
 * database, then the relay fixture's teardown. */
static int teardown(void **state)
{
    for (size_t i = 0; i < n_live_consoles; i++)
        txm_proc_kill(live_consoles[i], SIGKILL);
    n_live_consoles = 0;
    if (current != NULL) {
        txm_testdb_close(current->fx->combo.db, current->b_url, current->b_db);
        free(current);
        current = NULL;
    }
    return txm_relay_teardown(state);
}

/* Starts the console on a free port with extra arguments (NULL-ended) and
 * the token (NULL: none) and waits until it answers. */
static void console_start(stack *s, console_proc *c, const char *token, ...)
{
    c->port = txm_test_free_port();
    char listen[64], svc_a[1100], svc_b[1100], env_token[128];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", c->port);
    snprintf(c->host, sizeof c->host, "Host: 127.0.0.1:%d", c->port);
    snprintf(svc_a, sizeof svc_a, "a=%s", s->fx->db_url);
    snprintf(svc_b, sizeof svc_b, "b=%s", s->b_url);
    char *argv[20] = {TXM_CLI_BIN,  "console",   "--listen", listen,     "--service",
                      svc_a,        "--service", svc_b,      "--broker", s->fx->broker_url,
                      "--interval", "200ms"};
    int argc = 12;
    va_list ap;
    va_start(ap, token);
    for (char *a = va_arg(ap, char *); a != NULL && argc < 19; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    snprintf(env_token, sizeof env_token, "TXMSG_CONSOLE_TOKEN=%s", token != NULL ? token : "");
    char *env[] = {env_token, NULL};
    c->pid = txm_proc_start(TXM_CLI_BIN, argv, env, s->log);
    assert_true(c->pid > 0);
    assert_true(n_live_consoles < RUNNING_MAX);
    live_consoles[n_live_consoles++] = c->pid;
    const char *headers[] = {c->host, NULL};
    for (long long until = txm_test_now_ms() + 15000; txm_test_now_ms() < until;) {
        txm_testhttp_response r = {0};
        int rc = txm_testhttp_request("GET", "127.0.0.1", c->port, "/api/jobs", headers, NULL, 0,
                                      1000, &r);
        int status = r.status;
        txm_testhttp_response_fini(&r);
        if (rc == 0 && status == 200)
            return;
        txm_test_sleep_ms(50);
    }
    fail_msg("the console did not answer on port %d (log %s)", c->port, s->log);
}

/* SIGTERM: the console must stop and exit 0 (under ASan: without leaks). */
static void console_stop(console_proc *c)
{
    for (size_t i = 0; i < n_live_consoles; i++)
        if (live_consoles[i] == c->pid)
            live_consoles[i] = live_consoles[--n_live_consoles];
    int status = txm_proc_kill(c->pid, SIGTERM);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* One request; the answer's JSON (or NULL when not JSON) and status. */
static json_t *call(const console_proc *c, const char *method, const char *path, const char *token,
                    const char *body, int *status)
{
    char tok[160];
    snprintf(tok, sizeof tok, "X-Txmsg-Token: %s", token != NULL ? token : "");
    const char *headers[] = {c->host, token != NULL ? tok : NULL, NULL};
    txm_testhttp_response r = {0};
    int rc = txm_testhttp_request(method, "127.0.0.1", c->port, path, headers, body,
                                  body != NULL ? strlen(body) : 0, HTTP_TIMEOUT_MS, &r);
    assert_int_equal(rc, 0);
    *status = r.status;
    const char *type = txm_testhttp_header_get(&r, "Content-Type");
    json_t *doc = type != NULL && strcmp(type, "application/json") == 0
                      ? json_loadb(r.body, r.body_len, 0, NULL)
                      : NULL;
    /* Every answer of the console carries the security headers. */
    const char *csp = txm_testhttp_header_get(&r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_string_equal(txm_testhttp_header_get(&r, "X-Content-Type-Options"), "nosniff");
    txm_testhttp_response_fini(&r);
    return doc;
}

/* call, asserting the status; returns the document (the caller's). */
static json_t *expect(const console_proc *c, const char *method, const char *path,
                      const char *token, const char *body, int want)
{
    int status = 0;
    json_t *doc = call(c, method, path, token, body, &status);
    if (status != want) {
        char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        fail_msg("%s %s: %d, want %d: %s", method, path, status, want, text ? text : "");
    }
    assert_non_null(doc);
    return doc;
}

/* expect for an error answer: the status and its "error" code. */
static void expect_error(const console_proc *c, const char *method, const char *path,
                         const char *token, const char *body, int want, const char *code)
{
    json_t *doc = expect(c, method, path, token, body, want);
    assert_string_equal(json_string_value(json_object_get(doc, "error")), code);
    json_decref(doc);
}

static json_t *find_named(json_t *arr, const char *key, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, key)), name) == 0)
            return v;
    }
    return NULL;
}

/* An integer member path of the overview: services/<name>/<a>/<b>. */
static json_int_t service_figure(json_t *overview, const char *svc, const char *a, const char *b)
{
    json_t *s = find_named(json_object_get(overview, "services"), "name", svc);
    assert_non_null(s);
    return json_integer_value(json_object_get(json_object_get(s, a), b));
}

static json_t *queue_of(json_t *overview, const char *queue)
{
    json_t *q = find_named(json_object_get(overview, "queues"), "name", queue);
    assert_non_null(q);
    return q;
}

/* Commits one outbox message in db (source src) with the correlation id
 * and payload; its id goes to id_out. */
static void publish_outbox(txm_db *db, const char *src, const char *topic, const char *corr,
                           const char *payload, char *id_out)
{
    char id[TXM_UUID_LEN + 1];
    assert_int_equal(txm_uuid_v7(id, NULL), TXM_OK);
    txm_msg *m = NULL;
    assert_int_equal(
        txm_msg_new_with(id, src, topic, "agg-1", corr, payload, txm_now_us(), &m, NULL), TXM_OK);
    txm_uow *uow = NULL;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &m, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    memcpy(id_out, id, sizeof id);
}

/* Records in db's inbox that sub processed msg (as the consumer runtime). */
static void record_inbox(txm_db *db, const char *sub, const txm_msg *msg)
{
    txm_uow *uow = NULL;
    bool fresh = false;
    assert_int_equal(txm_uow_begin(db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_inbox_save_msgs(uow, sub, &msg, 1, &fresh, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    assert_true(fresh);
}

static void declare(txm_transport *t, char *topic, char *queue, size_t len)
{
    txm_test_unique("con-t", topic, len);
    txm_test_unique("con-q", queue, len);
    assert_int_equal(txm_transport_declare_topic(t, topic, NULL), TXM_OK);
    assert_int_equal(txm_transport_declare_subscription(t, topic, queue, NULL, NULL), TXM_OK);
}

/* The last error of dead letter i of a batch: the cause, then ids and
 * numbers that differ from one message to the next. */
static void reason_of(const char *cause, size_t i, char *out, size_t len)
{
    snprintf(out, len, "%s: order 0193a7c2-5f1e-7c3a-9a51-2f0c8d4e%04u, limit %u", cause,
             (unsigned)(1000 + i), (unsigned)(7 * i));
}

/* Publishes n messages with payload to topic and dead-letters them from
 * queue, each with the reason reason_of(cause, its index). */
static void dead_letter(txm_transport *t, const char *topic, const char *queue, size_t n,
                        const char *payload, const char *cause)
{
    for (size_t i = 0; i < n; i++) {
        txm_msg *m = NULL;
        assert_int_equal(txm_msg_new(topic, "agg-1", NULL, payload, &m, NULL), TXM_OK);
        const txm_msg *one = m;
        assert_int_equal(txm_transport_publish_msgs(t, &one, 1, NULL, NULL), TXM_OK);
        txm_msg_free(m);
    }
    for (size_t done = 0; done < n;) {
        txm_delivery **list = NULL;
        size_t got = 0;
        assert_int_equal(txm_transport_receive(t, queue, n - done, 5000, &list, &got, NULL),
                         TXM_OK);
        assert_true(got > 0);
        for (size_t k = 0; k < got; k++) {
            char reason[256];
            reason_of(cause, done++, reason, sizeof reason);
            assert_int_equal(txm_transport_dead_letter(t, list[k], reason, NULL), TXM_OK);
        }
        txm_delivery_list_free(list, got);
    }
}

/* ---- tests ---- */

/* Receives up to n messages of queue (waiting up to 5 s for each batch),
 * records each in service b's inbox for the queue, as its consumer would,
 * and acknowledges it. Returns how many. */
static size_t consume(stack *s, const char *queue, size_t n)
{
    size_t done = 0;
    for (long long until = txm_test_now_ms() + 5000; done < n && txm_test_now_ms() < until;) {
        txm_delivery **list = NULL;
        size_t got = 0;
        assert_int_equal(txm_transport_receive(s->fx->t, queue, n - done, 1000, &list, &got, NULL),
                         TXM_OK);
        for (size_t k = 0; k < got; k++) {
            txm_msg *m = NULL;
            size_t len = 0;
            const char *body = txm_delivery_body(list[k], &len);
            assert_int_equal(txm_msg_decode(body, len, &m, NULL), TXM_OK);
            record_inbox(s->b_db, queue, m);
            txm_msg_free(m);
            assert_int_equal(txm_transport_ack(s->fx->t, list[k], NULL), TXM_OK);
        }
        txm_delivery_list_free(list, got);
        done += got;
    }
    return done;
}

/* Array member key of doc has n entries. */
static void expect_count(json_t *doc, const char *key, size_t n)
{
    assert_int_equal(json_array_size(json_object_get(doc, key)), n);
    json_decref(doc);
}

/* The outbox list pages by sequence and filters by state, topic and
 * aggregate; a message's envelope keeps its payload as it was. ids: the
 * three dispatched messages of topic. */
static void outbox_pages_and_filters(const console_proc *c, stack *s, const char *topic,
                                     char ids[3][TXM_UUID_LEN + 1])
{
    char path[512], id[TXM_UUID_LEN + 1];
    publish_outbox(s->fx->db, "a", topic, NULL, "{\"note\":\"<script>alert(1)</script>\"}", id);
    snprintf(path, sizeof path, "/api/outbox?service=a&topic=%s&limit=2", topic);
    json_t *page = expect(c, "GET", path, NULL, NULL, 200);
    json_t *msgs = json_object_get(page, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "message_id")),
                        ids[0]);
    json_int_t next = json_integer_value(json_object_get(page, "next_after_seq"));
    json_decref(page);
    snprintf(path, sizeof path, "/api/outbox?service=a&topic=%s&limit=2&after_seq=%lld", topic,
             (long long)next);
    page = expect(c, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(page, "messages")), 2);
    assert_true(json_is_null(json_object_get(page, "next_after_seq")) ||
                json_array_size(json_object_get(page, "messages")) == 2);
    json_decref(page);
    snprintf(path, sizeof path, "/api/outbox?service=a&topic=%s&state=dispatched", topic);
    expect_count(expect(c, "GET", path, NULL, NULL, 200), "messages", 3);
    snprintf(path, sizeof path, "/api/outbox?service=a&topic=%s&state=pending", topic);
    expect_count(expect(c, "GET", path, NULL, NULL, 200), "messages", 1);
    snprintf(path, sizeof path, "/api/outbox?service=a&topic=%s&aggregate_id=agg-2", topic);
    expect_count(expect(c, "GET", path, NULL, NULL, 200), "messages", 0);
    snprintf(path, sizeof path, "/api/outbox?service=a&topic=%s&older_than=1h", topic);
    expect_count(expect(c, "GET", path, NULL, NULL, 200), "messages", 0);
    snprintf(path, sizeof path, "/api/outbox/a/%s", id);
    json_t *m = expect(c, "GET", path, NULL, NULL, 200);
    json_t *env = json_object_get(m, "envelope");
    assert_string_equal(json_string_value(json_object_get(env, "id")), id);
    assert_string_equal(json_string_value(json_object_get(json_object_get(env, "data"), "note")),
                        "<script>alert(1)</script>");
    json_decref(m);
    snprintf(path, sizeof path, "/api/outbox/a/%s/dispatch", id);
    json_decref(expect(c, "POST", path, TOKEN, NULL, 200));
}

static void overview_follows_traffic(void **state)
{
    stack *s = stack_get(state);
    char topic[96], queue[96], ids[3][TXM_UUID_LEN + 1];
    declare(s->fx->t, topic, queue, sizeof topic);
    console_proc c;
    console_start(s, &c, TOKEN, NULL);
    int status = 0;
    json_t *o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    json_int_t before = service_figure(o, "a", "outbox", "not_dispatched");
    assert_int_equal(json_integer_value(json_object_get(queue_of(o, queue), "depth")), 0);
    assert_true(json_is_true(json_object_get(json_object_get(o, "actions"), "enabled")));
    json_decref(o);

    /* Published rows wait in the outbox: the backlog grows. */
    for (int i = 0; i < 3; i++)
        publish_outbox(s->fx->db, "a", topic, NULL, "{\"n\":1}", ids[i]);
    o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    assert_int_equal(service_figure(o, "a", "outbox", "not_dispatched"), before + 3);
    assert_false(json_is_null(json_object_get(
        json_object_get(find_named(json_object_get(o, "services"), "name", "a"), "outbox"),
        "oldest_age_ms")));
    json_decref(o);

    /* Dispatched, they leave the outbox and wait in the queue. */
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, "/api/outbox/a/%s/dispatch", ids[i]);
        json_decref(expect(&c, "POST", path, TOKEN, NULL, 200));
        expect_error(&c, "POST", path, TOKEN, NULL, 409, "ALREADY_DISPATCHED");
    }
    o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    assert_int_equal(service_figure(o, "a", "outbox", "not_dispatched"), before);
    assert_int_equal(json_integer_value(json_object_get(queue_of(o, queue), "depth")), 3);
    assert_true(json_is_null(json_object_get(queue_of(o, queue), "handled_per_second")));
    json_decref(o);

    outbox_pages_and_filters(&c, s, topic, ids);

    /* Consumed: service b records them in its inbox for the queue (four:
     * the three above and the one outbox_pages_and_filters dispatched). */
    assert_int_equal(consume(s, queue, 4), 4);
    o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    json_t *q = queue_of(o, queue);
    assert_int_equal(json_integer_value(json_object_get(q, "depth")), 0);
    assert_true(json_real_value(json_object_get(q, "handled_per_second")) > 0.39);
    json_decref(o);

    /* The sampler keeps a history of the same figures. */
    txm_test_sleep_ms(500);
    o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    json_t *h = json_object_get(o, "history");
    size_t n = json_array_size(json_object_get(h, "at_ms"));
    assert_true(n >= 2);
    json_t *nd =
        json_object_get(json_object_get(json_object_get(h, "services"), "a"), "not_dispatched");
    assert_int_equal(json_array_size(nd), n);
    assert_int_equal(json_integer_value(json_array_get(nd, n - 1)), before);
    json_t *depth = json_object_get(json_object_get(json_object_get(h, "queues"), queue), "depth");
    assert_int_equal(json_array_size(depth), n);
    json_decref(o);
    (void)status;
    console_stop(&c);
}

/* Removes "at_ms" from each entry: the CLI's document has none. */
static void drop_at_ms(json_t *doc)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "entries"), i, e)
    {
        assert_true(json_is_integer(json_object_get(e, "at_ms")));
        json_object_del(e, "at_ms");
    }
}

static json_t *cli_trace_json(stack *s, const char *corr)
{
    char cmd[4096], out[600];
    snprintf(out, sizeof out, "%s/trace.json", s->fx->dir);
    snprintf(cmd, sizeof cmd, "'%s' trace '%s' --service 'a=%s' --service 'b=%s' --json > '%s'",
             TXM_CLI_BIN, corr, s->fx->db_url, s->b_url, out);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(pclose(p), 0);
    json_t *doc = json_load_file(out, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static void trace_orders_a_saga_across_two_services(void **state)
{
    stack *s = stack_get(state);
    char corr[TXM_UUID_LEN + 1], created[TXM_UUID_LEN + 1], reserved[TXM_UUID_LEN + 1];
    assert_int_equal(txm_uuid_v7(corr, NULL), TXM_OK);
    /* a publishes order--created; b processes it and publishes its answer. */
    publish_outbox(s->fx->db, "a", "order--created", corr, "{\"id\":1}", created);
    txm_outbox_entry *e = NULL;
    assert_int_equal(txm_outbox_get(s->fx->db, created, &e, NULL), TXM_OK);
    txm_test_sleep_ms(5);
    record_inbox(s->b_db, "customers-order-events", txm_outbox_entry_msg(e));
    txm_outbox_entry_free(e);
    txm_test_sleep_ms(5);
    publish_outbox(s->b_db, "b", "customer--credit-reserved", corr, "{\"id\":1}", reserved);

    console_proc c;
    console_start(s, &c, NULL, NULL);
    char path[128];
    snprintf(path, sizeof path, "/api/trace/%s", corr);
    json_t *doc = expect(&c, "GET", path, NULL, NULL, 200);
    json_t *entries = json_object_get(doc, "entries");
    assert_int_equal(json_array_size(entries), 3);
    static const char *const want[3][3] = {{"a", "outbox", "order--created"},
                                           {"b", "inbox", "order--created"},
                                           {"b", "outbox", "customer--credit-reserved"}};
    json_int_t last = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(entries, i);
        assert_string_equal(json_string_value(json_object_get(x, "service")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(x, "kind")), want[i][1]);
        assert_string_equal(json_string_value(json_object_get(x, "topic")), want[i][2]);
        json_int_t at = json_integer_value(json_object_get(x, "at_ms"));
        assert_true(at >= last);
        last = at;
    }
    json_t *waiting = json_object_get(doc, "waiting");
    assert_int_equal(json_array_size(waiting), 1);
    assert_string_equal(json_string_value(json_array_get(waiting, 0)), reserved);

    /* The same document as txmsg trace --json, plus at_ms. */
    json_t *cli = cli_trace_json(s, corr);
    drop_at_ms(doc);
    assert_true(json_equal(doc, cli));
    json_decref(cli);
    json_decref(doc);
    expect_error(&c, "GET", "/api/trace/x?limit=0", NULL, NULL, 400, "INVALID_PARAMETER");
    console_stop(&c);
}

/* The group of the n messages with one cause, from GET .../dlq/groups. */
static json_t *group_with_count(json_t *groups_doc, json_int_t n)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(groups_doc, "groups"), i, g)
    {
        if (json_integer_value(json_object_get(g, "count")) == n)
            return g;
    }
    return NULL;
}

/* Polls the job at path until its state is not "running" (or moved
 * reaches at_least_moved when that is > 0); returns its document. */
static json_t *await_job(const console_proc *c, const char *path, json_int_t at_least_moved)
{
    for (long long start = txm_test_now_ms();; txm_test_sleep_ms(20)) {
        json_t *job = expect(c, "GET", path, NULL, NULL, 200);
        bool running = strcmp(json_string_value(json_object_get(job, "state")), "running") == 0;
        if (!running || (at_least_moved > 0 &&
                         json_integer_value(json_object_get(job, "moved")) >= at_least_moved))
            return job;
        json_decref(job);
        assert_true(txm_test_now_ms() - start < 30000);
    }
}

/* A slow redrive of the 3 dead letters matching "alert(" is cancelled
 * after its first message; a purge of their group removes the other two. */
static void cancel_then_purge(const console_proc *c, const char *queue)
{
    char path[256], body[128], job_path[128], group[32];
    snprintf(path, sizeof path, "/api/queues/%s/dlq/redrive", queue);
    json_t *job = expect(c, "POST", path, TOKEN, "{\"match\":\"alert(\",\"rate\":0.1}", 202);
    snprintf(job_path, sizeof job_path, "/api/jobs/%s",
             json_string_value(json_object_get(job, "id")));
    json_decref(job);
    json_decref(await_job(c, job_path, 1)); /* the first goes at once, the next in 10 s */
    snprintf(path, sizeof path, "%s/cancel", job_path);
    expect_error(c, "POST", path, NULL, NULL, 403, "FORBIDDEN");
    json_decref(expect(c, "POST", path, TOKEN, NULL, 200));
    job = await_job(c, job_path, 0);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "cancelled");
    assert_int_equal(json_integer_value(json_object_get(job, "moved")), 1);
    assert_string_equal(json_string_value(json_object_get(job, "match")), "alert(");
    json_decref(job);
    json_t *jobs = expect(c, "GET", "/api/jobs", NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(jobs, "jobs")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(jobs, "jobs"), 0), "state")),
                        "cancelled"); /* newest first */
    json_decref(jobs);

    snprintf(path, sizeof path, "/api/queues/%s/dlq/groups", queue);
    json_t *groups = expect(c, "GET", path, NULL, NULL, 200);
    json_t *g = group_with_count(groups, 2);
    assert_non_null(g);
    snprintf(group, sizeof group, "%s", json_string_value(json_object_get(g, "id")));
    json_decref(groups);
    snprintf(path, sizeof path, "/api/queues/%s/dlq/purge", queue);
    snprintf(body, sizeof body, "{\"group\":\"%s\",\"confirm\":\"%s\"}", group, group);
    json_t *purged = expect(c, "POST", path, TOKEN, body, 200);
    assert_int_equal(json_integer_value(json_object_get(purged, "purged")), 2);
    json_decref(purged);
    expect_error(c, "POST", path, TOKEN, body, 404, "UNKNOWN_GROUP");
    snprintf(path, sizeof path, "/api/queues/%s/dlq/groups", queue);
    groups = expect(c, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(groups, "groups")), 0);
    json_decref(groups);
}

static void dlq_groups_and_a_paced_group_redrive(void **state)
{
    stack *s = stack_get(state);
    char topic[96], queue[96], path[256], body[128];
    declare(s->fx->t, topic, queue, sizeof topic);
    dead_letter(s->fx->t, topic, queue, 50, "{\"n\":1}", "credit refused");
    dead_letter(s->fx->t, topic, queue, 3, "{\"note\":\"<script>alert(1)</script>\"}",
                "bad <script>alert(document.cookie)</script>");
    console_proc c;
    console_start(s, &c, TOKEN, NULL);

    /* The same error with other ids and numbers is one group. */
    snprintf(path, sizeof path, "/api/queues/%s/dlq/groups", queue);
    json_t *groups = expect(&c, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(groups, "groups")), 2);
    assert_int_equal(json_integer_value(json_object_get(groups, "scanned")), 53);
    json_t *big = group_with_count(groups, 50);
    assert_non_null(big);
    char group[32];
    snprintf(group, sizeof group, "%s", json_string_value(json_object_get(big, "id")));
    json_decref(groups);

    /* Strings from messages come back as JSON strings, unchanged. */
    snprintf(path, sizeof path, "/api/queues/%s/dlq?limit=1000", queue);
    json_t *list = expect(&c, "GET", path, NULL, NULL, 200);
    json_t *msgs = json_object_get(list, "messages");
    assert_int_equal(json_array_size(msgs), 53);
    json_t *last = json_array_get(msgs, 52);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(last, "body"), "data"), "note")),
                        "<script>alert(1)</script>");
    assert_non_null(strstr(json_string_value(json_object_get(last, "last_error")), "<script>"));
    json_decref(list);

    /* A group redrive at 100 messages per second moves the 50 in about 0.5 s. */
    snprintf(path, sizeof path, "/api/queues/%s/dlq/redrive", queue);
    snprintf(body, sizeof body, "{\"group\":\"%s\",\"rate\":100}", group);
    long long start = txm_test_now_ms();
    json_t *job = expect(&c, "POST", path, TOKEN, body, 202);
    char job_path[128];
    snprintf(job_path, sizeof job_path, "/api/jobs/%s",
             json_string_value(json_object_get(job, "id")));
    json_decref(job);
    job = await_job(&c, job_path, 0);
    long long took = txm_test_now_ms() - start;
    assert_string_equal(json_string_value(json_object_get(job, "state")), "done");
    assert_int_equal(json_integer_value(json_object_get(job, "moved")), 50);
    json_decref(job);
    assert_true(took >= 400);

    /* The group is empty now; the other one is left. */
    snprintf(path, sizeof path, "/api/queues/%s/dlq?group=%s", queue, group);
    list = expect(&c, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(list, "messages")), 0);
    json_decref(list);
    snprintf(path, sizeof path, "/api/queues/%s/dlq/groups", queue);
    groups = expect(&c, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(groups, "groups")), 1);
    assert_non_null(group_with_count(groups, 3));
    json_decref(groups);
    json_t *o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(queue_of(o, queue), "dead_letters")), 3);
    assert_int_equal(json_integer_value(json_object_get(queue_of(o, queue), "depth")), 50);
    json_decref(o);
    cancel_then_purge(&c, queue);
    console_stop(&c);
}

/* Every action of the console, refused with code. */
static void actions_refused(const console_proc *c, const char *token, const char *id,
                            const char *queue, const char *group, const char *code)
{
    char path[256], body[128];
    snprintf(path, sizeof path, "/api/outbox/a/%s/dispatch", id);
    expect_error(c, "POST", path, token, NULL, 403, code);
    snprintf(path, sizeof path, "/api/queues/%s/dlq/redrive", queue);
    snprintf(body, sizeof body, "{\"group\":\"%s\"}", group);
    expect_error(c, "POST", path, token, body, 403, code);
    snprintf(path, sizeof path, "/api/queues/%s/dlq/purge", queue);
    snprintf(body, sizeof body, "{\"group\":\"%s\",\"confirm\":\"%s\"}", group, group);
    expect_error(c, "POST", path, token, body, 403, code);
    expect_error(c, "POST", "/api/jobs/1/cancel", token, NULL, 403, code);
}

/* The message is still not dispatched and the DLQ still has its member. */
static void nothing_changed(const console_proc *c, const char *id, const char *queue)
{
    char path[256];
    snprintf(path, sizeof path, "/api/outbox/a/%s", id);
    json_t *m = expect(c, "GET", path, NULL, NULL, 200);
    assert_true(json_is_false(json_object_get(m, "dispatched")));
    assert_string_equal(json_string_value(json_object_get(m, "message_id")), id);
    assert_non_null(json_object_get(m, "envelope"));
    json_decref(m);
    snprintf(path, sizeof path, "/api/queues/%s/dlq", queue);
    json_t *l = expect(c, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(l, "messages")), 1);
    json_decref(l);
}

static void bad_requests_get_clear_errors(const console_proc *c, const char *queue)
{
    static const char *const bad[][2] = {
        {"/api/outbox?service=a&limit=0", "limit"},
        {"/api/outbox?service=a&limit=abc", "limit"},
        {"/api/outbox?service=a&state=gone", "state"},
        {"/api/outbox?service=a&older_than=5x", "older_than"},
        {"/api/outbox?service=a&after_seq=-1", "after_seq"},
        {"/api/outbox", "service"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *e = expect(c, "GET", bad[i][0], NULL, NULL, 400);
        assert_string_equal(json_string_value(json_object_get(e, "error")), "INVALID_PARAMETER");
        assert_string_equal(json_string_value(json_object_get(e, "parameter")), bad[i][1]);
        json_decref(e);
    }
    expect_error(c, "GET", "/api/outbox?service=nope", NULL, NULL, 404, "UNKNOWN_SERVICE");
    expect_error(c, "GET", "/api/outbox/a/no-such-id", NULL, NULL, 404, "UNKNOWN_MESSAGE");
    expect_error(c, "GET", "/api/queues/no-such-queue/dlq/groups", NULL, NULL, 404,
                 "UNKNOWN_QUEUE");
    char path[256];
    snprintf(path, sizeof path, "/api/queues/%s/dlq?group=XYZ", queue);
    expect_error(c, "GET", path, NULL, NULL, 400, "INVALID_PARAMETER");
    /* Bad bodies, with the token: 400 naming the field, nothing starts. */
    snprintf(path, sizeof path, "/api/queues/%s/dlq/redrive", queue);
    static const char *const bodies[][2] = {
        {"{\"group\":\"0123456789ab\",\"rate\":0}", "rate"},
        {"{\"group\":\"0123456789ab\",\"rate\":\"fast\"}", "rate"},
        {"{\"group\":\"not-a-group\"}", "group"},
        {"{\"message_id\":\"x\",\"group\":\"0123456789ab\"}", "message_id"},
        {"{\"colour\":\"red\"}", "colour"},
        {"[1,2]", "body"},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        json_t *e = expect(c, "POST", path, TOKEN, bodies[i][0], 400);
        assert_string_equal(json_string_value(json_object_get(e, "error")), "INVALID_BODY");
        assert_string_equal(json_string_value(json_object_get(e, "field")), bodies[i][1]);
        json_decref(e);
    }
    snprintf(path, sizeof path, "/api/queues/%s/dlq/purge", queue);
    expect_error(c, "POST", path, TOKEN,
                 "{\"group\":\"0123456789ab\",\"confirm\":\"0123456789ac\"}", 400,
                 "CONFIRMATION_REQUIRED");
    json_t *jobs = expect(c, "GET", "/api/jobs", NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(jobs, "jobs")), 0);
    json_decref(jobs);
}

static void refused_actions_change_nothing(void **state)
{
    stack *s = stack_get(state);
    char topic[96], queue[96], id[TXM_UUID_LEN + 1];
    declare(s->fx->t, topic, queue, sizeof topic);
    publish_outbox(s->fx->db, "a", topic, NULL, "{\"n\":1}", id);
    dead_letter(s->fx->t, topic, queue, 1, "{\"n\":2}", "failed");
    char reason[256], fp[TXM_DLQ_FINGERPRINT_MAX + 1], group[TXM_DLQ_GROUP_ID_LEN + 1];
    reason_of("failed", 0, reason, sizeof reason);
    txm_dlq_fingerprint(reason, fp);
    txm_dlq_group_id(fp, group);

    console_proc c;
    console_start(s, &c, TOKEN, NULL);
    actions_refused(&c, NULL, id, queue, group, "FORBIDDEN");
    actions_refused(&c, "wrong-token", id, queue, group, "FORBIDDEN");
    actions_refused(&c, TOKEN "x", id, queue, group, "FORBIDDEN");
    /* Another site's page cannot reach the console through DNS rebinding. */
    int status = 0;
    json_t *e = NULL;
    {
        const char *headers[] = {"Host: evil.example:80", NULL};
        txm_testhttp_response r = {0};
        assert_int_equal(txm_testhttp_request("GET", "127.0.0.1", c.port, "/api/overview", headers,
                                              NULL, 0, HTTP_TIMEOUT_MS, &r),
                         0);
        status = r.status;
        e = json_loadb(r.body, r.body_len, 0, NULL);
        txm_testhttp_response_fini(&r);
    }
    assert_int_equal(status, 421);
    assert_string_equal(json_string_value(json_object_get(e, "error")), "MISDIRECTED");
    json_decref(e);
    bad_requests_get_clear_errors(&c, queue);
    nothing_changed(&c, id, queue);
    /* The page: built in (200 HTML) or not (404 JSON saying so). */
    json_t *page = call(&c, "GET", "/", NULL, NULL, &status);
    assert_true(status == 200 ||
                (status == 404 && page != NULL &&
                 strcmp(json_string_value(json_object_get(page, "error")), "NOT_BUILT_IN") == 0));
    json_decref(page);
    expect_error(&c, "GET", "/static/no-such-file.js", NULL, NULL, 404, "NOT_FOUND");
    console_stop(&c);

    console_start(s, &c, TOKEN, "--read-only", NULL);
    actions_refused(&c, TOKEN, id, queue, group, "READ_ONLY");
    json_t *o = expect(&c, "GET", "/api/overview", NULL, NULL, 200);
    assert_true(json_is_true(json_object_get(json_object_get(o, "actions"), "read_only")));
    json_decref(o);
    nothing_changed(&c, id, queue);
    console_stop(&c);

    console_start(s, &c, NULL, NULL);
    actions_refused(&c, TOKEN, id, queue, group, "ACTIONS_DISABLED");
    nothing_changed(&c, id, queue);
    console_stop(&c);
}

/* The two stacks: SQLite + embedded broker, PostgreSQL + NATS. */
#define STACKS(f)                                                                                  \
    {#f "/sqlite+embedded", f, txm_relay_setup, teardown, (void *)&txm_combo_sqlite_embedded},     \
    {                                                                                              \
#f "/postgresql+nats", f, txm_relay_setup, teardown, (void *)&txm_combo_pg_nats            \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        STACKS(overview_follows_traffic),
        STACKS(trace_orders_a_saga_across_two_services),
        STACKS(dlq_groups_and_a_paced_group_redrive),
        STACKS(refused_actions_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
