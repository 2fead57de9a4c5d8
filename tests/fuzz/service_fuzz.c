/* libFuzzer harness for the service runtime's request handling (src/service
 * http.c: path checks, route matching, built-in endpoints, replies) through
 * the routes of both example services (their JSON validation and their
 * repository on SQLite), without sockets: txm__http_serve_input runs a
 * request the way one from libmicrohttpd runs.
 *
 * Input: byte 0 picks the service (bit 0: customers or orders); then lines
 * "METHOD", "PATH", "QUERY" (raw, split on '&' and the first '='), then
 * "Name: value" headers up to an empty line; the rest is the body (any
 * bytes). "@C" and "@O" in the path and body stand for a customer and an
 * order that exist, so the fuzzer reaches the found paths too.
 *
 * Every answer must carry a status 200..599 and a JSON body (except
 * /metrics); a 4xx or 5xx one must be a JSON object with an "error" string;
 * no input may get a 5xx other than 503 (the database away or busy). Databases live on /dev/shm (or
 * $TMPDIR) and are made afresh every RESET_EVERY inputs, so the fuzzer's writes do not grow without
 * bound. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "customers.h"
#include "fuzz_tmp.h"
#include "orders.h"
#include "service/service_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELDS_MAX 32      /* headers, and query arguments, per input */
#define TEXT_MAX 8192      /* bytes of method, path, query and headers together */
#define RESET_EVERY 100000 /* inputs between fresh databases */

typedef struct service {
    txm_app *app;
    txm_http_server *http;
} service;

/* The process's state: libFuzzer calls one input at a time. */
static struct {
    char dir[256];
    FILE *log;
    customers_svc customers;
    orders_svc orders;
    service svc[2]; /* customers, orders */
    char customer_id[TXM_UUID_LEN + 1];
    char order_id[TXM_UUID_LEN + 1];
    unsigned long runs;
} g;

static void die(const char *what, const txm_error *err)
{
    fprintf(stderr, "service_fuzz: %s: %s\n", what, err != NULL ? err->text : strerror(errno));
    abort();
}

static void open_app(service *s, const char *name, uint16_t port)
{
    char db[320], broker[320];
    snprintf(db, sizeof db, "sqlite:%s/%s.db", g.dir, name);
    snprintf(broker, sizeof broker, "embedded:%s/broker.db", g.dir);
    txm_app_options o;
    txm_app_options_init(&o, name, port);
    o.port = 0;
    o.database_url = db;
    o.broker_url = broker;
    o.log_stream = g.log;
    o.min_log_level = TXM_LOG_ERROR;
    txm_error err = {0};
    if (txm_app_open(&o, &s->app, &err) != TXM_OK)
        die("app open", &err);
    s->http = txm__app_http(s->app);
}

static void serve(int which, const txm__http_input *in, txm__http_output *out)
{
    txm_error err = {0};
    if (txm__http_serve_input(g.svc[which].http, in, out, &err) != TXM_OK)
        die("serve", &err);
}

/* Reads the "id" of a 200 answer into id. */
static void take_id(const txm__http_output *out, char id[TXM_UUID_LEN + 1])
{
    json_t *doc = json_loadb(out->body, out->body_len, 0, NULL);
    const char *s = json_string_value(json_object_get(doc, "id"));
    if (out->status != 200 || s == NULL)
        die("seed request failed", NULL);
    snprintf(id, TXM_UUID_LEN + 1, "%s", s);
    json_decref(doc);
}

static void post(int which, const char *path, const char *body, char id[TXM_UUID_LEN + 1])
{
    txm__http_input in = {.method = "POST", .path = path, .body = body, .body_len = strlen(body)};
    txm__http_output out;
    serve(which, &in, &out);
    take_id(&out, id);
    free(out.body);
}

