/* txm_logf (txmsg/log.h) and the monotonic clock (core/clock.h). */
#include "txmsg/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "core/clock.h"

void txm_logf(txm_log_fn fn, void *ctx, int level, const char *fmt, ...)
{
    if (fn == NULL || fmt == NULL)
        return;
    char text[TXM_LOG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fn(ctx, level, text);
}

int64_t txm__mono_ms(void)
{
    struct timespec ts = {0};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
