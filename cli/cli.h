/* The txmsg command-line tool: what every subcommand shares (its context,
 * common options, connections, output and argument helpers). */
#ifndef TXM_CLI_CLI_H
#define TXM_CLI_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "txmsg/admin.h"
#include "txmsg/txmsg.h"

/* Exit codes. CLI_HELP is internal: --help was printed, exit 0. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_HELP = -1 };

/* Option codes shared by every subcommand, above any single character.
 * Short options: every subcommand's optstring is CLI_SHORT_OPTIONS ("-h"). */
#define CLI_SHORT_OPTIONS ":h"
enum {
    CLI_OPT_DATABASE_URL = 1000,
    CLI_OPT_BROKER_URL,
    CLI_OPT_JSON,
    CLI_OPT_HELP,
    CLI_OPT_OLDER_THAN, /* purge options, shared by outbox and inbox */
    CLI_OPT_BATCH,
    CLI_OPT_EVERY,
    CLI_OPT_DISPATCHED,
};

/* clang-format off */
#define CLI_COMMON_OPTIONS                                                                     \
    {"database-url", required_argument, NULL, CLI_OPT_DATABASE_URL},                           \
    {"broker-url", required_argument, NULL, CLI_OPT_BROKER_URL},                               \
    {"json", no_argument, NULL, CLI_OPT_JSON},                                                 \
    {"help", no_argument, NULL, CLI_OPT_HELP}
/* clang-format on */

/* Options every subcommand takes, in its usage text. */
#define CLI_COMMON_HELP                                                                            \
    "  --database-url URL  database (default $TXMSG_DATABASE_URL)\n"                               \
    "  --broker-url URL    broker (default $TXMSG_BROKER_URL)\n"                                   \
    "  --json              print one JSON document on stdout\n"                                    \
    "  -h, --help          this text\n"

/* One run of the tool. main.c owns it; subcommands borrow it. */
typedef struct cli_ctx {
    char prog[64];               /* "txmsg outbox list": prefix of messages */
    const char *usage;           /* the running subcommand's usage text */
    const char *database_url;    /* NULL when unset */
    const char *broker_url;      /* NULL when unset */
    bool json;                   /* --json */
    volatile sig_atomic_t *stop; /* set by SIGINT/SIGTERM */
} cli_ctx;

/* A subcommand: argv[0] is its name; returns an exit code. */
typedef int (*cli_cmd_fn)(cli_ctx *ctx, int argc, char **argv);

/* Subcommand groups (cmd_*.c). */
int cli_outbox(cli_ctx *ctx, int argc, char **argv);
int cli_inbox(cli_ctx *ctx, int argc, char **argv);
int cli_dlq(cli_ctx *ctx, int argc, char **argv);
int cli_monitor(cli_ctx *ctx, int argc, char **argv);
int cli_trace(cli_ctx *ctx, int argc, char **argv);

