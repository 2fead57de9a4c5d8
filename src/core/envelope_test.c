/* Tests for the CloudEvents envelope codec (envelope.c): every case in
 * tests/data/envelope, generated huge inputs, round trips and OOM paths. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/core_int.h"
#include "txmsg/message.h"

#ifndef TXM_TEST_DATA_DIR
#error "TXM_TEST_DATA_DIR must name tests/data/envelope"
#endif

#define CORR "0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9e"
#define MSG_ID "0190f5e4-8b7a-7000-8000-000000000001"
#define T_2026 1795733071123456LL /* 2026-11-26T22:44:31.123456Z */

/* The data directory: argv[1] when given, else the compile-time path. */
static const char *data_dir = TXM_TEST_DATA_DIR;

/* Reads a whole file into a heap buffer of exactly its size (so ASan sees
 * any read past the end); returns NULL if it cannot be opened. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        char *p = realloc(buf, n + got);
        assert_non_null(p);
        buf = p;
        memcpy(buf + n, chunk, got);
        n += got;
    }
    fclose(f);
    *len = n;
    return buf != NULL ? buf : malloc(1); /* an empty file gives a 1-byte buffer */
}

/* Decodes one case directory and returns 1 if the status is the expected one
 * (the first word of "expect", MALFORMED when that file is absent). */
static int run_case(const char *name, int *malformed_count)
{
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s/input", data_dir, name);
    char *input = read_file(path, &len);
    if (input == NULL) {
        print_error("case %s: cannot read %s\n", name, path);
        return 0;
    }
    char want[32] = "MALFORMED";
    size_t elen = 0;
    snprintf(path, sizeof path, "%s/%s/expect", data_dir, name);
    char *expect = read_file(path, &elen);
    if (expect != NULL) {
        size_t i = 0;
        while (i < elen && i < sizeof want - 1 && expect[i] >= 'A' && expect[i] <= 'Z')
            want[i] = expect[i], i++;
        want[i] = '\0';
        free(expect);
    }
    txm_msg *m = NULL;
    txm_error err = {0};
    txm_status st = txm_msg_decode(input, len, &m, &err);
    int ok = strcmp(txm_status_name(st), want) == 0;
    if (ok && st != TXM_OK)
        ok = m == NULL && err.status == st && err.text[0] != '\0';
    if (ok && st == TXM_OK)
        ok = m != NULL && strcmp(txm_msg_topic(m), "order--created") == 0;
    if (!ok)
        print_error("case %s: got %s (%s), want %s\n", name, txm_status_name(st), err.text, want);
    *malformed_count += strcmp(want, "MALFORMED") == 0;
    txm_msg_free(m);
    free(input);
    return ok;
}

static void envelope_data_cases_return_expected_status(void **state)
{
    (void)state;
    DIR *d = opendir(data_dir);
    if (d == NULL)
        fail_msg("cannot open %s", data_dir);
    int cases = 0, failed = 0, malformed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        cases++;
        failed += !run_case(e->d_name, &malformed);
    }
    closedir(d);
    if (failed > 0)
        fail_msg("%d of %d envelope cases failed", failed, cases);
    assert_true(malformed >= 15);
}

static void assert_round_trip(const txm_msg *m);

#ifndef TXM_TEST_CE_DIR
#error "TXM_TEST_CE_DIR must name tests/data/cloudevents"
#endif

static const char *const kind_names[] = {"JSON", "TEXT", "BINARY", "NONE"};

