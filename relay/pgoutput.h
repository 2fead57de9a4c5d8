/* A decoder of pgoutput protocol version 1 messages, the payload of the
 * XLogData ('w') messages a logical walsender streams, with the relation
 * cache those messages refer to. Strictly bounds-checked: any input decodes
 * or fails with TXM_MALFORMED, never reading past its length.
 *
 * Thread safety: a decoder is used by one thread at a time. */
#ifndef RELAY_PGOUTPUT_H
#define RELAY_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/error.h"
#include "txmsg/message.h"

/* Relations the cache holds; a publication on the outbox needs one. */
#define RELAY_PGOUTPUT_MAX_RELATIONS 64
/* PostgreSQL's MaxHeapAttributeNumber: no table has more columns. */
#define RELAY_PGOUTPUT_MAX_COLUMNS 1600
/* Longest schema, table or column name accepted, in bytes (PostgreSQL's
 * default is 63; this leaves room for servers built with a larger NAMEDATALEN). */
#define RELAY_PGOUTPUT_MAX_NAME 255
/* Longest message accepted, in bytes: an outbox row whose jsonb payload is
 * TXM_PAYLOAD_MAX when compact prints at most twice as long, plus the other
 * columns. */
#define RELAY_PGOUTPUT_MAX_LEN ((size_t)(2 * TXM_PAYLOAD_MAX) + (1u << 20))

/* Message types (the first byte). */
#define RELAY_PGOUTPUT_BEGIN 'B'
#define RELAY_PGOUTPUT_COMMIT 'C'
#define RELAY_PGOUTPUT_RELATION 'R'
#define RELAY_PGOUTPUT_INSERT 'I'
#define RELAY_PGOUTPUT_MESSAGE 'M'

/* Message flags: the message was emitted inside a transaction (sent between
 * its Begin and Commit, and only if it committed). */
#define RELAY_PGOUTPUT_MESSAGE_TRANSACTIONAL 1

typedef struct relay_pgoutput_column {
    uint8_t flags;     /* 1: part of the replica identity key */
    const char *name;  /* NUL-terminated */
    uint32_t type_oid; /* pg_type oid */
    int32_t typmod;    /* type modifier, -1 when none */
} relay_pgoutput_column;

/* A table as described by a Relation message. */
typedef struct relay_pgoutput_relation {
    uint32_t id;        /* the relation's oid */
    const char *schema; /* "" for pg_catalog */
    const char *name;
    char replica_identity; /* pg_class.relreplident: 'd', 'n', 'f' or 'i' */
    size_t count;          /* columns */
    relay_pgoutput_column *columns;
    char *strings; /* owns the names above */
} relay_pgoutput_relation;

/* One column of a TupleData. */
typedef struct relay_pgoutput_value {
    char kind;        /* 'n' NULL, 'u' unchanged TOASTed value (not sent), 't' text */
    const char *text; /* 't': NUL-terminated text output of the value; NULL otherwise */
    size_t len;       /* bytes of text, without the NUL */
} relay_pgoutput_value;

/* One decoded message. Pointers borrow from the decoder and stay valid until
 * its next decode, reset or fini. */
typedef struct relay_pgoutput_msg {
    char type;    /* the message type byte */
    bool skipped; /* a known type this decoder does not need ('O','Y','T','U','D') */
    struct {
        uint64_t final_lsn; /* LSN of the transaction's commit record */
        int64_t commit_ts;  /* microseconds since 2000-01-01 */
        uint32_t xid;
    } begin;
    struct {
        uint8_t flags;       /* unused by the protocol, 0 */
        uint64_t commit_lsn; /* LSN of the commit record */
        uint64_t end_lsn;    /* end of the transaction: the position to confirm */
        int64_t commit_ts;   /* microseconds since 2000-01-01 */
    } commit;
    struct {
        uint8_t flags;          /* RELAY_PGOUTPUT_MESSAGE_TRANSACTIONAL or 0 */
        uint64_t lsn;           /* LSN of the message's WAL record */
        const char *prefix;     /* NUL-terminated, as given to pg_logical_emit_message */
        const uint8_t *content; /* len bytes (any bytes, NULs included) */
        size_t len;
    } message;                               /* 'M' */
    const relay_pgoutput_relation *relation; /* 'R' and 'I': the cached table */
    const relay_pgoutput_value *values;      /* 'I': relation->count values, in column order */
    size_t count;                            /* 'I': values */
} relay_pgoutput_msg;

typedef struct relay_pgoutput {
    relay_pgoutput_relation *relations[RELAY_PGOUTPUT_MAX_RELATIONS]; /* first rel_count used */
    size_t rel_count;
    void *scratch;      /* an Insert's values and their text, reused between messages */
    size_t scratch_len; /* bytes allocated at scratch */
    /* Every allocation of the decoder; malloc after init. A test may set one
     * that fails, to check the error paths. What it returns goes to free(). */
    void *(*malloc_fn)(size_t len);
} relay_pgoutput;

/* Prepares d with an empty relation cache and malloc as its allocator. */
void relay_pgoutput_init(relay_pgoutput *d);

/* Frees what d holds; d may be initialised again. NULL-safe. */
void relay_pgoutput_fini(relay_pgoutput *d);

/* Forgets every relation: a new replication session sends them again. */
void relay_pgoutput_reset(relay_pgoutput *d);

/* Decodes one message of len bytes into *out. A Relation message replaces
 * the cached table of its id; an Insert must name a cached table and carry
 * its column count; a Message (sent with the option messages 'true') is
 * copied out whole. Returns TXM_MALFORMED with the reason for a truncated,
 * inconsistent or unknown message (the cache is then unchanged), TXM_TOO_BIG
 * past RELAY_PGOUTPUT_MAX_LEN or a full cache, TXM_NOMEM. Borrows: buf, only
 * during the call. */
txm_status relay_pgoutput_decode(relay_pgoutput *d, const uint8_t *buf, size_t len,
                                 relay_pgoutput_msg *out, txm_error *err);

/* The value of an Insert's column called name, or NULL when there is no such
 * column. Borrows: valid as long as msg. */
const relay_pgoutput_value *relay_pgoutput_find(const relay_pgoutput_msg *msg, const char *name);

/* The text of column name, or NULL when absent, NULL or unchanged. */
const char *relay_pgoutput_text(const relay_pgoutput_msg *msg, const char *name);

#endif
