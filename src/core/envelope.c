/* The message envelope: a CloudEvents 1.0 JSON document in structured mode,
 * encoded and decoded with jansson. Decoding treats its input as hostile. */
#include "txmsg/message.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/core_int.h"

/* Bytes a JSON string literal of s takes, quotes included. */
static size_t quoted_len(const char *s)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        n += *p == '"' || *p == '\\' ? 2 : *p < 0x20 ? 6 : 1;
    return n;
}

/* Writes s as a JSON string literal at out; returns the end. The texts were
 * checked for valid UTF-8 when the message was made, and JSON takes UTF-8
 * as is, so only quotes, backslashes and control characters are escaped,
 * the same as jansson's default output. */
static char *put_quoted(char *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    *out++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            *out++ = '\\';
            *out++ = (char)*p;
        } else if (*p < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[*p >> 4];
            out[5] = hex[*p & 15];
            out += 6;
        } else {
            *out++ = (char)*p;
        }
    }
    *out++ = '"';
    return out;
}

txm_status txm_msg_encode(const txm_msg *msg, char **out, size_t *len, txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "encode: NULL out");
    *out = NULL;
    if (len != NULL)
        *len = 0;
    if (msg == NULL)
        return txm_errf(err, TXM_INVALID, "encode: NULL msg");
    char when[TXM_TIME_LEN + 1];
    txm_time_format(txm_msg_created_at_us(msg), when);
    /* Attributes in the documented order; the payload is kept as compact,
     * validated JSON text, so it is copied in as the "data" member. */
    const char *attrs[][2] = {
        {"specversion", "1.0"},
        {"id", txm_msg_id(msg)},
        {"source", txm_msg_source(msg)},
        {"type", txm_msg_topic(msg)},
        {"time", when},
        {"datacontenttype", "application/json"},
        {"subject", txm_msg_aggregate_id(msg)},
        {"partitionkey", txm_msg_aggregate_id(msg)},
        {"correlationid", txm_msg_correlation_id(msg)},
    };
    enum { N_ATTRS = sizeof attrs / sizeof attrs[0] };
    const char *payload = txm_msg_payload(msg);
    size_t payload_len = strlen(payload);
    size_t total = sizeof "{\"data\":}" + payload_len;
    for (size_t i = 0; i < N_ATTRS; i++)
        total += quoted_len(attrs[i][0]) + quoted_len(attrs[i][1]) + 2; /* ':' and ',' */
    if (total > TXM_ENVELOPE_MAX)
        return txm_errf(err, TXM_TOO_BIG, "encode: envelope of %zu bytes exceeds %u", total,
                        TXM_ENVELOPE_MAX);
    char *buf = txm__malloc(total);
    if (buf == NULL)
        return txm_errf(err, TXM_NOMEM, "encode: out of memory");
    char *p = buf;
    *p++ = '{';
    for (size_t i = 0; i < N_ATTRS; i++) {
        p = put_quoted(p, attrs[i][0]);
        *p++ = ':';
        p = put_quoted(p, attrs[i][1]);
        *p++ = ',';
    }
    memcpy(p, "\"data\":", 7);
    p += 7;
    memcpy(p, payload, payload_len);
    p += payload_len;
    *p++ = '}';
    *p = '\0';
    *out = buf;
    if (len != NULL)
        *len = (size_t)(p - buf);
    return TXM_OK;
}

/* Looks up attribute name in root. Sets *out to its text, or to NULL when it
 * is absent and not required. Returns TXM_MALFORMED when it is required and
 * absent, or present and not a string. Borrows: *out lives as long as root. */
static txm_status get_string(const json_t *root, const char *name, int required, const char **out,
                             txm_error *err)
{
    *out = NULL;
    json_t *v = json_object_get(root, name);
    if (v == NULL && required)
        return txm_errf(err, TXM_MALFORMED, "envelope: attribute \"%s\" is missing", name);
    if (v == NULL)
        return TXM_OK;
    if (!json_is_string(v))
        return txm_errf(err, TXM_MALFORMED, "envelope: attribute \"%s\" is not a string", name);
    /* Without JSON_ALLOW_NUL jansson rejects "\u0000", so the C string is whole. */
    *out = json_string_value(v);
    return TXM_OK;
}

/* Like get_string for a required attribute, and checks it with
 * txm__check_text (max bytes, allow_empty). */
static txm_status get_text(const json_t *root, const char *name, size_t max, int allow_empty,
                           const char **out, txm_error *err)
{
    txm_status st = get_string(root, name, 1, out, err);
    if (st != TXM_OK)
        return st;
    char what[64];
    snprintf(what, sizeof what, "envelope: attribute \"%s\"", name);
    return txm__check_text(what, *out, max, allow_empty, TXM_MALFORMED, err);
}

