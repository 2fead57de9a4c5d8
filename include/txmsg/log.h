/* Logging: the library never prints; it reports through a callback that the
 * program sets in each module's options. */
#ifndef TXMSG_LOG_H
#define TXMSG_LOG_H

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

#ifdef __cplusplus
}
#endif
#endif