/* The value of field key of m as an expect file writes it, in buf. */
static const char *field_of(const txm_msg *m, const char *key, char *buf, size_t size)
{
    size_t len = 0;
    const char *data = txm_msg_data(m, &len);
    if (strcmp(key, "id") == 0)
        return txm_msg_id(m);
    if (strcmp(key, "source") == 0)
        return txm_msg_source(m);
    if (strcmp(key, "type") == 0)
        return txm_msg_topic(m);
    if (strcmp(key, "aggregate_id") == 0)
        return txm_msg_aggregate_id(m);
    if (strcmp(key, "correlation_id") == 0)
        return txm_msg_correlation_id(m);
    if (strcmp(key, "content_type") == 0)
        return txm_msg_content_type(m);
    if (strcmp(key, "kind") == 0)
        return kind_names[txm_msg_data_kind(m)];
    if (strcmp(key, "time") == 0 && !txm_msg_has_time(m))
        return "absent";
    if (strcmp(key, "time") == 0 && size > TXM_TIME_LEN) {
        txm_time_format(txm_msg_created_at_us(m), buf);
        return buf;
    }
    if (strcmp(key, "data") == 0 && txm_msg_data_kind(m) != TXM_DATA_BINARY)
        return data;
    if (strcmp(key, "data") == 0 && TXM__BASE64_LEN(len) < size) {
        txm__base64_encode((const unsigned char *)data, len, buf);
        return buf;
    }
    if (strncmp(key, "ext.", 4) == 0)
        return txm_msg_extension(m, key + 4);
    return NULL;
}

/* Checks m against the "<field> <value>" lines of an expect file; returns
 * the number of mismatches, each printed. */
static int check_fields(const char *name, const txm_msg *m, char *expect)
{
    int bad = 0;
    size_t exts = 0;
    char buf[4096];
    char *save = NULL;
    strtok_r(expect, "\n", &save); /* the status line */
    for (char *line = strtok_r(NULL, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        const char *want = sp != NULL ? sp + 1 : "";
        if (sp != NULL)
            *sp = '\0';
        exts += strncmp(line, "ext.", 4) == 0;
        const char *got = field_of(m, line, buf, sizeof buf);
        if (got == NULL || strcmp(got, want) != 0) {
            print_error("case %s: %s is \"%s\", want \"%s\"\n", name, line,
                        got != NULL ? got : "(none)", want);
            bad++;
        }
    }
    if (exts != txm_msg_extension_count(m)) {
        print_error("case %s: %zu other attributes, want %zu\n", name, txm_msg_extension_count(m),
                    exts);
        bad++;
    }
    return bad;
}

/* Decodes one case of tests/data/cloudevents; returns 1 if it gives the
 * expected status and fields, and (when OK) survives a re-publish. */
static int run_ce_case(const char *dir, const char *name)
{
    char path[1024];
    size_t len = 0, elen = 0;
    snprintf(path, sizeof path, "%s/%s/input", dir, name);
    char *input = read_file(path, &len);
    snprintf(path, sizeof path, "%s/%s/expect", dir, name);
    char *raw = read_file(path, &elen);
    if (input == NULL || raw == NULL) {
        free(input);
        free(raw);
        return -1; /* not a case: README.md, make_fixtures.js */
    }
    char *expect = calloc(1, elen + 1);
    assert_non_null(expect);
    memcpy(expect, raw, elen);
    free(raw);
    txm_msg *m = NULL;
    txm_error err = {0};
    txm_status st = txm_msg_decode(input, len, &m, &err);
    int want_ok = strncmp(expect, "OK\n", 3) == 0;
    int ok = want_ok ? st == TXM_OK : st == TXM_MALFORMED && m == NULL;
    if (!ok)
        print_error("case %s: got %s (%s)\n", name, txm_status_name(st), err.text);
    if (ok && want_ok) {
        ok = check_fields(name, m, expect) == 0;
        assert_round_trip(m);
    }
    txm_msg_free(m);
    free(expect);
    free(input);
    return ok;
}

static void envelope_cloudevents_fixtures_decode_as_expected(void **state)
{
    (void)state;
    DIR *d = opendir(TXM_TEST_CE_DIR);
    if (d == NULL)
        fail_msg("cannot open %s", TXM_TEST_CE_DIR);
    int cases = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int r = run_ce_case(TXM_TEST_CE_DIR, e->d_name);
        cases += r >= 0;
        failed += r == 0;
    }
    closedir(d);
    if (failed > 0)
        fail_msg("%d of %d CloudEvents fixtures failed", failed, cases);
    assert_true(cases >= 15);
}

