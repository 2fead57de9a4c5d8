/* Relay logging and metrics. Metric values are read from the loop's atomic
 * counters when /metrics is rendered, so the loop never waits on HTTP; the
 * slot's retained WAL is queried then too, at most every few seconds.
 *
 * Thread safety: wal_mu guards the cached retained-WAL figure, which
 * concurrent scrapes share. */
#include "relay_http.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "txmsg/service.h"

struct relay_http {
    txm_logger logger;
    txm_db *db; /* outbox gauges, read at render time */
    txm_metrics *metrics;
    txm_http_server *server;
    relay_stats *stats;
    pthread_mutex_t wal_mu;
    double retained_wal;      /* bytes, as last queried */
    long long retained_at_ms; /* when (relay_mono_ms); 0: never */
};

/* The slot's retained WAL is queried at most this often: a scrape every
 * second must not become a catalog query every second. */
#define RETAINED_WAL_EVERY_MS 5000

#define COUNTER_READER(fn_name, field)                                                             \
    static txm_status fn_name(void *ctx, double *value)                                            \
    {                                                                                              \
        *value = (double)atomic_load(&((relay_stats *)ctx)->field);                                \
        return TXM_OK;                                                                             \
    }

COUNTER_READER(read_published, published)
COUNTER_READER(read_batches, batches)
COUNTER_READER(read_bad_rows, bad_rows)
COUNTER_READER(read_errors_db, errors_db)
COUNTER_READER(read_errors_broker, errors_broker)
COUNTER_READER(read_position, position)
COUNTER_READER(read_standby, standby)
COUNTER_READER(read_slot_resyncs, slot_resyncs)

static txm_status read_lag(void *ctx, double *value)
{
    *value = (double)atomic_load(&((relay_stats *)ctx)->lag_us) / 1e6;
    return TXM_OK;
}

static txm_status read_latency(void *ctx, txm_metrics_histogram_data *h)
{
    relay_stats *s = ctx;
    h->n_bounds = TXM_CONSUMER_LATENCY_BUCKETS;
    for (size_t i = 0; i <= TXM_CONSUMER_LATENCY_BUCKETS; i++) {
        if (i < TXM_CONSUMER_LATENCY_BUCKETS)
            h->bounds[i] = txm_consumer_latency_bounds_s[i];
        h->buckets[i] = atomic_load(&s->latency_buckets[i]);
        h->count += h->buckets[i];
    }
    h->sum = (double)atomic_load(&s->latency_sum_us) / 1e6;
    return TXM_OK;
}

/* WAL bytes the relay's slot keeps from removal: pg_current_wal_lsn()
 * minus its restart_lsn. Fails (the series is left out) while the slot is
 * unknown, missing or invalidated, or the database is away. */
static txm_status read_retained_wal(void *ctx, double *value)
{
    relay_http *h = ctx;
    if (h->db == NULL || !atomic_load(&h->stats->slot_known))
        return TXM_NOT_FOUND;
    pthread_mutex_lock(&h->wal_mu);
    long long now = relay_mono_ms();
    txm_status st = TXM_OK;
    if (h->retained_at_ms == 0 || now - h->retained_at_ms >= RETAINED_WAL_EVERY_MS) {
        txm_value p = TXM_TEXT(h->stats->slot);
        txm_rows *rows = NULL;
        st = txm_db_exec(
            h->db,
            "SELECT (pg_current_wal_lsn() - restart_lsn)::text"
            " FROM pg_replication_slots WHERE slot_name = $1 AND restart_lsn IS NOT NULL",
            &p, 1, &rows, NULL, NULL);
        const char *v = txm_rows_text(rows, 0, 0);
        if (st == TXM_OK && v == NULL)
            st = TXM_NOT_FOUND;
        if (st == TXM_OK) {
            h->retained_wal = strtod(v, NULL);
            h->retained_at_ms = now;
        }
        txm_rows_free(rows);
    }
    *value = h->retained_wal;
    pthread_mutex_unlock(&h->wal_mu);
    return st;
}

static txm_status register_outbox_metrics(relay_http *h, const char *database_url, txm_error *err)
{
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    o.sqlite_cache_kb = RELAY_SQLITE_CACHE_KB;
    o.migrate = false;
    txm_status st = txm_db_open(database_url, &o, &h->db, err);
    if (st == TXM_OK)
        st = txm_metrics_add_outbox(h->metrics, h->db, err);
    if (st == TXM_OK && strcmp(txm_db_dialect(h->db), "postgresql") == 0)
        st = txm_metrics_gauge_fn(h->metrics, "txmsg_relay_slot_retained_wal_bytes",
                                  "WAL the relay's replication slot keeps from removal "
                                  "(pg_current_wal_lsn() - restart_lsn), queried at most every "
                                  "5 s; at max_slot_wal_keep_size the slot is invalidated.",
                                  NULL, read_retained_wal, h, err);
    return st;
}

