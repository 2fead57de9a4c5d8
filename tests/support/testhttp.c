/* A minimal HTTP/1.1 client for tests: one request per non-blocking socket,
 * every wait bounded by one deadline, responses framed by Content-Length,
 * chunked encoding or the end of the connection (RFC 9112 section 6). */
#include "testhttp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Raw bytes of one response: a chunked body's framing is counted too. */
#define RAW_MAX (TXM_TESTHTTP_HEAD_MAX + TXM_TESTHTTP_BODY_MAX + (1u << 20))

typedef struct conn {
    int fd;
    long long deadline_ms; /* CLOCK_MONOTONIC */
    char *buf;             /* received bytes not yet consumed start at pos */
    size_t len, pos, cap;
    bool eof;
    txm_testhttp_response *r;
} conn;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->r->error, sizeof c->r->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* Waits for events on the socket until the deadline: >0 ready, 0 timeout. */
static int wait_fd(conn *c, short events, short *revents)
{
    for (;;) {
        long long left = c->deadline_ms - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        *revents = p.revents;
        if (n > 0)
            return 1;
    }
}

static int open_conn(conn *c, const char *host, int port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, service, &hints, &ai);
    if (gai != 0)
        return fail(c, "resolve %s: %s", host, gai_strerror(gai));
    int rc = fail(c, "connect %s:%d: no address", host, port);
    for (struct addrinfo *a = ai; a != NULL && rc != 0; a = a->ai_next) {
        c->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            continue;
        int err = connect(c->fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            short rev = 0;
            socklen_t len = sizeof err;
            if (wait_fd(c, POLLOUT, &rev) <= 0)
                err = ETIMEDOUT;
            else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
        }
        if (err == 0) {
            rc = 0;
            c->r->error[0] = '\0';
        } else {
            rc = fail(c, "connect %s:%d: %s", host, port, strerror(err));
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(ai);
    return rc;
}

/* Sends len bytes. Stops early, without error, when the server has already
 * answered or closed: its answer is what the caller wants to read. */
static int send_all(conn *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return fail(c, "send: %s", strerror(errno));
        short rev = 0;
        int w = wait_fd(c, POLLOUT | POLLIN, &rev);
        if (w == 0)
            return fail(c, "send: timed out");
        if (w < 0)
            return fail(c, "poll: %s", strerror(errno));
        if (rev & (POLLIN | POLLHUP | POLLERR))
            return 0;
    }
    return 0;
}

/* Reads more bytes into the buffer: 1 got some, 0 end of stream, -1 error. */
static int fill(conn *c)
{
    if (c->eof)
        return 0;
    if (c->len == c->cap) {
        if (c->cap >= RAW_MAX)
            return fail(c, "response over %u bytes", (unsigned)RAW_MAX);
        size_t cap = c->cap == 0 ? 16384 : c->cap * 2;
        if (cap > RAW_MAX)
            cap = RAW_MAX;
        char *b = realloc(c->buf, cap + 1);
        if (b == NULL)
            return fail(c, "out of memory");
        c->buf = b;
        c->cap = cap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            return 1;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET) { /* after the answer, as with a 413 and unread body */
            c->eof = true;
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return fail(c, "recv: %s", strerror(errno));
        short rev = 0;
        int w = wait_fd(c, POLLIN, &rev);
        if (w == 0)
            return fail(c, "timed out waiting for the response");
        if (w < 0)
            return fail(c, "poll: %s", strerror(errno));
    }
}

/* Returns the offset of the next CRLF at or after pos, reading more as
 * needed but at most limit bytes ahead; -1 on failure. */
static long find_crlf(conn *c, size_t limit)
{
    size_t from = c->pos;
    for (;;) {
        for (size_t i = from; i + 1 < c->len; i++)
            if (c->buf[i] == '\r' && c->buf[i + 1] == '\n')
                return (long)i;
        if (c->len - c->pos > limit)
            return fail(c, "line over %zu bytes", limit);
        from = c->len > c->pos ? c->len - 1 : c->pos;
        int got = fill(c);
        if (got <= 0)
            return got == 0 ? fail(c, "connection closed in the middle of a line") : -1;
    }
}

