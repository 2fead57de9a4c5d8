/* Internal helpers shared by the message, envelope and time code in src/core:
 * field validation, payload JSON handling and the message constructor. */
#ifndef TXM_CORE_CORE_INT_H
#define TXM_CORE_CORE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/message.h"

/* The range txm_time_format can show: 0000-01-01T00:00:00.000000Z to
 * 9999-12-31T23:59:59.999999Z, in microseconds since the epoch. */
#define TXM__TIME_MIN_US (-62167219200000000LL)
#define TXM__TIME_MAX_US 253402300799999999LL

/* Most bytes of a datacontenttype (a media type with its parameters). */
#define TXM__CONTENT_TYPE_MAX 1024

/* Every field of a message before validation. Borrows: all strings and
 * json values. The members after created_at_us are for decoded events; zero
 * gives a message as txm_msg_new makes it. */
typedef struct txm__msg_fields {
    const char *id;             /* message id, 1..TXM_ID_MAX bytes */
    const char *source;         /* producing service, NULL or 0..TXM_ID_MAX bytes */
    const char *topic;          /* 1..TXM_TOPIC_MAX bytes of [A-Za-z0-9._-] */
    const char *aggregate_id;   /* 1..TXM_ID_MAX bytes ("" allowed if decoded) */
    const char *correlation_id; /* 1..TXM_ID_MAX bytes; NULL for a new UUID v7 */
    int64_t created_at_us;      /* microseconds since the epoch, TXM__TIME_*_US */
    int no_time;                /* the event has no time: created_at_us is ignored, 0 */
    int decoded;                /* from a document: aggregate id may be "", data any JSON */
    txm_data_kind kind;         /* JSON: the data argument; TEXT, BINARY: bytes below */
    int json_text;              /* JSON data given as text already validated, in bytes */
    const char *bytes;          /* TEXT or BINARY data (or JSON with json_text), bytes_len bytes */
    size_t bytes_len;           /* at most TXM_PAYLOAD_MAX */
    const char *content_type;   /* datacontenttype, NULL when absent */
    const json_t *extensions;   /* object of other attributes (string, integer or
                                 * boolean values, checked by the caller), or NULL */
} txm__msg_fields;

/* Checks that s is a text attribute: not NULL, at most max bytes, non-empty
 * unless allow_empty, valid UTF-8 without control characters. what names it
 * in the error text. Returns TXM_OK or st. */
txm_status txm__check_text(const char *what, const char *s, size_t max, int allow_empty,
                           txm_status st, txm_error *err);

/* Checks that s is a topic: 1..TXM_TOPIC_MAX bytes of [A-Za-z0-9._-].
 * Returns TXM_OK or st, naming it what. */
txm_status txm__check_topic(const char *what, const char *s, txm_status st, txm_error *err);

/* Checks that json is an object or array nested at most TXM_JSON_DEPTH_MAX
 * deep. Returns TXM_OK or TXM_MALFORMED, naming it what. */
txm_status txm__check_payload(const char *what, const json_t *json, txm_error *err);

/* Parses len bytes of JSON text as a payload (see txm__check_payload), with
 * duplicate keys rejected. Returns TXM_MALFORMED, TXM_TOO_BIG past
 * TXM_PAYLOAD_MAX, TXM_NOMEM. Owns: *out is the caller's (json_decref),
 * NULL on failure. */
txm_status txm__parse_payload(const char *text, size_t len, json_t **out, txm_error *err);

/* Serialises json compactly into a new NUL-terminated buffer of at most cap
 * bytes before the NUL. Returns TXM_TOO_BIG past cap, TXM_NOMEM. Owns: *out
 * is the caller's (txm_free), NULL on failure; *len (may be NULL) its length. */
txm_status txm__json_dump(const json_t *json, size_t cap, char **out, size_t *len, txm_error *err);

/* Validates f and data and builds a message whose payload is data serialised
 * compactly. data is the payload for f->kind TXM_DATA_JSON (an object or
 * array, or any JSON value if f->decoded)
 * and is ignored otherwise (may be NULL). Returns TXM_INVALID for a bad field,
 * TXM_MALFORMED or TXM_TOO_BIG for a bad payload, TXM_NOMEM, TXM_IO.
 * Owns: *out is the caller's, NULL on failure. Borrows: f and data. */
txm_status txm__msg_create(const txm__msg_fields *f, const json_t *data, txm_msg **out,
                           txm_error *err);

/* True if the i-th attribute of txm_msg_extension_at is an integer or a
 * boolean, written in JSON as is rather than as a string. */
bool txm__msg_extension_is_raw(const txm_msg *msg, size_t i);

/* Bytes txm__base64_encode writes for len bytes, without the NUL. */
#define TXM__BASE64_LEN(len) (((len) + 2) / 3 * 4)

/* Writes len bytes as standard base64 (RFC 4648, padded) at out, which holds
 * TXM__BASE64_LEN(len) + 1 bytes, and adds a NUL. */
void txm__base64_encode(const unsigned char *in, size_t len, char *out);

/* Decodes len bytes of base64 text (RFC 4648 alphabet, padding optional) into
 * a new buffer of *out_len bytes plus a NUL. Returns TXM_MALFORMED for a
 * character outside the alphabet or a bad length, TXM_NOMEM. Owns: *out is
 * the caller's (txm_free), NULL on failure. */
txm_status txm__base64_decode(const char *in, size_t len, char **out, size_t *out_len,
                              txm_error *err);

#endif
