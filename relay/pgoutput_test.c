/* Tests for the pgoutput decoder (pgoutput.c): hand-built messages, every
 * truncation of each, allocation failures, limits, and the cases in
 * tests/data/pgoutput (each "input" is a series of frames, an Int32 length
 * and that many bytes; "expect" holds one status name per frame). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgoutput.h"
#include "tail.h"

#define OUTBOX_RELID 16385u

/* A growable byte buffer for building messages. */
typedef struct bytes {
    uint8_t data[8192];
    size_t len;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    assert_true(b->len + n <= sizeof b->data);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u8(bytes *b, unsigned v)
{
    uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}

static void put_u16(bytes *b, unsigned v)
{
    put_u8(b, v >> 8);
    put_u8(b, v);
}

static void put_u32(bytes *b, uint32_t v)
{
    put_u16(b, v >> 16);
    put_u16(b, v & 0xffffu);
}

static void put_u64(bytes *b, uint64_t v)
{
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

static void put_str(bytes *b, const char *s)
{
    put(b, s, strlen(s) + 1);
}

static void put_text(bytes *b, const char *s)
{
    put_u8(b, 't');
    put_u32(b, (uint32_t)strlen(s));
    put(b, s, strlen(s));
}

static const char *const outbox_columns[] = {
    "seq",           "message_id",         "source",
    "aggregate_id",  "correlation_id",     "topic",
    "payload",       "created_at",         "approximate_dispatch_count",
    "is_dispatched", "last_dispatched_at",
};
#define OUTBOX_NCOLS (sizeof outbox_columns / sizeof *outbox_columns)

static const char *const outbox_row[OUTBOX_NCOLS] = {
    "7",
    "0190f5e4-8b7a-7000-8000-000000000001",
    "orders",
    "order-42",
    "0190f5e4-8b7a-7c3d-9e21-4f5a6b7c8d9e",
    "order--created",
    "{\"total\": 1999}",
    "2026-11-26 22:44:31.123456+00",
    "0",
    "f",
    NULL,
};

static void build_begin(bytes *b)
{
    put_u8(b, 'B');
    put_u64(b, 0x16B3748);
    put_u64(b, 848443471123456);
    put_u32(b, 742);
}

static void build_commit(bytes *b)
{
    put_u8(b, 'C');
    put_u8(b, 0);
    put_u64(b, 0x16B3748);
    put_u64(b, 0x16B3780);
    put_u64(b, 848443471123457);
}

static void build_relation(bytes *b, uint32_t id, const char *const *cols, size_t n)
{
    put_u8(b, 'R');
    put_u32(b, id);
    put_str(b, "public");
    put_str(b, "txmsg_outbox");
    put_u8(b, 'd');
    put_u16(b, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        put_u8(b, i == 0 ? 1 : 0);
        put_str(b, cols[i]);
        put_u32(b, i == 0 ? 20 : 25);
        put_u32(b, 0xffffffffu);
    }
}

static void build_insert(bytes *b, uint32_t id, const char *const *row, size_t n)
{
    put_u8(b, 'I');
    put_u32(b, id);
    put_u8(b, 'N');
    put_u16(b, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        if (row[i] == NULL)
            put_u8(b, 'n');
        else
            put_text(b, row[i]);
    }
}

/* A Message as pgoutput sends it in protocol 1 (no xid): flags, LSN,
 * prefix, content length and content. */
static void build_message(bytes *b, unsigned flags, const char *prefix, const void *content,
                          size_t len)
{
    put_u8(b, 'M');
    put_u8(b, flags);
    put_u64(b, 0x16B3760);
    put_str(b, prefix);
    put_u32(b, (uint32_t)len);
    put(b, content, len);
}

static txm_status decode(relay_pgoutput *d, const bytes *b, relay_pgoutput_msg *m, txm_error *e)
{
    return relay_pgoutput_decode(d, b->data, b->len, m, e);
}

/* A decoder holding the outbox relation. */
static void decoder_with_outbox(relay_pgoutput *d)
{
    relay_pgoutput_init(d);
    bytes b = {.len = 0};
    build_relation(&b, OUTBOX_RELID, outbox_columns, OUTBOX_NCOLS);
    relay_pgoutput_msg m;
    assert_int_equal(decode(d, &b, &m, NULL), TXM_OK);
}

static void pgoutput_begin_decodes_every_field(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    bytes b = {.len = 0};
    build_begin(&b);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_int_equal(m.type, 'B');
    assert_false(m.skipped);
    assert_int_equal(m.begin.final_lsn, 0x16B3748);
    assert_int_equal(m.begin.commit_ts, 848443471123456);
    assert_int_equal(m.begin.xid, 742);
    relay_pgoutput_fini(&d);
}

static void pgoutput_commit_decodes_every_field(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    bytes b = {.len = 0};
    build_commit(&b);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_int_equal(m.type, 'C');
    assert_int_equal(m.commit.flags, 0);
    assert_int_equal(m.commit.commit_lsn, 0x16B3748);
    assert_int_equal(m.commit.end_lsn, 0x16B3780);
    assert_int_equal(m.commit.commit_ts, 848443471123457);
    relay_pgoutput_fini(&d);
}

static void pgoutput_relation_is_cached_with_its_columns(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    bytes b = {.len = 0};
    build_relation(&b, OUTBOX_RELID, outbox_columns, OUTBOX_NCOLS);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    memset(b.data, 0xAA, b.len); /* the cache must not point into the message */
    assert_int_equal(m.type, 'R');
    assert_non_null(m.relation);
    assert_int_equal(m.relation->id, OUTBOX_RELID);
    assert_string_equal(m.relation->schema, "public");
    assert_string_equal(m.relation->name, "txmsg_outbox");
    assert_int_equal(m.relation->replica_identity, 'd');
    assert_int_equal(m.relation->count, OUTBOX_NCOLS);
    for (size_t i = 0; i < OUTBOX_NCOLS; i++)
        assert_string_equal(m.relation->columns[i].name, outbox_columns[i]);
    assert_int_equal(m.relation->columns[0].flags, 1);
    assert_int_equal(m.relation->columns[0].type_oid, 20);
    assert_int_equal(m.relation->columns[1].typmod, -1);
    assert_int_equal(d.rel_count, 1);
    relay_pgoutput_fini(&d);
}

static void pgoutput_insert_values_are_found_by_column_name(void **state)
{
    (void)state;
    relay_pgoutput d;
    decoder_with_outbox(&d);
    bytes b = {.len = 0};
    build_insert(&b, OUTBOX_RELID, outbox_row, OUTBOX_NCOLS);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    memset(b.data, 0xAA, b.len); /* values must be copies */
    assert_int_equal(m.type, 'I');
    assert_string_equal(m.relation->name, "txmsg_outbox");
    assert_int_equal(m.count, OUTBOX_NCOLS);
    for (size_t i = 0; i + 1 < OUTBOX_NCOLS; i++) {
        assert_string_equal(relay_pgoutput_text(&m, outbox_columns[i]), outbox_row[i]);
        assert_int_equal(m.values[i].len, strlen(outbox_row[i]));
    }
    assert_null(relay_pgoutput_text(&m, "last_dispatched_at"));
    assert_int_equal(relay_pgoutput_find(&m, "last_dispatched_at")->kind, 'n');
    assert_null(relay_pgoutput_find(&m, "no_such_column"));
    assert_null(relay_pgoutput_text(NULL, "topic"));
    relay_pgoutput_fini(&d);
}

static void pgoutput_insert_unchanged_and_empty_values(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    static const char *const cols[] = {"a", "b", "c"};
    bytes b = {.len = 0};
    build_relation(&b, 1, cols, 3);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    b.len = 0;
    put_u8(&b, 'I');
    put_u32(&b, 1);
    put_u8(&b, 'N');
    put_u16(&b, 3);
    put_u8(&b, 'u');
    put_text(&b, "");
    put_u8(&b, 'n');
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_int_equal(relay_pgoutput_find(&m, "a")->kind, 'u');
    assert_null(relay_pgoutput_text(&m, "a"));
    assert_string_equal(relay_pgoutput_text(&m, "b"), "");
    assert_null(relay_pgoutput_text(&m, "c"));
    relay_pgoutput_fini(&d);
}

static void pgoutput_relation_with_same_id_replaces_the_cached_one(void **state)
{
    (void)state;
    relay_pgoutput d;
    decoder_with_outbox(&d);
    static const char *const cols[] = {"x", "message_id"};
    bytes b = {.len = 0};
    build_relation(&b, OUTBOX_RELID, cols, 2);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_int_equal(d.rel_count, 1);
    static const char *const row[] = {"1", "id-1"};
    b.len = 0;
    build_insert(&b, OUTBOX_RELID, row, 2);
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_string_equal(relay_pgoutput_text(&m, "message_id"), "id-1");
    b.len = 0;
    build_insert(&b, OUTBOX_RELID, outbox_row, OUTBOX_NCOLS);
    txm_error e;
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "11 columns"));
    relay_pgoutput_fini(&d);
}

