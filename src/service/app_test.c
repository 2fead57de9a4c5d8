/* Tests for the app runtime in src/service/app.c: an app on SQLite and the
 * embedded broker in a temporary folder, on an ephemeral port of
 * 127.0.0.1, spoken to with raw HTTP/1.1, stopped by request and by SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testproc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testbroker.h"
#include "txmsg/app.h"
#include "txmsg/txmsg.h"

/* ---- a minimal HTTP client: one GET per connection ---- */

/* GETs path from 127.0.0.1:port; returns the status and copies the body
 * (NUL-terminated, truncated to cap) into body. */
static int http_get(uint16_t port, const char *path, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof buf - 1 && (got = recv(fd, buf + len, sizeof buf - 1 - len, 0)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        assert_true(got > 0);
        len += (size_t)got;
    }
    buf[len] = '\0';
    close(fd);
    int status = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
    const char *sep = strstr(buf, "\r\n\r\n");
    assert_non_null(sep);
    snprintf(body, cap, "%s", sep + 4);
    return status;
}

/* ---- fixture: a folder with the database and the broker ---- */

typedef struct fixture {
    char *dir;
    char db_url[512];
    char broker_url[512];
    txm_app_options opts;
    FILE *log; /* the app's log lines go here, not to the test output */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = txm_test_mkdtemp();
    assert_non_null(f->dir);
    snprintf(f->db_url, sizeof f->db_url, "sqlite:%s/apptest.db", f->dir);
    snprintf(f->broker_url, sizeof f->broker_url, "embedded:%s/broker.db", f->dir);
    txm_app_options_init(&f->opts, "apptest", 9799);
    f->opts.port = 0;
    f->opts.database_url = f->db_url;
    f->opts.broker_url = f->broker_url;
    f->log = tmpfile();
    f->opts.log_stream = f->log;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    txm_test_rmdir(f->dir);
    free(f->dir);
    fclose(f->log);
    free(f);
    return 0;
}

static txm_app *open_app(fixture *f)
{
    txm_app *app = NULL;
    txm_error err;
    txm_status st = txm_app_open(&f->opts, &app, &err);
    if (st != TXM_OK)
        fail_msg("txm_app_open: %s", err.text);
    return app;
}

/* A handler that counts its calls in *ctx. */
static txm_status count_handler(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)uow;
    (void)msg;
    (void)err;
    (*(int *)ctx)++;
    return TXM_OK;
}

static void *run_thread(void *arg)
{
    txm_app *app = arg;
    txm_status st = txm_app_run(app, NULL);
    return (void *)(intptr_t)st;
}

/* ---- tests ---- */

static void app_serves_health_and_metrics_and_stops_on_request(void **state)
{
    fixture *f = *state;
    txm_app *app = open_app(f);
    int calls = 0;
    txm_error err;
    assert_int_equal(txm_app_subscribe(app, "app-test--created", "app-test--queue", count_handler,
                                       &calls, NULL, &err),
                     TXM_OK);
    assert_int_equal(txm_app_port(app), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_thread, app), 0);
    while (txm_app_port(app) == 0)
        txm_test_sleep_ms(10);
    uint16_t port = txm_app_port(app);
    char body[1 << 16];
    assert_int_equal(http_get(port, "/apptest/health", body, sizeof body), 200);
    assert_string_equal(body,
                        "{\"status\":\"ok\",\"database\":\"available\",\"broker\":\"available\"}");
    assert_int_equal(http_get(port, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "txmsg_consumer_processed_total{queue=\"app-test--queue\"} 0"));
    assert_non_null(strstr(body, "txmsg_consumer_duplicates_total{queue=\"app-test--queue\"} 0"));
    assert_non_null(strstr(body, "txmsg_consumer_failures_total{queue=\"app-test--queue\"} 0"));
    assert_non_null(
        strstr(body, "txmsg_consumer_dead_lettered_total{queue=\"app-test--queue\"} 0"));
    assert_non_null(strstr(body, "txmsg_dlq_depth{queue=\"app-test--queue\"} 0"));
    assert_non_null(strstr(body, "txmsg_outbox_not_dispatched 0"));
    assert_non_null(strstr(body, "txmsg_outbox_oldest_not_dispatched_age_seconds 0"));
    assert_non_null(strstr(body, "txmsg_db_busy_waits_total 0"));
    assert_int_equal(txm_promtool_check(body, strlen(body)), 0);
    txm_app_request_stop(app);
    void *ret = NULL;
    pthread_join(th, &ret);
    assert_int_equal((int)(intptr_t)ret, TXM_OK);
    txm_app_close(app);
}

/* A message published to the subscribed topic is handled, and the
 * counter and the outbox gauge follow. */
