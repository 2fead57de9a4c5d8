/* txmsg console: the command, its options, the run loop, and the replies
 * and checks every route shares (Host, token, read-only, parameters). */
#include "console.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duration.h"

static const char CONSOLE_USAGE[] =
    "usage: txmsg console --service NAME=DATABASE_URL ... [--listen HOST:PORT]\n"
    "                     [--broker URL] [--interval D] [--read-only] [options]\n"
    "Serves the operations console: a page at http://HOST:PORT/ and its JSON API\n"
    "under /api/ (see cli/console/API.md): each service's outbox and relay, the\n"
    "broker's queues with their depth, messages in flight, dead letters and\n"
    "handled per second, sampled every interval (the last 300 samples kept), one\n"
    "flow traced across the services, dead letters grouped by cause. Actions\n"
    "(dispatch a message, redrive or purge dead letters, cancel a job) need the\n"
    "token of $TXMSG_CONSOLE_TOKEN in the X-Txmsg-Token header; without it, or\n"
    "with --read-only, the console only shows. Runs until SIGINT or SIGTERM.\n\n"
    "  --service NAME=URL  a service and its database; repeat, up to 16\n"
    "  --listen HOST:PORT  where to serve (default 127.0.0.1:9700)\n"
    "  --broker URL        the broker (default --broker-url, $TXMSG_BROKER_URL)\n"
    "  --interval D        sampling interval, 100ms..1h (default 2s)\n"
    "  --read-only         refuse every action\n";

enum { OPT_SERVICE = 4000, OPT_LISTEN, OPT_BROKER, OPT_INTERVAL, OPT_READ_ONLY };

#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

/* The headers of every answer, then its Cache-Control value. */
#define SECURITY_HEADERS(cache)                                                                    \
    {                                                                                              \
        "Content-Security-Policy", CSP, "X-Content-Type-Options", "nosniff", "Referrer-Policy",    \
            "no-referrer", "Cache-Control", cache, NULL                                            \
    }
static const char *const API_HEADERS[] = SECURITY_HEADERS("no-store");
static const char *const PAGE_HEADERS[] = SECURITY_HEADERS("no-cache");

/* ---- replies ---- */

void console_reply_json(txm_http_request *req, int status, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(doc);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"SYSTEM_ERROR\",\"detail\":\"out of memory\"}";
        txm_http_reply_content(req, 500, "application/json", oom, strlen(oom), API_HEADERS, NULL);
        return;
    }
    txm_http_reply_content(req, status, "application/json", text, strlen(text), API_HEADERS, NULL);
    free(text);
}

