/* UUID version 7 generation (RFC 9562) and UUID text-form validation. */
#include "txmsg/message.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/types.h>

/* Fills buf with len random bytes from getrandom(2), retrying on EINTR and
 * short reads. Returns 0, or the errno of the failure. */
static int fill_random(unsigned char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        done += (size_t)n;
    }
    return 0;
}

txm_status txm_uuid_v7(char out[TXM_UUID_LEN + 1], txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "uuid_v7: NULL argument");
    unsigned char b[16] = {0};
    int e = fill_random(b + 6, 10);
    if (e != 0) {
        txm_errf(err, TXM_IO, "uuid_v7: getrandom failed (errno %d)", e);
        if (err != NULL)
            err->sys_errno = e;
        return TXM_IO;
    }
    /* RFC 9562 section 5.7: bits 0..47 are the Unix time in milliseconds,
     * big-endian; then version 7 in the high nibble of octet 6 and the
     * variant 0b10 in the top bits of octet 8. The other 74 bits stay random:
     * ids from one millisecond are unique but not ordered among themselves. */
    uint64_t ms = (uint64_t)(txm_now_us() / 1000) & 0xFFFFFFFFFFFFull;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0F));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3F));

    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0F];
    }
    out[o] = '\0';
    return TXM_OK;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool txm_uuid_is_valid(const char *s)
{
    if (s == NULL)
        return false;
    /* Stops at the first wrong character, so it never reads past the NUL. */
    for (int i = 0; i < TXM_UUID_LEN; i++) {
        bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return s[TXM_UUID_LEN] == '\0';
}
