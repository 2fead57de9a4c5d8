/* NATS JetStream transport ("nats://host:port", or a list of a cluster's
 * servers "nats://h1:p1,h2:p2,h3:p3?replicas=3"): topics are subjects
 * txmsg.<topic> of one stream, queues are durable pull consumers filtered on
 * their topic, and dead letters are kept in a second stream. This file holds
 * the connection, queues, publish, receive, ack and nack; the URL is read in
 * transport_nats_url.c, the streams declared in transport_nats_stream.c,
 * dead letters are in transport_nats_dlq.c, large-payload chunks (the stream
 * TXMSG_BLOBS) in transport_nats_blob.c, and what they share in
 * transport_nats_int.h.
 *
 * Layout on the server (each stream with the URL's replicas, default 1):
 * - stream TXMSG, subjects "txmsg.>", file storage, limits retention (a
 *   message is kept 14 days, as SQS's longest retention), de-duplication
 *   window 2 min on Nats-Msg-Id (= the message id). Each queue's consumer
 *   starts at the messages published after it was created, which gives
 *   SNS/SQS semantics: a message published to a topic nobody subscribes to
 *   reaches no queue. Interest retention, used first, lost messages across
 *   server restarts (see transport_nats_stream.c). Redelivery, leases and durability
 *   are those of the consumers.
 * - per queue a durable pull consumer on TXMSG. Its name is the queue name
 *   with '.' mapped to '_' (JetStream forbids '.' in consumer names), so
 *   queues "a.b" and "a_b" would collide: the second is refused with
 *   TXM_CONFLICT. FilterSubject txmsg.<topic>, AckPolicy explicit, AckWait =
 *   visibility timeout, DeliverPolicy new, MaxDeliver unlimited,
 *   MaxAckPending 150,000 (see consumer_config), Description "txmsg
 *   queue=<queue> dlq=<dead-letter queue> max=<max receive count>". The
 *   transport moves a message to the dead-letter queue itself: on the nack
 *   of its max_receive_count-th receive, or when a receive sees a delivery
 *   count above max_receive_count (the last lease expired without an ack).
 *   A server-side MaxDeliver would strand a message whose last delivery was
 *   lost: it would stay in the stream forever.
 * - stream TXMSG_DLQ, subjects "txmsg-dlq.>", limits retention, direct get
 *   allowed. A dead letter of a queue is a message on txmsg-dlq.<dlq> with the
 *   body and the headers Txmsg-Original-Subject, Txmsg-Message-Id,
 *   Txmsg-Queue, Txmsg-Delivery-Count and Txmsg-Last-Error. Its Nats-Msg-Id
 *   is "dlq:<queue>:<stream sequence of the original>", unique per stored
 *   message, so a dead-lettering retried after a failed ack is stored once,
 *   while a redriven message (a new stream message) can dead-letter again.
 * - redrive republishes to the original subject with Nats-Msg-Id
 *   "<id>:redrive:<dlq sequence>" (the plain id would be dropped by the
 *   de-duplication window), Txmsg-Message-Id = the message id, and
 *   Txmsg-Queue = the source queue: other queues of the same topic ack such a
 *   message without returning it, so a redrive reaches only its own queue.
 * - stream TXMSG_BLOBS, subjects "txmsg-blob.>", limits retention, one
 *   message per subject, kept 14 days: large payloads (claim check) in
 *   512 KiB chunks on txmsg-blob.<key in hex>.<chunk>.
 *
 * Receiving uses the JetStream pull API directly with no-wait requests on
 * a private inbox, answered at once with what is there; a receive that has
 * to wait listens to its topic's subject to pull as soon as something is
 * published, and polls every POLL_MS for redeliveries (see pull()). Acks go
 * to each delivery's reply subject as requests, so the server has applied
 * them when they return; a batch of acks is published without waiting for
 * replies and followed by one flush (see nats_ack_batch). They do not need
 * the subscription the message came from.
 *
 * A subscription must not be destroyed while a message for it may be
 * arriving. libnats before 3.6 (nats.c issue 637; Debian 12 ships 3.4.1)
 * looks a message's subscription up under the connection's lock, lets go of
 * the lock, and only then locks the subscription: one destroyed in between
 * is freed under the read loop, which then locks and writes freed memory.
 * Under steady traffic the wake-up subscription, which gets every publish to
 * its topic, was destroyed that way every second or so: glibc aborted ("e !=
 * ESRCH || !robust", malloc checks), or memory meanwhile reused by another
 * request was overwritten and its answer lost (an ack or publish failed with
 * TXM_TIMEOUT). So the wake-up subscription is retired (sub_retire():
 * unsubscribed, then destroyed after a round trip to the server, which the
 * read loop answers only once it has finished the message it may be in the
 * middle of), and so is a pull inbox whose answer was cut off; one with its
 * whole answer gets nothing more and is destroyed at once.
 *
 * Thread safety: the natsConnection and jsCtx are thread-safe, and receives
 * share nothing. b->mu guards the queue cache, b->retired_mu the retired
 * subscriptions that wait for a round trip. b->pub_mu makes publish
 * batches go out whole, one after the other; a batch may wait for its
 * answers while the next one is sent. b->batch_mu guards the batches on
 * their way, which the acknowledgement handler (a libnats thread) fills in. A delivery is
 * used by one thread at a time. The connection reconnects by itself for
 * ever; while it is down operations fail fast with TXM_BROKER (TXM_TIMEOUT
 * when it drops during a call) and work again once it is back.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nats/nats.h>

#include "core/alloc.h"
#include "core/envelope.h"
#include "transport/transport_nats_int.h"

/* ---- errors, names, headers ---- */

static txm_status map_status(natsStatus s, jsErrCode jerr)
{
    if (s == NATS_TIMEOUT)
        return TXM_TIMEOUT;
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr ||
        jerr == JSNoMessageFoundErr)
        return TXM_NOT_FOUND;
    if (s == NATS_NO_MEMORY)
        return TXM_NOMEM;
    /* The server is away (or not reached yet): an outage, retried later. */
    if (s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED ||
        s == NATS_NOT_YET_CONNECTED || s == NATS_STALE_CONNECTION || s == NATS_NO_RESPONDERS)
        return TXM_UNAVAILABLE;
    /* A cluster electing its JetStream leader answers this for a moment. */
    if (jerr == JSClusterNotAvailErr)
        return TXM_UNAVAILABLE;
    if (s == NATS_MAX_PAYLOAD)
        return TXM_TOO_BIG;
    return TXM_BROKER;
}

/* Fills err from a libnats failure: "nats: <what> <name>: <detail>". The
 * detail is libnats' thread-local last error, set by the failing call. */
txm_status txm__nats_nfail(txm_error *err, natsStatus s, jsErrCode jerr, const char *what,
                           const char *name)
{
    const char *detail = nats_GetLastError(NULL);
    if (detail == NULL || detail[0] == '\0')
        detail = natsStatus_GetText(s);
    return txm_errf(err, map_status(s, jerr), "nats: %s %s: %s", what, name, detail);
}

/* A name is used as subject tokens: no empty token ("a..b", ".a", "a."). */
static bool tokens_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && name[0] != '.' && name[n - 1] != '.' && strstr(name, "..") == NULL;
}

static void durable_name(const char *queue, char out[TXM_TOPIC_MAX + 1])
{
    snprintf(out, TXM_TOPIC_MAX + 1, "%s", queue);
    for (char *p = out; *p != '\0'; p++)
        if (*p == '.')
            *p = '_';
}

/* Returns the header's value, "" when absent. Borrows: valid while m lives. */
const char *txm__nats_hdr(natsMsg *m, const char *key)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == NULL)
        return "";
    return v;
}

/* Copies text into out as one header line: control characters would end the
 * header, so they become spaces. */
