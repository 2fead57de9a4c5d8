/* The message object: construction with validation of every field, copies,
 * getters, and the payload JSON helpers shared with the envelope codec. */
#include "txmsg/message.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/core_int.h"

/* An attribute kept from a decoded event without a field of its own. */
typedef struct ext_attr {
    char *name;  /* lower-case letters and digits */
    char *value; /* canonical string form */
    int is_raw;  /* the JSON form is value itself (integer, boolean), not a string */
} ext_attr;

struct txm_msg {
    char *id;              /* message id, usually a UUID v7 */
    char *source;          /* producing service; NULL when unset */
    char *topic;           /* CloudEvents "type" */
    char *aggregate_id;    /* CloudEvents "subject" and "partitionkey"; may be "" */
    char *correlation_id;  /* usually a UUID */
    char *payload;         /* the data: compact JSON text, or bytes (see kind); "" for none */
    size_t payload_len;    /* bytes of payload without the NUL */
    int64_t created_at_us; /* microseconds since the Unix epoch; 0 without a time */
    bool has_time;         /* false for a decoded event without "time" */
    txm_data_kind kind;    /* what payload holds */
    char *content_type;    /* datacontenttype as received; NULL when absent */
    ext_attr *ext;         /* other attributes, in document order */
    size_t ext_count;      /* entries of ext */
};

/* Length of the UTF-8 sequence starting at s (at most n bytes available),
 * or 0 if it is invalid: overlong, a surrogate, past U+10FFFF or cut short. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || s[0] > 0xF4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (len == 3 && s[0] == 0xE0 && s[1] < 0xA0)
        return 0; /* overlong */
    if (len == 3 && s[0] == 0xED && s[1] >= 0xA0)
        return 0; /* UTF-16 surrogate */
    if (len == 4 && s[0] == 0xF0 && s[1] < 0x90)
        return 0; /* overlong */
    if (len == 4 && s[0] == 0xF4 && s[1] >= 0x90)
        return 0; /* past U+10FFFF */
    return len;
}

txm_status txm__check_text(const char *what, const char *s, size_t max, int allow_empty,
                           txm_status st, txm_error *err)
{
    if (s == NULL)
        return txm_errf(err, st, "%s: missing", what);
    size_t len = strnlen(s, max + 1);
    if (len > max)
        return txm_errf(err, st, "%s: longer than %zu bytes", what, max);
    if (len == 0 && !allow_empty)
        return txm_errf(err, st, "%s: empty", what);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        if (u[i] < 0x20 || u[i] == 0x7F)
            return txm_errf(err, st, "%s: control character at byte %zu", what, i);
        size_t n = utf8_seq_len(u + i, len - i);
        if (n == 0)
            return txm_errf(err, st, "%s: invalid UTF-8 at byte %zu", what, i);
        i += n;
    }
    return TXM_OK;
}

txm_status txm__check_topic(const char *what, const char *s, txm_status st, txm_error *err)
{
    if (s == NULL)
        return txm_errf(err, st, "%s: missing", what);
    size_t len = strnlen(s, TXM_TOPIC_MAX + 1);
    if (len == 0)
        return txm_errf(err, st, "%s: empty", what);
    if (len > TXM_TOPIC_MAX)
        return txm_errf(err, st, "%s: longer than %d bytes", what, TXM_TOPIC_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return txm_errf(err, st, "%s: byte %zu is not one of [A-Za-z0-9._-]", what, i);
    }
    return TXM_OK;
}

/* True if no array or object inside json (at level depth) lies deeper than
 * TXM_JSON_DEPTH_MAX. Recursion is bounded by that limit. */
static int depth_ok(const json_t *json, int depth)
{
    if (!json_is_array(json) && !json_is_object(json))
        return 1;
    if (depth > TXM_JSON_DEPTH_MAX)
        return 0;
    if (json_is_array(json)) {
        for (size_t i = 0; i < json_array_size(json); i++)
            if (!depth_ok(json_array_get(json, i), depth + 1))
                return 0;
        return 1;
    }
    /* jansson's iteration API is not const-qualified; it does not modify. */
    json_t *obj = (json_t *)json;
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it))
        if (!depth_ok(json_object_iter_value(it), depth + 1))
            return 0;
    return 1;
}