static void open_all(void)
{
    open_app(&g.svc[0], CUSTOMERS_SOURCE, CUSTOMERS_PORT);
    open_app(&g.svc[1], "orders", 9702);
    g.customers =
        (customers_svc){.db = txm_app_db(g.svc[0].app), .log = txm_app_logger(g.svc[0].app)};
    g.orders = (orders_svc){.db = txm_app_db(g.svc[1].app), .log = txm_app_logger(g.svc[1].app)};
    txm_error err = {0};
    if (customers_schema(g.customers.db, &err) != TXM_OK ||
        customers_http_register(g.svc[0].app, &g.customers, &err) != TXM_OK ||
        orders_schema(g.orders.db, &err) != TXM_OK ||
        orders_http_register(g.svc[1].app, &g.orders, &err) != TXM_OK)
        die("service setup", &err);
    /* The app blocks SIGINT and SIGTERM for its run loop; give them back
     * to libFuzzer, which prints its statistics on them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    post(0, "/customers", "{\"name\":\"Jane Doe\",\"credit_limit\":25000}", g.customer_id);
    char body[128];
    snprintf(body, sizeof body, "{\"customer_id\":\"%s\",\"order_total\":100}", g.customer_id);
    post(1, "/orders", body, g.order_id);
}

static void close_all(void)
{
    for (int i = 0; i < 2; i++) {
        txm_app_close(g.svc[i].app);
        g.svc[i].app = NULL;
    }
    fuzz_tmp_remove(g.dir);
    if (mkdir(g.dir, 0700) != 0)
        die("mkdir", NULL);
}

static void at_exit(void)
{
    for (int i = 0; i < 2; i++)
        txm_app_close(g.svc[i].app);
    fuzz_tmp_remove(g.dir);
    if (g.log != NULL)
        fclose(g.log);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tmp_make("txm-fuzz-service-", g.dir, sizeof g.dir);
    g.log = fopen("/dev/null", "w");
    if (g.log == NULL)
        die("/dev/null", NULL);
    open_all();
    atexit(at_exit);
    return 0;
}

/* Copies src[0..len) to *dst (inside end), replacing "@C" and "@O" with
 * the ids, cut short where end comes; NUL-terminates and moves *dst past
 * the NUL. Returns the copy, or "" when no byte is left; *out_len gets its
 * length. */
static char *expand(const char *src, size_t len, char **dst, const char *end, size_t *out_len)
{
    static char empty[1]; /* stays "": callers find no ':', '&' or '=' to cut */
    *out_len = 0;
    if (*dst >= end)
        return empty;
    char *start = *dst, *p = *dst;
    for (size_t i = 0; i < len && p < end - 1; i++) {
        const char *id = NULL;
        if (src[i] == '@' && i + 1 < len)
            id = src[i + 1] == 'C' ? g.customer_id : src[i + 1] == 'O' ? g.order_id : NULL;
        if (id != NULL && (size_t)(end - 1 - p) >= TXM_UUID_LEN) {
            memcpy(p, id, TXM_UUID_LEN);
            p += TXM_UUID_LEN;
            i++;
        } else {
            *p++ = src[i];
        }
    }
    *p = '\0';
    *dst = p + 1;
    *out_len = (size_t)(p - start);
    return start;
}

/* The next line of data[*off..size), without its '\n'; *len its length. */
static const char *next_line(const uint8_t *data, size_t size, size_t *off, size_t *len)
{
    const char *s = (const char *)data + *off;
    const char *nl = memchr(s, '\n', size - *off);
    *len = nl != NULL ? (size_t)(nl - s) : size - *off;
    *off += *len + (nl != NULL);
    return s;
}

/* Splits a raw query into fields: "a=b&c" gives a = "b", c = NULL. Cuts
 * text in place. */
static size_t split_query(char *q, txm__http_field *f)
{
    size_t n = 0;
    while (q != NULL && *q != '\0' && n < FIELDS_MAX) {
        char *amp = strchr(q, '&');
        if (amp != NULL)
            *amp = '\0';
        if (*q != '\0') {
            char *eq = strchr(q, '=');
            if (eq != NULL)
                *eq = '\0';
            f[n++] = (txm__http_field){.name = q, .value = eq != NULL ? eq + 1 : NULL};
        }
        q = amp != NULL ? amp + 1 : NULL;
    }
    return n;
}

/* Checks what a request got: a valid status, JSON where JSON is said, an
 * error object on 4xx/5xx, and never a 500. */
static void check(const txm__http_input *in, const txm__http_output *out)
{
    if (out->status < 200 || out->status > 599 || out->content_type == NULL)
        abort();
    if (out->status >= 500 && out->status != 503) {
        fprintf(stderr, "service_fuzz: %d for %s %s: %.*s\n", out->status, in->method, in->path,
                (int)out->body_len, out->body != NULL ? out->body : "");
        abort();
    }
    if (strcmp(out->content_type, "application/json") != 0) {
        if (strcmp(in->path, "/metrics") != 0 || out->status != 200)
            abort();
        return;
    }
    json_t *doc = json_loadb(out->body != NULL ? out->body : "", out->body_len, 0, NULL);
    if (doc == NULL)
        abort();
    if (out->status >= 400 && json_string_value(json_object_get(doc, "error")) == NULL)
        abort();
    if (out->status == 405 && out->allow[0] == '\0')
        abort();
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (++g.runs % RESET_EVERY == 0) {
        close_all();
        open_all();
    }
    int which = data[0] & 1;
    size_t off = 1, len = 0;
    static char text[TEXT_MAX];
    char *p = text, *end = text + sizeof text;
    size_t n = 0;
    const char *s = next_line(data, size, &off, &len);
    const char *method = expand(s, len, &p, end, &n);
    s = next_line(data, size, &off, &len);
    const char *path = expand(s, len, &p, end, &n);
    s = next_line(data, size, &off, &len);
    char *query = expand(s, len, &p, end, &n);
    txm__http_field query_f[FIELDS_MAX], headers[FIELDS_MAX];
    size_t nq = split_query(query, query_f), nh = 0;
    while (off < size) {
        s = next_line(data, size, &off, &len);
        if (len == 0 || (len == 1 && s[0] == '\r'))
            break;
        char *name = expand(s, len, &p, end, &n);
        char *colon = strchr(name, ':');
        if (colon == NULL || nh == FIELDS_MAX)
            continue;
        *colon = '\0';
        char *value = colon + 1;
        value += strspn(value, " \t");
        headers[nh++] = (txm__http_field){.name = name, .value = value};
    }
    /* The body may hold any bytes; only the placeholders are replaced. */
    size_t body_cap = (TXM_UUID_LEN / 2 + 1) * (size - off) + 1; /* "@C" grows 18 times */
    char *body = malloc(body_cap), *bp = body;
    if (body == NULL)
        abort();
    size_t body_len = 0;
    expand((const char *)data + off, size - off, &bp, body + body_cap, &body_len);
    txm__http_input in = {.method = method,
                          .path = path,
                          .headers = headers,
                          .header_count = nh,
                          .query = query_f,
                          .query_count = nq,
                          .body = body,
                          .body_len = body_len};
    txm__http_output out;
    serve(which, &in, &out);
    check(&in, &out);
    free(out.body);
    free(body);
    return 0;
}
