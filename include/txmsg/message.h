/* Message: one event on its way through the outbox, the broker and the inbox,
 * and its CloudEvents 1.0 JSON envelope (structured mode). */
#ifndef TXMSG_MESSAGE_H
#define TXMSG_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TXM_UUID_LEN 36             /* text form, without the NUL */
#define TXM_TOPIC_MAX 255           /* bytes */
#define TXM_ID_MAX 255              /* message, aggregate, correlation id, source: bytes */
#define TXM_JSON_DEPTH_MAX 64       /* nesting levels of a payload; its own container is 1 */
#define TXM_PAYLOAD_MAX (64u << 20) /* bytes of JSON data */
#define TXM_ENVELOPE_MAX (TXM_PAYLOAD_MAX + 4096u)

typedef struct txm_msg txm_msg;

/* Fills out (TXM_UUID_LEN + 1 bytes) with a new UUID version 7 (time-ordered,
 * RFC 9562) in lower-case text form. Returns TXM_IO if no randomness is
 * available. Thread: any. */
TXM_API txm_status txm_uuid_v7(char out[TXM_UUID_LEN + 1], txm_error *err);

/* True if s is a UUID in 8-4-4-4-12 hexadecimal text form. */
TXM_API bool txm_uuid_is_valid(const char *s);

/* Creates a message with a new UUID v7 id and created_at = now.
 * topic: 1..TXM_TOPIC_MAX bytes of [A-Za-z0-9._-]; aggregate_id: 1..TXM_ID_MAX
 * bytes; correlation_id: printable text (normally a UUID), or NULL for a new
 * one; payload_json: a JSON object or array (the event data) nested at most
 * TXM_JSON_DEPTH_MAX levels, validated here. Ids are UTF-8 without control
 * characters.
 * Returns TXM_INVALID for bad arguments, TXM_MALFORMED for bad JSON,
 * TXM_TOO_BIG past TXM_PAYLOAD_MAX. Owns: *out is the caller's (txm_msg_free);
 * it is NULL on failure. Borrows: the strings are copied. */
TXM_API txm_status txm_msg_new(const char *topic, const char *aggregate_id,
                               const char *correlation_id, const char *payload_json, txm_msg **out,
                               txm_error *err);

/* Same, with every field given: used to rebuild a stored message.
 * created_at_us: microseconds since the Unix epoch, within years 0000-9999
 * (else TXM_INVALID). source may be NULL. */
TXM_API txm_status txm_msg_new_with(const char *id, const char *source, const char *topic,
                                    const char *aggregate_id, const char *correlation_id,
                                    const char *payload_json, int64_t created_at_us, txm_msg **out,
                                    txm_error *err);

/* As txm_msg_new_with, for payload text that was validated as JSON before,
 * such as an outbox row that txm_outbox_publish wrote (the relay's case):
 * the payload_len bytes at payload_json are kept as they are, not parsed,
 * only checked to be at most TXM_PAYLOAD_MAX bytes whose first and last
 * characters (white space aside) are "{" and "}" or "[" and "]"; else
 * TXM_MALFORMED or TXM_TOO_BIG. Text that is not valid JSON inside makes an
 * envelope consumers cannot decode (they dead-letter it): validate text
 * from elsewhere with txm_msg_new_with. */
TXM_API txm_status txm_msg_new_trusted(const char *id, const char *source, const char *topic,
                                       const char *aggregate_id, const char *correlation_id,
                                       const char *payload_json, size_t payload_len,
                                       int64_t created_at_us, txm_msg **out, txm_error *err);

/* Returns a deep copy, or NULL when out of memory. */
TXM_API txm_msg *txm_msg_copy(const txm_msg *msg);

TXM_API void txm_msg_free(txm_msg *msg); /* NULL-safe */

/* Sets the producing service's name (CloudEvents "source"). NULL clears it.
 * Returns TXM_INVALID past TXM_ID_MAX bytes. */
TXM_API txm_status txm_msg_set_source(txm_msg *msg, const char *source, txm_error *err);

/* Getters. Borrows: valid while msg lives and is not changed. */
TXM_API const char *txm_msg_id(const txm_msg *msg);
TXM_API const char *txm_msg_source(const txm_msg *msg); /* "" when unset */
TXM_API const char *txm_msg_topic(const txm_msg *msg);
TXM_API const char *txm_msg_aggregate_id(const txm_msg *msg);
TXM_API const char *txm_msg_correlation_id(const txm_msg *msg);
TXM_API const char *txm_msg_payload(const txm_msg *msg);   /* JSON text, compact unless from
                                                            * txm_msg_new_trusted; "" unless
                                                            * TXM_DATA_JSON (see txm_msg_data) */
TXM_API int64_t txm_msg_created_at_us(const txm_msg *msg); /* 0 when !txm_msg_has_time */