static void pgoutput_reset_forgets_relations(void **state)
{
    (void)state;
    relay_pgoutput d;
    decoder_with_outbox(&d);
    relay_pgoutput_reset(&d);
    bytes b = {.len = 0};
    build_insert(&b, OUTBOX_RELID, outbox_row, OUTBOX_NCOLS);
    relay_pgoutput_msg m;
    txm_error e;
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "unknown relation 16385"));
    relay_pgoutput_fini(&d);
}

static void pgoutput_skips_messages_it_does_not_need(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    const char types[] = "OYTUD";
    for (size_t i = 0; types[i] != '\0'; i++) {
        uint8_t one = (uint8_t)types[i];
        relay_pgoutput_msg m;
        assert_int_equal(relay_pgoutput_decode(&d, &one, 1, &m, NULL), TXM_OK);
        assert_true(m.skipped);
        assert_int_equal(m.type, types[i]);
    }
    relay_pgoutput_fini(&d);
}

static void pgoutput_message_decodes_and_copies_prefix_and_content(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    static const uint8_t content[] = {1, 0, 0xff, 'x', 0};
    bytes b = {.len = 0};
    build_message(&b, RELAY_PGOUTPUT_MESSAGE_TRANSACTIONAL, "txmsg", content, sizeof content);
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    memset(b.data, 0xAA, b.len); /* prefix and content must be copies */
    assert_int_equal(m.type, 'M');
    assert_false(m.skipped);
    assert_int_equal(m.message.flags, RELAY_PGOUTPUT_MESSAGE_TRANSACTIONAL);
    assert_int_equal(m.message.lsn, 0x16B3760);
    assert_string_equal(m.message.prefix, "txmsg");
    assert_int_equal(m.message.len, sizeof content);
    assert_memory_equal(m.message.content, content, sizeof content);

    /* Non-transactional, empty content, and a prefix longer than any name:
     * other applications' messages decode too (the tailer ignores them). */
    char prefix[400];
    memset(prefix, 'p', sizeof prefix - 1);
    prefix[sizeof prefix - 1] = '\0';
    b.len = 0;
    build_message(&b, 0, prefix, "", 0);
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_int_equal(m.message.flags, 0);
    assert_int_equal(m.message.len, 0);
    assert_string_equal(m.message.prefix, prefix);
    relay_pgoutput_fini(&d);
}