/* The documented message, as txm_msg_encode must write it. */
static const char expected_doc[] =
    "{\"specversion\":\"1.0\",\"id\":\"" MSG_ID "\",\"source\":\"orders\","
    "\"type\":\"order--created\",\"time\":\"2026-11-26T22:44:31.123456Z\","
    "\"datacontenttype\":\"application/json\",\"subject\":\"order-42\","
    "\"partitionkey\":\"order-42\",\"correlationid\":\"" CORR "\","
    "\"data\":{\"orderId\":\"order-42\",\"total\":1999,\"note\":\"caf\xc3\xa9 \\\"q\\\"\"}}";

static txm_msg *sample_msg(void)
{
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_new_with(MSG_ID, "orders", "order--created", "order-42", CORR,
                                      "{\"orderId\": \"order-42\", \"total\": 1999, "
                                      "\"note\": \"caf\\u00e9 \\\"q\\\"\"}",
                                      T_2026, &m, NULL),
                     TXM_OK);
    return m;
}

static void envelope_encode_writes_cloudevents_exactly(void **state)
{
    (void)state;
    txm_msg *m = sample_msg();
    char *doc = NULL;
    size_t len = 0;
    assert_int_equal(txm_msg_encode(m, &doc, &len, NULL), TXM_OK);
    assert_string_equal(doc, expected_doc);
    assert_int_equal(len, strlen(expected_doc));
    txm_free(doc);
    assert_int_equal(txm_msg_encode(m, &doc, NULL, NULL), TXM_OK); /* len is optional */
    txm_free(doc);
    txm_msg_free(m);
}

