/* HTTP server on libmicrohttpd: routes with path parameters, correlation
 * ids, a request body limit, JSON answers, one log line and two metrics per
 * request, built-in /metrics and health endpoints, and a graceful stop.
 *
 * Threading model: MHD_USE_THREAD_PER_CONNECTION with an internal listening
 * thread. Handlers of services do blocking database work, and one thread per
 * connection lets them block without stalling other connections;
 * connection_limit bounds the number of threads. The other models of MHD
 * 0.9.75 (one polling thread, or a pool of them) run handlers on the polling
 * threads, so one slow database call would stall every connection of its
 * thread, unless each request were suspended and handed to workers of our
 * own. Thread per connection keeps handlers plain blocking code and costs,
 * for each idle connection, a descriptor, a sleeping thread and the pages of
 * its stack it touched (a few KiB): 1,000 idle clients are cheap. The stack
 * is set (thread_stack_len, 1 MiB) rather than inherited (RLIMIT_STACK,
 * often 8 MiB) so that thousands of threads do not reserve gigabytes, yet
 * it still holds jansson's 2,048 levels of nesting and SQLite's parser.
 * Connections are polled with poll(), so descriptors past FD_SETSIZE are
 * fine, and the soft RLIMIT_NOFILE is raised at start when it is below
 * connection_limit (see raise_fd_limit).
 *
 * Hostile clients: a connection silent for idle_timeout_s is closed, also
 * in the middle of a request (slow headers or body). Headers over
 * max_header_len get 431 and a declared body over max_body_len gets 413,
 * both before the body is read, so "Expect: 100-continue" never gets its
 * "100 Continue"; what the client sends anyway is read and dropped (up to
 * max_discard_len) before the close, so it receives the answer instead of a
 * reset (see drain); likewise after the errors MHD answers itself, such as
 * its 431 for headers too large for its memory (see on_request_line).
 *
 * Thread safety: routes and options are written before start and only read
 * afterwards. Each request belongs to its connection's thread. The count of
 * requests in progress (for the graceful stop) and the state of repeated
 * MHD log lines are guarded by srv->lock. The
 * logger and metrics registry are thread-safe themselves. */
#include "txmsg/service.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "service/service_int.h"
#include "txmsg/message.h"

#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define SYSTEM_ERROR_BODY "{\"error\":\"SYSTEM_ERROR\"}"
#define UNMATCHED_ROUTE "unmatched" /* route label of requests no route took */
#define METHOD_MAX 15
#define FD_HEADROOM 64 /* descriptors besides connections: database, broker, logs */
#define THREAD_STACK_MIN_LEN (64u << 10) /* smaller stacks fail in libc and libraries */
#define DRAIN_SLICE_MS 200               /* how often a drain looks at the server stopping */
#define DRAIN_IDLE_MS_MAX 30000          /* a drain gives up after this silence at most */
#define MHD_LOG_REPEAT_MS 1000 /* an MHD line repeated within this is counted, not written */

struct route {
    char method[METHOD_MAX + 1];
    char *pattern;   /* owned */
    int param_count; /* ":name" segments; fewer wins among matches */
    txm_http_handler handler;
    void *ctx; /* borrowed */
};

struct txm_http_server {
    txm_http_options opts;        /* copied; its strings point at the copies below */
    char *bind_address;           /* owned */
    char *health_path;            /* owned, or NULL */
    struct sockaddr_storage addr; /* bind address and port */
    bool ipv6;
    struct route routes[TXM_HTTP_ROUTES_MAX];
    int nroutes;
    struct MHD_Daemon *daemon;  /* NULL when not running */
    bool started;               /* start was called once */
    atomic_uint_least16_t port; /* bound port, 0 before start */
    atomic_bool stopping;       /* stop began: answers close their connection */
    pthread_mutex_t lock;       /* guards inflight and the mhd_log_* fields */
    pthread_cond_t idle;        /* signalled when inflight drops to 0 */
    int inflight;               /* requests seen and not yet completed */
    char mhd_log_last[128];     /* start of MHD's last log line written */
    long long mhd_log_at_ms;    /* CLOCK_MONOTONIC when it was written */
    unsigned mhd_log_repeats;   /* same lines left out since */
};

/* A decoded query value kept until the request ends. */
struct qval {
    struct qval *next;
    char text[];
};

struct txm_http_request {
    txm_http_server *srv;
    struct MHD_Connection *conn;
    const char *method;      /* borrowed from MHD for the request */
    const char *path;        /* borrowed from MHD; raw, without the query */
    const char *route_label; /* pattern, built-in path, or UNMATCHED_ROUTE */
    txm__route_params params;
    char *body;       /* owned, NUL-terminated, or NULL */
    size_t body_len;  /* bytes received and kept */
    size_t body_cap;  /* bytes allocated for body */
    bool too_big;     /* the body passed max_body_len */
    bool body_failed; /* out of memory while reading the body */
    char cid[TXM_HTTP_CORRELATION_MAX + 1];
    struct timespec start; /* CLOCK_MONOTONIC at the first callback */
    bool replied;
    int status;
    char *resp; /* owned response body, or NULL */
    size_t resp_len;
    const char *content_type;         /* static text */
    char allow[8 * (METHOD_MAX + 2)]; /* Allow header of a 405, or "" */
    struct qval *qvals;               /* owned list */
    bool head_too_big;                /* the header fields passed max_header_len */
    bool drain;                       /* answered before the body: drop it before closing */
    size_t dropped;                   /* body bytes read and dropped after too_big */
    const txm__http_input *input;     /* with conn NULL: from txm__http_serve_input */
    char *owned_type;                 /* txm_http_reply_content's Content-Type, or NULL */
    char *headers;      /* txm_http_reply_content's extra headers: "name\0value\0"..., or NULL */
    size_t headers_len; /* bytes of headers */
};