txm_status txm__check_payload(const char *what, const json_t *json, txm_error *err)
{
    if (!json_is_object(json) && !json_is_array(json))
        return txm_errf(err, TXM_MALFORMED, "%s: not a JSON object or array", what);
    if (!depth_ok(json, 1))
        return txm_errf(err, TXM_MALFORMED, "%s: nested deeper than %d levels", what,
                        TXM_JSON_DEPTH_MAX);
    return TXM_OK;
}

txm_status txm__parse_payload(const char *text, size_t len, json_t **out, txm_error *err)
{
    if (out == NULL || text == NULL)
        return txm_errf(err, TXM_INVALID, "payload: NULL argument");
    *out = NULL;
    if (len > TXM_PAYLOAD_MAX)
        return txm_errf(err, TXM_TOO_BIG, "payload: %zu bytes, limit %u", len, TXM_PAYLOAD_MAX);
    json_error_t jerr;
    json_t *json = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (json == NULL && json_error_code(&jerr) == json_error_out_of_memory)
        return txm_errf(err, TXM_NOMEM, "payload: out of memory while parsing");
    if (json == NULL)
        return txm_errf(err, TXM_MALFORMED, "payload: not JSON: %s (line %d, column %d)", jerr.text,
                        jerr.line, jerr.column);
    txm_status st = txm__check_payload("payload", json, err);
    if (st != TXM_OK) {
        json_decref(json);
        return st;
    }
    *out = json;
    return TXM_OK;
}

/* A growing output buffer for json_dump_callback, capped at cap bytes. */
typedef struct dumpbuf {
    char *data;    /* NUL-terminated once anything is written */
    size_t len;    /* bytes written, without the NUL */
    size_t size;   /* bytes allocated */
    size_t cap;    /* most bytes allowed, without the NUL */
    txm_status st; /* why the callback stopped jansson, or TXM_OK */
} dumpbuf;

