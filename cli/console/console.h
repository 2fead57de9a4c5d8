/* txmsg console: the server half of the operations console. What its files
 * share: the console's state, its samples and jobs, and the reply helpers.
 *
 * Thread safety: the HTTP server runs each request on its connection's
 * thread, the sampler on its own, each redrive job on its own. c->lock
 * guards the databases and the broker being opened (each pointer goes from
 * NULL to a handle once and stays until the console closes; the handles are
 * thread-safe), the ring of samples and the jobs. Nothing slow runs under
 * the lock: database and broker calls happen outside it. */
#ifndef TXM_CLI_CONSOLE_CONSOLE_H
#define TXM_CLI_CONSOLE_CONSOLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cli.h"
#include "txmsg/service.h"

#define CONSOLE_SAMPLES 300         /* samples kept per series */
#define CONSOLE_QUEUES_MAX 64       /* queues with a history */
#define CONSOLE_JOBS_MAX 50         /* jobs kept */
#define CONSOLE_TOKEN_MAX 256       /* bytes of TXMSG_CONSOLE_TOKEN */
#define CONSOLE_HOST_MAX 300        /* bytes of an accepted Host header */
#define CONSOLE_HANDLED_WINDOW_S 10 /* handled per second: inbox rows of this window */

/* Figures of one service in one sample. */
typedef struct console_svc_fig {
    bool ok;                /* the database answered */
    int64_t not_dispatched; /* outbox rows not dispatched */
    bool has_oldest;
    int64_t oldest_age_ms; /* age of the oldest of them */
    bool has_lag;
    int64_t lag_ms; /* the relay's lag */
} console_svc_fig;

/* Figures of one queue in one sample. */
typedef struct console_queue_fig {
    bool ok; /* the broker answered and knows the queue */
    int64_t depth;
    int64_t in_flight;
    int64_t dead_letters;
    bool has_rate;
    double handled_per_second;
} console_queue_fig;

/* One sample of every series, taken by the sampler every interval. */
typedef struct console_sample {
    int64_t at_ms;
    console_svc_fig svc[CLI_SERVICES_MAX];
    console_queue_fig queue[CONSOLE_QUEUES_MAX]; /* by index in console.queue_names */
} console_sample;

typedef enum { JOB_RUNNING, JOB_DONE, JOB_CANCELLED, JOB_FAILED } console_job_state;

/* One redrive job. Fields below the thread are guarded by console.lock. */
typedef struct console_job {
    struct console *c;
    pthread_t thread;
    bool joinable;
    unsigned id;
    char queue[TXM_TOPIC_MAX + 1];
    char group[TXM_DLQ_GROUP_ID_LEN + 1]; /* "" when none */
    char match[TXM_DLQ_ERROR_MAX + 1];    /* "" when none */
    char message_id[TXM_ID_MAX + 1];      /* "" when none */
    double rate;                          /* messages per second */
    atomic_bool cancel;                   /* asked to stop */
    console_job_state state;
    size_t moved;
    size_t total;
    char error[TXM_ERROR_TEXT_LEN]; /* "" when none */
    int64_t started_us;
    int64_t ended_us; /* 0 while running */
} console_job;

/* One configured service. */
typedef struct console_service {
    cli_service cfg;
    txm_db *db;                     /* NULL until opened; guarded by lock */
    char error[TXM_ERROR_TEXT_LEN]; /* why it could not be opened; guarded */
    bool pg;                        /* a PostgreSQL URL */
} console_service;

typedef struct console {
    /* options, fixed once running */
    char listen_host[CONSOLE_HOST_MAX];
    uint16_t port; /* from --listen; the bound one once started */
    const char *broker_url;
    int64_t interval_ms;
    bool read_only;
    bool has_token;
    char token[CONSOLE_TOKEN_MAX + 1];
    console_service services[CLI_SERVICES_MAX];
    size_t n_services;
    txm_logger logger;

    pthread_mutex_t lock;
    txm_transport *t;                      /* NULL until opened; guarded */
    char broker_error[TXM_ERROR_TEXT_LEN]; /* guarded */

    /* history, guarded */
    char queue_names[CONSOLE_QUEUES_MAX][TXM_TOPIC_MAX + 1];
    size_t n_queue_names;
    bool queue_consumed[CONSOLE_QUEUES_MAX]; /* some service recorded inbox rows for it */
    console_sample *ring;                    /* CONSOLE_SAMPLES slots */
    size_t ring_start, ring_count;

    /* jobs, guarded */
    console_job *jobs[CONSOLE_JOBS_MAX];
    size_t n_jobs;
    unsigned next_job_id;

    /* sampler */
    pthread_t sampler;
    bool sampler_started;
    atomic_bool stopping;
    pthread_cond_t wake; /* with lock: the sampler's sleep */

    txm_http_server *srv;
} console;

