/* libFuzzer harness for the pgoutput decoder (relay/pgoutput.c). One input
 * is a series of frames, as in tests/data/pgoutput: an Int32 length and that
 * many bytes (a short last frame takes what is left), decoded in order on
 * one decoder, so Relation messages can disagree with the Inserts after
 * them. Every frame decodes or fails with a status; what decodes must be
 * consistent with the relation cache, and every value readable. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t sink; /* keeps the reads of touch */

#define FRAMES_MAX 64 /* frames decoded per input */

/* Reads every byte the decoder hands out, so ASan sees a bad pointer. */
static size_t touch(const char *s, size_t len)
{
    size_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)s[i];
    return sum;
}

static void check_relation(const relay_pgoutput_relation *rel)
{
    if (rel == NULL || rel->count > RELAY_PGOUTPUT_MAX_COLUMNS)
        abort();
    if (strlen(rel->schema) > RELAY_PGOUTPUT_MAX_NAME ||
        strlen(rel->name) > RELAY_PGOUTPUT_MAX_NAME)
        abort();
    for (size_t i = 0; i < rel->count; i++)
        if (strlen(rel->columns[i].name) > RELAY_PGOUTPUT_MAX_NAME)
            abort();
}

static void check(const relay_pgoutput *d, const relay_pgoutput_msg *m)
{
    if (d->rel_count > RELAY_PGOUTPUT_MAX_RELATIONS)
        abort();
    switch (m->type) {
    case RELAY_PGOUTPUT_RELATION:
        check_relation(m->relation);
        break;
    case RELAY_PGOUTPUT_INSERT:
        check_relation(m->relation);
        if (m->count != m->relation->count)
            abort();
        for (size_t i = 0; i < m->count; i++) {
            const relay_pgoutput_value *v = &m->values[i];
            if (v->kind == 't' && (v->text == NULL || strlen(v->text) != v->len))
                abort();
            if (v->kind != 't' && (v->kind != 'n' && v->kind != 'u'))
                abort();
            /* Lookups by each column's name find a value of that column. */
            if (relay_pgoutput_find(m, m->relation->columns[i].name) == NULL)
                abort();
            const char *t = relay_pgoutput_text(m, m->relation->columns[i].name);
            if (t != NULL)
                sink += touch(t, strlen(t));
        }
        relay_pgoutput_text(m, "payload");
        break;
    case RELAY_PGOUTPUT_MESSAGE:
        sink += touch(m->message.prefix, strlen(m->message.prefix));
        sink += touch((const char *)m->message.content, m->message.len);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    relay_pgoutput d;
    relay_pgoutput_init(&d);
    size_t off = 0;
    for (int n = 0; n < FRAMES_MAX && off + 4 <= size; n++) {
        uint32_t len = (uint32_t)data[off] << 24 | (uint32_t)data[off + 1] << 16 |
                       (uint32_t)data[off + 2] << 8 | data[off + 3];
        off += 4;
        if (len > size - off)
            len = (uint32_t)(size - off);
        /* An exact-size copy, so a read past the frame is a read past a
         * heap block that ASan sees. */
        uint8_t *frame = malloc(len > 0 ? len : 1);
        if (frame == NULL)
            abort();
        memcpy(frame, data + off, len);
        off += len;
        relay_pgoutput_msg m;
        txm_error err = {0};
        txm_status st = relay_pgoutput_decode(&d, frame, len, &m, &err);
        free(frame);
        if (st == TXM_OK)
            check(&d, &m);
        else if (err.status != st || err.text[0] == '\0')
            abort();
        if (st == TXM_OK && m.type == 'B' && (m.begin.xid & 0xff) == 0xff)
            relay_pgoutput_reset(&d); /* a new session, now and then */
    }
    relay_pgoutput_fini(&d);
    return 0;
}
