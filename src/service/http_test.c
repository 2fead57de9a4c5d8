/* Tests for the HTTP server in src/service/http.c: a real server on an
 * ephemeral port of 127.0.0.1, spoken to with raw HTTP/1.1 over sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "txmsg/message.h"
#include "txmsg/service.h"

/* ---- a minimal HTTP client ---- */

struct response {
    int status;
    char head[8192]; /* status line and headers, NUL-terminated */
    char *body;      /* malloc'd, NUL-terminated */
    size_t body_len;
};

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

/* Reads until the server closes; splits head and body. */
static void read_response(int fd, struct response *r)
{
    size_t cap = 1 << 16;
    size_t len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep == NULL)
        fail_msg("no complete response head: %s", buf);
    size_t head_len = (size_t)(sep - buf);
    assert_true(head_len < sizeof r->head);
    memcpy(r->head, buf, head_len);
    r->head[head_len] = '\0';
    r->body_len = len - head_len - 4;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, sep + 4, r->body_len + 1);
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    free(buf);
}

/* Sends one raw request (which should say Connection: close) and reads the
 * answer. */
static void raw_request(uint16_t port, const char *req, size_t len, struct response *r)
{
    int fd = connect_to(port);
    assert_true(fd >= 0);
    send_all(fd, req, len);
    read_response(fd, r);
    close(fd);
}

/* Sends method path with extra header lines (each ending in \r\n) and a body. */
static void request(uint16_t port, const char *method, const char *path, const char *headers,
                    const char *body, struct response *r)
{
    char buf[16384];
    int n = snprintf(buf, sizeof buf,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, headers != NULL ? headers : "", body != NULL ? strlen(body) : 0,
                     body != NULL ? body : "");
    assert_true(n > 0 && (size_t)n < sizeof buf);
    raw_request(port, buf, (size_t)n, r);
}

/* The value of header name in r, copied into out; NULL if absent. */
static const char *header(const struct response *r, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = strcspn(v, "\r");
            snprintf(out, cap, "%.*s", (int)vlen, v);
            return out;
        }
    }
    return NULL;
}

static json_t *json_body(const struct response *r)
{
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
    if (j == NULL)
        fail_msg("body is not JSON (%s): %s", jerr.text, r->body);
    return j;
}

