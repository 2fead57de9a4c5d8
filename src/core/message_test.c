/* Tests for message ids (uuid.c) and the message object (message.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/core_int.h"
#include "txmsg/message.h"

#define CORR "0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9e"
#define MSG_ID "0190f5e4-8b7a-7000-8000-000000000001"

/* A string of n copies of c; the caller frees it. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* JSON text of depth nested arrays: "[[[...]]]". */
static char *nested_arrays(size_t depth)
{
    char *s = malloc(2 * depth + 1);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\0';
    return s;
}

/* Calls txm_msg_new with the given fields and expects status want and, on
 * failure, a NULL message and a filled error. */
static void expect_new(const char *topic, const char *agg, const char *corr, const char *payload,
                       txm_status want)
{
    txm_msg *m = (txm_msg *)&m; /* any non-NULL value: must be reset */
    txm_error err = {0};
    txm_status st = txm_msg_new(topic, agg, corr, payload, &m, &err);
    if (st != want)
        fail_msg("got %s (%s), want %s", txm_status_name(st), err.text, txm_status_name(want));
    if (st != TXM_OK) {
        assert_null(m);
        assert_int_equal(err.status, want);
        assert_true(err.text[0] != '\0');
    }
    txm_msg_free(m);
}

static void uuid_v7_has_version_variant_and_time(void **state)
{
    (void)state;
    char id[TXM_UUID_LEN + 1];
    int64_t before_ms = txm_now_us() / 1000;
    assert_int_equal(txm_uuid_v7(id, NULL), TXM_OK);
    int64_t after_ms = txm_now_us() / 1000;
    assert_int_equal(strlen(id), TXM_UUID_LEN);
    assert_true(txm_uuid_is_valid(id));
    assert_int_equal(id[14], '7');
    assert_non_null(strchr("89ab", id[19]));
    for (const char *p = id; *p != '\0'; p++)
        assert_true(*p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
    char hex[13] = {0};
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    int64_t ms = (int64_t)strtoll(hex, NULL, 16);
    assert_true(ms >= before_ms && ms <= after_ms);
}

static void uuid_v7_ids_differ_and_order_by_millisecond(void **state)
{
    (void)state;
    char a[TXM_UUID_LEN + 1], b[TXM_UUID_LEN + 1], c[TXM_UUID_LEN + 1];
    assert_int_equal(txm_uuid_v7(a, NULL), TXM_OK);
    assert_int_equal(txm_uuid_v7(b, NULL), TXM_OK);
    assert_string_not_equal(a, b);
    struct timespec two_ms = {0, 2000000};
    nanosleep(&two_ms, NULL);
    assert_int_equal(txm_uuid_v7(c, NULL), TXM_OK);
    assert_true(strcmp(a, c) < 0);
    assert_true(strcmp(b, c) < 0);
    assert_int_equal(txm_uuid_v7(NULL, NULL), TXM_INVALID);
}

static void uuid_is_valid_checks_8_4_4_4_12_hex(void **state)
{
    (void)state;
    assert_true(txm_uuid_is_valid(CORR));
    assert_true(txm_uuid_is_valid("0190F5E4-8B7A-7C3D-9E21-4F5A6B7C8D9E"));
    assert_true(txm_uuid_is_valid("00000000-0000-0000-0000-000000000000"));
    assert_false(txm_uuid_is_valid(NULL));
    assert_false(txm_uuid_is_valid(""));
    assert_false(txm_uuid_is_valid("0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9"));
    assert_false(txm_uuid_is_valid("0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9ee"));
    assert_false(txm_uuid_is_valid("0190f5e4x8b7a-7c3d-9e21-4f5a6b7c8d9e"));
    assert_false(txm_uuid_is_valid("0190f5e48b7a-7c3d-9e21-4f5a6b7c8d9e0"));
    assert_false(txm_uuid_is_valid("0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9g"));
    assert_false(txm_uuid_is_valid("{0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9}"));
}

static void msg_new_fills_every_field(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    int64_t before = txm_now_us();
    assert_int_equal(
        txm_msg_new("order--created", "order-42", CORR, "{ \"a\" : 1 , \"b\":[1, 2] }", &m, NULL),
        TXM_OK);
    assert_non_null(m);
    assert_true(txm_uuid_is_valid(txm_msg_id(m)));
    assert_int_equal(txm_msg_id(m)[14], '7');
    assert_string_equal(txm_msg_source(m), "");
    assert_string_equal(txm_msg_topic(m), "order--created");
    assert_string_equal(txm_msg_aggregate_id(m), "order-42");
    assert_string_equal(txm_msg_correlation_id(m), CORR);
    assert_string_equal(txm_msg_payload(m), "{\"a\":1,\"b\":[1,2]}");
    assert_true(txm_msg_created_at_us(m) >= before);
    assert_true(txm_msg_created_at_us(m) <= txm_now_us());
    txm_msg_free(m);
}

static void msg_new_null_correlation_id_gets_uuid_v7(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new("t", "a", NULL, "[]", &m, NULL), TXM_OK);
    assert_true(txm_uuid_is_valid(txm_msg_correlation_id(m)));
    assert_int_equal(txm_msg_correlation_id(m)[14], '7');
    assert_string_not_equal(txm_msg_correlation_id(m), txm_msg_id(m));
    assert_string_equal(txm_msg_payload(m), "[]");
    txm_msg_free(m);
}