void txm_http_options_init(txm_http_options *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->bind_address = "127.0.0.1";
    o->port = 0;
    o->max_body_len = 64 * 1024;
    o->connection_limit = 2048;
    o->idle_timeout_s = 30;
    o->shutdown_timeout_ms = 10000;
    o->health_path = NULL;
    o->metrics_endpoint = true;
    o->logger = NULL;
    o->metrics = NULL;
    o->max_header_len = 16 * 1024;
    o->max_discard_len = 64u << 20;
    o->thread_stack_len = 1u << 20;
}

/* ---- server construction ---- */

/* Parses the bind address into srv->addr with port. */
static txm_status parse_address(txm_http_server *srv, const char *address, uint16_t port,
                                txm_error *err)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&srv->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&srv->addr;
    memset(&srv->addr, 0, sizeof srv->addr);
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return TXM_OK;
    }
    if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        srv->ipv6 = true;
        return TXM_OK;
    }
    return txm_errf(err, TXM_INVALID, "http: bind address \"%s\" is not an IP literal", address);
}

static txm_status check_options(const txm_http_options *o, txm_error *err)
{
    if (o->max_body_len == 0)
        return txm_errf(err, TXM_INVALID, "http: max_body_len must be > 0");
    if (o->connection_limit == 0)
        return txm_errf(err, TXM_INVALID, "http: connection_limit must be > 0");
    if (o->max_header_len == 0)
        return txm_errf(err, TXM_INVALID, "http: max_header_len must be > 0");
    if (o->thread_stack_len < THREAD_STACK_MIN_LEN)
        return txm_errf(err, TXM_INVALID, "http: thread_stack_len must be >= %u",
                        THREAD_STACK_MIN_LEN);
    if (o->shutdown_timeout_ms < 0)
        return txm_errf(err, TXM_INVALID, "http: shutdown_timeout_ms must be >= 0");
    if (o->health_path != NULL) {
        int params = 0;
        txm_status st = txm__route_check_pattern(o->health_path, &params, err);
        if (st != TXM_OK || params != 0)
            return txm_errf(err, TXM_INVALID, "http: bad health_path");
    }
    return TXM_OK;
}

/* Creates the condition the graceful stop waits on, timed by the monotonic
 * clock so that a wall-clock jump cannot cut the wait short or stretch it. */
static bool idle_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(cond, &attr) == 0;
    pthread_condattr_destroy(&attr);
    return ok;
}

txm_status txm_http_server_open(const txm_http_options *opts, txm_http_server **out, txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "http_server_open: NULL argument");
    *out = NULL;
    txm_http_options defaults;
    txm_http_options_init(&defaults);
    const txm_http_options *o = opts != NULL ? opts : &defaults;
    const char *address = o->bind_address != NULL ? o->bind_address : "127.0.0.1";
    txm_status st = check_options(o, err);
    if (st != TXM_OK)
        return st;
    txm_http_server *srv = txm__calloc(1, sizeof *srv);
    if (srv == NULL)
        return txm_errf(err, TXM_NOMEM, "http_server_open: out of memory");
    srv->opts = *o;
    srv->bind_address = txm__strdup(address);
    srv->health_path = o->health_path != NULL ? txm__strdup(o->health_path) : NULL;
    if (srv->bind_address == NULL || (o->health_path != NULL && srv->health_path == NULL))
        st = txm_errf(err, TXM_NOMEM, "http_server_open: out of memory");
    if (st == TXM_OK)
        st = parse_address(srv, address, o->port, err);
    if (st == TXM_OK && pthread_mutex_init(&srv->lock, NULL) != 0)
        st = txm_errf(err, TXM_NOMEM, "http_server_open: cannot create a mutex");
    if (st == TXM_OK && !idle_cond_init(&srv->idle)) {
        pthread_mutex_destroy(&srv->lock);
        st = txm_errf(err, TXM_NOMEM, "http_server_open: cannot create a condition");
    }
    if (st != TXM_OK) {
        free(srv->bind_address);
        free(srv->health_path);
        free(srv);
        return st;
    }
    srv->opts.bind_address = srv->bind_address;
    srv->opts.health_path = srv->health_path;
    *out = srv;
    return TXM_OK;
}