void txm__nats_header_text(const char *text, char out[REASON_MAX])
{
    snprintf(out, REASON_MAX, "%s", text != NULL ? text : "");
    for (char *p = out; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

int txm__nats_parse_count(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0)
        return 0;
    return v > INT_MAX ? INT_MAX : (int)v;
}

txm_status txm__nats_check_connected(txm__broker *b, txm_error *err)
{
    if (natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED)
        return TXM_OK;
    return txm_errf(err, TXM_UNAVAILABLE, "nats: not connected to the server (reconnecting)");
}

/* Connected, and the streams exist: a transport opened before its server
 * was up declares them on first use. */
static txm_status check_ready(txm__broker *b, txm_error *err)
{
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK && !atomic_load(&b->streams_ready))
        st = txm__nats_ensure_streams(b, err);
    return st;
}

/* ---- connection ---- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    txm__broker *b = closure;
    pthread_mutex_lock(&b->closed_mu);
    bool closing = b->closing;
    pthread_mutex_unlock(&b->closed_mu);
    if (!closing)
        txm_logf(b->log, b->log_ctx, TXM_LOG_WARN,
                 "nats: disconnected from the server; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    txm__broker *b = closure;
    atomic_fetch_add(&b->connections, 1); /* queues rescue stuck deliveries (rescue_pending) */
    txm_logf(b->log, b->log_ctx, TXM_LOG_INFO, "nats: reconnected to the server");
}

/* The last callback libnats makes for a connection: close waits for it so no
 * callback can run on a freed broker. */
static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    txm__broker *b = closure;
    pthread_mutex_lock(&b->closed_mu);
    b->closed = true;
    pthread_cond_signal(&b->closed_cond);
    pthread_mutex_unlock(&b->closed_mu);
}

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

/* Connects to any server of the URL's list; libnats fails over to the
 * others (and to those the cluster announces) when it loses it. */
