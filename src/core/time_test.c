/* Tests for the RFC 3339 time functions in src/core/time.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/core_int.h"
#include "txmsg/message.h"

#define T_2026 1795733071123456LL /* 2026-11-26T22:44:31.123456Z */

static void assert_format(int64_t us, const char *want)
{
    char out[TXM_TIME_LEN + 1];
    memset(out, 'x', sizeof out);
    txm_time_format(us, out);
    assert_string_equal(out, want);
    assert_int_equal(strlen(out), TXM_TIME_LEN);
}

static void assert_parse(const char *s, int64_t want)
{
    int64_t us = -7;
    txm_error err = {0};
    txm_status st = txm_time_parse(s, &us, &err);
    if (st != TXM_OK)
        fail_msg("parse \"%s\": %s", s, err.text);
    assert_int_equal(us, want);
}

/* Parses s from a heap copy of exactly strlen + 1 bytes, so ASan reports any
 * read past the NUL, and expects TXM_MALFORMED. */
static void assert_rejects(const char *s)
{
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, s, len + 1);
    int64_t us = 42;
    txm_error err = {0};
    txm_status st = txm_time_parse(copy, &us, &err);
    if (st != TXM_MALFORMED)
        fail_msg("\"%s\" gave %s, want MALFORMED", s, txm_status_name(st));
    assert_int_equal(err.status, TXM_MALFORMED);
    assert_true(err.text[0] != '\0');
    free(copy);
}

static void time_format_epoch_is_27_chars_with_micros(void **state)
{
    (void)state;
    assert_format(0, "1970-01-01T00:00:00.000000Z");
    assert_format(T_2026, "2026-11-26T22:44:31.123456Z");
    assert_format(1709208000000000LL, "2024-02-29T12:00:00.000000Z");
}

static void time_format_before_1970_floors(void **state)
{
    (void)state;
    assert_format(-1, "1969-12-31T23:59:59.999999Z");
    assert_format(-14182940000000LL, "1969-07-20T20:17:40.000000Z");
    assert_format(-62135596800000000LL, "0001-01-01T00:00:00.000000Z");
}

static void time_format_clamps_to_four_digit_years(void **state)
{
    (void)state;
    assert_format(INT64_MIN, "0000-01-01T00:00:00.000000Z");
    assert_format(TXM__TIME_MIN_US, "0000-01-01T00:00:00.000000Z");
    assert_format(TXM__TIME_MAX_US, "9999-12-31T23:59:59.999999Z");
    assert_format(INT64_MAX, "9999-12-31T23:59:59.999999Z");
}

static void time_format_and_parse_ignore_tz(void **state)
{
    (void)state;
    const char *old = getenv("TZ");
    char *saved = old != NULL ? strdup(old) : NULL;
    setenv("TZ", "America/New_York", 1);
    tzset();
    assert_format(T_2026, "2026-11-26T22:44:31.123456Z");
    assert_parse("2026-11-26T22:44:31.123456Z", T_2026);
    if (saved != NULL)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved);
}

static void time_parse_accepts_rfc3339_variants(void **state)
{
    (void)state;
    assert_parse("2026-11-26T22:44:31.123456Z", T_2026);
    assert_parse("2026-11-26t22:44:31.123456z", T_2026);
    assert_parse("2026-11-26 22:44:31.123456Z", T_2026);
    assert_parse("2026-11-27T04:14:31.123456+05:30", T_2026);
    assert_parse("2026-11-26T14:44:31.123456-08:00", T_2026);
    assert_parse("2026-11-26T22:44:31.123456-00:00", T_2026);
    assert_parse("2026-11-26T22:44:31Z", T_2026 - 123456);
    assert_parse("1970-01-01T00:00:00Z", 0);
    assert_parse("0000-01-01T00:00:00Z", TXM__TIME_MIN_US);
    assert_parse("9999-12-31T23:59:59.999999Z", TXM__TIME_MAX_US);
    assert_parse("1969-12-31T23:59:59.999999Z", -1);
}

static void time_parse_fraction_1_to_9_digits_truncates(void **state)
{
    (void)state;
    int64_t base = T_2026 - 123456;
    assert_parse("2026-11-26T22:44:31.1Z", base + 100000);
    assert_parse("2026-11-26T22:44:31.12Z", base + 120000);
    assert_parse("2026-11-26T22:44:31.12345Z", base + 123450);
    assert_parse("2026-11-26T22:44:31.1234567Z", base + 123456);
    assert_parse("2026-11-26T22:44:31.123456999Z", base + 123456);
    assert_parse("2026-11-26T22:44:31.000000001Z", base);
}