/* True if s contains "json" in any letter case. */
static int mentions_json(const char *s)
{
    for (; *s != '\0'; s++) {
        size_t i = 0;
        while (i < 4 && s[i] != '\0' && (s[i] | 0x20) == "json"[i])
            i++;
        if (i == 4)
            return 1;
    }
    return 0;
}

/* Checks the attributes that do not become message fields: specversion,
 * datacontenttype (optional) and partitionkey (optional). */
static txm_status check_meta(const json_t *root, txm_error *err)
{
    const char *s = NULL;
    txm_status st = get_string(root, "specversion", 1, &s, err);
    if (st == TXM_OK && strcmp(s, "1.0") != 0)
        st = txm_errf(err, TXM_MALFORMED, "envelope: specversion \"%.16s\" is not \"1.0\"", s);
    if (st == TXM_OK)
        st = get_string(root, "datacontenttype", 0, &s, err);
    /* "data" is always JSON here, so any JSON media type is acceptable:
     * application/json, with parameters, or a +json structured syntax. */
    if (st == TXM_OK && s != NULL && !mentions_json(s))
        st = txm_errf(err, TXM_MALFORMED, "envelope: datacontenttype \"%.64s\" is not JSON", s);
    if (st == TXM_OK)
        st = get_string(root, "partitionkey", 0, &s, err);
    return st;
}

/* Reads the "time" attribute into *us. Returns TXM_MALFORMED unless it is
 * RFC 3339 within years 0000..9999 UTC. */
static txm_status get_time(const json_t *root, int64_t *us, txm_error *err)
{
    const char *s = NULL;
    txm_status st = get_text(root, "time", 64, 0, &s, err);
    if (st == TXM_OK)
        st = txm_time_parse(s, us, err);
    if (st == TXM_OK && (*us < TXM__TIME_MIN_US || *us > TXM__TIME_MAX_US))
        st = txm_errf(err, TXM_MALFORMED, "envelope: time \"%.40s\" is outside 0000..9999", s);
    return st;
}

/* Turns a parsed envelope into a message. Borrows: root. */
static txm_status from_json(const json_t *root, txm_msg **out, txm_error *err)
{
    if (!json_is_object(root))
        return txm_errf(err, TXM_MALFORMED, "envelope: top level is not a JSON object");
    txm__msg_fields f = {0};
    txm_status st = check_meta(root, err);
    if (st == TXM_OK)
        st = get_text(root, "id", TXM_ID_MAX, 0, &f.id, err);
    if (st == TXM_OK)
        st = get_text(root, "source", TXM_ID_MAX, 1, &f.source, err);
    if (st == TXM_OK)
        st = get_string(root, "type", 1, &f.topic, err);
    if (st == TXM_OK)
        st = txm__check_topic("envelope: attribute \"type\"", f.topic, TXM_MALFORMED, err);
    if (st == TXM_OK)
        st = get_time(root, &f.created_at_us, err);
    if (st == TXM_OK)
        st = get_text(root, "subject", TXM_ID_MAX, 0, &f.aggregate_id, err);
    if (st == TXM_OK)
        st = get_text(root, "correlationid", TXM_ID_MAX, 0, &f.correlation_id, err);
    json_t *data = json_object_get(root, "data");
    if (st == TXM_OK && data == NULL)
        st = txm_errf(err, TXM_MALFORMED, "envelope: attribute \"data\" is missing");
    if (st == TXM_OK)
        st = txm__check_payload("envelope: attribute \"data\"", data, err);
    if (st == TXM_OK)
        st = txm__msg_create(&f, data, out, err);
    /* Everything was checked above; a field txm__msg_create still rejects
     * came from the document, so it is the document that is malformed. */
    if (st == TXM_INVALID) {
        st = TXM_MALFORMED;
        if (err != NULL)
            err->status = st;
    }
    return st;
}

txm_status txm_msg_decode(const char *buf, size_t len, txm_msg **out, txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "decode: NULL out");
    *out = NULL;
    if (buf == NULL && len > 0)
        return txm_errf(err, TXM_INVALID, "decode: NULL buffer");
    if (len > TXM_ENVELOPE_MAX)
        return txm_errf(err, TXM_TOO_BIG, "envelope: %zu bytes, limit %u", len, TXM_ENVELOPE_MAX);
    if (len == 0)
        return txm_errf(err, TXM_MALFORMED, "envelope: empty");
    json_error_t jerr;
    /* Trailing bytes after the document are rejected (no
     * JSON_DISABLE_EOF_CHECK); jansson also rejects invalid UTF-8 and NULs. */
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL && json_error_code(&jerr) == json_error_out_of_memory)
        return txm_errf(err, TXM_NOMEM, "envelope: out of memory while parsing");
    if (root == NULL)
        return txm_errf(err, TXM_MALFORMED, "envelope: not JSON: %s (line %d, column %d)",
                        jerr.text, jerr.line, jerr.column);
    txm_status st = from_json(root, out, err);
    json_decref(root);
    return st;
}
