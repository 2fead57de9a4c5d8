/* The per-connection LRU cache of prepared statements shared by the SQLite
 * and PostgreSQL drivers. The drivers prepare and finalize; this file only
 * keeps the keys and picks the slot to reuse. */
#include <stdlib.h>
#include <string.h>

#include "db/db_int.h"

txm__stmt_slot *txm__stmt_cache_find(txm__stmt_cache *c, const char *sql, txm__stmt_slot **victim)
{
    *victim = &c->slot[0];
    for (size_t i = 0; i < TXM__STMT_CACHE_SIZE; i++) {
        txm__stmt_slot *e = &c->slot[i];
        if (e->sql != NULL && strcmp(e->sql, sql) == 0) {
            e->last_used = ++c->uses;
            return e;
        }
        if (e->last_used < (*victim)->last_used)
            *victim = e;
    }
    return NULL;
}

void txm__stmt_cache_put(txm__stmt_cache *c, txm__stmt_slot *slot, char **key, void *handle,
                         uint64_t id)
{
    *slot = (txm__stmt_slot){*key, handle, id, ++c->uses};
    *key = NULL;
}

void txm__stmt_cache_drop(txm__stmt_slot *slot)
{
    free(slot->sql);
    *slot = (txm__stmt_slot){0};
}

void txm__stmt_cache_fini(txm__stmt_cache *c, void (*finalize)(void *handle))
{
    for (size_t i = 0; i < TXM__STMT_CACHE_SIZE; i++) {
        if (finalize != NULL && c->slot[i].handle != NULL)
            finalize(c->slot[i].handle);
        txm__stmt_cache_drop(&c->slot[i]);
    }
}