static void pgoutput_message_rejects_bad_flags_lengths_and_trailing(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    relay_pgoutput_msg m;
    txm_error e;
    bytes b = {.len = 0};
    build_message(&b, 2, "txmsg", "abc", 3);
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "unknown flags"));
    b.len = 0;
    build_message(&b, 1, "txmsg", "abc", 3);
    b.data[b.len - 4 - 3] = 0x7f; /* content length far past the end */
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "truncated at content"));
    b.len = 0;
    build_message(&b, 1, "txmsg", "abc", 3);
    put_u8(&b, 0);
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "1 trailing bytes"));
    b.len = 0;
    put_u8(&b, 'M');
    put_u8(&b, 1);
    put_u64(&b, 1);
    put(&b, "txmsg", 5); /* prefix without its NUL, to the end */
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "prefix"));
    relay_pgoutput_fini(&d);
}

static void pgoutput_rejects_empty_unknown_and_trailing(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    relay_pgoutput_msg m;
    txm_error e;
    assert_int_equal(relay_pgoutput_decode(&d, (const uint8_t *)"", 0, &m, &e), TXM_MALFORMED);
    assert_int_equal(e.status, TXM_MALFORMED);
    assert_int_equal(relay_pgoutput_decode(&d, (const uint8_t *)"S", 1, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "unknown message type 0x53"));
    bytes b = {.len = 0};
    build_commit(&b);
    put_u8(&b, 0);
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "1 trailing bytes"));
    assert_int_equal(relay_pgoutput_decode(NULL, b.data, b.len, &m, &e), TXM_INVALID);
    assert_int_equal(relay_pgoutput_decode(&d, NULL, 3, &m, &e), TXM_INVALID);
    assert_int_equal(relay_pgoutput_decode(&d, b.data, RELAY_PGOUTPUT_MAX_LEN + 1, &m, &e),
                     TXM_TOO_BIG);
    relay_pgoutput_fini(&d);
}