static bool method_ok(const char *method)
{
    size_t len = strnlen(method, METHOD_MAX + 1);
    if (len == 0 || len > METHOD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return false;
    return true;
}

txm_status txm_http_route(txm_http_server *srv, const char *method, const char *pattern,
                          txm_http_handler handler, void *ctx, txm_error *err)
{
    if (srv == NULL || method == NULL || pattern == NULL || handler == NULL)
        return txm_errf(err, TXM_INVALID, "http_route: NULL argument");
    if (srv->started)
        return txm_errf(err, TXM_STATE, "http_route: server already started");
    if (!method_ok(method))
        return txm_errf(err, TXM_INVALID, "http_route: bad method");
    int params = 0;
    txm_status st = txm__route_check_pattern(pattern, &params, err);
    if (st != TXM_OK)
        return st;
    for (int i = 0; i < srv->nroutes; i++)
        if (strcmp(srv->routes[i].method, method) == 0 &&
            strcmp(srv->routes[i].pattern, pattern) == 0)
            return txm_errf(err, TXM_INVALID, "http_route: %s %s added twice", method, pattern);
    if (srv->nroutes == TXM_HTTP_ROUTES_MAX)
        return txm_errf(err, TXM_TOO_BIG, "http_route: more than %d routes", TXM_HTTP_ROUTES_MAX);
    struct route *r = &srv->routes[srv->nroutes];
    r->pattern = txm__strdup(pattern);
    if (r->pattern == NULL)
        return txm_errf(err, TXM_NOMEM, "http_route: out of memory");
    snprintf(r->method, sizeof r->method, "%s", method);
    r->param_count = params;
    r->handler = handler;
    r->ctx = ctx;
    srv->nroutes++;
    return TXM_OK;
}

/* ---- replies ---- */

static txm_status set_reply(txm_http_request *req, int status, const char *content_type,
                            const void *body, size_t len, txm_error *err)
{
    if (req->replied)
        return txm_errf(err, TXM_STATE, "http_reply: request already answered");
    if (status < 200 || status > 599)
        return txm_errf(err, TXM_INVALID, "http_reply: bad status %d", status);
    char *copy = NULL;
    if (len > 0) {
        copy = txm__malloc(len);
        if (copy == NULL)
            return txm_errf(err, TXM_NOMEM, "http_reply: out of memory");
        memcpy(copy, body, len);
    }
    req->replied = true;
    req->status = status;
    req->resp = copy;
    req->resp_len = len;
    req->content_type = content_type;
    return TXM_OK;
}

txm_status txm_http_reply(txm_http_request *req, int status, const char *json_text, txm_error *err)
{
    if (req == NULL)
        return txm_errf(err, TXM_INVALID, "http_reply: NULL request");
    size_t len = json_text != NULL ? strlen(json_text) : 0;
    return set_reply(req, status, JSON_TYPE, json_text, len, err);
}

txm_status txm_http_reply_error(txm_http_request *req, int status, const char *code,
                                const char *detail, txm_error *err)
{
    if (req == NULL || code == NULL)
        return txm_errf(err, TXM_INVALID, "http_reply_error: NULL argument");
    json_t *obj = json_object();
    bool ok = obj != NULL &&
              json_object_set_new(obj, "error", txm__json_string_lossy(code, strlen(code))) == 0;
    if (ok && detail != NULL)
        ok =
            json_object_set_new(obj, "detail", txm__json_string_lossy(detail, strlen(detail))) == 0;
    char *text = ok ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL)
        return txm_errf(err, TXM_NOMEM, "http_reply_error: out of memory");
    txm_status st = set_reply(req, status, JSON_TYPE, text, strlen(text), err);
    free(text); /* json_dumps allocates with jansson's allocator: free() by default */
    return st;
}

/* True for a header name or value txm_http_reply_content accepts: printable
 * ASCII (and, in a value, spaces), no CR or LF, so no header can be split. */
static bool header_text_ok(const char *text, bool name, size_t max)
{
    size_t len = strnlen(text, max + 1);
    if (len > max || (name && len == 0))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c > 0x7e || (name && (c == ' ' || c == ':')))
            return false;
    }
    return true;
}

/* Copies the NULL-terminated name, value list into one block. */
static txm_status copy_headers(const char *const *headers, char **out, size_t *len, txm_error *err)
{
    size_t total = 0, n = 0;
    for (; headers != NULL && headers[n] != NULL; n += 2) {
        if (n / 2 >= TXM_HTTP_REPLY_HEADERS_MAX || headers[n + 1] == NULL ||
            !header_text_ok(headers[n], true, TXM_HTTP_HEADER_MAX) ||
            !header_text_ok(headers[n + 1], false, TXM_HTTP_HEADER_MAX))
            return txm_errf(err, TXM_INVALID, "http_reply_content: bad header list");
        total += strlen(headers[n]) + strlen(headers[n + 1]) + 2;
    }
    *out = NULL;
    *len = 0;
    if (total == 0)
        return TXM_OK;
    char *block = txm__malloc(total);
    if (block == NULL)
        return txm_errf(err, TXM_NOMEM, "http_reply_content: out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(headers[i]) + 1;
        memcpy(block + at, headers[i], l);
        at += l;
    }
    *out = block;
    *len = total;
    return TXM_OK;
}

txm_status txm_http_reply_content(txm_http_request *req, int status, const char *content_type,
                                  const void *body, size_t len, const char *const *headers,
                                  txm_error *err)
{
    if (req == NULL || content_type == NULL || (body == NULL && len > 0))
        return txm_errf(err, TXM_INVALID, "http_reply_content: NULL argument");
    if (req->replied)
        return txm_errf(err, TXM_STATE, "http_reply: request already answered");
    if (!header_text_ok(content_type, false, TXM_HTTP_HEADER_MAX) || content_type[0] == '\0')
        return txm_errf(err, TXM_INVALID, "http_reply_content: bad content type");
    char *block = NULL;
    size_t block_len = 0;
    txm_status st = copy_headers(headers, &block, &block_len, err);
    char *type = st == TXM_OK ? txm__strdup(content_type) : NULL;
    if (st == TXM_OK && type == NULL)
        st = txm_errf(err, TXM_NOMEM, "http_reply_content: out of memory");
    if (st == TXM_OK)
        st = set_reply(req, status, type, body, len, err);
    if (st != TXM_OK) {
        free(block);
        free(type);
        return st;
    }
    req->owned_type = type;
    req->headers = block;
    req->headers_len = block_len;
    return TXM_OK;
}