static void assert_error_body(const struct response *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *j = json_body(r);
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    json_decref(j);
    char v[256];
    assert_non_null(header(r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json");
    assert_non_null(header(r, "X-Correlation-Id", v, sizeof v));
}

static void response_free(struct response *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- handlers ---- */

/* Answers with what the runtime saw: method, route, params, body, query. */
static void echo_handler(void *ctx, txm_http_request *req)
{
    (void)ctx;
    size_t len = 0;
    const char *body = txm_http_request_body(req, &len);
    const char *id = txm_http_request_param(req, "id");
    const char *q = txm_http_request_query(req, "q");
    const char *hdr = txm_http_request_header(req, "x-test");
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s?, s:s?, s:s?, s:s}", "method",
                          txm_http_request_method(req), "route", txm_http_request_route(req),
                          "path", txm_http_request_path(req), "body_len", (json_int_t)len, "id", id,
                          "q", q, "x_test", hdr, "cid", txm_http_request_correlation_id(req));
    assert_non_null(j);
    assert_true(strlen(body) == len);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_int_equal(txm_http_reply(req, 200, text, NULL), TXM_OK);
    /* A second answer is refused. */
    assert_int_equal(txm_http_reply(req, 201, "{}", NULL), TXM_STATE);
    free(text);
    json_decref(j);
}

static void forgetful_handler(void *ctx, txm_http_request *req)
{
    (void)ctx;
    (void)req;
}

static void slow_handler(void *ctx, txm_http_request *req)
{
    int *entered = ctx;
    __atomic_store_n(entered, 1, __ATOMIC_SEQ_CST);
    struct timespec ts = {.tv_nsec = 400 * 1000000L};
    nanosleep(&ts, NULL);
    txm_http_reply(req, 200, "{\"slow\":true}", NULL);
}

static void validation_handler(void *ctx, txm_http_request *req)
{
    (void)ctx;
    txm_http_reply_error(req, 400, "VALIDATION_ERROR", "name: \"quoted\" too long", NULL);
}

/* A page with its own type and headers; ?bad=1 tries headers that would
 * split the answer, which are refused, then answers plainly. */
/* A page with its own type and headers. With ?bad=1 it first tries headers
 * that would split the answer, which must be refused (else it answers 500:
 * a handler thread cannot fail a cmocka test). */
static void page_handler(void *ctx, txm_http_request *req)
{
    (void)ctx;
    static const char page[] = "<!doctype html><p>hi</p>";
    if (txm_http_request_query(req, "bad") != NULL) {
        const char *const split[] = {"X-A", "1\r\nSet-Cookie: x=1", NULL};
        const char *const odd[] = {"X A", "1", NULL};
        bool refused =
            txm_http_reply_content(req, 200, "text/html", page, 3, split, NULL) == TXM_INVALID &&
            txm_http_reply_content(req, 200, "text/html", page, 3, odd, NULL) == TXM_INVALID &&
            txm_http_reply_content(req, 200, "text/html\n", page, 3, NULL, NULL) == TXM_INVALID;
        if (!refused) {
            txm_http_reply(req, 500, NULL, NULL);
            return;
        }
    }
    const char *const headers[] = {"Content-Security-Policy", "default-src 'none'", "Cache-Control",
                                   "no-store", NULL};
    txm_http_reply_content(req, 200, "text/html; charset=utf-8", page, strlen(page), headers, NULL);
}

/* ---- fixture ---- */

struct fixture {
    txm_http_server *srv;
    txm_metrics *metrics;
    txm_logger logger;
    FILE *log;
    uint16_t port;
    int slow_entered;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_int_equal(txm_metrics_new(&fx->metrics, NULL), TXM_OK);
    fx->log = tmpfile();
    txm_logger_init(&fx->logger, "test-service");
    fx->logger.stream = fx->log;
    txm_http_options o;
    txm_http_options_init(&o);
    o.port = 0;
    o.max_body_len = 1024;
    o.health_path = "/test/health";
    o.logger = &fx->logger;
    o.metrics = fx->metrics;
    txm_error err = {0};
    assert_int_equal(txm_http_server_open(&o, &fx->srv, &err), TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "GET", "/order/:id", echo_handler, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "POST", "/order/:id/cancel", echo_handler, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "GET", "/order/special", echo_handler, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "POST", "/orders", echo_handler, NULL, NULL), TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "GET", "/forget", forgetful_handler, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "GET", "/slow", slow_handler, &fx->slow_entered, NULL),
                     TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "POST", "/validate", validation_handler, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_http_route(fx->srv, "GET", "/page", page_handler, NULL, NULL), TXM_OK);
    assert_int_equal(txm_http_server_port(fx->srv), 0);
    if (txm_http_server_start(fx->srv, &err) != TXM_OK)
        fail_msg("start: %s", err.text);
    fx->port = txm_http_server_port(fx->srv);
    assert_true(fx->port > 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    txm_http_server_close(fx->srv);
    txm_metrics_free(fx->metrics);
    fclose(fx->log);
    free(fx);
    return 0;
}

/* ---- tests ---- */

static void http_route_params_reach_the_handler(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "GET", "/order/abc-123?q=a+b%21", "X-Test: yes\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(j, "route")), "/order/:id");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "abc-123");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/order/abc-123");
    assert_string_equal(json_string_value(json_object_get(j, "q")), "a b!");
    assert_string_equal(json_string_value(json_object_get(j, "x_test")), "yes");
    json_decref(j);
    response_free(&r);

    request(fx->port, "POST", "/order/o%2F1/cancel", NULL, "{\"x\":1}", &r);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(j, "route")), "/order/:id/cancel");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "o/1");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/order/o%2F1/cancel");
    assert_int_equal(json_integer_value(json_object_get(j, "body_len")), 7);
    json_decref(j);
    response_free(&r);

    /* A literal pattern beats a parameter for the same path. */
    request(fx->port, "GET", "/order/special", NULL, NULL, &r);
    j = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(j, "route")), "/order/special");
    assert_true(json_is_null(json_object_get(j, "id"))); /* no ":id" in the pattern */
    json_decref(j);
    response_free(&r);
}

static void http_unknown_path_is_404(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "GET", "/nowhere", NULL, NULL, &r);
    assert_error_body(&r, 404, "NOT_FOUND");
    response_free(&r);
    request(fx->port, "GET", "/order/1/", NULL, NULL, &r); /* trailing slash */
    assert_error_body(&r, 404, "NOT_FOUND");
    response_free(&r);
}

