/* Service runtime: a metrics registry rendered as Prometheus text, JSON log
 * lines, and an HTTP server with routes, correlation ids and a body limit,
 * used by the relay and by HTTP services built on txmsg. */
#ifndef TXMSG_SERVICE_H
#define TXMSG_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/api.h"
#include "txmsg/db.h"
#include "txmsg/error.h"
#include "txmsg/log.h"
#include "txmsg/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Metrics ------------------------------------------------------------ */

typedef struct txm_metrics txm_metrics;

#define TXM_METRICS_SERIES_MAX 1024        /* series per registry (one label set each) */
#define TXM_METRICS_NAME_MAX 128           /* bytes of a metric name */
#define TXM_METRICS_HELP_MAX 512           /* bytes of a help text */
#define TXM_METRICS_LABELS_MAX 8           /* label pairs per series */
#define TXM_METRICS_LABEL_NAME_MAX 64      /* bytes of a label name */
#define TXM_METRICS_LABEL_VALUE_MAX 256    /* bytes of a label value */
#define TXM_METRICS_RENDER_MAX (16u << 20) /* bytes of rendered text */

/* Labels are a NULL-terminated array of name, value, name, value, ...
 * (NULL itself means no labels). TXM_LABELS builds one in place:
 *   txm_metrics_counter_add(m, "x_total", "help", TXM_LABELS("queue", q), 1, err);
 * Names match [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__" and are not
 * "le"; values are any UTF-8 text and are escaped when rendered. The order
 * of pairs does not matter: {a,b} and {b,a} name the same series. */
#define TXM_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A value computed when the registry is rendered (outbox age, queue depth).
 * Return TXM_OK with *value set; any other status leaves the series out of
 * that rendering. Thread: the thread calling txm_metrics_render, without
 * the registry's lock held, so it may block (a database query) and may
 * itself update the registry. */
typedef txm_status (*txm_metrics_value_fn)(void *ctx, double *value);

/* Bucket bounds of a callback histogram at most. */
#define TXM_METRICS_HISTOGRAM_BOUNDS_MAX 16

/* The state of a histogram kept elsewhere (a consumer's stats), as a
 * txm_metrics_histogram_data_fn gives it: a value the callback fills, like
 * the options structs. buckets counts per bucket, not cumulatively:
 * buckets[i] the values <= bounds[i] and above the bound before it,
 * buckets[n_bounds] those above the last bound (the +Inf bucket). The
 * registry makes them cumulative when it renders. */
typedef struct txm_metrics_histogram_data {
    size_t n_bounds;                                 /* 0..TXM_METRICS_HISTOGRAM_BOUNDS_MAX */
    double bounds[TXM_METRICS_HISTOGRAM_BOUNDS_MAX]; /* upper bounds: finite, increasing */
    uint64_t buckets[TXM_METRICS_HISTOGRAM_BOUNDS_MAX + 1]; /* observations per bucket, +Inf last */
    uint64_t count; /* observations: the sum of buckets[0..n_bounds] */
    double sum;     /* sum of the observed values, in the metric's unit */
} txm_metrics_histogram_data;

/* Fills *data (zeroed by the caller, the registry) with the histogram's
 * current state, at each render. Return TXM_OK with *data set; any other
 * status leaves the series out of that rendering. Thread: as
 * txm_metrics_value_fn. */
typedef txm_status (*txm_metrics_histogram_data_fn)(void *ctx, txm_metrics_histogram_data *data);

/* Creates an empty registry. Returns TXM_NOMEM. Owns: *out is the caller's
 * (txm_metrics_free); NULL on failure. Thread: the registry may be used from
 * any number of threads at once. */
TXM_API txm_status txm_metrics_new(txm_metrics **out, txm_error *err);

/* Frees m. NULL-safe. No other thread may be using it. */
TXM_API void txm_metrics_free(txm_metrics *m);

