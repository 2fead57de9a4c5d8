/* What both tailers share: batches of entries, turning an outbox row's text
 * columns into a message, a monotonic clock and one-line log text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tail.h"

void relay_batch_init(relay_batch *b)
{
    memset(b, 0, sizeof *b);
}

txm_status relay_batch_add(relay_batch *b, txm_msg **msg, const char *message_id,
                           const char *bad_reason)
{
    txm_msg *m = msg != NULL ? *msg : NULL;
    if (msg != NULL)
        *msg = NULL;
    if (b->count == b->cap) {
        size_t cap = b->cap == 0 ? 64 : b->cap * 2;
        relay_entry *e = realloc(b->entries, cap * sizeof *e);
        if (e == NULL) {
            txm_msg_free(m);
            return TXM_NOMEM;
        }
        b->entries = e;
        b->cap = cap;
    }
    relay_entry *e = &b->entries[b->count];
    e->msg = m;
    e->body = NULL;
    e->body_len = 0;
    e->message_id = message_id != NULL ? strdup(message_id) : NULL;
    e->bad_reason = bad_reason != NULL ? strdup(bad_reason) : NULL;
    e->no_row = false;
    if ((message_id != NULL && e->message_id == NULL) ||
        (bad_reason != NULL && e->bad_reason == NULL)) {
        free(e->message_id);
        free(e->bad_reason);
        txm_msg_free(m);
        return TXM_NOMEM;
    }
    b->count++;
    return TXM_OK;
}

void relay_batch_clear(relay_batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        txm_msg_free(b->entries[i].msg);
        free(b->entries[i].body);
        free(b->entries[i].message_id);
        free(b->entries[i].bad_reason);
    }
    b->count = 0;
    b->confirm_position = 0;
}

/* PostgreSQL prints timestamptz as "2026-11-26 22:44:31.123456+00"; RFC 3339
 * wants the offset as "+00:00". */
static void normalise_pg_time(const char *in, char *out, size_t len)
{
    size_t n = strlen(in);
    if (n >= 3 && n + 4 < len && (in[n - 3] == '+' || in[n - 3] == '-') &&
        strchr(in, 'T') == NULL && in[n - 1] >= '0' && in[n - 1] <= '9' && in[n - 2] >= '0' &&
        in[n - 2] <= '9')
        snprintf(out, len, "%s:00", in);
    else
        snprintf(out, len, "%s", in);
}

txm_status relay_row_to_msg(const char *message_id, const char *source, const char *aggregate_id,
                            const char *correlation_id, const char *topic, const char *payload,
                            const char *created_at, txm_msg **out, txm_error *err)
{
    *out = NULL;
    if (message_id == NULL || aggregate_id == NULL || correlation_id == NULL || topic == NULL ||
        payload == NULL || created_at == NULL)
        return txm_errf(err, TXM_MALFORMED, "outbox row has a NULL column");
    char when[64];
    normalise_pg_time(created_at, when, sizeof when);
    int64_t created_us = 0;
    txm_status st = txm_time_parse(when, &created_us, err);
    if (st != TXM_OK)
        return txm_errf(err, TXM_MALFORMED, "outbox row: created_at \"%.40s\" is not a time",
                        created_at);
    /* The payload was validated by txm_msg_new when it was written (and
     * PostgreSQL's jsonb or the SQLite tailer's json_valid vouch for rows
     * written otherwise): parsing it again would be a third of the relay's
     * time per message. */
    return txm_msg_new_trusted(message_id, source, topic, aggregate_id, correlation_id, payload,
                               strlen(payload), created_us, out, err);
}

size_t relay_json_compact(const char *text, size_t len, char *out)
{
    size_t n = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else {
            in_string = c == '"';
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return n;
}

long long relay_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *relay_one_line(const char *msg, char *buf, size_t len)
{
    snprintf(buf, len, "%s", msg != NULL ? msg : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *p = buf; *p != '\0'; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return buf;
}
