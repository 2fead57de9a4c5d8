/* The outbox record of PostgreSQL's messages mode: a message's outbox fields
 * as a compact, versioned, length-prefixed binary string, the content of the
 * logical decoding message txm_outbox_publish emits and the relay decodes.
 * The decoder is bounds-checked: any input decodes or is TXM_MALFORMED. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "txmsg/outbox.h"

#define FIELDS 6
/* Version byte and created_at, before the strings. */
#define HEADER_LEN 9

static const char *const FIELD_NAME[FIELDS] = {
    "message_id", "source", "aggregate_id", "correlation_id", "topic", "payload",
};

/* The most bytes each field may hold; txm_msg_new_with checks the rest. */
static const size_t FIELD_MAX[FIELDS] = {
    TXM_ID_MAX, TXM_ID_MAX, TXM_ID_MAX, TXM_ID_MAX, TXM_TOPIC_MAX, TXM_PAYLOAD_MAX,
};

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

txm_status txm_outbox_record_encode(const txm_msg *msg, uint8_t **out, size_t *len, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (len != NULL)
        *len = 0;
    if (msg == NULL || out == NULL || len == NULL)
        return txm_errf(err, TXM_INVALID, "outbox_record_encode: NULL argument");
    const char *f[FIELDS] = {
        txm_msg_id(msg),           txm_msg_source(msg),
        txm_msg_aggregate_id(msg), txm_msg_correlation_id(msg),
        txm_msg_topic(msg),        txm_msg_payload(msg),
    };
    size_t flen[FIELDS];
    size_t total = HEADER_LEN;
    for (int i = 0; i < FIELDS; i++) {
        flen[i] = strlen(f[i]);
        if (flen[i] > FIELD_MAX[i])
            return txm_errf(err, TXM_INVALID, "outbox record: %s of %zu bytes", FIELD_NAME[i],
                            flen[i]);
        total += 4 + flen[i];
    }
    uint8_t *buf = txm__malloc(total);
    if (buf == NULL)
        return txm_errf(err, TXM_NOMEM, "outbox record: out of memory");
    buf[0] = TXM_OUTBOX_RECORD_VERSION;
    put_be(buf + 1, (uint64_t)txm_msg_created_at_us(msg), 8);
    uint8_t *p = buf + HEADER_LEN;
    for (int i = 0; i < FIELDS; i++) {
        put_be(p, flen[i], 4);
        memcpy(p + 4, f[i], flen[i]);
        p += 4 + flen[i];
    }
    *out = buf;
    *len = total;
    return TXM_OK;
}

/* Finds the FIELDS strings after the header: start offsets and lengths.
 * Checks every length against the bytes left and the field's cap, and that
 * no NUL hides inside (it would cut the C string short). */
static txm_status split_fields(const uint8_t *buf, size_t len, size_t start[FIELDS],
                               size_t flen[FIELDS], txm_error *err)
{
    size_t at = HEADER_LEN;
    for (int i = 0; i < FIELDS; i++) {
        if (len - at < 4)
            return txm_errf(err, TXM_MALFORMED, "outbox record: truncated at %s length",
                            FIELD_NAME[i]);
        uint64_t n = get_be(buf + at, 4);
        at += 4;
        if (n > FIELD_MAX[i])
            return txm_errf(err, TXM_MALFORMED, "outbox record: %s of %llu bytes (max %zu)",
                            FIELD_NAME[i], (unsigned long long)n, FIELD_MAX[i]);
        if (n > len - at)
            return txm_errf(err, TXM_MALFORMED, "outbox record: truncated in %s", FIELD_NAME[i]);
        if (memchr(buf + at, '\0', (size_t)n) != NULL)
            return txm_errf(err, TXM_MALFORMED, "outbox record: NUL byte in %s", FIELD_NAME[i]);
        start[i] = at;
        flen[i] = (size_t)n;
        at += (size_t)n;
    }
    if (at != len)
        return txm_errf(err, TXM_MALFORMED, "outbox record: %zu trailing bytes", len - at);
    return TXM_OK;
}

txm_status txm_outbox_record_decode(const uint8_t *buf, size_t len, txm_msg **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || (buf == NULL && len > 0))
        return txm_errf(err, TXM_INVALID, "outbox_record_decode: NULL argument");
    if (len < HEADER_LEN)
        return txm_errf(err, TXM_MALFORMED, "outbox record: %zu bytes, shorter than its header",
                        len);
    if (buf[0] != TXM_OUTBOX_RECORD_VERSION)
        return txm_errf(err, TXM_MALFORMED, "outbox record: unknown version %u", (unsigned)buf[0]);
    size_t start[FIELDS], flen[FIELDS];
    txm_status st = split_fields(buf, len, start, flen, err);
    if (st != TXM_OK)
        return st;
    /* The fields become C strings side by side in one copy. */
    char *text = txm__malloc(len + FIELDS);
    if (text == NULL)
        return txm_errf(err, TXM_NOMEM, "outbox record: out of memory");
    const char *f[FIELDS];
    char *p = text;
    for (int i = 0; i < FIELDS; i++) {
        memcpy(p, buf + start[i], flen[i]);
        p[flen[i]] = '\0';
        f[i] = p;
        p += flen[i] + 1;
    }
    int64_t created_us = (int64_t)get_be(buf + 1, 8);
    /* The payload was validated by the txm_msg that txm_outbox_publish
     * wrote: kept as is, only its shape checked (parsing it again would be a
     * third of the relay's time per message). */
    st = txm_msg_new_trusted(f[0], f[1], f[4], f[2], f[3], f[5], flen[5], created_us, out, err);
    free(text);
    if (st != TXM_OK && st != TXM_NOMEM && err != NULL) {
        char why[sizeof err->text];
        memcpy(why, err->text, sizeof why);
        return txm_errf(err, TXM_MALFORMED, "outbox record: %s", why);
    }
    if (st != TXM_OK && st != TXM_NOMEM)
        return TXM_MALFORMED;
    return st;
}