static void assert_same_msg(const txm_msg *a, const txm_msg *b)
{
    assert_string_equal(txm_msg_id(a), txm_msg_id(b));
    assert_string_equal(txm_msg_source(a), txm_msg_source(b));
    assert_string_equal(txm_msg_topic(a), txm_msg_topic(b));
    assert_string_equal(txm_msg_aggregate_id(a), txm_msg_aggregate_id(b));
    assert_string_equal(txm_msg_correlation_id(a), txm_msg_correlation_id(b));
    assert_string_equal(txm_msg_payload(a), txm_msg_payload(b));
    assert_int_equal(txm_msg_created_at_us(a), txm_msg_created_at_us(b));
    assert_int_equal(txm_msg_has_time(a), txm_msg_has_time(b));
    assert_int_equal(txm_msg_data_kind(a), txm_msg_data_kind(b));
    assert_string_equal(txm_msg_content_type(a), txm_msg_content_type(b));
    size_t alen = 0, blen = 0;
    const char *adata = txm_msg_data(a, &alen), *bdata = txm_msg_data(b, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(adata, bdata, alen);
    assert_int_equal(txm_msg_extension_count(a), txm_msg_extension_count(b));
    for (size_t i = 0; i < txm_msg_extension_count(a); i++) {
        const char *aname = NULL, *bname = NULL;
        assert_string_equal(txm_msg_extension_at(a, i, &aname), txm_msg_extension_at(b, i, &bname));
        assert_string_equal(aname, bname);
    }
}

/* Encodes m, decodes the result from an exactly-sized, unterminated buffer,
 * and checks every field came back. */
static void assert_round_trip(const txm_msg *m)
{
    char *doc = NULL;
    size_t len = 0;
    assert_int_equal(txm_msg_encode(m, &doc, &len, NULL), TXM_OK);
    char *exact = malloc(len);
    assert_non_null(exact);
    memcpy(exact, doc, len);
    txm_msg *back = NULL;
    txm_error err = {0};
    if (txm_msg_decode(exact, len, &back, &err) != TXM_OK)
        fail_msg("decode of own encoding failed: %s", err.text);
    assert_same_msg(m, back);
    txm_msg_free(back);
    free(exact);
    txm_free(doc);
}

static void envelope_round_trip_keeps_every_field(void **state)
{
    (void)state;
    txm_msg *m = sample_msg();
    assert_round_trip(m);
    txm_msg_free(m);
    assert_int_equal(txm_msg_new("t", "agg \xf0\x9f\x98\x80 \"quoted\" \\", NULL,
                                 "[1, 2.5, -3e-7, true, null, {\"k\": [\"\\u0001\"]}]", &m, NULL),
                     TXM_OK);
    assert_round_trip(m); /* no source: encoded as "" and read back as "" */
    assert_int_equal(txm_msg_set_source(m, "s", NULL), TXM_OK);
    assert_round_trip(m);
    txm_msg_free(m);
    assert_int_equal(txm_msg_new_with("i", NULL, "t", "a", CORR, "{}", TXM__TIME_MIN_US, &m, NULL),
                     TXM_OK);
    assert_round_trip(m);
    txm_msg_free(m);
    assert_int_equal(txm_msg_new_with("i", NULL, "t", "a", CORR, "[]", TXM__TIME_MAX_US, &m, NULL),
                     TXM_OK);
    assert_round_trip(m);
    txm_msg_free(m);
}

static void envelope_decode_then_encode_is_compact_and_stable(void **state)
{
    (void)state;
    const char pretty[] =
        "{ \"data\" : { \"orderId\" : \"order-42\" , \"total\" : 1999 ,"
        " \"note\" : \"caf\xc3\xa9 \\\"q\\\"\" },\n \"specversion\" : \"1.0\", \"id\": \"" MSG_ID
        "\", \"source\": \"orders\", \"type\": \"order--created\", \"extension\": 5,"
        " \"time\": \"2026-11-27T04:14:31.123456789+05:30\", \"subject\": \"order-42\","
        " \"correlationid\": \"" CORR "\" }";
    txm_msg *m = NULL;
    assert_int_equal(txm_msg_decode(pretty, strlen(pretty), &m, NULL), TXM_OK);
    char *doc = NULL;
    assert_int_equal(txm_msg_encode(m, &doc, NULL, NULL), TXM_OK);
    /* The extension attribute is kept, after txmsg's own attributes. */
    const char *data = strstr(expected_doc, ",\"data\":");
    char want[sizeof expected_doc + 32];
    snprintf(want, sizeof want, "%.*s,\"extension\":5%s", (int)(data - expected_doc), expected_doc,
             data);
    assert_string_equal(doc, want);
    txm_free(doc);
    txm_msg_free(m);
}

/* Decodes doc, checks that it re-encodes to want (or to itself when want
 * is NULL) and that the re-encoding decodes to the same message. */
static void assert_republished(const char *doc, const char *want)
{
    txm_msg *m = NULL;
    txm_error err = {0};
    if (txm_msg_decode(doc, strlen(doc), &m, &err) != TXM_OK)
        fail_msg("decode: %s", err.text);
    char *out = NULL;
    assert_int_equal(txm_msg_encode(m, &out, NULL, NULL), TXM_OK);
    assert_string_equal(out, want != NULL ? want : doc);
    assert_round_trip(m);
    txm_free(out);
    txm_msg_free(m);
}

static void envelope_republish_keeps_foreign_events(void **state)
{
    (void)state;
    /* Binary data of unknown type: no datacontenttype is added. */
    assert_republished("{\"specversion\":\"1.0\",\"id\":\"D234\",\"source\":\"/c\","
                       "\"type\":\"com.example.someevent\",\"correlationid\":\"D234\","
                       "\"data_base64\":\"eyAieHl6IjogMTIzIH0=\"}",
                       NULL);
    /* Text data, no time, extensions with their JSON types. */
    assert_republished("{\"specversion\":\"1.0\",\"id\":\"B\",\"source\":\"/c\",\"type\":\"t\","
                       "\"datacontenttype\":\"application/xml\",\"correlationid\":\"B\","
                       "\"comexampleextension1\":\"value\",\"comexampleothervalue\":5,"
                       "\"flag\":false,\"data\":\"<much wow=\\\"xml\\\"/>\\n\\t\\u0001\"}",
                       NULL);
    /* A partitionkey other than the subject is kept; no data stays none. */
    assert_republished("{\"specversion\":\"1.0\",\"id\":\"C\",\"source\":\"/c\",\"type\":\"t\","
                       "\"subject\":\"s\",\"partitionkey\":\"p\",\"correlationid\":\"x\"}",
                       NULL);
    /* Defaults are written out: partitionkey and correlationid. */
    assert_republished(
        "{\"specversion\":\"1.0\",\"id\":\"C\",\"source\":\"/c\",\"type\":\"t\","
        "\"subject\":\"s\",\"data\":\"just a string\"}",
        "{\"specversion\":\"1.0\",\"id\":\"C\",\"source\":\"/c\",\"type\":\"t\","
        "\"datacontenttype\":\"application/json\",\"subject\":\"s\","
        "\"partitionkey\":\"s\",\"correlationid\":\"C\",\"data\":\"just a string\"}");
}

/* The document for the sample message with attribute name set to the JSON
 * text value (a fresh heap string the caller frees). */
static char *doc_with(const char *name, const char *value)
{
    json_error_t jerr;
    json_t *root = json_loads(expected_doc, 0, &jerr);
    assert_non_null(root);
    json_t *v = json_loads(value, JSON_DECODE_ANY, &jerr);
    assert_non_null(v);
    assert_int_equal(json_object_set_new(root, name, v), 0);
    char *s = json_dumps(root, JSON_COMPACT);
    assert_non_null(s);
    json_decref(root);
    return s;
}

static void expect_decode(const char *doc, txm_status want, const char *text_part)
{
    txm_msg *m = (txm_msg *)&m;
    txm_error err = {0};
    txm_status st = txm_msg_decode(doc, strlen(doc), &m, &err);
    if (st != want)
        fail_msg("got %s (%s), want %s", txm_status_name(st), err.text, txm_status_name(want));
    if (st != TXM_OK) {
        assert_null(m);
        if (text_part != NULL && strstr(err.text, text_part) == NULL)
            fail_msg("error \"%s\" does not mention %s", err.text, text_part);
    }
    txm_msg_free(m);
}

/* Sets attribute name to a string of n copies of c; expects want. */
static void expect_long_attr(const char *name, char c, size_t n, txm_status want)
{
    char *value = malloc(n + 3);
    assert_non_null(value);
    value[0] = '"';
    memset(value + 1, c, n);
    memcpy(value + 1 + n, "\"", 2);
    char *doc = doc_with(name, value);
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    expect_decode(doc, want, quoted);
    free(doc);
    free(value);
}

static void envelope_decode_rejects_huge_strings(void **state)
{
    (void)state;
    expect_long_attr("id", 'i', 300, TXM_MALFORMED);
    expect_long_attr("id", 'i', TXM_ID_MAX, TXM_OK);
    expect_long_attr("type", 't', TXM_TOPIC_MAX + 1, TXM_MALFORMED);
    expect_long_attr("type", 't', TXM_TOPIC_MAX, TXM_OK);
    expect_long_attr("subject", 's', TXM_ID_MAX + 1, TXM_MALFORMED);
    expect_long_attr("source", 's', TXM_ID_MAX + 1, TXM_MALFORMED);
    expect_long_attr("correlationid", 'c', TXM_ID_MAX + 1, TXM_MALFORMED);
    expect_long_attr("time", '9', 100000, TXM_MALFORMED);
    expect_long_attr("id", 'i', 1000000, TXM_MALFORMED);
}

static void envelope_decode_errors_name_the_attribute(void **state)
{
    (void)state;
    /* "data" is left out: 12 is valid JSON data. */
    const char *attrs[] = {"specversion", "id",      "source",        "type",
                           "time",        "subject", "correlationid", "datacontenttype",
                           "partitionkey"};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        char *doc = doc_with(attrs[i], "12");
        expect_decode(doc, TXM_MALFORMED, attrs[i]);
        free(doc);
    }
    char *doc = doc_with("time", "\"2026-02-30T00:00:00Z\"");
    expect_decode(doc, TXM_MALFORMED, "time");
    free(doc);
    expect_decode("[]", TXM_MALFORMED, "top level");
    expect_decode("{\"a\":", TXM_MALFORMED, "not JSON");
}

