/* Test support: a minimal HTTP/1.1 client over plain sockets, for suites
 * that speak to services as their users do. One request per connection. */
#ifndef TXM_TESTHTTP_H
#define TXM_TESTHTTP_H

#include <stddef.h>

#define TXM_TESTHTTP_HEAD_MAX (64u << 10) /* bytes of a response's status line and headers */
#define TXM_TESTHTTP_BODY_MAX (16u << 20) /* bytes of a response body, after de-chunking */
#define TXM_TESTHTTP_HEADERS_MAX 64       /* response headers kept; later ones are dropped */

typedef struct txm_testhttp_header {
    const char *name;  /* as sent; NUL-terminated */
    const char *value; /* without surrounding blanks; NUL-terminated */
} txm_testhttp_header;

/* A response, filled by txm_testhttp_request and released with
 * txm_testhttp_response_fini. */
typedef struct txm_testhttp_response {
    int status;                                            /* e.g. 200 */
    txm_testhttp_header headers[TXM_TESTHTTP_HEADERS_MAX]; /* borrow from head */
    size_t n_headers;
    char *body;      /* NUL-terminated; "" when empty; never NULL after success */
    size_t body_len; /* bytes, without the NUL */
    char *head;      /* the received head, split in place; owned */
    char error[256]; /* why the request failed; "" on success */
} txm_testhttp_response;

/* Sends one request to host:port (a name or an address literal) on a new
 * connection with "Connection: close": method, path (with any query
 * string), extra headers (NULL-terminated array of "Name: value", may be
 * NULL; a "Host: ..." among them replaces the default "Host: host"), and
 * body_len bytes of body (may be NULL; Content-Length is sent whenever body
 * is not NULL). Reads the answer framed by Content-Length, chunked transfer
 * encoding, or the end of the connection; interim 1xx answers are skipped.
 * When the server answers before it has read the whole body (413) the rest
 * is not sent and its answer is still read. timeout_ms bounds the whole
 * exchange.
 * Returns 0 with *r filled, or -1 with r->error saying why (no connection,
 * timeout, malformed answer, head or body past its limit). Owns: *r's
 * buffers are the caller's (txm_testhttp_response_fini), on both paths.
 * Thread: any; requests from several threads at once are independent. */
int txm_testhttp_request(const char *method, const char *host, int port, const char *path,
                         const char *const *headers, const char *body, size_t body_len,
                         int timeout_ms, txm_testhttp_response *r);

/* The value of the first header called name (case-insensitive), or NULL.
 * Borrows: valid until r is released. */
const char *txm_testhttp_header_get(const txm_testhttp_response *r, const char *name);

/* Frees what r holds and clears it. NULL-safe; safe twice. */
void txm_testhttp_response_fini(txm_testhttp_response *r);

#endif
