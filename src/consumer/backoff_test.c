/* Backoff doubles per attempt and stops at its cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "consumer/backoff.h"

static void backoff_doubles_then_caps(void **state)
{
    (void)state;
    assert_int_equal(txm__backoff_ms(100, 1000, 1), 100);
    assert_int_equal(txm__backoff_ms(100, 1000, 2), 200);
    assert_int_equal(txm__backoff_ms(100, 1000, 4), 800);
    assert_int_equal(txm__backoff_ms(100, 1000, 5), 1000);
    assert_int_equal(txm__backoff_ms(100, 1000, 1000000), 1000);
}

static void backoff_zero_or_negative_settings_mean_no_delay(void **state)
{
    (void)state;
    assert_int_equal(txm__backoff_ms(0, 1000, 3), 0);
    assert_int_equal(txm__backoff_ms(100, 0, 3), 0);
    assert_int_equal(txm__backoff_ms(100, 1000, 0), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_then_caps),
        cmocka_unit_test(backoff_zero_or_negative_settings_mean_no_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
