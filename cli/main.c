/* txmsg: the operations tool. Parses the options every command shares and
 * runs one command: outbox, inbox, dlq, monitor, trace or console. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "console/console.h"
#include "txmsg/version.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char USAGE[] =
    "usage: txmsg [options] COMMAND ...\n"
    "Operations on a txmsg service's outbox, inbox and dead-letter queues.\n\n"
    "Commands:\n"
    "  outbox status     not-dispatched messages, oldest age, relay position and lag\n"
    "  outbox list       list outbox messages\n"
    "  outbox dispatch   publish stuck messages by hand and mark them dispatched\n"
    "  outbox purge      delete dispatched messages older than a cutoff, in batches\n"
    "  inbox purge       delete processed-message records older than a cutoff\n"
    "  dlq list|show|groups|redrive|purge   dead letters, also grouped by cause\n"
    "  monitor           check thresholds; exit 1 naming each one crossed\n"
    "  trace ID          one correlation id's messages across services, in time order\n"
    "  console           serve the operations console (a page and its JSON API)\n\n"
    "Run 'txmsg COMMAND --help' for a command's options. Exit codes: 0 ok,\n"
    "1 failure (or a crossed threshold), 2 usage error. 'txmsg --version'\n"
    "prints the version.\n\n"
    "Options (also accepted after the command):\n";

enum { OPT_VERSION = 2000 }; /* above the CLI_OPT_* values */

static const struct option global_options[] = {
    CLI_COMMON_OPTIONS,
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Parses options before the command. Returns CLI_OK with optind at the
 * command, CLI_HELP, or CLI_USAGE. */
static int parse_global(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "", USAGE);
    snprintf(ctx->prog, sizeof ctx->prog, "txmsg");
    int c;
    /* "+": stop at the command; its own options follow it. */
    while ((c = getopt_long(argc, argv, "+" CLI_SHORT_OPTIONS, global_options, NULL)) != -1) {
        if (c == OPT_VERSION) {
            printf("txmsg %s\n", txm_version());
            return CLI_HELP;
        }
        int rc = cli_common_option(ctx, c, argv);
        if (rc != CLI_OK)
            return rc;
    }
    return CLI_OK;
}

static int run(cli_ctx *ctx, int argc, char **argv)
{
    int rc = parse_global(ctx, argc, argv);
    if (rc != CLI_OK)
        return rc;
    if (optind >= argc) {
        fputs(USAGE, stderr);
        fputs(CLI_COMMON_HELP, stderr);
        return cli_usage_error(ctx, "missing command");
    }
    char **cmd = argv + optind;
    int n = argc - optind;
    if (strcmp(cmd[0], "outbox") == 0)
        return cli_outbox(ctx, n, cmd);
    if (strcmp(cmd[0], "inbox") == 0)
        return cli_inbox(ctx, n, cmd);
    if (strcmp(cmd[0], "dlq") == 0)
        return cli_dlq(ctx, n, cmd);
    if (strcmp(cmd[0], "monitor") == 0)
        return cli_monitor(ctx, n, cmd);
    if (strcmp(cmd[0], "trace") == 0)
        return cli_trace(ctx, n, cmd);
    if (strcmp(cmd[0], "console") == 0)
        return cli_console(ctx, n, cmd);
    return cli_usage_error(ctx, "unknown command \"%s\"", cmd[0]);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    /* The first signal asks loops (purge, dispatch) to stop between
     * batches; a second one, for a call that blocks, ends the process. */
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    cli_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.database_url = getenv("TXMSG_DATABASE_URL");
    ctx.broker_url = getenv("TXMSG_BROKER_URL");
    ctx.stop = &stop_requested;
    int rc = run(&ctx, argc, argv);
    return rc == CLI_HELP ? CLI_OK : rc;
}
