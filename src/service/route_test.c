/* Tests for route patterns, path checks and matching in src/service/route.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "service/service_int.h"

static void pattern_ok(const char *pattern, int want_params)
{
    int params = -1;
    txm_error err = {0};
    txm_status st = txm__route_check_pattern(pattern, &params, &err);
    if (st != TXM_OK)
        fail_msg("pattern \"%s\" rejected: %s", pattern, err.text);
    assert_int_equal(params, want_params);
}

static void pattern_bad(const char *pattern)
{
    txm_error err = {0};
    if (txm__route_check_pattern(pattern, NULL, &err) != TXM_INVALID)
        fail_msg("pattern \"%s\" accepted", pattern ? pattern : "(null)");
    assert_true(err.text[0] != '\0');
}

static void route_pattern_accepts_literals_and_params(void **state)
{
    (void)state;
    pattern_ok("/", 0);
    pattern_ok("/orders", 0);
    pattern_ok("/orders/health", 0);
    pattern_ok("/order/:id", 1);
    pattern_ok("/order/:id/cancel", 1);
    pattern_ok("/a/:b/c/:d_2", 2);
    pattern_ok("/v1.0/x-y~z@host", 0);
    pattern_ok("/:a/:b/:c/:d/:e/:f/:g/:h", 8);
}

static void route_pattern_rejects_malformed(void **state)
{
    (void)state;
    pattern_bad(NULL);
    pattern_bad("");
    pattern_bad("orders");
    pattern_bad("/orders/");
    pattern_bad("//orders");
    pattern_bad("/a//b");
    pattern_bad("/order/:");
    pattern_bad("/order/:1d");
    pattern_bad("/order/:id-x");
    pattern_bad("/order/%41");
    pattern_bad("/order?x=1");
    pattern_bad("/a b");
    pattern_bad("/:id/:id");
    pattern_bad("/:a/:b/:c/:d/:e/:f/:g/:h/:i");
    char name[64];
    memset(name, 'n', sizeof name);
    name[0] = '/';
    name[1] = ':';
    name[2 + TXM_HTTP_PARAM_NAME_MAX + 1] = '\0';
    pattern_bad(name);
    char long_pattern[TXM_HTTP_PATTERN_MAX + 8];
    memset(long_pattern, 'a', sizeof long_pattern);
    long_pattern[0] = '/';
    long_pattern[sizeof long_pattern - 1] = '\0';
    pattern_bad(long_pattern);
}

static void route_match_captures_params(void **state)
{
    (void)state;
    txm__route_params p;
    assert_true(txm__route_match("/order/:id/cancel", "/order/42/cancel", &p));
    assert_int_equal(p.count, 1);
    assert_string_equal(txm__route_param(&p, "id"), "42");
    assert_null(txm__route_param(&p, "other"));
    assert_true(txm__route_match("/a/:x/b/:y", "/a/1/b/two", &p));
    assert_string_equal(txm__route_param(&p, "x"), "1");
    assert_string_equal(txm__route_param(&p, "y"), "two");
    assert_true(txm__route_match("/", "/", &p));
    assert_int_equal(p.count, 0);
    assert_true(txm__route_match("/orders/health", "/orders/health", NULL));
}

static void route_match_no_match(void **state)
{
    (void)state;
    txm__route_params p;
    assert_false(txm__route_match("/order/:id", "/orders/1", &p));
    assert_false(txm__route_match("/order/:id", "/order", &p));
    assert_false(txm__route_match("/order/:id", "/order/1/cancel", &p));
    assert_false(txm__route_match("/order/:id/cancel", "/order/1", &p));
    assert_false(txm__route_match("/", "/x", &p));
    assert_false(txm__route_match("/x", "/", &p));
    assert_false(txm__route_match("/order/:id", "/order//", &p));
    assert_false(txm__route_match("/Order", "/order", &p));
}

static void route_match_trailing_slash_is_not_equivalent(void **state)
{
    (void)state;
    assert_false(txm__route_match("/order/:id", "/order/1/", NULL));
    assert_false(txm__route_match("/orders", "/orders/", NULL));
    /* An empty segment never fills a parameter. */
    assert_false(txm__route_match("/order/:id", "/order/", NULL));
}