/* Adds delta (finite, >= 0) to the counter name{labels}, creating it at 0
 * first. name must end in "_total" and match [a-zA-Z_:][a-zA-Z0-9_:]*. help
 * is kept from the first call that creates the family (may be NULL).
 * Returns TXM_INVALID for a bad name, label or delta, or a name already used
 * with another type; TXM_TOO_BIG past TXM_METRICS_SERIES_MAX series;
 * TXM_NOMEM. Borrows: every string (copied). Thread: any. */
TXM_API txm_status txm_metrics_counter_add(txm_metrics *m, const char *name, const char *help,
                                           const char *const *labels, double delta, txm_error *err);

/* Sets the gauge name{labels} to value (finite), creating it. Same statuses
 * as txm_metrics_counter_add, without the "_total" rule. Thread: any. */
TXM_API txm_status txm_metrics_gauge_set(txm_metrics *m, const char *name, const char *help,
                                         const char *const *labels, double value, txm_error *err);

/* Adds delta (finite, may be negative) to the gauge name{labels}, creating
 * it at 0. Same statuses as txm_metrics_gauge_set. Thread: any. */
TXM_API txm_status txm_metrics_gauge_add(txm_metrics *m, const char *name, const char *help,
                                         const char *const *labels, double delta, txm_error *err);

/* Records one observation of value_s seconds (finite) in the histogram
 * name{labels}, with the default buckets 0.001, 0.0025, 0.005, 0.01, 0.025,
 * 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 s and +Inf. Same statuses as
 * txm_metrics_gauge_set. Thread: any. */
TXM_API txm_status txm_metrics_histogram_observe(txm_metrics *m, const char *name, const char *help,
                                                 const char *const *labels, double value_s,
                                                 txm_error *err);

/* Makes the gauge name{labels} a callback: fn(ctx) gives its value at each
 * txm_metrics_render. Registering the same series again replaces fn and ctx.
 * Statuses as txm_metrics_gauge_set, and TXM_INVALID for a NULL fn.
 * Borrows: ctx, which must stay valid while the registry may be rendered.
 * Thread: any. */
TXM_API txm_status txm_metrics_gauge_fn(txm_metrics *m, const char *name, const char *help,
                                        const char *const *labels, txm_metrics_value_fn fn,
                                        void *ctx, txm_error *err);

/* Same for a counter whose total is kept elsewhere (a consumer's stats): fn
 * returns the running total. The "_total" rule applies. Thread: any. */
TXM_API txm_status txm_metrics_counter_fn(txm_metrics *m, const char *name, const char *help,
                                          const char *const *labels, txm_metrics_value_fn fn,
                                          void *ctx, txm_error *err);

/* Makes the histogram name{labels} a callback: fn(ctx) gives its bounds,
 * buckets, count and sum at each txm_metrics_render, which writes them as
 * the histograms of txm_metrics_histogram_observe are written. The bounds
 * come from the callback, so they can only be checked then: when fn fails,
 * or its data has more than TXM_METRICS_HISTOGRAM_BOUNDS_MAX bounds, a
 * bound that is not finite or not above the one before, or a count that
 * is not the sum of the buckets, the series is left out of that rendering.
 * A family may hold both observed and callback series. Registering the
 * same series again replaces fn and ctx. Statuses as
 * txm_metrics_histogram_observe (TXM_INVALID for a name already used with
 * another type), and TXM_INVALID for a NULL fn. Borrows: ctx, which must
 * stay valid while the registry may be rendered. Thread: any. */
TXM_API txm_status txm_metrics_histogram_fn(txm_metrics *m, const char *name, const char *help,
                                            const char *const *labels,
                                            txm_metrics_histogram_data_fn fn, void *ctx,
                                            txm_error *err);

/* Registers the outbox backlog gauges of db, read through the outbox
 * repository each time m is rendered: txmsg_outbox_not_dispatched (rows not
 * marked dispatched) and txmsg_outbox_oldest_not_dispatched_age_seconds (0
 * when there are none). A render while the database is away fails those
 * series only. Statuses as txm_metrics_gauge_fn; TXM_INVALID for a NULL m
 * or db. Borrows: db, which must stay open while m may be rendered.
 * Thread: any. */
