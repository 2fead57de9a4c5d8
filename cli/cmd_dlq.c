/* txmsg dlq: the dead-letter queue of a subscription's queue: list, show one
 * dead letter, group by cause, redrive (move back to the queue, all, one, or
 * a group at a rate) and purge (all or a group). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "dlq_doc.h"

#define LIST_LIMIT_MAX 100000
#define SHOW_SCAN_MAX 100000 /* dead letters searched for dlq show */

#define GROUPS_SCAN_DEFAULT 10000

enum { OPT_LIMIT = 300, OPT_ID, OPT_GROUP, OPT_MATCH, OPT_RATE, OPT_YES };

/* Takes exactly n positional arguments (named by names, for messages)
 * from what getopt left at optind. */
static int positionals(const cli_ctx *ctx, int argc, char **argv, const char *const *names, int n,
                       const char **out)
{
    int have = argc - optind;
    if (have < n)
        return cli_usage_error(ctx, "missing %s", names[have]);
    if (have > n)
        return cli_usage_error(ctx, "unexpected argument \"%s\"", argv[optind + n]);
    for (int i = 0; i < n; i++)
        out[i] = argv[optind + i];
    return CLI_OK;
}

/* Where the dlq options go; NULL for an option the command does not take. */
typedef struct dlq_args {
    const char **id;
    long long *limit;
    const char **group; /* --group */
    const char **match; /* --match */
    double *rate;       /* --rate */
    bool *yes;          /* --yes */
} dlq_args;

static const char *option_name(int c)
{
    static const char *const names[] = {"--limit", "--id", "--group", "--match", "--rate", "--yes"};
    return names[c - OPT_LIMIT];
}

/* A group id as txm_dlq_group_id writes it: 12 lower-case hex digits. */
static int parse_group(const cli_ctx *ctx, const char *v, const char **out)
{
    size_t n = strspn(v, "0123456789abcdef");
    if (n != TXM_DLQ_GROUP_ID_LEN || v[n] != '\0')
        return cli_usage_error(ctx,
                               "--group wants a group id of %d hex digits (from 'txmsg dlq "
                               "groups'), got \"%s\"",
                               TXM_DLQ_GROUP_ID_LEN, v);
    *out = v;
    return CLI_OK;
}

static int parse_rate(const cli_ctx *ctx, const char *v, double *out)
{
    errno = 0;
    char *end = NULL;
    double r = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(r > 0 && r <= 1000000))
        return cli_usage_error(ctx,
                               "--rate wants messages per second, above 0 and at most "
                               "1000000, got \"%s\"",
                               v);
    *out = r;
    return CLI_OK;
}

static int dlq_option(cli_ctx *ctx, int c, void *arg)
{
    dlq_args *a = arg;
    if (c == OPT_LIMIT && a->limit != NULL)
        return cli_parse_count(ctx, "--limit", optarg, 1, LIST_LIMIT_MAX, a->limit);
    if (c == OPT_ID && a->id != NULL) {
        *a->id = optarg;
        return CLI_OK;
    }
    if (c == OPT_GROUP && a->group != NULL)
        return parse_group(ctx, optarg, a->group);
    if (c == OPT_MATCH && a->match != NULL) {
        *a->match = optarg;
        return optarg[0] != '\0' ? CLI_OK : cli_usage_error(ctx, "--match wants some text");
    }
    if (c == OPT_RATE && a->rate != NULL)
        return parse_rate(ctx, optarg, a->rate);
    if (c == OPT_YES && a->yes != NULL) {
        *a->yes = true;
        return CLI_OK;
    }
    if (c >= OPT_LIMIT && c <= OPT_YES)
        return cli_usage_error(ctx, "unknown option %s", option_name(c));
    return CLI_NOT_MINE;
}

/* Parses a dlq subcommand: the common options and those a names (the
 * pointers set), then n positionals. */
static int parse_dlq_args(cli_ctx *ctx, int argc, char **argv, dlq_args *a,
                          const char *const *names, int n, const char **pos)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"id", required_argument, NULL, OPT_ID},
        {"group", required_argument, NULL, OPT_GROUP},
        {"match", required_argument, NULL, OPT_MATCH},
        {"rate", required_argument, NULL, OPT_RATE},
        {"yes", no_argument, NULL, OPT_YES},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = cli_parse_options(ctx, argc, argv, opts, dlq_option, a, true);
    if (rc == CLI_OK)
        rc = positionals(ctx, argc, argv, names, n, pos);
    if (rc == CLI_OK && pos[0][0] == '\0')
        rc = cli_usage_error(ctx, "QUEUE must not be empty");
    return rc;
}