static txm_status nats_connect(txm__broker *b, const txm__nats_url *u, int timeout_ms,
                               bool background, txm_error *err)
{
    char url[512]; /* what errors show: no credentials; txm_error truncates anyway */
    txm__nats_url_show(u, url, sizeof url);
    const char *servers[URL_SERVERS_MAX];
    for (int i = 0; i < u->count; i++)
        servers[i] = u->servers[i];
    natsStatus s = natsOptions_Create(&b->nopts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(b->nopts, servers, u->count);
    if (s == NATS_OK)
        s = natsOptions_SetName(b->nopts, "txmsg");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(b->nopts, timeout_ms);
    /* Reconnect for ever: a broker restart must not need a process restart.
     * The first connect is retried in the background only when asked (a
     * service starts before its broker); otherwise open reports an
     * unreachable server at once instead of blocking. */
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(b->nopts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(b->nopts, RECONNECT_WAIT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(b->nopts, 100, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(b->nopts, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(b->nopts, on_disconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(b->nopts, on_reconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(b->nopts, on_closed, b);
    if (s == NATS_OK && background)
        s = natsOptions_SetRetryOnFailedConnect(b->nopts, true, on_reconnected, b);
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, 0, "options for", url);
    s = natsConnection_Connect(&b->nc, b->nopts);
    if (s == NATS_NOT_YET_CONNECTED && background) {
        txm_logf(b->log, b->log_ctx, TXM_LOG_WARN,
                 "nats: server not reachable yet; connecting in the background");
        s = NATS_OK;
    }
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, 0, "cannot connect to", url);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = b->api.Wait;
    jo.PublishAsync.MaxPending = PUB_MAX_PENDING;
    jo.PublishAsync.StallWait = b->publish_timeout_ms;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = b;
    s = natsConnection_JetStream(&b->js, b->nc, &jo);
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, 0, "JetStream context for", url);
    return TXM_OK;
}

static void nats_close(txm__broker *b);

/* Connects and makes sure the streams exist, so a publish before any
 * declaration is stored. TXM_INVALID for a malformed URL, before any
 * connection; TXM_BROKER/TXM_TIMEOUT when the server cannot be
 * reached or has no JetStream; TXM_CONFLICT for a stream made otherwise. */
static txm_status nats_open(const char *url, const txm_transport_options *o, txm__broker **out,
                            txm_error *err)
{
    *out = NULL;
    txm__nats_url *u = txm__malloc(sizeof *u); /* 4 KiB: not on the stack */
    if (u == NULL)
        return txm_errf(err, TXM_NOMEM, "nats: out of memory");
    txm_status st = txm__nats_url_parse(url, u, err);
    txm__broker *b = st == TXM_OK ? txm__calloc(1, sizeof *b) : NULL;
    if (st == TXM_OK && b == NULL)
        st = txm_errf(err, TXM_NOMEM, "nats: out of memory");
    if (st != TXM_OK) {
        free(u);
        return st;
    }
    b->log = o->log;
    b->log_ctx = o->log_ctx;
    b->replicas = u->replicas;
    b->publish_timeout_ms = o->publish_timeout_ms > 0 ? o->publish_timeout_ms : 10000;
    b->deliver_exhausted = o->deliver_exhausted;
    jsOptions_Init(&b->api);
    b->api.Wait = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->retired_mu, NULL);
    pthread_mutex_init(&b->pub_mu, NULL);
    pthread_mutex_init(&b->batch_mu, NULL);
    pthread_cond_init(&b->batch_cv, NULL);
    pthread_mutex_init(&b->closed_mu, NULL);
    pthread_cond_init(&b->closed_cond, NULL);
    atomic_init(&b->streams_ready, false);
    atomic_init(&b->connections, 1);
    st = nats_connect(b, u, (int)b->api.Wait, o->background_connect, err);
    free(u);
    if (st == TXM_OK && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED)
        st = txm__nats_ensure_streams(b, err);
    /* A cluster still electing its leaders times out or answers "not
     * available": in the background, as for a server not up yet, the
     * streams are declared on first use (check_ready). */
    if ((st == TXM_TIMEOUT || st == TXM_UNAVAILABLE) && o->background_connect) {
        txm_logf(b->log, b->log_ctx, TXM_LOG_WARN,
                 "nats: streams not declared yet, trying again on first use: %s",
                 err != NULL ? err->text : "");
        st = TXM_OK;
    }
    if (st != TXM_OK) {
        nats_close(b);
        return st;
    }
    *out = b;
    return TXM_OK;
}

static void wait_closed(txm__broker *b)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CLOSE_WAIT_MS / 1000;
    pthread_mutex_lock(&b->closed_mu);
    while (!b->closed)
        if (pthread_cond_timedwait(&b->closed_cond, &b->closed_mu, &until) != 0)
            break;
    pthread_mutex_unlock(&b->closed_mu);
}

/* Destroys the retired subscriptions of list. */
static void retired_free(retired *list)
{
    for (retired *next = NULL; list != NULL; list = next) {
        next = list->next;
        natsSubscription_Destroy(list->sub);
        free(list);
    }
}

/* Closes the connection. Deliveries may be freed later but no longer
 * settled. Subscriptions (the retired ones, and the JetStream context's
 * one for publish acknowledgements) are destroyed once the connection is
 * closed and its read loop gone, for the reason given at the top. nats_Close
 * is not called: it is process-wide, and other users of libnats may remain
 * in the process. */
static void nats_close(txm__broker *b)
{
    if (b == NULL)
        return;
    for (nqueue *q = b->queues, *next = NULL; q != NULL; q = next) {
        next = q->next;
        free(q);
    }
    if (b->nc != NULL) {
        pthread_mutex_lock(&b->closed_mu);
        b->closing = true;
        pthread_mutex_unlock(&b->closed_mu);
        natsConnection_Close(b->nc);
        wait_closed(b);
    }
    retired_free(b->retired);
    jsCtx_Destroy(b->js);
    natsConnection_Destroy(b->nc);
    natsOptions_Destroy(b->nopts);
    pthread_cond_destroy(&b->closed_cond);
    pthread_mutex_destroy(&b->closed_mu);
    pthread_cond_destroy(&b->batch_cv);
    pthread_mutex_destroy(&b->batch_mu);
    pthread_mutex_destroy(&b->pub_mu);
    pthread_mutex_destroy(&b->retired_mu);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ---- queues: declaration and cache ---- */

static nqueue *queue_find(txm__broker *b, const char *queue)
{
    for (nqueue *q = b->queues; q != NULL; q = q->next)
        if (strcmp(q->info.queue, queue) == 0)
            return q;
    return NULL;
}

static txm_status queue_cache(txm__broker *b, const qinfo *info, txm_error *err)
{
    pthread_mutex_lock(&b->mu);
    nqueue *q = queue_find(b, info->queue);
    if (q == NULL && (q = txm__calloc(1, sizeof *q)) != NULL) {
        q->next = b->queues;
        b->queues = q;
    }
    if (q != NULL)
        q->info = *info;
    pthread_mutex_unlock(&b->mu);
    return q != NULL ? TXM_OK : txm_errf(err, TXM_NOMEM, "nats: out of memory");
}

static void describe(const qinfo *q, char desc[DESC_MAX])
{
    snprintf(desc, DESC_MAX, "txmsg queue=%s dlq=%s max=%d", q->queue, q->dlq,
             q->max_receive_count);
}

/* Reads what a consumer made by declare_subscription says about its queue.
 * Description "txmsg queue=<queue> dlq=<dlq> max=<max_receive_count>" (names
 * have no spaces); without it (a consumer made by hand) the queue is the
 * consumer and the dead-letter queue the default. Consumers declared before
 * max= was written kept the count in MaxDeliver - 1. */
static void info_from_consumer(const jsConsumerInfo *ci, const char *queue, qinfo *q)
{
    const jsConsumerConfig *c = ci->Config;
    memset(q, 0, sizeof *q);
    snprintf(q->queue, sizeof q->queue, "%s", queue);
    durable_name(queue, q->durable);
    const char *filter = c != NULL && c->FilterSubject != NULL ? c->FilterSubject : "";
    size_t plen = strlen(SUBJECT_PREFIX);
    snprintf(q->topic, sizeof q->topic, "%s",
             strncmp(filter, SUBJECT_PREFIX, plen) == 0 ? filter + plen : filter);
    int64_t md = c != NULL ? c->MaxDeliver : -1;
    q->max_receive_count = md <= 0 || md - 1 > INT_MAX ? INT_MAX : md > 1 ? (int)(md - 1) : 1;
    txm__transport_dlq_name(queue, NULL, q->dlq);
    const char *desc = c != NULL && c->Description != NULL ? c->Description : "";
    const char *qs = strstr(desc, "queue=");
    const char *ds = strstr(desc, " dlq=");
    if (strncmp(desc, "txmsg ", 6) == 0 && qs != NULL && ds != NULL && ds > qs) {
        snprintf(q->queue, sizeof q->queue, "%.*s", (int)(ds - qs - 6), qs + 6);
        snprintf(q->dlq, sizeof q->dlq, "%.*s", (int)strcspn(ds + 5, " "), ds + 5);
        const char *ms = strstr(ds, " max=");
        int max = ms != NULL ? txm__nats_parse_count(ms + 5) : 0;
        if (max > 0)
            q->max_receive_count = max;
    }
}

/* Copies the queue's information out of the cache, or reads it from its
 * consumer. TXM_NOT_FOUND when the queue was never declared. */
txm_status txm__nats_queue_lookup(txm__broker *b, const char *queue, qinfo *out, txm_error *err)
{
    pthread_mutex_lock(&b->mu);
    nqueue *q = queue_find(b, queue);
    if (q != NULL)
        *out = q->info;
    pthread_mutex_unlock(&b->mu);
    if (q != NULL)
        return TXM_OK;
    char durable[TXM_TOPIC_MAX + 1];
    durable_name(queue, durable);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, b->js, STREAM, durable, &b->api, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)
        return txm_errf(err, TXM_NOT_FOUND, "nats: no subscription for queue %s", queue);
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "consumer info of", queue);
    info_from_consumer(ci, queue, out);
    jsConsumerInfo_Destroy(ci);
    /* The consumer may belong to a queue whose name maps to the same one. */
    if (strcmp(out->queue, queue) != 0)
        return txm_errf(err, TXM_NOT_FOUND, "nats: no subscription for queue %s", queue);
    return queue_cache(b, out, err);
}

static void consumer_config(const qinfo *q, int visibility_ms, char filter[SUBJECT_MAX],
                            char desc[DESC_MAX], jsConsumerConfig *cfg)
{
    snprintf(filter, SUBJECT_MAX, "%s%s", SUBJECT_PREFIX, q->topic);
    describe(q, desc);
    jsConsumerConfig_Init(cfg);
    cfg->Durable = q->durable;
    cfg->Description = desc;
    cfg->FilterSubject = filter;
    /* A new queue gets what is published from now on, as an SQS queue
     * subscribed to an SNS topic: the stream also holds older messages. */
    cfg->DeliverPolicy = js_DeliverNew;
    cfg->AckPolicy = js_AckExplicit;
    cfg->ReplayPolicy = js_ReplayInstant;
    cfg->AckWait = (int64_t)visibility_ms * NS_PER_MS;
    /* No MaxDeliver: the transport itself dead-letters a message received
     * more than max_receive_count times, and a limit in the server would
     * strand a message whose last allowed delivery was lost (a receiver or
     * the server killed while it was out): JetStream delivers it no more,
     * and it never reaches the dead-letter queue. */
    cfg->MaxDeliver = -1;
    /* A consumer at MaxAckPending gets nothing more until leases end, so it
     * must stay well above what receivers hold: a consumer runtime holds at
     * most 64 lanes x 1,000 (64,000; typically 4 x a few hundred), and one
     * restarted after a crash holds as many again while the dead process's
     * leases run out. 150,000 covers both with room; the server keeps state
     * only for deliveries actually pending. reconcile() updates existing
     * consumers made with another value (20,000 before). */
    cfg->MaxAckPending = MAX_ACK_PENDING;
}

/* Brings an existing consumer in line with want: another topic (or another
 * queue mapped to the same consumer name) is a conflict; other options are
 * updated, as SQS lets a queue's attributes change. */
static txm_status reconcile(txm__broker *b, const jsConsumerInfo *ci, const qinfo *want,
                            jsConsumerConfig *cfg, txm_error *err)
{
    const jsConsumerConfig *have = ci->Config;
    if (have == NULL)
        return txm_errf(err, TXM_BROKER, "nats: consumer %s has no configuration", want->durable);
    qinfo got;
    info_from_consumer(ci, want->queue, &got);
    if (have->FilterSubject == NULL || strcmp(have->FilterSubject, cfg->FilterSubject) != 0)
        return txm_errf(err, TXM_CONFLICT, "nats: queue %s already subscribes to %s", want->queue,
                        have->FilterSubject != NULL ? have->FilterSubject : "all");
    if (strcmp(got.queue, want->queue) != 0)
        return txm_errf(err, TXM_CONFLICT, "nats: queue %s maps to consumer %s of queue %s",
                        want->queue, want->durable, got.queue);
    bool same = have->AckWait == cfg->AckWait && have->MaxDeliver == cfg->MaxDeliver &&
                have->MaxAckPending == cfg->MaxAckPending && have->Description != NULL &&
                strcmp(have->Description, cfg->Description) == 0;
    if (same)
        return TXM_OK;
    jsErrCode jerr = 0;
    natsStatus s = js_UpdateConsumer(NULL, b->js, STREAM, cfg, &b->api, &jerr);
    return s == NATS_OK ? TXM_OK : txm__nats_nfail(err, s, jerr, "update consumer", want->durable);
}

static txm_status nats_declare_topic(txm__broker *b, const char *topic, txm_error *err)
{
    if (!tokens_ok(topic))
        return txm_errf(err, TXM_INVALID, "nats: topic %s has an empty subject token", topic);
    return check_ready(b, err);
}

/* Creates the queue's durable consumer, or checks and updates it. Several
 * processes may race: a create that finds the name taken re-reads it. */
static txm_status nats_declare_subscription(txm__broker *b, const char *topic, const char *queue,
                                            const txm_subscription_options *o, txm_error *err)
{
    qinfo want;
    memset(&want, 0, sizeof want);
    snprintf(want.queue, sizeof want.queue, "%s", queue);
    snprintf(want.topic, sizeof want.topic, "%s", topic);
    durable_name(queue, want.durable);
    txm__transport_dlq_name(queue, o, want.dlq);
    want.max_receive_count = o->max_receive_count;
    if (!tokens_ok(topic) || !tokens_ok(want.dlq))
        return txm_errf(err, TXM_INVALID, "nats: topic or dead-letter queue has an empty token");
    txm_status st = check_ready(b, err);
    if (st != TXM_OK)
        return st;
    char filter[SUBJECT_MAX], desc[DESC_MAX];
    jsConsumerConfig cfg;
    consumer_config(&want, o->visibility_timeout_ms, filter, desc, &cfg);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, b->js, STREAM, want.durable, &b->api, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
        s = js_AddConsumer(&ci, b->js, STREAM, &cfg, &b->api, &jerr);
        if (s != NATS_OK && jerr == JSConsumerNameExistErr)
            s = js_GetConsumerInfo(&ci, b->js, STREAM, want.durable, &b->api, &jerr);
    }
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "create consumer", want.durable);
    st = reconcile(b, ci, &want, &cfg, err);
    jsConsumerInfo_Destroy(ci);
    return st == TXM_OK ? queue_cache(b, &want, err) : st;
}