TXM_API txm_status txm_metrics_add_outbox(txm_metrics *m, txm_db *db, txm_error *err);

/* Renders every series in the Prometheus text exposition format 0.0.4:
 * "# HELP" and "# TYPE" once per family, families and series in the order
 * they were created, histograms as cumulative _bucket{le=...}, _sum and
 * _count. A failed callback leaves its series out; the family's HELP and
 * TYPE lines stay. Returns TXM_TOO_BIG past TXM_METRICS_RENDER_MAX,
 * TXM_NOMEM. Owns: *out is the caller's (txm_free), NUL-terminated; *len
 * (may be NULL) its length; *out is NULL on failure. Thread: any;
 * callbacks run on this thread. */
TXM_API txm_status txm_metrics_render(txm_metrics *m, char **out, size_t *len, txm_error *err);

/* The same for the families named in names only (n of them; exact names,
 * "_total" included for counters): the callbacks of the other families do
 * not run, so a frequent poller of one counter does not pay for gauges that
 * query a database. n == 0 renders everything. GET /metrics?name=NAME
 * (repeatable) uses it. TXM_INVALID for a NULL m or out, or names NULL with
 * n > 0. Thread: any. */
TXM_API txm_status txm_metrics_render_only(txm_metrics *m, const char *const *names, size_t n,
                                           char **out, size_t *len, txm_error *err);

/* ---- JSON log lines ----------------------------------------------------- */

#define TXM_LOG_SERVICE_MAX 63 /* bytes of a service name */
#define TXM_LOG_MSG_MAX 4096   /* bytes of a formatted message; longer is truncated */

/* A logger is a caller-allocated value: fill it with txm_logger_init, then
 * change fields as needed. It writes one JSON object per line:
 *   {"ts":"2026-11-26T22:44:31.123456Z","level":"info","service":"orders",
 *    "msg":"...","correlation_id":"..."}
 * Each line is written with one fwrite and flushed, so lines written from
 * several threads never interleave. */
typedef struct txm_logger {
    char service[TXM_LOG_SERVICE_MAX + 1]; /* "service" field; NUL-terminated */
    void *stream;                          /* a FILE * to write to; NULL = stderr */
    int min_level;                         /* lines below this level are dropped */
} txm_logger;

/* Fills lg: service (may be NULL for "txmsg"; truncated to
 * TXM_LOG_SERVICE_MAX bytes), stream stderr, min_level TXM_LOG_INFO. */
TXM_API void txm_logger_init(txm_logger *lg, const char *service);

/* Writes one line at level (TXM_LOG_*) when level >= lg->min_level. fmt is
 * printf-style; the text is truncated to TXM_LOG_MSG_MAX bytes and invalid
 * UTF-8 bytes become U+FFFD, so the line is always valid JSON.
 * correlation_id may be NULL (the field is then left out). NULL lg is a
 * no-op. Borrows: everything. Thread: any. */