static void msg_new_accepts_foreign_correlation_ids(void **state)
{
    (void)state;
    expect_new("t", "a", "req-123 from elsewhere", "{}", TXM_OK);
    expect_new("t", "a", "caf\xc3\xa9", "{}", TXM_OK);
    expect_new("t", "a", "", "{}", TXM_INVALID);
    expect_new("t", "a", "bad\ttab", "{}", TXM_INVALID);
    char *long_id = repeat('c', TXM_ID_MAX + 1);
    expect_new("t", "a", long_id, "{}", TXM_INVALID);
    long_id[TXM_ID_MAX] = '\0';
    expect_new("t", "a", long_id, "{}", TXM_OK);
    free(long_id);
}

static void msg_new_rejects_bad_topics(void **state)
{
    (void)state;
    expect_new("Order.v1_created-x", "a", NULL, "{}", TXM_OK);
    expect_new(NULL, "a", NULL, "{}", TXM_INVALID);
    expect_new("", "a", NULL, "{}", TXM_INVALID);
    expect_new("order created", "a", NULL, "{}", TXM_INVALID);
    expect_new("order/created", "a", NULL, "{}", TXM_INVALID);
    expect_new("ordér", "a", NULL, "{}", TXM_INVALID);
    expect_new("order*", "a", NULL, "{}", TXM_INVALID);
    char *topic = repeat('t', TXM_TOPIC_MAX + 1);
    expect_new(topic, "a", NULL, "{}", TXM_INVALID);
    topic[TXM_TOPIC_MAX] = '\0';
    expect_new(topic, "a", NULL, "{}", TXM_OK);
    free(topic);
}

static void msg_new_rejects_bad_aggregate_ids(void **state)
{
    (void)state;
    expect_new("t", "customer 7 / ü", NULL, "{}", TXM_OK);
    expect_new("t", NULL, NULL, "{}", TXM_INVALID);
    expect_new("t", "", NULL, "{}", TXM_INVALID);
    expect_new("t", "a\nb", NULL, "{}", TXM_INVALID);
    expect_new("t", "a\x7f", NULL, "{}", TXM_INVALID);
    expect_new("t", "bad \xff utf8", NULL, "{}", TXM_INVALID);
    expect_new("t", "overlong \xc0\xaf", NULL, "{}", TXM_INVALID);
    expect_new("t", "surrogate \xed\xa0\x80", NULL, "{}", TXM_INVALID);
    expect_new("t", "cut \xe2\x82", NULL, "{}", TXM_INVALID);
    expect_new("t", "past max \xf4\x90\x80\x80", NULL, "{}", TXM_INVALID);
    expect_new("t", "emoji \xf0\x9f\x98\x80", NULL, "{}", TXM_OK);
    char *agg = repeat('a', TXM_ID_MAX + 1);
    expect_new("t", agg, NULL, "{}", TXM_INVALID);
    agg[TXM_ID_MAX] = '\0';
    expect_new("t", agg, NULL, "{}", TXM_OK);
    free(agg);
}