static int dump_cb(const char *buf, size_t n, void *arg)
{
    dumpbuf *b = arg;
    if (n > b->cap - b->len) {
        b->st = TXM_TOO_BIG;
        return -1;
    }
    size_t want = b->len + n + 1; /* at most cap + 1 */
    if (want > b->size) {
        size_t size = b->size < 128 ? 256 : b->size * 2;
        if (size < want)
            size = want;
        if (size > b->cap + 1)
            size = b->cap + 1;
        char *p = txm__realloc(b->data, size);
        if (p == NULL) {
            b->st = TXM_NOMEM;
            return -1;
        }
        b->data = p;
        b->size = size;
    }
    memcpy(b->data + b->len, buf, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

txm_status txm__json_dump(const json_t *json, size_t cap, char **out, size_t *len, txm_error *err)
{
    if (out == NULL || json == NULL)
        return txm_errf(err, TXM_INVALID, "json_dump: NULL argument");
    *out = NULL;
    if (len != NULL)
        *len = 0;
    dumpbuf b = {.cap = cap, .st = TXM_OK};
    /* JSON_ENCODE_ANY: a decoded event's data may be any JSON value. */
    int rc = json_dump_callback(json, dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY);
    if (rc == 0 && b.data == NULL) { /* nothing written: cannot happen for containers */
        b.data = txm__strdup("");
        rc = b.data == NULL ? -1 : 0;
        b.st = rc == 0 ? TXM_OK : TXM_NOMEM;
    }
    if (rc != 0) {
        txm_free(b.data);
        if (b.st == TXM_TOO_BIG)
            return txm_errf(err, TXM_TOO_BIG, "json: serialised form exceeds %zu bytes", cap);
        /* jansson fails on its own only when its allocations fail. */
        return txm_errf(err, TXM_NOMEM, "json: out of memory while serialising");
    }
    *out = b.data;
    if (len != NULL)
        *len = b.len;
    return TXM_OK;
}

/* Validates every field but the payload; TXM_INVALID names the first bad one. */
static txm_status check_fields(const txm__msg_fields *f, txm_error *err)
{
    txm_status st = txm__check_text("id", f->id, TXM_ID_MAX, 0, TXM_INVALID, err);
    if (st == TXM_OK && f->source != NULL)
        st = txm__check_text("source", f->source, TXM_ID_MAX, 1, TXM_INVALID, err);
    if (st == TXM_OK)
        st = txm__check_topic("topic", f->topic, TXM_INVALID, err);
    if (st == TXM_OK)
        st = txm__check_text("aggregate_id", f->aggregate_id, TXM_ID_MAX, f->decoded, TXM_INVALID,
                             err);
    /* A UUID is expected, but foreign producers may send other strings. */
    if (st == TXM_OK && f->correlation_id != NULL)
        st = txm__check_text("correlation_id", f->correlation_id, TXM_ID_MAX, 0, TXM_INVALID, err);
    if (st == TXM_OK && f->content_type != NULL)
        st = txm__check_text("content_type", f->content_type, TXM__CONTENT_TYPE_MAX, 0, TXM_INVALID,
                             err);
    if (st == TXM_OK && (f->kind != TXM_DATA_JSON || f->json_text) &&
        f->bytes_len > TXM_PAYLOAD_MAX)
        st = txm_errf(err, TXM_TOO_BIG, "data: %zu bytes, limit %u", f->bytes_len, TXM_PAYLOAD_MAX);
    if (st == TXM_OK && !f->no_time &&
        (f->created_at_us < TXM__TIME_MIN_US || f->created_at_us > TXM__TIME_MAX_US))
        st = txm_errf(err, TXM_INVALID, "created_at_us: %lld is outside years 0000..9999",
                      (long long)f->created_at_us);
    return st;
}

/* Copies s into *dst; returns TXM_NOMEM naming what when out of memory. */
static txm_status dup_field(char **dst, const char *s, const char *what, txm_error *err)
{
    *dst = txm__strdup(s);
    return *dst != NULL ? TXM_OK : txm_errf(err, TXM_NOMEM, "msg: out of memory copying %s", what);
}

/* Whether text of len bytes looks like one JSON object or array: its first
 * and last characters other than white space are matching brackets. */
static bool shape_ok(const char *text, size_t len)
{
    size_t a = 0, z = len;
    while (a < z && (text[a] == ' ' || text[a] == '\t' || text[a] == '\n' || text[a] == '\r'))
        a++;
    while (z > a && (text[z - 1] == ' ' || text[z - 1] == '\t' || text[z - 1] == '\n' ||
                     text[z - 1] == '\r'))
        z--;
    return z - a >= 2 &&
           ((text[a] == '{' && text[z - 1] == '}') || (text[a] == '[' && text[z - 1] == ']'));
}

/* Checks the payload of a message made from f: an object or array, or for
 * a decoded event any JSON value, nested at most TXM_JSON_DEPTH_MAX deep. */
static txm_status check_data(const txm__msg_fields *f, const json_t *data, txm_error *err)
{
    if (f->kind != TXM_DATA_JSON)
        return TXM_OK;
    if (f->json_text)
        return shape_ok(f->bytes, f->bytes_len)
                   ? TXM_OK
                   : txm_errf(err, TXM_MALFORMED, "payload: not a JSON object or array");
    if (data == NULL)
        return txm_errf(err, TXM_INVALID, "msg_create: NULL data");
    if (f->decoded && !json_is_object(data) && !json_is_array(data))
        return TXM_OK;
    return txm__check_payload("payload", data, err);
}

/* Copies the other attributes of object exts into m->ext, each with its
 * canonical string form. Returns TXM_INVALID for a value that is not a
 * string, integer or boolean, TXM_NOMEM. */
static txm_status copy_extensions(txm_msg *m, const json_t *exts, txm_error *err)
{
    size_t n = json_object_size(exts);
    if (n == 0)
        return TXM_OK;
    m->ext = txm__calloc(n, sizeof *m->ext);
    if (m->ext == NULL)
        return txm_errf(err, TXM_NOMEM, "msg: out of memory copying attributes");
    json_t *obj = (json_t *)exts; /* jansson's iteration is not const-qualified */
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        const json_t *v = json_object_iter_value(it);
        char num[32];
        const char *text = json_string_value(v);
        if (json_is_integer(v))
            snprintf(num, sizeof num, "%" PRId64, (int64_t)json_integer_value(v));
        else if (json_is_boolean(v))
            snprintf(num, sizeof num, "%s", json_is_true(v) ? "true" : "false");
        else if (text == NULL)
            return txm_errf(err, TXM_INVALID, "attribute \"%s\": not a string, integer or boolean",
                            json_object_iter_key(it));
        ext_attr *a = &m->ext[m->ext_count++];
        a->is_raw = text == NULL;
        a->name = txm__strdup(json_object_iter_key(it));
        a->value = txm__strdup(text != NULL ? text : num);
        if (a->name == NULL || a->value == NULL)
            return txm_errf(err, TXM_NOMEM, "msg: out of memory copying attributes");
    }
    return TXM_OK;
}

/* Stores the data of f (or data, for JSON) and its content type in m. */
static txm_status copy_data(txm_msg *m, const txm__msg_fields *f, const json_t *data,
                            txm_error *err)
{
    m->kind = f->kind;
    txm_status st = TXM_OK;
    if (f->kind == TXM_DATA_JSON && !f->json_text) {
        st = txm__json_dump(data, TXM_PAYLOAD_MAX, &m->payload, &m->payload_len, err);
    } else {
        const char *bytes = f->kind == TXM_DATA_NONE || f->bytes == NULL ? "" : f->bytes;
        size_t len = f->kind == TXM_DATA_NONE ? 0 : f->bytes_len;
        m->payload = txm__malloc(len + 1);
        if (m->payload == NULL)
            return txm_errf(err, TXM_NOMEM, "msg: out of memory copying data");
        memcpy(m->payload, bytes, len);
        m->payload[len] = '\0';
        m->payload_len = len;
    }
    if (st == TXM_OK && f->content_type != NULL)
        st = dup_field(&m->content_type, f->content_type, "content_type", err);
    return st;
}

txm_status txm__msg_create(const txm__msg_fields *f, const json_t *data, txm_msg **out,
                           txm_error *err)
{
    if (out == NULL || f == NULL)
        return txm_errf(err, TXM_INVALID, "msg_create: NULL argument");
    *out = NULL;
    txm_status st = check_fields(f, err);
    if (st == TXM_OK)
        st = check_data(f, data, err);
    char corr[TXM_UUID_LEN + 1] = "";
    const char *corr_id = f->correlation_id;
    if (st == TXM_OK && corr_id == NULL) {
        st = txm_uuid_v7(corr, err);
        corr_id = corr;
    }
    if (st != TXM_OK)
        return st;
    txm_msg *m = txm__calloc(1, sizeof *m);
    if (m == NULL)
        return txm_errf(err, TXM_NOMEM, "msg: out of memory");
    m->has_time = !f->no_time;
    m->created_at_us = m->has_time ? f->created_at_us : 0;
    st = copy_data(m, f, data, err);
    if (st == TXM_OK)
        st = dup_field(&m->id, f->id, "id", err);
    if (st == TXM_OK && f->source != NULL && f->source[0] != '\0')
        st = dup_field(&m->source, f->source, "source", err);
    if (st == TXM_OK)
        st = dup_field(&m->topic, f->topic, "topic", err);
    if (st == TXM_OK)
        st = dup_field(&m->aggregate_id, f->aggregate_id, "aggregate_id", err);
    if (st == TXM_OK)
        st = dup_field(&m->correlation_id, corr_id, "correlation_id", err);
    if (st == TXM_OK && f->extensions != NULL)
        st = copy_extensions(m, f->extensions, err);
    if (st != TXM_OK) {
        txm_msg_free(m);
        return st;
    }
    *out = m;
    return TXM_OK;
}

/* The fields of a message made by txm_msg_new_with or _trusted; checks out
 * and the payload first. */
static txm_status given_fields(const char *id, const char *source, const char *topic,
                               const char *aggregate_id, const char *correlation_id,
                               const char *payload_json, int64_t created_at_us, txm_msg **out,
                               txm__msg_fields *f, txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "msg_new: NULL out");
    *out = NULL;
    if (payload_json == NULL)
        return txm_errf(err, TXM_INVALID, "payload: missing");
    *f = (txm__msg_fields){.id = id,
                           .source = source,
                           .topic = topic,
                           .aggregate_id = aggregate_id,
                           .correlation_id = correlation_id,
                           .created_at_us = created_at_us};
    return TXM_OK;
}