TXM_API void txm_log_write(const txm_logger *lg, int level, const char *correlation_id,
                           const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* A txm_log_fn (txmsg/db.h) that writes text through the txm_logger *ctx,
 * for the log option of the library's other handles. Thread: any. */
TXM_API void txm_logger_fn(void *ctx, int level, const char *text);

/* ---- HTTP server -------------------------------------------------------- */

typedef struct txm_http_server txm_http_server;
typedef struct txm_http_request txm_http_request;

#define TXM_HTTP_ROUTES_MAX 64       /* routes per server */
#define TXM_HTTP_PATTERN_MAX 256     /* bytes of a route pattern */
#define TXM_HTTP_PARAMS_MAX 8        /* ":name" parameters per pattern */
#define TXM_HTTP_PARAM_NAME_MAX 31   /* bytes of a parameter name */
#define TXM_HTTP_PARAM_VALUE_MAX 255 /* bytes of a decoded parameter value */
#define TXM_HTTP_PATH_MAX 2048       /* bytes of a request path; longer gets 414 */
#define TXM_HTTP_CORRELATION_MAX 128 /* bytes of an X-Correlation-Id */

/* Handles one request. It must call txm_http_reply (or txm_http_reply_error)
 * exactly once before it returns; if it does not, the runtime answers 500
 * {"error":"SYSTEM_ERROR"}. Borrows: req, valid until the handler returns.
 * Thread: a connection thread of the server; several handlers run at once,
 * and each may block (database work) without stalling other connections. */
typedef void (*txm_http_handler)(void *ctx, txm_http_request *req);

typedef struct txm_http_options {
    const char *bind_address;  /* IPv4 or IPv6 literal; default "127.0.0.1"; copied */
    uint16_t port;             /* TCP port; 0 = an ephemeral port (txm_http_server_port) */
    size_t max_body_len;       /* request body limit in bytes, else 413; default 64 KiB */
    unsigned connection_limit; /* concurrent connections (one thread each); more are
                                  accepted and closed at once; default 2048 */
    unsigned idle_timeout_s;   /* a connection silent this long (idle keep-alive, or a
                                  client stalled mid-request) is closed; default 30 */
    int shutdown_timeout_ms;   /* stop waits this long for in-flight requests; default 10000 */
    const char *health_path;   /* e.g. "/orders/health": GET answers 200 {"status":"ok"};
                                  NULL = none; copied */
    bool metrics_endpoint;     /* serve GET /metrics when metrics is set; default true */
    const txm_logger *logger;  /* one line per request; optional; borrowed */
    txm_metrics *metrics;      /* txm_http_requests_total{route,status} and
                                  txm_http_request_duration_seconds{route}; optional;
                                  borrowed */
    size_t max_header_len;     /* request line and headers, bytes, else 431; default
                                  16 KiB (far larger ones get libmicrohttpd's own 431) */
    size_t max_discard_len;    /* body bytes read and dropped after a 413 or 431, so the
                                  client that sends them anyway reads its answer instead
                                  of a reset; more closes the connection; default 64 MiB */
    size_t thread_stack_len;   /* stack of each connection thread, bytes; default 1 MiB */
} txm_http_options;

/* Fills o with the defaults. */
TXM_API void txm_http_options_init(txm_http_options *o);

/* Creates a stopped server. opts may be NULL for the defaults; it is copied
 * (logger and metrics are borrowed and must outlive the server). Returns
 * TXM_INVALID for a bad bind address or option, TXM_NOMEM. Owns: *out is
 * the caller's (txm_http_server_close); NULL on failure. */
TXM_API txm_status txm_http_server_open(const txm_http_options *opts, txm_http_server **out,
                                        txm_error *err);

/* Adds a route: method ("GET", "POST", ...: 1..15 upper-case letters) and a
 * pattern of "/"-separated segments, each a literal or ":name" (a parameter
 * matching one non-empty segment), e.g. "/order/:id/cancel". Matching is
 * exact: "/order/1/" does not match "/order/:id". Each path segment is
 * percent-decoded after the path is split, so "%2F" stays inside a
 * parameter; a malformed escape or "%00" answers 400 VALIDATION_ERROR.
 * When several patterns match a path, the one with fewer parameters wins,
 * then the first added. A path matched only under other methods answers
 * 405 METHOD_NOT_ALLOWED with an Allow header; no match answers 404
 * NOT_FOUND. Returns TXM_INVALID for a bad method or pattern or a repeated
 * method + pattern, TXM_TOO_BIG past TXM_HTTP_ROUTES_MAX, TXM_STATE once
 * started. Borrows: ctx (must outlive the server); strings are copied.
 * Thread: before txm_http_server_start only. */
TXM_API txm_status txm_http_route(txm_http_server *srv, const char *method, const char *pattern,
                                  txm_http_handler handler, void *ctx, txm_error *err);

/* Binds and starts serving. Returns TXM_IO when the address cannot be bound
 * (err->sys_errno set when known), TXM_STATE if already started. */
TXM_API txm_status txm_http_server_start(txm_http_server *srv, txm_error *err);

/* The bound TCP port once started (the real one when options said 0); 0
 * before. Thread: any. */
TXM_API uint16_t txm_http_server_port(const txm_http_server *srv);

/* Graceful stop: stops accepting connections, waits up to
 * shutdown_timeout_ms for requests in progress to be answered, then closes
 * every connection and joins the threads. Safe to call twice and before
 * start. Not from a signal handler or a handler. */
TXM_API void txm_http_server_stop(txm_http_server *srv);

/* Stops (as txm_http_server_stop) and frees srv. NULL-safe. */
TXM_API void txm_http_server_close(txm_http_server *srv);

/* Request getters. Borrows: each result is valid until the handler returns;
 * none is NULL unless stated. Thread: the handler's thread. */
TXM_API const char *txm_http_request_method(const txm_http_request *req);
/* The path as sent, without the query string and not percent-decoded. */
TXM_API const char *txm_http_request_path(const txm_http_request *req);
/* The matched pattern ("/order/:id"). */
TXM_API const char *txm_http_request_route(const txm_http_request *req);
/* The decoded value of parameter ":name", or NULL if the pattern has none. */
TXM_API const char *txm_http_request_param(const txm_http_request *req, const char *name);
/* A request header (case-insensitive name), or NULL. */
TXM_API const char *txm_http_request_header(const txm_http_request *req, const char *name);
/* A query-string argument, percent-decoded ("+" as space), or NULL when
 * absent or malformed. */
TXM_API const char *txm_http_request_query(const txm_http_request *req, const char *name);
/* The body (NUL-terminated, "" when empty); *len (may be NULL) its length. */
TXM_API const char *txm_http_request_body(const txm_http_request *req, size_t *len);
/* X-Correlation-Id when it is 1..TXM_HTTP_CORRELATION_MAX bytes of
 * [A-Za-z0-9._-], else a new UUID v7. Sent back on the response. */
TXM_API const char *txm_http_request_correlation_id(const txm_http_request *req);

/* Sets the answer: status (100..599) and json_text (copied; NULL for an
 * empty body), sent as Content-Type: application/json with X-Correlation-Id.
 * Returns TXM_STATE if the request was already answered, TXM_INVALID for a
 * bad status, TXM_NOMEM (the runtime then answers 500). Thread: the
 * handler's thread, before it returns. */
TXM_API txm_status txm_http_reply(txm_http_request *req, int status, const char *json_text,
                                  txm_error *err);

/* Answers {"error":code} or, when detail is not NULL,
 * {"error":code,"detail":detail}, escaped as JSON. Statuses as
 * txm_http_reply. */
TXM_API txm_status txm_http_reply_error(txm_http_request *req, int status, const char *code,
                                        const char *detail, txm_error *err);

#define TXM_HTTP_REPLY_HEADERS_MAX 16 /* extra headers of one txm_http_reply_content */
#define TXM_HTTP_HEADER_MAX 1024      /* bytes of one header name or value */

/* Sets the answer as txm_http_reply does, with any content type (a page, a
 * script, a stylesheet) and extra response headers (Content-Security-Policy,
 * Cache-Control...). body: len bytes (copied; may be NULL when len is 0).
 * headers: NULL, or a NULL-terminated list name, value, name, value (as
 * TXM_LABELS builds one), at most TXM_HTTP_REPLY_HEADERS_MAX pairs, copied.
 * Names and values are printable ASCII of at most TXM_HTTP_HEADER_MAX bytes
 * (names without spaces or ':'), so no header can be split. X-Correlation-Id
 * is added as for every answer. Returns TXM_INVALID for a bad status,
 * content type or header, TXM_STATE if the request was already answered,
 * TXM_NOMEM. Thread: the handler's thread, before it returns. */
TXM_API txm_status txm_http_reply_content(txm_http_request *req, int status,
                                          const char *content_type, const void *body, size_t len,
                                          const char *const *headers, txm_error *err);

#ifdef __cplusplus
}
#endif
#endif
