/* The end-to-end suite's HTTP client (tests/support/testhttp.c): answers
 * framed by Content-Length, chunked encoding or the end of the connection,
 * an early 413, and bounded failures. Spoken against the library's own HTTP
 * server and against canned raw answers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testbroker.h"
#include "testhttp.h"
#include "txmsg/service.h"
#include "txmsg/txmsg.h"

/* ---- a one-shot raw server: reads one request head, sends a canned answer ---- */

typedef struct raw_server {
    int listen_fd;
    int port;
    const char *answer; /* sent as is; NULL sends nothing */
    int hold_ms;        /* kept open this long after answering, then closed */
    pthread_t thread;
} raw_server;

static void *raw_serve(void *p)
{
    raw_server *s = p;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char buf[8192];
    size_t len = 0;
    while (len + 1 < sizeof buf) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    if (s->answer != NULL) {
        size_t alen = strlen(s->answer);
        for (size_t off = 0; off < alen;) {
            /* Small writes, so the client sees the answer in pieces. */
            size_t step = alen - off < 7 ? alen - off : 7;
            ssize_t n = send(fd, s->answer + off, step, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    }
    txm_test_sleep_ms(s->hold_ms);
    close(fd);
    return NULL;
}

static void raw_start(raw_server *s, const char *answer, int hold_ms)
{
    memset(s, 0, sizeof *s);
    s->answer = answer;
    s->hold_ms = hold_ms;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->listen_fd, 4), 0);
    assert_int_equal(getsockname(s->listen_fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, raw_serve, s), 0);
}

static void raw_stop(raw_server *s)
{
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* ---- the library's HTTP server ---- */

static void echo_handler(void *ctx, txm_http_request *req)
{
    (void)ctx;
    size_t len = 0;
    txm_http_request_body(req, &len);
    const char *x = txm_http_request_header(req, "x-test");
    json_t *j = json_pack("{s:s, s:I, s:s?}", "method", txm_http_request_method(req), "body_len",
                          (json_int_t)len, "x_test", x);
    char *text = json_dumps(j, JSON_COMPACT);
    txm_http_reply(req, 200, text, NULL);
    free(text);
    json_decref(j);
}

typedef struct server_fixture {
    txm_http_server *srv;
    int port;
} server_fixture;

static int server_setup(void **state)
{
    server_fixture *fx = calloc(1, sizeof *fx);
    txm_http_options o;
    txm_http_options_init(&o);
    o.max_body_len = 1024;
    o.health_path = "/test/health";
    txm_error err = {0};
    if (txm_http_server_open(&o, &fx->srv, &err) != TXM_OK ||
        txm_http_route(fx->srv, "POST", "/echo", echo_handler, NULL, &err) != TXM_OK ||
        txm_http_server_start(fx->srv, &err) != TXM_OK) {
        fprintf(stderr, "server: %s\n", err.text);
        return -1;
    }
    fx->port = txm_http_server_port(fx->srv);
    *state = fx;
    return 0;
}

static int server_teardown(void **state)
{
    server_fixture *fx = *state;
    txm_http_server_close(fx->srv);
    free(fx);
    return 0;
}

static void testhttp_reads_content_length_answer_with_headers(void **state)
{
    server_fixture *fx = *state;
    txm_testhttp_response r;
    const char *headers[] = {"X-Test: seven", "X-Correlation-Id: cid-123", NULL};
    int rc = txm_testhttp_request("POST", "127.0.0.1", fx->port, "/echo", headers, "{\"a\":1}", 7,
                                  5000, &r);
    if (rc != 0)
        fail_msg("request: %s", r.error);
    assert_int_equal(r.status, 200);
    assert_string_equal(txm_testhttp_header_get(&r, "content-type"), "application/json");
    assert_string_equal(txm_testhttp_header_get(&r, "X-CORRELATION-ID"), "cid-123");
    assert_null(txm_testhttp_header_get(&r, "X-Nothing"));
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_int_equal(json_integer_value(json_object_get(j, "body_len")), 7);
    assert_string_equal(json_string_value(json_object_get(j, "x_test")), "seven");
    json_decref(j);
    txm_testhttp_response_fini(&r);

    rc =
        txm_testhttp_request("GET", "localhost", fx->port, "/test/health", NULL, NULL, 0, 5000, &r);
    if (rc != 0)
        fail_msg("request: %s", r.error);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ok\""));
    txm_testhttp_response_fini(&r);
    txm_testhttp_response_fini(&r); /* twice is safe */
}