txm_status txm_msg_new_with(const char *id, const char *source, const char *topic,
                            const char *aggregate_id, const char *correlation_id,
                            const char *payload_json, int64_t created_at_us, txm_msg **out,
                            txm_error *err)
{
    txm__msg_fields f;
    txm_status st = given_fields(id, source, topic, aggregate_id, correlation_id, payload_json,
                                 created_at_us, out, &f, err);
    /* Check the cheap fields before parsing a payload of up to 64 MiB. */
    if (st == TXM_OK)
        st = check_fields(&f, err);
    if (st != TXM_OK)
        return st;
    json_t *data = NULL;
    st = txm__parse_payload(payload_json, strnlen(payload_json, TXM_PAYLOAD_MAX + 1), &data, err);
    if (st == TXM_OK)
        st = txm__msg_create(&f, data, out, err);
    json_decref(data);
    return st;
}

txm_status txm_msg_new_trusted(const char *id, const char *source, const char *topic,
                               const char *aggregate_id, const char *correlation_id,
                               const char *payload_json, size_t payload_len, int64_t created_at_us,
                               txm_msg **out, txm_error *err)
{
    txm__msg_fields f;
    txm_status st = given_fields(id, source, topic, aggregate_id, correlation_id, payload_json,
                                 created_at_us, out, &f, err);
    if (st != TXM_OK)
        return st;
    f.json_text = 1;
    f.bytes = payload_json;
    f.bytes_len = payload_len;
    return txm__msg_create(&f, NULL, out, err);
}