static void http_wrong_method_is_405_with_allow(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    char v[64];
    request(fx->port, "DELETE", "/order/1", NULL, NULL, &r);
    assert_error_body(&r, 405, "METHOD_NOT_ALLOWED");
    assert_string_equal(header(&r, "Allow", v, sizeof v), "GET");
    response_free(&r);
    request(fx->port, "GET", "/orders", NULL, NULL, &r);
    assert_error_body(&r, 405, "METHOD_NOT_ALLOWED");
    assert_string_equal(header(&r, "Allow", v, sizeof v), "POST");
    response_free(&r);
    request(fx->port, "POST", "/metrics", NULL, NULL, &r);
    assert_error_body(&r, 405, "METHOD_NOT_ALLOWED");
    response_free(&r);
}

static void http_bad_percent_encoding_is_400(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "GET", "/order/%zz", NULL, NULL, &r);
    assert_error_body(&r, 400, "VALIDATION_ERROR");
    response_free(&r);
    request(fx->port, "GET", "/order/a%00b", NULL, NULL, &r);
    assert_error_body(&r, 400, "VALIDATION_ERROR");
    response_free(&r);
}

static void http_body_over_limit_is_413(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    /* Declared too big: answered before any body byte is sent. */
    const char *declared = "POST /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Length: 100000\r\n\r\n";
    raw_request(fx->port, declared, strlen(declared), &r);
    assert_error_body(&r, 413, "PAYLOAD_TOO_LARGE");
    json_t *j = json_body(&r);
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "1024"));
    json_decref(j);
    response_free(&r);

    /* Chunked, so only the accumulated size tells. */
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "POST /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        n += snprintf(req + n, sizeof req - (size_t)n, "258\r\n"); /* 600 bytes */
        memset(req + n, 'b', 600);
        n += 600;
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    }
    n += snprintf(req + n, sizeof req - (size_t)n, "0\r\n\r\n");
    raw_request(fx->port, req, (size_t)n, &r);
    assert_error_body(&r, 413, "PAYLOAD_TOO_LARGE");
    response_free(&r);

    /* At the limit is fine. */
    char body[1025];
    memset(body, 'a', 1024);
    body[1024] = '\0';
    request(fx->port, "POST", "/orders", NULL, body, &r);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "body_len")), 1024);
    json_decref(j);
    response_free(&r);
}

static void http_correlation_id_is_echoed_or_generated(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    char v[256];
    request(fx->port, "GET", "/order/1", "X-Correlation-Id: abc.DEF_123-x\r\n", NULL, &r);
    assert_string_equal(header(&r, "X-Correlation-Id", v, sizeof v), "abc.DEF_123-x");
    json_t *j = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(j, "cid")), "abc.DEF_123-x");
    json_decref(j);
    response_free(&r);

    request(fx->port, "GET", "/order/1", NULL, NULL, &r);
    assert_non_null(header(&r, "X-Correlation-Id", v, sizeof v));
    assert_true(txm_uuid_is_valid(v));
    response_free(&r);

    /* Not a sane token: replaced, also on errors. */
    request(fx->port, "GET", "/nowhere", "X-Correlation-Id: a b;c\r\n", NULL, &r);
    assert_non_null(header(&r, "X-Correlation-Id", v, sizeof v));
    assert_true(txm_uuid_is_valid(v));
    response_free(&r);
    char hdr[300];
    memset(hdr, 'k', sizeof hdr);
    memcpy(hdr, "X-Correlation-Id: ", 18);
    snprintf(hdr + 18 + TXM_HTTP_CORRELATION_MAX + 1, 3, "\r\n");
    request(fx->port, "GET", "/order/1", hdr, NULL, &r);
    assert_true(txm_uuid_is_valid(header(&r, "X-Correlation-Id", v, sizeof v)));
    response_free(&r);
}

static void http_handler_without_reply_gives_500(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "GET", "/forget", NULL, NULL, &r);
    assert_error_body(&r, 500, "SYSTEM_ERROR");
    response_free(&r);
}

static void http_reply_error_escapes_detail(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "POST", "/validate", NULL, "{}", &r);
    assert_error_body(&r, 400, "VALIDATION_ERROR");
    json_t *j = json_body(&r);
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "name: \"quoted\" too long");
    json_decref(j);
    response_free(&r);
}