/* ---- console.c: replies and checks shared by the routes ---- */

/* Answers doc (taken, may be NULL: 500) as JSON with the API's headers. */
void console_reply_json(txm_http_request *req, int status, json_t *doc);

/* Answers {"error": code, "detail": detail} with the API's headers. */
void console_reply_error(txm_http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers a body of another type (pages, scripts) with the page headers. */
void console_reply_page(txm_http_request *req, int status, const char *content_type,
                        const void *body, size_t len);

/* Checks the Host header; answers 421 and returns false when it is not the
 * console's. Every route calls it first. */
bool console_host_ok(console *c, txm_http_request *req);

/* console_host_ok, then the action checks (token, read-only): answers 403
 * and returns false when the action is refused. */
bool console_action_ok(console *c, txm_http_request *req);

/* The service named name, or NULL after answering 404 UNKNOWN_SERVICE. */
console_service *console_find_service(console *c, txm_http_request *req, const char *name);

/* The service's database, or NULL after answering 503 DATABASE_UNAVAILABLE. */
txm_db *console_service_db(console *c, txm_http_request *req, console_service *s);

/* The broker, or NULL after answering 503 BROKER_UNAVAILABLE. */
txm_transport *console_transport(console *c, txm_http_request *req);

/* Parses query parameter name as an integer in lo..hi (def when absent);
 * false after answering 400 INVALID_PARAMETER. */
bool console_query_int(txm_http_request *req, const char *name, long long lo, long long hi,
                       long long def, long long *out);

/* A queue name from the path, or NULL after answering 400. */
const char *console_queue_param(txm_http_request *req);

/* text as a JSON string; bytes that are not UTF-8 (an error text from a
 * database or broker) become '?', so the answer is never lost. NULL only
 * when out of memory. */
json_t *console_json_text(const char *text);

/* RFC 3339 text or JSON null for 0. */
json_t *console_time_json(int64_t us);

/* ---- sampler.c ---- */

/* What one service's database says now. */
typedef struct console_live_svc {
    bool ok;                        /* the database answered */
    char error[TXM_ERROR_TEXT_LEN]; /* why not */
    txm_outbox_mode mode;
    txm_outbox_stats stats;
    bool relay_ok;
    txm_relay_status relay;
    txm_inbox_handled *handled; /* owned; inbox rows per subscription in the window */
    size_t n_handled;
} console_live_svc;

/* Everything the console reads at once: a sample, or an overview. */
typedef struct console_live {
    int64_t at_us;
    console_live_svc svc[CLI_SERVICES_MAX];
    bool broker_ok;
    char broker_error[TXM_ERROR_TEXT_LEN];
    txm_queue_info *queues; /* owned */
    size_t n_queues;
} console_live;

/* Opens what is not open yet: the services' databases and the broker. */
void console_connect(console *c);

/* Reads every service and the broker now. Owns: l's arrays until
 * console_live_free. */
void console_live_read(console *c, console_live *l);
void console_live_free(console_live *l);

/* Inbox rows per second of queue over the window, summed over the
 * services; false when no service records the queue (then *rate is 0). */
bool console_live_rate(console *c, const console_live *l, const char *queue, double *rate);

/* Starts and stops the sampler thread. */
txm_status console_sampler_start(console *c, txm_error *err);
void console_sampler_stop(console *c);

/* ---- routes ---- */
txm_status console_api_overview_routes(console *c, txm_error *err);
txm_status console_api_outbox_routes(console *c, txm_error *err);
txm_status console_api_dlq_routes(console *c, txm_error *err);
txm_status console_assets_routes(console *c, txm_error *err);

/* ---- jobs.c ---- */
txm_status console_api_jobs_routes(console *c, txm_error *err);
/* Starts a redrive job from a template (queue, group, match, message_id,
 * rate set). Answers 202 with the job, or an error. */
void console_job_start(console *c, txm_http_request *req, const console_job *tmpl);
/* Cancels every running job and joins every job thread. */
void console_jobs_stop(console *c);

/* txmsg console: the subcommand. */
int cli_console(cli_ctx *ctx, int argc, char **argv);

#endif
