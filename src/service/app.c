/* App runtime: configuration from the environment, the database, transport,
 * consumer, metrics and HTTP server of one service, the consumer and
 * outbox metrics, and the run loop that waits for SIGTERM/SIGINT and stops
 * in order (HTTP first, then the consumer).
 *
 * Thread safety: everything is set up before txm_app_start and only read
 * afterwards, except stop_requested (an atomic). Metric callbacks run on
 * the thread rendering /metrics and use only thread-safe handles. Signals
 * are taken with sigtimedwait by the thread in txm_app_run; every other
 * thread has them blocked, so no signal handler and no global exist. */
#include "txmsg/app.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "service/service_int.h"
#include "txmsg/outbox.h"

#define APP_QUEUES_MAX 64     /* subscriptions per app */
#define DLQ_COUNT_LIMIT 10000 /* dead letters counted per scrape at most */
#define RUN_POLL_MS 200       /* how often txm_app_run looks at stop_requested */
#define DEFAULT_BROKER "embedded:./txmsg-broker.db"

/* One subscription, the context of its metric callbacks. */
typedef struct app_queue {
    txm_app *app;
    char queue[TXM_TOPIC_MAX + 1];
} app_queue;

struct txm_app {
    char service[TXM_APP_NAME_MAX + 1];
    char health_path[TXM_APP_NAME_MAX + 16]; /* "/<service>/health" */
    char *database_url;                      /* owned */
    char *broker_url;                        /* owned */
    char *bind_address;                      /* owned */
    int port;                                /* 0..65535 */
    size_t max_body_len;                     /* bytes */
    unsigned connection_limit;               /* HTTP connections at once */
    unsigned idle_timeout_s;                 /* silent HTTP connections are closed */
    size_t max_header_len;                   /* bytes of HTTP header fields */
    txm_logger logger;
    txm_metrics *metrics;
    txm_db *db;
    txm_transport *transport;
    txm_consumer *consumer;
    txm_http_server *http;
    app_queue *queues[APP_QUEUES_MAX];
    int n_queues;
    sigset_t signals;    /* SIGINT and SIGTERM */
    sigset_t saved_mask; /* the opening thread's mask before open */
    atomic_bool stop_requested;
    bool started;
    bool stopped;
};

void txm_app_options_init(txm_app_options *o, const char *service, uint16_t default_port)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->service = service;
    o->default_port = default_port;
    o->port = -1;
    o->max_body_len = 64 * 1024;
    o->min_log_level = TXM_LOG_INFO;
}

/* ---- configuration ---- */