/* ---- publish ---- */

/* Finds msg among the batch's in-flight messages, starting where the last
 * one was found. Returns n when it is not there. Under batch_mu. */
static size_t batch_find(pubbatch *pb, const natsMsg *msg)
{
    for (size_t k = 0; k < pb->n; k++) {
        size_t i = (pb->hint + k) % pb->n;
        if (pb->inflight[i] == msg) {
            pb->hint = i + 1;
            return i;
        }
    }
    return pb->n;
}

/* Records message i's failure; the text kept is the first message's. Under
 * batch_mu. */
static void batch_fail(pubbatch *pb, size_t i, txm_status st, const char *text)
{
    pb->res[i] = st;
    if (i < pb->text_index) {
        pb->text_index = i;
        snprintf(pb->text, sizeof pb->text, "%s", text != NULL ? text : txm_strerror(st));
    }
}

/* Marks message i of pb answered (its result set already); the batch's
 * waiter wakes once nothing is left. Under batch_mu. */
static void batch_answered(txm__broker *b, pubbatch *pb, size_t i)
{
    pb->inflight[i] = NULL;
    if (--pb->pending == 0)
        pthread_cond_broadcast(&b->batch_cv);
}

/* libnats calls this on its thread for each acknowledgement (or failure) of
 * an asynchronous publish. Owns: msg is ours to destroy. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    txm__broker *b = closure;
    pthread_mutex_lock(&b->batch_mu);
    for (pubbatch *pb = b->batches; pb != NULL; pb = pb->next) {
        size_t i = pb->pending > 0 ? batch_find(pb, msg) : pb->n; /* answered: waiting to go */
        if (i == pb->n)
            continue;
        /* A duplicate inside the window is stored already: a success. */
        if (pa != NULL)
            pb->res[i] = TXM_OK;
        else
            batch_fail(pb, i, pae != NULL ? map_status(pae->Err, pae->ErrCode) : TXM_BROKER,
                       pae != NULL ? pae->ErrText : NULL);
        batch_answered(b, pb, i);
        break;
    }
    pthread_mutex_unlock(&b->batch_mu);
    natsMsg_Destroy(msg);
}

static void send_one(txm__broker *b, pubbatch *pb, const txm_outgoing *o, size_t i)
{
    char subject[SUBJECT_MAX];
    snprintf(subject, sizeof subject, "%s%s", SUBJECT_PREFIX, o->topic);
    if (!tokens_ok(o->topic) || o->len > INT_MAX) {
        pthread_mutex_lock(&b->batch_mu);
        batch_fail(pb, i, o->len > INT_MAX ? TXM_TOO_BIG : TXM_INVALID, "bad topic or size");
        pthread_mutex_unlock(&b->batch_mu);
        return;
    }
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, o->body, (int)o->len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_MSG_ID, o->message_id);
    if (s == NATS_OK) {
        pthread_mutex_lock(&b->batch_mu);
        pb->inflight[i] = m;
        pb->pending++; /* before the hand-off: its answer may come at once */
        pthread_mutex_unlock(&b->batch_mu);
        natsMsg *handed = m;
        /* On success libnats owns the message and hands it to on_pub_ack. */
        s = js_PublishMsgAsync(b->js, &handed, NULL);
        if (s == NATS_OK)
            return;
    }
    pthread_mutex_lock(&b->batch_mu);
    if (pb->inflight[i] == m && m != NULL) {
        pb->inflight[i] = NULL;
        pb->pending--;
    }
    batch_fail(pb, i, map_status(s, 0), nats_GetLastError(NULL));
    pthread_mutex_unlock(&b->batch_mu);
    natsMsg_Destroy(m);
}

/* Gives up on what is still unanswered once a batch's deadline passed: the
 * pending messages are withdrawn from libnats and keep TXM_TIMEOUT (they
 * may still be stored, which a later re-publish with the same id covers).
 * libnats withdraws those of every batch on their way, so the later ones
 * fail too, as they would have once their own deadline came. */
static void withdraw_pending(txm__broker *b)
{
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, b->js) != NATS_OK)
        return;
    pthread_mutex_lock(&b->batch_mu);
    for (int k = 0; k < pending.Count; k++) {
        for (pubbatch *pb = b->batches; pb != NULL; pb = pb->next) {
            size_t i = batch_find(pb, pending.Msgs[k]);
            if (i < pb->n) {
                batch_fail(pb, i, TXM_TIMEOUT, "no acknowledgement from the server in time");
                batch_answered(b, pb, i);
                break;
            }
        }
    }
    pthread_mutex_unlock(&b->batch_mu);
    natsMsgList_Destroy(&pending);
}

static void batch_free(pubbatch *pb)
{
    if (pb == NULL)
        return;
    free(pb->inflight);
    free(pb->res);
    free(pb);
}

/* Sends a batch asynchronously (a window of outstanding acks is ~10x faster
 * than one at a time) and returns once it is on the wire, in order after
 * the batches sent before it; nats_publish_wait waits for its answers, so
 * the caller can send the next one meanwhile. */
static txm_status nats_publish_start(txm__broker *b, const txm_outgoing *msgs, size_t n,
                                     void **handle, txm_error *err)
{
    *handle = NULL;
    txm_status st = check_ready(b, err);
    if (st != TXM_OK)
        return st;
    pubbatch *pb = txm__calloc(1, sizeof *pb);
    if (pb != NULL) {
        pb->inflight = txm__calloc(n, sizeof *pb->inflight);
        pb->res = txm__calloc(n, sizeof *pb->res);
    }
    if (pb == NULL || pb->inflight == NULL || pb->res == NULL) {
        batch_free(pb);
        return txm_errf(err, TXM_NOMEM, "nats: out of memory");
    }
    pb->n = n;
    pb->text_index = n;
    for (size_t i = 0; i < n; i++)
        pb->res[i] = TXM_TIMEOUT;
    pthread_mutex_lock(&b->pub_mu);
    pb->deadline_ms = nats_Now() + b->publish_timeout_ms;
    pthread_mutex_lock(&b->batch_mu);
    pubbatch **tail = &b->batches;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = pb;
    pthread_mutex_unlock(&b->batch_mu);
    for (size_t i = 0; i < n; i++)
        send_one(b, pb, &msgs[i], i);
    /* A small batch goes out now rather than when libnats' flusher thread
     * gets to it: the round trip saves the milliseconds a lone message would
     * wait there. A large one is not held up by it (under load the server
     * answers the ping only after the batch, and the next batch waits). */
    if (n <= FLUSH_NOW_MAX)
        natsConnection_FlushTimeout(b->nc, b->publish_timeout_ms);
    pthread_mutex_unlock(&b->pub_mu);
    *handle = pb;
    return TXM_OK;
}

