/* txmsg trace: one business flow (a correlation id) across the databases
 * of several services, merged into one timeline. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SERVICES_MAX 16
#define SERVICE_NAME_MAX 63

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

typedef struct service {
    char name[SERVICE_NAME_MAX + 1];
    const char *url; /* borrowed from argv or the environment */
    bool messages_mode;
    bool truncated; /* returned the limit: older entries may be missing */
} service;

typedef struct trace_args {
    service services[SERVICES_MAX];
    size_t n;
    size_t limit;
} trace_args;

/* One entry of the merged timeline. */
typedef struct merged {
    txm_trace_entry e;
    size_t service; /* index into trace_args.services */
} merged;

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static int add_service(cli_ctx *ctx, trace_args *a, const char *name, size_t name_len,
                       const char *url)
{
    if (a->n == SERVICES_MAX)
        return cli_usage_error(ctx, "at most %d services", SERVICES_MAX);
    if (name_len == 0 || name_len > SERVICE_NAME_MAX)
        return cli_usage_error(ctx, "--service: a name of 1..%d characters, then =URL",
                               SERVICE_NAME_MAX);
    for (size_t i = 0; i < name_len; i++)
        if (!is_name_char(name[i]))
            return cli_usage_error(ctx,
                                   "--service: name \"%.*s\" has characters other than "
                                   "letters, digits, '-', '_' and '.'",
                                   (int)name_len, name);
    if (url == NULL || url[0] == '\0')
        return cli_usage_error(ctx, "--service %.*s: no database URL after '='", (int)name_len,
                               name);
    service *s = &a->services[a->n];
    snprintf(s->name, sizeof s->name, "%.*s", (int)name_len, name);
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->services[i].name, s->name) == 0)
            return cli_usage_error(ctx, "--service %s given twice", s->name);
    s->url = url;
    a->n++;
    return CLI_OK;
}

