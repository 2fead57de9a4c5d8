/* CloudEvents binary content mode (attributes in "ce-" headers, the data as
 * the message body) turned into the structured JSON document, so everything
 * after the transport sees one form. */
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/core_int.h"
#include "core/envelope.h"

/* Value of hexadecimal digit c, or -1. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes a header value into a new string: first a double-quoted string is
 * unquoted (RFC 7230 3.2.6, kept for older senders), then one round of
 * percent-decoding (NATS binding 3.1.3.2). Invalid UTF-8 is left for
 * jansson to reject. Owns: the result (txm_free); NULL when out of memory. */
static char *header_value(const char *v)
{
    size_t n = strlen(v);
    char *tmp = txm__malloc(n + 1), *out = txm__malloc(n + 1);
    if (tmp == NULL || out == NULL) {
        txm_free(tmp);
        txm_free(out);
        return NULL;
    }
    size_t t = 0;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        for (size_t i = 1; i + 1 < n; i++) {
            if (v[i] == '\\' && i + 2 < n)
                i++;
            tmp[t++] = v[i];
        }
    } else {
        memcpy(tmp, v, n);
        t = n;
    }
    size_t o = 0;
    for (size_t i = 0; i < t; i++) {
        int hi = i + 2 < t && tmp[i] == '%' ? hexval(tmp[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(tmp[i + 2]) : -1;
        if (lo >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = tmp[i];
        }
    }
    out[o] = '\0';
    txm_free(tmp);
    return out;
}

/* True if media type ct is text that a JSON string can carry: text/...,
 * or an XML type (application/xml, .../...+xml). */
static int is_text_type(const char *ct)
{
    size_t end = strcspn(ct, "; \t");
    if (end >= 5 && strncasecmp(ct, "text/", 5) == 0)
        return 1;
    return (end >= 4 && strncasecmp(ct + end - 4, "/xml", 4) == 0) ||
           (end >= 4 && strncasecmp(ct + end - 4, "+xml", 4) == 0);
}

/* Same rule as the decoder: * / json or * / *+json, parameters aside. */
static int is_json_type(const char *ct)
{
    size_t end = strcspn(ct, "; \t");
    const char *slash = memchr(ct, '/', end);
    if (slash == NULL)
        return 0;
    size_t len = end - (size_t)(slash + 1 - ct);
    return (len == 4 && strncasecmp(slash + 1, "json", 4) == 0) ||
           (len > 5 && strncasecmp(ct + end - 5, "+json", 5) == 0);
}

/* Sets the attributes of hdrs in doc. */
static txm_status put_headers(json_t *doc, const txm__ce_header *hdrs, size_t count, txm_error *err)
{
    for (size_t i = 0; i < count; i++) {
        if (strlen(hdrs[i].name) <= 3 || strncasecmp(hdrs[i].name, "ce-", 3) != 0)
            continue;
        char name[64];
        size_t n = 0;
        for (const char *p = hdrs[i].name + 3; *p != '\0' && n + 1 < sizeof name; p++)
            name[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p | 0x20 : *p);
        name[n] = '\0';
        char *value = header_value(hdrs[i].value);
        if (value == NULL)
            return txm_errf(err, TXM_NOMEM, "binary mode: out of memory");
        json_t *s = json_string(value); /* NULL for invalid UTF-8 */
        txm_free(value);
        if (s == NULL)
            return txm_errf(err, TXM_MALFORMED, "binary mode: header %.64s is not UTF-8",
                            hdrs[i].name);
        if (json_object_set_new(doc, name, s) != 0)
            return txm_errf(err, TXM_NOMEM, "binary mode: out of memory");
    }
    return TXM_OK;
}

/* Sets the data member of doc from body, by its media type ct (may be NULL). */
static txm_status put_body(json_t *doc, const char *ct, const char *body, size_t len,
                           txm_error *err)
{
    if (len == 0)
        return TXM_OK;
    json_t *data = NULL;
    const char *member = "data";
    if (ct != NULL && is_json_type(ct)) {
        json_error_t jerr;
        data = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (data == NULL)
            return txm_errf(err, TXM_MALFORMED, "binary mode: body is not JSON: %s", jerr.text);
    } else if (ct != NULL && is_text_type(ct) && memchr(body, '\0', len) == NULL) {
        data = json_stringn(body, len); /* NULL for invalid UTF-8: then bytes */
    }
    if (data == NULL) {
        char *b64 = txm__malloc(TXM__BASE64_LEN(len) + 1);
        if (b64 == NULL)
            return txm_errf(err, TXM_NOMEM, "binary mode: out of memory");
        txm__base64_encode((const unsigned char *)body, len, b64);
        data = json_string(b64);
        txm_free(b64);
        member = "data_base64";
    }
    if (data == NULL || json_object_set_new(doc, member, data) != 0)
        return txm_errf(err, TXM_NOMEM, "binary mode: out of memory");
    return TXM_OK;
}

txm_status txm__envelope_from_binary(const txm__ce_header *hdrs, size_t count,
                                     const char *content_type, const char *body, size_t body_len,
                                     char **out, size_t *len, txm_error *err)
{
    *out = NULL;
    *len = 0;
    if (body_len > TXM_PAYLOAD_MAX)
        return txm_errf(err, TXM_TOO_BIG, "binary mode: body of %zu bytes, limit %u", body_len,
                        TXM_PAYLOAD_MAX);
    json_t *doc = json_object();
    if (doc == NULL)
        return txm_errf(err, TXM_NOMEM, "binary mode: out of memory");
    txm_status st = put_headers(doc, hdrs, count, err);
    /* The binding maps datacontenttype to its own header, and senders also
     * use the message's Content-Type. */
    const char *ct = json_string_value(json_object_get(doc, "datacontenttype"));
    if (st == TXM_OK && ct == NULL && content_type != NULL && content_type[0] != '\0') {
        if (json_object_set_new(doc, "datacontenttype", json_string(content_type)) != 0)
            st = txm_errf(err, TXM_NOMEM, "binary mode: out of memory");
        ct = json_string_value(json_object_get(doc, "datacontenttype"));
    }
    if (st == TXM_OK)
        st = put_body(doc, ct, body, body_len, err);
    if (st == TXM_OK)
        st = txm__json_dump(doc, TXM_ENVELOPE_MAX, out, len, err);
    json_decref(doc);
    return st;
}
