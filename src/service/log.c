/* JSON log lines: one object per line, built with jansson so every value is
 * escaped correctly, written with a single fwrite.
 *
 * Thread safety: a txm_logger is read-only once filled. Each line is built
 * in a private buffer and written with one fwrite, which holds the stream's
 * lock (POSIX flockfile semantics), so lines from concurrent threads never
 * interleave within the process. */
#include "service/service_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "txmsg/message.h"

void txm_logger_init(txm_logger *lg, const char *service)
{
    if (lg == NULL)
        return;
    memset(lg, 0, sizeof *lg);
    const char *name = service != NULL ? service : "txmsg";
    size_t len = strnlen(name, TXM_LOG_SERVICE_MAX);
    len = txm__utf8_valid_prefix(name, len); /* never cut a character in half */
    memcpy(lg->service, name, len);
    lg->service[len] = '\0';
    lg->stream = NULL;
    lg->min_level = TXM_LOG_INFO;
}

/* Length of the UTF-8 sequence starting at s (at most len bytes), or 0 if it
 * is not a valid one. */
static size_t utf8_char_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (n == 0 || n > len)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    /* Second-byte ranges exclude overlongs (E0, F0), surrogates (ED) and
     * code points past U+10FFFF (F4), RFC 3629 section 4. */
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return n;
}

size_t txm__utf8_valid_prefix(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_char_len(u + i, len - i);
        if (n == 0)
            break;
        i += n;
    }
    return i;
}

json_t *txm__json_string_lossy(const char *s, size_t len)
{
    if (txm__utf8_valid_prefix(s, len) == len)
        return json_stringn(s, len);
    /* Each invalid byte becomes the 3-byte U+FFFD. */
    char *buf = txm__malloc(len * 3 + 1);
    if (buf == NULL)
        return NULL;
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        size_t ok = txm__utf8_valid_prefix(s + i, len - i);
        memcpy(buf + n, s + i, ok);
        n += ok;
        i += ok;
        if (i < len) {
            memcpy(buf + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        }
    }
    json_t *j = json_stringn(buf, n);
    free(buf);
    return j;
}

static const char *level_name(int level)
{
    switch (level) {
    case TXM_LOG_DEBUG:
        return "debug";
    case TXM_LOG_INFO:
        return "info";
    case TXM_LOG_WARN:
        return "warn";
    default:
        return level < TXM_LOG_DEBUG ? "debug" : "error";
    }
}

/* Sets key in obj to a lossy string of s; ignores a NULL s. Returns false
 * when out of memory. */
static bool set_text(json_t *obj, const char *key, const char *s)
{
    if (s == NULL)
        return true;
    return json_object_set_new(obj, key, txm__json_string_lossy(s, strlen(s))) == 0;
}

/* Builds the standard members of a line. Owns: the result (json_decref). */
static json_t *build_line(const txm_logger *lg, int level, const char *correlation_id,
                          const char *msg)
{
    char ts[TXM_TIME_LEN + 1];
    txm_time_format(txm_now_us(), ts);
    json_t *line = json_object();
    bool ok = line != NULL;
    ok = ok && set_text(line, "ts", ts);
    ok = ok && set_text(line, "level", level_name(level));
    ok = ok && set_text(line, "service", lg->service);
    ok = ok && set_text(line, "msg", msg);
    ok = ok && set_text(line, "correlation_id", correlation_id);
    if (!ok) {
        json_decref(line);
        return NULL;
    }
    return line;
}

/* Reals with 15 significant digits, not jansson's 17: a value rounded to a
 * few decimals (duration_ms) prints as written, not as 0.30099999999999999. */
#define LOG_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Serialises line plus a newline and writes it in one fwrite. */
static void emit(const txm_logger *lg, const json_t *line)
{
    size_t need = json_dumpb(line, NULL, 0, LOG_DUMP_FLAGS);
    if (need == 0)
        return;
    char *buf = txm__malloc(need + 1);
    if (buf == NULL)
        return;
    size_t n = json_dumpb(line, buf, need, LOG_DUMP_FLAGS);
    if (n == need) {
        buf[n] = '\n';
        FILE *f = lg->stream != NULL ? (FILE *)lg->stream : stderr;
        fwrite(buf, 1, n + 1, f);
        fflush(f);
    }
    free(buf);
}

void txm__log_fields(const txm_logger *lg, int level, const char *correlation_id, const char *msg,
                     const json_t *fields)
{
    if (lg == NULL || level < lg->min_level)
        return;
    json_t *line = build_line(lg, level, correlation_id, msg != NULL ? msg : "");
    if (line == NULL)
        return;
    const char *key = NULL;
    json_t *value = NULL;
    /* json_object_foreach takes a non-const object; fields is only read. */
    json_object_foreach((json_t *)fields, key, value)
    {
        if (json_object_get(line, key) == NULL)
            json_object_set(line, key, value);
    }
    emit(lg, line);
    json_decref(line);
}

void txm_log_write(const txm_logger *lg, int level, const char *correlation_id, const char *fmt,
                   ...)
{
    if (lg == NULL || fmt == NULL || level < lg->min_level)
        return;
    char msg[TXM_LOG_MSG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap); /* truncates, always NUL-terminates */
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    txm__log_fields(lg, level, correlation_id, msg, NULL);
}

void txm_logger_fn(void *ctx, int level, const char *text)
{
    txm_log_write((const txm_logger *)ctx, level, NULL, "%s", text != NULL ? text : "");
}
