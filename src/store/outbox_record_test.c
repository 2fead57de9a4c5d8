/* The outbox record of messages mode: round trip, and every truncated,
 * corrupted or random input decodes or fails with TXM_MALFORMED. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "txmsg/txmsg.h"

static txm_msg *sample(void)
{
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new_with("0190a8e2-7c1e-7b2a-9f00-000000000001", "orders",
                                      "order--created", "order-1", "corr-1",
                                      "{\"order_total\":10000,\"s\":\"\\u00e9\"}",
                                      1764280000123456LL, &m, NULL),
                     TXM_OK);
    return m;
}

static void encode(const txm_msg *m, uint8_t **buf, size_t *len)
{
    assert_int_equal(txm_outbox_record_encode(m, buf, len, NULL), TXM_OK);
}

/* The sample message and its record, made by setup for each test. */
typedef struct encoded {
    txm_msg *m;
    uint8_t *buf;
    size_t len;
} encoded;

static int encoded_setup(void **state)
{
    encoded *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -1;
    e->m = sample();
    encode(e->m, &e->buf, &e->len);
    *state = e;
    return 0;
}

static int encoded_teardown(void **state)
{
    encoded *e = *state;
    txm_free(e->buf);
    txm_msg_free(e->m);
    free(e);
    return 0;
}

static void expect_malformed(const uint8_t *buf, size_t len)
{
    txm_msg *out = NULL;
    txm_error err;
    assert_int_equal(txm_outbox_record_decode(buf, len, &out, &err), TXM_MALFORMED);
    assert_null(out);
    assert_true(strlen(err.text) > 0);
}

static void outbox_record_round_trip_keeps_every_field(void **state)
{
    encoded *e = *state;
    const txm_msg *m = e->m;
    const uint8_t *buf = e->buf;
    size_t len = e->len;
    assert_int_equal(buf[0], TXM_OUTBOX_RECORD_VERSION);
    txm_msg *d = NULL;
    assert_int_equal(txm_outbox_record_decode(buf, len, &d, NULL), TXM_OK);
    assert_string_equal(txm_msg_id(d), txm_msg_id(m));
    assert_string_equal(txm_msg_source(d), "orders");
    assert_string_equal(txm_msg_topic(d), "order--created");
    assert_string_equal(txm_msg_aggregate_id(d), "order-1");
    assert_string_equal(txm_msg_correlation_id(d), "corr-1");
    assert_string_equal(txm_msg_payload(d), txm_msg_payload(m));
    assert_int_equal(txm_msg_created_at_us(d), 1764280000123456LL);
    txm_msg_free(d);
}

static void outbox_record_empty_source_round_trips(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new("t.x", "a", NULL, "[]", &m, NULL), TXM_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    encode(m, &buf, &len);
    txm_msg *d = NULL;
    assert_int_equal(txm_outbox_record_decode(buf, len, &d, NULL), TXM_OK);
    assert_string_equal(txm_msg_source(d), "");
    assert_string_equal(txm_msg_payload(d), "[]");
    txm_msg_free(d);
    txm_free(buf);
    txm_msg_free(m);
}

static void outbox_record_every_truncation_is_malformed(void **state)
{
    encoded *e = *state;
    const uint8_t *buf = e->buf;
    size_t len = e->len;
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past it. */
        uint8_t *cut = malloc(n > 0 ? n : 1);
        memcpy(cut, buf, n);
        expect_malformed(n > 0 ? cut : NULL, n);
        free(cut);
    }
}

static void outbox_record_bad_versions_lengths_and_bytes_are_malformed(void **state)
{
    encoded *e = *state;
    const uint8_t *buf = e->buf;
    size_t len = e->len;
    uint8_t *copy = malloc(len + 1);

    memcpy(copy, buf, len);
    copy[0] = 2; /* a future version */
    expect_malformed(copy, len);
    copy[0] = 0;
    expect_malformed(copy, len);

    memcpy(copy, buf, len);
    copy[len] = 0; /* one trailing byte */
    expect_malformed(copy, len + 1);

    memcpy(copy, buf, len);
    memset(copy + 9, 0xff, 4); /* message_id length 4 GiB */
    expect_malformed(copy, len);

    memcpy(copy, buf, len);
    copy[13] = '\0'; /* a NUL inside message_id */
    expect_malformed(copy, len);

    memcpy(copy, buf, len);
    copy[13] = '\n'; /* a control character in an id */
    expect_malformed(copy, len);

    /* The payload's last byte: '}' becomes ' ', so the JSON is cut short. */
    memcpy(copy, buf, len);
    copy[len - 1] = ' ';
    expect_malformed(copy, len);
    free(copy);
}

