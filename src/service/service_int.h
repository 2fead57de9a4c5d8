/* Internal helpers of the service runtime in src/service: route matching,
 * percent-decoding, UTF-8 handling and structured log lines. */
#ifndef TXM_SERVICE_SERVICE_INT_H
#define TXM_SERVICE_SERVICE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "txmsg/app.h"
#include "txmsg/service.h"

/* ---- route.c: pure functions, no allocation ---- */

typedef struct txm__route_capture {
    char name[TXM_HTTP_PARAM_NAME_MAX + 1];   /* without the ':' */
    char value[TXM_HTTP_PARAM_VALUE_MAX + 1]; /* percent-decoded */
} txm__route_capture;

typedef struct txm__route_params {
    int count; /* entries used in p */
    txm__route_capture p[TXM_HTTP_PARAMS_MAX];
} txm__route_params;

/* Checks a pattern: "/" or "/seg/seg...", each segment a literal of URL
 * path characters (no '%', '?', '#', not starting with ':') or ":name" with
 * name [A-Za-z_][A-Za-z0-9_]* of at most TXM_HTTP_PARAM_NAME_MAX bytes;
 * at most TXM_HTTP_PATTERN_MAX bytes, TXM_HTTP_PARAMS_MAX parameters, no
 * name twice. Returns TXM_OK (*param_count, may be NULL, set) or TXM_INVALID. */
txm_status txm__route_check_pattern(const char *pattern, int *param_count, txm_error *err);

/* Checks a raw request path: starts with '/', at most TXM_HTTP_PATH_MAX
 * bytes (else TXM_TOO_BIG), every '%' followed by two hex digits and none
 * encoding NUL (else TXM_INVALID). */
txm_status txm__route_check_path(const char *path, txm_error *err);

/* Matches a path accepted by txm__route_check_path against a pattern accepted
 * by txm__route_check_pattern, segment by segment, each path segment
 * percent-decoded before it is compared or captured. Returns true and fills
 * out (may be NULL) on a match; false when a segment differs, the segment
 * counts differ (a trailing slash adds an empty segment, which matches
 * nothing), or a value decodes to more than TXM_HTTP_PARAM_VALUE_MAX bytes. */
bool txm__route_match(const char *pattern, const char *path, txm__route_params *out);

/* The value of parameter name in p, or NULL. */
const char *txm__route_param(const txm__route_params *p, const char *name);

/* Percent-decodes len bytes of s into out (cap bytes, NUL added), with '+'
 * as a space when plus_is_space (query strings). Returns the decoded length,
 * or -1 for a malformed escape, an encoded NUL, or output past cap - 1. */
long txm__pct_decode(const char *s, size_t len, bool plus_is_space, char *out, size_t cap);

/* ---- log.c ---- */

/* Length of the longest prefix of s[0..len) that is valid UTF-8 (RFC 3629:
 * no overlongs, surrogates or code points past U+10FFFF). */
size_t txm__utf8_valid_prefix(const char *s, size_t len);

/* A JSON string of len bytes of s, with every invalid UTF-8 byte replaced
 * by U+FFFD. Owns: the result is the caller's (json_decref); NULL when out of
 * memory. */
json_t *txm__json_string_lossy(const char *s, size_t len);

/* Writes one log line as txm_log_write does, with msg taken verbatim and
 * the members of fields (a JSON object, may be NULL) added after the
 * standard ones. Borrows: fields. Thread: any. */
void txm__log_fields(const txm_logger *lg, int level, const char *correlation_id, const char *msg,
                     const json_t *fields);

/* ---- http.c: requests built without libmicrohttpd ---- */

/* One header or query argument; strings NUL-terminated. */
typedef struct txm__http_field {
    const char *name;
    const char *value; /* a query argument's raw text (not unescaped); NULL for "?a" */
} txm__http_field;

/* A request as MHD would hand it over, for fuzzing the request handling
 * without sockets. */
typedef struct txm__http_input {
    const char *method; /* as sent, e.g. "GET" */
    const char *path;   /* raw request path, without the query */
    const txm__http_field *headers;
    size_t header_count;
    const txm__http_field *query;
    size_t query_count;
    const char *body; /* body_len bytes, any bytes; may be NULL when body_len is 0 */
    size_t body_len;
} txm__http_input;

/* The answer a request got. */
typedef struct txm__http_output {
    int status;
    const char *content_type; /* static text */
    char *body;               /* owned: free(); NULL when empty */
    size_t body_len;
    char allow[136]; /* the Allow header of a 405, or "" */
} txm__http_output;

/* Runs in from route matching to the answer exactly as a request that came
 * through libmicrohttpd (built-in paths, routes, handler, 500 when the
 * handler answered nothing, log line and metrics), on the calling thread;
 * srv need not be started. Returns TXM_OK with *out filled, TXM_INVALID,
 * TXM_NOMEM. Borrows: in, during the call. Owns: out->body is the caller's. */
txm_status txm__http_serve_input(txm_http_server *srv, const txm__http_input *in,
                                 txm__http_output *out, txm_error *err);

/* ---- app.c ---- */

/* The app's HTTP server. Borrows: valid while app lives. */
txm_http_server *txm__app_http(const txm_app *app);

#endif