static void app_runs_handlers_and_counts_them(void **state)
{
    fixture *f = *state;
    txm_app *app = open_app(f);
    int calls = 0;
    txm_error err;
    assert_int_equal(txm_app_subscribe(app, "app-test--created", "app-test--queue", count_handler,
                                       &calls, NULL, &err),
                     TXM_OK);
    assert_int_equal(txm_app_start(app, &err), TXM_OK);
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new("app-test--created", "agg-1", NULL, "{}", &m, &err), TXM_OK);
    const txm_msg *list[] = {m};
    assert_int_equal(txm_transport_publish_msgs(txm_app_transport(app), list, 1, NULL, &err),
                     TXM_OK);
    txm_uow *uow = NULL;
    txm_msg *out = NULL;
    assert_int_equal(txm_msg_new("app-test--other", "agg-1", NULL, "{}", &out, &err), TXM_OK);
    assert_int_equal(txm_uow_begin(txm_app_db(app), &uow, &err), TXM_OK);
    assert_int_equal(txm_outbox_publish(uow, &out, &err), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, &err), TXM_OK);
    long long deadline = txm_test_now_ms() + 10000;
    while (calls == 0 && txm_test_now_ms() < deadline)
        txm_test_sleep_ms(20);
    assert_int_equal(calls, 1);
    char body[1 << 16];
    assert_int_equal(http_get(txm_app_port(app), "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "txmsg_consumer_processed_total{queue=\"app-test--queue\"} 1"));
    assert_non_null(strstr(body, "txmsg_outbox_not_dispatched 1"));
    assert_null(strstr(body, "txmsg_outbox_oldest_not_dispatched_age_seconds 0\n"));
    txm_msg_free(m);
    txm_app_close(app); /* stops first */
}

/* GETs /metrics until it has the line want (with its newline) or 10 s
 * passed; body keeps the last answer. */
static void wait_for_metric(uint16_t port, const char *want, char *body, size_t cap)
{
    long long deadline = txm_test_now_ms() + 10000;
    do {
        assert_int_equal(http_get(port, "/metrics", body, cap), 200);
        if (strstr(body, want) != NULL)
            return;
        txm_test_sleep_ms(20);
    } while (txm_test_now_ms() < deadline);
    fail_msg("no \"%s\" in /metrics:\n%s", want, body);
}

/* The value of the sample series in a /metrics body. */
static double metric_value(const char *body, const char *series)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = strstr(body, want);
    if (p == NULL)
        fail_msg("no %s in /metrics:\n%s", series, body);
    return strtod(p + strlen(want), NULL);
}

static void publish_created(txm_app *app, int n)
{
    txm_msg *msgs[8] = {NULL};
    const txm_msg *list[8];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "agg-%d", i);
        assert_int_equal(txm_msg_new("app-test--created", key, NULL, "{}", &msgs[i], NULL), TXM_OK);
        list[i] = msgs[i];
    }
    assert_int_equal(
        txm_transport_publish_msgs(txm_app_transport(app), list, (size_t)n, NULL, NULL), TXM_OK);
    for (int i = 0; i < n; i++)
        txm_msg_free(msgs[i]);
}

/* Handled messages show in the batch-size and handle-latency histograms:
 * three published one at a time make three batches of one; four more
 * published at once make batches whose sizes add up to four, whatever
 * way the lane cut them. Each handled message has one latency. */
static void app_metrics_have_batch_size_and_latency_histograms(void **state)
{
    fixture *f = *state;
    txm_app *app = open_app(f);
    int calls = 0;
    txm_error err;
    assert_int_equal(txm_app_subscribe(app, "app-test--created", "app-test--queue", count_handler,
                                       &calls, NULL, &err),
                     TXM_OK);
    assert_int_equal(txm_app_start(app, &err), TXM_OK);
    uint16_t port = txm_app_port(app);
    static char body[1 << 16];
    char want[128];
    for (int i = 1; i <= 3; i++) {
        publish_created(app, 1);
        snprintf(want, sizeof want,
                 "txmsg_consumer_processed_total{queue=\"app-test--queue\"} %d\n", i);
        wait_for_metric(port, want, body, sizeof body);
    }
    assert_non_null(strstr(body, "# HELP txmsg_consumer_batch_size Messages handled per committed "
                                 "batch (one unit of work).\n"
                                 "# TYPE txmsg_consumer_batch_size histogram\n"
                                 "txmsg_consumer_batch_size_bucket{queue=\"app-test--queue\","
                                 "le=\"1\"} 3\n"
                                 "txmsg_consumer_batch_size_bucket{queue=\"app-test--queue\","
                                 "le=\"2\"} 3\n"));
    assert_non_null(strstr(body, "\ntxmsg_consumer_batch_size_bucket{queue=\"app-test--queue\","
                                 "le=\"1024\"} 3\n"
                                 "txmsg_consumer_batch_size_bucket{queue=\"app-test--queue\","
                                 "le=\"+Inf\"} 3\n"
                                 "txmsg_consumer_batch_size_sum{queue=\"app-test--queue\"} 3\n"
                                 "txmsg_consumer_batch_size_count{queue=\"app-test--queue\"} 3\n"));
    assert_non_null(strstr(body, "# TYPE txmsg_consumer_handle_latency_seconds histogram\n"));
    const char *lat = "txmsg_consumer_handle_latency_seconds";
    char series[256];
    snprintf(series, sizeof series, "%s_bucket{queue=\"app-test--queue\",le=\"60\"}", lat);
    assert_true(metric_value(body, series) == 3); /* published a moment ago */
    snprintf(series, sizeof series, "%s_bucket{queue=\"app-test--queue\",le=\"+Inf\"}", lat);
    assert_true(metric_value(body, series) == 3);
    snprintf(series, sizeof series, "%s_count{queue=\"app-test--queue\"}", lat);
    assert_true(metric_value(body, series) == 3);
    snprintf(series, sizeof series, "%s_sum{queue=\"app-test--queue\"}", lat);
    double sum_s = metric_value(body, series);
    assert_true(sum_s >= 0 && sum_s < 3 * 60);
    publish_created(app, 4);
    wait_for_metric(port, "txmsg_consumer_processed_total{queue=\"app-test--queue\"} 7\n", body,
                    sizeof body);
    assert_true(metric_value(body, "txmsg_consumer_batch_size_sum{queue=\"app-test--queue\"}") ==
                7);
    double batches =
        metric_value(body, "txmsg_consumer_batch_size_count{queue=\"app-test--queue\"}");
    assert_true(batches >= 4 && batches <= 7);
    assert_true(metric_value(body, "txmsg_consumer_batch_size_bucket{queue=\"app-test--queue\","
                                   "le=\"+Inf\"}") == batches);
    snprintf(series, sizeof series, "%s_count{queue=\"app-test--queue\"}", lat);
    assert_true(metric_value(body, series) == 7);
    snprintf(series, sizeof series, "%s_bucket{queue=\"app-test--queue\",le=\"+Inf\"}", lat);
    assert_true(metric_value(body, series) == 7);
    assert_int_equal(calls, 7);
    assert_int_equal(txm_promtool_check(body, strlen(body)), 0);
    txm_app_close(app);
}

