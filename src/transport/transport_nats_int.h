/* Internals of the NATS JetStream transport shared by its files:
 * transport_nats.c (connection, queues, publish, receive),
 * transport_nats_url.c (the server list and options of the URL),
 * transport_nats_stream.c (declaring and checking the streams),
 * transport_nats_dlq.c (dead letters) and transport_nats_blob.c (claim-check
 * payload chunks). The layout on the server and the thread-safety rules are
 * in transport_nats.c. */
#ifndef TXM_TRANSPORT_TRANSPORT_NATS_INT_H
#define TXM_TRANSPORT_TRANSPORT_NATS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "transport/transport_int.h"

#define STREAM "TXMSG"
#define STREAM_SUBJECTS "txmsg.>"
#define SUBJECT_PREFIX "txmsg."
#define DLQ_STREAM "TXMSG_DLQ"
#define DLQ_STREAM_SUBJECTS "txmsg-dlq.>"
#define DLQ_SUBJECT_PREFIX "txmsg-dlq."
#define BLOB_STREAM "TXMSG_BLOBS" /* large payloads, claim check */
#define BLOB_STREAM_SUBJECTS "txmsg-blob.>"
#define BLOB_SUBJECT_PREFIX "txmsg-blob."
#define BLOB_CHUNK_LEN (512u << 10) /* under nats-server's default 1 MB max_payload */
#define BLOB_MAX_AGE_S (14LL * 24 * 3600)
#define MESSAGE_MAX_AGE_S (14LL * 24 * 3600) /* stream TXMSG keeps a message this long */
#define HDR_CHUNKS "Txmsg-Chunks"

#define PULL_PREFIX "$JS.API.CONSUMER.MSG.NEXT." /* + <stream>.<consumer> */
#define ACK_PREFIX "$JS.ACK."                    /* reply subject of a delivery */

#define HDR_MSG_ID "Nats-Msg-Id"
#define HDR_SEQUENCE "Nats-Sequence"
#define HDR_TXM_ID "Txmsg-Message-Id"
#define HDR_QUEUE "Txmsg-Queue"
#define HDR_SUBJECT "Txmsg-Original-Subject"
#define HDR_COUNT "Txmsg-Delivery-Count"
#define HDR_ERROR "Txmsg-Last-Error"
#define HDR_STATUS "Status"             /* libnats' name for a status line's code */
#define HDR_DESCRIPTION "Description"   /* and for its text */
#define HDR_CONTENT_TYPE "Content-Type" /* CloudEvents binary mode: datacontenttype */

#define SUBJECT_MAX 320        /* bytes: prefix + TXM__DLQ_NAME_MAX */
#define DESC_MAX 600           /* bytes of a consumer description */
#define MSGID_MAX 320          /* bytes of a Nats-Msg-Id we build */
#define REASON_MAX 512         /* bytes of a last error kept in a header */
#define ERRTEXT_MAX 160        /* bytes of a broker error kept per batch */
#define DUPLICATE_WINDOW_S 120 /* JetStream de-duplication window */
#define MAX_ACK_PENDING 150000 /* leased messages per queue (see consumer_config) */
#define PUB_MAX_PENDING 8192   /* asynchronous publishes in flight */
#define FLUSH_NOW_MAX 32       /* batches up to this many are flushed at once */
#define RECONNECT_WAIT_MS 250
#define POLL_MS 100         /* a waiting receive looks for redeliveries this often */
#define PULL_ANSWER_MS 2000 /* for the answer to a no-wait pull request to begin */
#define RESCUE_MAX 10000    /* sequences a rescue hands back at most */
#define WAKE_DELAY_MS 1     /* from a publish seen to pulling it */
#define WAKE_PENDING_MAX 64 /* publishes buffered to wake a receive; more are dropped */
#define CLOSE_WAIT_MS 10000 /* for the closed callback at close */
#define NS_PER_MS 1000000LL
#define URL_MAX 4096       /* bytes of a broker URL */
#define URL_SERVERS_MAX 16 /* servers in its list */
#define URL_SERVER_MAX 256 /* bytes of one server, with "nats://" */
#define REPLICAS_MAX 5     /* JetStream's largest replica count */

