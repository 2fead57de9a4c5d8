/* txmsg trace: one business flow (a correlation id) across the databases
 * of several services, merged into one timeline. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trace_doc.h"

static const char TRACE_USAGE[] =
    "usage: txmsg trace CORRELATION_ID [--service NAME=DATABASE_URL ...] [--limit N]\n"
    "                   [options]\n"
    "Lists every outbox message and inbox entry with CORRELATION_ID in the\n"
    "databases of the named services, merged in time order: what each service\n"
    "published and which of its subscriptions processed what. The end shows the\n"
    "last step and each message no traced service has processed yet: where the\n"
    "flow stopped. Without --service, the one database of --database-url (or\n"
    "$TXMSG_DATABASE_URL), named after its database. Inbox entries recorded\n"
    "before schema version 3 carry no correlation id; a PostgreSQL database in\n"
    "messages mode keeps no outbox rows, so only its inbox side shows.\n\n"
    "  --service NAME=URL  a service and its database; repeat, up to 16\n"
    "  --limit N           entries per service and in all, 1..10000 (default 1000)\n";

enum { OPT_SERVICE = 3000, OPT_LIMIT };

typedef struct trace_args {
    cli_service services[CLI_SERVICES_MAX];
    size_t n;
    size_t limit;
} trace_args;

static int trace_option(cli_ctx *ctx, int c, void *arg)
{
    trace_args *a = arg;
    long long limit = 0;
    int rc = CLI_OK;
    switch (c) {
    case OPT_SERVICE:
        return cli_parse_service(ctx, optarg, a->services, &a->n);
    case OPT_LIMIT:
        if ((rc = cli_parse_count(ctx, "--limit", optarg, 1, TXM_TRACE_LIMIT_MAX, &limit)) ==
            CLI_OK)
            a->limit = (size_t)limit;
        return rc;
    default:
        return CLI_NOT_MINE;
    }
}

/* The default service's name: the SQLite file's name without its
 * extension, or the PostgreSQL database's name. */
static void name_from_url(const char *url, char *out, size_t size)
{
    const char *start = strrchr(url, '/');
    start = start != NULL ? start + 1 : (strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url);
    size_t len = strcspn(start, "?");
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *dot = memchr(start, '.', len);
        if (dot != NULL && dot != start)
            len = (size_t)(dot - start);
    }
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < size; i++)
        out[k++] = cli_is_name_char(start[i]) ? start[i] : '_';
    out[k] = '\0';
    if (k == 0)
        snprintf(out, size, "db");
}

static void print_text(const char *corr, const cli_trace_doc *tr)
{
    const cli_trace_item *all = tr->items;
    size_t n = tr->n;
    printf("trace %s: %zu entr%s in %zu service%s\n", corr, n, n == 1 ? "y" : "ies", tr->n_services,
           tr->n_services == 1 ? "" : "s");
    if (n == 0)
        return;
    printf("%-27s %-12s %-6s %-32s %-36s %s\n", "TIME", "SERVICE", "KIND", "TOPIC", "MESSAGE_ID",
           "DETAIL");
    for (size_t i = 0; i < n; i++) {
        const txm_trace_entry *e = &all[i].e;
        char at[TXM_TIME_LEN + 1];
        txm_time_format(e->at_us, at);
        printf("%s %-12s %-6s %-32s %-36s ", at, tr->services[all[i].service].name,
               cli_trace_kind_name(e->kind), e->topic[0] != '\0' ? e->topic : "-", e->message_id);
        if (e->kind == TXM_TRACE_OUTBOX)
            printf("published, aggregate %s, %s\n", e->aggregate_id,
                   e->dispatched ? "dispatched" : "not dispatched");
        else
            printf("processed by %s%s%s\n", e->subscription, e->source[0] != '\0' ? ", from " : "",
                   e->source);
    }
    const cli_trace_item *last = &all[n - 1];
    printf("\nlast step: %s %s %s (%s)\n", tr->services[last->service].name,
           last->e.kind == TXM_TRACE_OUTBOX ? "published" : "processed", last->e.topic,
           last->e.message_id);
    for (size_t i = 0; i < n; i++)
        if (cli_trace_is_pending(tr, i))
            printf("waiting: %s from %s (%s) is %s\n", all[i].e.topic,
                   tr->services[all[i].service].name, all[i].e.message_id,
                   all[i].e.dispatched ? "dispatched, not processed by a traced service"
                                       : "not dispatched yet: is the relay running?");
}

