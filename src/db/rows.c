/* Result rows copied out of a driver: one flat text arena per result. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "db/db.h"

#define ROWS_MAX_BYTES ((size_t)1 << 30)

struct txm_rows {
    size_t columns;
    size_t count; /* rows */
    size_t cap;   /* rows allocated in cells */
    char **cells; /* count * columns pointers; NULL for SQL NULL */
    size_t bytes; /* total text held, checked against ROWS_MAX_BYTES */
};

txm_rows *txm__rows_new(size_t columns)
{
    txm_rows *r = txm__calloc(1, sizeof *r);
    if (r != NULL)
        r->columns = columns;
    return r;
}

static txm_status grow(txm_rows *r)
{
    size_t cap = r->cap == 0 ? 16 : r->cap * 2;
    size_t cells = cap * (r->columns == 0 ? 1 : r->columns);
    char **p = txm__realloc(r->cells, cells * sizeof *p);
    if (p == NULL)
        return TXM_NOMEM;
    r->cells = p;
    r->cap = cap;
    return TXM_OK;
}

txm_status txm__rows_add(txm_rows *r, const char *const *vals, const size_t *lens)
{
    if (r->count == r->cap && grow(r) != TXM_OK)
        return TXM_NOMEM;
    char **row = r->cells + r->count * r->columns;
    for (size_t c = 0; c < r->columns; c++) {
        row[c] = NULL;
        if (vals[c] == NULL)
            continue;
        r->bytes += lens[c] + 1;
        if (r->bytes > ROWS_MAX_BYTES || (row[c] = txm__strndup(vals[c], lens[c])) == NULL) {
            for (size_t k = 0; k < c; k++)
                free(row[k]);
            return r->bytes > ROWS_MAX_BYTES ? TXM_TOO_BIG : TXM_NOMEM;
        }
    }
    r->count++;
    return TXM_OK;
}

size_t txm_rows_count(const txm_rows *r)
{
    return r == NULL ? 0 : r->count;
}

size_t txm_rows_columns(const txm_rows *r)
{
    return r == NULL ? 0 : r->columns;
}

const char *txm_rows_text(const txm_rows *r, size_t row, size_t col)
{
    if (r == NULL || row >= r->count || col >= r->columns)
        return NULL;
    return r->cells[row * r->columns + col];
}

bool txm_rows_is_null(const txm_rows *r, size_t row, size_t col)
{
    return txm_rows_text(r, row, col) == NULL;
}

int64_t txm_rows_int(const txm_rows *r, size_t row, size_t col)
{
    const char *s = txm_rows_text(r, row, col);
    if (s == NULL)
        return 0;
    /* PostgreSQL booleans come back as "t"/"f". */
    if (s[0] == 't' && s[1] == '\0')
        return 1;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    return end == s ? 0 : (int64_t)v;
}

void txm_rows_free(txm_rows *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count * r->columns; i++)
        free(r->cells[i]);
    free(r->cells);
    free(r);
}