/* Splits the head (status line and header lines, without the blank line)
 * in place into r. */
static int parse_head(conn *c, char *head)
{
    txm_testhttp_response *r = c->r;
    int minor = 0, status = 0, used = 0;
    if (sscanf(head, "HTTP/1.%d %3d%n", &minor, &status, &used) != 2 || status < 100 ||
        status > 999 || (head[used] != ' ' && head[used] != '\r' && head[used] != '\0'))
        return fail(c, "bad status line: %.80s", head);
    r->status = status;
    r->n_headers = 0;
    char *line = strstr(head, "\r\n");
    if (line != NULL) {
        *line = '\0';
        line += 2;
    }
    while (line != NULL) {
        char *next = strstr(line, "\r\n");
        if (next != NULL) {
            *next = '\0';
            next += 2;
        }
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            return fail(c, "bad header line: %.80s", line);
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vlen = strlen(v);
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            v[--vlen] = '\0';
        if (r->n_headers < TXM_TESTHTTP_HEADERS_MAX)
            r->headers[r->n_headers++] = (txm_testhttp_header){line, v};
        line = next;
    }
    return 0;
}

/* Reads one head (status line up to the blank line) into r->head. */
static int read_head(conn *c)
{
    size_t start = c->pos;
    for (;;) {
        char *sep = c->len > start ? strstr(c->buf + start, "\r\n\r\n") : NULL;
        if (sep != NULL) {
            size_t head_len = (size_t)(sep - (c->buf + start));
            free(c->r->head);
            c->r->head = malloc(head_len + 1);
            if (c->r->head == NULL)
                return fail(c, "out of memory");
            memcpy(c->r->head, c->buf + start, head_len);
            c->r->head[head_len] = '\0';
            c->pos = start + head_len + 4;
            return parse_head(c, c->r->head);
        }
        if (c->len - start > TXM_TESTHTTP_HEAD_MAX)
            return fail(c, "response head over %u bytes", (unsigned)TXM_TESTHTTP_HEAD_MAX);
        int got = fill(c);
        if (got <= 0)
            return got == 0 ? fail(c, "connection closed before a complete response head") : -1;
    }
}

/* Appends n bytes at the buffer position to the body, consuming them. */
static int take_body(conn *c, size_t n)
{
    txm_testhttp_response *r = c->r;
    if (r->body_len + n > TXM_TESTHTTP_BODY_MAX)
        return fail(c, "response body over %u bytes", (unsigned)TXM_TESTHTTP_BODY_MAX);
    while (c->len - c->pos < n) {
        int got = fill(c);
        if (got <= 0)
            return got == 0 ? fail(c, "connection closed inside the body") : -1;
    }
    char *b = realloc(r->body, r->body_len + n + 1);
    if (b == NULL)
        return fail(c, "out of memory");
    r->body = b;
    memcpy(r->body + r->body_len, c->buf + c->pos, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    c->pos += n;
    return 0;
}

static int read_chunked(conn *c)
{
    for (;;) {
        long eol = find_crlf(c, 1024);
        if (eol < 0)
            return -1;
        char *end = NULL;
        errno = 0;
        unsigned long long size = strtoull(c->buf + c->pos, &end, 16);
        if (end == c->buf + c->pos || errno != 0 || (*end != ';' && *end != '\r' && *end != ' '))
            return fail(c, "bad chunk size line");
        if (size > TXM_TESTHTTP_BODY_MAX)
            return fail(c, "chunk of %llu bytes over the body limit", size);
        c->pos = (size_t)eol + 2;
        if (size == 0)
            break;
        if (take_body(c, (size_t)size) != 0)
            return -1;
        eol = find_crlf(c, 2);
        if (eol < 0 || (size_t)eol != c->pos)
            return eol < 0 ? -1 : fail(c, "chunk not followed by CRLF");
        c->pos += 2;
    }
    /* Trailer fields, up to the blank line. */
    for (;;) {
        long eol = find_crlf(c, TXM_TESTHTTP_HEAD_MAX);
        if (eol < 0)
            return -1;
        bool blank = (size_t)eol == c->pos;
        c->pos = (size_t)eol + 2;
        if (blank)
            return 0;
    }
}

static int read_body(conn *c, const char *method)
{
    txm_testhttp_response *r = c->r;
    r->body = calloc(1, 1);
    if (r->body == NULL)
        return fail(c, "out of memory");
    if (strcmp(method, "HEAD") == 0 || r->status == 204 || r->status == 304)
        return 0;
    const char *te = txm_testhttp_header_get(r, "Transfer-Encoding");
    if (te != NULL && strcasestr(te, "chunked") != NULL)
        return read_chunked(c);
    const char *cl = txm_testhttp_header_get(r, "Content-Length");
    if (cl != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || *end != '\0' || errno != 0 || cl[0] == '-')
            return fail(c, "bad Content-Length: %s", cl);
        if (n > TXM_TESTHTTP_BODY_MAX)
            return fail(c, "Content-Length %llu over the body limit", n);
        return take_body(c, (size_t)n);
    }
    /* No framing: the body ends with the connection. */
    for (;;) {
        if (take_body(c, c->len - c->pos) != 0)
            return -1;
        int got = fill(c);
        if (got < 0)
            return -1;
        if (got == 0)
            return take_body(c, c->len - c->pos);
    }
}

