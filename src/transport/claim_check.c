/* Large payloads by claim check. A message over the transport's limit is
 * stored once in the transport's payload store, and the broker carries a
 * small CloudEvents document without "data" but with
 * "dataref": "txmsg-blob:<message id>" (the CloudEvents dataref extension).
 * Receiving swaps the full document back in, so consumers never see the
 * reference. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/envelope.h"
#include "transport/transport_int.h"

#define DATAREF_PREFIX TXM__DATAREF_PREFIX /* decoding refuses one left unresolved */
/* A claim document is small; larger bodies are not even looked at. */
#define CLAIM_MAX_LEN 8192

txm_status txm__claim_store(txm_transport *t, const txm_outgoing *m, char **claim, size_t *len,
                            txm_error *err)
{
    *claim = NULL;
    if (t->ops->blob_put == NULL)
        return txm_errf(err, TXM_TOO_BIG, "publish: message %s is %zu bytes, limit %zu",
                        m->message_id, m->len, t->opts.max_message_len);
    json_error_t jerr;
    json_t *doc = json_loadb(m->body, m->len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return txm_errf(err, TXM_TOO_BIG,
                        "publish: message %s is %zu bytes and not a CloudEvents document",
                        m->message_id, m->len);
    }
    char ref[TXM_ID_MAX + sizeof DATAREF_PREFIX];
    snprintf(ref, sizeof ref, "%s%s", DATAREF_PREFIX, m->message_id);
    json_object_del(doc, "data");
    json_object_set_new(doc, "dataref", json_string(ref));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return txm_errf(err, TXM_NOMEM, "publish: out of memory");
    txm_status st = t->ops->blob_put(t->broker, ref, m->body, m->len, err);
    if (st != TXM_OK) {
        free(text);
        return st;
    }
    *claim = text;
    *len = strlen(text);
    return TXM_OK;
}

/* Returns the payload key when body is a claim document, else NULL.
 * Owns: the result is the caller's (free). */
static char *claim_key(const char *body, size_t len)
{
    if (len > CLAIM_MAX_LEN || memmem(body, len, "\"dataref\"", 9) == NULL)
        return NULL;
    json_t *doc = json_loadb(body, len, 0, NULL);
    const char *ref = json_string_value(json_object_get(doc, "dataref"));
    char *key = NULL;
    if (ref != NULL && strncmp(ref, DATAREF_PREFIX, strlen(DATAREF_PREFIX)) == 0 &&
        json_object_get(doc, "data") == NULL)
        key = txm__strdup(ref);
    json_decref(doc);
    return key;
}

void txm__claim_resolve(txm_transport *t, txm_delivery *d)
{
    if (t->ops->blob_get == NULL)
        return;
    char *key = claim_key(d->body, d->len);
    if (key == NULL)
        return;
    char *full = NULL;
    size_t len = 0;
    txm_error err;
    if (t->ops->blob_get(t->broker, key, &full, &len, &err) == TXM_OK) {
        free(d->body);
        d->body = full;
        d->len = len;
    } else {
        /* The reference stays: the consumer cannot decode it and
         * dead-letters it, with this reason in the log. */
        txm_logf(t->opts.log, t->opts.log_ctx, TXM_LOG_WARN,
                 "transport: payload %s of message %s: %s", key, d->message_id, err.text);
    }
    free(key);
}