/* Every proper prefix of a valid message must fail cleanly and leave the
 * cache as it was; ASan checks nothing is read past the prefix. */
static void expect_every_prefix_fails(relay_pgoutput *d, const bytes *b)
{
    size_t rels = d->rel_count;
    for (size_t n = 0; n < b->len; n++) {
        uint8_t *copy = malloc(n > 0 ? n : 1);
        assert_non_null(copy);
        memcpy(copy, b->data, n);
        relay_pgoutput_msg m;
        txm_error e = {0};
        txm_status st = relay_pgoutput_decode(d, copy, n, &m, &e);
        free(copy);
        if (st != TXM_MALFORMED)
            fail_msg("prefix of %zu of %zu bytes: %s", n, b->len, txm_status_name(st));
        assert_int_equal(e.status, TXM_MALFORMED);
        assert_true(e.text[0] != '\0');
        assert_int_equal(d->rel_count, rels);
    }
}

static void pgoutput_every_truncation_is_malformed(void **state)
{
    (void)state;
    relay_pgoutput d;
    decoder_with_outbox(&d);
    bytes b = {.len = 0};
    build_begin(&b);
    expect_every_prefix_fails(&d, &b);
    b.len = 0;
    build_commit(&b);
    expect_every_prefix_fails(&d, &b);
    b.len = 0;
    build_relation(&b, 99, outbox_columns, OUTBOX_NCOLS);
    expect_every_prefix_fails(&d, &b);
    b.len = 0;
    build_insert(&b, OUTBOX_RELID, outbox_row, OUTBOX_NCOLS);
    expect_every_prefix_fails(&d, &b);
    bytes msg = {.len = 0};
    build_message(&msg, 1, "txmsg", "\1record", 7);
    expect_every_prefix_fails(&d, &msg);
    /* The cached outbox relation survived every failed Relation message. */
    relay_pgoutput_msg m;
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_string_equal(relay_pgoutput_text(&m, "topic"), "order--created");
    relay_pgoutput_fini(&d);
}

