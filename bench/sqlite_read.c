/* bench_sqlite_read: the database's ceiling for the SQLite relay, a bare
 * sqlite3 loop reading every outbox row in sequence order the way the
 * tailer asks for them (seq > cursor ORDER BY seq LIMIT 1000), touching each
 * column's text.
 *   bench_sqlite_read PATH
 * Prints "rate=ROWS_PER_S seconds=S rows=N". */
#include <sqlite3.h>
#include <stdio.h>

#include "bench.h"

#define PAGE_ROWS 1000

static const char SQL_NEXT[] =
    "SELECT seq, message_id, source, aggregate_id, correlation_id, topic, payload, created_at"
    " FROM txmsg_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2";

/* Reads every row after seq 0; returns how many, *bytes the text read. */
static long long read_all(sqlite3 *db, long long *bytes)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, SQL_NEXT, -1, &stmt, NULL) != SQLITE_OK)
        bench_fail("bench: prepare: %s", sqlite3_errmsg(db));
    long long rows = 0, cursor = 0;
    for (int got = PAGE_ROWS; got == PAGE_ROWS;) {
        sqlite3_bind_int64(stmt, 1, cursor);
        sqlite3_bind_int(stmt, 2, PAGE_ROWS);
        int rc;
        for (got = 0; (rc = sqlite3_step(stmt)) == SQLITE_ROW; got++) {
            cursor = sqlite3_column_int64(stmt, 0);
            for (int c = 1; c < 8; c++) {
                if (sqlite3_column_text(stmt, c) != NULL)
                    *bytes += sqlite3_column_bytes(stmt, c);
            }
        }
        if (rc != SQLITE_DONE)
            bench_fail("bench: step: %s", sqlite3_errmsg(db));
        sqlite3_reset(stmt);
        rows += got;
    }
    sqlite3_finalize(stmt);
    return rows;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        bench_fail("usage: bench_sqlite_read PATH");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        bench_fail("bench: open %s: %s", argv[1], sqlite3_errmsg(db));
    long long bytes = 0;
    int64_t start = bench_mono_ns();
    long long rows = read_all(db, &bytes);
    double seconds = (double)(bench_mono_ns() - start) / 1e9;
    sqlite3_close(db);
    if (rows == 0)
        bench_fail("bench: no outbox rows in %s", argv[1]);
    printf("rate=%.0f seconds=%.3f rows=%lld bytes=%lld\n", (double)rows / seconds, seconds, rows,
           bytes);
    return 0;
}
