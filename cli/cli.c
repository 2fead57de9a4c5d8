/* What the txmsg subcommands share: option handling, messages, opening the
 * database and the broker, JSON output and interruptible sleeps. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "duration.h"

void cli_begin(cli_ctx *ctx, const char *name, const char *usage)
{
    snprintf(ctx->prog, sizeof ctx->prog, "txmsg %s", name);
    ctx->usage = usage;
    /* GNU getopt: 0 re-initialises its state for a new argument vector. */
    optind = 0;
    opterr = 0;
}

static void vmessage(const cli_ctx *ctx, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", ctx->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(ctx, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", ctx->prog);
    return CLI_USAGE;
}

int cli_fail(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(ctx, fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

int cli_common_option(cli_ctx *ctx, int c, char **argv)
{
    /* After an error getopt has moved optind past the offending word. */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    switch (c) {
    case CLI_OPT_DATABASE_URL:
        ctx->database_url = optarg;
        return CLI_OK;
    case CLI_OPT_BROKER_URL:
        ctx->broker_url = optarg;
        return CLI_OK;
    case CLI_OPT_JSON:
        ctx->json = true;
        return CLI_OK;
    case 'h':
    case CLI_OPT_HELP:
        fputs(ctx->usage, stdout);
        fputs(CLI_COMMON_HELP, stdout);
        return CLI_HELP;
    case ':':
        return cli_usage_error(ctx, "option %s needs a value", word);
    case '?':
        if (optopt != 0 && optopt < 256)
            return cli_usage_error(ctx, "unknown option -%c", optopt);
        return cli_usage_error(ctx, "unknown option %s", word);
    default:
        return cli_usage_error(ctx, "unexpected option %s", word);
    }
}

int cli_group_run(cli_ctx *ctx, const char *group, const cli_cmd *table, size_t n, int argc,
                  char **argv)
{
    snprintf(ctx->prog, sizeof ctx->prog, "txmsg %s", group);
    const char *name = argc > 1 ? argv[1] : NULL;
    bool help = name != NULL && (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0);
    if (name == NULL || help) {
        FILE *out = help ? stdout : stderr;
        fprintf(out, "usage: txmsg %s COMMAND [options]\n\nCommands:\n", group);
        for (size_t i = 0; i < n; i++)
            fprintf(out, "  %-10s %s\n", table[i].name, table[i].summary);
        fprintf(out, "\nRun 'txmsg %s COMMAND --help' for its options.\n", group);
        if (help)
            return CLI_OK;
        return cli_usage_error(ctx, "missing command");
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, table[i].name) == 0)
            return table[i].fn(ctx, argc - 1, argv + 1);
    }
    if (name[0] == '-')
        return cli_usage_error(ctx, "options go after the command: txmsg %s COMMAND [options]",
                               group);
    return cli_usage_error(ctx, "unknown command \"%s\"", name);
}

int cli_parse_duration(const cli_ctx *ctx, const char *option, const char *value, int64_t *ms)
{
    if (cli_duration_parse(value, ms) == 0)
        return CLI_OK;
    return cli_usage_error(ctx,
                           "%s: bad duration \"%s\" (want a positive whole number and one "
                           "unit: ms, s, m, h or d, such as 30s, 5m, 2h, 365d)",
                           option, value);
}

int cli_parse_count(const cli_ctx *ctx, const char *option, const char *value, long long lo,
                    long long hi, long long *out)
{
    errno = 0;
    char *end = NULL;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi)
        return cli_usage_error(ctx, "%s wants a whole number in %lld..%lld, got \"%s\"", option, lo,
                               hi, value);
    *out = v;
    return CLI_OK;
}

txm_status cli_db_open_url(const char *url, txm_db **db, txm_error *err)
{
    *db = NULL;
    struct stat sb;
    if (strncmp(url, "sqlite:", 7) == 0 && stat(url + 7, &sb) != 0)
        return txm_errf(err, TXM_NOT_FOUND, "database %s: %s", url, strerror(errno));
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 2;
    o.migrate = false;
    o.pg_relay_slot = false;
    txm_error e;
    txm_status st = txm_db_open(url, &o, db, &e);
    if (st != TXM_OK)
        return txm_errf(err, st, "cannot open database: %s", e.text);
    return TXM_OK;
}