void console_reply_error(txm_http_request *req, int status, const char *code, const char *fmt, ...)
{
    char detail[TXM_ERROR_TEXT_LEN + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    console_reply_json(req, status,
                       json_pack("{s:s, s:o}", "error", code, "detail", console_json_text(detail)));
}

void console_reply_page(txm_http_request *req, int status, const char *content_type,
                        const void *body, size_t len)
{
    txm_http_reply_content(req, status, content_type, body, len, PAGE_HEADERS, NULL);
}

json_t *console_json_text(const char *text)
{
    json_t *s = json_string(text);
    if (s != NULL)
        return s;
    char copy[TXM_ERROR_TEXT_LEN + 256];
    size_t n = 0;
    for (; text[n] != '\0' && n + 1 < sizeof copy; n++)
        copy[n] = (unsigned char)text[n] < 0x80 ? text[n] : '?';
    copy[n] = '\0';
    return json_string(copy);
}

json_t *console_time_json(int64_t us)
{
    char text[TXM_TIME_LEN + 1];
    if (us == 0)
        return json_null();
    txm_time_format(us, text);
    return json_string(text);
}

/* ---- checks ---- */

bool console_host_ok(console *c, txm_http_request *req)
{
    const char *host = txm_http_request_header(req, "Host");
    char want[3][CONSOLE_HOST_MAX + 16];
    snprintf(want[0], sizeof want[0], "%s:%u", c->listen_host, (unsigned)c->port);
    snprintf(want[1], sizeof want[1], "localhost:%u", (unsigned)c->port);
    snprintf(want[2], sizeof want[2], "127.0.0.1:%u", (unsigned)c->port);
    for (int i = 0; host != NULL && i < 3; i++)
        if (strcasecmp(host, want[i]) == 0)
            return true;
    console_reply_error(req, 421, "MISDIRECTED",
                        "the Host header must be %s, localhost:%u or 127.0.0.1:%u", want[0],
                        (unsigned)c->port, (unsigned)c->port);
    return false;
}

/* Compares in time that depends only on the lengths, not on where the
 * texts differ. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
    return la > 0 && diff == 0;
}

bool console_action_ok(console *c, txm_http_request *req)
{
    if (!console_host_ok(c, req))
        return false;
    if (!c->has_token) {
        console_reply_error(req, 403, "ACTIONS_DISABLED",
                            "actions are disabled: start the console with "
                            "TXMSG_CONSOLE_TOKEN set");
        return false;
    }
    if (c->read_only) {
        console_reply_error(req, 403, "READ_ONLY", "the console runs with --read-only");
        return false;
    }
    const char *given = txm_http_request_header(req, "X-Txmsg-Token");
    if (given == NULL || !same_secret(given, c->token)) {
        console_reply_error(req, 403, "FORBIDDEN", "the X-Txmsg-Token header is missing or wrong");
        return false;
    }
    return true;
}

console_service *console_find_service(console *c, txm_http_request *req, const char *name)
{
    for (size_t i = 0; name != NULL && i < c->n_services; i++)
        if (strcmp(c->services[i].cfg.name, name) == 0)
            return &c->services[i];
    json_t *n = name != NULL ? json_string(name) : NULL;
    console_reply_json(req, 404,
                       json_pack("{s:s, s:s, s:o}", "error", "UNKNOWN_SERVICE", "detail",
                                 "no such service", "service", n != NULL ? n : json_null()));
    return NULL;
}

/* Copies error (why a handle is not open) out under the lock. */
static void copy_error(console *c, const char *error, char why[TXM_ERROR_TEXT_LEN])
{
    pthread_mutex_lock(&c->lock);
    snprintf(why, TXM_ERROR_TEXT_LEN, "%s", error);
    pthread_mutex_unlock(&c->lock);
}

txm_db *console_service_db(console *c, txm_http_request *req, console_service *s)
{
    pthread_mutex_lock(&c->lock);
    txm_db *db = s->db;
    pthread_mutex_unlock(&c->lock);
    char why[TXM_ERROR_TEXT_LEN];
    if (db == NULL) {
        copy_error(c, s->error, why);
        console_reply_error(req, 503, "DATABASE_UNAVAILABLE", "service %s: %s", s->cfg.name, why);
    }
    return db;
}

txm_transport *console_transport(console *c, txm_http_request *req)
{
    pthread_mutex_lock(&c->lock);
    txm_transport *t = c->t;
    pthread_mutex_unlock(&c->lock);
    char why[TXM_ERROR_TEXT_LEN];
    if (t == NULL) {
        copy_error(c, c->broker_error, why);
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "%s",
                            why[0] != '\0' ? why : "no broker configured");
        return NULL;
    }
    if (!txm_transport_is_available(t)) {
        console_reply_error(req, 503, "BROKER_UNAVAILABLE", "the broker cannot be reached");
        return NULL;
    }
    return t;
}

bool console_query_int(txm_http_request *req, const char *name, long long lo, long long hi,
                       long long def, long long *out)
{
    const char *v = txm_http_request_query(req, name);
    *out = def;
    if (v == NULL)
        return true;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || n < lo || n > hi || (v[0] == '-' && lo >= 0)) {
        console_reply_json(req, 400,
                           json_pack("{s:s, s:s, s:s}", "error", "INVALID_PARAMETER", "parameter",
                                     name, "detail", "an integer out of range or malformed"));
        return false;
    }
    *out = n;
    return true;
}