/* Waits until every message of the batch is answered or its deadline,
 * unlinks and frees it. Returns the first failure; results gets each
 * message's status. */
static txm_status nats_publish_wait(txm__broker *b, void *handle, const txm_outgoing *msgs,
                                    txm_status *results, txm_error *err)
{
    pubbatch *pb = handle;
    pthread_mutex_lock(&b->batch_mu);
    while (pb->pending > 0) {
        int64_t left = pb->deadline_ms - nats_Now();
        if (left <= 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(left / 1000);
        until.tv_nsec += (long)(left % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&b->batch_cv, &b->batch_mu, &until);
    }
    bool late = pb->pending > 0;
    pthread_mutex_unlock(&b->batch_mu);
    if (late)
        withdraw_pending(b);
    pthread_mutex_lock(&b->batch_mu);
    pubbatch **at = &b->batches;
    while (*at != NULL && *at != pb)
        at = &(*at)->next;
    if (*at == pb)
        *at = pb->next;
    pthread_mutex_unlock(&b->batch_mu);
    txm_status st = TXM_OK;
    for (size_t i = 0; i < pb->n; i++) {
        if (results != NULL)
            results[i] = pb->res[i];
        if (st == TXM_OK && pb->res[i] != TXM_OK)
            st = msgs != NULL
                     ? txm_errf(err, pb->res[i], "nats: publish of message %zu (%s): %s", i,
                                msgs[i].message_id, i == pb->text_index ? pb->text : "failed")
                     : txm_errf(err, pb->res[i], "nats: publish of message %zu: %s", i,
                                i == pb->text_index ? pb->text : "failed");
    }
    batch_free(pb);
    return st;
}

static txm_status nats_publish(txm__broker *b, const txm_outgoing *msgs, size_t n,
                               txm_status *results, txm_error *err)
{
    void *handle = NULL;
    txm_status st = nats_publish_start(b, msgs, n, &handle, err);
    return st == TXM_OK ? nats_publish_wait(b, handle, msgs, results, err) : st;
}

/* ---- deliveries: metadata and acknowledgements ---- */

/* Reads the delivery count and stream sequence from a delivery's reply
 * subject, "$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
 * seq>.<time>.<pending>", or on newer servers the same after two more tokens
 * (domain, account hash) and with more at the end. */
bool txm__nats_ack_meta(const char *reply, uint64_t *delivered, uint64_t *sseq)
{
    size_t plen = strlen(ACK_PREFIX);
    if (reply == NULL || strncmp(reply, ACK_PREFIX, plen) != 0)
        return false;
    const char *tok[12];
    int n = 0;
    for (const char *p = reply + plen; p != NULL && n < 12; n++) {
        tok[n] = p;
        p = strchr(p, '.');
        if (p != NULL)
            p++;
    }
    int base = n == 7 ? 0 : n >= 9 ? 2 : -1;
    if (base < 0)
        return false;
    *delivered = strtoull(tok[base + 2], NULL, 10);
    *sseq = strtoull(tok[base + 3], NULL, 10);
    return *delivered > 0 && *sseq > 0;
}

/* Sends an acknowledgement (body "+ACK", "-NAK {...}") for delivery m as a
 * request: JetStream answers once it has applied it. The acknowledgement
 * goes straight to m's reply subject, so it does not need the subscription
 * the message came from. */
txm_status txm__nats_ack_request(txm__broker *b, natsMsg *m, const char *body, const char *what,
                                 const char *msg_id, txm_error *err)
{
    const char *reply = natsMsg_GetReply(m);
    if (reply == NULL || strncmp(reply, ACK_PREFIX, strlen(ACK_PREFIX)) != 0)
        return txm_errf(err, TXM_STATE, "nats: %s %s: not a JetStream delivery", what, msg_id);
    natsMsg *resp = NULL;
    natsStatus s = natsConnection_RequestString(&resp, b->nc, reply, body, b->api.Wait);
    natsMsg_Destroy(resp);
    return s == NATS_OK ? TXM_OK : txm__nats_nfail(err, s, 0, what, msg_id);
}

/* Publishes m and waits for the stream's acknowledgement, unless s (the
 * status of building m) already failed. Takes m on every path. */
txm_status txm__nats_publish_sync(txm__broker *b, natsStatus s, natsMsg *m, const char *what,
                                  const char *name, txm_error *err)
{
    jsErrCode jerr = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = b->publish_timeout_ms;
    if (s == NATS_OK)
        s = js_PublishMsg(NULL, b->js, m, &po, &jerr);
    natsMsg_Destroy(m);
    return s == NATS_OK ? TXM_OK : txm__nats_nfail(err, s, jerr, what, name);
}

/* ---- receive, ack, nack ---- */

static void free_msg(void *handle)
{
    natsMsg_Destroy(handle);
}

/* Destroys sub, which messages may still be arriving for (see the top of
 * the file): unsubscribes it, so that the read loop no longer finds it, then
 * makes a round trip to the server, whose answer the read loop handles only
 * after any message it was handling for sub, and destroys it. Without an
 * answer (the connection is down) sub waits in b->retired for a later
 * round trip that gets one, or for close. Those already waiting go along
 * with this one: they were unsubscribed before its round trip began. */
static void sub_retire(txm__broker *b, natsSubscription *sub)
{
    if (sub == NULL)
        return;
    natsSubscription_Unsubscribe(sub);
    pthread_mutex_lock(&b->retired_mu);
    retired *waiting = b->retired;
    b->retired = NULL;
    pthread_mutex_unlock(&b->retired_mu);
    if (natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED &&
        natsConnection_FlushTimeout(b->nc, b->api.Wait) == NATS_OK) {
        natsSubscription_Destroy(sub);
        retired_free(waiting);
        return;
    }
    retired *r = txm__calloc(1, sizeof *r);
    if (r != NULL) {
        r->sub = sub;
        r->next = waiting;
        waiting = r;
    } /* else out of memory: sub is leaked, as destroying it is not safe */
    retired **tail = &waiting;
    while (*tail != NULL)
        tail = &(*tail)->next;
    pthread_mutex_lock(&b->retired_mu);
    *tail = b->retired;
    b->retired = waiting;
    pthread_mutex_unlock(&b->retired_mu);
}

/* Reads the answer to one pull request: deliveries (reply subject
 * $JS.ACK...) into got, until max of them or the request's closing status
 * (404 no messages, 408 done; 409 and others are errors unless something
 * was delivered), or the deadline: first_ms (nats_Now) for the answer to
 * begin, deadline_ms for all of it. *complete tells whether the whole
 * answer came (max deliveries or the closing status): only then will
 * nothing more arrive on sub. */
static txm_status read_pull(natsSubscription *sub, const char *queue, size_t max, int64_t first_ms,
                            int64_t deadline_ms, natsMsg **got, size_t *n, bool *complete,
                            txm_error *err)
{
    *complete = false;
    bool begun = false;
    while (*n < max) {
        int64_t left = (begun ? deadline_ms : first_ms) - nats_Now();
        natsMsg *m = NULL;
        natsStatus s = left > 0 ? natsSubscription_NextMsg(&m, sub, left) : NATS_TIMEOUT;
        if (s == NATS_TIMEOUT)
            return TXM_OK;
        if (s != NATS_OK)
            return txm__nats_nfail(err, s, 0, "pull from", queue);
        begun = true;
        const char *reply = natsMsg_GetReply(m);
        if (reply != NULL && strncmp(reply, ACK_PREFIX, strlen(ACK_PREFIX)) == 0) {
            got[(*n)++] = m;
            continue;
        }
        const char *code = txm__nats_hdr(m, HDR_STATUS);
        bool end = code[0] != '\0' && strcmp(code, "100") != 0;
        txm_status st = TXM_OK;
        if (end && *n == 0 && strcmp(code, "404") != 0 && strcmp(code, "408") != 0) {
            const char *desc = txm__nats_hdr(m, HDR_DESCRIPTION);
            /* 503: no server took the request (no JetStream, or none yet). */
            st = txm_errf(err,
                          strstr(desc, "Deleted") != NULL ? TXM_NOT_FOUND
                          : strcmp(code, "503") == 0      ? TXM_UNAVAILABLE
                                                          : TXM_BROKER,
                          "nats: pull from %s: %s %s", queue, code, desc);
        }
        natsMsg_Destroy(m);
        if (end) {
            *complete = true;
            return st;
        }
    }
    *complete = true;
    return TXM_OK;
}

/* One no-wait pull request on a private inbox: JetStream answers at once
 * with what is available (or 404/408). Requests with an expiry are not
 * used: nats-server 2.9 loses a redelivery that becomes due while an expired
 * request is still queued (it counts the delivery, sends nothing, and the
 * message comes back only after another lease, one receive count higher),
 * and mixing them with no-wait requests delayed deliveries by seconds.
 * The answer must begin within PULL_ANSWER_MS: while a cluster elects a new
 * leader for the queue's consumer, a request is dropped without an answer
 * (no 503 either), and waiting the whole API timeout for it held receives
 * up for up to 5 s after the election (the cluster test). An answer that
 * begins later than that is cut off like any other, and said so: its
 * deliveries come back after their lease, one receive count higher. */
static txm_status pull_now(txm__broker *b, const qinfo *q, size_t max, natsMsg **got, size_t *n,
                           txm_error *err)
{
    int64_t now = nats_Now();
    int64_t first_ms = b->api.Wait < PULL_ANSWER_MS ? b->api.Wait : PULL_ANSWER_MS;
    char subject[SUBJECT_MAX], body[64];
    snprintf(subject, sizeof subject, "%s%s.%s", PULL_PREFIX, STREAM, q->durable);
    snprintf(body, sizeof body, "{\"batch\":%zu,\"no_wait\":true}", max);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    bool complete = true; /* no request, no answer */
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK)
        s = natsConnection_SubscribeSync(&sub, b->nc, inbox);
    if (s == NATS_OK)
        s = natsConnection_PublishRequestString(b->nc, subject, inbox, body);
    txm_status st = s != NATS_OK ? txm__nats_nfail(err, s, 0, "pull request to", q->durable)
                                 : read_pull(sub, q->queue, max, now + first_ms, now + b->api.Wait,
                                             got, n, &complete, err);
    /* A delivery arriving after this (only when the answer was cut off) is
     * lost to this receive and delivered again when its lease ends. */
    if (st == TXM_OK && !complete && *n == 0)
        txm_logf(b->log, b->log_ctx, TXM_LOG_INFO,
                 "nats: pull from %s: no answer in %lld ms (a new leader being elected?)", q->queue,
                 (long long)first_ms);
    if (complete)
        natsSubscription_Destroy(sub);
    else
        sub_retire(b, sub);
    natsInbox_Destroy(inbox);
    return st;
}

