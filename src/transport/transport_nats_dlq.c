/* NATS JetStream transport, dead letters: moving a message to its queue's
 * dead-letter queue (stream TXMSG_DLQ, subject txmsg-dlq.<dlq>, with the
 * headers described in transport_nats.c), and listing, redriving and purging
 * a dead-letter queue. Thread safety as in transport_nats.c. */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "core/alloc.h"
#include "transport/transport_nats_int.h"

/* ---- dead letters ---- */

/* Stores a copy of m (a delivery of q) in q's dead-letter queue, then acks
 * m. sseq is m's stream sequence: it names the dead letter for de-dupe. */
txm_status txm__nats_dlq_move(txm__broker *b, const qinfo *q, natsMsg *m, uint64_t sseq,
                              const char *msg_id, int count, const char *reason, txm_error *err)
{
    char subject[SUBJECT_MAX], id[MSGID_MAX], cnt[24], text[REASON_MAX];
    snprintf(subject, sizeof subject, "%s%s", DLQ_SUBJECT_PREFIX, q->dlq);
    snprintf(id, sizeof id, "dlq:%s:%" PRIu64, q->queue, sseq);
    snprintf(cnt, sizeof cnt, "%d", count);
    txm__nats_header_text(reason, text);
    natsMsg *dm = NULL;
    natsStatus s = natsMsg_Create(&dm, subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
    if (s == NATS_OK)
        txm__nats_copy_ce_headers(m, dm);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(dm, HDR_SUBJECT, natsMsg_GetSubject(m));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(dm, HDR_TXM_ID, msg_id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(dm, HDR_QUEUE, q->queue);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(dm, HDR_COUNT, cnt);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(dm, HDR_ERROR, text);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(dm, HDR_MSG_ID, id);
    txm_status st = txm__nats_publish_sync(b, s, dm, "dead-letter to", subject, err);
    if (st != TXM_OK)
        return st;
    return txm__nats_ack_request(b, m, "+ACK", "ack of dead-lettered", msg_id, err);
}

txm_status txm__nats_dead_letter(txm__broker *b, txm_delivery *d, const char *reason,
                                 txm_error *err)
{
    qinfo q;
    uint64_t delivered = 0, sseq = 0;
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_queue_lookup(b, d->queue, &q, err);
    if (st == TXM_OK && !txm__nats_ack_meta(natsMsg_GetReply(d->handle), &delivered, &sseq))
        st = txm_errf(err, TXM_STATE, "nats: dead_letter %s: not a JetStream delivery",
                      d->message_id);
    if (st == TXM_OK)
        st = txm__nats_dlq_move(b, &q, d->handle, sseq, d->message_id, d->receive_count, reason,
                                err);
    return st;
}

/* ---- dead-letter queue: list, redrive, purge ---- */

/* The dead-letter subject of queue: its declared dead-letter queue, or the
 * default name when the queue is unknown (its consumer may be gone). */
static txm_status dlq_subject(txm__broker *b, const char *queue, qinfo *q, char out[SUBJECT_MAX],
                              txm_error *err)
{
    txm_status st = txm__nats_check_connected(b, err);
    if (st == TXM_OK)
        st = txm__nats_queue_lookup(b, queue, q, err);
    if (st == TXM_NOT_FOUND) {
        memset(q, 0, sizeof *q);
        snprintf(q->queue, sizeof q->queue, "%s", queue);
        txm__transport_dlq_name(queue, NULL, q->dlq);
        st = TXM_OK;
    }
    snprintf(out, SUBJECT_MAX, "%s%s", DLQ_SUBJECT_PREFIX, q->dlq);
    return st;
}

static uint64_t msg_seq(natsMsg *m)
{
    uint64_t seq = natsMsg_GetSequence(m);
    if (seq == 0) {
        const char *v = txm__nats_hdr(m, HDR_SEQUENCE);
        seq = strtoull(v, NULL, 10);
    }
    return seq;
}

/* Reads the first dead letter on subject at sequence *seq or later (direct
 * get: nothing is consumed) and sets *seq to its sequence. TXM_NOT_FOUND
 * when there is none. */
static txm_status dlq_next(txm__broker *b, const char *subject, uint64_t *seq, natsMsg **out,
                           txm_error *err)
{
    jsDirectGetMsgOptions o;
    jsDirectGetMsgOptions_Init(&o);
    o.Sequence = *seq;
    o.NextBySubject = subject;
    natsStatus s = js_DirectGetMsg(out, b->js, DLQ_STREAM, &b->api, &o);
    if (s == NATS_NOT_FOUND)
        return TXM_NOT_FOUND;
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, 0, "read dead letters of", subject);
    *seq = msg_seq(*out);
    return *seq > 0 ? TXM_OK : txm_errf(err, TXM_BROKER, "nats: dead letter without sequence");
}

static txm_delivery *dead_letter_delivery(natsMsg *m, const char *queue)
{
    const char *subject = txm__nats_hdr(m, HDR_SUBJECT);
    size_t plen = strlen(SUBJECT_PREFIX);
    const char *topic = strncmp(subject, SUBJECT_PREFIX, plen) == 0 ? subject + plen : subject;
    const char *source = txm__nats_hdr(m, HDR_QUEUE);
    txm_delivery *d = txm__delivery_new(
        natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), txm__nats_hdr(m, HDR_TXM_ID), topic,
        source[0] != '\0' ? source : queue, txm__nats_hdr(m, HDR_ERROR),
        txm__nats_parse_count(txm__nats_hdr(m, HDR_COUNT)), NULL, NULL);
    /* The dead letter's time in the DLQ stream (nanoseconds): when it was
     * dead-lettered. */
    if (d != NULL)
        d->dead_lettered_at_us = natsMsg_GetTime(m) / 1000;
    return d;
}

