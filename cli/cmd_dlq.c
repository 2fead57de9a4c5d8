/* txmsg dlq: the dead-letter queue of a subscription's queue: list, show one
 * dead letter, redrive (move back to the queue) and purge. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LIST_LIMIT_MAX 100000
#define SHOW_SCAN_MAX 100000 /* dead letters searched for dlq show */

enum { OPT_LIMIT = 300, OPT_ID };

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
} dlq_args;

static int dlq_option(cli_ctx *ctx, int c, void *arg)
{
    dlq_args *a = arg;
    if (c == OPT_LIMIT && a->limit != NULL)
        return cli_parse_count(ctx, "--limit", optarg, 1, LIST_LIMIT_MAX, a->limit);
    if (c == OPT_ID && a->id != NULL) {
        *a->id = optarg;
        return CLI_OK;
    }
    if (c == OPT_LIMIT || c == OPT_ID)
        return cli_usage_error(ctx, "unknown option %s", c == OPT_LIMIT ? "--limit" : "--id");
    return CLI_NOT_MINE;
}

/* Parses a dlq subcommand: only the common options and *id (when not NULL,
 * --id) or *limit (when not NULL, --limit), then n positionals. */
static int parse_dlq(cli_ctx *ctx, int argc, char **argv, const char **id, long long *limit,
                     const char *const *names, int n, const char **pos)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"id", required_argument, NULL, OPT_ID},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    dlq_args a = {.id = id, .limit = limit};
    int rc = cli_parse_options(ctx, argc, argv, opts, dlq_option, &a, true);
    if (rc == CLI_OK)
        rc = positionals(ctx, argc, argv, names, n, pos);
    if (rc == CLI_OK && pos[0][0] == '\0')
        rc = cli_usage_error(ctx, "QUEUE must not be empty");
    return rc;
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

static json_t *delivery_json(const txm_delivery *d, bool with_body)
{
    json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "message_id", txm_delivery_message_id(d), "topic",
                          txm_delivery_topic(d), "receive_count", txm_delivery_receive_count(d),
                          "last_error", txm_delivery_last_error(d));
    if (o == NULL || !with_body)
        return o;
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    json_t *b = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (b == NULL)
        b = json_stringn(body, len); /* NULL if not UTF-8: the key is then absent */
    json_object_set_new(o, "body", b);
    return o;
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
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, delivery_json(list[i], false)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return cli_print_json(ctx, arr == NULL ? NULL
                                           : json_pack("{s:s, s:I, s:o}", "queue", queue, "count",
                                                       (json_int_t)n, "messages", arr));
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
        rc = cli_print_json(ctx, delivery_json(found, true));
    else if (rc == CLI_OK)
        print_show(pos[0], found);
    txm_delivery_list_free(list, n);
    txm_transport_close(t);
    return rc;
}

/* ---- dlq redrive and purge ------------------------------------------------ */

static const char REDRIVE_USAGE[] =
    "usage: txmsg dlq redrive QUEUE [--id ID] [options]\n"
    "Moves dead letters of QUEUE back to QUEUE with a fresh receive count (fix the\n"
    "handler first): all of them, or the one with --id.\n\n"
    "  --id ID             only the dead letter with this message id\n";

static int cmd_redrive(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE"};
    cli_begin(ctx, "dlq redrive", REDRIVE_USAGE);
    const char *queue = NULL, *id = NULL;
    int rc = parse_dlq(ctx, argc, argv, &id, NULL, names, 1, &queue);
    txm_transport *t = NULL;
    if (rc != CLI_OK || (rc = cli_open_transport(ctx, &t)) != CLI_OK)
        return rc;
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

static const char PURGE_USAGE[] = "usage: txmsg dlq purge QUEUE [options]\n"
                                  "Deletes every dead letter of QUEUE.\n";

static int cmd_purge(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const names[] = {"QUEUE"};
    cli_begin(ctx, "dlq purge", PURGE_USAGE);
    const char *queue = NULL;
    int rc = parse_dlq(ctx, argc, argv, NULL, NULL, names, 1, &queue);
    txm_transport *t = NULL;
    if (rc != CLI_OK || (rc = cli_open_transport(ctx, &t)) != CLI_OK)
        return rc;
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
        {"show", cmd_show, "show one dead letter with its body"},
        {"redrive", cmd_redrive, "move dead letters back to their queue"},
        {"purge", cmd_purge, "delete every dead letter of a queue"},
    };
    return cli_group_run(ctx, "dlq", table, sizeof table / sizeof *table, argc, argv);
}
