/* Tests for JSON log lines in src/service/log.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>

#include "service/service_int.h"
#include "txmsg/db.h"
#include "txmsg/message.h"

/* Reads everything written to f so far, one line per array element. */
static json_t *read_lines(FILE *f)
{
    fflush(f);
    rewind(f);
    json_t *lines = json_array();
    char buf[16384];
    while (fgets(buf, sizeof buf, f) != NULL) {
        size_t len = strlen(buf);
        assert_true(len > 0 && buf[len - 1] == '\n');
        json_error_t jerr;
        json_t *line = json_loadb(buf, len - 1, 0, &jerr);
        if (line == NULL)
            fail_msg("not JSON (%s): %s", jerr.text, buf);
        assert_true(json_is_object(line));
        json_array_append_new(lines, line);
    }
    return lines;
}

static const char *field(const json_t *line, const char *key)
{
    return json_string_value(json_object_get(line, key));
}

static void log_line_has_standard_fields(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    txm_logger lg;
    txm_logger_init(&lg, "orders");
    lg.stream = f;
    txm_log_write(&lg, TXM_LOG_INFO, "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", "order %s created",
                  "o-1");
    txm_log_write(&lg, TXM_LOG_ERROR, NULL, "boom %d", 42);
    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), 2);
    json_t *first = json_array_get(lines, 0);
    assert_string_equal(field(first, "level"), "info");
    assert_string_equal(field(first, "service"), "orders");
    assert_string_equal(field(first, "msg"), "order o-1 created");
    assert_string_equal(field(first, "correlation_id"), "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b");
    int64_t us = 0;
    assert_int_equal(txm_time_parse(field(first, "ts"), &us, NULL), TXM_OK);
    int64_t now = txm_now_us();
    assert_true(us <= now && us > now - 60 * 1000000LL);
    json_t *second = json_array_get(lines, 1);
    assert_string_equal(field(second, "level"), "error");
    assert_string_equal(field(second, "msg"), "boom 42");
    assert_null(json_object_get(second, "correlation_id"));
    json_decref(lines);
    fclose(f);
}

static void log_min_level_drops_lower_levels(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    txm_logger lg;
    txm_logger_init(&lg, NULL);
    lg.stream = f;
    txm_log_write(&lg, TXM_LOG_DEBUG, NULL, "hidden");
    txm_log_write(&lg, TXM_LOG_WARN, NULL, "shown");
    lg.min_level = TXM_LOG_ERROR;
    txm_log_write(&lg, TXM_LOG_WARN, NULL, "hidden too");
    txm_log_write(NULL, TXM_LOG_ERROR, NULL, "no logger");
    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), 1);
    assert_string_equal(field(json_array_get(lines, 0), "msg"), "shown");
    assert_string_equal(field(json_array_get(lines, 0), "level"), "warn");
    assert_string_equal(field(json_array_get(lines, 0), "service"), "txmsg");
    json_decref(lines);
    fclose(f);
}

static void log_escapes_quotes_controls_and_bad_utf8(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    txm_logger lg;
    txm_logger_init(&lg, "svc\"x");
    lg.stream = f;
    txm_log_write(&lg, TXM_LOG_INFO, "c\"id", "a \"quoted\"\nline\twith \\ and \x01 and \xff!");
    txm_log_write(&lg, TXM_LOG_INFO, NULL, "caf\xC3\xA9 \xE2\x82");
    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), 2);
    json_t *first = json_array_get(lines, 0);
    assert_string_equal(field(first, "msg"),
                        "a \"quoted\"\nline\twith \\ and \x01 and \xEF\xBF\xBD!");
    assert_string_equal(field(first, "service"), "svc\"x");
    assert_string_equal(field(first, "correlation_id"), "c\"id");
    assert_string_equal(field(json_array_get(lines, 1), "msg"),
                        "caf\xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD");
    json_decref(lines);
    fclose(f);
}

static void log_truncates_long_messages(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    txm_logger lg;
    txm_logger_init(&lg, "s");
    lg.stream = f;
    char *big = malloc(TXM_LOG_MSG_MAX * 2);
    memset(big, 'x', TXM_LOG_MSG_MAX * 2 - 1);
    big[TXM_LOG_MSG_MAX * 2 - 1] = '\0';
    txm_log_write(&lg, TXM_LOG_INFO, NULL, "%s", big);
    free(big);
    json_t *lines = read_lines(f);
    assert_int_equal(strlen(field(json_array_get(lines, 0), "msg")), TXM_LOG_MSG_MAX);
    json_decref(lines);
    fclose(f);
}