/* data nested depth levels deep, as an envelope document (caller frees). */
static char *deep_doc(size_t depth)
{
    const char *head = "{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"\",\"type\":\"t\","
                       "\"time\":\"2026-11-26T22:44:31Z\",\"subject\":\"a\","
                       "\"correlationid\":\"c\",\"data\":";
    size_t hlen = strlen(head);
    char *s = malloc(hlen + 2 * depth + 2);
    assert_non_null(s);
    memcpy(s, head, hlen);
    memset(s + hlen, '[', depth);
    memset(s + hlen + depth, ']', depth);
    memcpy(s + hlen + 2 * depth, "}", 2);
    return s;
}

static void envelope_decode_limits_nesting(void **state)
{
    (void)state;
    size_t depths[] = {1, 64, 65, 2047, 3000, 200000};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        char *doc = deep_doc(depths[i]);
        expect_decode(doc, depths[i] <= TXM_JSON_DEPTH_MAX ? TXM_OK : TXM_MALFORMED, NULL);
        free(doc);
    }
}

static void envelope_decode_past_limit_is_too_big(void **state)
{
    (void)state;
    size_t len = (size_t)TXM_ENVELOPE_MAX + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, ' ', len);
    txm_msg *m = NULL;
    txm_error err = {0};
    assert_int_equal(txm_msg_decode(big, len, &m, &err), TXM_TOO_BIG);
    assert_null(m);
    assert_int_equal(err.status, TXM_TOO_BIG);
    free(big);
}