/* Adds the extra headers of txm_http_reply_content to resp. */
static bool add_extra_headers(const txm_http_request *req, struct MHD_Response *resp)
{
    size_t at = 0;
    while (at < req->headers_len) {
        const char *name = req->headers + at;
        const char *value = name + strlen(name) + 1;
        if (!MHD_add_response_header(resp, name, value))
            return false;
        at = (size_t)(value - req->headers) + strlen(value) + 1;
    }
    return true;
}

/* ---- request getters ---- */

const char *txm_http_request_method(const txm_http_request *req)
{
    return req != NULL ? req->method : NULL;
}

const char *txm_http_request_path(const txm_http_request *req)
{
    return req != NULL ? req->path : NULL;
}

const char *txm_http_request_route(const txm_http_request *req)
{
    return req != NULL ? req->route_label : NULL;
}

const char *txm_http_request_param(const txm_http_request *req, const char *name)
{
    return req != NULL ? txm__route_param(&req->params, name) : NULL;
}

/* The first header (MHD_HEADER_KIND) or query argument (MHD_GET_ARGUMENT_KIND)
 * called name, compared without case as MHD does, from MHD or from a request
 * built by txm__http_serve_input. A query value is raw (not unescaped). */
static const char *lookup(const txm_http_request *req, enum MHD_ValueKind kind, const char *name)
{
    if (req->conn != NULL)
        return MHD_lookup_connection_value(req->conn, kind, name);
    if (req->input == NULL)
        return NULL;
    bool header = kind == MHD_HEADER_KIND;
    const txm__http_field *f = header ? req->input->headers : req->input->query;
    size_t n = header ? req->input->header_count : req->input->query_count;
    for (size_t i = 0; i < n; i++)
        if (f[i].name != NULL && strcasecmp(f[i].name, name) == 0)
            return f[i].value;
    return NULL;
}

const char *txm_http_request_header(const txm_http_request *req, const char *name)
{
    if (req == NULL || name == NULL)
        return NULL;
    return lookup(req, MHD_HEADER_KIND, name);
}

const char *txm_http_request_query(const txm_http_request *req, const char *name)
{
    if (req == NULL || name == NULL)
        return NULL;
    /* The server turns MHD's unescaping off (see no_unescape), so keys and
     * values arrive as sent: match the raw key, decode the value here. */
    const char *raw = lookup(req, MHD_GET_ARGUMENT_KIND, name);
    if (raw == NULL)
        return NULL;
    size_t len = strlen(raw);
    struct qval *q = txm__malloc(sizeof *q + len + 1);
    if (q == NULL)
        return NULL;
    if (txm__pct_decode(raw, len, true, q->text, len + 1) < 0) {
        free(q);
        return NULL;
    }
    /* The getter is const for callers; the list only keeps the text alive. */
    txm_http_request *owner = (txm_http_request *)req;
    q->next = owner->qvals;
    owner->qvals = q;
    return q->text;
}

const char *txm_http_request_body(const txm_http_request *req, size_t *len)
{
    if (len != NULL)
        *len = req != NULL ? req->body_len : 0;
    if (req == NULL)
        return NULL;
    return req->body != NULL ? req->body : "";
}

const char *txm_http_request_correlation_id(const txm_http_request *req)
{
    return req != NULL ? req->cid : NULL;
}

/* ---- request life cycle ---- */

static bool correlation_ok(const char *s)
{
    size_t len = strnlen(s, TXM_HTTP_CORRELATION_MAX + 1);
    if (len == 0 || len > TXM_HTTP_CORRELATION_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* A request from MHD's conn, or from input when conn is NULL. */
static txm_http_request *request_alloc(txm_http_server *srv, struct MHD_Connection *conn,
                                       const txm__http_input *input, const char *url,
                                       const char *method)
{
    txm_http_request *req = txm__calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    req->srv = srv;
    req->conn = conn;
    req->input = input;
    req->method = method;
    req->path = url;
    req->route_label = UNMATCHED_ROUTE;
    const char *cid = lookup(req, MHD_HEADER_KIND, "X-Correlation-Id");
    if (cid != NULL && correlation_ok(cid))
        snprintf(req->cid, sizeof req->cid, "%s", cid);
    else if (txm_uuid_v7(req->cid, NULL) != TXM_OK)
        snprintf(req->cid, sizeof req->cid, "00000000-0000-0000-0000-000000000000");
    pthread_mutex_lock(&srv->lock);
    srv->inflight++;
    pthread_mutex_unlock(&srv->lock);
    return req;
}

static txm_http_request *request_new(txm_http_server *srv, struct MHD_Connection *conn,
                                     const char *url, const char *method)
{
    return request_alloc(srv, conn, NULL, url, method);
}

static void request_free(txm_http_request *req)
{
    while (req->qvals != NULL) {
        struct qval *next = req->qvals->next;
        free(req->qvals);
        req->qvals = next;
    }
    free(req->body);
    free(req->resp);
    free(req->owned_type);
    free(req->headers);
    free(req);
}

/* Reads and drops what the client still sends after an answer given before
 * its body (413, 431), up to max_discard_len bytes, until it closes or stays
 * silent for the idle timeout. A socket closed with unread data makes the
 * kernel send a reset instead of a FIN, and a client still sending its body
 * then fails in send() or loses the answer waiting in its receive buffer.
 * The write side is shut first, so the client sees the answer end while it
 * sends. Thread: the connection's, from on_completed, which MHD calls once
 * the answer is sent and before it closes the socket. */
static void drain(txm_http_server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return;
    int fd = ci->connect_fd;
    shutdown(fd, SHUT_WR);
    int idle_max_ms = (int)srv->opts.idle_timeout_s * 1000;
    if (idle_max_ms <= 0 || idle_max_ms > DRAIN_IDLE_MS_MAX)
        idle_max_ms = DRAIN_IDLE_MS_MAX;
    size_t left = srv->opts.max_discard_len;
    int idle_ms = 0;
    char buf[16384];
    while (left > 0 && idle_ms < idle_max_ms && !atomic_load(&srv->stopping)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, DRAIN_SLICE_MS);
        if (n == 0)
            idle_ms += DRAIN_SLICE_MS;
        if (n <= 0) {
            if (n < 0 && errno != EINTR)
                return;
            continue;
        }
        /* MHD's sockets are non-blocking; poll said there is something. */
        ssize_t got = recv(fd, buf, left < sizeof buf ? left : sizeof buf, 0);
        if (got == 0)
            return; /* the client closed after sending: both sides are done */
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return;
        if (got > 0) {
            left -= (size_t)got;
            idle_ms = 0;
        }
    }
}

/* MHD_OPTION_NOTIFY_COMPLETED: the request is over (answered or aborted). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    txm_http_server *srv = cls;
    txm_http_request *req = *con_cls;
    if (req == NULL) {
        /* A request MHD answered itself, without on_request (see
         * on_request_line): it stops reading at its error, so drain what
         * the client still sends, as after our own early answers. */
        if (toe == MHD_REQUEST_TERMINATED_WITH_ERROR)
            drain(srv, conn);
        return;
    }
    *con_cls = NULL;
    bool must_drain = req->drain && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    request_free(req);
    pthread_mutex_lock(&srv->lock);
    if (--srv->inflight == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    /* After the count: the request is answered, a graceful stop need not
     * wait for the drain (which ends when the server stops). */
    if (must_drain)
        drain(srv, conn);
}

