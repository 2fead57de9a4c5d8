/* The message envelope: a CloudEvents 1.0 JSON document in structured mode.
 * Encoding writes txmsg's fixed layout; decoding, with jansson, accepts any
 * valid CloudEvent and treats its input as hostile. */
#include "txmsg/message.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/core_int.h"
#include "core/envelope.h"

/* Where txm_msg_encode writes: with p NULL it only counts, so the document
 * is measured with the same code that writes it. */
typedef struct writer {
    char *p;   /* the buffer, or NULL while counting */
    size_t n;  /* bytes written (or counted) so far */
    int comma; /* a member was written: the next one needs a ',' first */
} writer;

static void put(writer *w, const char *s, size_t len)
{
    if (w->p != NULL)
        memcpy(w->p + w->n, s, len);
    w->n += len;
}

/* Writes len bytes of s as a JSON string literal. The texts were checked for
 * valid UTF-8 when the message was made, and JSON takes UTF-8 as is, so only
 * quotes, backslashes and control characters are escaped, the same as
 * jansson's default output. */
static void put_quoted(writer *w, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    put(w, "\"", 1);
    const char *run = s; /* plain characters since the last escape, copied at once */
    for (const char *p = s; p < s + len; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, run, (size_t)(p - run));
        run = p + 1;
        char esc[6] = {'\\', (char)c};
        size_t n = 2;
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\t')
            esc[1] = 't';
        else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        put(w, esc, n);
    }
    put(w, run, (size_t)(s + len - run));
    put(w, "\"", 1);
}

/* Writes the member name (a plain identifier) and the separator before it. */
static void put_name(writer *w, const char *name)
{
    if (w->comma)
        put(w, ",", 1);
    w->comma = 1;
    put(w, "\"", 1);
    put(w, name, strlen(name));
    put(w, "\":", 2);
}

static void put_attr(writer *w, const char *name, const char *value)
{
    put_name(w, name);
    put_quoted(w, value, strlen(value));
}

/* Writes the attributes kept from decoding, but partitionkey, which
 * write_doc writes in its place. */
static void put_extensions(writer *w, const txm_msg *msg)
{
    for (size_t i = 0; i < txm_msg_extension_count(msg); i++) {
        const char *name = NULL;
        const char *value = txm_msg_extension_at(msg, i, &name);
        if (strcmp(name, "partitionkey") == 0)
            continue;
        put_name(w, name);
        if (txm__msg_extension_is_raw(msg, i))
            put(w, value, strlen(value));
        else
            put_quoted(w, value, strlen(value));
    }
}

/* Writes the data member: JSON as is, text as a string, bytes in base64. */
static void put_data(writer *w, const txm_msg *msg)
{
    size_t len = 0;
    const char *data = txm_msg_data(msg, &len);
    switch (txm_msg_data_kind(msg)) {
    case TXM_DATA_JSON:
        put_name(w, "data");
        put(w, data, len);
        break;
    case TXM_DATA_TEXT:
        put_name(w, "data");
        put_quoted(w, data, len);
        break;
    case TXM_DATA_BINARY:
        put_name(w, "data_base64");
        put(w, "\"", 1);
        /* The encoder adds a NUL, which the closing quote overwrites. */
        if (w->p != NULL)
            txm__base64_encode((const unsigned char *)data, len, w->p + w->n);
        w->n += TXM__BASE64_LEN(len);
        put(w, "\"", 1);
        break;
    case TXM_DATA_NONE:
    default:
        break;
    }
}