static int send_request(conn *c, const char *method, const char *host, const char *path,
                        const char *const *headers, const char *body, size_t body_len)
{
    size_t cap = 1024 + strlen(method) + strlen(path) + strlen(host);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        cap += strlen(headers[i]) + 2;
    char *head = malloc(cap);
    if (head == NULL)
        return fail(c, "out of memory");
    /* A "Host: ..." among the headers replaces the default one (host alone). */
    bool own_host = false;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        own_host = own_host || strncasecmp(headers[i], "Host:", 5) == 0;
    int n = own_host ? snprintf(head, cap, "%s %s HTTP/1.1\r\nConnection: close\r\n", method, path)
                     : snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n",
                                method, path, host);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        n += snprintf(head + n, cap - (size_t)n, "%s\r\n", headers[i]);
    if (body != NULL)
        n += snprintf(head + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, cap - (size_t)n, "\r\n");
    int rc = send_all(c, head, (size_t)n);
    free(head);
    if (rc == 0 && body != NULL)
        rc = send_all(c, body, body_len);
    return rc;
}

int txm_testhttp_request(const char *method, const char *host, int port, const char *path,
                         const char *const *headers, const char *body, size_t body_len,
                         int timeout_ms, txm_testhttp_response *r)
{
    if (r == NULL)
        return -1;
    memset(r, 0, sizeof *r);
    conn c = {.fd = -1, .deadline_ms = now_ms() + timeout_ms, .r = r};
    if (method == NULL || host == NULL || path == NULL || port <= 0 || port > 65535)
        return fail(&c, "bad arguments");
    int rc = open_conn(&c, host, port);
    if (rc == 0)
        rc = send_request(&c, method, host, path, headers, body, body_len);
    /* Interim answers (100 Continue, 103 Early Hints) precede the real one. */
    do {
        if (rc == 0)
            rc = read_head(&c);
    } while (rc == 0 && r->status >= 100 && r->status < 200 && r->status != 101);
    if (rc == 0)
        rc = read_body(&c, method);
    if (c.fd >= 0)
        close(c.fd);
    free(c.buf);
    return rc;
}

const char *txm_testhttp_header_get(const txm_testhttp_response *r, const char *name)
{
    for (size_t i = 0; r != NULL && i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

void txm_testhttp_response_fini(txm_testhttp_response *r)
{
    if (r == NULL)
        return;
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}