static void msg_new_rejects_bad_payloads(void **state)
{
    (void)state;
    expect_new("t", "a", NULL, NULL, TXM_INVALID);
    expect_new("t", "a", NULL, "", TXM_MALFORMED);
    expect_new("t", "a", NULL, "{", TXM_MALFORMED);
    expect_new("t", "a", NULL, "42", TXM_MALFORMED);
    expect_new("t", "a", NULL, "\"text\"", TXM_MALFORMED);
    expect_new("t", "a", NULL, "null", TXM_MALFORMED);
    expect_new("t", "a", NULL, "{} []", TXM_MALFORMED);
    expect_new("t", "a", NULL, "{\"k\":1,\"k\":2}", TXM_MALFORMED);
    expect_new("t", "a", NULL, "[{\"k\":1,\"k\":2}]", TXM_MALFORMED);
    expect_new("t", "a", NULL, "{\"k\":\"\\u0000\"}", TXM_MALFORMED);
    expect_new("t", "a", NULL, "{\"k\":\"\xff\"}", TXM_MALFORMED);
    expect_new("t", "a", NULL, "{\"k\":1e999}", TXM_MALFORMED);
}

static void msg_new_limits_payload_depth_to_64(void **state)
{
    (void)state;
    char *ok = nested_arrays(TXM_JSON_DEPTH_MAX);
    char *deep = nested_arrays(TXM_JSON_DEPTH_MAX + 1);
    expect_new("t", "a", NULL, ok, TXM_OK);
    expect_new("t", "a", NULL, deep, TXM_MALFORMED);
    free(ok);
    free(deep);
}

static void msg_new_payload_past_limit_is_too_big(void **state)
{
    (void)state;
    /* Whitespace is valid JSON padding, so only the size can be wrong. */
    char *big = repeat(' ', (size_t)TXM_PAYLOAD_MAX + 1);
    big[0] = '{';
    big[TXM_PAYLOAD_MAX] = '}';
    expect_new("t", "a", NULL, big, TXM_TOO_BIG);
    big[TXM_PAYLOAD_MAX] = '\0';
    big[TXM_PAYLOAD_MAX - 1] = '}';
    expect_new("t", "a", NULL, big, TXM_OK);
    free(big);
}

static void msg_new_with_keeps_every_field(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new_with("foreign-id-1", "orders-service", "t.x", "agg", CORR,
                                      "{\"n\": 1.5}", -5, &m, NULL),
                     TXM_OK);
    assert_string_equal(txm_msg_id(m), "foreign-id-1");
    assert_string_equal(txm_msg_source(m), "orders-service");
    assert_string_equal(txm_msg_topic(m), "t.x");
    assert_string_equal(txm_msg_aggregate_id(m), "agg");
    assert_string_equal(txm_msg_correlation_id(m), CORR);
    assert_string_equal(txm_msg_payload(m), "{\"n\":1.5}");
    assert_int_equal(txm_msg_created_at_us(m), -5);
    txm_msg_free(m);
}

static void msg_new_with_rejects_bad_id_source_and_time(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    txm_error err = {0};
    char *longs = repeat('s', TXM_ID_MAX + 1);
    assert_int_equal(txm_msg_new_with(NULL, NULL, "t", "a", NULL, "{}", 0, &m, &err), TXM_INVALID);
    assert_int_equal(txm_msg_new_with("", NULL, "t", "a", NULL, "{}", 0, &m, &err), TXM_INVALID);
    assert_int_equal(txm_msg_new_with(longs, NULL, "t", "a", NULL, "{}", 0, &m, &err), TXM_INVALID);
    assert_int_equal(txm_msg_new_with("i", longs, "t", "a", NULL, "{}", 0, &m, &err), TXM_INVALID);
    assert_int_equal(txm_msg_new_with("i", "s\r", "t", "a", NULL, "{}", 0, &m, &err), TXM_INVALID);
    assert_int_equal(
        txm_msg_new_with("i", NULL, "t", "a", NULL, "{}", TXM__TIME_MAX_US + 1, &m, &err),
        TXM_INVALID);
    assert_int_equal(
        txm_msg_new_with("i", NULL, "t", "a", NULL, "{}", TXM__TIME_MIN_US - 1, &m, &err),
        TXM_INVALID);
    assert_null(m);
    assert_int_equal(txm_msg_new_with("i", NULL, "t", "a", NULL, "{}", 0, NULL, &err), TXM_INVALID);
    assert_int_equal(txm_msg_new_with("i", "", "t", "a", NULL, "{}", 0, &m, &err), TXM_OK);
    assert_string_equal(txm_msg_source(m), "");
    assert_true(txm_uuid_is_valid(txm_msg_correlation_id(m)));
    txm_msg_free(m);
    free(longs);
}

