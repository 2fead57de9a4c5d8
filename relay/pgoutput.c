/* pgoutput protocol version 1 decoder ("Logical Replication Message Formats"
 * in the PostgreSQL protocol documentation): Begin, Commit, Relation, Insert
 * and Message are decoded, the other known messages skipped. Integers are
 * big-endian; every read checks the bytes left first.
 *
 * Thread safety: none needed; a decoder belongs to one tailer, used by one
 * thread. */
#include "pgoutput.h"

#include <stdlib.h>
#include <string.h>

/* Scratch past this size is given back once a small message comes along, so
 * one huge row does not pin its memory for the life of the relay. */
#define SCRATCH_KEEP (1u << 20)
#define SCRATCH_MIN 4096u

/* A cursor over one message. The first failure sticks: later reads return
 * zeros and NULLs, and finish() reports what failed first. */
typedef struct reader {
    const uint8_t *p;
    size_t left;         /* bytes after p */
    const char *what;    /* message name, for errors */
    const char *field;   /* field at the first failure; NULL while all is well */
    const char *problem; /* why it failed, NULL meaning "truncated" */
} reader;

static void fail_at(reader *r, const char *field, const char *problem)
{
    if (r->field == NULL) {
        r->field = field;
        r->problem = problem;
    }
}

static const uint8_t *take(reader *r, size_t n, const char *field)
{
    if (r->field != NULL)
        return NULL;
    if (r->left < n) {
        fail_at(r, field, NULL);
        return NULL;
    }
    const uint8_t *b = r->p;
    r->p += n;
    r->left -= n;
    return b;
}

static uint8_t rd_u8(reader *r, const char *field)
{
    const uint8_t *b = take(r, 1, field);
    return b == NULL ? 0 : b[0];
}

static uint16_t rd_u16(reader *r, const char *field)
{
    const uint8_t *b = take(r, 2, field);
    return b == NULL ? 0 : (uint16_t)((unsigned)b[0] << 8 | b[1]);
}

