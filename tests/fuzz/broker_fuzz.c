/* libFuzzer harness for the embedded broker reading rows it did not write
 * (src/transport/transport_embedded.c): each input fills the broker file's
 * subscriptions and messages tables with fuzz-chosen values of any SQLite
 * type, written with sqlite3 directly as a corrupted or foreign file would
 * hold them, then runs receive, ack, nack, dead-letter, extend, queue depth,
 * dead-letter listing, redrive and purge on it through the public API. Each
 * call must return a status (with its text on failure), never crash, leak
 * or overflow.
 *
 * Input: a byte reader. Subscriptions (count, then 5 values each),
 * messages (count, then 11 values each), then operations until the input
 * ends. A value is a type byte and its bytes: NULL, int64, double, text,
 * blob, one of a few names, small int, or "now" plus seconds. */
#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_tmp.h"
#include "txmsg/transport.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SUBS_MAX 4
#define MESSAGES_MAX 12
#define OPS_MAX 24
#define HELD_MAX 16 /* deliveries kept between operations */

static const char *const names[] = {"q", "q--dlq", "t", "", "r", "r--dlq", "m1", "m2"};
#define NAMES_COUNT (sizeof names / sizeof *names)

/* A broker file with the broker's schema, or with the same tables and
 * indexes but no NOT NULL constraints (an older or foreign file: the
 * broker creates its tables only if they do not exist). */
static const char LOOSE_SCHEMA[] =
    "CREATE TABLE subscriptions(queue TEXT PRIMARY KEY, topic TEXT, dlq TEXT,"
    " max_receive_count INTEGER, visibility_timeout_ms INTEGER);"
    "CREATE INDEX subscriptions_topic ON subscriptions(topic);"
    "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT, message_id TEXT,"
    " topic TEXT, body BLOB, receive_count INTEGER, visible_at_us INTEGER, lease INTEGER,"
    " last_error TEXT, enqueued_at_us INTEGER, origin TEXT);"
    "CREATE INDEX messages_visible ON messages(queue, visible_at_us, id);"
    "CREATE INDEX messages_fifo ON messages(queue, id);";

typedef struct broker_file {
    char path[320];
    txm_transport *t[2]; /* deliver_exhausted off, on */
    sqlite3 *db;         /* the harness's own connection, for the rows */
    sqlite3_stmt *sub_put, *msg_put, *wipe[3];
} broker_file;

static struct {
    char dir[256];
    broker_file f[2]; /* the broker's schema, the loose one */
    size_t sink;      /* keeps the reads of touch_delivery */
} g;

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static uint8_t u8(reader *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->p++;
}

static uint64_t u64(reader *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | u8(r);
    return v;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Binds the next fuzz value to parameter i of s. */
static void bind_value(reader *r, sqlite3_stmt *s, int i)
{
    uint8_t type = u8(r);
    switch (type % 8) {
    case 0:
        sqlite3_bind_null(s, i);
        break;
    case 1:
        sqlite3_bind_int64(s, i, (int64_t)u64(r));
        break;
    case 2: {
        uint64_t bits = u64(r);
        double d;
        memcpy(&d, &bits, sizeof d);
        sqlite3_bind_double(s, i, d);
        break;
    }
    case 3:
    case 4: {
        size_t len = u8(r);
        if (len > r->left)
            len = r->left;
        if (type % 8 == 3)
            sqlite3_bind_text(s, i, (const char *)r->p, (int)len, SQLITE_TRANSIENT);
        else
            sqlite3_bind_blob(s, i, r->p, (int)len, SQLITE_TRANSIENT);
        r->p += len;
        r->left -= len;
        break;
    }
    case 5:
        sqlite3_bind_text(s, i, names[u8(r) % NAMES_COUNT], -1, SQLITE_STATIC);
        break;
    case 6:
        sqlite3_bind_int64(s, i, (int8_t)u8(r));
        break;
    default:
        sqlite3_bind_int64(s, i, now_us() + (int64_t)(int8_t)u8(r) * 1000000);
        break;
    }
}

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "broker_fuzz: %s: %s\n", sql, msg);
        abort();
    }
}