static void pgoutput_relation_limits(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    relay_pgoutput_msg m;
    txm_error e;
    static const char *const one[] = {"a"};
    bytes b = {.len = 0};
    for (uint32_t id = 1; id <= RELAY_PGOUTPUT_MAX_RELATIONS; id++) {
        b.len = 0;
        build_relation(&b, id, one, 1);
        assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    }
    b.len = 0;
    build_relation(&b, 1000, one, 1);
    assert_int_equal(decode(&d, &b, &m, &e), TXM_TOO_BIG);
    assert_null(m.relation);
    b.len = 0;
    build_relation(&b, 1, one, 1); /* a known id is still replaced */
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    relay_pgoutput_reset(&d);

    b.len = 0;
    put_u8(&b, 'R');
    put_u32(&b, 5);
    put_str(&b, "public");
    put_str(&b, "t");
    put_u8(&b, 'd');
    put_u16(&b, RELAY_PGOUTPUT_MAX_COLUMNS + 1);
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "column count"));

    char long_name[RELAY_PGOUTPUT_MAX_NAME + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *const cols[] = {long_name};
    b.len = 0;
    build_relation(&b, 6, cols, 1);
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "name too long"));
    long_name[RELAY_PGOUTPUT_MAX_NAME] = '\0';
    b.len = 0;
    build_relation(&b, 6, cols, 1);
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_int_equal(d.rel_count, 1);
    relay_pgoutput_fini(&d);
}

static void pgoutput_insert_rejects_bad_values(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    static const char *const one[] = {"a"};
    bytes b = {.len = 0};
    relay_pgoutput_msg m;
    txm_error e;
    build_relation(&b, 1, one, 1);
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    static const struct {
        uint8_t kind;
        uint32_t len;
        const char *text;
        const char *why;
    } cases[] = {
        {'t', 0xffffffffu, "abc", "truncated at value"},
        {'t', 3, "a\0c", "NUL byte"},
        {'b', 3, "abc", "unknown kind"},
        {'x', 0, "abc", "unknown kind"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        b.len = 0;
        put_u8(&b, 'I');
        put_u32(&b, 1);
        put_u8(&b, 'N');
        put_u16(&b, 1);
        put_u8(&b, cases[i].kind);
        if (cases[i].kind != 'x') {
            put_u32(&b, cases[i].len);
            put(&b, cases[i].text, 3);
        }
        assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
        if (strstr(e.text, cases[i].why) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.text, cases[i].why);
    }
    b.len = 0;
    put_u8(&b, 'I');
    put_u32(&b, 1);
    put_u8(&b, 'O'); /* an old tuple never comes with an Insert */
    put_u16(&b, 1);
    put_u8(&b, 'n');
    assert_int_equal(decode(&d, &b, &m, &e), TXM_MALFORMED);
    assert_non_null(strstr(e.text, "expected 'N'"));
    relay_pgoutput_fini(&d);
}

static void set_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A large value grows the scratch; a small one after it still decodes, and
 * the scratch shrinks back. */
static void pgoutput_scratch_grows_and_shrinks(void **state)
{
    (void)state;
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    static const char *const one[] = {"payload"};
    bytes b = {.len = 0};
    relay_pgoutput_msg m;
    build_relation(&b, 1, one, 1);
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    size_t big = 2u << 20;
    uint8_t *msg = malloc(big + 12);
    assert_non_null(msg);
    memcpy(msg, "I\0\0\0\1N\0\1t", 9);
    set_u32(msg + 9, (uint32_t)big); /* one byte more than there is */
    memset(msg + 13, 'x', big - 1);
    assert_int_equal(relay_pgoutput_decode(&d, msg, big + 12, &m, NULL), TXM_MALFORMED);
    set_u32(msg + 9, (uint32_t)(big - 1));
    assert_int_equal(relay_pgoutput_decode(&d, msg, big + 12, &m, NULL), TXM_OK);
    assert_int_equal(m.values[0].len, big - 1);
    assert_true(d.scratch_len >= big);
    free(msg);
    static const char *const row[] = {"{}"};
    b.len = 0;
    build_insert(&b, 1, row, 1);
    assert_int_equal(decode(&d, &b, &m, NULL), TXM_OK);
    assert_string_equal(relay_pgoutput_text(&m, "payload"), "{}");
    assert_true(d.scratch_len < big);
    relay_pgoutput_fini(&d);
}

/* Countdown to the injected allocation failure; negative: none. */
static long fail_countdown = -1;

/* The decoder's allocator in the failure test: the allocation after the
 * next fail_countdown ones fails. */
static void *failing_malloc(size_t len)
{
    if (fail_countdown >= 0 && fail_countdown-- == 0)
        return NULL;
    return malloc(len);
}

/* Each allocation of a decode may fail: the result is TXM_NOMEM, nothing
 * leaks, and the cache is as before. */
static void pgoutput_survives_every_allocation_failure(void **state)
{
    (void)state;
    bytes rel = {.len = 0};
    build_relation(&rel, OUTBOX_RELID, outbox_columns, OUTBOX_NCOLS);
    bytes ins = {.len = 0};
    build_insert(&ins, OUTBOX_RELID, outbox_row, OUTBOX_NCOLS);
    bytes msg = {.len = 0};
    build_message(&msg, 1, "txmsg", "\1record", 7);
    bool completed = false;
    for (long n = 0; n < 50 && !completed; n++) {
        relay_pgoutput d;
        relay_pgoutput_init(&d);
        d.malloc_fn = failing_malloc;
        relay_pgoutput_msg m;
        fail_countdown = n;
        txm_status st = decode(&d, &msg, &m, NULL);
        if (st == TXM_OK)
            st = decode(&d, &rel, &m, NULL);
        if (st == TXM_OK)
            st = decode(&d, &ins, &m, NULL);
        fail_countdown = -1;
        if (st == TXM_OK) {
            assert_string_equal(relay_pgoutput_text(&m, "payload"), "{\"total\": 1999}");
            completed = true;
        } else {
            assert_int_equal(st, TXM_NOMEM);
        }
        relay_pgoutput_fini(&d);
    }
    assert_true(completed);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    uint8_t chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        uint8_t *p = realloc(buf, n + got + 1);
        assert_non_null(p);
        buf = p;
        memcpy(buf + n, chunk, got);
        n += got;
    }
    fclose(f);
    *len = n;
    return buf != NULL ? buf : calloc(1, 1);
}

