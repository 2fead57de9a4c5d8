/* NATS JetStream transport, large payloads (claim check): a payload is
 * stored in the stream TXMSG_BLOBS in chunks of BLOB_CHUNK_LEN bytes on
 * txmsg-blob.<key in hex>.<n>, chunk 0 carrying the chunk count, and read
 * back in order. Thread safety as in transport_nats.c. */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "core/alloc.h"
#include "transport/transport_nats_int.h"

/* ---- large payloads (claim check) ---- */

/* "txmsg-blob.<key in hex>.<chunk>": hex keeps any key a single token. */
static txm_status blob_subject(const char *key, size_t chunk, char *out, size_t len, txm_error *err)
{
    size_t klen = strlen(key);
    size_t pre = strlen(BLOB_SUBJECT_PREFIX);
    if (pre + 2 * klen + 24 > len)
        return txm_errf(err, TXM_INVALID, "nats: payload key too long");
    memcpy(out, BLOB_SUBJECT_PREFIX, pre);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < klen; i++) {
        out[pre + 2 * i] = hex[(unsigned char)key[i] >> 4];
        out[pre + 2 * i + 1] = hex[(unsigned char)key[i] & 15];
    }
    snprintf(out + pre + 2 * klen, len - pre - 2 * klen, ".%zu", chunk);
    return TXM_OK;
}

static txm_status put_chunk(txm__broker *b, const char *key, size_t i, const char *data, size_t len,
                            size_t chunks, txm_error *err)
{
    char subj[2 * TXM_ID_MAX + 64];
    txm_status st = blob_subject(key, i, subj, sizeof subj, err);
    if (st != TXM_OK)
        return st;
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, data, (int)len);
    char count[32];
    snprintf(count, sizeof count, "%zu", chunks);
    if (s == NATS_OK && i == 0)
        s = natsMsgHeader_Set(m, HDR_CHUNKS, count);
    return txm__nats_publish_sync(b, s, m, "store payload", key, err);
}

/* Chunk 0 carries the count and is written last: a reader that finds it
 * finds every other chunk too. */
txm_status txm__nats_blob_put(txm__broker *b, const char *key, const char *body, size_t len,
                              txm_error *err)
{
    size_t chunks = len == 0 ? 1 : (len + BLOB_CHUNK_LEN - 1) / BLOB_CHUNK_LEN;
    txm_status st = TXM_OK;
    for (size_t i = chunks; st == TXM_OK && i-- > 0;) {
        size_t off = i * BLOB_CHUNK_LEN;
        size_t n = len - off < BLOB_CHUNK_LEN ? len - off : BLOB_CHUNK_LEN;
        st = put_chunk(b, key, i, body + off, n, chunks, err);
    }
    return st;
}

static txm_status get_chunk(txm__broker *b, const char *key, size_t i, natsMsg **m, txm_error *err)
{
    char subj[2 * TXM_ID_MAX + 64];
    txm_status st = blob_subject(key, i, subj, sizeof subj, err);
    jsErrCode jerr = 0;
    natsStatus s =
        st == TXM_OK ? js_GetLastMsg(m, b->js, BLOB_STREAM, subj, NULL, &jerr) : NATS_ERR;
    if (st == TXM_OK && s != NATS_OK)
        st = txm__nats_nfail(err, s, jerr, "read payload", key);
    return st;
}

txm_status txm__nats_blob_get(txm__broker *b, const char *key, char **out, size_t *len,
                              txm_error *err)
{
    *out = NULL;
    *len = 0;
    natsMsg *m = NULL;
    txm_status st = get_chunk(b, key, 0, &m, err);
    const char *count = NULL;
    if (st == TXM_OK && natsMsgHeader_Get(m, HDR_CHUNKS, &count) != NATS_OK)
        st = txm_errf(err, TXM_MALFORMED, "nats: payload %s has no chunk count", key);
    size_t chunks = count != NULL ? (size_t)strtoull(count, NULL, 10) : 0;
    if (st == TXM_OK && (chunks == 0 || chunks > TXM_ENVELOPE_MAX / BLOB_CHUNK_LEN + 1))
        st = txm_errf(err, TXM_MALFORMED, "nats: payload %s has a bad chunk count", key);
    char *buf = st == TXM_OK ? txm__malloc(chunks * BLOB_CHUNK_LEN + 1) : NULL;
    if (st == TXM_OK && buf == NULL)
        st = txm_errf(err, TXM_NOMEM, "nats: out of memory");
    for (size_t i = 0; st == TXM_OK && i < chunks; i++) {
        if (i > 0)
            st = get_chunk(b, key, i, &m, err);
        int n = st == TXM_OK ? natsMsg_GetDataLength(m) : 0;
        if (st == TXM_OK && (n < 0 || (size_t)n > BLOB_CHUNK_LEN))
            st = txm_errf(err, TXM_MALFORMED, "nats: payload %s chunk %zu too long", key, i);
        if (st == TXM_OK) {
            memcpy(buf + *len, natsMsg_GetData(m), (size_t)n);
            *len += (size_t)n;
        }
        natsMsg_Destroy(m);
        m = NULL;
    }
    natsMsg_Destroy(m);
    if (st != TXM_OK) {
        free(buf);
        *len = 0;
        return st;
    }
    buf[*len] = '\0';
    *out = buf;
    return TXM_OK;
}