static uint32_t rd_u32(reader *r, const char *field)
{
    const uint8_t *b = take(r, 4, field);
    if (b == NULL)
        return 0;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint64_t rd_u64(reader *r, const char *field)
{
    uint64_t hi = rd_u32(r, field);
    return hi << 32 | rd_u32(r, field);
}

/* A protocol String: bytes up to a NUL, which must lie inside the message,
 * and at most max bytes before it. Returns a pointer into the message
 * (NUL-terminated there), NULL on failure; *len gets its length. */
static const char *rd_string(reader *r, const char *field, size_t max, size_t *len)
{
    *len = 0;
    if (r->field != NULL)
        return NULL;
    const uint8_t *nul = memchr(r->p, '\0', r->left);
    if (nul == NULL) {
        fail_at(r, field, NULL);
        return NULL;
    }
    size_t n = (size_t)(nul - r->p);
    if (n > max) {
        fail_at(r, field, "name too long");
        return NULL;
    }
    const char *s = (const char *)take(r, n + 1, field);
    *len = n;
    return s;
}

/* A name (schema, table, column), capped at RELAY_PGOUTPUT_MAX_NAME. */
static const char *rd_name(reader *r, const char *field, size_t *len)
{
    return rd_string(r, field, RELAY_PGOUTPUT_MAX_NAME, len);
}

/* Reports the first failure, or bytes left over: a message is decoded whole
 * or not at all. */
static txm_status finish(const reader *r, txm_error *err)
{
    if (r->field != NULL)
        return txm_errf(err, TXM_MALFORMED, "pgoutput %s: %s at %s", r->what,
                        r->problem != NULL ? r->problem : "truncated", r->field);
    if (r->left != 0)
        return txm_errf(err, TXM_MALFORMED, "pgoutput %s: %zu trailing bytes", r->what, r->left);
    return TXM_OK;
}

void relay_pgoutput_init(relay_pgoutput *d)
{
    memset(d, 0, sizeof *d);
    d->malloc_fn = malloc;
}

static void relation_free(relay_pgoutput_relation *rel)
{
    if (rel == NULL)
        return;
    free(rel->strings);
    free(rel);
}

void relay_pgoutput_reset(relay_pgoutput *d)
{
    for (size_t i = 0; i < d->rel_count; i++)
        relation_free(d->relations[i]);
    d->rel_count = 0;
}

void relay_pgoutput_fini(relay_pgoutput *d)
{
    if (d == NULL)
        return;
    relay_pgoutput_reset(d);
    free(d->scratch);
    relay_pgoutput_init(d);
}

static relay_pgoutput_relation *cache_find(const relay_pgoutput *d, uint32_t id)
{
    for (size_t i = 0; i < d->rel_count; i++)
        if (d->relations[i]->id == id)
            return d->relations[i];
    return NULL;
}

/* Stores rel, replacing the table of the same id: the walsender sends a new
 * Relation message after the table's definition changes. Takes rel on every
 * path. */
static txm_status cache_put(relay_pgoutput *d, relay_pgoutput_relation *rel, txm_error *err)
{
    for (size_t i = 0; i < d->rel_count; i++) {
        if (d->relations[i]->id == rel->id) {
            relation_free(d->relations[i]);
            d->relations[i] = rel;
            return TXM_OK;
        }
    }
    if (d->rel_count == RELAY_PGOUTPUT_MAX_RELATIONS) {
        uint32_t id = rel->id;
        relation_free(rel);
        return txm_errf(err, TXM_TOO_BIG, "pgoutput Relation %u: cache full (%d relations)", id,
                        RELAY_PGOUTPUT_MAX_RELATIONS);
    }
    d->relations[d->rel_count++] = rel;
    return TXM_OK;
}

static char *copy_name(char *dst, const char **name, size_t len)
{
    memcpy(dst, *name, len + 1);
    *name = dst;
    return dst + len + 1;
}

/* Reads the column descriptions into rel->columns, pointing the names into
 * the message for now; *names_len sums their lengths plus NULs. */
static void read_columns(reader *r, relay_pgoutput_relation *rel, size_t *names_len)
{
    for (size_t i = 0; i < rel->count && r->field == NULL; i++) {
        relay_pgoutput_column *c = &rel->columns[i];
        size_t len = 0;
        c->flags = rd_u8(r, "column flags");
        c->name = rd_name(r, "column name", &len);
        c->type_oid = rd_u32(r, "column type");
        c->typmod = (int32_t)rd_u32(r, "column type modifier");
        *names_len += len + 1;
    }
}

/* Relation: Int32 id, String namespace, String name, Int8 replica identity,
 * Int16 column count, then per column Int8 flags, String name, Int32 type
 * oid, Int32 type modifier. */
static txm_status decode_relation(relay_pgoutput *d, reader *r, relay_pgoutput_msg *out,
                                  txm_error *err)
{
    size_t schema_len = 0;
    size_t name_len = 0;
    uint32_t id = rd_u32(r, "relation id");
    const char *schema = rd_name(r, "namespace", &schema_len);
    const char *name = rd_name(r, "relation name", &name_len);
    uint8_t ident = rd_u8(r, "replica identity");
    uint16_t count = rd_u16(r, "column count");
    if (r->field == NULL && memchr("dnfi", ident, 4) == NULL)
        fail_at(r, "replica identity", "unknown setting");
    if (r->field == NULL && count > RELAY_PGOUTPUT_MAX_COLUMNS)
        fail_at(r, "column count", "more columns than PostgreSQL allows");
    if (r->field != NULL)
        return finish(r, err);
    size_t rel_len =
        sizeof(relay_pgoutput_relation) + (size_t)count * sizeof(relay_pgoutput_column);
    relay_pgoutput_relation *rel = d->malloc_fn(rel_len);
    if (rel == NULL)
        return txm_errf(err, TXM_NOMEM, "pgoutput Relation: out of memory");
    memset(rel, 0, rel_len);
    rel->id = id;
    rel->replica_identity = (char)ident;
    rel->count = count;
    rel->columns = (relay_pgoutput_column *)(rel + 1);
    size_t names_len = schema_len + 1 + name_len + 1;
    read_columns(r, rel, &names_len);
    txm_status st = finish(r, err);
    if (st == TXM_OK && (rel->strings = d->malloc_fn(names_len)) == NULL)
        st = txm_errf(err, TXM_NOMEM, "pgoutput Relation: out of memory");
    if (st != TXM_OK) {
        relation_free(rel);
        return st;
    }
    /* The names point into the caller's buffer until copied here. */
    rel->schema = schema;
    rel->name = name;
    char *p = copy_name(rel->strings, &rel->schema, schema_len);
    p = copy_name(p, &rel->name, name_len);
    for (size_t i = 0; i < rel->count; i++)
        p = copy_name(p, &rel->columns[i].name, strlen(rel->columns[i].name));
    st = cache_put(d, rel, err);
    if (st == TXM_OK)
        out->relation = rel;
    return st;
}

/* Makes d->scratch at least len bytes. Its old contents are not kept. */
static txm_status scratch_reserve(relay_pgoutput *d, size_t len, txm_error *err)
{
    if (len < SCRATCH_MIN)
        len = SCRATCH_MIN;
    if (len <= d->scratch_len && !(d->scratch_len > SCRATCH_KEEP && len <= SCRATCH_MIN))
        return TXM_OK;
    free(d->scratch);
    d->scratch_len = 0;
    d->scratch = d->malloc_fn(len);
    if (d->scratch == NULL)
        return txm_errf(err, TXM_NOMEM, "pgoutput: out of memory for %zu bytes", len);
    d->scratch_len = len;
    return TXM_OK;
}

/* Reads one TupleData column into v, copying a text value to *text. */
static void read_value(reader *r, relay_pgoutput_value *v, char **text)
{
    v->kind = (char)rd_u8(r, "value kind");
    v->text = NULL;
    v->len = 0;
    if (r->field != NULL || v->kind == 'n' || v->kind == 'u')
        return;
    if (v->kind != 't') {
        /* 'b' (binary) only comes when the binary option is requested. */
        fail_at(r, "value kind", "unknown kind");
        return;
    }
    uint32_t len = rd_u32(r, "value length");
    const uint8_t *b = take(r, len, "value");
    if (b == NULL)
        return;
    /* Text output never holds a NUL; one would cut the C string short. */
    if (memchr(b, '\0', len) != NULL) {
        fail_at(r, "value", "NUL byte in text");
        return;
    }
    memcpy(*text, b, len);
    (*text)[len] = '\0';
    v->text = *text;
    v->len = len;
    *text += (size_t)len + 1;
}

/* Insert: Int32 relation id, Byte1 'N', TupleData (Int16 column count, then
 * per column Byte1 'n' | 'u' | 't', and for 't' Int32 length and the text). */
static txm_status decode_insert(relay_pgoutput *d, reader *r, relay_pgoutput_msg *out,
                                txm_error *err)
{
    uint32_t id = rd_u32(r, "relation id");
    if (rd_u8(r, "tuple kind") != 'N' && r->field == NULL)
        fail_at(r, "tuple kind", "expected 'N' (new tuple)");
    uint16_t count = rd_u16(r, "column count");
    if (r->field != NULL)
        return finish(r, err);
    const relay_pgoutput_relation *rel = cache_find(d, id);
    if (rel == NULL)
        return txm_errf(err, TXM_MALFORMED, "pgoutput Insert: unknown relation %u", id);
    if (count != rel->count)
        return txm_errf(err, TXM_MALFORMED, "pgoutput Insert: %u columns, relation %s has %zu",
                        (unsigned)count, rel->name, rel->count);
    /* Each text value takes 5 + len bytes of input and len + 1 of scratch, so
     * the bytes left bound the text. */
    size_t values_len = (size_t)count * sizeof(relay_pgoutput_value);
    txm_status st = scratch_reserve(d, values_len + r->left, err);
    if (st != TXM_OK)
        return st;
    relay_pgoutput_value *values = d->scratch;
    char *text = (char *)d->scratch + values_len;
    for (size_t i = 0; i < count && r->field == NULL; i++)
        read_value(r, &values[i], &text);
    st = finish(r, err);
    if (st != TXM_OK)
        return st;
    out->relation = rel;
    out->values = values;
    out->count = count;
    return TXM_OK;
}

/* Message (logicalrep_write_message in PostgreSQL's proto.c): Int8 flags,
 * Int64 LSN, String prefix, Int32 length, Byte[length] content. Protocol 1
 * sends no xid (that comes only with streamed transactions, version 2 on).
 * The prefix and content are copied to scratch, so they outlive buf. */
static txm_status decode_message(relay_pgoutput *d, reader *r, relay_pgoutput_msg *out,
                                 txm_error *err)
{
    size_t prefix_len = 0;
    uint8_t flags = rd_u8(r, "flags");
    uint64_t lsn = rd_u64(r, "LSN");
    /* Any application may emit messages, with prefixes of any length; the
     * message's own length bounds it. */
    const char *prefix = rd_string(r, "prefix", SIZE_MAX, &prefix_len);
    uint32_t len = rd_u32(r, "content length");
    const uint8_t *content = take(r, len, "content");
    if (r->field == NULL && (flags & ~RELAY_PGOUTPUT_MESSAGE_TRANSACTIONAL) != 0)
        fail_at(r, "flags", "unknown flags");
    txm_status st = finish(r, err);
    if (st == TXM_OK)
        st = scratch_reserve(d, prefix_len + 1 + (size_t)len + 1, err);
    if (st != TXM_OK)
        return st;
    char *p = d->scratch;
    memcpy(p, prefix, prefix_len + 1);
    if (len > 0)
        memcpy(p + prefix_len + 1, content, len);
    p[prefix_len + 1 + len] = '\0'; /* for text content; len still counts the bytes */
    out->message.flags = flags;
    out->message.lsn = lsn;
    out->message.prefix = p;
    out->message.content = (const uint8_t *)p + prefix_len + 1;
    out->message.len = len;
    return TXM_OK;
}

/* Begin: Int64 final LSN, Int64 commit timestamp, Int32 xid. */
static txm_status decode_begin(reader *r, relay_pgoutput_msg *out, txm_error *err)
{
    out->begin.final_lsn = rd_u64(r, "final LSN");
    out->begin.commit_ts = (int64_t)rd_u64(r, "commit timestamp");
    out->begin.xid = rd_u32(r, "xid");
    return finish(r, err);
}

/* Commit: Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 timestamp. */
static txm_status decode_commit(reader *r, relay_pgoutput_msg *out, txm_error *err)
{
    out->commit.flags = rd_u8(r, "flags");
    out->commit.commit_lsn = rd_u64(r, "commit LSN");
    out->commit.end_lsn = rd_u64(r, "end LSN");
    out->commit.commit_ts = (int64_t)rd_u64(r, "commit timestamp");
    return finish(r, err);
}

txm_status relay_pgoutput_decode(relay_pgoutput *d, const uint8_t *buf, size_t len,
                                 relay_pgoutput_msg *out, txm_error *err)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (d == NULL || out == NULL || (buf == NULL && len > 0))
        return txm_errf(err, TXM_INVALID, "pgoutput_decode: NULL argument");
    if (len == 0)
        return txm_errf(err, TXM_MALFORMED, "pgoutput: empty message");
    if (len > RELAY_PGOUTPUT_MAX_LEN)
        return txm_errf(err, TXM_TOO_BIG, "pgoutput: message of %zu bytes", len);
    out->type = (char)buf[0];
    reader r = {.p = buf + 1, .left = len - 1};
    switch (buf[0]) {
    case RELAY_PGOUTPUT_BEGIN:
        r.what = "Begin";
        return decode_begin(&r, out, err);
    case RELAY_PGOUTPUT_COMMIT:
        r.what = "Commit";
        return decode_commit(&r, out, err);
    case RELAY_PGOUTPUT_RELATION:
        r.what = "Relation";
        return decode_relation(d, &r, out, err);
    case RELAY_PGOUTPUT_INSERT:
        r.what = "Insert";
        return decode_insert(d, &r, out, err);
    case RELAY_PGOUTPUT_MESSAGE:
        r.what = "Message";
        return decode_message(d, &r, out, err);
    case 'O': /* Origin */
    case 'Y': /* Type */
    case 'T': /* Truncate */
    case 'U': /* Update */
    case 'D': /* Delete */
        /* The publication is for inserts only; the rest carries nothing the
         * relay publishes. */
        out->skipped = true;
        return TXM_OK;
    default:
        return txm_errf(err, TXM_MALFORMED, "pgoutput: unknown message type 0x%02x",
                        (unsigned)buf[0]);
    }
}

const relay_pgoutput_value *relay_pgoutput_find(const relay_pgoutput_msg *msg, const char *name)
{
    if (msg == NULL || name == NULL || msg->type != RELAY_PGOUTPUT_INSERT || msg->relation == NULL)
        return NULL;
    for (size_t i = 0; i < msg->count && i < msg->relation->count; i++)
        if (strcmp(msg->relation->columns[i].name, name) == 0)
            return &msg->values[i];
    return NULL;
}

const char *relay_pgoutput_text(const relay_pgoutput_msg *msg, const char *name)
{
    const relay_pgoutput_value *v = relay_pgoutput_find(msg, name);
    return v != NULL && v->kind == 't' ? v->text : NULL;
}