/* Builds a record by hand from six strings (lengths as given). */
static size_t build(uint8_t *out, const char *const f[6])
{
    size_t at = 9;
    memset(out, 0, 9);
    out[0] = TXM_OUTBOX_RECORD_VERSION;
    out[8] = 1; /* created_at 1 µs after the epoch */
    for (int i = 0; i < 6; i++) {
        size_t n = strlen(f[i]);
        out[at] = (uint8_t)(n >> 24);
        out[at + 1] = (uint8_t)(n >> 16);
        out[at + 2] = (uint8_t)(n >> 8);
        out[at + 3] = (uint8_t)n;
        memcpy(out + at + 4, f[i], n);
        at += 4 + n;
    }
    return at;
}

static void outbox_record_fields_the_message_refuses_are_malformed(void **state)
{
    (void)state;
    uint8_t buf[512];
    const char *good[6] = {"id-1", "svc", "agg", "corr", "topic.a", "{}"};
    txm_msg *d = NULL;
    assert_int_equal(txm_outbox_record_decode(buf, build(buf, good), &d, NULL), TXM_OK);
    assert_int_equal(txm_msg_created_at_us(d), 1);
    txm_msg_free(d);
    const char *bad_topic[6] = {"id-1", "svc", "agg", "corr", "no spaces", "{}"};
    expect_malformed(buf, build(buf, bad_topic));
    const char *bad_json[6] = {"id-1", "svc", "agg", "corr", "topic.a", "{\"a\":"};
    expect_malformed(buf, build(buf, bad_json));
    const char *no_id[6] = {"", "svc", "agg", "corr", "topic.a", "{}"};
    expect_malformed(buf, build(buf, no_id));
}

static void outbox_record_random_bytes_decode_or_are_malformed(void **state)
{
    encoded *e = *state;
    const uint8_t *good = e->buf;
    size_t len = e->len;
    srand(12345);
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand() % (int)(len + 8));
        uint8_t *buf = malloc(n > 0 ? n : 1);
        /* Half the rounds flip a few bytes of a valid record, half are noise
         * behind a valid version byte. */
        if (round % 2 == 0) {
            memcpy(buf, good, n < len ? n : len);
            for (size_t i = len; i < n; i++)
                buf[i] = (uint8_t)rand();
            for (int k = 0; k < 3 && n > 0; k++)
                buf[(size_t)rand() % n] = (uint8_t)rand();
        } else {
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)rand();
            if (n > 0)
                buf[0] = TXM_OUTBOX_RECORD_VERSION;
        }
        txm_msg *d = NULL;
        txm_status st = txm_outbox_record_decode(n > 0 ? buf : NULL, n, &d, NULL);
        assert_true(st == TXM_OK || st == TXM_MALFORMED);
        assert_true((st == TXM_OK) == (d != NULL));
        txm_msg_free(d);
        free(buf);
    }
}

static void outbox_record_out_of_memory_fails_cleanly(void **state)
{
    encoded *e = *state;
    const txm_msg *m = e->m;
    const uint8_t *good = e->buf;
    size_t len = e->len;
    bool decoded = false;
    for (long n = 0; n < 64 && !decoded; n++) {
        txm_msg *d = NULL;
        txm__alloc_fail_after(n);
        txm_status st = txm_outbox_record_decode(good, len, &d, NULL);
        txm__alloc_fail_after(-1);
        assert_true(st == TXM_OK || st == TXM_NOMEM);
        decoded = st == TXM_OK;
        txm_msg_free(d);
    }
    assert_true(decoded);
    uint8_t *buf = NULL;
    txm__alloc_fail_after(0);
    assert_int_equal(txm_outbox_record_encode(m, &buf, &len, NULL), TXM_NOMEM);
    txm__alloc_fail_after(-1);
    assert_null(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(outbox_record_round_trip_keeps_every_field, encoded_setup,
                                        encoded_teardown),
        cmocka_unit_test(outbox_record_empty_source_round_trips),
        cmocka_unit_test_setup_teardown(outbox_record_every_truncation_is_malformed, encoded_setup,
                                        encoded_teardown),
        cmocka_unit_test_setup_teardown(outbox_record_bad_versions_lengths_and_bytes_are_malformed,
                                        encoded_setup, encoded_teardown),
        cmocka_unit_test(outbox_record_fields_the_message_refuses_are_malformed),
        cmocka_unit_test_setup_teardown(outbox_record_random_bytes_decode_or_are_malformed,
                                        encoded_setup, encoded_teardown),
        cmocka_unit_test_setup_teardown(outbox_record_out_of_memory_fails_cleanly, encoded_setup,
                                        encoded_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
