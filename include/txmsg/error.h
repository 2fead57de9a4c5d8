/* Error detail: a caller-owned value filled by fallible calls. */
#ifndef TXMSG_ERROR_H
#define TXMSG_ERROR_H

#include "txmsg/api.h"
#include "txmsg/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TXM_ERROR_TEXT_LEN 256

/* Every fallible call takes an optional txm_error *err as its last argument
 * (NULL is allowed). On failure it holds the status and a one-line text.
 * Nothing is allocated to fill it. */
typedef struct txm_error {
    txm_status status;             /* same value the call returned */
    int sys_errno;                 /* errno at the failing syscall, or 0 */
    char text[TXM_ERROR_TEXT_LEN]; /* NUL-terminated, truncated to fit */
} txm_error;

/* Fills err (when not NULL) with st and a printf-style text; returns st.
 * sys_errno is set to 0. Thread: any. */
TXM_API txm_status txm_errf(txm_error *err, txm_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Resets err to TXM_OK with an empty text. NULL-safe. */
TXM_API void txm_error_clear(txm_error *err);

/* Frees memory the library handed to the caller (returned char *). NULL-safe. */
TXM_API void txm_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