/* parse_dlq_args for the commands with only --id or --limit. */
static int parse_dlq(cli_ctx *ctx, int argc, char **argv, const char **id, long long *limit,
                     const char *const *names, int n, const char **pos)
{
    dlq_args a = {.id = id, .limit = limit};
    return parse_dlq_args(ctx, argc, argv, &a, names, n, pos);
}

/* Lists up to limit dead letters of queue (opening the broker). */
static int load(const cli_ctx *ctx, const char *queue, size_t limit, txm_transport **t,
                txm_delivery ***list, size_t *n)
{
    *list = NULL;
    *n = 0;
    int rc = cli_open_transport(ctx, t);
    if (rc != CLI_OK)
        return rc;
    txm_error err;
    txm_status st = txm_transport_dlq_list(*t, queue, limit, list, n, &err);
    if (st == TXM_NOT_FOUND)
        return cli_fail(ctx, "queue %s is not declared on this broker", queue);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot read the dead-letter queue of %s: %s", queue, err.text);
    return CLI_OK;
}

/* ---- dlq list ------------------------------------------------------------- */

static const char LIST_USAGE[] =
    "usage: txmsg dlq list QUEUE [--limit N] [options]\n"
    "Lists the dead letters of QUEUE (messages that failed too often), oldest\n"
    "first, without consuming them.\n\n"
    "  --limit N           at most N, 1..100000 (default 100)\n";

static int print_list(const cli_ctx *ctx, const char *queue, txm_delivery **list, size_t n)
{
    if (!ctx->json) {
        printf("%-36s %-8s %-24s %s\n", "MESSAGE_ID", "RECEIVES", "TOPIC", "LAST_ERROR");
        for (size_t i = 0; i < n; i++)
            printf("%-36s %-8d %-24s %s\n", txm_delivery_message_id(list[i]),
                   txm_delivery_receive_count(list[i]), txm_delivery_topic(list[i]),
                   txm_delivery_last_error(list[i]));
        return CLI_OK;
    }
    return cli_print_json(ctx, cli_dlq_list_json(queue, list, n));
}

static int cmd_list(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE"};
    cli_begin(ctx, "dlq list", LIST_USAGE);
    const char *queue = NULL;
    long long limit = 100;
    int rc = parse_dlq(ctx, argc, argv, NULL, &limit, names, 1, &queue);
    txm_transport *t = NULL;
    txm_delivery **list = NULL;
    size_t n = 0;
    if (rc == CLI_OK)
        rc = load(ctx, queue, (size_t)limit, &t, &list, &n);
    if (rc == CLI_OK)
        rc = print_list(ctx, queue, list, n);
    txm_delivery_list_free(list, n);
    txm_transport_close(t);
    return rc;
}

/* ---- dlq show ------------------------------------------------------------- */

static const char SHOW_USAGE[] =
    "usage: txmsg dlq show QUEUE ID [options]\n"
    "Shows one dead letter of QUEUE: its receive count, last error and body\n"
    "(pretty-printed).\n";

static void print_show(const char *queue, const txm_delivery *d)
{
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    printf("message id:     %s\nqueue:          %s\ntopic:          %s\n"
           "receive count:  %d\nlast error:     %s\nbody:\n",
           txm_delivery_message_id(d), queue, txm_delivery_topic(d), txm_delivery_receive_count(d),
           txm_delivery_last_error(d));
    json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    char *pretty = doc != NULL ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (pretty != NULL) {
        puts(pretty);
    } else {
        fwrite(body, 1, len, stdout);
        putchar('\n');
    }
    free(pretty);
    json_decref(doc);
}