static int parse_trace(cli_ctx *ctx, int argc, char **argv, trace_args *a, const char **corr)
{
    static const struct option opts[] = {
        {"service", required_argument, NULL, OPT_SERVICE},
        {"limit", required_argument, NULL, OPT_LIMIT},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = cli_parse_options(ctx, argc, argv, opts, trace_option, a, true);
    if (rc != CLI_OK)
        return rc;
    if (optind >= argc)
        return cli_usage_error(ctx, "missing CORRELATION_ID");
    if (optind + 1 < argc)
        return cli_usage_error(ctx, "one CORRELATION_ID only, got also \"%s\"", argv[optind + 1]);
    *corr = argv[optind];
    size_t len = strlen(*corr);
    if (len == 0 || len > TXM_ID_MAX)
        return cli_usage_error(ctx, "CORRELATION_ID must have 1..%d bytes", TXM_ID_MAX);
    if (a->n > 0)
        return CLI_OK;
    if (ctx->database_url == NULL || ctx->database_url[0] == '\0')
        return cli_usage_error(ctx, "no database: give --service NAME=URL, --database-url or "
                                    "set TXMSG_DATABASE_URL");
    char name[CLI_SERVICE_NAME_MAX + 1];
    name_from_url(ctx->database_url, name, sizeof name);
    return cli_add_service(ctx, name, strlen(name), ctx->database_url, a->services, &a->n);
}

/* Opens every service's database (kept in src[i].db). */
static int open_all(cli_ctx *ctx, const trace_args *a, cli_trace_source *src)
{
    for (size_t i = 0; i < a->n; i++) {
        src[i].name = a->services[i].name;
        cli_ctx one = *ctx;
        one.database_url = a->services[i].url;
        if (cli_open_db(&one, &src[i].db) != CLI_OK)
            return cli_fail(ctx, "service %s: cannot read its database", src[i].name);
    }
    return CLI_OK;
}

int cli_trace(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "trace", TRACE_USAGE);
    trace_args a = {.n = 0, .limit = 1000};
    const char *corr = NULL;
    int rc = parse_trace(ctx, argc, argv, &a, &corr);
    if (rc != CLI_OK)
        return rc;
    cli_trace_source src[CLI_SERVICES_MAX] = {{0}};
    cli_trace_doc tr = {.services = src, .n_services = a.n};
    rc = open_all(ctx, &a, src);
    size_t failed = 0;
    txm_error err;
    if (rc == CLI_OK && cli_trace_read(&tr, corr, a.limit, &failed, &err) != TXM_OK)
        rc = cli_fail(ctx, "%s", err.text);
    for (size_t i = 0; rc == CLI_OK && i < a.n; i++) {
        if (src[i].messages_mode)
            fprintf(stderr,
                    "%s: service %s is in messages mode: its published messages leave no "
                    "outbox rows, so only what its subscriptions processed shows\n",
                    ctx->prog, src[i].name);
        if (src[i].truncated)
            fprintf(stderr, "%s: service %s has more than %zu entries; raise --limit\n", ctx->prog,
                    src[i].name, a.limit);
    }
    if (rc == CLI_OK && ctx->json)
        rc = cli_print_json(ctx, cli_trace_json(&tr, corr, false));
    else if (rc == CLI_OK)
        print_text(corr, &tr);
    cli_trace_fini(&tr);
    for (size_t i = 0; i < a.n; i++)
        txm_db_close(src[i].db);
    return rc;
}