static void http_reply_content_sends_its_type_and_headers(void **state)
{
    struct fixture *fx = *state;
    for (int bad = 0; bad < 2; bad++) {
        struct response r = {0};
        request(fx->port, "GET", bad ? "/page?bad=1" : "/page", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "<!doctype html><p>hi</p>");
        char v[256];
        assert_non_null(header(&r, "Content-Type", v, sizeof v));
        assert_string_equal(v, "text/html; charset=utf-8");
        assert_non_null(header(&r, "Content-Security-Policy", v, sizeof v));
        assert_string_equal(v, "default-src 'none'");
        assert_non_null(header(&r, "Cache-Control", v, sizeof v));
        assert_string_equal(v, "no-store");
        assert_non_null(header(&r, "X-Correlation-Id", v, sizeof v));
        assert_null(header(&r, "Set-Cookie", v, sizeof v));
        response_free(&r);
    }
}

static void http_health_answers_ok(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "GET", "/test/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    response_free(&r);
}

static void http_metrics_reflect_requests(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    for (int i = 0; i < 3; i++) {
        request(fx->port, "GET", "/order/7", NULL, NULL, &r);
        response_free(&r);
    }
    request(fx->port, "GET", "/nowhere/at/all", NULL, NULL, &r);
    response_free(&r);
    request(fx->port, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(header(&r, "Content-Type", v, sizeof v),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(
        strstr(r.body, "\ntxm_http_requests_total{route=\"/order/:id\",status=\"200\"} 3\n"));
    /* Unmatched paths share one label value, so they cannot grow the series. */
    assert_non_null(
        strstr(r.body, "\ntxm_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
    assert_null(strstr(r.body, "/nowhere"));
    assert_non_null(
        strstr(r.body, "txm_http_request_duration_seconds_count{route=\"/order/:id\"} 3\n"));
    assert_non_null(strstr(r.body, "# TYPE txm_http_request_duration_seconds histogram\n"));
    response_free(&r);
    /* ?name= renders the families named only; too many filters is a 400. */
    request(fx->port, "GET", "/metrics?name=txm_http_requests_total&name=nothing", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(
        strstr(r.body, "\ntxm_http_requests_total{route=\"/order/:id\",status=\"200\"} 3\n"));
    assert_null(strstr(r.body, "txm_http_request_duration_seconds"));
    response_free(&r);
    char path[33 * 7 + 16];
    size_t at = (size_t)snprintf(path, sizeof path, "/metrics?name=a");
    for (int i = 1; i < 33; i++)
        at += (size_t)snprintf(path + at, sizeof path - at, "&name=a");
    request(fx->port, "GET", path, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "INVALID_ARGUMENT"));
    response_free(&r);
}

static void http_one_log_line_per_request(void **state)
{
    struct fixture *fx = *state;
    struct response r = {0};
    request(fx->port, "GET", "/order/42", "X-Correlation-Id: log-test-1\r\n", NULL, &r);
    response_free(&r);
    fflush(fx->log);
    rewind(fx->log);
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, fx->log) != NULL) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *cid = json_string_value(json_object_get(j, "correlation_id"));
        if (cid != NULL && strcmp(cid, "log-test-1") == 0) {
            found++;
            assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
            assert_string_equal(json_string_value(json_object_get(j, "path")), "/order/42");
            assert_string_equal(json_string_value(json_object_get(j, "service")), "test-service");
            assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
            assert_true(json_is_number(json_object_get(j, "duration_ms")));
            /* At most three decimals, as written in the line. */
            const char *d = strstr(line, "\"duration_ms\":");
            assert_non_null(d);
            d += strlen("\"duration_ms\":");
            size_t whole = strspn(d, "0123456789");
            assert_true(whole > 0);
            if (d[whole] == '.') {
                size_t decimals = strspn(d + whole + 1, "0123456789");
                if (decimals < 1 || decimals > 3)
                    fail_msg("duration_ms has %zu decimals: %s", decimals, line);
            }
        }
        json_decref(j);
    }
    assert_int_equal(found, 1);
}

#define CLIENTS 8
#define PER_CLIENT 25

struct client_arg {
    uint16_t port;
    int index;
    int ok;
};

static void *client_thread(void *p)
{
    struct client_arg *a = p;
    for (int i = 0; i < PER_CLIENT; i++) {
        char path[64];
        snprintf(path, sizeof path, "/order/c%d-%d", a->index, i);
        struct response r = {0};
        request(a->port, "GET", path, NULL, NULL, &r);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        if (r.status == 200 && j != NULL &&
            strcmp(json_string_value(json_object_get(j, "id")), path + 7) == 0)
            a->ok++;
        json_decref(j);
        response_free(&r);
    }
    return NULL;
}

static void http_concurrent_requests_from_8_threads(void **state)
{
    struct fixture *fx = *state;
    pthread_t threads[CLIENTS];
    struct client_arg args[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (struct client_arg){.port = fx->port, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, client_thread, &args[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].ok, PER_CLIENT);
    }
    char *text = NULL;
    assert_int_equal(txm_metrics_render(fx->metrics, &text, NULL, NULL), TXM_OK);
    char want[128];
    snprintf(want, sizeof want, "txm_http_requests_total{route=\"/order/:id\",status=\"200\"} %d\n",
             CLIENTS * PER_CLIENT);
    assert_non_null(strstr(text, want));
    txm_free(text);
}

static void http_keep_alive_serves_two_requests(void **state)
{
    struct fixture *fx = *state;
    int fd = connect_to(fx->port);
    assert_true(fd >= 0);
    const char *two = "GET /order/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /order/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send_all(fd, two, strlen(two));
    struct response r = {0};
    read_response(fd, &r);
    close(fd);
    /* Both answers arrive on the one connection. */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\":\"1\""));
    assert_non_null(strstr(r.body, "HTTP/1.1 200"));
    assert_non_null(strstr(r.body, "\"id\":\"2\""));
    response_free(&r);
}

