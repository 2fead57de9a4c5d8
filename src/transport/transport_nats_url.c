/* The NATS transport's URL: a list of servers, any of which the client may
 * connect and fail over to, and options after '?' for the whole list.
 *
 *   nats://SERVER[,SERVER...][?replicas=N]
 *   SERVER = [nats://][user[:password]@]host[:port]   (host may be [IPv6])
 *
 * libnats 3.4 reads one URL in natsOptions_SetURL (a comma list there
 * becomes one bad host name, and every connect fails with "No server
 * available for connection"), so the list is split here and handed over
 * with natsOptions_SetServers. Nothing is percent-decoded: a password with
 * ',', '/', '?', '#' or '@' cannot be given here. Errors name a server by
 * its host and port only, never its password. */
#include <stdio.h>
#include <string.h>

#include "transport/transport_nats_int.h"

#define SCHEME "nats://"

static bool is_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Checks "host[:port]" (after any user info) and returns NULL when it is
 * well formed, else what is wrong with it. */
static const char *hostport_problem(const char *s, size_t len)
{
    const char *host_end = NULL;
    if (len > 0 && s[0] == '[') {
        host_end = memchr(s, ']', len);
        if (host_end == NULL || host_end == s + 1)
            return "an IPv6 host needs [address]";
        host_end++;
    } else {
        host_end = memchr(s, ':', len);
        if (host_end == NULL)
            host_end = s + len;
        if (host_end == s)
            return "no host";
    }
    size_t rest = len - (size_t)(host_end - s);
    if (rest == 0)
        return NULL; /* libnats' default port, 4222 */
    if (host_end[0] != ':' || !is_digits(host_end + 1, rest - 1) || rest - 1 > 5)
        return "the port must be a number after one ':'";
    unsigned port = 0;
    for (size_t i = 1; i < rest; i++)
        port = port * 10 + (unsigned)(host_end[i] - '0');
    return port >= 1 && port <= 65535 ? NULL : "the port must be 1..65535";
}

/* Checks one server of the list (s, len bytes) and stores it with its
 * scheme in out->servers. */
static txm_status add_server(const char *s, size_t len, txm__nats_url *out, txm_error *err)
{
    if (len >= strlen(SCHEME) && strncmp(s, SCHEME, strlen(SCHEME)) == 0) {
        s += strlen(SCHEME);
        len -= strlen(SCHEME);
    }
    if (len == 0)
        return txm_errf(err, TXM_INVALID, "nats: URL: server %d of the list is empty",
                        out->count + 1);
    if (out->count == URL_SERVERS_MAX)
        return txm_errf(err, TXM_INVALID, "nats: URL: more than %d servers", URL_SERVERS_MAX);
    if (len + strlen(SCHEME) >= URL_SERVER_MAX)
        return txm_errf(err, TXM_INVALID, "nats: URL: server %d is longer than %d bytes",
                        out->count + 1, URL_SERVER_MAX - 1);
    const char *at = NULL;
    for (const char *p = s; p < s + len; p++)
        if (*p == '@')
            at = p;
    const char *hp = at != NULL ? at + 1 : s;
    int hplen = (int)(len - (size_t)(hp - s));
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '/' || s[i] == '#' || s[i] == 0x7f)
            return txm_errf(err, TXM_INVALID,
                            "nats: URL: server %d (%.*s) has a space, '/' or '#' (want "
                            "nats://host:port,host:port,...)",
                            out->count + 1, hplen, hp);
    const char *problem = hostport_problem(hp, (size_t)hplen);
    if (problem != NULL)
        return txm_errf(err, TXM_INVALID, "nats: URL: server %d (%.*s): %s", out->count + 1, hplen,
                        hp, problem);
    snprintf(out->servers[out->count++], URL_SERVER_MAX, "%s%.*s", SCHEME, (int)len, s);
    return TXM_OK;
}

/* Reads one "key=value" option (s, len bytes). */
static txm_status add_option(const char *s, size_t len, txm__nats_url *out, txm_error *err)
{
    const char *eq = memchr(s, '=', len);
    size_t klen = eq != NULL ? (size_t)(eq - s) : len;
    const char *v = eq != NULL ? eq + 1 : s + len;
    size_t vlen = len - klen - (eq != NULL);
    if (klen == strlen("replicas") && strncmp(s, "replicas", klen) == 0) {
        if (vlen != 1 || v[0] < '1' || v[0] > '5')
            return txm_errf(err, TXM_INVALID,
                            "nats: URL: replicas=%.*s: want 1..5 (3 for a 3-node cluster)",
                            (int)(vlen > 16 ? 16 : vlen), v);
        out->replicas = v[0] - '0';
        return TXM_OK;
    }
    return txm_errf(err, TXM_INVALID, "nats: URL: unknown option '%.*s' (known: replicas=N)",
                    (int)(klen > 64 ? 64 : klen), s);
}

txm_status txm__nats_url_parse(const char *url, txm__nats_url *out, txm_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n = strnlen(url, URL_MAX + 1);
    if (n > URL_MAX)
        return txm_errf(err, TXM_INVALID, "nats: URL longer than %d bytes", URL_MAX);
    if (strncmp(url, SCHEME, strlen(SCHEME)) != 0)
        return txm_errf(err, TXM_INVALID, "nats: URL must start with nats://");
    const char *list = url + strlen(SCHEME);
    const char *query = strchr(list, '?');
    const char *end = query != NULL ? query : url + n;
    txm_status st = TXM_OK;
    for (const char *p = list; st == TXM_OK;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        st = add_server(p, (size_t)(stop - p), out, err);
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    for (const char *p = query != NULL ? query + 1 : NULL; st == TXM_OK && p != NULL;) {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        st = len > 0 ? add_option(p, len, out, err)
                     : txm_errf(err, TXM_INVALID, "nats: URL: empty option after '?' or '&'");
        p = amp != NULL ? amp + 1 : NULL;
    }
    return st;
}

void txm__nats_url_show(const txm__nats_url *u, char *out, size_t len)
{
    size_t used = 0;
    if (len == 0)
        return;
    out[0] = '\0';
    for (int i = 0; i < u->count && used < len; i++) {
        const char *host = u->servers[i] + strlen(SCHEME);
        const char *at = strrchr(host, '@');
        if (at != NULL)
            host = at + 1;
        int n = snprintf(out + used, len - used, "%s%s", i > 0 ? "," : "", host);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}