/* MHD_KeyValueIterator: adds the bytes of one header line "key: value\r\n". */
static enum MHD_Result add_header_len(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    size_t *len = cls;
    *len += strlen(key) + 4 + (value != NULL ? strlen(value) : 0);
    return MHD_YES;
}

/* True when the header fields pass max_header_len. MHD holds them within
 * its per-connection memory (sized in txm_http_server_start to hold several
 * times the limit), so this sees them all unless they are far over it, when
 * MHD answers 431 itself, without calling on_request. */
static bool headers_too_big(const txm_http_request *req)
{
    size_t len = 0;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header_len, &len);
    return len > req->srv->opts.max_header_len;
}

/* True when the declared Content-Length already passes the limit, so the
 * answer is 413 before any of the body is read. */
static bool declared_too_big(const txm_http_request *req)
{
    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    /* MHD rejects a malformed Content-Length itself; be strict anyway. */
    return errno != 0 || end == cl || n > req->srv->opts.max_body_len;
}

/* Keeps a piece of the body, or drops it once the body is refused. Returns
 * false when the dropped bytes pass max_discard_len: the connection is then
 * closed rather than read on for a client that never stops (a chunked body
 * declares no length, so it gets here). */
static bool append_body(txm_http_request *req, const char *data, size_t len)
{
    size_t max = req->srv->opts.max_body_len;
    if (req->too_big || req->body_failed) {
        /* Keep reading and dropping, so the answer can be sent cleanly. */
        req->dropped += len;
        return req->dropped <= req->srv->opts.max_discard_len;
    }
    if (len > max - req->body_len) {
        req->too_big = true;
        req->dropped = req->body_len + len;
        free(req->body);
        req->body = NULL;
        req->body_len = 0;
        return req->dropped <= req->srv->opts.max_discard_len;
    }
    if (req->body_len + len + 1 > req->body_cap) {
        /* Double the buffer rather than grow by each chunk, up to the limit. */
        size_t cap = req->body_cap < 1024 ? 1024 : req->body_cap * 2;
        if (cap < req->body_len + len + 1)
            cap = req->body_len + len + 1;
        if (cap > max + 1)
            cap = max + 1;
        char *p = txm__realloc(req->body, cap);
        if (p == NULL) {
            req->body_failed = true;
            return true;
        }
        req->body = p;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return true;
}

/* ---- dispatch ---- */

#define METRICS_NAMES_MAX 32 /* ?name= filters of one /metrics request */

struct metric_names {
    const char *names[METRICS_NAMES_MAX];
    size_t n;
    bool too_many;
};

static enum MHD_Result add_metric_name(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    struct metric_names *f = cls;
    if (key == NULL || strcmp(key, "name") != 0 || value == NULL)
        return MHD_YES;
    if (f->n == METRICS_NAMES_MAX) {
        f->too_many = true;
        return MHD_NO;
    }
    f->names[f->n++] = value; /* metric names need no unescaping; raw text matches or not */
    return MHD_YES;
}

/* Answers GET /metrics from the registry; ?name=N (repeatable) renders
 * only the families named. */
static void serve_metrics(txm_http_request *req)
{
    struct metric_names f = {0};
    if (req->conn != NULL)
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_metric_name, &f);
    for (size_t i = 0; req->input != NULL && i < req->input->query_count; i++)
        if (add_metric_name(&f, MHD_GET_ARGUMENT_KIND, req->input->query[i].name,
                            req->input->query[i].value) == MHD_NO)
            break;
    if (f.too_many) {
        txm_http_reply_error(req, 400, "INVALID_ARGUMENT", "at most 32 name filters", NULL);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (txm_metrics_render_only(req->srv->opts.metrics, f.names, f.n, &text, &len, NULL) == TXM_OK)
        set_reply(req, 200, METRICS_TYPE, text, len, NULL);
    free(text); /* on failure the runtime answers 500 */
}

/* Serves a built-in path (/metrics, health); false when path is not one. */
static bool serve_builtin(txm_http_request *req)
{
    const txm_http_server *srv = req->srv;
    bool metrics = srv->opts.metrics != NULL && srv->opts.metrics_endpoint &&
                   strcmp(req->path, "/metrics") == 0;
    bool health = srv->health_path != NULL && strcmp(req->path, srv->health_path) == 0;
    if (!metrics && !health)
        return false;
    req->route_label = metrics ? "/metrics" : srv->health_path;
    if (strcmp(req->method, "GET") != 0) {
        snprintf(req->allow, sizeof req->allow, "GET");
        txm_http_reply_error(req, 405, "METHOD_NOT_ALLOWED", NULL, NULL);
    } else if (metrics) {
        serve_metrics(req);
    } else {
        txm_http_reply(req, 200, "{\"status\":\"ok\"}", NULL);
    }
    return true;
}

/* Adds method to the Allow list of a 405 unless it is there already. */
static void allow_add(txm_http_request *req, const char *method)
{
    size_t mlen = strlen(method);
    for (const char *p = req->allow; (p = strstr(p, method)) != NULL; p += mlen)
        if ((p == req->allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
            return;
    size_t used = strlen(req->allow);
    snprintf(req->allow + used, sizeof req->allow - used, "%s%s", used > 0 ? ", " : "", method);
}

/* Finds the route for the request: among the patterns matching the path,
 * the one with the fewest parameters under the request's method, first
 * added on ties. Fills req->params; NULL when none (req->allow then lists
 * the methods under which the path exists, if any). */
static const struct route *find_route(txm_http_request *req)
{
    const txm_http_server *srv = req->srv;
    const struct route *best = NULL;
    for (int i = 0; i < srv->nroutes; i++) {
        const struct route *r = &srv->routes[i];
        if (!txm__route_match(r->pattern, req->path, NULL))
            continue;
        if (strcmp(r->method, req->method) != 0) {
            allow_add(req, r->method);
            continue;
        }
        if (best == NULL || r->param_count < best->param_count)
            best = r;
    }
    if (best != NULL)
        txm__route_match(best->pattern, req->path, &req->params);
    return best;
}

static void dispatch(txm_http_request *req)
{
    txm_error err = {0};
    txm_status st = txm__route_check_path(req->path, &err);
    if (st == TXM_TOO_BIG) {
        txm_http_reply_error(req, 414, "URI_TOO_LONG", err.text, NULL);
        return;
    }
    if (st != TXM_OK) {
        txm_http_reply_error(req, 400, "VALIDATION_ERROR", err.text, NULL);
        return;
    }
    if (serve_builtin(req))
        return;
    const struct route *r = find_route(req);
    if (r != NULL) {
        req->route_label = r->pattern;
        r->handler(r->ctx, req);
    } else if (req->allow[0] != '\0') {
        txm_http_reply_error(req, 405, "METHOD_NOT_ALLOWED", NULL, NULL);
    } else {
        txm_http_reply_error(req, 404, "NOT_FOUND", NULL, NULL);
    }
}

static double elapsed_s(const struct timespec *start)
{
    struct timespec now = {0};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Writes the request's log line and metrics. */
static void record(const txm_http_request *req)
{
    const txm_http_server *srv = req->srv;
    double secs = elapsed_s(&req->start);
    if (srv->opts.metrics != NULL) {
        char status[8];
        snprintf(status, sizeof status, "%d", req->status);
        /* A full registry (TXM_TOO_BIG) only loses these series; the
         * request is answered regardless. */
        txm_metrics_counter_add(srv->opts.metrics, "txm_http_requests_total",
                                "HTTP requests answered, by route pattern and status.",
                                TXM_LABELS("route", req->route_label, "status", status), 1, NULL);
        txm_metrics_histogram_observe(srv->opts.metrics, "txm_http_request_duration_seconds",
                                      "Time to answer an HTTP request, by route pattern.",
                                      TXM_LABELS("route", req->route_label), secs, NULL);
    }
    if (srv->opts.logger == NULL)
        return;
    json_t *fields = json_object();
    if (fields != NULL) {
        json_object_set_new(fields, "method",
                            txm__json_string_lossy(req->method, strlen(req->method)));
        json_object_set_new(fields, "path", txm__json_string_lossy(req->path, strlen(req->path)));
        json_object_set_new(fields, "route",
                            txm__json_string_lossy(req->route_label, strlen(req->route_label)));
        json_object_set_new(fields, "status", json_integer(req->status));
        /* Microseconds are all a reader needs: 3 decimals of a millisecond
         * (the logger prints reals with 15 digits, so this one stays exact). */
        json_object_set_new(fields, "duration_ms",
                            json_real((double)(int64_t)(secs * 1e6 + 0.5) / 1e3));
    }
    txm__log_fields(srv->opts.logger, req->status >= 500 ? TXM_LOG_ERROR : TXM_LOG_INFO, req->cid,
                    "request", fields);
    json_decref(fields);
}

/* ---- requests built without MHD ---- */

/* Copies the answer of req to out: what set_reply stored, or 500
 * SYSTEM_ERROR when nothing did, as send_reply sends. */
static txm_status take_answer(txm_http_request *req, txm__http_output *out, txm_error *err)
{
    if (!req->replied)
        set_reply(req, 500, JSON_TYPE, SYSTEM_ERROR_BODY, strlen(SYSTEM_ERROR_BODY), NULL);
    if (!req->replied) /* out of memory for the copy */
        return txm_errf(err, TXM_NOMEM, "http_serve_input: out of memory");
    out->status = req->status;
    out->content_type = req->content_type;
    out->body = req->resp;
    out->body_len = req->resp_len;
    snprintf(out->allow, sizeof out->allow, "%s", req->allow);
    req->resp = NULL;
    return TXM_OK;
}

txm_status txm__http_serve_input(txm_http_server *srv, const txm__http_input *in,
                                 txm__http_output *out, txm_error *err)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (srv == NULL || in == NULL || out == NULL || in->method == NULL || in->path == NULL ||
        (in->body == NULL && in->body_len > 0))
        return txm_errf(err, TXM_INVALID, "http_serve_input: NULL argument");
    txm_http_request *req = request_alloc(srv, NULL, in, in->path, in->method);
    if (req == NULL)
        return txm_errf(err, TXM_NOMEM, "http_serve_input: out of memory");
    /* The body as on_request keeps it: NUL-terminated, within the limit. */
    if (in->body_len > srv->opts.max_body_len) {
        req->too_big = true;
        txm_http_reply_error(req, 413, "PAYLOAD_TOO_LARGE", "request body exceeds the limit", NULL);
    } else if (in->body_len > 0) {
        req->body = txm__malloc(in->body_len + 1);
        if (req->body != NULL) {
            memcpy(req->body, in->body, in->body_len);
            req->body[in->body_len] = '\0';
            req->body_len = in->body_len;
        }
    }
    if (!req->replied && (in->body_len == 0 || req->body != NULL))
        dispatch(req);
    txm_status st = take_answer(req, out, err);
    if (st == TXM_OK)
        record(req);
    request_free(req);
    pthread_mutex_lock(&srv->lock);
    if (--srv->inflight == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return st;
}

/* Sends the answer set by set_reply, or 500 SYSTEM_ERROR when there is none. */
static enum MHD_Result send_reply(txm_http_request *req)
{
    const char *body = req->resp != NULL ? req->resp : "";
    size_t len = req->resp_len;
    if (!req->replied) {
        req->status = 500;
        req->content_type = JSON_TYPE;
        body = SYSTEM_ERROR_BODY;
        len = strlen(SYSTEM_ERROR_BODY);
    }
    record(req);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO; /* MHD closes the connection */
    bool ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->content_type) &&
              MHD_add_response_header(resp, "X-Correlation-Id", req->cid);
    if (ok && req->allow[0] != '\0')
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, req->allow);
    if (ok && req->replied)
        ok = add_extra_headers(req, resp);
    /* While stopping, ask keep-alive clients to go so their connections end. */
    if (ok && atomic_load(&req->srv->stopping))
        ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = ok ? MHD_queue_response(req->conn, (unsigned)req->status, resp) : MHD_NO;
    MHD_destroy_response(resp);
    return ret;
}

/* The body is complete (or refused): produce and send the answer. */
static enum MHD_Result finish(txm_http_request *req)
{
    if (req->head_too_big) {
        char detail[96];
        snprintf(detail, sizeof detail, "request header fields exceed %zu bytes",
                 req->srv->opts.max_header_len);
        txm_http_reply_error(req, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE", detail, NULL);
    } else if (req->too_big) {
        char detail[96];
        snprintf(detail, sizeof detail, "request body exceeds %zu bytes",
                 req->srv->opts.max_body_len);
        txm_http_reply_error(req, 413, "PAYLOAD_TOO_LARGE", detail, NULL);
    } else if (!req->body_failed) {
        dispatch(req);
    }
    return send_reply(req);
}

/* MHD_AccessHandlerCallback: called once when the headers are in, then for
 * each piece of the body, then once more with nothing left to upload. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    txm_http_server *srv = cls;
    txm_http_request *req = *con_cls;
    if (req == NULL) {
        req = request_new(srv, conn, url, method);
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        /* Answered before the body: MHD sends no "100 Continue", reads no
         * body and closes after the answer; on_completed drains. */
        if (headers_too_big(req)) {
            req->head_too_big = true;
            req->drain = true;
            return finish(req);
        }
        if (declared_too_big(req)) {
            req->too_big = true;
            req->drain = true;
            return finish(req);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool go_on = append_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return go_on ? MHD_YES : MHD_NO;
    }
    return finish(req);
}

/* ---- start and stop ---- */

/* MHD_OPTION_UNESCAPE_CALLBACK: leave the URL as sent. route.c splits the
 * path on '/' before decoding, so "%2F" inside a parameter is not a
 * separator; MHD's default would decode the whole path first. */
static size_t no_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* MHD_OPTION_URI_LOG_CALLBACK, for its side effect: MHD then reports to
 * on_completed the end of every request whose request line it read, also
 * of those it answers itself without calling on_request (431 when the
 * headers overflow its memory, 400 for a malformed header line). No
 * context is returned, so on_request still sees its first call as before. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)uri;
    (void)conn;
    return NULL;
}

