/* Error detail filling: bounded, allocation-free. */
#include "txmsg/error.h"

#include <stdarg.h>
#include <stdio.h>

txm_status txm_errf(txm_error *err, txm_status st, const char *fmt, ...)
{
    if (err == NULL)
        return st;
    err->status = st;
    err->sys_errno = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap); /* truncates, always NUL-terminates */
    va_end(ap);
    return st;
}

void txm_error_clear(txm_error *err)
{
    if (err == NULL)
        return;
    err->status = TXM_OK;
    err->sys_errno = 0;
    err->text[0] = '\0';
}
