/* Allocation wrappers with a fault-injection hook for tests. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "txmsg/error.h"

/* Countdown to the injected failure; negative when disabled. Process-wide on
 * purpose: it exists for tests, which reach every allocation through it. */
static atomic_long fail_countdown = -1;

void txm__alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

static int should_fail(void)
{
    long n = atomic_load(&fail_countdown);
    if (n < 0)
        return 0;
    n = atomic_fetch_sub(&fail_countdown, 1);
    if (n == 0)
        return 1;
    if (n < 0) /* lost a race past zero: restore "disabled" */
        atomic_store(&fail_countdown, -1);
    return 0;
}

void *txm__malloc(size_t len)
{
    if (should_fail())
        return NULL;
    return malloc(len == 0 ? 1 : len);
}

void *txm__calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
}

void *txm__realloc(void *p, size_t len)
{
    if (should_fail())
        return NULL;
    return realloc(p, len == 0 ? 1 : len);
}

char *txm__strndup(const char *s, size_t len)
{
    if (s == NULL)
        return NULL;
    char *d = txm__malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *txm__strdup(const char *s)
{
    return s == NULL ? NULL : txm__strndup(s, strlen(s));
}

void txm_free(void *p)
{
    free(p);
}