static void route_match_decodes_each_segment_after_split(void **state)
{
    (void)state;
    txm__route_params p;
    assert_true(txm__route_match("/file/:name", "/file/a%2Fb", &p));
    assert_string_equal(txm__route_param(&p, "name"), "a/b");
    assert_true(txm__route_match("/file/:name", "/file/caf%C3%A9%20x", &p));
    assert_string_equal(txm__route_param(&p, "name"), "caf\xC3\xA9 x");
    /* Literals compare after decoding; '+' is not a space in a path. */
    assert_true(txm__route_match("/order/:id", "/ord%65r/a+b", &p));
    assert_string_equal(txm__route_param(&p, "id"), "a+b");
}

static void route_match_rejects_over_long_value(void **state)
{
    (void)state;
    char path[TXM_HTTP_PARAM_VALUE_MAX + 16];
    memcpy(path, "/o/", 3);
    memset(path + 3, 'v', TXM_HTTP_PARAM_VALUE_MAX);
    path[3 + TXM_HTTP_PARAM_VALUE_MAX] = '\0';
    txm__route_params p;
    assert_true(txm__route_match("/o/:id", path, &p));
    assert_int_equal(strlen(txm__route_param(&p, "id")), TXM_HTTP_PARAM_VALUE_MAX);
    path[3 + TXM_HTTP_PARAM_VALUE_MAX] = 'v';
    path[4 + TXM_HTTP_PARAM_VALUE_MAX] = '\0';
    assert_false(txm__route_match("/o/:id", path, &p));
}

static void route_check_path_rejects_bad_escapes_and_long_paths(void **state)
{
    (void)state;
    assert_int_equal(txm__route_check_path("/order/1", NULL), TXM_OK);
    assert_int_equal(txm__route_check_path("/a%2fb%C3%A9", NULL), TXM_OK);
    assert_int_equal(txm__route_check_path("order", NULL), TXM_INVALID);
    assert_int_equal(txm__route_check_path(NULL, NULL), TXM_INVALID);
    assert_int_equal(txm__route_check_path("/a%", NULL), TXM_INVALID);
    assert_int_equal(txm__route_check_path("/a%4", NULL), TXM_INVALID);
    assert_int_equal(txm__route_check_path("/a%zz", NULL), TXM_INVALID);
    assert_int_equal(txm__route_check_path("/a%00b", NULL), TXM_INVALID);
    char path[TXM_HTTP_PATH_MAX + 2];
    memset(path, 'a', sizeof path);
    path[0] = '/';
    path[TXM_HTTP_PATH_MAX] = '\0';
    assert_int_equal(txm__route_check_path(path, NULL), TXM_OK);
    path[TXM_HTTP_PATH_MAX] = 'a';
    path[TXM_HTTP_PATH_MAX + 1] = '\0';
    txm_error err = {0};
    assert_int_equal(txm__route_check_path(path, &err), TXM_TOO_BIG);
    assert_int_equal(err.status, TXM_TOO_BIG);
}

static void route_pct_decode_bounds_and_plus(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(txm__pct_decode("a+b%21", 6, true, out, sizeof out), 4);
    assert_string_equal(out, "a b!");
    assert_int_equal(txm__pct_decode("a+b", 3, false, out, sizeof out), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(txm__pct_decode("1234567", 7, false, out, sizeof out), 7);
    assert_int_equal(txm__pct_decode("12345678", 8, false, out, sizeof out), -1);
    assert_int_equal(txm__pct_decode("%0", 2, false, out, sizeof out), -1);
    assert_int_equal(txm__pct_decode("%00", 3, false, out, sizeof out), -1);
    assert_int_equal(txm__pct_decode("", 0, false, out, sizeof out), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(route_pattern_accepts_literals_and_params),
        cmocka_unit_test(route_pattern_rejects_malformed),
        cmocka_unit_test(route_match_captures_params),
        cmocka_unit_test(route_match_no_match),
        cmocka_unit_test(route_match_trailing_slash_is_not_equivalent),
        cmocka_unit_test(route_match_decodes_each_segment_after_split),
        cmocka_unit_test(route_match_rejects_over_long_value),
        cmocka_unit_test(route_check_path_rejects_bad_escapes_and_long_paths),
        cmocka_unit_test(route_pct_decode_bounds_and_plus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
