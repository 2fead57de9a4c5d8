/* txmsg outbox: the state of a service's outbox and its relay, listing,
 * dispatching stuck messages by hand, retention purge, and PostgreSQL's
 * outbox mode (table rows or logical decoding messages). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dispatch.h"
#include "duration.h"

#define DISPATCH_BATCH CLI_DISPATCH_BATCH /* messages per publish and per mark */

enum {
    OPT_RELAY = 300,
    OPT_NOT_DISPATCHED,
    OPT_OLDER_THAN,
    OPT_TOPIC,
    OPT_LIMIT,
    OPT_ID,
    OPT_DRY_RUN,
};

/* True when db publishes in messages mode: no rows to list, dispatch or
 * purge but those left from table mode. */
static bool messages_mode(const txm_db *db)
{
    return txm_outbox_mode_get(db) == TXM_OUTBOX_MESSAGES;
}

/* Says on stderr (stdout stays one JSON document) what a command can see
 * of an outbox in messages mode. */
static void note_messages_mode(const cli_ctx *ctx, const char *what)
{
    fprintf(stderr,
            "%s: this database is in messages mode: messages travel as logical decoding "
            "messages in the WAL, not as txmsg_outbox rows, so %s\n",
            ctx->prog, what);
}

/* ---- outbox status ------------------------------------------------------ */

static const char STATUS_USAGE[] =
    "usage: txmsg outbox status [--relay NAME] [options]\n"
    "Counts the messages not dispatched yet and the age of the oldest, and shows\n"
    "where the relay stands. SQLite: its cursor against the newest sequence number;\n"
    "lag is the age of the oldest message after the cursor. There a message counts\n"
    "as dispatched once every relay's cursor has passed it (except rows the relay\n"
    "skipped as invalid) or once `txmsg outbox dispatch` marked it. PostgreSQL: its\n"
    "logical replication slot (active, confirmed_flush_lsn, WAL bytes behind); lag\n"
    "is the age of the oldest message not dispatched yet. In messages mode (txmsg\n"
    "outbox mode) there is no backlog table: the WAL bytes behind are the lag, and\n"
    "the counts cover only rows left from table mode.\n\n"
    "  --relay NAME        SQLite cursor (default \"default\") or PostgreSQL slot\n"
    "                      (default txmsg_<database>)\n";

static void print_status_text(const txm_outbox_stats *s, const txm_relay_status *r, bool pg,
                              bool messages)
{
    char age[32] = "-", lag[32] = "none";
    if (s->has_oldest)
        cli_duration_format(s->oldest_age_us / 1000, age, sizeof age);
    if (r->has_lag)
        cli_duration_format(r->lag_us / 1000, lag, sizeof lag);
    else if (messages)
        snprintf(lag, sizeof lag, "unknown (see bytes behind)");
    if (messages)
        printf("outbox: messages mode, no backlog table; rows left from table mode: %lld not "
               "dispatched",
               (long long)s->not_dispatched);
    else
        printf("outbox: %lld not dispatched", (long long)s->not_dispatched);
    if (s->has_oldest)
        printf(", oldest %s old", age);
    printf("\n");
    if (pg && !r->found)
        printf("relay: replication slot %s does not exist\n", r->name);
    else if (pg)
        printf("relay: slot %s %s, confirmed_flush_lsn %s, %lld bytes behind, lag %s\n", r->name,
               r->active ? "active" : "inactive", r->position[0] ? r->position : "-",
               (long long)r->behind, lag);
    else
        printf("relay: cursor \"%s\"%s at %s of %lld (%lld behind), lag %s\n", r->name,
               r->found ? "" : " (no relay has run)", r->position, (long long)s->max_seq,
               (long long)r->behind, lag);
}

static json_t *lag_json(bool has, int64_t us)
{
    return has ? cli_json_seconds(us) : json_null();
}