txm_status txm__nats_dlq_list(txm__broker *b, const char *queue, size_t limit, txm_delivery ***out,
                              size_t *count, txm_error *err)
{
    qinfo q;
    char subject[SUBJECT_MAX];
    txm_status st = dlq_subject(b, queue, &q, subject, err);
    if (st != TXM_OK)
        return st;
    size_t cap = limit < 64 ? limit : 64, n = 0;
    txm_delivery **list = txm__calloc(cap, sizeof *list);
    if (list == NULL)
        return txm_errf(err, TXM_NOMEM, "nats: out of memory");
    for (uint64_t seq = 1; st == TXM_OK && n < limit; seq++) {
        natsMsg *m = NULL;
        if ((st = dlq_next(b, subject, &seq, &m, err)) != TXM_OK)
            break;
        if (n == cap) {
            size_t ncap = cap * 2 < limit ? cap * 2 : limit;
            txm_delivery **grown = txm__realloc(list, ncap * sizeof *list);
            if (grown == NULL) {
                st = txm_errf(err, TXM_NOMEM, "nats: out of memory");
            } else {
                list = grown;
                cap = ncap;
            }
        }
        if (st == TXM_OK && (list[n] = dead_letter_delivery(m, queue)) == NULL)
            st = txm_errf(err, TXM_NOMEM, "nats: out of memory");
        else if (st == TXM_OK)
            n++;
        natsMsg_Destroy(m);
    }
    if (st != TXM_OK && st != TXM_NOT_FOUND) {
        txm_delivery_list_free(list, n);
        return st;
    }
    *out = list;
    *count = n;
    return TXM_OK;
}

/* Publishes dead letter m (at DLQ sequence seq) again on its original
 * subject for its source queue, with a fresh delivery count. */
static txm_status republish(txm__broker *b, natsMsg *m, uint64_t seq, const char *queue,
                            txm_error *err)
{
    const char *subject = txm__nats_hdr(m, HDR_SUBJECT);
    const char *msg_id = txm__nats_hdr(m, HDR_TXM_ID);
    const char *source = txm__nats_hdr(m, HDR_QUEUE);
    if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0)
        return txm_errf(err, TXM_MALFORMED, "nats: dead letter %" PRIu64 " has no subject", seq);
    char id[MSGID_MAX];
    snprintf(id, sizeof id, "%s:redrive:%" PRIu64, msg_id, seq);
    natsMsg *rm = NULL;
    natsStatus s = natsMsg_Create(&rm, subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
    if (s == NATS_OK)
        txm__nats_copy_ce_headers(m, rm);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(rm, HDR_MSG_ID, id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(rm, HDR_TXM_ID, msg_id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(rm, HDR_QUEUE, source[0] != '\0' ? source : queue);
    txm_status st = txm__nats_publish_sync(b, s, rm, "redrive to", subject, err);
    if (st != TXM_OK)
        return st;
    jsErrCode jerr = 0;
    s = js_DeleteMsg(b->js, DLQ_STREAM, seq, &b->api, &jerr);
    return s == NATS_OK ? TXM_OK : txm__nats_nfail(err, s, jerr, "delete dead letter of", queue);
}

static txm_status dlq_last_seq(txm__broker *b, const char *filter, uint64_t *last, uint64_t *msgs,
                               txm_error *err)
{
    jsOptions o = b->api;
    o.Stream.Info.SubjectsFilter = filter;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, b->js, DLQ_STREAM, &o, &jerr);
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "stream info of", DLQ_STREAM);
    *last = si->State.LastSeq;
    *msgs = 0;
    const jsStreamStateSubjects *subs = si->State.Subjects;
    for (int i = 0; subs != NULL && i < subs->Count; i++)
        if (filter != NULL && strcmp(subs->List[i].Subject, filter) == 0)
            *msgs += subs->List[i].Msgs;
    jsStreamInfo_Destroy(si);
    return TXM_OK;
}