/* Long poll with SQS semantics: returns as soon as something is there, or
 * after wait_ms. While waiting, a plain subscription to the topic's subject
 * wakes the receive when a message is published; redeliveries (nack delay,
 * lease expiry) publish nothing and are found by polling every POLL_MS. */
static txm_status pull(txm__broker *b, const qinfo *q, size_t max, int wait_ms, natsMsg **got,
                       size_t *n, txm_error *err)
{
    txm_status st = pull_now(b, q, max, got, n, err);
    if (st != TXM_OK || *n > 0 || wait_ms == 0)
        return st;
    char subject[SUBJECT_MAX];
    snprintf(subject, sizeof subject, "%s%s", SUBJECT_PREFIX, q->topic);
    natsSubscription *wake = NULL;
    natsStatus s = natsConnection_SubscribeSync(&wake, b->nc, subject);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(wake, WAKE_PENDING_MAX, WAKE_PENDING_MAX * 4096);
    if (s != NATS_OK) {
        st = txm__nats_nfail(err, s, 0, "subscribe to", subject);
        sub_retire(b, wake);
        return st;
    }
    int64_t deadline = nats_Now() + wait_ms;
    int64_t left = wait_ms;
    /* The first pull after subscribing closes the race with a publish made
     * between the pull above and the subscription. */
    while ((st = pull_now(b, q, max, got, n, err)) == TXM_OK && *n == 0 &&
           (left = deadline - nats_Now()) > 0) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, wake, left < POLL_MS ? left : POLL_MS) == NATS_OK) {
            /* The stream stores a message a moment after subscribers see it. */
            natsMsg_Destroy(m);
            nats_Sleep(WAKE_DELAY_MS);
        }
    }
    /* Publishes to the topic keep coming: never a plain destroy (see the
     * top of the file). */
    sub_retire(b, wake);
    return st;
}

/* Settles a pulled message that is not returned, logging a failure: the
 * message then stays leased and comes back when the lease ends. */
static void settle_here(txm__broker *b, const qinfo *q, natsMsg *m, uint64_t sseq, const char *id,
                        int count)
{
    txm_error e = {0};
    txm_status st = TXM_OK;
    const char *target = txm__nats_hdr(m, HDR_QUEUE);
    if (target[0] != '\0' && strcmp(target, q->queue) != 0) {
        /* A redrive meant for another queue of the same topic. */
        st = txm__nats_ack_request(b, m, "+ACK", "ack of redrive for another queue", id, &e);
    } else {
        /* Delivered more than max_receive_count times: the last lease ran
         * out without an ack (the receiver crashed or was too slow). */
        char reason[REASON_MAX];
        snprintf(reason, sizeof reason,
                 "received %d times, more than max_receive_count %d (lease expired)", count,
                 q->max_receive_count);
        st = txm__nats_dlq_move(b, q, m, sseq, id, count, reason, &e);
    }
    if (st != TXM_OK)
        txm_logf(b->log, b->log_ctx, TXM_LOG_WARN, "nats: receive on %s: %s", q->queue, e.text);
}

/* ---- CloudEvents binary mode ---- */

/* The CloudEvents NATS binding: a message is in binary mode when it carries
 * "ce-" attribute headers and no Content-Type application/cloudevents. Header
 * names are matched in lower case and in Go's canonical form. */
static bool is_ce_binary(natsMsg *m)
{
    if (txm__nats_hdr(m, "ce-specversion")[0] == '\0' &&
        txm__nats_hdr(m, "Ce-Specversion")[0] == '\0')
        return false;
    return strncasecmp(txm__nats_hdr(m, HDR_CONTENT_TYPE), "application/cloudevents", 23) != 0;
}

void txm__nats_copy_ce_headers(natsMsg *from, natsMsg *to)
{
    const char **keys = NULL;
    int n = 0;
    if (natsMsgHeader_Keys(from, &keys, &n) != NATS_OK)
        return;
    for (int i = 0; i < n; i++)
        if (strncasecmp(keys[i], "ce-", 3) == 0 || strcmp(keys[i], HDR_CONTENT_TYPE) == 0)
            natsMsgHeader_Set(to, keys[i], txm__nats_hdr(from, keys[i]));
    free((void *)keys);
}

/* Sets *doc to the structured document of binary-mode message m (see
 * txm__envelope_from_binary), or to NULL when m is not in binary mode.
 * Owns: *doc (txm_free). */