/* True when text repeats MHD's last line written less than
 * MHD_LOG_REPEAT_MS ago: it is then counted. Otherwise it becomes the last
 * line, and *repeats says how many were left out before it. MHD writes one
 * line per connection refused at connection_limit, so a flood of
 * connections would otherwise be a flood of log lines. */
static bool mhd_log_repeated(txm_http_server *srv, const char *text, unsigned *repeats)
{
    struct timespec now = {0};
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    pthread_mutex_lock(&srv->lock);
    bool same = strncmp(text, srv->mhd_log_last, sizeof srv->mhd_log_last - 1) == 0;
    bool repeated = same && now_ms - srv->mhd_log_at_ms < MHD_LOG_REPEAT_MS;
    if (repeated) {
        srv->mhd_log_repeats++;
    } else {
        *repeats = srv->mhd_log_repeats;
        srv->mhd_log_repeats = 0;
        srv->mhd_log_at_ms = now_ms;
        snprintf(srv->mhd_log_last, sizeof srv->mhd_log_last, "%s", text);
    }
    pthread_mutex_unlock(&srv->lock);
    return repeated;
}

/* MHD_OPTION_EXTERNAL_LOGGER: MHD's own errors go to the logger, repeats
 * summarised. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    txm_http_server *srv = cls;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    unsigned repeats = 0;
    if (mhd_log_repeated(srv, text, &repeats))
        return;
    if (repeats > 0)
        txm_log_write(srv->opts.logger, TXM_LOG_WARN, NULL,
                      "libmicrohttpd: %s (the line before came %u more times)", text, repeats);
    else
        txm_log_write(srv->opts.logger, TXM_LOG_WARN, NULL, "libmicrohttpd: %s", text);
}

/* Each connection holds a descriptor, and a soft RLIMIT_NOFILE of 1024 (a
 * common default) would make accept fail with EMFILE long before
 * connection_limit: raise the soft limit to the hard one then. It is a
 * process-wide setting, but only ever raised, and this process polls with
 * poll() (MHD here, libpq, nats.c), never select(), so descriptors past
 * FD_SETSIZE are safe. When the hard limit is too low as well, MHD refuses
 * the connections past it (the warning says so). */