/* Writes msg as a document, attributes in the documented order. */
static void write_doc(writer *w, const txm_msg *msg)
{
    put(w, "{", 1);
    put_attr(w, "specversion", "1.0");
    put_attr(w, "id", txm_msg_id(msg));
    put_attr(w, "source", txm_msg_source(msg));
    put_attr(w, "type", txm_msg_topic(msg));
    if (txm_msg_has_time(msg)) {
        char when[TXM_TIME_LEN + 1];
        txm_time_format(txm_msg_created_at_us(msg), when);
        put_attr(w, "time", when);
    }
    /* Binary data of unknown type must not get a datacontenttype. */
    if (txm_msg_content_type(msg)[0] != '\0')
        put_attr(w, "datacontenttype", txm_msg_content_type(msg));
    const char *agg = txm_msg_aggregate_id(msg);
    if (agg[0] != '\0') {
        const char *key = txm_msg_extension(msg, "partitionkey");
        put_attr(w, "subject", agg);
        put_attr(w, "partitionkey", key != NULL ? key : agg);
    }
    put_attr(w, "correlationid", txm_msg_correlation_id(msg));
    put_extensions(w, msg);
    put_data(w, msg);
    put(w, "}", 1);
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
    writer count = {0};
    write_doc(&count, msg);
    if (count.n > TXM_ENVELOPE_MAX)
        return txm_errf(err, TXM_TOO_BIG, "encode: envelope of %zu bytes exceeds %u", count.n,
                        TXM_ENVELOPE_MAX);
    writer w = {.p = txm__malloc(count.n + 1)};
    if (w.p == NULL)
        return txm_errf(err, TXM_NOMEM, "encode: out of memory");
    write_doc(&w, msg);
    w.p[w.n] = '\0';
    *out = w.p;
    if (len != NULL)
        *len = w.n;
    return TXM_OK;
}

/* Looks up attribute name in root. Sets *out to its text, or to NULL when it
 * is absent (or null, which CloudEvents reads as absent) and not required.
 * Returns TXM_MALFORMED when it is required and absent, or present and not a
 * string. Borrows: *out lives as long as root. */
static txm_status get_string(const json_t *root, const char *name, int required, const char **out,
                             txm_error *err)
{
    *out = NULL;
    json_t *v = json_object_get(root, name);
    if (json_is_null(v))
        v = NULL;
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

/* Like get_string, and checks a present value with txm__check_text (max
 * bytes, allow_empty). */
static txm_status get_text(const json_t *root, const char *name, int required, size_t max,
                           int allow_empty, const char **out, txm_error *err)
{
    txm_status st = get_string(root, name, required, out, err);
    if (st != TXM_OK || *out == NULL)
        return st;
    char what[64];
    snprintf(what, sizeof what, "envelope: attribute \"%s\"", name);
    return txm__check_text(what, *out, max, allow_empty, TXM_MALFORMED, err);
}

/* True if media type ct declares JSON data: stripped of its parameters, it
 * has the form * / json or * / *+json (CloudEvents JSON format, 3.1.1). */
static int is_json_type(const char *ct)
{
    size_t end = strcspn(ct, ";");
    while (end > 0 && (ct[end - 1] == ' ' || ct[end - 1] == '\t'))
        end--;
    const char *slash = memchr(ct, '/', end);
    if (slash == NULL)
        return 0;
    const char *sub = slash + 1;
    size_t len = end - (size_t)(sub - ct);
    return (len == 4 && strncasecmp(sub, "json", 4) == 0) ||
           (len > 5 && strncasecmp(sub + len - 5, "+json", 5) == 0);
}

/* Reads the optional "time" attribute into f. Returns TXM_MALFORMED unless
 * it is RFC 3339 within years 0000..9999 UTC. */
static txm_status get_time(const json_t *root, txm__msg_fields *f, txm_error *err)
{
    const char *s = NULL;
    txm_status st = get_text(root, "time", 0, 64, 0, &s, err);
    f->no_time = st == TXM_OK && s == NULL;
    if (st == TXM_OK && s != NULL)
        st = txm_time_parse(s, &f->created_at_us, err);
    if (st == TXM_OK && s != NULL &&
        (f->created_at_us < TXM__TIME_MIN_US || f->created_at_us > TXM__TIME_MAX_US))
        st = txm_errf(err, TXM_MALFORMED, "envelope: time \"%.40s\" is outside 0000..9999", s);
    return st;
}

/* Reads the data: "data" (JSON, or a string for a non-JSON datacontenttype)
 * or "data_base64", never both. Sets f->kind, f->bytes and *json; *b64 is
 * the decoded base64 (the caller's, txm_free). Borrows: *json from root. */
static txm_status get_data(const json_t *root, txm__msg_fields *f, const json_t **json, char **b64,
                           txm_error *err)
{
    const char *ct = NULL;
    txm_status st = get_text(root, "datacontenttype", 0, TXM__CONTENT_TYPE_MAX, 0, &ct, err);
    if (st != TXM_OK)
        return st;
    f->content_type = ct;
    const json_t *data = json_object_get(root, "data");
    const char *base64 = NULL;
    st = get_string(root, "data_base64", 0, &base64, err);
    if (st == TXM_OK && data != NULL && base64 != NULL)
        st = txm_errf(err, TXM_MALFORMED, "envelope: both \"data\" and \"data_base64\"");
    if (st != TXM_OK)
        return st;
    if (base64 != NULL) {
        f->kind = TXM_DATA_BINARY;
        st = txm__base64_decode(base64, strlen(base64), b64, &f->bytes_len, err);
        if (st == TXM_MALFORMED)
            txm_errf(err, st, "envelope: attribute \"data_base64\": %s", err->text);
        f->bytes = *b64;
    } else if (data == NULL) {
        f->kind = TXM_DATA_NONE;
    } else if (ct == NULL || is_json_type(ct)) {
        /* CloudEvents: without a datacontenttype the data is JSON, and JSON
         * data may be any value, null included. */
        f->kind = TXM_DATA_JSON;
        *json = data;
        if (json_is_object(data) || json_is_array(data))
            st = txm__check_payload("envelope: attribute \"data\"", data, err);
    } else if (!json_is_string(data)) {
        st = txm_errf(err, TXM_MALFORMED,
                      "envelope: attribute \"data\" is not a string for datacontenttype "
                      "\"%.64s\"",
                      ct);
    } else {
        f->kind = TXM_DATA_TEXT;
        f->bytes = json_string_value(data);
        f->bytes_len = json_string_length(data);
    }
    return st;
}

/* The attributes with a field or rule of their own; any other member is an
 * extension attribute (or "dataschema"), kept as it is. */
static int is_known(const char *name)
{
    static const char *const known[] = {
        "specversion", "id",           "source",        "type", "time",        "datacontenttype",
        "subject",     "partitionkey", "correlationid", "data", "data_base64",
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i]) == 0)
            return 1;
    return 0;
}