const char *console_queue_param(txm_http_request *req)
{
    const char *q = txm_http_request_param(req, "queue");
    size_t len = q != NULL ? strlen(q) : 0;
    bool ok = len > 0 && len <= TXM_TOPIC_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = cli_is_name_char(q[i]);
    if (!ok) {
        console_reply_json(req, 400,
                           json_pack("{s:s, s:s, s:s}", "error", "INVALID_PARAMETER", "parameter",
                                     "queue", "detail",
                                     "a queue name is 1..255 letters, digits, '.', '-', '_'"));
        return NULL;
    }
    return q;
}

/* ---- options ---- */

typedef struct console_args {
    console *c;
    const char *listen;
} console_args;

static int console_option(cli_ctx *ctx, int c, void *arg)
{
    console_args *a = arg;
    switch (c) {
    case OPT_SERVICE: {
        cli_service list[CLI_SERVICES_MAX];
        size_t n = a->c->n_services;
        for (size_t i = 0; i < n; i++)
            list[i] = a->c->services[i].cfg;
        int rc = cli_parse_service(ctx, optarg, list, &n);
        if (rc == CLI_OK) {
            a->c->services[n - 1].cfg = list[n - 1];
            a->c->services[n - 1].pg = strncmp(list[n - 1].url, "sqlite:", 7) != 0;
            a->c->n_services = n;
        }
        return rc;
    }
    case OPT_LISTEN:
        a->listen = optarg;
        return CLI_OK;
    case OPT_BROKER:
        a->c->broker_url = optarg;
        return CLI_OK;
    case OPT_INTERVAL: {
        int rc = cli_parse_duration(ctx, "--interval", optarg, &a->c->interval_ms);
        if (rc == CLI_OK && (a->c->interval_ms < 100 || a->c->interval_ms > 3600000))
            rc = cli_usage_error(ctx, "--interval wants 100ms..1h, got \"%s\"", optarg);
        return rc;
    }
    case OPT_READ_ONLY:
        a->c->read_only = true;
        return CLI_OK;
    default:
        return CLI_NOT_MINE;
    }
}