static int cmd_show(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE", "ID"};
    cli_begin(ctx, "dlq show", SHOW_USAGE);
    const char *pos[2] = {NULL, NULL};
    int rc = parse_dlq(ctx, argc, argv, NULL, NULL, names, 2, pos);
    txm_transport *t = NULL;
    txm_delivery **list = NULL;
    size_t n = 0;
    if (rc == CLI_OK)
        rc = load(ctx, pos[0], SHOW_SCAN_MAX, &t, &list, &n);
    const txm_delivery *found = NULL;
    for (size_t i = 0; rc == CLI_OK && found == NULL && i < n; i++) {
        if (strcmp(txm_delivery_message_id(list[i]), pos[1]) == 0)
            found = list[i];
    }
    if (rc == CLI_OK && found == NULL)
        rc = cli_fail(ctx, "no dead letter %s in the dead-letter queue of %s", pos[1], pos[0]);
    if (rc == CLI_OK && ctx->json)
        rc = cli_print_json(ctx, cli_dlq_delivery_json(found));
    else if (rc == CLI_OK)
        print_show(pos[0], found);
    txm_delivery_list_free(list, n);
    txm_transport_close(t);
    return rc;
}

/* ---- dlq groups ----------------------------------------------------------- */

static const char GROUPS_USAGE[] =
    "usage: txmsg dlq groups QUEUE [--limit N] [options]\n"
    "Groups the dead letters of QUEUE by cause: the fingerprint of their last\n"
    "error, with numbers, UUIDs and hex ids, and quoted values masked. Shows each\n"
    "group's id (for --group), count, first and last dead-lettered time and one\n"
    "member, largest group first.\n\n"
    "  --limit N           read at most N dead letters, 1..100000 (default 10000)\n";

static void format_time(int64_t us, char out[TXM_TIME_LEN + 1])
{
    if (us != 0)
        txm_time_format(us, out);
    else
        snprintf(out, TXM_TIME_LEN + 1, "-");
}

static int print_groups(const cli_ctx *ctx, const char *queue, const txm_dlq_group *g, size_t n,
                        bool truncated)
{
    if (truncated)
        fprintf(stderr, "%s: read only the first dead letters of %s; raise --limit\n", ctx->prog,
                queue);
    if (!ctx->json) {
        printf("%-12s %-7s %-27s %-27s %s\n", "GROUP", "COUNT", "FIRST_SEEN", "LAST_SEEN",
               "FINGERPRINT");
        for (size_t i = 0; i < n; i++) {
            char first[TXM_TIME_LEN + 1], last[TXM_TIME_LEN + 1];
            format_time(g[i].first_seen_us, first);
            format_time(g[i].last_seen_us, last);
            printf("%-12s %-7zu %-27s %-27s %s\n", g[i].id, g[i].count, first, last,
                   g[i].fingerprint);
            printf("%-12s sample %s: %s\n", "", g[i].sample_id, g[i].sample_error);
        }
        return CLI_OK;
    }
    return cli_print_json(ctx, cli_dlq_groups_json(queue, g, n, truncated));
}

/* Reads the groups of queue (opening the broker into *t). */
static int load_groups(const cli_ctx *ctx, const char *queue, size_t limit, txm_transport **t,
                       txm_dlq_group **g, size_t *n, bool *truncated)
{
    int rc = cli_open_transport(ctx, t);
    if (rc != CLI_OK)
        return rc;
    txm_error err;
    txm_status st = txm_transport_dlq_groups(*t, queue, limit, g, n, truncated, &err);
    if (st == TXM_NOT_FOUND)
        return cli_fail(ctx, "queue %s is not declared on this broker", queue);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot read the dead-letter queue of %s: %s", queue, err.text);
    return CLI_OK;
}

static int cmd_groups(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE"};
    cli_begin(ctx, "dlq groups", GROUPS_USAGE);
    const char *queue = NULL;
    long long limit = GROUPS_SCAN_DEFAULT;
    int rc = parse_dlq(ctx, argc, argv, NULL, &limit, names, 1, &queue);
    txm_transport *t = NULL;
    txm_dlq_group *g = NULL;
    size_t n = 0;
    bool truncated = false;
    if (rc == CLI_OK)
        rc = load_groups(ctx, queue, (size_t)limit, &t, &g, &n, &truncated);
    if (rc == CLI_OK)
        rc = print_groups(ctx, queue, g, n, truncated);
    txm_free(g);
    txm_transport_close(t);
    return rc;
}

/* ---- dlq redrive and purge ------------------------------------------------ */