static txm_status ce_structured(natsMsg *m, char **doc, size_t *len, txm_error *err)
{
    *doc = NULL;
    *len = 0;
    if (!is_ce_binary(m))
        return TXM_OK;
    const char **keys = NULL;
    int n = 0;
    if (natsMsgHeader_Keys(m, &keys, &n) != NATS_OK)
        return txm_errf(err, TXM_NOMEM, "nats: cannot list the headers");
    txm__ce_header *h = txm__calloc((size_t)n, sizeof *h);
    size_t count = 0;
    for (int i = 0; h != NULL && i < n; i++)
        if (strncasecmp(keys[i], "ce-", 3) == 0)
            h[count++] = (txm__ce_header){keys[i], txm__nats_hdr(m, keys[i])};
    txm_status st =
        h == NULL ? txm_errf(err, TXM_NOMEM, "nats: out of memory")
                  : txm__envelope_from_binary(h, count, txm__nats_hdr(m, HDR_CONTENT_TYPE),
                                              natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
                                              doc, len, err);
    txm_free(h);
    free((void *)keys);
    return st;
}

/* Builds the delivery of pulled message m. A binary-mode CloudEvent gets its
 * structured document as the body, so the consumer, dead letters and redrive
 * see one form; one that cannot be converted goes as it is, and the consumer
 * dead-letters it as undecodable. NULL when out of memory. */
static txm_delivery *delivery_of(txm__broker *b, const qinfo *q, natsMsg *m, const char *id,
                                 const char *topic, int count)
{
    char *doc = NULL;
    size_t len = 0;
    txm_error e = {0};
    if (ce_structured(m, &doc, &len, &e) != TXM_OK)
        txm_logf(b->log, b->log_ctx, TXM_LOG_WARN, "nats: binary-mode event on %s: %s", q->queue,
                 e.text);
    if (id[0] == '\0')
        id = txm__nats_hdr(m, "ce-id");
    txm_delivery *d = txm__delivery_new(doc != NULL ? doc : natsMsg_GetData(m),
                                        doc != NULL ? len : (size_t)natsMsg_GetDataLength(m), id,
                                        topic, q->queue, "", count, m, free_msg);
    txm_free(doc);
    return d;
}

/* Turns a pulled message into a delivery (*out), or settles it here and
 * sets *out = NULL (see settle_here). Owns: takes *pm when it returns a
 * delivery and sets it NULL; otherwise the caller still destroys it. */
static txm_status take(txm__broker *b, const qinfo *q, natsMsg **pm, txm_delivery **out,
                       txm_error *err)
{
    natsMsg *m = *pm;
    *out = NULL;
    uint64_t delivered = 0, sseq = 0;
    if (!txm__nats_ack_meta(natsMsg_GetReply(m), &delivered, &sseq))
        return txm_errf(err, TXM_BROKER, "nats: delivery on %s without JetStream metadata",
                        q->queue);
    int count = delivered > INT_MAX ? INT_MAX : (int)delivered;
    const char *id = txm__nats_hdr(m, HDR_TXM_ID);
    if (id[0] == '\0')
        id = txm__nats_hdr(m, HDR_MSG_ID);
    const char *target = txm__nats_hdr(m, HDR_QUEUE);
    bool exhausted = count > q->max_receive_count;
    if ((target[0] != '\0' && strcmp(target, q->queue) != 0) ||
        (exhausted && !b->deliver_exhausted)) {
        settle_here(b, q, m, sseq, id, count);
        return TXM_OK;
    }
    const char *subject = natsMsg_GetSubject(m);
    size_t plen = strlen(SUBJECT_PREFIX);
    const char *topic = strncmp(subject, SUBJECT_PREFIX, plen) == 0 ? subject + plen : subject;
    *out = delivery_of(b, q, m, id, topic, count);
    if (*out == NULL)
        return txm_errf(err, TXM_NOMEM, "nats: out of memory");
    (*out)->exhausted = exhausted;
    *pm = NULL;
    return TXM_OK;
}

/* Messages left undelivered (an error midway) are destroyed unacked: their
 * lease runs out and they are delivered again. */
/* True when the queue was not rescued on connection gen yet. */
static bool rescue_due(txm__broker *b, const char *queue, uint64_t gen)
{
    pthread_mutex_lock(&b->mu);
    nqueue *q = queue_find(b, queue);
    bool due = q != NULL && q->rescued != gen;
    pthread_mutex_unlock(&b->mu);
    return due;
}

static void rescue_done(txm__broker *b, const char *queue, uint64_t gen)
{
    pthread_mutex_lock(&b->mu);
    nqueue *q = queue_find(b, queue);
    if (q != NULL)
        q->rescued = gen;
    pthread_mutex_unlock(&b->mu);
}

/* Hands back the deliveries a crash left stuck. nats-server 2.9.10,
 * restarted after a SIGKILL, restores a consumer's unacknowledged
 * deliveries as "ack pending" but redelivers them only to a pull request
 * that waits, never to a no-wait one like ours: they would stay pending for
 * ever, their messages unprocessed (reproduced with a raw-protocol script:
 * 3 runs in 4 kept all 100 held deliveries; the chaos test's stuck orders).
 * A nak puts a pending delivery on the server's redelivery queue, which
 * no-wait requests do read; the server finds it by the stream sequence in
 * the ack subject and checks the consumer sequence only against its range,
 * so every sequence between the ack floor and the last delivered one is
 * nakked once after each (re)connection. A delivery that a live receiver
 * still holds comes again too: the inbox makes that harmless. False when
 * the server could not be asked (the next receive tries again). */
static bool rescue_pending(txm__broker *b, const qinfo *q)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    if (js_GetConsumerInfo(&ci, b->js, STREAM, q->durable, &b->api, &jerr) != NATS_OK)
        return false;
    uint64_t floor = ci->AckFloor.Stream, top = ci->Delivered.Stream;
    uint64_t dseq = ci->Delivered.Consumer;
    int64_t held = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    if (held <= 0 || top <= floor)
        return true;
    if (top - floor > RESCUE_MAX)
        top = floor + RESCUE_MAX;
    for (uint64_t seq = floor + 1; seq <= top; seq++) {
        char subject[SUBJECT_MAX];
        snprintf(subject, sizeof subject, "%s%s.%s.1.%" PRIu64 ".%" PRIu64 ".0.0", ACK_PREFIX,
                 STREAM, q->durable, seq, dseq);
        if (natsConnection_PublishString(b->nc, subject, "-NAK") != NATS_OK)
            return false;
    }
    if (natsConnection_Flush(b->nc) != NATS_OK)
        return false;
    txm_logf(b->log, b->log_ctx, TXM_LOG_INFO,
             "nats: queue %s: %lld deliveries pending after a (re)connection; sequences %" PRIu64
             "..%" PRIu64 " handed back",
             q->queue, (long long)held, floor + 1, top);
    return true;
}

static txm_status nats_receive(txm__broker *b, const char *queue, size_t max, int wait_ms,
                               txm_delivery ***out, size_t *count, txm_error *err)
{
    qinfo q;
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_queue_lookup(b, queue, &q, err);
    if (st != TXM_OK)
        return st;
    uint64_t gen = atomic_load(&b->connections);
    if (rescue_due(b, queue, gen) && rescue_pending(b, &q))
        rescue_done(b, queue, gen);
    natsMsg **got = txm__calloc(max, sizeof *got);
    txm_delivery **list = txm__calloc(max, sizeof *list);
    size_t ngot = 0, n = 0;
    if (got == NULL || list == NULL)
        st = txm_errf(err, TXM_NOMEM, "nats: out of memory");
    else
        st = pull(b, &q, max, wait_ms, got, &ngot, err);
    for (size_t i = 0; i < ngot; i++) {
        txm_delivery *d = NULL;
        if (st == TXM_OK)
            st = take(b, &q, &got[i], &d, err);
        if (d != NULL)
            list[n++] = d;
        natsMsg_Destroy(got[i]);
    }
    free(got);
    if (st != TXM_OK) {
        txm_delivery_list_free(list, n);
        return st;
    }
    *out = list;
    *count = n;
    return TXM_OK;
}

