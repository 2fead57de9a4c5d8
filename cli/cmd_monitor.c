/* txmsg monitor: measures the outbox, the relay and dead-letter queues and
 * reports each threshold crossed, for cron or a health checker. */
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "duration.h"

#define QUEUES_MAX 64
#define DEPTH_SCAN_MAX 10000 /* dead letters counted per queue */

/* With max_slot_wal_keep_size set, a slot closer than this fraction of it to
 * invalidation (pg_replication_slots.safe_wal_size) crosses the threshold. */
#define SAFE_WAL_FRACTION 4 /* a quarter */

enum {
    OPT_MAX_OUTBOX_AGE = 300,
    OPT_MAX_DLQ_DEPTH,
    OPT_QUEUE,
    OPT_MAX_RELAY_LAG,
    OPT_RELAY,
    OPT_MAX_SLOT_WAL
};

static const char USAGE[] =
    "usage: txmsg monitor [--max-outbox-age D] [--max-dlq-depth N --queue Q ...]\n"
    "                     [--max-relay-lag D] [--max-slot-wal BYTES] [--relay NAME]\n"
    "                     [options]\n"
    "Checks each given threshold. Prints one line per threshold crossed and exits 1;\n"
    "prints nothing and exits 0 when all pass. A check that cannot be made (database\n"
    "or broker down) counts as crossed. --json prints the measurements and the\n"
    "violations instead.\n\n"
    "  --max-outbox-age D  oldest not-dispatched outbox message at most D old\n"
    "  --max-dlq-depth N   at most N dead letters in each --queue\n"
    "  --queue Q           a queue whose dead-letter queue is checked (repeatable)\n"
    "  --max-relay-lag D   relay at most D behind (SQLite: age of the oldest message\n"
    "                      after its cursor; PostgreSQL: oldest not-dispatched message,\n"
    "                      and the slot must exist)\n"
    "  --max-slot-wal BYTES\n"
    "                      PostgreSQL: the relay's slot exists, is not invalidated\n"
    "                      and retains at most BYTES of WAL (such as 512MB, 2GB);\n"
    "                      with max_slot_wal_keep_size set, it is also more than a\n"
    "                      quarter of that away from invalidation (safe_wal_size)\n"
    "  --relay NAME        SQLite cursor or PostgreSQL slot (default: the relay's)\n";

typedef struct monitor_args {
    int64_t max_outbox_age_ms; /* 0: not checked */
    long long max_dlq_depth;   /* -1: not checked */
    const char *queues[QUEUES_MAX];
    size_t n_queues;
    int64_t max_relay_lag_ms; /* 0: not checked */
    int64_t max_slot_wal;     /* bytes; 0: not checked */
    const char *relay;        /* NULL: the default cursor or slot */
} monitor_args;

typedef struct monitor_out {
    const cli_ctx *ctx;
    json_t *measurements; /* object */
    json_t *violations;   /* array of the lines */
} monitor_out;

