/* Route patterns ("/order/:id/cancel") and their matching against request
 * paths, with percent-decoding. Pure functions: no allocation, no state.
 *
 * Decoding policy: a path is split on '/' first and each segment is then
 * percent-decoded, so "%2F" inside a segment is a slash in a parameter value
 * and never a separator (RFC 3986 section 2.2). Literal segments are compared
 * after decoding, so "/ord%65r" matches "/order". Malformed escapes and
 * "%00" make the whole path invalid (the server answers 400). */
#include "service/service_int.h"

#include <string.h>

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 pchar without pct-encoded: unreserved, sub-delims, ':' and '@'. */
static bool is_literal_char(char c)
{
    return is_alpha_(c) || is_digit(c) || (c != '\0' && strchr("-.~!$&'()*+,;=:@", c) != NULL);
}

long txm__pct_decode(const char *s, size_t len, bool plus_is_space, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    if (cap == 0)
        return -1;
    out[n] = '\0';
    return (long)n;
}

/* Checks one ":name" segment of len bytes (after the colon). */
static bool param_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > TXM_HTTP_PARAM_NAME_MAX || !is_alpha_(name[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alpha_(name[i]) && !is_digit(name[i]))
            return false;
    return true;
}

/* True if the parameter name at seg (len bytes, just after the ':') is
 * also the name of an earlier ":name" segment of pattern. */
static bool param_seen(const char *pattern, const char *seg, size_t len)
{
    const char *own = seg - 2; /* the '/' that starts this segment */
    for (const char *p = pattern; p < own; p++) {
        if (p[0] == '/' && p[1] == ':' && strncmp(p + 2, seg, len) == 0 && p[2 + len] == '/')
            return true;
    }
    return false;
}

txm_status txm__route_check_pattern(const char *pattern, int *param_count, txm_error *err)
{
    if (pattern == NULL || pattern[0] != '/')
        return txm_errf(err, TXM_INVALID, "route: pattern must start with '/'");
    size_t total = strlen(pattern);
    if (total > TXM_HTTP_PATTERN_MAX)
        return txm_errf(err, TXM_INVALID, "route: pattern longer than %d bytes",
                        TXM_HTTP_PATTERN_MAX);
    int params = 0;
    const char *p = pattern + 1;
    while (total > 1) {
        size_t len = strcspn(p, "/");
        if (len == 0)
            return txm_errf(err, TXM_INVALID, "route: empty segment in \"%s\"", pattern);
        if (p[0] == ':') {
            if (!param_name_ok(p + 1, len - 1))
                return txm_errf(err, TXM_INVALID, "route: bad parameter name in \"%s\"", pattern);
            if (param_seen(pattern, p + 1, len - 1))
                return txm_errf(err, TXM_INVALID, "route: parameter repeated in \"%s\"", pattern);
            if (++params > TXM_HTTP_PARAMS_MAX)
                return txm_errf(err, TXM_INVALID, "route: more than %d parameters",
                                TXM_HTTP_PARAMS_MAX);
        } else {
            for (size_t i = 0; i < len; i++)
                if (!is_literal_char(p[i]))
                    return txm_errf(err, TXM_INVALID, "route: bad character in \"%s\"", pattern);
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    if (param_count != NULL)
        *param_count = params;
    return TXM_OK;
}

txm_status txm__route_check_path(const char *path, txm_error *err)
{
    if (path == NULL || path[0] != '/')
        return txm_errf(err, TXM_INVALID, "path must start with '/'");
    size_t len = strnlen(path, TXM_HTTP_PATH_MAX + 1);
    if (len > TXM_HTTP_PATH_MAX)
        return txm_errf(err, TXM_TOO_BIG, "path longer than %d bytes", TXM_HTTP_PATH_MAX);
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '%')
            continue;
        int hi = i + 1 < len ? hex_value(path[i + 1]) : -1;
        int lo = hi >= 0 && i + 2 < len ? hex_value(path[i + 2]) : -1;
        if (lo < 0)
            return txm_errf(err, TXM_INVALID, "malformed percent-encoding in path");
        if (hi == 0 && lo == 0)
            return txm_errf(err, TXM_INVALID, "percent-encoded NUL in path");
        i += 2;
    }
    return TXM_OK;
}

/* Compares or captures one segment: pseg (plen bytes of the pattern) against
 * sseg (slen raw bytes of the path). */
static bool match_segment(const char *pseg, size_t plen, const char *sseg, size_t slen,
                          txm__route_params *out)
{
    char value[TXM_HTTP_PARAM_VALUE_MAX + 1];
    if (slen == 0)
        return false;
    long n = txm__pct_decode(sseg, slen, false, value, sizeof value);
    if (n <= 0)
        return false;
    if (pseg[0] != ':')
        return (size_t)n == plen && memcmp(value, pseg, plen) == 0;
    if (out != NULL && out->count < TXM_HTTP_PARAMS_MAX) {
        txm__route_capture *p = &out->p[out->count++];
        memcpy(p->name, pseg + 1, plen - 1); /* plen - 1 <= TXM_HTTP_PARAM_NAME_MAX */
        p->name[plen - 1] = '\0';
        memcpy(p->value, value, (size_t)n + 1);
    }
    return true;
}

bool txm__route_match(const char *pattern, const char *path, txm__route_params *out)
{
    if (out != NULL)
        out->count = 0;
    if (pattern == NULL || path == NULL || pattern[0] != '/' || path[0] != '/')
        return false;
    if (pattern[1] == '\0')
        return path[1] == '\0';
    const char *p = pattern + 1;
    const char *s = path + 1;
    for (;;) {
        size_t plen = strcspn(p, "/");
        size_t slen = strcspn(s, "/");
        if (!match_segment(p, plen, s, slen, out))
            return false;
        bool p_end = p[plen] == '\0';
        bool s_end = s[slen] == '\0';
        if (p_end || s_end)
            return p_end && s_end;
        p += plen + 1;
        s += slen + 1;
    }
}

const char *txm__route_param(const txm__route_params *p, const char *name)
{
    if (p == NULL || name == NULL)
        return NULL;
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->p[i].name, name) == 0)
            return p->p[i].value;
    return NULL;
}