/* What a message's data is. A message made by txm_msg_new is always
 * TXM_DATA_JSON; a decoded CloudEvent may be any of them. Append only. */
typedef enum {
    TXM_DATA_JSON,   /* "data" is a JSON value (an object or array from txm_msg_new) */
    TXM_DATA_TEXT,   /* "data" is a string and datacontenttype is not JSON */
    TXM_DATA_BINARY, /* "data_base64": bytes */
    TXM_DATA_NONE,   /* the event has no data */
} txm_data_kind;

/* The kind of msg's data; TXM_DATA_NONE for NULL. */
TXM_API txm_data_kind txm_msg_data_kind(const txm_msg *msg);

/* The data as bytes: the compact JSON text for TXM_DATA_JSON, the string's
 * UTF-8 bytes for TXM_DATA_TEXT, the decoded bytes for TXM_DATA_BINARY, ""
 * for TXM_DATA_NONE. Always NUL-terminated, but binary data may hold NULs, so
 * use *len (may be NULL). Borrows: valid while msg lives and is not changed. */
TXM_API const char *txm_msg_data(const txm_msg *msg, size_t *len);

/* The data's media type (CloudEvents "datacontenttype") as received:
 * "application/json" when absent and the data is JSON; "" when absent
 * otherwise (binary data of unknown type, or no data). Borrows: as above. */
TXM_API const char *txm_msg_content_type(const txm_msg *msg);

/* False when the decoded event had no "time"; txm_msg_created_at_us is then 0
 * and txm_msg_encode writes no "time". Messages made here always have one. */
TXM_API bool txm_msg_has_time(const txm_msg *msg);

/* The value of an attribute that has no getter of its own (extensions such
 * as "traceparent", and "dataschema"), in its CloudEvents canonical string
 * form ("5", "true"), or NULL when the event does not carry it. The decoded
 * attributes are kept and txm_msg_encode writes them back with their JSON
 * type. Borrows: valid while msg lives and is not changed. */
TXM_API const char *txm_msg_extension(const txm_msg *msg, const char *name);

/* Number of such attributes, and the i-th one (0 <= i < count, in document
 * order): its name in *name (may be NULL), its value returned; NULL when i is
 * out of range. Borrows: as above. */
TXM_API size_t txm_msg_extension_count(const txm_msg *msg);
TXM_API const char *txm_msg_extension_at(const txm_msg *msg, size_t i, const char **name);

/* Encodes msg as a CloudEvents 1.0 JSON document (structured mode): specversion,
 * id, source, type, time, datacontenttype, subject and partitionkey (the
 * aggregate id), correlationid, the other attributes kept from decoding, and
 * "data" (or "data_base64" for binary data). Attributes a decoded event did
 * not have (time, an empty aggregate id, no data) are left out. Returns
 * TXM_TOO_BIG past TXM_ENVELOPE_MAX, TXM_NOMEM. Owns: *out is the caller's
 * (txm_free), NUL-terminated, *len (may be NULL) its length. */
TXM_API txm_status txm_msg_encode(const txm_msg *msg, char **out, size_t *len, txm_error *err);

/* Decodes a CloudEvents 1.0 structured JSON document of len bytes (need not
 * be NUL-terminated). Accepts any valid event: required are specversion "1.0",
 * id, source and type (1..TXM_TOPIC_MAX bytes of [A-Za-z0-9._-], as it names
 * the topic). Defaults: aggregate id from "subject", else "partitionkey",
 * else ""; correlation id from "correlationid", else the message id; no
 * "time" gives txm_msg_has_time false. Data: see txm_msg_data_kind.
 * Returns TXM_MALFORMED naming the first problem (not JSON, wrong type, missing
 * or invalid attribute, both "data" and "data_base64"), TXM_TOO_BIG past
 * TXM_ENVELOPE_MAX, TXM_NOMEM. Never crashes on any input. Owns: *out is the
 * caller's; NULL on failure. Thread: any. */
TXM_API txm_status txm_msg_decode(const char *buf, size_t len, txm_msg **out, txm_error *err);

/* Formats a time in microseconds since the epoch as RFC 3339 UTC with
 * microseconds: "2026-11-26T22:44:31.123456Z". out needs 28 bytes. Times
 * outside years 0000-9999 are clamped to that range. */
#define TXM_TIME_LEN 27
TXM_API void txm_time_format(int64_t us, char out[TXM_TIME_LEN + 1]);

/* Parses RFC 3339 (any offset, 0..9 fraction digits) into microseconds since
 * the epoch, UTC. Returns TXM_MALFORMED on bad text. */
TXM_API txm_status txm_time_parse(const char *s, int64_t *us, txm_error *err);

/* Microseconds since the Unix epoch, from the real-time clock. */
TXM_API int64_t txm_now_us(void);

#ifdef __cplusplus
}
#endif
#endif