static int print_status_json(const cli_ctx *ctx, const txm_outbox_stats *s,
                             const txm_relay_status *r, bool pg, txm_outbox_mode mode)
{
    json_t *relay =
        json_pack("{s:s, s:b, s:s, s:o}", "name", r->name, "found", r->found, "position",
                  r->position, "lag_seconds", lag_json(r->has_lag, r->lag_us));
    if (relay != NULL && pg) {
        json_object_set_new(relay, "active", json_boolean(r->active));
        json_object_set_new(relay, "bytes_behind", json_integer(r->behind));
    } else if (relay != NULL) {
        json_object_set_new(relay, "rows_behind", json_integer(r->behind));
    }
    return cli_print_json(
        ctx, json_pack("{s:s, s:s, s:I, s:o, s:I, s:o}", "database", pg ? "postgresql" : "sqlite",
                       "outbox_mode", txm_outbox_mode_name(mode), "not_dispatched",
                       (json_int_t)s->not_dispatched, "oldest_not_dispatched_age_seconds",
                       lag_json(s->has_oldest, s->oldest_age_us), "max_seq", (json_int_t)s->max_seq,
                       "relay", relay));
}

static int status_option(cli_ctx *ctx, int c, void *arg)
{
    (void)ctx;
    if (c != OPT_RELAY)
        return CLI_NOT_MINE;
    *(const char **)arg = optarg;
    return CLI_OK;
}

static int cmd_status(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"relay", required_argument, NULL, OPT_RELAY}, CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
    cli_begin(ctx, "outbox status", STATUS_USAGE);
    const char *relay = NULL;
    int rc = cli_parse_options(ctx, argc, argv, opts, status_option, &relay, false);
    txm_db *db = NULL;
    if (rc != CLI_OK || (rc = cli_open_db(ctx, &db)) != CLI_OK)
        return rc;
    bool pg = strcmp(txm_db_dialect(db), "postgresql") == 0;
    txm_outbox_mode mode = txm_outbox_mode_get(db);
    txm_outbox_stats s;
    txm_relay_status r;
    txm_error err;
    txm_status st = txm_outbox_stats_get(db, &s, &err);
    if (st == TXM_OK)
        st = txm_outbox_relay_status(db, relay, &r, &err);
    txm_db_close(db);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot read the outbox: %s", err.text);
    if (ctx->json)
        return print_status_json(ctx, &s, &r, pg, mode);
    print_status_text(&s, &r, pg, mode == TXM_OUTBOX_MESSAGES);
    return CLI_OK;
}

/* ---- outbox list ---------------------------------------------------------- */

static const char LIST_USAGE[] =
    "usage: txmsg outbox list [--not-dispatched] [--older-than DURATION] [--topic T]\n"
    "                         [--limit N] [options]\n"
    "Lists outbox messages, oldest first. In messages mode only the rows left\n"
    "from table mode are there: messages-mode messages are not stored.\n\n"
    "  --not-dispatched    only messages not dispatched yet\n"
    "  --older-than D      only messages created more than D ago (30s, 5m, 2h, 365d)\n"
    "  --topic T           only messages of topic T\n"
    "  --limit N           at most N messages, 1..1000000 (default 100)\n";

/* One entry as JSON; the payload stays JSON. NULL when out of memory. */
static json_t *entry_json(const txm_outbox_entry *e)
{
    const txm_msg *m = txm_outbox_entry_msg(e);
    char created[TXM_TIME_LEN + 1], last[TXM_TIME_LEN + 1];
    txm_time_format(txm_msg_created_at_us(m), created);
    int64_t last_us = txm_outbox_entry_last_dispatched_at_us(e);
    txm_time_format(last_us, last);
    json_t *payload = json_loads(txm_msg_payload(m), JSON_DECODE_ANY, NULL);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:o, s:o}", "seq",
                     (json_int_t)txm_outbox_entry_seq(e), "message_id", txm_msg_id(m), "topic",
                     txm_msg_topic(m), "source", txm_msg_source(m), "aggregate_id",
                     txm_msg_aggregate_id(m), "correlation_id", txm_msg_correlation_id(m),
                     "created_at", created, "is_dispatched", txm_outbox_entry_is_dispatched(e),
                     "dispatch_count", (json_int_t)txm_outbox_entry_dispatch_count(e),
                     "last_dispatched_at", last_us != 0 ? json_string(last) : json_null(),
                     "payload", payload != NULL ? payload : json_string(txm_msg_payload(m)));
}

static void print_entry_line(const char *prefix, const txm_outbox_entry *e)
{
    const txm_msg *m = txm_outbox_entry_msg(e);
    char created[TXM_TIME_LEN + 1], age[32];
    txm_time_format(txm_msg_created_at_us(m), created);
    cli_duration_format((txm_now_us() - txm_msg_created_at_us(m)) / 1000, age, sizeof age);
    printf("%s%-6lld %s %-36s %-10s %-3s %-4lld %s\n", prefix, (long long)txm_outbox_entry_seq(e),
           created, txm_msg_id(m), age, txm_outbox_entry_is_dispatched(e) ? "yes" : "no",
           (long long)txm_outbox_entry_dispatch_count(e), txm_msg_topic(m));
}