/* What a broker URL says (see transport_nats_url.c). */
typedef struct txm__nats_url {
    char servers[URL_SERVERS_MAX][URL_SERVER_MAX]; /* "nats://[user@]host[:port]" */
    int count;                                     /* servers in the list, >= 1 */
    int replicas; /* ?replicas=N: 1..REPLICAS_MAX; 0 when not given */
} txm__nats_url;

/* What the transport knows about a queue, copied out of the cache. */
typedef struct qinfo {
    char queue[TXM_TOPIC_MAX + 1];
    char durable[TXM_TOPIC_MAX + 1]; /* consumer name: queue with '.' -> '_' */
    char topic[TXM_TOPIC_MAX + 1];
    char dlq[TXM__DLQ_NAME_MAX];
    int max_receive_count;
} qinfo;

/* A cached queue. Freed at close. */
typedef struct nqueue {
    qinfo info;
    uint64_t rescued; /* b->connections when the queue's stuck deliveries were last
                         handed back (see rescue_pending); 0: never */
    struct nqueue *next;
} nqueue;

/* A subscription unsubscribed but not yet destroyed (see sub_retire()). */
typedef struct retired {
    natsSubscription *sub;
    struct retired *next;
} retired;

/* One publish batch, shared with the acknowledgement handler. */
typedef struct pubbatch {
    natsMsg **inflight; /* message i until its ack arrives, then NULL */
    txm_status *res;    /* per message; TXM_TIMEOUT until answered */
    size_t n;
    size_t pending;        /* messages handed to libnats and not answered yet */
    int64_t deadline_ms;   /* nats_Now() past which the unanswered time out */
    struct pubbatch *next; /* batches on their way, oldest first */
    size_t hint;           /* where the next ack is likely: acks come in order */
    size_t text_index;     /* message the text below is about; n if none */
    char text[ERRTEXT_MAX];
} pubbatch;

struct txm__broker {
    natsOptions *nopts;
    natsConnection *nc;
    jsCtx *js;
    jsOptions api; /* Wait = API and ack timeout, ms */
    int publish_timeout_ms;
    txm_log_fn log;
    void *log_ctx;
    pthread_mutex_t mu; /* queues */
    nqueue *queues;
    pthread_mutex_t retired_mu; /* retired */
    retired *retired;
    pthread_mutex_t pub_mu;    /* one batch sent at a time, so batches go out whole, in order */
    pthread_mutex_t batch_mu;  /* batches, with the ack handler */
    pthread_cond_t batch_cv;   /* a batch got its last answer */
    pubbatch *batches;         /* sent and waiting for answers, oldest first */
    pthread_mutex_t closed_mu; /* closing and closed */
    pthread_cond_t closed_cond;
    bool closing;                     /* close has begun: a disconnect is no news */
    bool closed;                      /* set by the closed callback */
    atomic_bool streams_ready;        /* ensure_streams succeeded on this connection */
    atomic_uint_fast64_t connections; /* 1 once connected, +1 per reconnection */
    bool deliver_exhausted;           /* return over-limit messages flagged, not dead-lettered */
    int replicas; /* of the streams, from the URL; 0: not given (new ones get 1) */
};

/* ---- Shared helpers (transport_nats.c) ---- */

/* Fills err from a libnats failure: "nats: <what> <name>: <detail>". The
 * detail is libnats' thread-local last error, set by the failing call. */
txm_status txm__nats_nfail(txm_error *err, natsStatus s, jsErrCode jerr, const char *what,
                           const char *name);

/* Returns the header's value, "" when absent. Borrows: valid while m lives. */
const char *txm__nats_hdr(natsMsg *m, const char *key);

/* Copies the CloudEvents binary-mode headers ("ce-*", Content-Type) of from
 * to to, so a dead letter and its redrive keep the event's attributes. */
void txm__nats_copy_ce_headers(natsMsg *from, natsMsg *to);

/* Copies text into out as one header line: control characters would end the
 * header, so they become spaces. */
void txm__nats_header_text(const char *text, char out[REASON_MAX]);

/* A decimal header value as a count: 0 when malformed or negative, capped at
 * INT_MAX. */
int txm__nats_parse_count(const char *s);

/* TXM_OK when connected, else TXM_UNAVAILABLE (the client is reconnecting). */
/* Counts the dead letters of dead-letter queue dlq (its subject in
 * DLQ_STREAM) into *count. */
txm_status txm__nats_dlq_count(txm__broker *b, const char *dlq, int64_t *count, txm_error *err);

