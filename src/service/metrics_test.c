/* Tests for the metrics registry in src/service/metrics.c. Every rendering
 * is checked by a small parser of the Prometheus text format 0.0.4. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "core/alloc.h"
#include "testdb.h"
#include "txmsg/service.h"

/* ---- a strict parser of the text format ---- */

#define FAMILIES_MAX 64

struct parse_state {
    char families[FAMILIES_MAX][TXM_METRICS_NAME_MAX + 1]; /* TYPE seen, in order */
    char types[FAMILIES_MAX][16];
    int nfamilies;
    int current; /* family of the last line, -1 before any */
};

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Reads a metric or label name at *p; returns its length (0 if none). */
static size_t read_name(const char **p)
{
    size_t n = 0;
    while (name_char((*p)[n], n == 0))
        n++;
    *p += n;
    return n;
}

static int family_index(const struct parse_state *ps, const char *name, size_t len)
{
    for (int i = 0; i < ps->nfamilies; i++)
        if (strlen(ps->families[i]) == len && strncmp(ps->families[i], name, len) == 0)
            return i;
    return -1;
}

/* Parses `{a="x",b="y"}`; fails the test on any syntax error. */
static void parse_labels(const char **p, const char *line)
{
    (*p)++; /* '{' */
    while (**p != '}') {
        if (read_name(p) == 0 || **p != '=' || (*p)[1] != '"')
            fail_msg("bad label in: %s", line);
        *p += 2;
        while (**p != '"') {
            if (**p == '\0' || **p == '\n')
                fail_msg("unterminated label value in: %s", line);
            if (**p == '\\') {
                (*p)++;
                if (**p != '\\' && **p != '"' && **p != 'n')
                    fail_msg("bad escape in: %s", line);
            }
            (*p)++;
        }
        (*p)++;
        if (**p == ',')
            (*p)++;
        else if (**p != '}')
            fail_msg("expected , or } in: %s", line);
    }
    (*p)++;
}

static void parse_value(const char *p, const char *line)
{
    if (strcmp(p, "+Inf") == 0 || strcmp(p, "-Inf") == 0 || strcmp(p, "NaN") == 0)
        return;
    char *end = NULL;
    strtod(p, &end);
    if (end == p || *end != '\0')
        fail_msg("bad value in: %s", line);
}

/* The family a sample named name (len bytes) belongs to. */
static int sample_family(const struct parse_state *ps, const char *name, size_t len)
{
    int f = family_index(ps, name, len);
    if (f >= 0)
        return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len > sl && strncmp(name + len - sl, suffixes[i], sl) == 0) {
            f = family_index(ps, name, len - sl);
            if (f >= 0 && strcmp(ps->types[f], "histogram") == 0)
                return f;
        }
    }
    return -1;
}

static void parse_comment(struct parse_state *ps, const char *line)
{
    const char *p = line + 2;
    bool is_type = strncmp(p, "TYPE ", 5) == 0;
    if (!is_type && strncmp(p, "HELP ", 5) != 0)
        return; /* other comments are allowed */
    p += 5;
    const char *name = p;
    size_t len = read_name(&p);
    if (len == 0 || *p != ' ')
        fail_msg("bad comment: %s", line);
    if (!is_type)
        return;
    if (family_index(ps, name, len) >= 0)
        fail_msg("TYPE twice for a family: %s", line);
    p++;
    if (strcmp(p, "counter") != 0 && strcmp(p, "gauge") != 0 && strcmp(p, "histogram") != 0 &&
        strcmp(p, "summary") != 0 && strcmp(p, "untyped") != 0)
        fail_msg("bad type: %s", line);
    assert_true(ps->nfamilies < FAMILIES_MAX);
    snprintf(ps->families[ps->nfamilies], sizeof ps->families[0], "%.*s", (int)len, name);
    snprintf(ps->types[ps->nfamilies], sizeof ps->types[0], "%s", p);
    ps->current = ps->nfamilies++;
}

