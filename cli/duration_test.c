/* Duration and size arguments: what parses, what is refused, and how they
 * print. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"

static void duration_parses_each_unit(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(cli_duration_parse("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(cli_duration_parse("30s", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(cli_duration_parse("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(cli_duration_parse("2h", &ms), 0);
    assert_int_equal(ms, 7200000);
    assert_int_equal(cli_duration_parse("365d", &ms), 0);
    assert_int_equal(ms, 365LL * 86400000);
}

static void duration_refuses_everything_else(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "5",
        "5x",
        "x5s",
        "s",
        "0s",
        "-5s",
        "+5s",
        " 5s",
        "5s ",
        "5 s",
        "1.5h",
        "5sm",
        "5S",
        "5mss",
        "1h30m",
        "0x10s",
        "5dd",
        "99999999999999999999s",
        "36600000d",
        "9223372036854775807ms",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 42;
        if (cli_duration_parse(bad[i], &ms) != -1)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(ms, 42); /* untouched */
    }
    assert_int_equal(cli_duration_parse(NULL, NULL), -1);
}

static void duration_accepts_up_to_one_hundred_years(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(cli_duration_parse("36600d", &ms), 0);
    assert_int_equal(ms, CLI_DURATION_MAX_MS);
    assert_int_equal(cli_duration_parse("36601d", &ms), -1);
}

static void duration_formats_with_two_units_at_most(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "0ms"},       {250, "250ms"},    {1000, "1s"},     {1234, "1.23s"},
        {45000, "45s"},   {45999, "45s"},    {60000, "1m"},    {2712000, "45m12s"},
        {1800000, "30m"}, {7500000, "2h5m"}, {86400000, "1d"}, {273600000, "3d4h"},
        {-5, "0ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[32];
        cli_duration_format(cases[i].ms, out, sizeof out);
        assert_string_equal(out, cases[i].text);
    }
    char tiny[4];
    cli_duration_format(2712000, tiny, sizeof tiny);
    assert_string_equal(tiny, "45m");
}

static void size_parses_bytes_and_each_unit(void **state)
{
    (void)state;
    int64_t b = 0;
    assert_int_equal(cli_size_parse("4096", &b), 0);
    assert_int_equal(b, 4096);
    assert_int_equal(cli_size_parse("512kB", &b), 0);
    assert_int_equal(b, 512 * 1024);
    assert_int_equal(cli_size_parse("64MB", &b), 0);
    assert_int_equal(b, 64LL << 20);
    assert_int_equal(cli_size_parse("1g", &b), 0);
    assert_int_equal(b, 1LL << 30);
    assert_int_equal(cli_size_parse("2TB", &b), 0);
    assert_int_equal(b, 2LL << 40);
    assert_int_equal(cli_size_parse("1024TB", &b), 0);
    assert_int_equal(b, CLI_SIZE_MAX_BYTES);
}

static void size_refuses_everything_else(void **state)
{
    (void)state;
    static const char *const bad[] = {"",    "0",    "-1",     "+1",
                                      " 1",  "1 MB", "MB",     "1.5GB",
                                      "1XB", "1MBB", "1025TB", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t b = 7;
        assert_int_equal(cli_size_parse(bad[i], &b), -1);
        assert_int_equal(b, 7);
    }
    assert_int_equal(cli_size_parse(NULL, NULL), -1);
}

static void size_formats_for_people(void **state)
{
    (void)state;
    char out[32];
    cli_size_format(512, out, sizeof out);
    assert_string_equal(out, "512B");
    cli_size_format(1536, out, sizeof out);
    assert_string_equal(out, "1.50kB");
    cli_size_format(64LL << 20, out, sizeof out);
    assert_string_equal(out, "64.0MB");
    cli_size_format(300LL << 30, out, sizeof out);
    assert_string_equal(out, "300GB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(duration_parses_each_unit),
        cmocka_unit_test(duration_refuses_everything_else),
        cmocka_unit_test(duration_accepts_up_to_one_hundred_years),
        cmocka_unit_test(duration_formats_with_two_units_at_most),
        cmocka_unit_test(size_parses_bytes_and_each_unit),
        cmocka_unit_test(size_refuses_everything_else),
        cmocka_unit_test(size_formats_for_people),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