int cli_open_db(const cli_ctx *ctx, txm_db **db)
{
    *db = NULL;
    const char *url = ctx->database_url;
    if (url == NULL || url[0] == '\0')
        return cli_usage_error(ctx, "no database: set TXMSG_DATABASE_URL or --database-url");
    txm_error err;
    if (cli_db_open_url(url, db, &err) != TXM_OK)
        return cli_fail(ctx, "%s", err.text);
    return CLI_OK;
}

txm_status cli_transport_open_url(const char *url, bool background, txm_transport **t,
                                  txm_error *err)
{
    *t = NULL;
    /* Opening an embedded broker creates its file: a mistyped path would
     * silently show an empty broker. */
    struct stat sb;
    if (strncmp(url, "embedded:", 9) == 0 && stat(url + 9, &sb) != 0)
        return txm_errf(err, TXM_NOT_FOUND, "broker %s: %s", url, strerror(errno));
    txm_transport_options o;
    txm_transport_options_init(&o);
    o.background_connect = background;
    txm_error e;
    txm_status st = txm_transport_open(url, &o, t, &e);
    if (st != TXM_OK)
        return txm_errf(err, st, "cannot connect to the broker: %s", e.text);
    return TXM_OK;
}

int cli_open_transport(const cli_ctx *ctx, txm_transport **t)
{
    *t = NULL;
    const char *url = ctx->broker_url;
    if (url == NULL || url[0] == '\0')
        return cli_usage_error(ctx, "no broker: set TXMSG_BROKER_URL or --broker-url");
    txm_error err;
    if (cli_transport_open_url(url, false, t, &err) != TXM_OK)
        return cli_fail(ctx, "%s", err.text);
    return CLI_OK;
}

int cli_print_json(const cli_ctx *ctx, json_t *doc)
{
    /* Ten significant digits: seconds print as 0.037388, not 0.037387999999999998. */
    char *text = doc != NULL
                     ? json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10))
                     : NULL;
    json_decref(doc);
    if (text == NULL)
        return cli_fail(ctx, "out of memory");
    puts(text);
    free(text);
    fflush(stdout);
    return CLI_OK;
}

json_t *cli_json_seconds(int64_t us)
{
    return json_real((double)us / 1e6);
}

void cli_sleep_ms(const cli_ctx *ctx, int64_t ms)
{
    /* Short naps, so a signal is noticed within 100 ms even when it lands
     * just before nanosleep starts. */
    while (ms > 0 && !*ctx->stop) {
        int64_t step = ms < 100 ? ms : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* One pass: batches until one deletes nothing. *total and *batches count
 * what happened, also when a database error ends the pass. */
static int purge_pass(cli_ctx *ctx, txm_db *db, const cli_purge *p, int64_t before_us,
                      size_t *total, size_t *batches)
{
    *total = 0;
    *batches = 0;
    for (;;) {
        if (*ctx->stop)
            return CLI_FAIL;
        size_t deleted = 0;
        txm_error err;
        if (p->fn(db, before_us, p->batch, &deleted, &err) != TXM_OK)
            return cli_fail(ctx, "%s purge failed after %zu rows: %s", p->table, *total, err.text);
        if (deleted == 0)
            return CLI_OK;
        *total += deleted;
        (*batches)++;
    }
}

static int purge_report(const cli_ctx *ctx, const cli_purge *p, int64_t before_us, size_t total,
                        size_t batches)
{
    char before[TXM_TIME_LEN + 1];
    txm_time_format(before_us, before);
    if (!ctx->json) {
        printf("%s purge: deleted %zu %s created before %s in %zu batch%s of at most %zu "
               "rows\n",
               p->table, total, p->rows, before, batches, batches == 1 ? "" : "es", p->batch);
        fflush(stdout);
        return CLI_OK;
    }
    return cli_print_json(ctx, json_pack("{s:s, s:I, s:I, s:s}", "table", p->table, "deleted",
                                         (json_int_t)total, "batches", (json_int_t)batches,
                                         "created_before", before));
}

int cli_purge_run(cli_ctx *ctx, txm_db *db, const cli_purge *p)
{
    for (;;) {
        int64_t before_us = txm_now_us() - p->older_than_ms * 1000;
        if (before_us < 1)
            before_us = 1; /* a cutoff before 1970: nothing is that old */
        size_t total = 0, batches = 0;
        int rc = purge_pass(ctx, db, p, before_us, &total, &batches);
        if (rc == CLI_FAIL && *ctx->stop && p->every_ms > 0)
            return CLI_OK; /* stopping is how --every ends */
        if (rc == CLI_FAIL && *ctx->stop)
            return cli_fail(ctx, "interrupted after deleting %zu %s", total, p->rows);
        if (rc != CLI_OK)
            return rc;
        rc = purge_report(ctx, p, before_us, total, batches);
        if (rc != CLI_OK || p->every_ms == 0)
            return rc;
        cli_sleep_ms(ctx, p->every_ms);
        if (*ctx->stop)
            return CLI_OK;
    }
}

int cli_parse_options(cli_ctx *ctx, int argc, char **argv, const struct option *opts,
                      cli_option_fn fn, void *arg, bool positionals)
{
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv, CLI_SHORT_OPTIONS, opts, NULL)) != -1) {
        rc = fn(ctx, c, arg);
        if (rc == CLI_NOT_MINE)
            rc = cli_common_option(ctx, c, argv);
    }
    if (rc == CLI_OK && !positionals && optind < argc)
        rc = cli_usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    return rc;
}