static void parse_line(struct parse_state *ps, const char *line)
{
    if (line[0] == '#') {
        if (line[1] != ' ')
            fail_msg("bad comment: %s", line);
        parse_comment(ps, line);
        return;
    }
    const char *p = line;
    size_t len = read_name(&p);
    if (len == 0)
        fail_msg("no metric name: %s", line);
    int f = sample_family(ps, line, len);
    if (f < 0)
        fail_msg("sample before its TYPE: %s", line);
    if (f != ps->current)
        fail_msg("family samples not contiguous: %s", line);
    if (*p == '{')
        parse_labels(&p, line);
    if (*p != ' ')
        fail_msg("expected a space before the value: %s", line);
    parse_value(p + 1, line);
}

/* Checks every line of text; returns the number of families. */
static int parse_exposition(const char *text)
{
    struct parse_state ps = {.current = -1};
    const char *p = text;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            fail_msg("last line without newline");
        char line[2048];
        assert_true((size_t)(nl - p) < sizeof line);
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = '\0';
        if (line[0] == '\0')
            fail_msg("empty line");
        parse_line(&ps, line);
        p = nl + 1;
    }
    return ps.nfamilies;
}

/* ---- helpers ---- */

static char *render(txm_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    txm_error err = {0};
    if (txm_metrics_render(m, &text, &len, &err) != TXM_OK)
        fail_msg("render: %s", err.text);
    assert_int_equal(strlen(text), len);
    parse_exposition(text);
    return text;
}

/* Asserts that text has the line `series value`. */
static void assert_line(const char *text, const char *series, const char *value)
{
    char want[1024];
    snprintf(want, sizeof want, "%s %s\n", series, value);
    const char *p = strstr(text, want);
    if (p == NULL || (p != text && p[-1] != '\n'))
        fail_msg("missing line \"%s %s\" in:\n%s", series, value, text);
}