static void prepare(sqlite3 *db, const char *sql, sqlite3_stmt **s)
{
    if (sqlite3_prepare_v2(db, sql, -1, s, NULL) != SQLITE_OK) {
        fprintf(stderr, "broker_fuzz: %s: %s\n", sql, sqlite3_errmsg(db));
        abort();
    }
}

static void file_close(broker_file *f)
{
    for (int i = 0; i < 3; i++)
        sqlite3_finalize(f->wipe[i]);
    sqlite3_finalize(f->sub_put);
    sqlite3_finalize(f->msg_put);
    sqlite3_close(f->db);
    for (int i = 0; i < 2; i++)
        txm_transport_close(f->t[i]);
}

static void at_exit(void)
{
    for (int i = 0; i < 2; i++)
        file_close(&g.f[i]);
    fuzz_tmp_remove(g.dir);
}

static void file_open(broker_file *f, const char *name, bool loose)
{
    snprintf(f->path, sizeof f->path, "%s/%s", g.dir, name);
    unlink(f->path);
    if (sqlite3_open(f->path, &f->db) != SQLITE_OK)
        abort();
    sqlite3_busy_timeout(f->db, 5000);
    if (loose)
        exec_or_die(f->db, LOOSE_SCHEMA);
    char url[400];
    snprintf(url, sizeof url, "embedded:%s", f->path);
    for (int i = 0; i < 2; i++) {
        txm_transport_options o;
        txm_transport_options_init(&o);
        o.deliver_exhausted = i == 1;
        txm_error err = {0};
        if (txm_transport_open(url, &o, &f->t[i], &err) != TXM_OK) {
            fprintf(stderr, "broker_fuzz: open %s: %s\n", url, err.text);
            abort();
        }
    }
    prepare(f->db,
            "INSERT OR REPLACE INTO subscriptions(queue, topic, dlq, max_receive_count,"
            " visibility_timeout_ms) VALUES(?1, ?2, ?3, ?4, ?5)",
            &f->sub_put);
    prepare(f->db,
            "INSERT OR REPLACE INTO messages(id, queue, message_id, topic, body, receive_count,"
            " visible_at_us, lease, last_error, enqueued_at_us, origin)"
            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            &f->msg_put);
    prepare(f->db, "DELETE FROM messages", &f->wipe[0]);
    prepare(f->db, "DELETE FROM subscriptions", &f->wipe[1]);
    prepare(f->db, "DELETE FROM sqlite_sequence", &f->wipe[2]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_tmp_make("txm-fuzz-broker-", g.dir, sizeof g.dir);
    atexit(at_exit);
    file_open(&g.f[0], "broker.db", false);
    file_open(&g.f[1], "loose.db", true);
    return 0;
}

/* Runs s with the next n fuzz values; a constraint may refuse the row. */
static void put_row(reader *r, sqlite3_stmt *s, int n)
{
    for (int i = 1; i <= n; i++)
        bind_value(r, s, i);
    sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static void write_rows(broker_file *f, reader *r)
{
    exec_or_die(f->db, "BEGIN IMMEDIATE");
    for (int i = 0; i < 3; i++) {
        sqlite3_step(f->wipe[i]);
        sqlite3_reset(f->wipe[i]);
    }
    int subs = u8(r) % (SUBS_MAX + 1);
    for (int i = 0; i < subs; i++)
        put_row(r, f->sub_put, 5);
    int msgs = u8(r) % (MESSAGES_MAX + 1);
    for (int i = 0; i < msgs; i++)
        put_row(r, f->msg_put, 11);
    exec_or_die(f->db, "COMMIT");
}

/* A failure must say what failed. */
static void check(txm_status st, const txm_error *err)
{
    if (st != TXM_OK && (err->status != st || err->text[0] == '\0'))
        abort();
}

static const char *queue_of(reader *r)
{
    return names[u8(r) % NAMES_COUNT];
}

/* Frees the held delivery at i, moving the last one into its place. */
static void drop(txm_delivery **held, size_t *n, size_t i)
{
    txm_delivery_free(held[i]);
    held[i] = held[--*n];
}

/* Reads every byte a delivery hands out, so ASan sees a bad pointer. */
static size_t touch_delivery(const txm_delivery *d)
{
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    size_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)body[i];
    sum += strlen(txm_delivery_message_id(d)) + strlen(txm_delivery_topic(d)) +
           strlen(txm_delivery_queue(d)) + strlen(txm_delivery_last_error(d));
    return sum + (size_t)txm_delivery_receive_count(d) + txm_delivery_is_exhausted(d);
}

static void receive(txm_transport *t, reader *r, txm_delivery **held, size_t *n)
{
    txm_delivery **list = NULL;
    size_t count = 0;
    txm_error err = {0};
    txm_status st = txm_transport_receive(t, queue_of(r), 1 + u8(r) % 8, 0, &list, &count, &err);
    check(st, &err);
    for (size_t i = 0; i < count; i++) {
        g.sink += touch_delivery(list[i]);
        if (*n < HELD_MAX)
            held[(*n)++] = list[i];
        else
            txm_delivery_free(list[i]);
    }
    txm_free(list);
}

static void settle(txm_transport *t, reader *r, uint8_t op, txm_delivery **held, size_t *n)
{
    if (*n == 0)
        return;
    size_t i = u8(r) % *n;
    txm_error err = {0};
    txm_status st = TXM_OK;
    switch (op) {
    case 1:
        st = txm_transport_ack(t, held[i], &err);
        break;
    case 2: {
        /* Any int: negative ones are refused, large ones are hours. */
        uint32_t v = (uint32_t)u8(r) << 24;
        v |= (uint32_t)u8(r) << 16;
        v |= (uint32_t)u8(r) << 8;
        v |= u8(r);
        int delay_ms = (int)v;
        st = txm_transport_nack(t, held[i], delay_ms, "fuzz", &err);
        break;
    }
    case 3:
        st = txm_transport_dead_letter(t, held[i], u8(r) & 1 ? NULL : "fuzz", &err);
        break;
    default:
        st = txm_transport_extend(t, held[i], &err);
        check(st, &err);
        return; /* still held */
    }
    check(st, &err);
    drop(held, n, i);
}

static void queue_op(txm_transport *t, reader *r, uint8_t op)
{
    txm_error err = {0};
    txm_status st = TXM_OK;
    const char *queue = queue_of(r);
    if (op == 5) {
        int64_t depth = 0;
        st = txm_transport_queue_depth(t, queue, &depth, &err);
    } else if (op == 6) {
        txm_delivery **list = NULL;
        size_t count = 0;
        st = txm_transport_dlq_list(t, queue, 1 + u8(r) % 8, &list, &count, &err);
        for (size_t i = 0; i < count; i++)
            g.sink += touch_delivery(list[i]);
        txm_delivery_list_free(list, count);
    } else if (op == 7) {
        size_t moved = 0;
        st = txm_transport_dlq_redrive(t, queue, u8(r) & 1 ? NULL : queue_of(r), &moved, &err);
    } else if (op == 8) {
        size_t purged = 0;
        st = txm_transport_dlq_purge(t, queue, &purged, &err);
    } else {
        txm_queue_info *list = NULL;
        size_t count = 0;
        st = txm_transport_queues(t, &list, &count, &err);
        for (size_t i = 0; i < count; i++)
            g.sink += (size_t)strlen(list[i].name) + strlen(list[i].topic) + strlen(list[i].dlq) +
                      (size_t)(list[i].depth + list[i].in_flight + list[i].dead_letters);
        txm_free(list);
    }
    check(st, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    uint8_t pick = u8(&r);
    broker_file *f = &g.f[(pick >> 1) & 1];
    txm_transport *t = f->t[pick & 1];
    write_rows(f, &r);
    txm_delivery *held[HELD_MAX];
    size_t n = 0;
    for (int k = 0; k < OPS_MAX && r.left > 0; k++) {
        uint8_t op = u8(&r) % 10;
        if (op == 0)
            receive(t, &r, held, &n);
        else if (op <= 4)
            settle(t, &r, op, held, &n);
        else
            queue_op(t, &r, op);
    }
    while (n > 0)
        drop(held, &n, 0);
    return 0;
}