/* txm_msg_new_trusted keeps the payload text as given (no parse, no
 * re-serialising) but still checks the fields, the shape and the size. */
static void msg_new_trusted_keeps_text_and_checks_shape(void **state)
{
    (void)state;
    const char *id = "018f3c1e-0000-7000-8000-000000000001";
    const char *corr = "018f3c1e-0000-7000-8000-000000000002";
    txm_msg *m = NULL;
    const char text[] = " {\"b\": 1, \"a\": [2]}\n";
    assert_int_equal(txm_msg_new_trusted(id, "svc", "order--created", "o-1", corr, text,
                                         strlen(text), 1700000000000000, &m, NULL),
                     TXM_OK);
    assert_string_equal(txm_msg_payload(m), text);
    assert_string_equal(txm_msg_id(m), id);
    assert_string_equal(txm_msg_source(m), "svc");
    txm_msg_free(m);
    assert_int_equal(txm_msg_new_trusted(id, NULL, "t", "o", corr, "[]", 2, 1, &m, NULL), TXM_OK);
    txm_msg_free(m);
    const char *bad[] = {"", "1", "\"s\"", "{", "[}", "{]", "null", "  {  "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        txm_error err;
        assert_int_equal(
            txm_msg_new_trusted(id, NULL, "t", "o", corr, bad[i], strlen(bad[i]), 1, &m, &err),
            TXM_MALFORMED);
        assert_null(m);
    }
    assert_int_equal(txm_msg_new_trusted(id, NULL, "not a topic", "o", corr, "{}", 2, 1, &m, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_msg_new_trusted(id, NULL, "t", "o", corr, NULL, 0, 1, &m, NULL),
                     TXM_INVALID);
    size_t big = (size_t)TXM_PAYLOAD_MAX + 1;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '[';
    huge[big - 1] = ']';
    huge[big] = '\0';
    assert_int_equal(txm_msg_new_trusted(id, NULL, "t", "o", corr, huge, big, 1, &m, NULL),
                     TXM_TOO_BIG);
    free(huge);
}

static void msg_set_source_sets_clears_and_keeps_on_error(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new("t", "a", NULL, "{}", &m, NULL), TXM_OK);
    assert_int_equal(txm_msg_set_source(m, "customers", NULL), TXM_OK);
    assert_string_equal(txm_msg_source(m), "customers");
    char *longs = repeat('s', TXM_ID_MAX + 1);
    txm_error err = {0};
    assert_int_equal(txm_msg_set_source(m, longs, &err), TXM_INVALID);
    assert_non_null(strstr(err.text, "source"));
    assert_string_equal(txm_msg_source(m), "customers");
    assert_int_equal(txm_msg_set_source(m, NULL, NULL), TXM_OK);
    assert_string_equal(txm_msg_source(m), "");
    assert_int_equal(txm_msg_set_source(NULL, "x", NULL), TXM_INVALID);
    free(longs);
    txm_msg_free(m);
}

static void msg_copy_is_deep_and_equal(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new_with("i", "src", "t", "a", CORR, "[1,{\"x\":null}]", 77, &m, NULL),
                     TXM_OK);
    txm_msg *c = txm_msg_copy(m);
    assert_non_null(c);
    assert_ptr_not_equal(txm_msg_id(c), txm_msg_id(m));
    assert_ptr_not_equal(txm_msg_payload(c), txm_msg_payload(m));
    txm_msg_free(m);
    assert_string_equal(txm_msg_id(c), "i");
    assert_string_equal(txm_msg_source(c), "src");
    assert_string_equal(txm_msg_topic(c), "t");
    assert_string_equal(txm_msg_aggregate_id(c), "a");
    assert_string_equal(txm_msg_correlation_id(c), CORR);
    assert_string_equal(txm_msg_payload(c), "[1,{\"x\":null}]");
    assert_int_equal(txm_msg_created_at_us(c), 77);
    txm_msg_free(c);
    assert_null(txm_msg_copy(NULL));
    txm_msg_free(NULL);
}