txm_status txm__nats_check_connected(txm__broker *b, txm_error *err);

/* Copies the queue's information out of the cache, or reads it from its
 * consumer. TXM_NOT_FOUND when the queue was never declared. */
txm_status txm__nats_queue_lookup(txm__broker *b, const char *queue, qinfo *out, txm_error *err);

/* Reads the delivery count and stream sequence from a delivery's reply
 * subject, "$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
 * seq>.<time>.<pending>", or on newer servers the same after two more tokens
 * (domain, account hash) and with more at the end. */
bool txm__nats_ack_meta(const char *reply, uint64_t *delivered, uint64_t *sseq);

/* Sends an acknowledgement (body "+ACK", "-NAK {...}") for delivery m as a
 * request: JetStream answers once it has applied it. The acknowledgement
 * goes straight to m's reply subject, so it does not need the subscription
 * the message came from. */
txm_status txm__nats_ack_request(txm__broker *b, natsMsg *m, const char *body, const char *what,
                                 const char *msg_id, txm_error *err);

/* Publishes m and waits for the stream's acknowledgement, unless s (the
 * status of building m) already failed. Takes m on every path. */
txm_status txm__nats_publish_sync(txm__broker *b, natsStatus s, natsMsg *m, const char *what,
                                  const char *name, txm_error *err);

/* ---- URL (transport_nats_url.c) ---- */

/* Parses a broker URL (see transport_nats_url.c) into out. TXM_INVALID,
 * naming the part at fault, when it is malformed or too long. */
txm_status txm__nats_url_parse(const char *url, txm__nats_url *out, txm_error *err);

/* Writes the list's servers as "host:port,host:port" into out (truncated
 * to len), without scheme or credentials: what messages may show. */
void txm__nats_url_show(const txm__nats_url *u, char *out, size_t len);

/* ---- Streams (transport_nats_stream.c) ---- */

/* Creates the streams TXMSG, TXMSG_DLQ and TXMSG_BLOBS, or checks the
 * existing ones, then marks b->streams_ready. An existing stream whose
 * settings txmsg relies on differ (subjects, file storage, limits
 * retention, direct get for dead letters, the replicas the URL asks for) is
 * TXM_CONFLICT, naming the stream, the setting and how to fix it. */
txm_status txm__nats_ensure_streams(txm__broker *b, txm_error *err);

/* ---- Dead letters (transport_nats_dlq.c) ---- */

/* Stores a copy of m (a delivery of q) in q's dead-letter queue, then acks
 * m. sseq is m's stream sequence: it names the dead letter for de-dupe. */
txm_status txm__nats_dlq_move(txm__broker *b, const qinfo *q, natsMsg *m, uint64_t sseq,
                              const char *msg_id, int count, const char *reason, txm_error *err);

/* The transport's dead_letter operation (see transport_int.h). */
txm_status txm__nats_dead_letter(txm__broker *b, txm_delivery *d, const char *reason,
                                 txm_error *err);

/* The transport's dlq_list operation: the queue's dead letters, oldest first. */
txm_status txm__nats_dlq_list(txm__broker *b, const char *queue, size_t limit, txm_delivery ***out,
                              size_t *count, txm_error *err);

/* Redrives the dead letters present when it starts (one that fails again
 * meanwhile is left for the next redrive). */
txm_status txm__nats_dlq_redrive(txm__broker *b, const char *queue, const char *message_id,
                                 size_t *moved, txm_error *err);

/* Purges the queue's dead letters up to the last one present at the start;
 * *purged is their count at that moment. */
txm_status txm__nats_dlq_purge(txm__broker *b, const char *queue, size_t *purged, txm_error *err);
txm_status txm__nats_dlq_delete(txm__broker *b, const char *queue, const char *message_id,
                                size_t *deleted, txm_error *err);

/* ---- Large payloads (transport_nats_blob.c) ---- */

/* Stores body under key in chunks. Chunk 0 carries the count and is written
 * last: a reader that finds it finds every other chunk too. */
txm_status txm__nats_blob_put(txm__broker *b, const char *key, const char *body, size_t len,
                              txm_error *err);

/* Reads the chunks of key back in order into one caller-owned buffer. */
txm_status txm__nats_blob_get(txm__broker *b, const char *key, char **out, size_t *len,
                              txm_error *err);

#endif