/* The data directory: argv[1], else TXM_TEST_DATA_DIR, else found from this
 * source file's path (relay/ -> tests/data/pgoutput). */
static char data_dir[1024];

static void find_data_dir(int argc, char **argv)
{
    if (argc > 1) {
        snprintf(data_dir, sizeof data_dir, "%s", argv[1]);
        return;
    }
#ifdef TXM_TEST_DATA_DIR
    snprintf(data_dir, sizeof data_dir, "%s", TXM_TEST_DATA_DIR);
#else
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    int dir_len = slash != NULL ? (int)(slash - file) : 1;
    snprintf(data_dir, sizeof data_dir, "%.*s/../tests/data/pgoutput", dir_len,
             slash != NULL ? file : ".");
#endif
}

/* Decodes each frame of one case with a fresh decoder; returns false (with a
 * message) when a status differs from the expected line. */
static bool run_case(const char *name)
{
    char path[sizeof data_dir + 300];
    size_t len = 0;
    size_t elen = 0;
    snprintf(path, sizeof path, "%s/%s/input", data_dir, name);
    uint8_t *in = read_file(path, &len);
    snprintf(path, sizeof path, "%s/%s/expect", data_dir, name);
    char *expect = (char *)read_file(path, &elen);
    if (in == NULL || expect == NULL)
        fail_msg("case %s: cannot read input or expect", name);
    expect[elen] = '\0';
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    bool ok = true;
    char *line = expect;
    for (size_t off = 0; ok && off < len; line = strchr(line, '\n') + 1) {
        assert_true(off + 4 <= len);
        size_t n = (size_t)in[off] << 24 | (size_t)in[off + 1] << 16 | (size_t)in[off + 2] << 8 |
                   in[off + 3];
        off += 4;
        assert_true(n <= len - off);
        uint8_t *frame = malloc(n > 0 ? n : 1); /* exact size, for ASan */
        assert_non_null(frame);
        memcpy(frame, in + off, n);
        off += n;
        relay_pgoutput_msg m;
        txm_error e = {0};
        const char *got = txm_status_name(relay_pgoutput_decode(&d, frame, n, &m, &e));
        free(frame);
        assert_non_null(strchr(line, '\n'));
        ok = strncmp(line, got, strlen(got)) == 0 && line[strlen(got)] == '\n';
        if (!ok)
            fprintf(stderr, "case %s: got %s (%s), expected %.*s\n", name, got, e.text,
                    (int)(strchr(line, '\n') - line), line);
    }
    relay_pgoutput_fini(&d);
    free(in);
    free(expect);
    return ok;
}