txm_status txm_msg_new(const char *topic, const char *aggregate_id, const char *correlation_id,
                       const char *payload_json, txm_msg **out, txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "msg_new: NULL out");
    *out = NULL;
    char id[TXM_UUID_LEN + 1];
    txm_status st = txm_uuid_v7(id, err);
    if (st != TXM_OK)
        return st;
    return txm_msg_new_with(id, NULL, topic, aggregate_id, correlation_id, payload_json,
                            txm_now_us(), out, err);
}

/* Copies src's data, content type and other attributes into m. Returns
 * false when out of memory (m then holds what was copied, for txm_msg_free). */
static bool copy_rest(txm_msg *m, const txm_msg *src)
{
    m->has_time = src->has_time;
    m->kind = src->kind;
    m->payload_len = src->payload_len;
    m->payload = txm__malloc(src->payload_len + 1);
    if (m->payload == NULL)
        return false;
    memcpy(m->payload, src->payload, src->payload_len + 1);
    if (src->content_type != NULL && (m->content_type = txm__strdup(src->content_type)) == NULL)
        return false;
    if (src->ext_count == 0)
        return true;
    m->ext = txm__calloc(src->ext_count, sizeof *m->ext);
    if (m->ext == NULL)
        return false;
    for (size_t i = 0; i < src->ext_count; i++) {
        ext_attr *a = &m->ext[m->ext_count++];
        a->is_raw = src->ext[i].is_raw;
        a->name = txm__strdup(src->ext[i].name);
        a->value = txm__strdup(src->ext[i].value);
        if (a->name == NULL || a->value == NULL)
            return false;
    }
    return true;
}

txm_msg *txm_msg_copy(const txm_msg *msg)
{
    if (msg == NULL)
        return NULL;
    txm_msg *m = txm__calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->created_at_us = msg->created_at_us;
    m->id = txm__strdup(msg->id);
    m->source = msg->source != NULL ? txm__strdup(msg->source) : NULL;
    m->topic = txm__strdup(msg->topic);
    m->aggregate_id = txm__strdup(msg->aggregate_id);
    m->correlation_id = txm__strdup(msg->correlation_id);
    if (m->id == NULL || (msg->source != NULL && m->source == NULL) || m->topic == NULL ||
        m->aggregate_id == NULL || m->correlation_id == NULL || !copy_rest(m, msg)) {
        txm_msg_free(m);
        return NULL;
    }
    return m;
}

