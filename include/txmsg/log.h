/* Logging: the library never prints; it reports through a callback that the
 * program sets in each module's options. */
#ifndef TXMSG_LOG_H
#define TXMSG_LOG_H

#include "txmsg/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Log levels, in increasing severity. */
#define TXM_LOG_DEBUG 0
#define TXM_LOG_INFO 1
#define TXM_LOG_WARN 2
#define TXM_LOG_ERROR 3

/* Log callback: level is one of TXM_LOG_*, text one line without a newline.
 * Borrows: text is valid during the call only. Thread: any thread may call it. */
typedef void (*txm_log_fn)(void *ctx, int level, const char *text);

/* Longest line txm_logf formats, in bytes with the NUL; longer ones are cut. */
#define TXM_LOG_TEXT_MAX 1024

/* Formats one line printf-style and hands it to fn at level; does nothing
 * when fn is NULL. The library logs every line through this, and programs
 * may too, so one callback sees them all. Thread: any; fn runs on it. */
TXM_API void txm_logf(txm_log_fn fn, void *ctx, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