static void envelope_null_arguments(void **state)
{
    (void)state;
    txm_msg *m = NULL;
    char *doc = (char *)&doc;
    assert_int_equal(txm_msg_decode("{}", 2, NULL, NULL), TXM_INVALID);
    assert_int_equal(txm_msg_decode(NULL, 5, &m, NULL), TXM_INVALID);
    assert_int_equal(txm_msg_decode(NULL, 0, &m, NULL), TXM_MALFORMED);
    assert_int_equal(txm_msg_encode(NULL, &doc, NULL, NULL), TXM_INVALID);
    assert_null(doc);
    m = sample_msg();
    assert_int_equal(txm_msg_encode(m, NULL, NULL, NULL), TXM_INVALID);
    txm_msg_free(m);
}

/* Fails the nth library allocation for n = 0, 1, ... until encode and decode
 * succeed; each failure must be TXM_NOMEM with nothing returned or leaked. */
static void envelope_codec_survives_every_allocation_failure(void **state)
{
    (void)state;
    txm_msg *m = sample_msg();
    int encoded = 0, decoded = 0;
    for (long n = 0; n < 200 && !(encoded && decoded); n++) {
        char *doc = NULL;
        txm__alloc_fail_after(n);
        txm_status st = txm_msg_encode(m, &doc, NULL, NULL);
        txm__alloc_fail_after(-1);
        assert_true(st == TXM_OK || st == TXM_NOMEM);
        assert_true((st == TXM_OK) == (doc != NULL));
        encoded |= st == TXM_OK;
        txm_free(doc);

        txm_msg *back = NULL;
        txm__alloc_fail_after(n);
        st = txm_msg_decode(expected_doc, strlen(expected_doc), &back, NULL);
        txm__alloc_fail_after(-1);
        assert_true(st == TXM_OK || st == TXM_NOMEM);
        assert_true((st == TXM_OK) == (back != NULL));
        if (back != NULL)
            assert_same_msg(m, back);
        decoded |= st == TXM_OK;
        txm_msg_free(back);
    }
    assert_true(encoded && decoded);
    txm_msg_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        data_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(envelope_data_cases_return_expected_status),
        cmocka_unit_test(envelope_encode_writes_cloudevents_exactly),
        cmocka_unit_test(envelope_round_trip_keeps_every_field),
        cmocka_unit_test(envelope_decode_then_encode_is_compact_and_stable),
        cmocka_unit_test(envelope_republish_keeps_foreign_events),
        cmocka_unit_test(envelope_cloudevents_fixtures_decode_as_expected),
        cmocka_unit_test(envelope_decode_rejects_huge_strings),
        cmocka_unit_test(envelope_decode_errors_name_the_attribute),
        cmocka_unit_test(envelope_decode_limits_nesting),
        cmocka_unit_test(envelope_decode_past_limit_is_too_big),
        cmocka_unit_test(envelope_null_arguments),
        cmocka_unit_test(envelope_codec_survives_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