static void raise_fd_limit(const txm_http_server *srv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)srv->opts.connection_limit + FD_HEADROOM;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        txm_log_write(srv->opts.logger, TXM_LOG_INFO, NULL,
                      "http: raised the open files limit from %llu to %llu",
                      (unsigned long long)was, (unsigned long long)rl.rlim_cur);
    else
        rl.rlim_cur = was;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        txm_log_write(srv->opts.logger, TXM_LOG_WARN, NULL,
                      "http: open files limited to %llu: fewer than the %u connections of "
                      "connection_limit can be served",
                      (unsigned long long)rl.rlim_cur, srv->opts.connection_limit);
}

/* MHD_OPTION_CONNECTION_MEMORY_LIMIT: MHD keeps the request line and the
 * headers in a per-connection pool and answers 431 itself (with an HTML
 * body, never reaching on_request) when they do not fit. A pool several
 * times max_header_len lets on_request see headers somewhat over the limit
 * and answer the JSON 431. Pools over 32 KiB are mapped, not allocated, so
 * an idle connection only costs the pages its bytes touched. */
static size_t pool_len(const txm_http_server *srv)
{
    size_t h = srv->opts.max_header_len;
    size_t len = h > (SIZE_MAX - (64u << 10)) / 8 ? SIZE_MAX : h * 8 + (64u << 10);
    return len > (16u << 20) ? (16u << 20) : len;
}