/* An undecodable message goes to the dead-letter queue at once, and
 * txmsg_dlq_depth and txmsg_consumer_dead_lettered_total count it. */
static void app_counts_dead_letters(void **state)
{
    fixture *f = *state;
    txm_app *app = open_app(f);
    int calls = 0;
    txm_error err;
    assert_int_equal(txm_app_subscribe(app, "app-test--created", "app-test--queue", count_handler,
                                       &calls, NULL, &err),
                     TXM_OK);
    assert_int_equal(txm_app_start(app, &err), TXM_OK);
    const char garbage[] = "not a CloudEvents document";
    txm_outgoing m = {"app-test--created", "garbage-1", garbage, sizeof garbage - 1};
    assert_int_equal(txm_transport_publish(txm_app_transport(app), &m, 1, NULL, &err), TXM_OK);
    const char *want = "txmsg_dlq_depth{queue=\"app-test--queue\"} 1";
    const char *counted = "txmsg_consumer_dead_lettered_total{queue=\"app-test--queue\"} 1\n";
    char body[1 << 16] = "";
    long long deadline = txm_test_now_ms() + 10000;
    while ((strstr(body, want) == NULL || strstr(body, counted) == NULL) &&
           txm_test_now_ms() < deadline) {
        txm_test_sleep_ms(20);
        assert_int_equal(http_get(txm_app_port(app), "/metrics", body, sizeof body), 200);
    }
    assert_non_null(strstr(body, want));
    assert_non_null(strstr(body, counted));
    assert_int_equal(calls, 0);
    txm_app_close(app);
}

static void app_run_stops_on_sigterm(void **state)
{
    fixture *f = *state;
    txm_app *app = open_app(f);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_thread, app), 0);
    while (txm_app_port(app) == 0)
        txm_test_sleep_ms(10);
    /* The signal is blocked in every thread but taken by txm_app_run. */
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    void *ret = NULL;
    pthread_join(th, &ret);
    assert_int_equal((int)(intptr_t)ret, TXM_OK);
    txm_app_close(app);
}

static void app_open_rejects_bad_port_and_service(void **state)
{
    fixture *f = *state;
    txm_app *app = NULL;
    txm_error err;
    f->opts.port = -1;
    setenv("PORT", "80a", 1);
    assert_int_equal(txm_app_open(&f->opts, &app, &err), TXM_INVALID);
    assert_null(app);
    assert_non_null(strstr(err.text, "PORT"));
    unsetenv("PORT");
    f->opts.port = 0;
    f->opts.service = "Bad Name";
    assert_int_equal(txm_app_open(&f->opts, &app, &err), TXM_INVALID);
    assert_null(app);
}

static void app_open_fails_on_unknown_database_scheme(void **state)
{
    fixture *f = *state;
    txm_app *app = NULL;
    txm_error err;
    f->opts.database_url = "mysql://nowhere/db";
    assert_int_equal(txm_app_open(&f->opts, &app, &err), TXM_INVALID);
    assert_null(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(app_serves_health_and_metrics_and_stops_on_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(app_runs_handlers_and_counts_them, setup, teardown),
        cmocka_unit_test_setup_teardown(app_metrics_have_batch_size_and_latency_histograms, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(app_counts_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(app_run_stops_on_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(app_open_rejects_bad_port_and_service, setup, teardown),
        cmocka_unit_test_setup_teardown(app_open_fails_on_unknown_database_scheme, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