static void time_parse_leap_days(void **state)
{
    (void)state;
    assert_parse("2024-02-29T12:00:00Z", 1709208000000000LL);
    assert_parse("2000-02-29T00:00:00Z", 951782400000000LL);
    assert_rejects("2023-02-29T00:00:00Z");
    assert_rejects("1900-02-29T00:00:00Z");
    assert_rejects("2024-04-31T00:00:00Z");
}

static void time_parse_rejects_malformed_text(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "2026",
        "2026-11-26",
        "2026-11-26T22:44:31",
        "2026-11-26T22:44:31.Z",
        "2026-11-26T22:44:31.1234567890Z",
        "2026-11-26T22:44:31Z ",
        " 2026-11-26T22:44:31Z",
        "2026-11-26T22:44:31ZZ",
        "2026-11-26X22:44:31Z",
        "2026-11-26T22:44Z",
        "2026-1-26T22:44:31Z",
        "26-11-26T22:44:31Z",
        "+2026-11-26T22:44:31Z",
        "2026/11/26T22:44:31Z",
        "2026-11-26T22-44-31Z",
        "2026-11-26T22:44:31+0530",
        "2026-11-26T22:44:31+05",
        "2026-11-26T22:44:31+05:3",
        "2026-11-26T22:44:31 +05:30",
        "2026-11-26T22:44:31UTC",
        "2026-11-26T22:44:31,5Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T23:60:00Z",
        "2026-11-26T23:59:60Z",
        "2026-11-26T22:44:31+24:00",
        "2026-11-26T22:44:31+05:60",
        "\xef\xbc\x92\xef\xbc\x90\xef\xbc\x92\xef\xbc\x96-11-26T22:44:31Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_rejects(bad[i]);
}

static void time_parse_never_reads_past_nul(void **state)
{
    (void)state;
    const char *full = "2026-11-27T04:14:31.123456789+05:30";
    char buf[64];
    for (size_t n = 0; n < strlen(full); n++) {
        memcpy(buf, full, n);
        buf[n] = '\0';
        assert_rejects(buf);
    }
    assert_parse(full, T_2026);
}

static void time_parse_null_arguments_invalid(void **state)
{
    (void)state;
    int64_t us = 0;
    assert_int_equal(txm_time_parse(NULL, &us, NULL), TXM_INVALID);
    assert_int_equal(txm_time_parse("1970-01-01T00:00:00Z", NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_time_parse("nonsense", &us, NULL), TXM_MALFORMED); /* err optional */
}

static void time_format_parse_round_trip(void **state)
{
    (void)state;
    /* A fixed-step walk across the whole range, plus both ends. */
    int64_t step = (TXM__TIME_MAX_US - TXM__TIME_MIN_US) / 997;
    for (int64_t us = TXM__TIME_MIN_US; us <= TXM__TIME_MAX_US - step; us += step + 12345) {
        char out[TXM_TIME_LEN + 1];
        txm_time_format(us, out);
        assert_parse(out, us);
    }
}

static void time_now_us_is_plausible(void **state)
{
    (void)state;
    int64_t a = txm_now_us();
    int64_t b = txm_now_us();
    assert_true(a > 1577836800000000LL); /* after 2020-01-01 */
    assert_true(b >= a - 1000000);
    int64_t t = (int64_t)time(NULL) * 1000000;
    assert_true(llabs(a - t) < 5000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(time_format_epoch_is_27_chars_with_micros),
        cmocka_unit_test(time_format_before_1970_floors),
        cmocka_unit_test(time_format_clamps_to_four_digit_years),
        cmocka_unit_test(time_format_and_parse_ignore_tz),
        cmocka_unit_test(time_parse_accepts_rfc3339_variants),
        cmocka_unit_test(time_parse_fraction_1_to_9_digits_truncates),
        cmocka_unit_test(time_parse_leap_days),
        cmocka_unit_test(time_parse_rejects_malformed_text),
        cmocka_unit_test(time_parse_never_reads_past_nul),
        cmocka_unit_test(time_parse_null_arguments_invalid),
        cmocka_unit_test(time_format_parse_round_trip),
        cmocka_unit_test(time_now_us_is_plausible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