/* Waits for the server to confirm. JetStream does not report an ack that
 * arrives after the lease ran out, so this cannot return TXM_NOT_FOUND: a
 * late ack of a message meanwhile delivered again acks that delivery too. */
static txm_status nats_ack(txm__broker *b, txm_delivery *d, txm_error *err)
{
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_ack_request(b, d->handle, "+ACK", "ack of", d->message_id, err);
    return st;
}

/* Sends "+ACK" to each delivery's reply subject without waiting for an
 * answer, then makes one round trip (a flush: PING/PONG), whose PONG the
 * server sends only after reading everything sent before it. So on TXM_OK
 * the server has read every ack; JetStream may apply them a moment later
 * (nats-server queues acks for the consumer), so consumer info read at once
 * may still count a few as pending. natsMsg_Ack is not used: given the
 * JetStream context's options (Wait set) it would wait for each reply. As
 * for nats_ack, a late ack is not reported and acks the delivery made
 * meanwhile. A publish or flush that fails leaves its deliveries unsettled
 * (TXM_UNAVAILABLE while the connection is down, TXM_TIMEOUT without the
 * PONG in time), though the server may have applied them, as after a
 * single ack that timed out. err gets the first failure. */
static txm_status nats_ack_batch(txm__broker *b, txm_delivery *const *ds, size_t n,
                                 txm_status *results, txm_error *err)
{
    txm_status first = txm__nats_check_connected(b, err);
    for (size_t i = 0; first != TXM_OK && i < n; i++)
        results[i] = first;
    if (first != TXM_OK)
        return first;
    txm_error later; /* the failures after the first */
    for (size_t i = 0; i < n; i++) {
        txm_error *e = first == TXM_OK ? err : &later;
        const char *reply = natsMsg_GetReply(ds[i]->handle);
        natsStatus s = NATS_OK;
        if (reply == NULL || strncmp(reply, ACK_PREFIX, strlen(ACK_PREFIX)) != 0)
            results[i] = txm_errf(e, TXM_STATE, "nats: ack of %s: not a JetStream delivery",
                                  ds[i]->message_id);
        else if ((s = natsConnection_PublishString(b->nc, reply, "+ACK")) != NATS_OK)
            results[i] = txm__nats_nfail(e, s, 0, "ack of", ds[i]->message_id);
        else
            results[i] = TXM_OK;
        if (first == TXM_OK)
            first = results[i];
    }
    natsStatus s = natsConnection_FlushTimeout(b->nc, b->api.Wait);
    if (s == NATS_OK)
        return first;
    txm_status st = txm__nats_nfail(first == TXM_OK ? err : &later, s, 0, "flush of", "acks");
    for (size_t i = 0; i < n; i++)
        if (results[i] == TXM_OK)
            results[i] = st;
    return first == TXM_OK ? st : first;
}

/* The reason is not kept by JetStream for a redelivery: only a dead letter
 * carries it (Txmsg-Last-Error). */
static txm_status nats_nack(txm__broker *b, txm_delivery *d, int delay_ms, const char *reason,
                            txm_error *err)
{
    qinfo q;
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_queue_lookup(b, d->queue, &q, err);
    if (st != TXM_OK)
        return st;
    if (d->receive_count >= q.max_receive_count)
        return txm__nats_dead_letter(b, d, reason, err);
    char body[64];
    snprintf(body, sizeof body, "-NAK {\"delay\":%lld}", (long long)delay_ms * NS_PER_MS);
    return txm__nats_ack_request(b, d->handle, delay_ms > 0 ? body : "-NAK", "nak of",
                                 d->message_id, err);
}

static bool nats_is_available(txm__broker *b)
{
    return natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* "+WPI" (work in progress) restarts the delivery's AckWait without a
 * redelivery, so the server's delivery count stays as it is. */
static txm_status nats_extend(txm__broker *b, txm_delivery *d, txm_error *err)
{
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_ack_request(b, d->handle, "+WPI", "progress of", d->message_id, err);
    return st;
}

static txm_status nats_queue_depth(txm__broker *b, const char *queue, int64_t *depth,
                                   txm_error *err)
{
    qinfo q;
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_queue_lookup(b, queue, &q, err);
    if (st != TXM_OK)
        return st;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, b->js, STREAM, q.durable, &b->api, &jerr);
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "consumer info of", queue);
    uint64_t pending = ci->NumPending;
    int64_t leased = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    *depth = (pending > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)pending) + leased;
    return TXM_OK;
}

/* Fills q from one consumer of the TXMSG stream and its dead-letter count. */
static txm_status queue_from_consumer(txm__broker *b, const jsConsumerInfo *ci, txm_queue_info *q,
                                      txm_error *err)
{
    qinfo info;
    info_from_consumer(ci, ci->Name != NULL ? ci->Name : "", &info);
    snprintf(q->name, sizeof q->name, "%s", info.queue);
    snprintf(q->topic, sizeof q->topic, "%s", info.topic);
    snprintf(q->dlq, sizeof q->dlq, "%s", info.dlq);
    uint64_t pending = ci->NumPending;
    q->in_flight = ci->NumAckPending;
    q->depth = (pending > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)pending) + q->in_flight;
    return txm__nats_dlq_count(b, info.dlq, &q->dead_letters, err);
}

static int by_queue_name(const void *a, const void *b)
{
    return strcmp(((const txm_queue_info *)a)->name, ((const txm_queue_info *)b)->name);
}

/* Every durable consumer of the stream is a queue (declare_subscription
 * makes one per queue); JetStream pages the list, which js_Consumers walks. */
static txm_status nats_queues(txm__broker *b, txm_queue_info **out, size_t *count, txm_error *err)
{
    txm_status st = txm__nats_check_connected(b, err);
    if (st != TXM_OK)
        return st;
    jsConsumerInfoList *list = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Consumers(&list, b->js, STREAM, &b->api, &jerr);
    if (s == NATS_NOT_FOUND)
        return TXM_OK; /* no consumer yet */
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "consumers of", STREAM);
    size_t n = 0;
    txm_queue_info *q = txm__calloc(list->Count > 0 ? (size_t)list->Count : 1, sizeof *q);
    if (q == NULL)
        st = txm_errf(err, TXM_NOMEM, "nats: out of memory");
    for (int i = 0; st == TXM_OK && i < list->Count && n < TXM_TRANSPORT_QUEUES_MAX; i++)
        if (list->List[i] != NULL && list->List[i]->Name != NULL)
            st = queue_from_consumer(b, list->List[i], &q[n++], err);
    jsConsumerInfoList_Destroy(list);
    if (st != TXM_OK || n == 0) {
        txm_free(q);
        return st;
    }
    qsort(q, n, sizeof *q, by_queue_name);
    *out = q;
    *count = n;
    return TXM_OK;
}

const txm__transport_ops txm__transport_nats = {
    .scheme = "nats",
    .open = nats_open,
    .close = nats_close,
    .declare_topic = nats_declare_topic,
    .declare_subscription = nats_declare_subscription,
    .publish = nats_publish,
    .publish_start = nats_publish_start,
    .publish_wait = nats_publish_wait,
    .receive = nats_receive,
    .ack = nats_ack,
    .ack_batch = nats_ack_batch,
    .nack = nats_nack,
    .extend = nats_extend,
    .is_available = nats_is_available,
    .dead_letter = txm__nats_dead_letter,
    .queue_depth = nats_queue_depth,
    .queues = nats_queues,
    .dlq_list = txm__nats_dlq_list,
    .dlq_redrive = txm__nats_dlq_redrive,
    .dlq_purge = txm__nats_dlq_purge,
    .dlq_delete = txm__nats_dlq_delete,
    .blob_put = txm__nats_blob_put,
    .blob_get = txm__nats_blob_get,
};
