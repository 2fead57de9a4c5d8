/* The envelope helpers other modules use: the claim-check reference that
 * decoding refuses, and CloudEvents binary mode turned into a document
 * (envelope_binary.c). */
#ifndef TXM_CORE_ENVELOPE_H
#define TXM_CORE_ENVELOPE_H

/* "dataref" of a claim-check document (transport/claim_check.c). */
#define TXM__DATAREF_PREFIX "txmsg-blob:"

#include <stddef.h>

#include "txmsg/error.h"

/* One header of a CloudEvents binary-mode message whose name starts with
 * "ce-" (any letter case). Borrows: both strings. */
typedef struct txm__ce_header {
    const char *name;  /* the whole header name, "ce-" included */
    const char *value; /* as sent: percent-encoded, maybe a quoted string */
} txm__ce_header;

/* Builds the structured JSON document (CloudEvents JSON format) of a
 * binary-mode message: the attributes from hdrs (percent-decoded, names
 * lower-cased, all strings), datacontenttype from "ce-datacontenttype" or
 * else content_type (may be NULL), and body as the data: JSON for a JSON
 * media type, a string for a text one (text/..., XML) in valid UTF-8, else
 * data_base64; an empty body is no data. Returns TXM_MALFORMED for a bad
 * header value or a JSON body that is not JSON, TXM_TOO_BIG past
 * TXM_ENVELOPE_MAX, TXM_NOMEM. Owns: *out is the caller's (txm_free),
 * NUL-terminated, NULL on failure; *len its length. Thread: any. */
txm_status txm__envelope_from_binary(const txm__ce_header *hdrs, size_t count,
                                     const char *content_type, const char *body, size_t body_len,
                                     char **out, size_t *len, txm_error *err);

#endif