static int print_list(const cli_ctx *ctx, txm_outbox_entry **list, size_t n)
{
    if (!ctx->json) {
        printf("%-6s %-27s %-36s %-10s %-3s %-4s %s\n", "SEQ", "CREATED_AT", "MESSAGE_ID", "AGE",
               "DSP", "SENT", "TOPIC");
        for (size_t i = 0; i < n; i++)
            print_entry_line("", list[i]);
        return CLI_OK;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, entry_json(list[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return cli_print_json(ctx, arr == NULL ? NULL : json_pack("{s:o}", "messages", arr));
}

static int list_option(cli_ctx *ctx, int c, void *arg)
{
    txm_outbox_filter *f = arg;
    int64_t ms = 0;
    long long limit = 0;
    int rc = CLI_OK;
    switch (c) {
    case OPT_NOT_DISPATCHED:
        f->not_dispatched_only = true;
        return CLI_OK;
    case OPT_TOPIC:
        f->topic = optarg;
        return CLI_OK;
    case OPT_OLDER_THAN:
        if ((rc = cli_parse_duration(ctx, "--older-than", optarg, &ms)) == CLI_OK)
            f->created_before_us = txm_now_us() - ms * 1000;
        return rc;
    case OPT_LIMIT:
        if ((rc = cli_parse_count(ctx, "--limit", optarg, 1, 1000000, &limit)) == CLI_OK)
            f->limit = (size_t)limit;
        return rc;
    default:
        return CLI_NOT_MINE;
    }
}

/* Parses the list options into f (defaults already in). */
static int parse_list(cli_ctx *ctx, int argc, char **argv, txm_outbox_filter *f)
{
    static const struct option opts[] = {
        {"not-dispatched", no_argument, NULL, OPT_NOT_DISPATCHED},
        {"older-than", required_argument, NULL, OPT_OLDER_THAN},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"limit", required_argument, NULL, OPT_LIMIT},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = cli_parse_options(ctx, argc, argv, opts, list_option, f, false);
    if (f->created_before_us < 0)
        f->created_before_us = 1; /* before 1970: matches nothing */
    return rc;
}

static int cmd_list(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "outbox list", LIST_USAGE);
    txm_outbox_filter f;
    txm_outbox_filter_init(&f);
    txm_db *db = NULL;
    int rc = parse_list(ctx, argc, argv, &f);
    if (rc != CLI_OK || (rc = cli_open_db(ctx, &db)) != CLI_OK)
        return rc;
    if (messages_mode(db))
        note_messages_mode(ctx, "it lists only the rows left from table mode");
    txm_outbox_entry **list = NULL;
    size_t n = 0;
    txm_error err;
    txm_status st = txm_outbox_list(db, &f, &list, &n, &err);
    txm_db_close(db);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot list the outbox: %s", err.text);
    rc = print_list(ctx, list, n);
    txm_outbox_list_free(list, n);
    return rc;
}

/* ---- outbox dispatch ------------------------------------------------------ */

static const char DISPATCH_USAGE[] =
    "usage: txmsg outbox dispatch (--id ID | --older-than DURATION) [--dry-run] [options]\n"
    "Publishes messages not dispatched yet (stuck: the relay is down or behind) to\n"
    "their topics as CloudEvents and marks them dispatched. Safe while the relay\n"
    "runs: a message may then go out twice, which the consumers' inbox (and on NATS\n"
    "the broker's de-duplication by message id) absorbs. In messages mode only rows\n"
    "left from table mode can be dispatched: messages-mode messages live in the WAL\n"
    "until the relay confirms them, and cannot be published again by hand.\n\n"
    "  --id ID             the message with this id\n"
    "  --older-than D      every message created more than D ago (30s, 5m, 2h, 365d)\n"
    "  --dry-run           list what would be dispatched; change nothing\n";

typedef struct dispatch_run {
    cli_ctx *ctx;
    txm_db *db;
    txm_transport *t; /* NULL in a dry run */
    bool dry_run;
    size_t matched;    /* not-dispatched messages found */
    size_t dispatched; /* published and marked */
    size_t failed;     /* not published, or published but not marked */
    json_t *messages;  /* dry run with --json: what would go */
} dispatch_run;

/* Publishes and marks a batch (or lists it in a dry run), counting and
 * reporting each message that failed. */
static void dispatch_batch(dispatch_run *run, txm_outbox_entry **list, size_t n)
{
    assert(n <= DISPATCH_BATCH);
    run->matched += n;
    const txm_msg *msgs[DISPATCH_BATCH] = {NULL};
    for (size_t i = 0; i < n; i++) {
        msgs[i] = txm_outbox_entry_msg(list[i]);
        if (run->dry_run && run->ctx->json)
            json_array_append_new(run->messages, entry_json(list[i]));
        else if (run->dry_run)
            print_entry_line("would dispatch ", list[i]);
    }
    if (run->dry_run)
        return;
    txm_status results[DISPATCH_BATCH];
    size_t marked = 0;
    txm_error err;
    txm_status st = cli_dispatch_msgs(run->db, run->t, msgs, n, results, &marked, &err);
    if (st != TXM_OK)
        cli_fail(run->ctx, "dispatch failed: %s", err.text);
    for (size_t i = 0; i < n; i++)
        if (results[i] != TXM_OK)
            cli_fail(run->ctx, "message %s not published: %s", txm_msg_id(msgs[i]),
                     txm_strerror(results[i]));
    run->dispatched += marked;
    run->failed += n - marked;
}

/* Dispatches the one message id, unless it is dispatched already. */
static int dispatch_id(dispatch_run *run, const char *id)
{
    if (run->dry_run) {
        txm_outbox_entry *e = NULL;
        txm_error err;
        txm_status st = txm_outbox_get(run->db, id, &e, &err);
        if (st == TXM_NOT_FOUND)
            return cli_fail(run->ctx, "no message %s in the outbox", id);
        if (st != TXM_OK)
            return cli_fail(run->ctx, "cannot read the outbox: %s", err.text);
        if (txm_outbox_entry_is_dispatched(e))
            fprintf(stderr, "%s: message %s is dispatched already; nothing to do\n", run->ctx->prog,
                    id);
        else
            dispatch_batch(run, &e, 1);
        txm_outbox_entry_free(e);
        return CLI_OK;
    }
    txm_error err;
    txm_status st = cli_dispatch_id(run->db, run->t, id, &err);
    if (st == TXM_NOT_FOUND)
        return cli_fail(run->ctx, "%s", err.text);
    if (st == TXM_CONFLICT) {
        fprintf(stderr, "%s: message %s is dispatched already; nothing to do\n", run->ctx->prog,
                id);
        return CLI_OK;
    }
    run->matched++;
    if (st == TXM_OK) {
        run->dispatched++;
    } else {
        run->failed++;
        cli_fail(run->ctx, "%s", err.text);
    }
    return CLI_OK;
}

/* Dispatches every not-dispatched message created before before_us, in
 * batches that walk forward by sequence number, so each is seen once. */
static int dispatch_older(dispatch_run *run, int64_t before_us)
{
    txm_outbox_filter f;
    txm_outbox_filter_init(&f);
    f.not_dispatched_only = true;
    f.created_before_us = before_us < 1 ? 1 : before_us;
    f.limit = DISPATCH_BATCH;
    for (;;) {
        if (*run->ctx->stop)
            return cli_fail(run->ctx, "interrupted");
        txm_outbox_entry **list = NULL;
        size_t n = 0;
        txm_error err;
        if (txm_outbox_list(run->db, &f, &list, &n, &err) != TXM_OK)
            return cli_fail(run->ctx, "cannot list the outbox: %s", err.text);
        if (n > 0) {
            f.after_seq = txm_outbox_entry_seq(list[n - 1]);
            dispatch_batch(run, list, n);
        }
        txm_outbox_list_free(list, n);
        if (n < DISPATCH_BATCH)
            return CLI_OK;
    }
}

static int dispatch_report(dispatch_run *run)
{
    const cli_ctx *ctx = run->ctx;
    if (ctx->json) {
        json_t *doc = json_pack("{s:b, s:I, s:I, s:I}", "dry_run", run->dry_run, "matched",
                                (json_int_t)run->matched, "dispatched", (json_int_t)run->dispatched,
                                "failed", (json_int_t)run->failed);
        if (doc != NULL && run->messages != NULL)
            json_object_set(doc, "messages", run->messages);
        return cli_print_json(ctx, doc);
    }
    if (run->dry_run)
        printf("%zu messages would be dispatched\n", run->matched);
    else
        printf("dispatched %zu messages%s\n", run->dispatched,
               run->failed > 0 ? " (some failed, see above)" : "");
    return CLI_OK;
}

typedef struct dispatch_args {
    const char *id;
    int64_t older_than_ms; /* 0: not given */
    bool dry_run;
} dispatch_args;

static int dispatch_option(cli_ctx *ctx, int c, void *arg)
{
    dispatch_args *a = arg;
    switch (c) {
    case OPT_ID:
        a->id = optarg;
        return CLI_OK;
    case OPT_DRY_RUN:
        a->dry_run = true;
        return CLI_OK;
    case OPT_OLDER_THAN:
        return cli_parse_duration(ctx, "--older-than", optarg, &a->older_than_ms);
    default:
        return CLI_NOT_MINE;
    }
}

static int parse_dispatch(cli_ctx *ctx, int argc, char **argv, dispatch_args *a)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, OPT_ID},
        {"older-than", required_argument, NULL, OPT_OLDER_THAN},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = cli_parse_options(ctx, argc, argv, opts, dispatch_option, a, false);
    if (rc == CLI_OK && (a->id == NULL) == (a->older_than_ms == 0))
        rc = cli_usage_error(ctx, "give either --id ID or --older-than DURATION");
    if (rc == CLI_OK && a->id != NULL && a->id[0] == '\0')
        rc = cli_usage_error(ctx, "--id wants a message id");
    return rc;
}