txm_status txm__nats_dlq_count(txm__broker *b, const char *dlq, int64_t *count, txm_error *err)
{
    char subject[SUBJECT_MAX];
    snprintf(subject, sizeof subject, "%s%s", DLQ_SUBJECT_PREFIX, dlq);
    uint64_t last = 0, msgs = 0;
    txm_status st = dlq_last_seq(b, subject, &last, &msgs, err);
    *count = msgs > INT64_MAX ? INT64_MAX : (int64_t)msgs;
    return st;
}

/* What to do with one dead letter of queue (sequence seq in DLQ_STREAM). */
typedef txm_status (*dlq_action)(txm__broker *b, natsMsg *m, uint64_t seq, const char *queue,
                                 txm_error *err);

static txm_status delete_one(txm__broker *b, natsMsg *m, uint64_t seq, const char *queue,
                             txm_error *err)
{
    (void)m;
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteMsg(b->js, DLQ_STREAM, seq, &b->api, &jerr);
    return s == NATS_OK ? TXM_OK : txm__nats_nfail(err, s, jerr, "delete dead letter of", queue);
}

/* Runs act on each dead letter of queue present when it starts (one that
 * fails again meanwhile is left for the next call) whose id is message_id,
 * or on all when message_id is NULL; *done counts those it did. */
static txm_status dlq_each(txm__broker *b, const char *queue, const char *message_id,
                           dlq_action act, size_t *done, txm_error *err)
{
    qinfo q;
    char subject[SUBJECT_MAX];
    uint64_t last = 0, unused = 0;
    txm_status st = dlq_subject(b, queue, &q, subject, err);
    if (st == TXM_OK)
        st = dlq_last_seq(b, NULL, &last, &unused, err);
    size_t n = 0;
    for (uint64_t seq = 1; st == TXM_OK && seq <= last; seq++) {
        natsMsg *m = NULL;
        if ((st = dlq_next(b, subject, &seq, &m, err)) != TXM_OK)
            break;
        if (seq <= last &&
            (message_id == NULL || strcmp(txm__nats_hdr(m, HDR_TXM_ID), message_id) == 0)) {
            st = act(b, m, seq, queue, err);
            n += st == TXM_OK;
        }
        natsMsg_Destroy(m);
    }
    if (done != NULL)
        *done = n;
    return st == TXM_NOT_FOUND ? TXM_OK : st;
}

txm_status txm__nats_dlq_redrive(txm__broker *b, const char *queue, const char *message_id,
                                 size_t *moved, txm_error *err)
{
    return dlq_each(b, queue, message_id, republish, moved, err);
}

txm_status txm__nats_dlq_delete(txm__broker *b, const char *queue, const char *message_id,
                                size_t *deleted, txm_error *err)
{
    if (message_id == NULL)
        return txm_errf(err, TXM_INVALID, "nats: dlq_delete: NULL message id");
    return dlq_each(b, queue, message_id, delete_one, deleted, err);
}

/* Purges the queue's dead letters up to the last one present at the start;
 * *purged is their count at that moment. */
txm_status txm__nats_dlq_purge(txm__broker *b, const char *queue, size_t *purged, txm_error *err)
{
    qinfo q;
    char subject[SUBJECT_MAX];
    uint64_t last = 0, msgs = 0;
    txm_status st = dlq_subject(b, queue, &q, subject, err);
    if (st == TXM_OK)
        st = dlq_last_seq(b, subject, &last, &msgs, err);
    if (st != TXM_OK || msgs == 0)
        return st;
    jsOptions o = b->api;
    o.Stream.Purge.Subject = subject;
    o.Stream.Purge.Sequence = last + 1;
    jsErrCode jerr = 0;
    natsStatus s = js_PurgeStream(b->js, DLQ_STREAM, &o, &jerr);
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "purge", subject);
    if (purged != NULL)
        *purged = msgs > SIZE_MAX ? SIZE_MAX : (size_t)msgs;
    return TXM_OK;
}
