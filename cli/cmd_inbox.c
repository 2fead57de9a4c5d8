/* txmsg inbox: retention purge of the records of processed messages. */
#include "cli.h"

static const char PURGE_USAGE[] =
    "usage: txmsg inbox purge --older-than DURATION [--batch N] [--every DURATION]\n"
    "                         [options]\n"
    "Deletes inbox records (processed message ids) created more than DURATION ago,\n"
    "in batches of N rows, each its own short transaction, until none is left.\n"
    "A message redelivered after its record is gone is processed again, so keep\n"
    "the cutoff far beyond any redelivery (the seed suggests a year).\n\n"
    "  --older-than D      age cutoff by created_at (30s, 5m, 2h, 365d)\n"
    "  --batch N           rows per transaction, 1..100000 (default 1000)\n"
    "  --every D           repeat every D until SIGINT or SIGTERM\n";

static int cmd_purge(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_PURGE_OPTIONS,
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    cli_begin(ctx, "inbox purge", PURGE_USAGE);
    cli_purge p = {.table = "inbox", .rows = "inbox records", .fn = txm_inbox_purge};
    txm_db *db = NULL;
    int rc = cli_parse_purge(ctx, argc, argv, opts, &p, NULL);
    if (rc != CLI_OK || (rc = cli_open_db(ctx, &db)) != CLI_OK)
        return rc;
    rc = cli_purge_run(ctx, db, &p);
    txm_db_close(db);
    return rc;
}

int cli_inbox(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"purge", cmd_purge, "delete old records of processed messages in batches"},
    };
    return cli_group_run(ctx, "inbox", table, sizeof table / sizeof *table, argc, argv);
}