static int cmd_dispatch(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "outbox dispatch", DISPATCH_USAGE);
    dispatch_args a = {0};
    int rc = parse_dispatch(ctx, argc, argv, &a);
    dispatch_run run = {.ctx = ctx, .dry_run = a.dry_run};
    if (rc == CLI_OK)
        rc = cli_open_db(ctx, &run.db);
    if (rc == CLI_OK && messages_mode(run.db))
        note_messages_mode(ctx, "only rows left from table mode can be dispatched");
    if (rc == CLI_OK && !a.dry_run)
        rc = cli_open_transport(ctx, &run.t);
    if (rc == CLI_OK && a.dry_run && ctx->json && (run.messages = json_array()) == NULL)
        rc = cli_fail(ctx, "out of memory");
    if (rc == CLI_OK)
        rc = a.id != NULL ? dispatch_id(&run, a.id)
                          : dispatch_older(&run, txm_now_us() - a.older_than_ms * 1000);
    if (rc == CLI_OK)
        rc = dispatch_report(&run);
    if (rc == CLI_OK && run.failed > 0)
        rc = CLI_FAIL;
    json_decref(run.messages);
    txm_transport_close(run.t);
    txm_db_close(run.db);
    return rc;
}

/* ---- outbox purge --------------------------------------------------------- */