/* Checks one other attribute: a name of lower-case letters and digits, and a
 * value of a CloudEvents type in JSON (string, integer or boolean). */
static txm_status check_extension(const char *name, const json_t *v, txm_error *err)
{
    size_t len = strlen(name);
    if (len == 0 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789") != len)
        return txm_errf(err, TXM_MALFORMED,
                        "envelope: attribute name \"%.64s\" is not lower-case letters and digits",
                        name);
    if (json_is_integer(v) || json_is_boolean(v))
        return TXM_OK;
    if (!json_is_string(v))
        return txm_errf(err, TXM_MALFORMED,
                        "envelope: attribute \"%.64s\" is not a string, integer or boolean", name);
    char what[96];
    snprintf(what, sizeof what, "envelope: attribute \"%.64s\"", name);
    return txm__check_text(what, json_string_value(v), TXM_ENVELOPE_MAX, 1, TXM_MALFORMED, err);
}

/* Collects the other attributes of root into a new object *out (NULL when
 * there are none), nulls left out as absent. Owns: *out is the caller's. */
static txm_status get_extensions(const json_t *root, json_t **out, txm_error *err)
{
    *out = NULL;
    json_t *obj = (json_t *)root; /* jansson's iteration is not const-qualified */
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        const char *name = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        if (is_known(name) || json_is_null(v))
            continue;
        txm_status st = check_extension(name, v, err);
        if (st == TXM_OK && *out == NULL && (*out = json_object()) == NULL)
            st = txm_errf(err, TXM_NOMEM, "envelope: out of memory");
        if (st == TXM_OK && json_object_set(*out, name, v) != 0)
            st = txm_errf(err, TXM_NOMEM, "envelope: out of memory");
        if (st != TXM_OK) {
            json_decref(*out);
            *out = NULL;
            return st;
        }
    }
    return TXM_OK;
}

