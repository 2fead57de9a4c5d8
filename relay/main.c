/* txmsg-relay: tails one service's outbox through its database's log and
 * publishes every new message to its topic on the configured transport. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "relay_http.h"
#include "txmsg/service.h"
#include "txmsg/txmsg.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: txmsg-relay [options]\n"
            "Publishes every message committed to a service's outbox, in commit order.\n\n"
            "  --database-url URL     outbox database (default $TXMSG_DATABASE_URL)\n"
            "  --broker-url URL       transport (default $TXMSG_BROKER_URL)\n"
            "  --batch-size N         messages per publish, 1..10000 (default 500)\n"
            "  --no-mark-dispatched   PostgreSQL: do not mark published rows as dispatched\n"
            "                         (SQLite marks none: rows up to every relay's cursor\n"
            "                         count as dispatched, so the option changes nothing)\n"
            "  --cursor NAME          SQLite cursor row (default \"default\"); relays on\n"
            "                         one cursor are one active and the others standing by\n"
            "  --slot NAME            PostgreSQL replication slot (default txmsg_<database>)\n"
            "  --publication NAME     PostgreSQL publication (default " TXM_PUBLICATION_NAME ")\n"
            "  --metrics-port PORT    serve /metrics and /health on 127.0.0.1:PORT\n"
            "  --metrics-address ADDR address for --metrics-port (default 127.0.0.1)\n"
            "  --version              print the version and exit\n"
            "  -h, --help             this text\n");
}

typedef struct args {
    relay_config cfg;
    int metrics_port; /* -1: no HTTP endpoint */
    const char *metrics_address;
} args;

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Returns 0 to run, 1 to exit 0 (help), 2 on a usage error. */
static int parse_args(int argc, char **argv, args *a)
{
    static const struct option opts[] = {
        {"database-url", required_argument, NULL, 'd'},
        {"broker-url", required_argument, NULL, 'b'},
        {"batch-size", required_argument, NULL, 'n'},
        {"no-mark-dispatched", no_argument, NULL, 'M'},
        {"cursor", required_argument, NULL, 'c'},
        {"slot", required_argument, NULL, 's'},
        {"publication", required_argument, NULL, 'p'},
        {"metrics-port", required_argument, NULL, 'm'},
        {"metrics-address", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c, n;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            a->cfg.database_url = optarg;
            break;
        case 'b':
            a->cfg.broker_url = optarg;
            break;
        case 'M':
            a->cfg.mark_dispatched = false;
            break;
        case 'c':
            a->cfg.tail.cursor_name = optarg;
            break;
        case 's':
            a->cfg.tail.slot_name = optarg;
            break;
        case 'p':
            a->cfg.tail.publication_name = optarg;
            break;
        case 'a':
            a->metrics_address = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("txmsg-relay %s\n", txm_version());
            return 1;
        case 'n':
            if (parse_int(optarg, 1, 10000, &n) != 0) {
                fprintf(stderr, "txmsg-relay: --batch-size wants 1..10000, got \"%s\"\n", optarg);
                return 2;
            }
            a->cfg.batch_size = (size_t)n;
            break;
        case 'm':
            if (parse_int(optarg, 0, 65535, &a->metrics_port) != 0) {
                fprintf(stderr, "txmsg-relay: --metrics-port wants 0..65535, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "txmsg-relay: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (a->cfg.database_url == NULL || a->cfg.broker_url == NULL) {
        fprintf(stderr, "txmsg-relay: set TXMSG_DATABASE_URL and TXMSG_BROKER_URL "
                        "(or --database-url and --broker-url)\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    args a = {.metrics_port = -1, .metrics_address = "127.0.0.1"};
    relay_config_init(&a.cfg);
    a.cfg.database_url = getenv("TXMSG_DATABASE_URL");
    a.cfg.broker_url = getenv("TXMSG_BROKER_URL");
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc == 1 ? 0 : 2;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* past RLIMIT_FSIZE a write fails, to be retried */
    /* exec keeps the signal mask: a parent that blocked SIGTERM (a service
     * built on txm_app does) would otherwise start a relay that never stops. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);

    relay_stats stats;
    memset(&stats, 0, sizeof stats);
    relay_http *http = NULL;
    txm_error err = {0};
    txm_status st = relay_http_open(&a.cfg, &stats, a.metrics_address, a.metrics_port, &http, &err);
    if (st == TXM_OK)
        st = relay_run(&a.cfg, &stats, &stop_requested, &err);
    relay_http_close(http);
    if (st != TXM_OK) { /* the relay's log may be gone: a logger of main's own */
        txm_logger lg;
        txm_logger_init(&lg, "txmsg-relay");
        txm_log_write(&lg, TXM_LOG_ERROR, NULL, "%s", err.text);
    }
    return st == TXM_OK ? 0 : 1;
}