static bool service_name_ok(const char *s)
{
    size_t len = strnlen(s, TXM_APP_NAME_MAX + 1);
    if (len == 0 || len > TXM_APP_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* The option when set, else the environment variable when set and not
 * empty, else fallback. Borrows. */
static const char *setting(const char *option, const char *env, const char *fallback)
{
    if (option != NULL)
        return option;
    const char *v = getenv(env);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static txm_status resolve_port(const txm_app_options *o, int *port, txm_error *err)
{
    if (o->port >= 0) {
        if (o->port > 65535)
            return txm_errf(err, TXM_INVALID, "app: port %d is not 0..65535", o->port);
        *port = o->port;
        return TXM_OK;
    }
    const char *v = getenv("PORT");
    if (v == NULL || v[0] == '\0') {
        *port = o->default_port;
        return TXM_OK;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 0 || n > 65535)
        return txm_errf(err, TXM_INVALID, "app: PORT=\"%.32s\" is not a port number 0..65535", v);
    *port = (int)n;
    return TXM_OK;
}

/* Reads the environment variable env as a whole number in 1..max, or
 * leaves *value (the default) when it is unset or empty. */
static txm_status env_count(const char *env, unsigned long long max, unsigned long long *value,
                            txm_error *err)
{
    const char *v = getenv(env);
    if (v == NULL || v[0] == '\0')
        return TXM_OK;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n < 1 || n > max)
        return txm_errf(err, TXM_INVALID, "app: %s=\"%.32s\" is not a number 1..%llu", env, v, max);
    *value = n;
    return TXM_OK;
}

/* The HTTP server's limits against many or hostile clients, from the
 * environment; the defaults are those of txm_http_options_init. */
static txm_status configure_http(txm_app *app, txm_error *err)
{
    txm_http_options d;
    txm_http_options_init(&d);
    unsigned long long limit = d.connection_limit, idle = d.idle_timeout_s,
                       header = d.max_header_len;
    txm_status st = env_count("TXMSG_HTTP_CONNECTION_LIMIT", 1000000, &limit, err);
    if (st == TXM_OK)
        st = env_count("TXMSG_HTTP_IDLE_TIMEOUT_S", 86400, &idle, err);
    if (st == TXM_OK)
        st = env_count("TXMSG_HTTP_MAX_HEADER_LEN", 1u << 20, &header, err);
    app->connection_limit = (unsigned)limit;
    app->idle_timeout_s = (unsigned)idle;
    app->max_header_len = (size_t)header;
    return st;
}

/* Fills the configuration part of app from o and the environment. */
static txm_status configure(txm_app *app, const txm_app_options *o, txm_error *err)
{
    if (o->service == NULL || !service_name_ok(o->service))
        return txm_errf(err, TXM_INVALID, "app: service name must be 1..%d bytes of [a-z0-9-]",
                        TXM_APP_NAME_MAX);
    if (o->max_body_len == 0)
        return txm_errf(err, TXM_INVALID, "app: max_body_len must be > 0");
    snprintf(app->service, sizeof app->service, "%s", o->service);
    snprintf(app->health_path, sizeof app->health_path, "/%s/health", o->service);
    txm_logger_init(&app->logger, o->service);
    app->logger.min_level = o->min_log_level;
    app->logger.stream = o->log_stream;
    app->max_body_len = o->max_body_len;
    txm_status st = resolve_port(o, &app->port, err);
    if (st == TXM_OK)
        st = configure_http(app, err);
    if (st != TXM_OK)
        return st;
    char default_db[TXM_APP_NAME_MAX + 16];
    snprintf(default_db, sizeof default_db, "sqlite:./%s.db", o->service);
    app->database_url = txm__strdup(setting(o->database_url, "TXMSG_DATABASE_URL", default_db));
    app->broker_url = txm__strdup(setting(o->broker_url, "TXMSG_BROKER_URL", DEFAULT_BROKER));
    app->bind_address = txm__strdup(setting(o->bind_address, "TXMSG_BIND_ADDRESS", "127.0.0.1"));
    if (app->database_url == NULL || app->broker_url == NULL || app->bind_address == NULL)
        return txm_errf(err, TXM_NOMEM, "app: out of memory");
    return TXM_OK;
}

/* ---- metrics ---- */

static txm_status stats_of(void *ctx, txm_consumer_stats *s)
{
    const app_queue *q = ctx;
    return txm_consumer_stats_get(q->app->consumer, q->queue, s, NULL);
}

static txm_status processed_fn(void *ctx, double *value)
{
    txm_consumer_stats s;
    txm_status st = stats_of(ctx, &s);
    *value = st == TXM_OK ? (double)s.processed : 0.0;
    return st;
}

static txm_status duplicates_fn(void *ctx, double *value)
{
    txm_consumer_stats s;
    txm_status st = stats_of(ctx, &s);
    *value = st == TXM_OK ? (double)s.duplicates : 0.0;
    return st;
}

static txm_status failures_fn(void *ctx, double *value)
{
    txm_consumer_stats s;
    txm_status st = stats_of(ctx, &s);
    *value = st == TXM_OK ? (double)s.failures : 0.0;
    return st;
}

static txm_status dead_lettered_fn(void *ctx, double *value)
{
    txm_consumer_stats s;
    txm_status st = stats_of(ctx, &s);
    *value = st == TXM_OK ? (double)s.dead_lettered : 0.0;
    return st;
}

_Static_assert(TXM_CONSUMER_BATCH_BUCKETS <= TXM_METRICS_HISTOGRAM_BOUNDS_MAX &&
                   TXM_CONSUMER_LATENCY_BUCKETS <= TXM_METRICS_HISTOGRAM_BOUNDS_MAX,
               "a consumer histogram has more bounds than a callback histogram takes");

/* Fills d from one of the consumer's histograms. txm_consumer_stats_get
 * reads each field on its own, not as one snapshot, so a batch committing
 * meanwhile can be in its bucket and not yet in the count: the count is
 * taken from the buckets, so the +Inf bucket and _count agree as the
 * format requires, and the sum may be one batch apart. */
static void fill_histogram(txm_metrics_histogram_data *d, const double *bounds, size_t n_bounds,
                           const uint64_t *buckets, double sum)
{
    d->n_bounds = n_bounds;
    memcpy(d->bounds, bounds, n_bounds * sizeof *bounds);
    d->count = 0;
    for (size_t i = 0; i <= n_bounds; i++) {
        d->buckets[i] = buckets[i];
        d->count += buckets[i];
    }
    d->sum = sum;
}

static txm_status batch_size_fn(void *ctx, txm_metrics_histogram_data *data)
{
    txm_consumer_stats s;
    txm_status st = stats_of(ctx, &s);
    if (st == TXM_OK)
        fill_histogram(data, txm_consumer_batch_bounds, TXM_CONSUMER_BATCH_BUCKETS, s.batch_buckets,
                       (double)s.batch_sum);
    return st;
}

static txm_status handle_latency_fn(void *ctx, txm_metrics_histogram_data *data)
{
    txm_consumer_stats s;
    txm_status st = stats_of(ctx, &s);
    if (st == TXM_OK)
        fill_histogram(data, txm_consumer_latency_bounds_s, TXM_CONSUMER_LATENCY_BUCKETS,
                       s.latency_buckets, s.latency_sum_s);
    return st;
}

/* Counts the dead letters of the queue by listing them: on NATS the
 * dead-letter queue is a subject of a stream with no consumer, so
 * txm_transport_queue_depth cannot count it; listing works on both. */
static txm_status dlq_depth_fn(void *ctx, double *value)
{
    const app_queue *q = ctx;
    txm_delivery **list = NULL;
    size_t count = 0;
    txm_status st =
        txm_transport_dlq_list(q->app->transport, q->queue, DLQ_COUNT_LIMIT, &list, &count, NULL);
    if (st == TXM_OK) {
        *value = (double)count;
        txm_delivery_list_free(list, count);
    }
    return st;
}

static txm_status register_queue_metrics(txm_app *app, app_queue *q, txm_error *err)
{
    const char *const *labels = TXM_LABELS("queue", q->queue);
    txm_metrics *m = app->metrics;
    txm_status st =
        txm_metrics_counter_fn(m, "txmsg_consumer_processed_total",
                               "Messages handled and committed.", labels, processed_fn, q, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_consumer_duplicates_total",
                                    "Messages found in the inbox and acknowledged unhandled.",
                                    labels, duplicates_fn, q, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_consumer_failures_total",
                                    "Handler or commit failures; the message is redelivered.",
                                    labels, failures_fn, q, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_consumer_dead_lettered_total",
                                    "Messages the consumer sent to the dead-letter queue: "
                                    "undecodable, or failed max_receive_count times.",
                                    labels, dead_lettered_fn, q, err);
    if (st == TXM_OK)
        st = txm_metrics_histogram_fn(m, "txmsg_consumer_batch_size",
                                      "Messages handled per committed batch (one unit of work).",
                                      labels, batch_size_fn, q, err);
    if (st == TXM_OK)
        st = txm_metrics_histogram_fn(m, "txmsg_consumer_handle_latency_seconds",
                                      "Seconds from a message's publish time in its envelope to "
                                      "the commit of its handling.",
                                      labels, handle_latency_fn, q, err);
    if (st == TXM_OK)
        st =
            txm_metrics_gauge_fn(m, "txmsg_dlq_depth", "Messages in the queue's dead-letter queue.",
                                 labels, dlq_depth_fn, q, err);
    return st;
}

static txm_status busy_waits_fn(void *ctx, double *value)
{
    *value = (double)txm_db_busy_waits(ctx);
    return TXM_OK;
}

/* ---- health ---- */

/* GET /<service>/health. Without its database a service can do nothing:
 * 503, so a load balancer takes it out. Without its broker it still takes
 * requests and commits their messages to the outbox, which the relay
 * publishes once the broker is back: 200 with "status": "degraded", so the
 * writes keep flowing while the broker is away. */
static void app_health(void *ctx, txm_http_request *req)
{
    txm_app *app = ctx;
    bool db_ok = txm_db_exec(app->db, "SELECT 1", NULL, 0, NULL, NULL, NULL) == TXM_OK;
    bool broker_ok = txm_transport_is_available(app->transport);
    char body[160];
    snprintf(body, sizeof body, "{\"status\":\"%s\",\"database\":\"%s\",\"broker\":\"%s\"}",
             !db_ok      ? "unavailable"
             : broker_ok ? "ok"
                         : "degraded",
             db_ok ? "available" : "unavailable", broker_ok ? "available" : "unavailable");
    txm_http_reply(req, db_ok ? 200 : 503, body, NULL);
}

/* ---- open and close ---- */

/* The scheme of url ("sqlite", "postgresql", "nats"...), for log lines that
 * must not show credentials. */
static void url_scheme(const char *url, char out[16])
{
    size_t n = strcspn(url, ":");
    snprintf(out, 16, "%.*s", (int)(n < 15 ? n : 15), url);
}

static txm_status open_parts(txm_app *app, txm_error *err)
{
    txm_db_options dbo;
    txm_db_options_init(&dbo);
    dbo.log = txm_logger_fn;
    dbo.log_ctx = &app->logger;
    txm_transport_options to;
    txm_transport_options_init(&to);
    to.log = txm_logger_fn;
    to.log_ctx = &app->logger;
    /* HTTP and the outbox work without the broker; consumers subscribe and
     * receive once it is there (see app_health). */
    to.background_connect = true;
    /* The consumer acks a message whose last lease ran out if its inbox has
     * it (an ack lost with the broker) instead of dead-lettering it. */
    to.deliver_exhausted = true;
    txm_consumer_options co;
    txm_consumer_options_init(&co);
    co.log = txm_logger_fn;
    co.log_ctx = &app->logger;
    txm_http_options ho;
    txm_http_options_init(&ho);
    ho.bind_address = app->bind_address;
    ho.port = (uint16_t)app->port;
    ho.max_body_len = app->max_body_len;
    ho.connection_limit = app->connection_limit;
    ho.idle_timeout_s = app->idle_timeout_s;
    ho.max_header_len = app->max_header_len;
    ho.logger = &app->logger;
    ho.metrics = app->metrics;
    txm_status st = txm_db_open(app->database_url, &dbo, &app->db, err);
    if (st == TXM_OK)
        st = txm_transport_open(app->broker_url, &to, &app->transport, err);
    if (st == TXM_OK)
        st = txm_consumer_open(app->db, app->transport, &co, &app->consumer, err);
    if (st == TXM_OK)
        st = txm_http_server_open(&ho, &app->http, err);
    if (st == TXM_OK)
        st = txm_http_route(app->http, "GET", app->health_path, app_health, app, err);
    if (st == TXM_OK)
        st = txm_metrics_add_outbox(app->metrics, app->db, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(app->metrics, "txmsg_db_busy_waits_total",
                                    "SQLite: sleeps waiting for another process's write lock.",
                                    NULL, busy_waits_fn, app->db, err);
    return st;
}

txm_status txm_app_open(const txm_app_options *opts, txm_app **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (opts == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "app_open: NULL argument");
    txm_app *app = txm__calloc(1, sizeof *app);
    if (app == NULL)
        return txm_errf(err, TXM_NOMEM, "app_open: out of memory");
    atomic_init(&app->stop_requested, false);
    /* Block before any thread exists (NATS and the HTTP server start some),
     * so that all of them inherit the mask and only sigtimedwait in
     * txm_app_run receives these signals. */
    sigemptyset(&app->signals);
    sigaddset(&app->signals, SIGINT);
    sigaddset(&app->signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &app->signals, &app->saved_mask);
    txm_status st = configure(app, opts, err);
    if (st == TXM_OK)
        st = txm_metrics_new(&app->metrics, err);
    if (st == TXM_OK)
        st = open_parts(app, err);
    if (st != TXM_OK) {
        txm_app_close(app);
        return st;
    }
    char db_kind[16], broker_kind[16];
    url_scheme(app->database_url, db_kind);
    url_scheme(app->broker_url, broker_kind);
    txm_log_write(&app->logger, TXM_LOG_INFO, NULL, "opened: database %s, broker %s", db_kind,
                  broker_kind);
    *out = app;
    return TXM_OK;
}

/* Takes SIGINT and SIGTERM that arrived while blocked, so restoring the
 * mask does not deliver them to their default action. */
static void drain_signals(const sigset_t *set)
{
    struct timespec zero = {0, 0};
    while (sigtimedwait(set, NULL, &zero) > 0) {
    }
}

void txm_app_close(txm_app *app)
{
    if (app == NULL)
        return;
    txm_app_stop(app);
    /* The HTTP server and the consumer borrow the rest: free them first.
     * Metric callbacks read db, transport and consumer, but only while
     * /metrics is rendered, which ended with the server. */
    txm_http_server_close(app->http);
    txm_consumer_close(app->consumer);
    txm_metrics_free(app->metrics);
    txm_transport_close(app->transport);
    txm_db_close(app->db);
    for (int i = 0; i < app->n_queues; i++)
        free(app->queues[i]);
    free(app->database_url);
    free(app->broker_url);
    free(app->bind_address);
    drain_signals(&app->signals);
    pthread_sigmask(SIG_SETMASK, &app->saved_mask, NULL);
    free(app);
}

/* ---- registration ---- */

txm_status txm_app_route(txm_app *app, const char *method, const char *pattern,
                         txm_http_handler handler, void *ctx, txm_error *err)
{
    if (app == NULL)
        return txm_errf(err, TXM_INVALID, "app_route: NULL app");
    return txm_http_route(app->http, method, pattern, handler, ctx, err);
}

txm_status txm_app_subscribe(txm_app *app, const char *topic, const char *queue,
                             txm_handler_fn handler, void *ctx, const txm_handler_options *opts,
                             txm_error *err)
{
    if (app == NULL || queue == NULL)
        return txm_errf(err, TXM_INVALID, "app_subscribe: NULL argument");
    if (app->started)
        return txm_errf(err, TXM_STATE, "app_subscribe: app already started");
    if (app->n_queues == APP_QUEUES_MAX)
        return txm_errf(err, TXM_TOO_BIG, "app_subscribe: more than %d subscriptions",
                        APP_QUEUES_MAX);
    if (strlen(queue) > TXM_TOPIC_MAX)
        return txm_errf(err, TXM_INVALID, "app_subscribe: queue name too long");
    txm_status st = txm_consumer_subscribe(app->consumer, topic, queue, handler, ctx, opts, err);
    if (st != TXM_OK)
        return st;
    app_queue *q = txm__calloc(1, sizeof *q);
    if (q == NULL)
        return txm_errf(err, TXM_NOMEM, "app_subscribe: out of memory");
    q->app = app;
    snprintf(q->queue, sizeof q->queue, "%s", queue);
    app->queues[app->n_queues++] = q;
    return register_queue_metrics(app, q, err);
}

/* ---- running ---- */

txm_status txm_app_start(txm_app *app, txm_error *err)
{
    if (app == NULL)
        return txm_errf(err, TXM_INVALID, "app_start: NULL app");
    if (app->started)
        return txm_errf(err, TXM_STATE, "app_start: already started");
    /* The workers and connection threads created below inherit this
     * thread's mask: make sure it blocks the signals here too. */
    pthread_sigmask(SIG_BLOCK, &app->signals, NULL);
    app->started = true;
    txm_status st = txm_consumer_start(app->consumer, err);
    if (st == TXM_OK) {
        st = txm_http_server_start(app->http, err);
        if (st != TXM_OK)
            txm_consumer_stop(app->consumer);
    }
    if (st != TXM_OK) {
        app->stopped = true;
        return st;
    }
    txm_log_write(&app->logger, TXM_LOG_INFO, NULL, "listening on %s port %u, %d subscriptions",
                  app->bind_address, (unsigned)txm_http_server_port(app->http), app->n_queues);
    return TXM_OK;
}

txm_status txm_app_run(txm_app *app, txm_error *err)
{
    if (app == NULL)
        return txm_errf(err, TXM_INVALID, "app_run: NULL app");
    if (!app->started) {
        txm_status st = txm_app_start(app, err);
        if (st != TXM_OK)
            return st;
    }
    int sig = 0;
    while (!atomic_load(&app->stop_requested) && sig <= 0) {
        struct timespec wait = {0, RUN_POLL_MS * 1000000L};
        sig = sigtimedwait(&app->signals, NULL, &wait);
    }
    txm_log_write(&app->logger, TXM_LOG_INFO, NULL, "stopping (%s)",
                  sig == SIGTERM  ? "SIGTERM"
                  : sig == SIGINT ? "SIGINT"
                                  : "requested");
    txm_app_stop(app);
    txm_log_write(&app->logger, TXM_LOG_INFO, NULL, "stopped");
    return TXM_OK;
}

void txm_app_request_stop(txm_app *app)
{
    if (app != NULL)
        atomic_store(&app->stop_requested, true);
}

void txm_app_stop(txm_app *app)
{
    if (app == NULL || !app->started || app->stopped)
        return;
    app->stopped = true;
    /* HTTP first, so no new request starts while the consumer drains; the
     * consumer then commits and acknowledges the messages it holds. */
    txm_http_server_stop(app->http);
    txm_consumer_stop(app->consumer);
}

/* ---- getters ---- */

txm_http_server *txm__app_http(const txm_app *app)
{
    return app != NULL ? app->http : NULL;
}

txm_db *txm_app_db(const txm_app *app)
{
    return app != NULL ? app->db : NULL;
}

txm_transport *txm_app_transport(const txm_app *app)
{
    return app != NULL ? app->transport : NULL;
}

txm_metrics *txm_app_metrics(const txm_app *app)
{
    return app != NULL ? app->metrics : NULL;
}

const txm_logger *txm_app_logger(const txm_app *app)
{
    return app != NULL ? &app->logger : NULL;
}

const char *txm_app_service(const txm_app *app)
{
    return app != NULL ? app->service : NULL;
}

uint16_t txm_app_port(const txm_app *app)
{
    return app != NULL ? txm_http_server_port(app->http) : 0;
}