static txm_status register_metrics(relay_http *h, txm_error *err)
{
    txm_metrics *m = h->metrics;
    void *s = h->stats;
    txm_status st = txm_metrics_counter_fn(m, "txmsg_relay_published_total",
                                           "Messages published and acknowledged by the broker.",
                                           NULL, read_published, s, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_relay_batches_total", "Batches published.", NULL,
                                    read_batches, s, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_relay_bad_rows_total",
                                    "Outbox rows skipped: they do not form a valid envelope.", NULL,
                                    read_bad_rows, s, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_relay_errors_total", "Relay errors by kind.",
                                    TXM_LABELS("kind", "database"), read_errors_db, s, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_relay_errors_total", NULL,
                                    TXM_LABELS("kind", "broker"), read_errors_broker, s, err);
    if (st == TXM_OK)
        st = txm_metrics_gauge_fn(m, "txmsg_relay_lag_seconds",
                                  "Age of the newest published message when it was published "
                                  "(iterator age).",
                                  NULL, read_lag, s, err);
    if (st == TXM_OK)
        st = txm_metrics_histogram_fn(
            m, "txmsg_relay_publish_latency_seconds",
            "Time from a message's creation in its unit of work to the broker's acknowledgement "
            "of its publish (buckets as txmsg_consumer_handle_latency_seconds).",
            NULL, read_latency, s, err);
    if (st == TXM_OK)
        st = txm_metrics_gauge_fn(m, "txmsg_relay_position",
                                  "Confirmed log position: SQLite sequence or PostgreSQL LSN.",
                                  NULL, read_position, s, err);
    if (st == TXM_OK)
        st = txm_metrics_counter_fn(m, "txmsg_relay_slot_resyncs_total",
                                    "PostgreSQL: times the replication slot was found missing or "
                                    "invalidated, recreated, and the outbox rows not dispatched "
                                    "republished from the table.",
                                    NULL, read_slot_resyncs, s, err);
    if (st == TXM_OK)
        st = txm_metrics_gauge_fn(m, "txmsg_relay_standby",
                                  "1 while another relay holds the replication slot.", NULL,
                                  read_standby, s, err);
    return st;
}

static txm_status start_server(relay_http *h, const char *database_url, const char *address,
                               int port, txm_error *err)
{
    txm_http_options o;
    txm_http_options_init(&o);
    o.bind_address = address;
    o.port = (uint16_t)port;
    o.health_path = "/health";
    o.logger = NULL; /* a scrape every few seconds is not news worth a log line */
    txm_status st = txm_metrics_new(&h->metrics, err);
    o.metrics = h->metrics;
    if (st == TXM_OK)
        st = register_metrics(h, err);
    if (st == TXM_OK)
        st = register_outbox_metrics(h, database_url, err);
    if (st == TXM_OK)
        st = txm_http_server_open(&o, &h->server, err);
    if (st == TXM_OK)
        st = txm_http_server_start(h->server, err);
    if (st == TXM_OK)
        txm_log_write(&h->logger, TXM_LOG_INFO, NULL, "relay: metrics on http://%s:%u/metrics",
                      address, txm_http_server_port(h->server));
    return st;
}

txm_status relay_http_open(relay_config *cfg, relay_stats *stats, const char *address, int port,
                           relay_http **out, txm_error *err)
{
    *out = NULL;
    relay_http *h = calloc(1, sizeof *h);
    if (h == NULL)
        return txm_errf(err, TXM_NOMEM, "relay: out of memory");
    txm_logger_init(&h->logger, "txmsg-relay");
    pthread_mutex_init(&h->wal_mu, NULL);
    h->stats = stats;
    cfg->log = txm_logger_fn;
    cfg->log_ctx = &h->logger;
    txm_error why = {0};
    if (port >= 0 && start_server(h, cfg->database_url, address, port, &why) != TXM_OK) {
        txm_status st = txm_errf(err, why.status, "relay: cannot serve metrics: %s", why.text);
        cfg->log = NULL;
        cfg->log_ctx = NULL;
        relay_http_close(h);
        return st;
    }
    *out = h;
    return TXM_OK;
}

void relay_http_close(relay_http *h)
{
    if (h == NULL)
        return;
    txm_http_server_stop(h->server);
    txm_http_server_close(h->server);
    txm_metrics_free(h->metrics);
    txm_db_close(h->db);
    pthread_mutex_destroy(&h->wal_mu);
    free(h);
}