static void violation(monitor_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records one crossed threshold; in text mode prints it at once. */
static void violation(monitor_out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    json_array_append_new(o->violations, json_string(line));
    if (!o->ctx->json)
        printf("%s\n", line);
}

static int option(cli_ctx *ctx, int c, void *arg)
{
    monitor_args *a = arg;
    switch (c) {
    case OPT_MAX_OUTBOX_AGE:
        return cli_parse_duration(ctx, "--max-outbox-age", optarg, &a->max_outbox_age_ms);
    case OPT_MAX_RELAY_LAG:
        return cli_parse_duration(ctx, "--max-relay-lag", optarg, &a->max_relay_lag_ms);
    case OPT_MAX_SLOT_WAL:
        if (cli_size_parse(optarg, &a->max_slot_wal) == 0)
            return CLI_OK;
        return cli_usage_error(ctx,
                               "--max-slot-wal: bad size \"%s\" (want a positive whole number of "
                               "bytes, or with one unit: kB, MB, GB or TB, such as 512MB)",
                               optarg);
    case OPT_MAX_DLQ_DEPTH:
        return cli_parse_count(ctx, "--max-dlq-depth", optarg, 0, DEPTH_SCAN_MAX - 1,
                               &a->max_dlq_depth);
    case OPT_RELAY:
        a->relay = optarg;
        return CLI_OK;
    case OPT_QUEUE:
        if (a->n_queues == QUEUES_MAX)
            return cli_usage_error(ctx, "at most %d --queue options", QUEUES_MAX);
        if (optarg[0] == '\0')
            return cli_usage_error(ctx, "--queue wants a queue name");
        a->queues[a->n_queues++] = optarg;
        return CLI_OK;
    default:
        return CLI_NOT_MINE;
    }
}

static int parse(cli_ctx *ctx, int argc, char **argv, monitor_args *a)
{
    static const struct option opts[] = {
        {"max-outbox-age", required_argument, NULL, OPT_MAX_OUTBOX_AGE},
        {"max-dlq-depth", required_argument, NULL, OPT_MAX_DLQ_DEPTH},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"max-relay-lag", required_argument, NULL, OPT_MAX_RELAY_LAG},
        {"relay", required_argument, NULL, OPT_RELAY},
        {"max-slot-wal", required_argument, NULL, OPT_MAX_SLOT_WAL},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = cli_parse_options(ctx, argc, argv, opts, option, a, false);
    if (rc == CLI_OK && (a->max_dlq_depth >= 0) != (a->n_queues > 0))
        rc = cli_usage_error(ctx, "--max-dlq-depth and --queue go together");
    if (rc == CLI_OK && a->max_outbox_age_ms == 0 && a->max_dlq_depth < 0 &&
        a->max_relay_lag_ms == 0 && a->max_slot_wal == 0)
        rc = cli_usage_error(ctx, "nothing to check: give --max-outbox-age, --max-dlq-depth "
                                  "with --queue, --max-relay-lag or --max-slot-wal");
    return rc;
}

static json_t *age_json(bool has, int64_t us)
{
    return has ? cli_json_seconds(us) : json_null();
}

static void check_outbox(monitor_out *o, txm_db *db, const monitor_args *a)
{
    txm_outbox_stats s;
    txm_error err;
    if (txm_outbox_stats_get(db, &s, &err) != TXM_OK) {
        violation(o, "outbox: cannot measure: %s", err.text);
        return;
    }
    json_object_set_new(o->measurements, "outbox",
                        json_pack("{s:I, s:o}", "not_dispatched", (json_int_t)s.not_dispatched,
                                  "oldest_not_dispatched_age_seconds",
                                  age_json(s.has_oldest, s.oldest_age_us)));
    if (!s.has_oldest || s.oldest_age_us / 1000 <= a->max_outbox_age_ms)
        return;
    char age[32], max[32];
    cli_duration_format(s.oldest_age_us / 1000, age, sizeof age);
    cli_duration_format(a->max_outbox_age_ms, max, sizeof max);
    violation(o, "outbox: oldest not-dispatched message is %s old (max %s; %lld not dispatched)",
              age, max, (long long)s.not_dispatched);
}

static void check_relay(monitor_out *o, txm_db *db, const monitor_args *a)
{
    txm_relay_status r;
    txm_error err;
    if (txm_outbox_relay_status(db, a->relay, &r, &err) != TXM_OK) {
        violation(o, "relay: cannot measure: %s", err.text);
        return;
    }
    bool pg = strcmp(txm_db_dialect(db), "postgresql") == 0;
    json_object_set_new(o->measurements, "relay",
                        json_pack("{s:s, s:b, s:s, s:I, s:o}", "name", r.name, "found", r.found,
                                  "position", r.position, pg ? "bytes_behind" : "rows_behind",
                                  (json_int_t)r.behind, "lag_seconds",
                                  age_json(r.has_lag, r.lag_us)));
    if (pg && !r.found)
        violation(o, "relay: replication slot %s does not exist", r.name);
    if (!r.has_lag || r.lag_us / 1000 <= a->max_relay_lag_ms)
        return;
    char lag[32], max[32], behind[64] = "";
    cli_duration_format(r.lag_us / 1000, lag, sizeof lag);
    cli_duration_format(a->max_relay_lag_ms, max, sizeof max);
    if (r.found || !pg)
        snprintf(behind, sizeof behind, "; %lld %s behind", (long long)r.behind,
                 pg ? "WAL bytes" : "messages");
    violation(o, "relay: lag is %s (max %s%s)", lag, max, behind);
}

/* The slot's WAL: what it retains, its wal_status, how far it is from
 * invalidation, and whether a resync from the outbox table is under way. */
static const char SQL_SLOT_WAL[] =
    "SELECT wal_status, (pg_current_wal_lsn() - restart_lsn)::bigint, safe_wal_size,"
    " pg_size_bytes(current_setting('max_slot_wal_keep_size')),"
    " EXISTS (SELECT 1 FROM txmsg_settings WHERE name = 'relay_resync:' || slot_name)"
    " FROM pg_replication_slots WHERE slot_name = $1";

/* Text of a value for messages. */
static const char *size_text(int64_t bytes, char *out, size_t len)
{
    cli_size_format(bytes, out, len);
    return out;
}

/* Compares what the slot's WAL measures with the thresholds. A lost slot
 * (invalidated) is a violation: the relay recovers it from the outbox
 * table, but in messages mode the records in the lost WAL are gone. */
static void judge_slot_wal(monitor_out *o, const char *name, const txm_rows *rows, int64_t max)
{
    const char *status = txm_rows_text(rows, 0, 0);
    bool has_retained = !txm_rows_is_null(rows, 0, 1), has_safe = !txm_rows_is_null(rows, 0, 2);
    int64_t retained = txm_rows_int(rows, 0, 1), safe = txm_rows_int(rows, 0, 2);
    int64_t keep = txm_rows_int(rows, 0, 3);
    char a[32], b[32];
    json_object_set_new(
        o->measurements, "slot",
        json_pack("{s:s, s:b, s:s?, s:o, s:o, s:o, s:b}", "name", name, "found", true, "wal_status",
                  status, "retained_wal_bytes", has_retained ? json_integer(retained) : json_null(),
                  "safe_wal_bytes", has_safe ? json_integer(safe) : json_null(),
                  "max_slot_wal_keep_size_bytes", keep >= 0 ? json_integer(keep) : json_null(),
                  "resync_pending", strcmp(txm_rows_text(rows, 0, 4), "t") == 0));
    if (status != NULL && strcmp(status, "lost") == 0) {
        violation(o,
                  "slot: replication slot %s was invalidated (wal_status lost, "
                  "max_slot_wal_keep_size exceeded): the relay recreates it and republishes the "
                  "outbox rows not dispatched; in messages mode the records in the lost WAL are "
                  "gone",
                  name);
        return;
    }
    if (has_retained && retained > max)
        violation(o, "slot: replication slot %s retains %s of WAL (max %s)", name,
                  size_text(retained, a, sizeof a), size_text(max, b, sizeof b));
    if (has_safe && keep > 0 && safe < keep / SAFE_WAL_FRACTION)
        violation(o,
                  "slot: replication slot %s is invalidated after %s more WAL "
                  "(max_slot_wal_keep_size %s)",
                  name, size_text(safe > 0 ? safe : 0, a, sizeof a), size_text(keep, b, sizeof b));
}

static void check_slot_wal(monitor_out *o, txm_db *db, const monitor_args *a)
{
    char name[TXM_SLOT_NAME_MAX + 1] = "";
    txm_error err;
    txm_status st = TXM_OK;
    if (a->relay != NULL)
        snprintf(name, sizeof name, "%s", a->relay);
    else
        st = txm_db_relay_slot(db, name, &err);
    txm_value p = TXM_TEXT(name);
    txm_rows *rows = NULL;
    if (st == TXM_OK)
        st = txm_db_exec(db, SQL_SLOT_WAL, &p, 1, &rows, NULL, &err);
    if (st != TXM_OK)
        violation(o, "slot: cannot measure: %s", err.text);
    else if (txm_rows_count(rows) == 0) {
        json_object_set_new(o->measurements, "slot",
                            json_pack("{s:s, s:b}", "name", name, "found", false));
        violation(o, "slot: replication slot %s does not exist", name);
    } else
        judge_slot_wal(o, name, rows, a->max_slot_wal);
    txm_rows_free(rows);
}

static void check_dlq(monitor_out *o, txm_transport *t, const monitor_args *a)
{
    json_t *depths = json_object();
    json_object_set_new(o->measurements, "dlq", depths);
    for (size_t i = 0; i < a->n_queues; i++) {
        const char *q = a->queues[i];
        txm_delivery **list = NULL;
        size_t n = 0;
        txm_error err;
        txm_status st = txm_transport_dlq_list(t, q, DEPTH_SCAN_MAX, &list, &n, &err);
        txm_delivery_list_free(list, n);
        if (st == TXM_NOT_FOUND)
            violation(o, "dlq: queue %s is not declared on this broker", q);
        else if (st != TXM_OK)
            violation(o, "dlq: cannot measure %s: %s", q, err.text);
        if (st != TXM_OK)
            continue;
        json_object_set_new(depths, q, json_integer((json_int_t)n));
        if ((long long)n > a->max_dlq_depth)
            violation(o, "dlq: %s has %s%zu dead letters (max %lld)", q,
                      n == DEPTH_SCAN_MAX ? "at least " : "", n, a->max_dlq_depth);
    }
}

/* Opens what the checks need and runs them. A connection that fails counts
 * as a crossed threshold of the checks that needed it. */
static void run_checks(monitor_out *o, const monitor_args *a)
{
    txm_db *db = NULL;
    txm_transport *t = NULL;
    if (a->max_outbox_age_ms > 0 || a->max_relay_lag_ms > 0 || a->max_slot_wal > 0) {
        if (cli_open_db(o->ctx, &db) != CLI_OK)
            violation(o, "database: cannot connect");
        if (db != NULL && a->max_outbox_age_ms > 0)
            check_outbox(o, db, a);
        if (db != NULL && a->max_relay_lag_ms > 0)
            check_relay(o, db, a);
        if (db != NULL && a->max_slot_wal > 0)
            check_slot_wal(o, db, a);
    }
    if (a->max_dlq_depth >= 0) {
        if (cli_open_transport(o->ctx, &t) != CLI_OK)
            violation(o, "broker: cannot connect");
        if (t != NULL)
            check_dlq(o, t, a);
    }
    txm_transport_close(t);
    txm_db_close(db);
}

int cli_monitor(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "monitor", USAGE);
    monitor_args a = {.max_dlq_depth = -1};
    int rc = parse(ctx, argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    /* A missing URL is a usage error, found before measuring anything. */
    if ((a.max_outbox_age_ms > 0 || a.max_relay_lag_ms > 0 || a.max_slot_wal > 0) &&
        (ctx->database_url == NULL || ctx->database_url[0] == '\0'))
        return cli_usage_error(ctx, "no database: set TXMSG_DATABASE_URL or --database-url");
    if (a.max_slot_wal > 0 && strncmp(ctx->database_url, "sqlite:", 7) == 0)
        return cli_usage_error(ctx, "--max-slot-wal: SQLite has no replication slot "
                                    "(PostgreSQL only)");
    if (a.max_dlq_depth >= 0 && (ctx->broker_url == NULL || ctx->broker_url[0] == '\0'))
        return cli_usage_error(ctx, "no broker: set TXMSG_BROKER_URL or --broker-url");
    monitor_out o = {ctx, json_object(), json_array()};
    if (o.measurements == NULL || o.violations == NULL) {
        json_decref(o.measurements);
        json_decref(o.violations);
        return cli_fail(ctx, "out of memory");
    }
    run_checks(&o, &a);
    bool ok = json_array_size(o.violations) == 0;
    if (ctx->json)
        rc = cli_print_json(ctx, json_pack("{s:b, s:o, s:o}", "ok", ok, "measurements",
                                           o.measurements, "violations", o.violations));
    else {
        json_decref(o.measurements);
        json_decref(o.violations);
    }
    return rc == CLI_OK && ok ? CLI_OK : CLI_FAIL;
}