/* "HOST:PORT" or "[V6]:PORT" into c->listen_host and c->port. */
static int parse_listen(cli_ctx *ctx, console *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    const char *host = v;
    size_t host_len = colon != NULL ? (size_t)(colon - v) : 0;
    if (host_len >= 2 && v[0] == '[' && v[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    long long port = 0;
    unsigned char addr[16];
    char text[CONSOLE_HOST_MAX];
    if (colon == NULL || host_len == 0 || host_len >= sizeof text)
        return cli_usage_error(ctx, "--listen wants HOST:PORT, got \"%s\"", v);
    snprintf(text, sizeof text, "%.*s", (int)host_len, host);
    if (inet_pton(AF_INET, text, addr) != 1 && inet_pton(AF_INET6, text, addr) != 1)
        return cli_usage_error(ctx, "--listen: \"%s\" is not an IP address", text);
    int rc = cli_parse_count(ctx, "--listen port", colon + 1, 0, 65535, &port);
    if (rc != CLI_OK)
        return rc;
    snprintf(c->listen_host, sizeof c->listen_host, "%s", text);
    c->port = (uint16_t)port;
    return CLI_OK;
}

static int parse_console(cli_ctx *ctx, int argc, char **argv, console *c)
{
    static const struct option opts[] = {
        {"service", required_argument, NULL, OPT_SERVICE},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"broker", required_argument, NULL, OPT_BROKER},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"read-only", no_argument, NULL, OPT_READ_ONLY},
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    console_args a = {.c = c, .listen = "127.0.0.1:9700"};
    int rc = cli_parse_options(ctx, argc, argv, opts, console_option, &a, false);
    if (rc == CLI_OK)
        rc = parse_listen(ctx, c, a.listen);
    if (rc == CLI_OK && c->n_services == 0)
        rc = cli_usage_error(ctx, "give at least one --service NAME=DATABASE_URL");
    if (rc != CLI_OK)
        return rc;
    if (c->broker_url == NULL || c->broker_url[0] == '\0')
        c->broker_url = ctx->broker_url;
    const char *token = getenv("TXMSG_CONSOLE_TOKEN");
    if (token != NULL && strlen(token) > CONSOLE_TOKEN_MAX)
        return cli_usage_error(ctx, "TXMSG_CONSOLE_TOKEN is longer than %d bytes",
                               CONSOLE_TOKEN_MAX);
    c->has_token = token != NULL && token[0] != '\0';
    snprintf(c->token, sizeof c->token, "%s", c->has_token ? token : "");
    return CLI_OK;
}

/* ---- run ---- */

static txm_status add_routes(console *c, txm_error *err)
{
    txm_status st = console_api_overview_routes(c, err);
    if (st == TXM_OK)
        st = console_api_outbox_routes(c, err);
    if (st == TXM_OK)
        st = console_api_dlq_routes(c, err);
    if (st == TXM_OK)
        st = console_api_jobs_routes(c, err);
    if (st == TXM_OK)
        st = console_assets_routes(c, err);
    return st;
}

static txm_status serve(console *c, txm_error *err)
{
    txm_http_options o;
    txm_http_options_init(&o);
    o.bind_address = c->listen_host;
    o.port = c->port;
    o.metrics_endpoint = false;
    o.logger = &c->logger;
    o.shutdown_timeout_ms = 2000;
    txm_status st = txm_http_server_open(&o, &c->srv, err);
    if (st == TXM_OK)
        st = add_routes(c, err);
    if (st == TXM_OK)
        st = txm_http_server_start(c->srv, err);
    if (st == TXM_OK)
        c->port = txm_http_server_port(c->srv);
    return st;
}

static void console_close(console *c)
{
    txm_http_server_close(c->srv);
    console_jobs_stop(c);
    console_sampler_stop(c);
    for (size_t i = 0; i < c->n_services; i++)
        txm_db_close(c->services[i].db);
    txm_transport_close(c->t);
    free(c->ring);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
}

int cli_console(cli_ctx *ctx, int argc, char **argv)
{
    cli_begin(ctx, "console", CONSOLE_USAGE);
    console *c = calloc(1, sizeof *c);
    if (c == NULL)
        return cli_fail(ctx, "out of memory");
    c->interval_ms = 2000;
    int rc = parse_console(ctx, argc, argv, c);
    if (rc != CLI_OK) {
        free(c);
        return rc;
    }
    txm_logger_init(&c->logger, "txmsg-console");
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    c->ring = calloc(CONSOLE_SAMPLES, sizeof *c->ring);
    txm_error err = {0};
    txm_status st = c->ring != NULL ? TXM_OK : txm_errf(&err, TXM_NOMEM, "out of memory");
    if (st == TXM_OK) {
        console_connect(c);
        st = console_sampler_start(c, &err);
    }
    if (st == TXM_OK)
        st = serve(c, &err);
    if (st == TXM_OK) {
        txm_log_write(&c->logger, TXM_LOG_INFO, NULL,
                      "console: serving on http://%s%s%s:%u/ (%zu services, actions %s)",
                      strchr(c->listen_host, ':') != NULL ? "[" : "", c->listen_host,
                      strchr(c->listen_host, ':') != NULL ? "]" : "", (unsigned)c->port,
                      c->n_services,
                      !c->has_token  ? "disabled"
                      : c->read_only ? "read-only"
                                     : "enabled");
        while (!*ctx->stop)
            cli_sleep_ms(ctx, 200);
        txm_log_write(&c->logger, TXM_LOG_INFO, NULL, "console: stopping");
    }
    console_close(c);
    free(c);
    if (st != TXM_OK)
        return cli_fail(ctx, "%s", err.text);
    return CLI_OK;
}
