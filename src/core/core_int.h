/* Internal helpers shared by the message, envelope and time code in src/core:
 * field validation, payload JSON handling and the message constructor. */
#ifndef TXM_CORE_CORE_INT_H
#define TXM_CORE_CORE_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/message.h"

/* The range txm_time_format can show: 0000-01-01T00:00:00.000000Z to
 * 9999-12-31T23:59:59.999999Z, in microseconds since the epoch. */
#define TXM__TIME_MIN_US (-62167219200000000LL)
#define TXM__TIME_MAX_US 253402300799999999LL

/* Every field of a message before validation. Borrows: all strings. */
typedef struct txm__msg_fields {
    const char *id;             /* message id, 1..TXM_ID_MAX bytes */
    const char *source;         /* producing service, NULL or 0..TXM_ID_MAX bytes */
    const char *topic;          /* 1..TXM_TOPIC_MAX bytes of [A-Za-z0-9._-] */
    const char *aggregate_id;   /* 1..TXM_ID_MAX bytes */
    const char *correlation_id; /* 1..TXM_ID_MAX bytes; NULL for a new UUID v7 */
    int64_t created_at_us;      /* microseconds since the epoch, TXM__TIME_*_US */
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

/* Validates f and data (the payload, an object or array) and builds a message
 * whose payload is data serialised compactly. Returns TXM_INVALID for a bad
 * field, TXM_MALFORMED or TXM_TOO_BIG for a bad payload, TXM_NOMEM, TXM_IO.
 * Owns: *out is the caller's, NULL on failure. Borrows: f and data. */
txm_status txm__msg_create(const txm__msg_fields *f, const json_t *data, txm_msg **out,
                           txm_error *err);

#endif