static void log_service_name_is_truncated_on_a_character(void **state)
{
    (void)state;
    char name[TXM_LOG_SERVICE_MAX + 8];
    memset(name, 'n', sizeof name);
    /* A two-byte character straddling the limit is dropped whole. */
    memcpy(name + TXM_LOG_SERVICE_MAX - 1, "\xC3\xA9", 2);
    name[sizeof name - 1] = '\0';
    txm_logger lg;
    txm_logger_init(&lg, name);
    assert_int_equal(strlen(lg.service), TXM_LOG_SERVICE_MAX - 1);
    assert_null(lg.stream);
    assert_int_equal(lg.min_level, TXM_LOG_INFO);
}

static void log_fn_adapter_writes_through_logger(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    txm_logger lg;
    txm_logger_init(&lg, "relay");
    lg.stream = f;
    txm_log_fn fn = txm_logger_fn; /* compatible with the library's callback type */
    fn(&lg, TXM_LOG_WARN, "db: 100% busy");
    fn(&lg, TXM_LOG_INFO, NULL);
    fn(NULL, TXM_LOG_ERROR, "dropped");
    json_t *lines = read_lines(f);
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(field(json_array_get(lines, 0), "msg"), "db: 100% busy");
    assert_string_equal(field(json_array_get(lines, 0), "level"), "warn");
    assert_string_equal(field(json_array_get(lines, 1), "msg"), "");
    json_decref(lines);
    fclose(f);
}

static void log_fields_are_added_without_overriding(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    txm_logger lg;
    txm_logger_init(&lg, "s");
    lg.stream = f;
    json_t *fields = json_pack("{s:s, s:i, s:s}", "method", "GET", "status", 200, "msg", "evil");
    txm__log_fields(&lg, TXM_LOG_INFO, "cid", "request", fields);
    json_decref(fields);
    json_t *lines = read_lines(f);
    json_t *line = json_array_get(lines, 0);
    assert_string_equal(field(line, "msg"), "request");
    assert_string_equal(field(line, "method"), "GET");
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
    json_decref(lines);
    fclose(f);
}

#define THREADS 8
#define LINES 300

static void *write_many(void *arg)
{
    const txm_logger *lg = arg;
    char padding[600];
    memset(padding, 'p', sizeof padding - 1);
    padding[sizeof padding - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        txm_log_write(lg, TXM_LOG_INFO, NULL, "line %d %s", i, padding);
    return NULL;
}

static void log_concurrent_lines_never_interleave(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    txm_logger lg;
    txm_logger_init(&lg, "s");
    lg.stream = f;
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, write_many, &lg), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    json_t *lines = read_lines(f); /* fails on any torn line */
    assert_int_equal(json_array_size(lines), THREADS * LINES);
    json_decref(lines);
    fclose(f);
}

static void log_utf8_prefix_follows_rfc3629(void **state)
{
    (void)state;
    assert_int_equal(txm__utf8_valid_prefix("abc", 3), 3);
    assert_int_equal(txm__utf8_valid_prefix("\xC3\xA9", 2), 2);
    assert_int_equal(txm__utf8_valid_prefix("\xC3", 1), 0);
    assert_int_equal(txm__utf8_valid_prefix("a\xC0\x80", 3), 1);        /* overlong */
    assert_int_equal(txm__utf8_valid_prefix("\xED\xA0\x80", 3), 0);     /* surrogate */
    assert_int_equal(txm__utf8_valid_prefix("\xF4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    assert_int_equal(txm__utf8_valid_prefix("\xF0\x9F\x98\x80", 4), 4); /* emoji */
    assert_int_equal(txm__utf8_valid_prefix("\xE0\x80\x80", 3), 0);     /* overlong */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_line_has_standard_fields),
        cmocka_unit_test(log_min_level_drops_lower_levels),
        cmocka_unit_test(log_escapes_quotes_controls_and_bad_utf8),
        cmocka_unit_test(log_truncates_long_messages),
        cmocka_unit_test(log_service_name_is_truncated_on_a_character),
        cmocka_unit_test(log_fn_adapter_writes_through_logger),
        cmocka_unit_test(log_fields_are_added_without_overriding),
        cmocka_unit_test(log_concurrent_lines_never_interleave),
        cmocka_unit_test(log_utf8_prefix_follows_rfc3629),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
