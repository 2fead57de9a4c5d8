/* Library-internal allocation. Every allocation in libtxmsg goes through
 * these, so tests can make the Nth call fail and check the error paths. */
#ifndef TXM_CORE_ALLOC_H
#define TXM_CORE_ALLOC_H

#include <stddef.h>

void *txm__malloc(size_t len);
void *txm__calloc(size_t count, size_t size);
void *txm__realloc(void *p, size_t len);
char *txm__strdup(const char *s);              /* NULL for NULL or no memory */
char *txm__strndup(const char *s, size_t len); /* copies len bytes, adds NUL */

/* Test hook: the allocation after the next n succeeds fails, then all
 * succeed again; n < 0 disables. The one process-wide state in the library,
 * test builds only in effect. Thread: any (atomic). */
void txm__alloc_fail_after(long n);

#endif
