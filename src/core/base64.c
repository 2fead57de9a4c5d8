/* Base64 (RFC 4648, standard alphabet) for the "data_base64" member of
 * CloudEvents JSON documents. */
#include <string.h>

#include "core/alloc.h"
#include "core/core_int.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void txm__base64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = alphabet[v >> 6 & 63];
        *out++ = alphabet[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* The 6-bit value of base64 character c, or -1. */
static int sextet(unsigned char c)
{
    const char *p = c != '\0' ? strchr(alphabet, c) : NULL;
    return p != NULL ? (int)(p - alphabet) : -1;
}

txm_status txm__base64_decode(const char *in, size_t len, char **out, size_t *out_len,
                              txm_error *err)
{
    *out = NULL;
    *out_len = 0;
    /* Padding is optional when reading: strip up to two '=' at the end of a
     * padded text; what remains must be whole groups plus 2 or 3 characters. */
    if (len % 4 == 0 && len > 0 && in[len - 1] == '=')
        len -= in[len - 2] == '=' ? 2 : 1;
    if (len % 4 == 1)
        return txm_errf(err, TXM_MALFORMED, "base64: %zu characters is not a valid length", len);
    char *buf = txm__malloc(len / 4 * 3 + 3);
    if (buf == NULL)
        return txm_errf(err, TXM_NOMEM, "base64: out of memory");
    size_t n = 0;
    unsigned acc = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sextet((unsigned char)in[i]);
        if (v < 0) {
            txm_free(buf);
            return txm_errf(err, TXM_MALFORMED, "base64: character %zu is not base64", i);
        }
        acc = acc << 6 | (unsigned)v;
        if (i % 4 == 3) {
            buf[n++] = (char)(acc >> 16);
            buf[n++] = (char)(acc >> 8 & 255);
            buf[n++] = (char)(acc & 255);
            acc = 0;
        }
    }
    /* The last group of 2 or 3 characters carries 1 or 2 bytes. */
    if (len % 4 == 2) {
        buf[n++] = (char)(acc >> 4);
    } else if (len % 4 == 3) {
        buf[n++] = (char)(acc >> 10);
        buf[n++] = (char)(acc >> 2 & 255);
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return TXM_OK;
}