/* What the purge options fill. */
typedef struct purge_args {
    cli_purge *p;
    bool *dispatched; /* may be NULL */
} purge_args;

static int purge_option(cli_ctx *ctx, int c, void *arg)
{
    purge_args *a = arg;
    long long batch = 0;
    int rc = CLI_OK;
    switch (c) {
    case CLI_OPT_DISPATCHED:
        if (a->dispatched != NULL)
            *a->dispatched = true;
        return CLI_OK;
    case CLI_OPT_OLDER_THAN:
        return cli_parse_duration(ctx, "--older-than", optarg, &a->p->older_than_ms);
    case CLI_OPT_EVERY:
        return cli_parse_duration(ctx, "--every", optarg, &a->p->every_ms);
    case CLI_OPT_BATCH:
        if ((rc = cli_parse_count(ctx, "--batch", optarg, 1, 100000, &batch)) == CLI_OK)
            a->p->batch = (size_t)batch;
        return rc;
    default:
        return CLI_NOT_MINE;
    }
}

int cli_parse_purge(cli_ctx *ctx, int argc, char **argv, const struct option *opts, cli_purge *p,
                    bool *dispatched)
{
    purge_args a = {.p = p, .dispatched = dispatched};
    p->batch = 1000;
    int rc = cli_parse_options(ctx, argc, argv, opts, purge_option, &a, false);
    if (rc == CLI_OK && p->older_than_ms == 0)
        rc = cli_usage_error(ctx, "--older-than DURATION is required");
    return rc;
}

bool cli_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

int cli_add_service(const cli_ctx *ctx, const char *name, size_t name_len, const char *url,
                    cli_service *list, size_t *n)
{
    if (*n == CLI_SERVICES_MAX)
        return cli_usage_error(ctx, "at most %d services", CLI_SERVICES_MAX);
    if (name_len == 0 || name_len > CLI_SERVICE_NAME_MAX)
        return cli_usage_error(ctx, "--service: a name of 1..%d characters, then =URL",
                               CLI_SERVICE_NAME_MAX);
    for (size_t i = 0; i < name_len; i++)
        if (!cli_is_name_char(name[i]))
            return cli_usage_error(ctx,
                                   "--service: name \"%.*s\" has characters other than "
                                   "letters, digits, '-', '_' and '.'",
                                   (int)name_len, name);
    if (url == NULL || url[0] == '\0')
        return cli_usage_error(ctx, "--service %.*s: no database URL after '='", (int)name_len,
                               name);
    cli_service *s = &list[*n];
    snprintf(s->name, sizeof s->name, "%.*s", (int)name_len, name);
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i].name, s->name) == 0)
            return cli_usage_error(ctx, "--service %s given twice", s->name);
    s->url = url;
    (*n)++;
    return CLI_OK;
}

int cli_parse_service(const cli_ctx *ctx, const char *value, cli_service *list, size_t *n)
{
    const char *eq = strchr(value, '=');
    if (eq == NULL)
        return cli_usage_error(ctx, "--service wants NAME=DATABASE_URL, got \"%s\"", value);
    return cli_add_service(ctx, value, (size_t)(eq - value), eq + 1, list, n);
}