static void pgoutput_data_cases_return_expected_statuses(void **state)
{
    (void)state;
    DIR *dir = opendir(data_dir);
    if (dir == NULL)
        fail_msg("cannot open %s", data_dir);
    size_t cases = 0;
    size_t failed = 0;
    struct dirent *ent;
    while ((ent = readdir(dir)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        cases++;
        if (!run_case(ent->d_name))
            failed++;
    }
    closedir(dir);
    assert_true(cases >= 10);
    assert_int_equal(failed, 0);
}

/* jsonb's text loses its white space between tokens, never inside strings
 * (escaped quotes and backslashes included). */
static void json_compact_drops_space_between_tokens_only(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"{\"a\": 1, \"b\": [2, 3]}", "{\"a\":1,\"b\":[2,3]}"},
        {"{\"s\": \"x y\\\" z\", \"t\": \"\\\\\", \"u\": \" \"}",
         "{\"s\":\"x y\\\" z\",\"t\":\"\\\\\",\"u\":\" \"}"},
        {" [ {} ,\t\n[ ] ] ", "[{},[]]"},
        {"{\"n\": 0, \"note\": \"caf\u00e9 \u00e0\"}", "{\"n\":0,\"note\":\"caf\u00e9 \u00e0\"}"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[128];
        size_t n = relay_json_compact(cases[i][0], strlen(cases[i][0]), out);
        assert_string_equal(out, cases[i][1]);
        assert_int_equal(n, strlen(cases[i][1]));
    }
}

int main(int argc, char **argv)
{
    find_data_dir(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_compact_drops_space_between_tokens_only),
        cmocka_unit_test(pgoutput_begin_decodes_every_field),
        cmocka_unit_test(pgoutput_commit_decodes_every_field),
        cmocka_unit_test(pgoutput_relation_is_cached_with_its_columns),
        cmocka_unit_test(pgoutput_insert_values_are_found_by_column_name),
        cmocka_unit_test(pgoutput_insert_unchanged_and_empty_values),
        cmocka_unit_test(pgoutput_relation_with_same_id_replaces_the_cached_one),
        cmocka_unit_test(pgoutput_reset_forgets_relations),
        cmocka_unit_test(pgoutput_skips_messages_it_does_not_need),
        cmocka_unit_test(pgoutput_message_decodes_and_copies_prefix_and_content),
        cmocka_unit_test(pgoutput_message_rejects_bad_flags_lengths_and_trailing),
        cmocka_unit_test(pgoutput_rejects_empty_unknown_and_trailing),
        cmocka_unit_test(pgoutput_every_truncation_is_malformed),
        cmocka_unit_test(pgoutput_relation_limits),
        cmocka_unit_test(pgoutput_insert_rejects_bad_values),
        cmocka_unit_test(pgoutput_scratch_grows_and_shrinks),
        cmocka_unit_test(pgoutput_survives_every_allocation_failure),
        cmocka_unit_test(pgoutput_data_cases_return_expected_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
