/* Dead letters by cause, on the embedded broker and NATS: fingerprints mask
 * what varies, one error with different ids forms one group, a group is
 * redriven at a chosen rate or purged while the others stay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "testbroker.h"
#include "txmsg/transport.h"

typedef struct fixture {
    txm_test_transport kind;
    char *dir;
    txm_transport *t;
    char topic[96];
    char queue[96];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->kind = *(const txm_test_transport *)*state;
    *state = fx;
    if (!txm_testbroker_available(fx->kind))
        return 0;
    char url[600];
    if (fx->kind == TXM_TEST_NATS) {
        snprintf(url, sizeof url, "%s", getenv("TXMSG_TEST_NATS_URL"));
    } else {
        fx->dir = txm_test_mkdtemp();
        snprintf(url, sizeof url, "embedded:%s/broker.db", fx->dir);
    }
    txm_error err;
    if (txm_transport_open(url, NULL, &fx->t, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    txm_test_unique("dlqg-topic", fx->topic, sizeof fx->topic);
    txm_test_unique("dlqg-queue", fx->queue, sizeof fx->queue);
    txm_subscription_options so;
    txm_subscription_options_init(&so);
    if (txm_transport_declare_topic(fx->t, fx->topic, &err) != TXM_OK ||
        txm_transport_declare_subscription(fx->t, fx->topic, fx->queue, &so, &err) != TXM_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    txm_transport_close(fx->t);
    if (fx->dir != NULL)
        txm_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static fixture *get(void **state)
{
    fixture *fx = *state;
    if (fx->t == NULL) {
        fprintf(stderr, "skipped: %s not available\n", txm_testbroker_name(fx->kind));
        skip();
    }
    return fx;
}

/* Publishes n messages and dead-letters each with the reason reason(i). */
static void dead_letter_n(fixture *fx, int first, int n,
                          void (*reason)(int i, char *out, size_t len))
{
    for (int i = first; i < first + n; i++) {
        char id[160]; /* unique: NATS drops a message id it has seen lately */
        snprintf(id, sizeof id, "%s-%d", fx->queue, i);
        txm_outgoing o = {fx->topic, id, "{}", 2};
        assert_int_equal(txm_transport_publish(fx->t, &o, 1, NULL, NULL), TXM_OK);
    }
    for (int done = 0; done < n;) {
        txm_delivery **list = NULL;
        size_t got = 0;
        assert_int_equal(txm_transport_receive(fx->t, fx->queue, 64, 2000, &list, &got, NULL),
                         TXM_OK);
        assert_true(got > 0);
        for (size_t k = 0; k < got; k++) {
            char text[200];
            reason(first + done, text, sizeof text);
            assert_int_equal(txm_transport_dead_letter(fx->t, list[k], text, NULL), TXM_OK);
            done++;
        }
        txm_delivery_list_free(list, got);
    }
}

/* The same cause with different ids and numbers. */
static void balance_error(int i, char *out, size_t len)
{
    snprintf(out, len, "order 0193a7c2-5f1e-7c3a-9a51-%012d: balance %d < %d in \"cust-%d\"", i,
             i * 3, 40 + i, i);
}

static void timeout_error(int i, char *out, size_t len)
{
    snprintf(out, len, "db timeout after %d.%d s", i, i % 10);
}

static txm_dlq_group *groups_of(fixture *fx, size_t *n)
{
    txm_dlq_group *g = NULL;
    bool truncated = true;
    assert_int_equal(txm_transport_dlq_groups(fx->t, fx->queue, 1000, &g, n, &truncated, NULL),
                     TXM_OK);
    assert_false(truncated);
    return g;
}

static void dlq_fingerprint_masks_ids_numbers_and_quoted_values(void **state)
{
    (void)state;
    char fp[TXM_DLQ_FINGERPRINT_MAX + 1];
    txm_dlq_fingerprint("order 0193a7c2-5f1e-7c3a-9a51-2f0c8d4e7b10: balance 12 < 40 in \"abc\"",
                        fp);
    assert_string_equal(fp, "order <id>: balance <n> < <n> in \"<s>\"");
    txm_dlq_fingerprint("row deadbeef00 at 3.5s, key 'k1' for order-7; don't v2", fp);
    assert_string_equal(fp, "row <id> at <n>s, key '<s>' for order-<n>; don't v2");
    txm_dlq_fingerprint(NULL, fp);
    assert_string_equal(fp, "");
    /* Cut at the limit, never inside a UTF-8 character. */
    char longer[600];
    memset(longer, 'x', 254);
    snprintf(longer + 254, sizeof longer - 254, "\xc3\xa9 and more");
    txm_dlq_fingerprint(longer, fp);
    assert_int_equal(strlen(fp), 254);
    char a[TXM_DLQ_GROUP_ID_LEN + 1], b[TXM_DLQ_GROUP_ID_LEN + 1];
    txm_dlq_group_id("order <id>", a);
    txm_dlq_group_id("order <id>", b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), TXM_DLQ_GROUP_ID_LEN);
    txm_dlq_group_id("order <n>", b);
    assert_string_not_equal(a, b);
}