static const char PURGE_USAGE[] =
    "usage: txmsg outbox purge --dispatched --older-than DURATION [--batch N]\n"
    "                          [--every DURATION] [options]\n"
    "Deletes dispatched messages created more than DURATION ago, in batches of N\n"
    "rows, each its own short transaction, until none is left. Messages not\n"
    "dispatched yet are never deleted, and on SQLite neither is a message some\n"
    "relay's cursor has not passed. Messages mode keeps no rows: this purges those\n"
    "left from table mode.\n\n"
    "  --dispatched        required: only dispatched messages are purged\n"
    "  --older-than D      age cutoff by created_at (30s, 5m, 2h, 365d)\n"
    "  --batch N           rows per transaction, 1..100000 (default 1000)\n"
    "  --every D           repeat every D until SIGINT or SIGTERM\n";

static int cmd_purge(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "outbox purge", PURGE_USAGE);
    cli_purge p = {
        .table = "outbox", .rows = "dispatched messages", .fn = txm_outbox_purge_dispatched};
    static const struct option opts[] = {
        {"dispatched", no_argument, NULL, CLI_OPT_DISPATCHED},
        CLI_PURGE_OPTIONS,
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    bool dispatched = false;
    int rc = cli_parse_purge(ctx, argc, argv, opts, &p, &dispatched);
    if (rc == CLI_OK && !dispatched)
        rc = cli_usage_error(ctx, "--dispatched is required: only dispatched messages are "
                                  "ever purged");
    txm_db *db = NULL;
    if (rc != CLI_OK || (rc = cli_open_db(ctx, &db)) != CLI_OK)
        return rc;
    if (messages_mode(db))
        note_messages_mode(ctx, "only rows left from table mode are purged");
    rc = cli_purge_run(ctx, db, &p);
    txm_db_close(db);
    return rc;
}