static void testhttp_reads_413_sent_before_the_body_is_read(void **state)
{
    server_fixture *fx = *state;
    size_t len = 4u << 20;
    char *big = malloc(len);
    memset(big, 'x', len);
    txm_testhttp_response r;
    int rc =
        txm_testhttp_request("POST", "127.0.0.1", fx->port, "/echo", NULL, big, len, 10000, &r);
    free(big);
    if (rc != 0)
        fail_msg("request: %s", r.error);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "PAYLOAD_TOO_LARGE"));
    txm_testhttp_response_fini(&r);
}

static void testhttp_decodes_chunked_answer_after_100_continue(void **state)
{
    (void)state;
    raw_server s;
    raw_start(&s,
              "HTTP/1.1 100 Continue\r\n\r\n"
              "HTTP/1.1 201 Created\r\nX-A:  spaced value \t\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
              0);
    txm_testhttp_response r;
    int rc = txm_testhttp_request("GET", "127.0.0.1", s.port, "/", NULL, NULL, 0, 5000, &r);
    raw_stop(&s);
    if (rc != 0)
        fail_msg("request: %s", r.error);
    assert_int_equal(r.status, 201);
    assert_string_equal(txm_testhttp_header_get(&r, "x-a"), "spaced value");
    assert_int_equal(r.body_len, 12);
    assert_string_equal(r.body, "hello, world");
    txm_testhttp_response_fini(&r);
}

static void testhttp_reads_body_ended_by_close_and_empty_204(void **state)
{
    (void)state;
    raw_server s;
    raw_start(&s, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 0);
    txm_testhttp_response r;
    int rc = txm_testhttp_request("GET", "127.0.0.1", s.port, "/", NULL, NULL, 0, 5000, &r);
    raw_stop(&s);
    if (rc != 0)
        fail_msg("request: %s", r.error);
    assert_string_equal(r.body, "until the end");
    txm_testhttp_response_fini(&r);

    /* 204 has no body even if the server keeps the connection open. */
    raw_start(&s, "HTTP/1.1 204 No Content\r\n\r\n", 3000);
    long long t0 = txm_test_now_ms();
    rc = txm_testhttp_request("DELETE", "127.0.0.1", s.port, "/", NULL, NULL, 0, 5000, &r);
    assert_true(txm_test_now_ms() - t0 < 2000);
    raw_stop(&s);
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 204);
    assert_string_equal(r.body, "");
    txm_testhttp_response_fini(&r);
}

static void testhttp_fails_within_bounds(void **state)
{
    (void)state;
    txm_testhttp_response r;
    /* Nobody listens. */
    int port = txm_test_free_port();
    assert_int_equal(txm_testhttp_request("GET", "127.0.0.1", port, "/", NULL, NULL, 0, 2000, &r),
                     -1);
    assert_non_null(strstr(r.error, "connect"));
    txm_testhttp_response_fini(&r);

    /* No answer: the deadline holds. */
    raw_server s;
    raw_start(&s, NULL, 1500);
    long long t0 = txm_test_now_ms();
    assert_int_equal(txm_testhttp_request("GET", "127.0.0.1", s.port, "/", NULL, NULL, 0, 300, &r),
                     -1);
    long long took = txm_test_now_ms() - t0;
    raw_stop(&s);
    assert_true(took >= 250 && took < 1400);
    assert_non_null(strstr(r.error, "timed out"));
    txm_testhttp_response_fini(&r);

    /* Declared past the body limit, cut short, or not HTTP. */
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_start(&s, bad[i], 0);
        int rc = txm_testhttp_request("GET", "127.0.0.1", s.port, "/", NULL, NULL, 0, 3000, &r);
        raw_stop(&s);
        if (rc != -1)
            fail_msg("case %zu accepted", i);
        assert_true(r.error[0] != '\0');
        txm_testhttp_response_fini(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(testhttp_reads_content_length_answer_with_headers,
                                        server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(testhttp_reads_413_sent_before_the_body_is_read,
                                        server_setup, server_teardown),
        cmocka_unit_test(testhttp_decodes_chunked_answer_after_100_continue),
        cmocka_unit_test(testhttp_reads_body_ended_by_close_and_empty_204),
        cmocka_unit_test(testhttp_fails_within_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