static const char REDRIVE_USAGE[] =
    "usage: txmsg dlq redrive QUEUE [--id ID | [--group ID] [--match TEXT] [--rate N]]\n"
    "                         [options]\n"
    "Moves dead letters of QUEUE back to QUEUE with a fresh receive count (fix the\n"
    "handler first): all of them, the one with --id, or those of a group (see\n"
    "'txmsg dlq groups') or whose last error contains TEXT, one message at a time\n"
    "at most N per second, so the fixed consumer is not flooded. SIGINT or\n"
    "SIGTERM stops a paced redrive between two messages.\n\n"
    "  --id ID             only the dead letter with this message id\n"
    "  --group ID          only the dead letters of this group\n"
    "  --match TEXT        only the dead letters whose last error contains TEXT\n"
    "  --rate N            at most N messages per second (such as 100 or 0.5)\n";

typedef struct redrive_run {
    const cli_ctx *ctx;
    bool tty; /* progress on stderr */
} redrive_run;

static bool redrive_should_stop(void *arg)
{
    const redrive_run *r = arg;
    return *r->ctx->stop != 0;
}

static void redrive_progress(void *arg, size_t moved, size_t total)
{
    const redrive_run *r = arg;
    if (r->tty)
        fprintf(stderr, "\rredriven %zu of %zu", moved, total);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A redrive by group, error text or rate: paced, one message at a time. */
static int redrive_paced(cli_ctx *ctx, txm_transport *t, const char *queue,
                         const txm_dlq_redrive_options *base)
{
    redrive_run r = {ctx, isatty(STDERR_FILENO) == 1};
    txm_dlq_redrive_options o = *base;
    o.should_stop = redrive_should_stop;
    o.progress = redrive_progress;
    o.ctx = &r;
    size_t moved = 0;
    txm_error err;
    double start = mono_s();
    txm_status st = txm_transport_dlq_redrive_group(t, queue, &o, &moved, &err);
    double took = mono_s() - start;
    if (r.tty && moved > 0)
        fputc('\n', stderr);
    if (st == TXM_NOT_FOUND)
        return cli_fail(ctx, "no dead letter of %s matches", queue);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot redrive %s after %zu messages: %s", queue, moved, err.text);
    bool stopped = *ctx->stop != 0;
    if (ctx->json) {
        int rc = cli_print_json(
            ctx, json_pack("{s:s, s:o, s:I, s:f, s:b}", "queue", queue, "group",
                           o.group_id != NULL ? json_string(o.group_id) : json_null(), "redriven",
                           (json_int_t)moved, "seconds", took, "stopped", stopped));
        return stopped ? CLI_FAIL : rc;
    }
    printf("moved %zu dead letters back to %s in %.1f s\n", moved, queue, took);
    return stopped ? cli_fail(ctx, "stopped by a signal after %zu messages", moved) : CLI_OK;
}

static int cmd_redrive(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE"};
    cli_begin(ctx, "dlq redrive", REDRIVE_USAGE);
    const char *queue = NULL, *id = NULL;
    txm_dlq_redrive_options o;
    txm_dlq_redrive_options_init(&o);
    dlq_args a = {.id = &id, .group = &o.group_id, .match = &o.match, .rate = &o.rate_per_s};
    int rc = parse_dlq_args(ctx, argc, argv, &a, names, 1, &queue);
    bool paced = o.group_id != NULL || o.match != NULL || o.rate_per_s > 0;
    if (rc == CLI_OK && id != NULL && paced)
        rc = cli_usage_error(ctx, "--id goes alone: not with --group, --match or --rate");
    txm_transport *t = NULL;
    if (rc != CLI_OK || (rc = cli_open_transport(ctx, &t)) != CLI_OK)
        return rc;
    if (paced) {
        rc = redrive_paced(ctx, t, queue, &o);
        txm_transport_close(t);
        return rc;
    }
    size_t moved = 0;
    txm_error err;
    txm_status st = txm_transport_dlq_redrive(t, queue, id, &moved, &err);
    txm_transport_close(t);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot redrive %s: %s", queue, err.text);
    if (id != NULL && moved == 0)
        return cli_fail(ctx, "no dead letter %s in the dead-letter queue of %s", id, queue);
    if (ctx->json)
        return cli_print_json(
            ctx, json_pack("{s:s, s:I}", "queue", queue, "redriven", (json_int_t)moved));
    printf("moved %zu dead letters back to %s\n", moved, queue);
    return CLI_OK;
}

static const char PURGE_USAGE[] =
    "usage: txmsg dlq purge QUEUE [--group ID [--yes]] [options]\n"
    "Deletes every dead letter of QUEUE, or those of one group (see 'txmsg dlq\n"
    "groups'). A group purge shows the group and asks for confirmation on a\n"
    "terminal; without one it needs --yes.\n\n"
    "  --group ID          only the dead letters of this group\n"
    "  --yes               do not ask\n";

/* Shows group id of queue and asks whether to delete it: true for yes. */
static bool confirm_group(const txm_dlq_group *g, const char *queue)
{
    fprintf(stderr, "group %s of %s: %zu dead letters\n  %s\n  sample %s: %s\n", g->id, queue,
            g->count, g->fingerprint, g->sample_id, g->sample_error);
    fprintf(stderr, "Delete these %zu dead letters? [y/N] ", g->count);
    char answer[16];
    if (fgets(answer, sizeof answer, stdin) == NULL)
        return false;
    return answer[0] == 'y' || answer[0] == 'Y';
}

static int purge_group(cli_ctx *ctx, txm_transport *t, const char *queue, const char *group,
                       bool yes)
{
    txm_dlq_group *g = NULL;
    size_t n = 0;
    txm_error err;
    txm_status st = txm_transport_dlq_groups(t, queue, TXM_DLQ_SCAN_MAX, &g, &n, NULL, &err);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot read the dead-letter queue of %s: %s", queue, err.text);
    const txm_dlq_group *found = NULL;
    for (size_t i = 0; i < n && found == NULL; i++)
        if (strcmp(g[i].id, group) == 0)
            found = &g[i];
    int rc = found != NULL ? CLI_OK
                           : cli_fail(ctx, "no group %s in the dead letters of %s", group, queue);
    if (rc == CLI_OK && !yes && !confirm_group(found, queue))
        rc = cli_fail(ctx, "nothing deleted");
    txm_free(g);
    size_t purged = 0;
    if (rc == CLI_OK &&
        txm_transport_dlq_purge_group(t, queue, group, TXM_DLQ_SCAN_MAX, &purged, &err) != TXM_OK)
        rc = cli_fail(ctx, "cannot purge group %s of %s after %zu: %s", group, queue, purged,
                      err.text);
    if (rc != CLI_OK)
        return rc;
    if (ctx->json)
        return cli_print_json(ctx, json_pack("{s:s, s:s, s:I}", "queue", queue, "group", group,
                                             "purged", (json_int_t)purged));
    printf("deleted %zu dead letters of group %s of %s\n", purged, group, queue);
    return CLI_OK;
}

static int cmd_purge(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE"};
    cli_begin(ctx, "dlq purge", PURGE_USAGE);
    const char *queue = NULL, *group = NULL;
    bool yes = false;
    dlq_args a = {.group = &group, .yes = &yes};
    int rc = parse_dlq_args(ctx, argc, argv, &a, names, 1, &queue);
    if (rc == CLI_OK && yes && group == NULL)
        rc = cli_usage_error(ctx, "--yes goes with --group");
    if (rc == CLI_OK && group != NULL && !yes && isatty(STDIN_FILENO) != 1)
        rc = cli_usage_error(ctx, "purging a group asks for confirmation on a terminal; "
                                  "without one, add --yes");
    txm_transport *t = NULL;
    if (rc != CLI_OK || (rc = cli_open_transport(ctx, &t)) != CLI_OK)
        return rc;
    if (group != NULL) {
        rc = purge_group(ctx, t, queue, group, yes);
        txm_transport_close(t);
        return rc;
    }
    size_t purged = 0;
    txm_error err;
    txm_status st = txm_transport_dlq_purge(t, queue, &purged, &err);
    txm_transport_close(t);
    if (st != TXM_OK)
        return cli_fail(ctx, "cannot purge the dead-letter queue of %s: %s", queue, err.text);
    if (ctx->json)
        return cli_print_json(
            ctx, json_pack("{s:s, s:I}", "queue", queue, "purged", (json_int_t)purged));
    printf("deleted %zu dead letters of %s\n", purged, queue);
    return CLI_OK;
}

int cli_dlq(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"list", cmd_list, "list dead letters of a queue"},
        {"groups", cmd_groups, "dead letters of a queue grouped by cause"},
        {"show", cmd_show, "show one dead letter with its body"},
        {"redrive", cmd_redrive, "move dead letters back to their queue, paced"},
        {"purge", cmd_purge, "delete the dead letters of a queue, or of a group"},
    };
    return cli_group_run(ctx, "dlq", table, sizeof table / sizeof *table, argc, argv);
}