static int count_occurrences(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static txm_metrics *new_registry(void)
{
    txm_metrics *m = NULL;
    assert_int_equal(txm_metrics_new(&m, NULL), TXM_OK);
    return m;
}

/* ---- tests ---- */

static void metrics_empty_registry_renders_empty_text(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    char *text = render(m);
    assert_string_equal(text, "");
    txm_free(text);
    txm_metrics_free(m);
    txm_metrics_free(NULL);
}

static void metrics_counter_with_labels_renders_type_once(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    const char *help = "Messages processed.";
    assert_int_equal(txm_metrics_counter_add(m, "txmsg_consumer_processed_total", help,
                                             TXM_LABELS("queue", "a"), 2, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_counter_add(m, "txmsg_consumer_processed_total", help,
                                             TXM_LABELS("queue", "b"), 1, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_counter_add(m, "txmsg_consumer_processed_total", help,
                                             TXM_LABELS("queue", "a"), 1, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_counter_add(m, "txmsg_relay_published_total", NULL, NULL, 5, NULL),
                     TXM_OK);
    char *text = render(m);
    assert_int_equal(parse_exposition(text), 2);
    assert_int_equal(count_occurrences(text, "# TYPE txmsg_consumer_processed_total counter\n"), 1);
    assert_int_equal(count_occurrences(text, "# HELP txmsg_consumer_processed_total "), 1);
    assert_line(text, "txmsg_consumer_processed_total{queue=\"a\"}", "3");
    assert_line(text, "txmsg_consumer_processed_total{queue=\"b\"}", "1");
    assert_line(text, "txmsg_relay_published_total", "5");
    txm_free(text);
    txm_metrics_free(m);
}

static void metrics_label_order_names_one_series(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    const char *n = "txm_http_requests_total";
    assert_int_equal(
        txm_metrics_counter_add(m, n, "h", TXM_LABELS("status", "200", "route", "/x"), 1, NULL),
        TXM_OK);
    assert_int_equal(
        txm_metrics_counter_add(m, n, "h", TXM_LABELS("route", "/x", "status", "200"), 1, NULL),
        TXM_OK);
    char *text = render(m);
    assert_line(text, "txm_http_requests_total{route=\"/x\",status=\"200\"}", "2");
    assert_int_equal(count_occurrences(text, "txm_http_requests_total{"), 1);
    txm_free(text);
    txm_metrics_free(m);
}

static void metrics_label_values_and_help_are_escaped(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    assert_int_equal(txm_metrics_gauge_set(m, "g", "line one\nback\\slash \"quoted\"",
                                           TXM_LABELS("v", "a\"b\\c\nd"), 1.5, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, TXM_LABELS("v", "caf\xC3\xA9"), -2, NULL),
                     TXM_OK);
    char *text = render(m);
    assert_non_null(strstr(text, "# HELP g line one\\nback\\\\slash \"quoted\"\n"));
    assert_line(text, "g{v=\"a\\\"b\\\\c\\nd\"}", "1.5");
    assert_line(text, "g{v=\"caf\xC3\xA9\"}", "-2");
    txm_free(text);
    txm_metrics_free(m);
}

static void metrics_gauge_set_and_add(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    assert_int_equal(txm_metrics_gauge_set(m, "txmsg_outbox_not_dispatched", "h", NULL, 7, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_gauge_add(m, "txmsg_outbox_not_dispatched", "h", NULL, -2.5, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_gauge_add(m, "inflight", NULL, NULL, 0.1, NULL), TXM_OK);
    char *text = render(m);
    assert_line(text, "txmsg_outbox_not_dispatched", "4.5");
    assert_line(text, "inflight", "0.1");
    assert_non_null(strstr(text, "# TYPE txmsg_outbox_not_dispatched gauge\n"));
    txm_free(text);
    txm_metrics_free(m);
}

static txm_status value_from_ctx(void *ctx, double *value)
{
    *value = *(double *)ctx;
    return TXM_OK;
}

static txm_status value_fails(void *ctx, double *value)
{
    (void)ctx;
    (void)value;
    return TXM_DB;
}

/* A callback that updates the registry it is rendered from: the render
 * must not hold the lock while it runs. */
static txm_status value_updates_registry(void *ctx, double *value)
{
    txm_metrics *m = ctx;
    assert_int_equal(txm_metrics_counter_add(m, "callback_calls_total", NULL, NULL, 1, NULL),
                     TXM_OK);
    *value = 42;
    return TXM_OK;
}

static void metrics_callbacks_are_evaluated_at_render(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    double age = 3.25;
    double total = 10;
    const char *n = "txmsg_outbox_oldest_not_dispatched_age_seconds";
    assert_int_equal(txm_metrics_gauge_fn(m, n, "age", NULL, value_from_ctx, &age, NULL), TXM_OK);
    assert_int_equal(txm_metrics_gauge_fn(m, "txmsg_dlq_depth", "depth", TXM_LABELS("queue", "q"),
                                          value_fails, NULL, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_counter_fn(m, "txmsg_consumer_failures_total", NULL,
                                            TXM_LABELS("queue", "q"), value_from_ctx, &total, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_gauge_fn(m, "self", NULL, NULL, value_updates_registry, m, NULL),
                     TXM_OK);
    char *text = render(m);
    assert_line(text, n, "3.25");
    assert_line(text, "txmsg_consumer_failures_total{queue=\"q\"}", "10");
    assert_line(text, "self", "42");
    assert_null(strstr(text, "txmsg_dlq_depth{"));
    assert_non_null(strstr(text, "# TYPE txmsg_dlq_depth gauge\n"));
    txm_free(text);
    age = 60;
    assert_int_equal(txm_metrics_gauge_fn(m, "txmsg_dlq_depth", NULL, TXM_LABELS("queue", "q"),
                                          value_from_ctx, &total, NULL),
                     TXM_OK);
    text = render(m);
    assert_line(text, n, "60");
    assert_line(text, "txmsg_dlq_depth{queue=\"q\"}", "10");
    assert_line(text, "callback_calls_total", "2");
    txm_free(text);
    assert_int_equal(txm_metrics_gauge_fn(m, "x", NULL, NULL, NULL, NULL, NULL), TXM_INVALID);
    txm_metrics_free(m);
}

/* Rendering named families only runs only their callbacks: the registry
 * counts each run of "self" in callback_calls_total. */
static void metrics_render_only_skips_other_families(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    double total = 10;
    assert_int_equal(txm_metrics_counter_fn(m, "txmsg_relay_published_total", NULL, NULL,
                                            value_from_ctx, &total, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_gauge_fn(m, "self", NULL, NULL, value_updates_registry, m, NULL),
                     TXM_OK);
    const char *names[] = {"txmsg_relay_published_total", "callback_calls_total", "nothing"};
    char *text = NULL;
    assert_int_equal(txm_metrics_render_only(m, names, 3, &text, NULL, NULL), TXM_OK);
    assert_line(text, "txmsg_relay_published_total", "10");
    assert_null(strstr(text, "self"));
    assert_null(strstr(text, "callback_calls_total")); /* "self" never ran, so it does not exist */
    txm_free(text);
    text = render(m); /* everything: self runs once */
    assert_line(text, "self", "42");
    txm_free(text);
    assert_int_equal(txm_metrics_render_only(m, names + 1, 1, &text, NULL, NULL), TXM_OK);
    assert_line(text, "callback_calls_total", "1");
    assert_null(strstr(text, "txmsg_relay_published_total"));
    txm_free(text);
    assert_int_equal(txm_metrics_render_only(m, NULL, 1, &text, NULL, NULL), TXM_INVALID);
    assert_null(text);
    txm_metrics_free(m);
}

static void metrics_histogram_buckets_are_cumulative(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    const char *n = "txm_http_request_duration_seconds";
    const double values[] = {0.0005, 0.001, 0.003, 0.2, 20};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        assert_int_equal(txm_metrics_histogram_observe(m, n, "d", TXM_LABELS("route", "/o/:id"),
                                                       values[i], NULL),
                         TXM_OK);
    char *text = render(m);
    assert_non_null(strstr(text, "# TYPE txm_http_request_duration_seconds histogram\n"));
    const char *b = "txm_http_request_duration_seconds_bucket";
    char series[256];
    const struct {
        const char *le;
        const char *count;
    } want[] = {{"0.001", "2"}, {"0.0025", "2"}, {"0.005", "3"}, {"0.1", "3"},
                {"0.25", "4"},  {"1", "4"},      {"10", "4"},    {"+Inf", "5"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(series, sizeof series, "%s{route=\"/o/:id\",le=\"%s\"}", b, want[i].le);
        assert_line(text, series, want[i].count);
    }
    assert_int_equal(count_occurrences(text, "_bucket{"), 14);
    assert_line(text, "txm_http_request_duration_seconds_count{route=\"/o/:id\"}", "5");
    assert_line(text, "txm_http_request_duration_seconds_sum{route=\"/o/:id\"}", "20.2045");
    txm_free(text);
    txm_metrics_free(m);
}

/* What a histogram callback gives: a copy of data, or status. */
struct hist_source {
    txm_metrics_histogram_data data;
    txm_status status;
};

static txm_status hist_from_ctx(void *ctx, txm_metrics_histogram_data *data)
{
    const struct hist_source *src = ctx;
    /* The registry hands over a zeroed struct. */
    assert_int_equal(data->n_bounds, 0);
    assert_int_equal(data->count, 0);
    *data = src->data;
    return src->status;
}

static void metrics_histogram_fn_renders_its_bounds_cumulatively(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    struct hist_source batch = {.data = {.n_bounds = 3,
                                         .bounds = {1, 2.5, 10},
                                         .buckets = {2, 0, 3, 1},
                                         .count = 6,
                                         .sum = 21.5}};
    struct hist_source empty = {.data = {.n_bounds = 0, .buckets = {4}, .count = 4, .sum = 0.5}};
    assert_int_equal(txm_metrics_histogram_fn(m, "txmsg_batch_size", "Messages per batch.",
                                              TXM_LABELS("queue", "q"), hist_from_ctx, &batch,
                                              NULL),
                     TXM_OK);
    assert_int_equal(
        txm_metrics_histogram_fn(m, "only_inf", NULL, NULL, hist_from_ctx, &empty, NULL), TXM_OK);
    char *text = render(m);
    assert_string_equal(text, "# HELP txmsg_batch_size Messages per batch.\n"
                              "# TYPE txmsg_batch_size histogram\n"
                              "txmsg_batch_size_bucket{queue=\"q\",le=\"1\"} 2\n"
                              "txmsg_batch_size_bucket{queue=\"q\",le=\"2.5\"} 2\n"
                              "txmsg_batch_size_bucket{queue=\"q\",le=\"10\"} 5\n"
                              "txmsg_batch_size_bucket{queue=\"q\",le=\"+Inf\"} 6\n"
                              "txmsg_batch_size_sum{queue=\"q\"} 21.5\n"
                              "txmsg_batch_size_count{queue=\"q\"} 6\n"
                              "# TYPE only_inf histogram\n"
                              "only_inf_bucket{le=\"+Inf\"} 4\n"
                              "only_inf_sum 0.5\n"
                              "only_inf_count 4\n");
    txm_free(text);
    /* Read again at each render. */
    batch.data.buckets[3] = 3;
    batch.data.count = 8;
    batch.data.sum = 80.25;
    text = render(m);
    assert_line(text, "txmsg_batch_size_bucket{queue=\"q\",le=\"10\"}", "5");
    assert_line(text, "txmsg_batch_size_bucket{queue=\"q\",le=\"+Inf\"}", "8");
    assert_line(text, "txmsg_batch_size_sum{queue=\"q\"}", "80.25");
    assert_line(text, "txmsg_batch_size_count{queue=\"q\"}", "8");
    txm_free(text);
    txm_metrics_free(m);
}

/* A failing callback, or data the format cannot carry, leaves that series
 * out of the rendering and nothing else. */
static void metrics_histogram_fn_failure_or_bad_data_leaves_series_out(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    const txm_metrics_histogram_data good = {
        .n_bounds = 2, .bounds = {0.1, 1}, .buckets = {1, 1, 1}, .count = 3, .sum = 2};
    struct {
        const char *name;
        struct hist_source src;
    } cases[] = {{"good", {good, TXM_OK}},       {"fails", {good, TXM_DB}},
                 {"too_many", {good, TXM_OK}},   {"equal", {good, TXM_OK}},
                 {"decreasing", {good, TXM_OK}}, {"nan", {good, TXM_OK}},
                 {"inf", {good, TXM_OK}},        {"count", {good, TXM_OK}}};
    cases[2].src.data.n_bounds = TXM_METRICS_HISTOGRAM_BOUNDS_MAX + 1;
    cases[3].src.data.bounds[1] = 0.1;
    cases[4].src.data.bounds[1] = 0.05;
    cases[5].src.data.bounds[0] = strtod("nan", NULL);
    cases[6].src.data.bounds[1] = strtod("inf", NULL);
    cases[7].src.data.count = 4;
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(txm_metrics_histogram_fn(m, "h", "help", TXM_LABELS("case", cases[i].name),
                                                  hist_from_ctx, &cases[i].src, NULL),
                         TXM_OK);
    char *text = render(m);
    assert_string_equal(text, "# HELP h help\n"
                              "# TYPE h histogram\n"
                              "h_bucket{case=\"good\",le=\"0.1\"} 1\n"
                              "h_bucket{case=\"good\",le=\"1\"} 2\n"
                              "h_bucket{case=\"good\",le=\"+Inf\"} 3\n"
                              "h_sum{case=\"good\"} 2\n"
                              "h_count{case=\"good\"} 3\n");
    txm_free(text);
    /* Fixed data is rendered again. */
    cases[1].src.status = TXM_OK;
    cases[7].src.data.count = 3;
    text = render(m);
    assert_line(text, "h_count{case=\"fails\"}", "3");
    assert_line(text, "h_count{case=\"count\"}", "3");
    assert_int_equal(count_occurrences(text, "_count{"), 3);
    txm_free(text);
    txm_metrics_free(m);
}

/* One name, one type: a callback histogram cannot take a name used by a
 * counter or gauge, nor they its name; observed and callback series may
 * share a histogram family. */
static void metrics_histogram_fn_refuses_kind_conflicts(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    struct hist_source src = {
        .data = {.n_bounds = 1, .bounds = {1}, .buckets = {1, 0}, .count = 1}};
    txm_error err = {0};
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, NULL, 1, NULL), TXM_OK);
    assert_int_equal(txm_metrics_histogram_fn(m, "g", NULL, NULL, hist_from_ctx, &src, &err),
                     TXM_INVALID);
    assert_non_null(strstr(err.text, "another type"));
    assert_int_equal(
        txm_metrics_histogram_fn(m, "g", NULL, TXM_LABELS("q", "a"), hist_from_ctx, &src, NULL),
        TXM_INVALID);
    assert_int_equal(txm_metrics_counter_add(m, "c_total", NULL, NULL, 1, NULL), TXM_OK);
    assert_int_equal(txm_metrics_histogram_fn(m, "c_total", NULL, NULL, hist_from_ctx, &src, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_histogram_fn(m, "h_total", NULL, TXM_LABELS("q", "a"),
                                              hist_from_ctx, &src, NULL),
                     TXM_OK);
    assert_int_equal(txm_metrics_counter_add(m, "h_total", NULL, TXM_LABELS("q", "a"), 1, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_counter_fn(m, "h_total", NULL, TXM_LABELS("q", "b"),
                                            value_from_ctx, &(double){1}, NULL),
                     TXM_INVALID);
    assert_int_equal(
        txm_metrics_gauge_fn(m, "h_total", NULL, NULL, value_from_ctx, &(double){1}, NULL),
        TXM_INVALID);
    /* Same kind: an observed series beside the callback one. */
    assert_int_equal(
        txm_metrics_histogram_observe(m, "h_total", NULL, TXM_LABELS("q", "b"), 0.2, NULL), TXM_OK);
    /* Arguments are checked as for the other kinds. */
    assert_int_equal(txm_metrics_histogram_fn(m, "h2", NULL, NULL, NULL, NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_histogram_fn(NULL, "h2", NULL, NULL, hist_from_ctx, &src, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_histogram_fn(m, "h-2", NULL, NULL, hist_from_ctx, &src, NULL),
                     TXM_INVALID);
    assert_int_equal(
        txm_metrics_histogram_fn(m, "h2", NULL, TXM_LABELS("le", "1"), hist_from_ctx, &src, NULL),
        TXM_INVALID);
    char *text = render(m);
    assert_int_equal(count_occurrences(text, "# TYPE "), 3);
    assert_non_null(strstr(text, "# TYPE g gauge\n"));
    assert_non_null(strstr(text, "# TYPE c_total counter\n"));
    assert_non_null(strstr(text, "# TYPE h_total histogram\n"));
    assert_line(text, "g", "1");
    assert_line(text, "c_total", "1");
    assert_line(text, "h_total_bucket{q=\"a\",le=\"1\"}", "1");
    assert_line(text, "h_total_count{q=\"a\"}", "1");
    assert_line(text, "h_total_bucket{q=\"b\",le=\"0.25\"}", "1");
    assert_line(text, "h_total_count{q=\"b\"}", "1");
    assert_null(strstr(text, "h2"));
    txm_free(text);
    txm_metrics_free(m);
}

static void metrics_rejects_bad_names_labels_and_values(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    txm_error err = {0};
    assert_int_equal(txm_metrics_counter_add(m, "requests", NULL, NULL, 1, &err), TXM_INVALID);
    assert_non_null(strstr(err.text, "_total"));
    assert_int_equal(txm_metrics_counter_add(m, "_total", NULL, NULL, 1, NULL), TXM_OK);
    assert_int_equal(txm_metrics_counter_add(m, "x_total", NULL, NULL, -1, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "1abc", NULL, NULL, 1, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "a-b", NULL, NULL, 1, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "", NULL, NULL, 1, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, NULL, NULL, NULL, 1, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(NULL, "g", NULL, NULL, 1, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, TXM_LABELS("le", "1"), 1, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, TXM_LABELS("__x", "1"), 1, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, TXM_LABELS("a:b", "1"), 1, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, TXM_LABELS("a", "1", "a", "2"), 1, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, TXM_LABELS("a", "\xff"), 1, NULL),
                     TXM_INVALID);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL,
                                           TXM_LABELS("a", "1", "b", "1", "c", "1", "d", "1", "e",
                                                      "1", "f", "1", "g", "1", "h", "1", "i", "1"),
                                           1, NULL),
                     TXM_INVALID);
    double nan = strtod("nan", NULL);
    double inf = strtod("inf", NULL);
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, NULL, nan, NULL), TXM_INVALID);
    assert_int_equal(txm_metrics_histogram_observe(m, "h", NULL, NULL, inf, NULL), TXM_INVALID);
    /* One name, one type. */
    assert_int_equal(txm_metrics_gauge_set(m, "g", NULL, NULL, 1, NULL), TXM_OK);
    assert_int_equal(txm_metrics_histogram_observe(m, "g", NULL, NULL, 1, &err), TXM_INVALID);
    assert_int_equal(txm_metrics_histogram_observe(m, "g", NULL, TXM_LABELS("x", "y"), 1, NULL),
                     TXM_INVALID);
    char *text = render(m);
    assert_line(text, "g", "1");
    txm_free(text);
    txm_metrics_free(m);
}

static void metrics_series_limit_gives_too_big(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    char value[16];
    for (int i = 0; i < TXM_METRICS_SERIES_MAX; i++) {
        snprintf(value, sizeof value, "%d", i);
        assert_int_equal(
            txm_metrics_counter_add(m, "n_total", NULL, TXM_LABELS("i", value), 1, NULL), TXM_OK);
    }
    txm_error err = {0};
    assert_int_equal(txm_metrics_counter_add(m, "n_total", NULL, TXM_LABELS("i", "new"), 1, &err),
                     TXM_TOO_BIG);
    assert_int_equal(txm_metrics_gauge_set(m, "other", NULL, NULL, 1, NULL), TXM_TOO_BIG);
    /* Existing series still update. */
    assert_int_equal(txm_metrics_counter_add(m, "n_total", NULL, TXM_LABELS("i", "7"), 1, NULL),
                     TXM_OK);
    char *text = render(m);
    assert_line(text, "n_total{i=\"7\"}", "2");
    assert_line(text, "n_total{i=\"1023\"}", "1");
    txm_free(text);
    txm_metrics_free(m);
}

#define THREADS 8
#define ADDS 5000

static void *add_many(void *arg)
{
    txm_metrics *m = arg;
    for (int i = 0; i < ADDS; i++) {
        txm_metrics_counter_add(m, "c_total", NULL, TXM_LABELS("k", i % 2 ? "odd" : "even"), 1,
                                NULL);
        txm_metrics_histogram_observe(m, "h", NULL, NULL, 0.01, NULL);
        if (i % 500 == 0) {
            char *text = NULL;
            assert_int_equal(txm_metrics_render(m, &text, NULL, NULL), TXM_OK);
            txm_free(text);
        }
    }
    return NULL;
}

static void metrics_concurrent_updates_are_not_lost(void **state)
{
    (void)state;
    txm_metrics *m = new_registry();
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, add_many, m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    char *text = render(m);
    char want[32];
    snprintf(want, sizeof want, "%d", THREADS * ADDS / 2);
    assert_line(text, "c_total{k=\"even\"}", want);
    assert_line(text, "c_total{k=\"odd\"}", want);
    snprintf(want, sizeof want, "%d", THREADS * ADDS);
    assert_line(text, "h_count", want);
    txm_free(text);
    txm_metrics_free(m);
}

/* Makes each allocation fail in turn: every call returns TXM_NOMEM or
 * succeeds, and nothing leaks (checked under ASan). */
static void metrics_out_of_memory_fails_cleanly(void **state)
{
    (void)state;
    struct hist_source src = {
        .data = {.n_bounds = 1, .bounds = {1}, .buckets = {2, 1}, .count = 3}};
    bool done = false;
    for (long n = 0; !done; n++) {
        txm_metrics *m = NULL;
        txm__alloc_fail_after(n);
        txm_status st = txm_metrics_new(&m, NULL);
        if (st == TXM_OK)
            st = txm_metrics_counter_add(m, "a_total", "help", TXM_LABELS("q", "x"), 1, NULL);
        if (st == TXM_OK)
            st = txm_metrics_histogram_observe(m, "h", "help", NULL, 0.5, NULL);
        if (st == TXM_OK)
            st = txm_metrics_histogram_fn(m, "hf", "help", TXM_LABELS("q", "x"), hist_from_ctx,
                                          &src, NULL);
        char *text = NULL;
        if (st == TXM_OK)
            st = txm_metrics_render(m, &text, NULL, NULL);
        txm__alloc_fail_after(-1);
        if (st == TXM_OK) {
            parse_exposition(text);
            assert_non_null(strstr(text, "hf_bucket{q=\"x\",le=\"+Inf\"} 3\n"));
            done = true;
        } else {
            assert_int_equal(st, TXM_NOMEM);
            assert_null(text);
        }
        txm_free(text);
        txm_metrics_free(m);
        assert_true(n < 100);
    }
}

/* The outbox gauges read the outbox at each render: one row not dispatched,
 * then none (age 0). */
static void metrics_outbox_gauges_follow_the_outbox(void **state)
{
    txm_fixture *fx = txm_fixture_get(state);
    txm_metrics *m = NULL;
    assert_int_equal(txm_metrics_new(&m, NULL), TXM_OK);
    assert_int_equal(txm_metrics_add_outbox(m, fx->db, NULL), TXM_OK);
    assert_int_equal(txm_metrics_add_outbox(NULL, fx->db, NULL), TXM_INVALID);
    txm_uow *uow = NULL;
    txm_msg *msg = NULL;
    assert_int_equal(txm_uow_begin(fx->db, &uow, NULL), TXM_OK);
    assert_int_equal(txm_msg_new("order--created", "order-1", NULL, "{}", &msg, NULL), TXM_OK);
    char id[TXM_UUID_LEN + 1];
    memcpy(id, txm_msg_id(msg), sizeof id);
    assert_int_equal(txm_outbox_publish(uow, &msg, NULL), TXM_OK);
    assert_int_equal(txm_uow_commit(&uow, NULL), TXM_OK);
    char *text = render(m);
    assert_line(text, "txmsg_outbox_not_dispatched", "1");
    txm_free(text);
    const char *ids[] = {id};
    assert_int_equal(txm_outbox_mark_dispatched(fx->db, ids, 1, NULL, NULL), TXM_OK);
    text = render(m);
    assert_line(text, "txmsg_outbox_not_dispatched", "0");
    assert_line(text, "txmsg_outbox_oldest_not_dispatched_age_seconds", "0");
    txm_free(text);
    txm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_empty_registry_renders_empty_text),
        cmocka_unit_test(metrics_counter_with_labels_renders_type_once),
        cmocka_unit_test(metrics_label_order_names_one_series),
        cmocka_unit_test(metrics_label_values_and_help_are_escaped),
        cmocka_unit_test(metrics_gauge_set_and_add),
        cmocka_unit_test(metrics_callbacks_are_evaluated_at_render),
        cmocka_unit_test(metrics_render_only_skips_other_families),
        cmocka_unit_test(metrics_histogram_buckets_are_cumulative),
        cmocka_unit_test(metrics_histogram_fn_renders_its_bounds_cumulatively),
        cmocka_unit_test(metrics_histogram_fn_failure_or_bad_data_leaves_series_out),
        cmocka_unit_test(metrics_histogram_fn_refuses_kind_conflicts),
        cmocka_unit_test(metrics_rejects_bad_names_labels_and_values),
        cmocka_unit_test(metrics_series_limit_gives_too_big),
        cmocka_unit_test(metrics_concurrent_updates_are_not_lost),
        cmocka_unit_test(metrics_out_of_memory_fails_cleanly),
        TXM_TEST_BOTH(metrics_outbox_gauges_follow_the_outbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