/* Reads the aggregate id: "subject", else "partitionkey", else "". A
 * partitionkey that differs from the subject is kept in exts so that a
 * re-published event carries it unchanged. */
static txm_status get_aggregate(const json_t *root, txm__msg_fields *f, json_t **exts,
                                txm_error *err)
{
    const char *subject = NULL, *key = NULL;
    txm_status st = get_text(root, "subject", 0, TXM_ID_MAX, 0, &subject, err);
    if (st == TXM_OK)
        st = get_text(root, "partitionkey", 0, TXM_ID_MAX, 1, &key, err);
    if (st != TXM_OK)
        return st;
    f->aggregate_id = subject != NULL ? subject : key != NULL ? key : "";
    if (subject == NULL || key == NULL || key[0] == '\0' || strcmp(subject, key) == 0)
        return TXM_OK;
    if (*exts == NULL && (*exts = json_object()) == NULL)
        return txm_errf(err, TXM_NOMEM, "envelope: out of memory");
    if (json_object_set_new(*exts, "partitionkey", json_string(key)) != 0)
        return txm_errf(err, TXM_NOMEM, "envelope: out of memory");
    return TXM_OK;
}

/* Reads the required attributes and the correlation id into f. */
static txm_status get_ids(const json_t *root, txm__msg_fields *f, txm_error *err)
{
    const char *s = NULL;
    txm_status st = get_string(root, "specversion", 1, &s, err);
    if (st == TXM_OK && strcmp(s, "1.0") != 0)
        st = txm_errf(err, TXM_MALFORMED, "envelope: specversion \"%.16s\" is not \"1.0\"", s);
    if (st == TXM_OK)
        st = get_text(root, "id", 1, TXM_ID_MAX, 0, &f->id, err);
    if (st == TXM_OK)
        st = get_text(root, "source", 1, TXM_ID_MAX, 1, &f->source, err);
    if (st == TXM_OK)
        st = get_string(root, "type", 1, &f->topic, err);
    if (st == TXM_OK)
        st = txm__check_topic("envelope: attribute \"type\"", f->topic, TXM_MALFORMED, err);
    /* correlationid is txmsg's String extension; without one (or with an
     * empty one) the event correlates with itself. */
    if (st == TXM_OK)
        st = get_text(root, "correlationid", 0, TXM_ID_MAX, 1, &f->correlation_id, err);
    if (st == TXM_OK && (f->correlation_id == NULL || f->correlation_id[0] == '\0'))
        f->correlation_id = f->id;
    return st;
}

/* A claim check (claim_check.c) whose payload was not swapped back in: it
 * is txmsg's own reference, not an event without data. */
static int is_unresolved_claim(const json_t *root)
{
    const char *ref = json_string_value(json_object_get(root, "dataref"));
    return ref != NULL && strncmp(ref, TXM__DATAREF_PREFIX, strlen(TXM__DATAREF_PREFIX)) == 0 &&
           json_object_get(root, "data") == NULL;
}

/* Turns a parsed envelope into a message. Borrows: root. */
static txm_status from_json(const json_t *root, txm_msg **out, txm_error *err)
{
    if (!json_is_object(root))
        return txm_errf(err, TXM_MALFORMED, "envelope: top level is not a JSON object");
    txm__msg_fields f = {.decoded = 1};
    const json_t *data = NULL;
    char *b64 = NULL;
    json_t *exts = NULL;
    txm_status st = get_ids(root, &f, err);
    if (st == TXM_OK)
        st = get_time(root, &f, err);
    if (st == TXM_OK)
        st = get_extensions(root, &exts, err);
    if (st == TXM_OK)
        st = get_aggregate(root, &f, &exts, err);
    if (st == TXM_OK && is_unresolved_claim(root))
        st = txm_errf(err, TXM_MALFORMED, "envelope: payload reference \"dataref\" not resolved");
    if (st == TXM_OK)
        st = get_data(root, &f, &data, &b64, err);
    f.extensions = exts;
    if (st == TXM_OK)
        st = txm__msg_create(&f, data, out, err);
    txm_free(b64);
    json_decref(exts);
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