txm_status txm_http_server_start(txm_http_server *srv, txm_error *err)
{
    if (srv == NULL)
        return txm_errf(err, TXM_INVALID, "http_server_start: NULL server");
    if (srv->started)
        return txm_errf(err, TXM_STATE, "http_server_start: already started");
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_AUTO;
    if (srv->ipv6)
        flags |= MHD_USE_IPv6;
    if (srv->opts.logger != NULL)
        flags |= MHD_USE_ERROR_LOG;
    raise_fd_limit(srv);
    errno = 0;
    /* MHD wants the logger first, so it also reports problems with the
     * options that follow. */
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&srv->addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)srv->opts.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)srv->opts.idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool_len(srv),
        MHD_OPTION_THREAD_STACK_SIZE, srv->opts.thread_stack_len, MHD_OPTION_URI_LOG_CALLBACK,
        on_request_line, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, srv, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        int e = errno;
        txm_errf(err, TXM_IO, "http_server_start: cannot serve on %s port %u%s%s",
                 srv->bind_address, (unsigned)srv->opts.port, e != 0 ? ": " : "",
                 e != 0 ? strerror(e) : "");
        if (err != NULL)
            err->sys_errno = e;
        return TXM_IO;
    }
    srv->started = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    atomic_store(&srv->port, info != NULL ? info->port : srv->opts.port);
    return TXM_OK;
}

uint16_t txm_http_server_port(const txm_http_server *srv)
{
    return srv != NULL ? atomic_load(&((txm_http_server *)srv)->port) : 0;
}

/* Waits until no request is in progress or timeout_ms passed. */
static void wait_idle(txm_http_server *srv, int timeout_ms)
{
    struct timespec deadline = {0};
    clock_gettime(CLOCK_MONOTONIC, &deadline); /* the clock of srv->idle */
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&srv->lock);
    while (srv->inflight > 0)
        if (pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&srv->lock);
}

void txm_http_server_stop(txm_http_server *srv)
{
    if (srv == NULL || srv->daemon == NULL)
        return;
    atomic_store(&srv->stopping, true);
    /* Stop accepting first; connections already open keep being served. */
    MHD_socket listen_fd = MHD_quiesce_daemon(srv->daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd); /* quiesce hands the listening socket to the caller */
    wait_idle(srv, srv->opts.shutdown_timeout_ms);
    /* Closes idle keep-alive connections and joins every thread. */
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}

void txm_http_server_close(txm_http_server *srv)
{
    if (srv == NULL)
        return;
    txm_http_server_stop(srv);
    for (int i = 0; i < srv->nroutes; i++)
        free(srv->routes[i].pattern);
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    free(srv->bind_address);
    free(srv->health_path);
    free(srv);
}