/* ---- outbox mode ---------------------------------------------------------- */

static const char MODE_USAGE[] =
    "usage: txmsg outbox mode [table|messages] [options]\n"
    "Shows how services publish to this database's outbox, or sets it (PostgreSQL).\n"
    "  table     a txmsg_outbox row per message, in the unit of work: messages can\n"
    "            be listed, dispatched by hand and purged (the default)\n"
    "  messages  pg_logical_emit_message in the unit of work, no table write: no\n"
    "            UPDATE or vacuum, faster; lag shows only as the slot's WAL bytes\n"
    "            behind, no per-message inspection, and a repeated message id is\n"
    "            not detected by the writer (the consumers' inboxes absorb it)\n"
    "Services read the mode when they open the database: restart them after a\n"
    "change. The relay reads both kinds at all times, so nothing is lost while\n"
    "old and new processes overlap.\n\n";

static int no_option(cli_ctx *ctx, int c, void *arg)
{
    (void)ctx;
    (void)c;
    (void)arg;
    return CLI_NOT_MINE;
}

/* Parses the optional mode word into *mode; *set tells whether one came. */
static int parse_mode(cli_ctx *ctx, int argc, char **argv, txm_outbox_mode *mode, bool *set)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
    int rc = cli_parse_options(ctx, argc, argv, opts, no_option, NULL, true);
    *set = false;
    if (rc != CLI_OK || optind >= argc)
        return rc;
    if (argc - optind > 1)
        return cli_usage_error(ctx, "one mode at most: table or messages");
    *set = true;
    if (strcmp(argv[optind], "table") == 0)
        *mode = TXM_OUTBOX_TABLE;
    else if (strcmp(argv[optind], "messages") == 0)
        *mode = TXM_OUTBOX_MESSAGES;
    else
        return cli_usage_error(ctx, "unknown mode \"%s\": table or messages", argv[optind]);
    return CLI_OK;
}

static int cmd_mode(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "outbox mode", MODE_USAGE);
    txm_outbox_mode mode = TXM_OUTBOX_TABLE;
    bool set = false;
    txm_db *db = NULL;
    int rc = parse_mode(ctx, argc, argv, &mode, &set);
    if (rc != CLI_OK || (rc = cli_open_db(ctx, &db)) != CLI_OK)
        return rc;
    txm_outbox_mode was = txm_outbox_mode_get(db);
    txm_error err;
    if (set && txm_outbox_set_mode(db, mode, &err) != TXM_OK)
        rc = cli_fail(ctx, "cannot set the outbox mode: %s", err.text);
    const char *dialect = txm_db_dialect(db);
    bool pg = strcmp(dialect, "postgresql") == 0;
    txm_db_close(db);
    if (rc != CLI_OK)
        return rc;
    txm_outbox_mode now = set ? mode : was;
    if (ctx->json)
        return cli_print_json(ctx, json_pack("{s:s, s:s, s:s, s:b}", "database", dialect,
                                             "outbox_mode", txm_outbox_mode_name(now), "previous",
                                             txm_outbox_mode_name(was), "changed", now != was));
    printf("outbox mode: %s", txm_outbox_mode_name(now));
    if (now != was)
        printf(" (was %s); restart the services to use it", txm_outbox_mode_name(was));
    else if (!pg)
        printf(" (SQLite has the table only)");
    printf("\n");
    return CLI_OK;
}

int cli_outbox(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"status", cmd_status, "not-dispatched count, oldest age, relay position and lag"},
        {"list", cmd_list, "list messages, oldest first"},
        {"dispatch", cmd_dispatch, "publish stuck messages and mark them dispatched"},
        {"purge", cmd_purge, "delete old dispatched messages in batches"},
        {"mode", cmd_mode, "show or set how services publish (PostgreSQL: table or messages)"},
    };
    return cli_group_run(ctx, "outbox", table, sizeof table / sizeof *table, argc, argv);
}
