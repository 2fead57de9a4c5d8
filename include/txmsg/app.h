/* App runtime: the wiring every txmsg HTTP service needs in one handle.
 * It reads the environment, opens the database, the transport, an
 * idempotent consumer, a metrics registry and an HTTP server, lets the
 * service add routes and message handlers, and runs until SIGTERM or
 * SIGINT with a graceful stop.
 *
 * Environment (each overridden by a non-NULL option):
 *   TXMSG_DATABASE_URL  default "sqlite:./<service>.db"
 *   TXMSG_BROKER_URL    default "embedded:./txmsg-broker.db"
 *   PORT                default the service's port
 *   TXMSG_BIND_ADDRESS  default "127.0.0.1"
 *   TXMSG_HTTP_CONNECTION_LIMIT  default 2048: concurrent HTTP connections
 *   TXMSG_HTTP_IDLE_TIMEOUT_S    default 30: a silent connection is closed
 *   TXMSG_HTTP_MAX_HEADER_LEN    default 16384: larger header fields get 431 */
#ifndef TXMSG_APP_H
#define TXMSG_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/consumer.h"
#include "txmsg/db.h"
#include "txmsg/service.h"
#include "txmsg/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct txm_app txm_app;

#define TXM_APP_NAME_MAX 63 /* bytes of a service name */

typedef struct txm_app_options {
    const char *service;      /* [a-z0-9-], 1..TXM_APP_NAME_MAX bytes: the log lines'
                                 "service", the health path /<service>/health and the
                                 default database file; required */
    uint16_t default_port;    /* the port when neither port nor PORT says one */
    int port;                 /* 0..65535 (0 = ephemeral, see txm_app_port);
                                 -1 (default) = $PORT, else default_port */
    const char *database_url; /* NULL (default) = $TXMSG_DATABASE_URL, else
                                 "sqlite:./<service>.db" */
    const char *broker_url;   /* NULL (default) = $TXMSG_BROKER_URL, else
                                 "embedded:./txmsg-broker.db" */
    const char *bind_address; /* NULL (default) = $TXMSG_BIND_ADDRESS, else "127.0.0.1" */
    size_t max_body_len;      /* HTTP request body limit, bytes; default 64 KiB */
    int min_log_level;        /* TXM_LOG_*; default TXM_LOG_INFO */
    void *log_stream;         /* a FILE * for the JSON log lines; NULL (default) = stderr */
} txm_app_options;

/* Fills o with the defaults for service (borrowed: it must outlive the
 * txm_app_open call) listening on default_port. */
TXM_API void txm_app_options_init(txm_app_options *o, const char *service, uint16_t default_port);

/* Opens everything: metrics, database (txmsg schema migrated), transport,
 * consumer and a stopped HTTP server that serves GET /<service>/health and
 * GET /metrics. Registers the gauges txmsg_outbox_not_dispatched and
 * txmsg_outbox_oldest_not_dispatched_age_seconds. Blocks SIGINT and SIGTERM
 * in the calling thread first, so that every thread the app starts
 * inherits the mask and txm_app_run alone takes them.
 * Returns TXM_INVALID for a bad option or environment value (err names
 * it), or the status of the part that failed to open (TXM_DB, TXM_BROKER,
 * TXM_IO, ...). Owns: *out is the caller's (txm_app_close); NULL on failure.
 * Borrows: opts and its strings (copied). Thread: call open, start and run
 * from one thread, normally main(). */
TXM_API txm_status txm_app_open(const txm_app_options *opts, txm_app **out, txm_error *err);

/* Adds an HTTP route; see txm_http_route. Before txm_app_start only.
 * Borrows: ctx, which must outlive the app. */
TXM_API txm_status txm_app_route(txm_app *app, const char *method, const char *pattern,
                                 txm_http_handler handler, void *ctx, txm_error *err);

/* Subscribes queue to topic and runs handler for each message behind the
 * inbox; see txm_consumer_subscribe (opts may be NULL: concurrency 1, dead-letter
 * queue "<queue>--dlq", max_receive_count 3). Also registers
 * txmsg_consumer_processed_total, txmsg_consumer_duplicates_total,
 * txmsg_consumer_failures_total, txmsg_consumer_dead_lettered_total, the
 * gauge txmsg_dlq_depth and the histograms txmsg_consumer_batch_size
 * (messages per committed batch) and txmsg_consumer_handle_latency_seconds
 * (from the publish time in a message's envelope to the commit of its
 * handling), each with the label queue; their buckets are those of
 * txm_consumer_stats. Before txm_app_start only. Borrows: ctx. */
TXM_API txm_status txm_app_subscribe(txm_app *app, const char *topic, const char *queue,
                                     txm_handler_fn handler, void *ctx,
                                     const txm_handler_options *opts, txm_error *err);

/* Starts the consumer's threads, then the HTTP server, and logs the
 * address. Returns TXM_IO when the address cannot be bound, TXM_STATE if
 * already started. */
TXM_API txm_status txm_app_start(txm_app *app, txm_error *err);

/* Starts the app unless started, then blocks until SIGTERM or SIGINT
 * arrives or txm_app_request_stop is called, and stops gracefully
 * (txm_app_stop). Returns TXM_OK after a clean stop, or the start failure. */
TXM_API txm_status txm_app_run(txm_app *app, txm_error *err);

/* Makes txm_app_run return within about 200 ms. Thread: any; also safe in
 * a signal handler. */
TXM_API void txm_app_request_stop(txm_app *app);

/* Graceful stop: the HTTP server stops accepting and answers the requests
 * in progress, then the consumer finishes its in-flight messages. Safe to
 * call twice and before start. Not from a handler. */
TXM_API void txm_app_stop(txm_app *app);

/* Stops (as txm_app_stop), closes everything and frees app. Pending SIGINT
 * and SIGTERM are discarded and the calling thread gets back the signal
 * mask it had before txm_app_open (call it from that thread). NULL-safe. */
TXM_API void txm_app_close(txm_app *app);

/* Parts of the app. Borrows: valid until txm_app_close. Thread: any. */
TXM_API txm_db *txm_app_db(const txm_app *app);
TXM_API txm_transport *txm_app_transport(const txm_app *app);
TXM_API txm_metrics *txm_app_metrics(const txm_app *app);
TXM_API const txm_logger *txm_app_logger(const txm_app *app);
TXM_API const char *txm_app_service(const txm_app *app);

/* The bound HTTP port once started (the real one when the port was 0); 0
 * before. */
TXM_API uint16_t txm_app_port(const txm_app *app);

#ifdef __cplusplus
}
#endif
#endif