static void dlq_groups_put_one_cause_with_different_ids_in_one_group(void **state)
{
    fixture *fx = get(state);
    int64_t before = txm_now_us();
    dead_letter_n(fx, 0, 4, balance_error);
    dead_letter_n(fx, 4, 2, timeout_error);
    size_t n = 0;
    txm_dlq_group *g = groups_of(fx, &n);
    assert_int_equal(n, 2);
    assert_int_equal(g[0].count, 4);
    assert_string_equal(g[0].fingerprint, "order <id>: balance <n> < <n> in \"<s>\"");
    char first_id[160];
    snprintf(first_id, sizeof first_id, "%s-0", fx->queue);
    assert_string_equal(g[0].sample_id, first_id);
    assert_string_equal(g[0].sample_error,
                        "order 0193a7c2-5f1e-7c3a-9a51-000000000000: balance 0 < 40 in \"cust-0\"");
    assert_true(g[0].first_seen_us >= before - 1000000);
    assert_true(g[0].last_seen_us >= g[0].first_seen_us);
    assert_true(g[0].last_seen_us <= txm_now_us() + 1000000);
    assert_int_equal(g[1].count, 2);
    assert_string_equal(g[1].fingerprint, "db timeout after <n> s");
    char id[TXM_DLQ_GROUP_ID_LEN + 1];
    txm_dlq_group_id(g[1].fingerprint, id);
    assert_string_equal(g[1].id, id);
    txm_free(g);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count_progress(void *ctx, size_t moved, size_t total)
{
    size_t *calls = ctx;
    (*calls)++;
    assert_true(moved <= total);
}

/* 50 messages at 100 per second take about half a second: the first goes
 * at once, the 50th 490 ms later. */
static void dlq_redrive_group_keeps_its_rate_and_leaves_other_groups(void **state)
{
    fixture *fx = get(state);
    dead_letter_n(fx, 0, 50, balance_error);
    dead_letter_n(fx, 50, 3, timeout_error);
    size_t n = 0;
    txm_dlq_group *g = groups_of(fx, &n);
    assert_int_equal(n, 2);
    char group[TXM_DLQ_GROUP_ID_LEN + 1];
    snprintf(group, sizeof group, "%s", g[0].id);
    txm_dlq_redrive_options o;
    txm_dlq_redrive_options_init(&o);
    o.group_id = group;
    o.rate_per_s = 100;
    size_t calls = 0, moved = 0;
    o.progress = count_progress;
    o.ctx = &calls;
    double start = now_s();
    assert_int_equal(txm_transport_dlq_redrive_group(fx->t, fx->queue, &o, &moved, NULL), TXM_OK);
    double took = now_s() - start;
    assert_int_equal(moved, 50);
    assert_int_equal(calls, 50);
    if (took < 0.4 || took > 20)
        fail_msg("50 messages at 100/s took %.3f s", took);
    txm_free(g);
    g = groups_of(fx, &n);
    assert_int_equal(n, 1);
    assert_int_equal(g[0].count, 3);
    assert_string_equal(g[0].fingerprint, "db timeout after <n> s");
    int64_t depth = 0;
    assert_int_equal(txm_transport_queue_depth(fx->t, fx->queue, &depth, NULL), TXM_OK);
    assert_int_equal(depth, 50);
    /* That group is empty now: nothing matches it. */
    assert_int_equal(txm_transport_dlq_redrive_group(fx->t, fx->queue, &o, &moved, NULL),
                     TXM_NOT_FOUND);
    txm_free(g);
}

static bool stop_after_two(void *ctx)
{
    size_t *calls = ctx;
    return *calls >= 2;
}

static void dlq_purge_group_leaves_the_others_and_redrive_stops_when_asked(void **state)
{
    fixture *fx = get(state);
    dead_letter_n(fx, 0, 3, balance_error);
    dead_letter_n(fx, 3, 4, timeout_error);
    size_t n = 0, purged = 0;
    txm_dlq_group *g = groups_of(fx, &n);
    assert_int_equal(n, 2);
    assert_int_equal(txm_transport_dlq_purge_group(fx->t, fx->queue, g[1].id, 1000, &purged, NULL),
                     TXM_OK);
    assert_int_equal(purged, 3);
    assert_int_equal(txm_transport_dlq_purge_group(fx->t, fx->queue, g[1].id, 1000, &purged, NULL),
                     TXM_NOT_FOUND);
    txm_free(g);
    g = groups_of(fx, &n);
    assert_int_equal(n, 1);
    assert_int_equal(g[0].count, 4);

    /* A stop flag ends a redrive between two messages. */
    txm_dlq_redrive_options o;
    txm_dlq_redrive_options_init(&o);
    size_t calls = 0, moved = 0;
    o.match = "timeout";
    o.progress = count_progress;
    o.should_stop = stop_after_two;
    o.ctx = &calls;
    assert_int_equal(txm_transport_dlq_redrive_group(fx->t, fx->queue, &o, &moved, NULL), TXM_OK);
    assert_int_equal(moved, 2);
    txm_free(g);
    g = groups_of(fx, &n);
    assert_int_equal(n, 1);
    assert_int_equal(g[0].count, 2);
    txm_free(g);

    /* Bad arguments change nothing. */
    o.should_stop = NULL;
    o.rate_per_s = -1;
    assert_int_equal(txm_transport_dlq_redrive_group(fx->t, fx->queue, &o, &moved, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_transport_dlq_groups(fx->t, fx->queue, 0, &g, &n, NULL, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_transport_dlq_purge_group(fx->t, fx->queue, NULL, 10, &purged, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_transport_dlq_delete(fx->t, fx->queue, "", &purged, NULL), TXM_INVALID);
    g = groups_of(fx, &n);
    assert_int_equal(g[0].count, 2);
    txm_free(g);
}

#define BOTH(f)                                                                                    \
    {#f "/embedded", f, setup, teardown, (void *)&txm_transport_embedded_kind},                    \
    {                                                                                              \
#f "/nats", f, setup, teardown, (void *)&txm_transport_nats_kind                           \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dlq_fingerprint_masks_ids_numbers_and_quoted_values),
        BOTH(dlq_groups_put_one_cause_with_different_ids_in_one_group),
        BOTH(dlq_redrive_group_keeps_its_rate_and_leaves_other_groups),
        BOTH(dlq_purge_group_leaves_the_others_and_redrive_stops_when_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