static void msg_getters_on_null_return_null(void **state)
{
    (void)state;
    assert_null(txm_msg_id(NULL));
    assert_null(txm_msg_source(NULL));
    assert_null(txm_msg_topic(NULL));
    assert_null(txm_msg_aggregate_id(NULL));
    assert_null(txm_msg_correlation_id(NULL));
    assert_null(txm_msg_payload(NULL));
    assert_int_equal(txm_msg_created_at_us(NULL), 0);
}

static void json_dump_stops_at_cap_with_too_big(void **state)
{
    (void)state;
    json_t *j = json_pack("{s:s}", "key", "0123456789");
    assert_non_null(j);
    char *out = (char *)&out;
    size_t len = 99;
    assert_int_equal(txm__json_dump(j, 10, &out, &len, NULL), TXM_TOO_BIG);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_int_equal(txm__json_dump(j, 20, &out, &len, NULL), TXM_OK);
    assert_string_equal(out, "{\"key\":\"0123456789\"}");
    assert_int_equal(len, 20);
    txm_free(out);
    json_decref(j);
}

/* Fails the nth allocation for n = 0, 1, ... until a call succeeds; each
 * failing call must report TXM_NOMEM and leave *out NULL. LeakSanitizer
 * checks that nothing leaks on any of those paths. */
static void msg_new_with_survives_every_allocation_failure(void **state)
{
    (void)state;
    int failures = 0;
    for (long n = 0; n < 100; n++) {
        txm_msg *m = NULL;
        txm__alloc_fail_after(n);
        txm_status st =
            txm_msg_new_with("i", "src", "t", "a", CORR, "{\"a\":[1,2,3]}", 1, &m, NULL);
        txm__alloc_fail_after(-1);
        if (st == TXM_OK) {
            assert_string_equal(txm_msg_payload(m), "{\"a\":[1,2,3]}");
            assert_string_equal(txm_msg_source(m), "src");
            txm_msg_free(m);
            break;
        }
        assert_int_equal(st, TXM_NOMEM);
        assert_null(m);
        failures++;
    }
    assert_true(failures >= 6); /* struct, payload and five strings */
}

static void msg_copy_and_set_source_survive_allocation_failure(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new_with("i", "src", "t", "a", CORR, "{}", 1, &m, NULL), TXM_OK);
    int copied = 0;
    for (long n = 0; n < 100 && !copied; n++) {
        txm__alloc_fail_after(n);
        txm_msg *c = txm_msg_copy(m);
        txm__alloc_fail_after(-1);
        copied = c != NULL;
        if (copied)
            assert_string_equal(txm_msg_source(c), "src");
        txm_msg_free(c);
    }
    assert_true(copied);
    txm__alloc_fail_after(0);
    assert_int_equal(txm_msg_set_source(m, "other", NULL), TXM_NOMEM);
    txm__alloc_fail_after(-1);
    assert_string_equal(txm_msg_source(m), "src");
    txm_msg_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid_v7_has_version_variant_and_time),
        cmocka_unit_test(uuid_v7_ids_differ_and_order_by_millisecond),
        cmocka_unit_test(uuid_is_valid_checks_8_4_4_4_12_hex),
        cmocka_unit_test(msg_new_fills_every_field),
        cmocka_unit_test(msg_new_null_correlation_id_gets_uuid_v7),
        cmocka_unit_test(msg_new_accepts_foreign_correlation_ids),
        cmocka_unit_test(msg_new_rejects_bad_topics),
        cmocka_unit_test(msg_new_rejects_bad_aggregate_ids),
        cmocka_unit_test(msg_new_rejects_bad_payloads),
        cmocka_unit_test(msg_new_limits_payload_depth_to_64),
        cmocka_unit_test(msg_new_payload_past_limit_is_too_big),
        cmocka_unit_test(msg_new_with_keeps_every_field),
        cmocka_unit_test(msg_new_with_rejects_bad_id_source_and_time),
        cmocka_unit_test(msg_new_trusted_keeps_text_and_checks_shape),
        cmocka_unit_test(msg_set_source_sets_clears_and_keeps_on_error),
        cmocka_unit_test(msg_copy_is_deep_and_equal),
        cmocka_unit_test(msg_getters_on_null_return_null),
        cmocka_unit_test(json_dump_stops_at_cap_with_too_big),
        cmocka_unit_test(msg_new_with_survives_every_allocation_failure),
        cmocka_unit_test(msg_copy_and_set_source_survive_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