void txm_msg_free(txm_msg *msg)
{
    if (msg == NULL)
        return;
    txm_free(msg->id);
    txm_free(msg->source);
    txm_free(msg->topic);
    txm_free(msg->aggregate_id);
    txm_free(msg->correlation_id);
    txm_free(msg->payload);
    txm_free(msg->content_type);
    for (size_t i = 0; i < msg->ext_count; i++) {
        txm_free(msg->ext[i].name);
        txm_free(msg->ext[i].value);
    }
    txm_free(msg->ext);
    txm_free(msg);
}

txm_status txm_msg_set_source(txm_msg *msg, const char *source, txm_error *err)
{
    if (msg == NULL)
        return txm_errf(err, TXM_INVALID, "msg_set_source: NULL msg");
    char *copy = NULL;
    if (source != NULL && source[0] != '\0') {
        txm_status st = txm__check_text("source", source, TXM_ID_MAX, 1, TXM_INVALID, err);
        if (st != TXM_OK)
            return st;
        copy = txm__strdup(source);
        if (copy == NULL)
            return txm_errf(err, TXM_NOMEM, "msg_set_source: out of memory");
    }
    /* Replace only after the copy succeeded, so a failure leaves msg as it was. */
    txm_free(msg->source);
    msg->source = copy;
    return TXM_OK;
}

const char *txm_msg_id(const txm_msg *msg)
{
    return msg != NULL ? msg->id : NULL;
}

const char *txm_msg_source(const txm_msg *msg)
{
    if (msg == NULL)
        return NULL;
    return msg->source != NULL ? msg->source : "";
}

const char *txm_msg_topic(const txm_msg *msg)
{
    return msg != NULL ? msg->topic : NULL;
}

const char *txm_msg_aggregate_id(const txm_msg *msg)
{
    return msg != NULL ? msg->aggregate_id : NULL;
}

const char *txm_msg_correlation_id(const txm_msg *msg)
{
    return msg != NULL ? msg->correlation_id : NULL;
}

const char *txm_msg_payload(const txm_msg *msg)
{
    if (msg == NULL)
        return NULL;
    return msg->kind == TXM_DATA_JSON ? msg->payload : "";
}

int64_t txm_msg_created_at_us(const txm_msg *msg)
{
    return msg != NULL ? msg->created_at_us : 0;
}

txm_data_kind txm_msg_data_kind(const txm_msg *msg)
{
    return msg != NULL ? msg->kind : TXM_DATA_NONE;
}

const char *txm_msg_data(const txm_msg *msg, size_t *len)
{
    if (len != NULL)
        *len = msg != NULL ? msg->payload_len : 0;
    return msg != NULL ? msg->payload : NULL;
}

const char *txm_msg_content_type(const txm_msg *msg)
{
    if (msg == NULL)
        return NULL;
    if (msg->content_type != NULL)
        return msg->content_type;
    /* CloudEvents: data without a datacontenttype is application/json. */
    return msg->kind == TXM_DATA_JSON ? "application/json" : "";
}

bool txm_msg_has_time(const txm_msg *msg)
{
    return msg != NULL && msg->has_time;
}

const char *txm_msg_extension(const txm_msg *msg, const char *name)
{
    if (msg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < msg->ext_count; i++)
        if (strcmp(msg->ext[i].name, name) == 0)
            return msg->ext[i].value;
    return NULL;
}

size_t txm_msg_extension_count(const txm_msg *msg)
{
    return msg != NULL ? msg->ext_count : 0;
}

const char *txm_msg_extension_at(const txm_msg *msg, size_t i, const char **name)
{
    if (name != NULL)
        *name = NULL;
    if (msg == NULL || i >= msg->ext_count)
        return NULL;
    if (name != NULL)
        *name = msg->ext[i].name;
    return msg->ext[i].value;
}

bool txm__msg_extension_is_raw(const txm_msg *msg, size_t i)
{
    return msg != NULL && i < msg->ext_count && msg->ext[i].is_raw;
}