struct slow_arg {
    uint16_t port;
    struct response r;
};

static void *slow_client(void *p)
{
    struct slow_arg *a = p;
    request(a->port, "GET", "/slow", NULL, NULL, &a->r);
    return NULL;
}

static void http_stop_finishes_requests_in_flight(void **state)
{
    struct fixture *fx = *state;
    struct slow_arg a = {.port = fx->port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_client, &a), 0);
    while (__atomic_load_n(&fx->slow_entered, __ATOMIC_SEQ_CST) == 0) {
        struct timespec ts = {.tv_nsec = 1000000L};
        nanosleep(&ts, NULL);
    }
    txm_http_server_stop(fx->srv);
    pthread_join(t, NULL);
    assert_int_equal(a.r.status, 200);
    assert_string_equal(a.r.body, "{\"slow\":true}");
    response_free(&a.r);
    /* No longer accepting. */
    int fd = connect_to(fx->port);
    assert_int_equal(fd, -1);
    txm_http_server_stop(fx->srv); /* twice is fine */
}

static void http_options_and_routes_are_validated(void **state)
{
    (void)state;
    txm_http_options o;
    txm_http_options_init(&o);
    assert_string_equal(o.bind_address, "127.0.0.1");
    assert_int_equal(o.max_body_len, 64 * 1024);
    txm_http_server *srv = (txm_http_server *)&o;
    o.bind_address = "localhost";
    assert_int_equal(txm_http_server_open(&o, &srv, NULL), TXM_INVALID);
    assert_null(srv);
    o.bind_address = "::1";
    o.health_path = "/x/:id";
    assert_int_equal(txm_http_server_open(&o, &srv, NULL), TXM_INVALID);
    o.health_path = NULL;
    assert_int_equal(txm_http_server_open(&o, &srv, NULL), TXM_OK);
    assert_int_equal(txm_http_route(srv, "get", "/a", echo_handler, NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_http_route(srv, "GET", "a", echo_handler, NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_http_route(srv, "GET", "/a", NULL, NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_http_route(srv, "GET", "/a", echo_handler, NULL, NULL), TXM_OK);
    assert_int_equal(txm_http_route(srv, "GET", "/a", echo_handler, NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_http_route(srv, "PUT", "/a", echo_handler, NULL, NULL), TXM_OK);
    txm_error err = {0};
    txm_status st = txm_http_server_start(srv, &err);
    if (st == TXM_OK) { /* IPv6 loopback may be missing in a container */
        assert_true(txm_http_server_port(srv) > 0);
        assert_int_equal(txm_http_server_start(srv, NULL), TXM_STATE);
        assert_int_equal(txm_http_route(srv, "GET", "/b", echo_handler, NULL, NULL), TXM_STATE);
    } else {
        assert_int_equal(st, TXM_IO);
    }
    txm_http_server_close(srv);
    txm_http_server_close(NULL);
}

static void http_client_limits_are_validated(void **state)
{
    (void)state;
    txm_http_options o;
    txm_http_options_init(&o);
    assert_int_equal(o.connection_limit, 2048);
    assert_int_equal(o.max_header_len, 16 * 1024);
    txm_http_server *srv = NULL;
    o.max_header_len = 0;
    assert_int_equal(txm_http_server_open(&o, &srv, NULL), TXM_INVALID);
    o.max_header_len = 1024;
    o.thread_stack_len = 4096; /* too small for libc and the handlers */
    assert_int_equal(txm_http_server_open(&o, &srv, NULL), TXM_INVALID);
    assert_null(srv);
}

/* Headers over max_header_len get 431 with a JSON body, before any body is
 * read; the body the client sends anyway is dropped so the answer arrives. */
static void http_headers_over_limit_are_431(void **state)
{
    struct fixture *fx = *state;
    size_t cap = 24 * 1024;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "POST /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < 20; i++) { /* 20 KiB, over the default 16 KiB */
        n += snprintf(req + n, cap - (size_t)n, "X-Pad-%02d: ", i);
        memset(req + n, 'p', 1000);
        n += 1000;
        n += snprintf(req + n, cap - (size_t)n, "\r\n");
    }
    n += snprintf(req + n, cap - (size_t)n, "Content-Length: 2\r\n\r\n{}");
    struct response r = {0};
    raw_request(fx->port, req, (size_t)n, &r);
    assert_error_body(&r, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    json_t *j = json_body(&r);
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "16384"));
    json_decref(j);
    response_free(&r);
    free(req);
}

static void http_port_in_use_is_io_error(void **state)
{
    struct fixture *fx = *state;
    txm_http_options o;
    txm_http_options_init(&o);
    o.port = fx->port;
    txm_http_server *srv = NULL;
    assert_int_equal(txm_http_server_open(&o, &srv, NULL), TXM_OK);
    txm_error err = {0};
    assert_int_equal(txm_http_server_start(srv, &err), TXM_IO);
    assert_int_equal(err.status, TXM_IO);
    assert_int_equal(txm_http_server_port(srv), 0);
    txm_http_server_close(srv);
}

/* Makes each allocation fail in turn while creating a server and adding
 * routes: every call fails with TXM_NOMEM or succeeds, and nothing leaks. */
static void http_out_of_memory_fails_cleanly(void **state)
{
    (void)state;
    bool done = false;
    for (long n = 0; !done; n++) {
        txm_http_options o;
        txm_http_options_init(&o);
        o.health_path = "/x/health";
        txm_http_server *srv = NULL;
        txm__alloc_fail_after(n);
        txm_status st = txm_http_server_open(&o, &srv, NULL);
        if (st == TXM_OK)
            st = txm_http_route(srv, "GET", "/a/:id", echo_handler, NULL, NULL);
        if (st == TXM_OK)
            st = txm_http_route(srv, "POST", "/a", echo_handler, NULL, NULL);
        txm__alloc_fail_after(-1);
        if (st == TXM_OK)
            done = true;
        else
            assert_int_equal(st, TXM_NOMEM);
        txm_http_server_close(srv);
        assert_true(n < 50);
    }
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(http_route_params_reach_the_handler),
        FX_TEST(http_unknown_path_is_404),
        FX_TEST(http_wrong_method_is_405_with_allow),
        FX_TEST(http_bad_percent_encoding_is_400),
        FX_TEST(http_body_over_limit_is_413),
        FX_TEST(http_correlation_id_is_echoed_or_generated),
        FX_TEST(http_handler_without_reply_gives_500),
        FX_TEST(http_reply_error_escapes_detail),
        FX_TEST(http_reply_content_sends_its_type_and_headers),
        FX_TEST(http_health_answers_ok),
        FX_TEST(http_metrics_reflect_requests),
        FX_TEST(http_one_log_line_per_request),
        FX_TEST(http_concurrent_requests_from_8_threads),
        FX_TEST(http_keep_alive_serves_two_requests),
        FX_TEST(http_stop_finishes_requests_in_flight),
        cmocka_unit_test(http_options_and_routes_are_validated),
        FX_TEST(http_port_in_use_is_io_error),
        cmocka_unit_test(http_client_limits_are_validated),
        FX_TEST(http_headers_over_limit_are_431),
        cmocka_unit_test(http_out_of_memory_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