static int trace_option(cli_ctx *ctx, int c, void *arg)
{
    trace_args *a = arg;
    long long limit = 0;
    int rc = CLI_OK;
    switch (c) {
    case OPT_SERVICE: {
        const char *eq = strchr(optarg, '=');
        if (eq == NULL)
            return cli_usage_error(ctx, "--service wants NAME=DATABASE_URL, got \"%s\"", optarg);
        return add_service(ctx, a, optarg, (size_t)(eq - optarg), eq + 1);
    }
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
        out[k++] = is_name_char(start[i]) ? start[i] : '_';
    out[k] = '\0';
    if (k == 0)
        snprintf(out, size, "db");
}

/* Appends one service's entries to *all (which holds *n, grown here). */
static int read_service(cli_ctx *ctx, const char *corr, trace_args *a, size_t i, merged **all,
                        size_t *n)
{
    service *s = &a->services[i];
    cli_ctx one = *ctx;
    one.database_url = s->url;
    txm_db *db = NULL;
    int rc = cli_open_db(&one, &db);
    if (rc != CLI_OK)
        return cli_fail(ctx, "service %s: cannot read its database", s->name);
    s->messages_mode = txm_outbox_mode_get(db) == TXM_OUTBOX_MESSAGES;
    txm_trace_entry *list = NULL;
    size_t count = 0;
    txm_error err;
    txm_status st = txm_trace_list(db, corr, a->limit, &list, &count, &err);
    txm_db_close(db);
    if (st != TXM_OK)
        return cli_fail(ctx, "service %s: cannot trace: %s%s", s->name, err.text,
                        strstr(err.text, "correlation_id") != NULL
                            ? " (the schema is older than version 3: run a service of this "
                              "txmsg version on it once to migrate it)"
                            : "");
    s->truncated = count == a->limit;
    if (count == 0)
        return CLI_OK;
    merged *grown = realloc(*all, (*n + count) * sizeof **all);
    if (grown == NULL) {
        txm_free(list);
        return cli_fail(ctx, "out of memory");
    }
    *all = grown;
    for (size_t k = 0; k < count; k++) {
        grown[*n].e = list[k];
        grown[*n].service = i;
        (*n)++;
    }
    txm_free(list);
    return CLI_OK;
}

static int by_time(const void *pa, const void *pb)
{
    const merged *a = pa, *b = pb;
    if (a->e.at_us != b->e.at_us)
        return a->e.at_us < b->e.at_us ? -1 : 1;
    if (a->e.kind != b->e.kind)
        return a->e.kind == TXM_TRACE_OUTBOX ? -1 : 1;
    if (a->service != b->service)
        return a->service < b->service ? -1 : 1;
    return strcmp(a->e.message_id, b->e.message_id);
}

static const char *kind_name(txm_trace_kind k)
{
    return k == TXM_TRACE_OUTBOX ? "outbox" : "inbox";
}

/* True when entry i is an outbox message that no traced inbox has. */
static bool is_pending(const merged *all, size_t n, size_t i)
{
    if (all[i].e.kind != TXM_TRACE_OUTBOX)
        return false;
    for (size_t k = 0; k < n; k++)
        if (all[k].e.kind == TXM_TRACE_INBOX &&
            strcmp(all[k].e.message_id, all[i].e.message_id) == 0)
            return false;
    return true;
}

static void print_text(const char *corr, const trace_args *a, const merged *all, size_t n)
{
    printf("trace %s: %zu entr%s in %zu service%s\n", corr, n, n == 1 ? "y" : "ies", a->n,
           a->n == 1 ? "" : "s");
    if (n == 0)
        return;
    printf("%-27s %-12s %-6s %-32s %-36s %s\n", "TIME", "SERVICE", "KIND", "TOPIC", "MESSAGE_ID",
           "DETAIL");
    for (size_t i = 0; i < n; i++) {
        const txm_trace_entry *e = &all[i].e;
        char at[TXM_TIME_LEN + 1];
        txm_time_format(e->at_us, at);
        printf("%s %-12s %-6s %-32s %-36s ", at, a->services[all[i].service].name,
               kind_name(e->kind), e->topic[0] != '\0' ? e->topic : "-", e->message_id);
        if (e->kind == TXM_TRACE_OUTBOX)
            printf("published, aggregate %s, %s\n", e->aggregate_id,
                   e->dispatched ? "dispatched" : "not dispatched");
        else
            printf("processed by %s%s%s\n", e->subscription, e->source[0] != '\0' ? ", from " : "",
                   e->source);
    }
    const merged *last = &all[n - 1];
    printf("\nlast step: %s %s %s (%s)\n", a->services[last->service].name,
           last->e.kind == TXM_TRACE_OUTBOX ? "published" : "processed", last->e.topic,
           last->e.message_id);
    for (size_t i = 0; i < n; i++)
        if (is_pending(all, n, i))
            printf("waiting: %s from %s (%s) is %s\n", all[i].e.topic,
                   a->services[all[i].service].name, all[i].e.message_id,
                   all[i].e.dispatched ? "dispatched, not processed by a traced service"
                                       : "not dispatched yet: is the relay running?");
}

static json_t *entry_json(const trace_args *a, const merged *m)
{
    const txm_trace_entry *e = &m->e;
    char at[TXM_TIME_LEN + 1];
    txm_time_format(e->at_us, at);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "time", at, "service",
                          a->services[m->service].name, "kind", kind_name(e->kind), "message_id",
                          e->message_id, "topic", e->topic, "source", e->source);
    if (o == NULL)
        return NULL;
    int bad = e->kind == TXM_TRACE_OUTBOX
                  ? json_object_set_new(o, "aggregate_id", json_string(e->aggregate_id)) |
                        json_object_set_new(o, "dispatched", json_boolean(e->dispatched))
                  : json_object_set_new(o, "subscription", json_string(e->subscription));
    if (bad != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int print_json(const cli_ctx *ctx, const char *corr, const trace_args *a, const merged *all,
                      size_t n)
{
    json_t *services = json_array(), *entries = json_array(), *waiting = json_array();
    int bad = services == NULL || entries == NULL || waiting == NULL;
    for (size_t i = 0; !bad && i < a->n; i++)
        bad = json_array_append_new(
            services, json_pack("{s:s, s:s, s:b}", "name", a->services[i].name, "outbox_mode",
                                a->services[i].messages_mode ? "messages" : "table", "truncated",
                                a->services[i].truncated));
    for (size_t i = 0; !bad && i < n; i++) {
        bad = json_array_append_new(entries, entry_json(a, &all[i]));
        if (!bad && is_pending(all, n, i))
            bad = json_array_append_new(waiting, json_string(all[i].e.message_id));
    }
    json_t *doc = bad ? NULL
                      : json_pack("{s:s, s:O, s:O, s:O}", "correlation_id", corr, "services",
                                  services, "entries", entries, "waiting", waiting);
    json_decref(services);
    json_decref(entries);
    json_decref(waiting);
    return cli_print_json(ctx, doc);
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
    char name[SERVICE_NAME_MAX + 1];
    name_from_url(ctx->database_url, name, sizeof name);
    return add_service(ctx, a, name, strlen(name), ctx->database_url);
}

int cli_trace(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "trace", TRACE_USAGE);
    trace_args a = {.n = 0, .limit = 1000};
    const char *corr = NULL;
    int rc = parse_trace(ctx, argc, argv, &a, &corr);
    if (rc != CLI_OK)
        return rc;
    merged *all = NULL;
    size_t n = 0;
    for (size_t i = 0; rc == CLI_OK && i < a.n; i++) {
        rc = read_service(ctx, corr, &a, i, &all, &n);
        if (rc == CLI_OK && a.services[i].messages_mode)
            fprintf(stderr,
                    "%s: service %s is in messages mode: its published messages leave no "
                    "outbox rows, so only what its subscriptions processed shows\n",
                    ctx->prog, a.services[i].name);
    }
    if (rc == CLI_OK) {
        if (n > 1)
            qsort(all, n, sizeof *all, by_time);
        /* Each service gave its oldest entries; the merge keeps the oldest. */
        if (n > a.limit)
            n = a.limit;
        for (size_t i = 0; i < a.n; i++)
            if (a.services[i].truncated)
                fprintf(stderr, "%s: service %s has more than %zu entries; raise --limit\n",
                        ctx->prog, a.services[i].name, a.limit);
        if (ctx->json)
            rc = print_json(ctx, corr, &a, all, n);
        else
            print_text(corr, &a, all, n);
    }
    free(all);
    return rc;
}