/* One entry of a group's table of subcommands. */
typedef struct cli_cmd {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cli_cmd;

/* Runs the subcommand argv[0] of group from table (n entries): prints the
 * group's help for no name or --help, a usage error for an unknown name. */
int cli_group_run(cli_ctx *ctx, const char *group, const cli_cmd *table, size_t n, int argc,
                  char **argv);

/* Prepares getopt_long for a new argument vector and names the running
 * subcommand ("outbox list") and its usage text. */
void cli_begin(cli_ctx *ctx, const char *name, const char *usage);

/* Handles getopt_long's result c when it is a common option or an error
 * ('?', ':'). Returns CLI_OK when c was consumed, CLI_HELP after printing
 * the usage, CLI_USAGE after a usage error, or 1000+ when c is unknown here
 * (the caller's own option: never, if its table is right). */
int cli_common_option(cli_ctx *ctx, int c, char **argv);

/* What a subcommand's option handler returns for an option that is not its
 * own: cli_parse_options passes it to cli_common_option. */
#define CLI_NOT_MINE (-2)

/* Handles one option c (its value in optarg) of a subcommand into arg.
 * Returns CLI_OK, an exit code after a usage error, or CLI_NOT_MINE. */
typedef int (*cli_option_fn)(cli_ctx *ctx, int c, void *arg);

/* The getopt_long loop every subcommand runs: each option of opts goes to
 * fn(ctx, c, arg), then to cli_common_option when fn says CLI_NOT_MINE, until
 * one fails. Unless positionals is set, a word left over is a usage error;
 * otherwise optind points at the first. Returns CLI_OK, CLI_HELP,
 * CLI_USAGE or what fn returned. Borrows arg. */
int cli_parse_options(cli_ctx *ctx, int argc, char **argv, const struct option *opts,
                      cli_option_fn fn, void *arg, bool positionals);

/* Prints "txmsg X: <message>" and a hint to use --help on stderr; returns
 * CLI_USAGE. */
int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "txmsg X: <message>" on stderr; returns CLI_FAIL. */
int cli_fail(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a duration option value; a usage error names option on failure. */
int cli_parse_duration(const cli_ctx *ctx, const char *option, const char *value, int64_t *ms);

/* Parses a decimal integer in lo..hi; a usage error names option on failure. */
int cli_parse_count(const cli_ctx *ctx, const char *option, const char *value, long long lo,
                    long long hi, long long *out);

/* Opens the database without migrating it (an operations tool never
 * changes the schema). A missing SQLite file is an error, not created.
 * Returns CLI_OK, CLI_USAGE when no URL is set, CLI_FAIL otherwise.
 * Owns: *db is the caller's. */
int cli_open_db(const cli_ctx *ctx, txm_db **db);

/* cli_open_db for url, without printing: TXM_NOT_FOUND for a missing
 * SQLite file, else txm_db_open's status; err says which URL and why. */
txm_status cli_db_open_url(const char *url, txm_db **db, txm_error *err);

/* cli_open_transport for url, without printing; background: keep
 * connecting to an unreachable NATS in the background (see
 * txm_transport_options). TXM_NOT_FOUND for a missing embedded file. */
txm_status cli_transport_open_url(const char *url, bool background, txm_transport **t,
                                  txm_error *err);

/* Connects to the broker; a missing embedded broker file is an error, not
 * created. Same returns; *t is the caller's. */
int cli_open_transport(const cli_ctx *ctx, txm_transport **t);

/* Prints doc compactly on stdout with a newline and releases it. Returns
 * CLI_OK, or CLI_FAIL when doc is NULL (out of memory). Owns: takes doc. */
int cli_print_json(const cli_ctx *ctx, json_t *doc);

/* Seconds as a JSON real from microseconds. */
json_t *cli_json_seconds(int64_t us);

/* Deletes at most batch rows created before created_before_us. */
typedef txm_status (*cli_purge_fn)(txm_db *db, int64_t created_before_us, size_t batch,
                                   size_t *deleted, txm_error *err);

/* A retention purge: what to delete and how often. */
typedef struct cli_purge {
    const char *table; /* "outbox" or "inbox", for output */
    const char *rows;  /* "dispatched messages", "inbox records", for output */
    cli_purge_fn fn;
    int64_t older_than_ms; /* cutoff: rows created before now minus this */
    size_t batch;          /* rows per statement (transaction) */
    int64_t every_ms;      /* repeat after this long until a signal; 0: once */
} cli_purge;

/* clang-format off */
#define CLI_PURGE_OPTIONS                                                                      \
    {"older-than", required_argument, NULL, CLI_OPT_OLDER_THAN},                               \
    {"batch", required_argument, NULL, CLI_OPT_BATCH},                                         \
    {"every", required_argument, NULL, CLI_OPT_EVERY}
/* clang-format on */

/* Parses a purge command's options (opts: CLI_PURGE_OPTIONS, the common
 * ones, and for the outbox CLI_OPT_DISPATCHED) into p, which has its table,
 * rows and fn set. *dispatched (may be NULL) is set by --dispatched.
 * Requires --older-than. Returns CLI_OK, CLI_HELP or CLI_USAGE. */
int cli_parse_purge(cli_ctx *ctx, int argc, char **argv, const struct option *opts, cli_purge *p,
                    bool *dispatched);

/* Runs p: each pass deletes batch after batch until none is left, and
 * prints what it deleted. Returns CLI_OK, CLI_FAIL on a database error or
 * an interrupted single pass. Borrows db. */
int cli_purge_run(cli_ctx *ctx, txm_db *db, const cli_purge *p);

/* A service named on the command line (--service NAME=DATABASE_URL), as
 * txmsg trace and txmsg console take them. */
#define CLI_SERVICES_MAX 16
#define CLI_SERVICE_NAME_MAX 63
typedef struct cli_service {
    char name[CLI_SERVICE_NAME_MAX + 1]; /* letters, digits, '-', '_', '.' */
    const char *url;                     /* borrowed from argv or the environment */
} cli_service;

/* Adds the service name (name_len bytes) with url to list (*n of
 * CLI_SERVICES_MAX used). A usage error names what is wrong: too many, a bad
 * or repeated name, no URL. Returns CLI_OK or CLI_USAGE. */
int cli_add_service(const cli_ctx *ctx, const char *name, size_t name_len, const char *url,
                    cli_service *list, size_t *n);

/* cli_add_service for a --service value "NAME=URL". */
int cli_parse_service(const cli_ctx *ctx, const char *value, cli_service *list, size_t *n);

/* True for the characters of a service name. */
bool cli_is_name_char(char c);

/* Sleeps ms milliseconds or until *ctx->stop is set. */
void cli_sleep_ms(const cli_ctx *ctx, int64_t ms);

#endif
