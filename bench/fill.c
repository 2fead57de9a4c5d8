/* bench_fill: commits COUNT outbox messages of about ENVELOPE_LEN bytes (as
 * CloudEvents envelopes) in transactions of PER_TXN messages, the work a
 * relay benchmark then measures. COUNT 0 only opens the database, which
 * migrates it and, on PostgreSQL, creates the relay's slot.
 *   bench_fill DATABASE_URL COUNT PER_TXN TOPIC ENVELOPE_LEN
 * Prints "filled=COUNT seconds=S". */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

/* Commits messages first..first+n-1 in one unit of work. */
static void commit_batch(txm_db *db, const char *topic, long long first, long long n, size_t pad)
{
    txm_error err;
    txm_uow *uow = NULL;
    bench_check(txm_uow_begin(db, &uow, &err), &err, "begin");
    for (long long i = first; i < first + n; i++) {
        txm_msg *m = NULL;
        bench_check(bench_msg_new(topic, i, txm_now_us(), pad, &m, &err), &err, "message");
        bench_check(txm_outbox_publish(uow, &m, &err), &err, "outbox publish");
    }
    bench_check(txm_uow_commit(&uow, &err), &err, "commit");
}

int main(int argc, char **argv)
{
    if (argc != 6)
        bench_fail("usage: bench_fill DATABASE_URL COUNT PER_TXN TOPIC ENVELOPE_LEN");
    const char *url = argv[1];
    long long count = bench_arg_int(argv[2], 0, 100000000, "COUNT");
    long long per_txn = bench_arg_int(argv[3], 1, 100000, "PER_TXN");
    const char *topic = argv[4];
    size_t pad = bench_pad_for(topic, (size_t)bench_arg_int(argv[5], 1, 65536, "ENVELOPE_LEN"));

    txm_error err;
    txm_db *db = NULL;
    txm_db_options o;
    txm_db_options_init(&o);
    o.pool_size = 1;
    bench_check(txm_db_open(url, &o, &db, &err), &err, "open database");
    int64_t start = bench_mono_ns();
    for (long long done = 0; done < count; done += per_txn)
        commit_batch(db, topic, done, count - done < per_txn ? count - done : per_txn, pad);
    double seconds = (double)(bench_mono_ns() - start) / 1e9;
    txm_db_close(db);
    printf("filled=%lld seconds=%.3f\n", count, seconds);
    return 0;
}
