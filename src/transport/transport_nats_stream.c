/* The NATS transport's streams: TXMSG (messages), TXMSG_DLQ (dead letters)
 * and TXMSG_BLOBS (large payloads), created with the replicas the URL asks
 * for, and an existing one checked against what txmsg relies on. A stream
 * that differs is reported with the way to fix it rather than used: a
 * stream with one replica where three were asked for would lose
 * acknowledged messages with its node, with nothing to show for it.
 * Settings an operator may tune (MaxAge, the duplicate window, per-subject
 * limits) are left as they are. */
#include <stdio.h>
#include <string.h>

#include "transport/transport_nats_int.h"

typedef enum { STREAM_MESSAGES, STREAM_DEAD_LETTERS, STREAM_PAYLOADS } stream_kind;

/* The configuration txmsg creates a stream with. subj holds its subject. */
static void stream_config(const txm__broker *b, const char *name, const char **subj,
                          stream_kind kind, jsStreamConfig *cfg)
{
    jsStreamConfig_Init(cfg);
    cfg->Name = name;
    cfg->Subjects = subj;
    cfg->SubjectsLen = 1;
    cfg->Storage = js_FileStorage;
    cfg->Replicas = b->replicas > 0 ? b->replicas : 1;
    /* Limits, not interest retention, for messages too: nats-server 2.9.10
     * restarted (after SIGKILL, and after a clean SIGTERM as well) purged
     * interest-stream messages that a queue had not received yet (the chaos
     * test: an empty stream, consumers with nothing pending, orders never
     * answered). Messages now stay MESSAGE_MAX_AGE_S, like SQS's longest
     * retention, whatever the queues did with them. */
    cfg->Retention = js_LimitsPolicy;
    cfg->AllowDirect = kind != STREAM_MESSAGES;
    if (kind == STREAM_MESSAGES)
        cfg->MaxAge = MESSAGE_MAX_AGE_S * 1000 * NS_PER_MS;
    if (kind == STREAM_PAYLOADS) {
        cfg->MaxMsgsPerSubject = 1;
        cfg->MaxAge = BLOB_MAX_AGE_S * 1000 * NS_PER_MS;
    } else {
        cfg->Duplicates = (int64_t)DUPLICATE_WINDOW_S * 1000 * NS_PER_MS;
    }
}

static bool has_subject(const jsStreamConfig *c, const char *subject)
{
    for (int i = 0; c->Subjects != NULL && i < c->SubjectsLen; i++)
        if (c->Subjects[i] != NULL && strcmp(c->Subjects[i], subject) == 0)
            return true;
    return false;
}

static txm_status needs_cluster(const char *name, int replicas, txm_error *err)
{
    return txm_errf(err, TXM_INVALID,
                    "nats: stream %s: replicas=%d needs a JetStream cluster, and this server runs "
                    "alone: use replicas=1 or list a cluster's servers",
                    name, replicas);
}

/* TXM_CONFLICT when the existing stream (si) lacks what txmsg relies on.
 * Storage and retention cannot be changed on a stream: it has to go. */
static txm_status compare(const txm__broker *b, const jsStreamInfo *si, const jsStreamConfig *want,
                          txm_error *err)
{
    const jsStreamConfig *have = si->Config;
    const char *n = want->Name;
    if (!has_subject(have, want->Subjects[0]))
        return txm_errf(err, TXM_CONFLICT,
                        "nats: stream %s exists without subjects %s: add them (`nats stream edit "
                        "%s --subjects ...`) or delete the stream (`nats stream rm %s`)",
                        n, want->Subjects[0], n, n);
    if (have->Storage != js_FileStorage)
        return txm_errf(err, TXM_CONFLICT,
                        "nats: stream %s has memory storage, txmsg needs file storage (a stopped "
                        "server keeps nothing): delete the stream (`nats stream rm %s`) for txmsg "
                        "to create it",
                        n, n);
    if (have->Retention != js_LimitsPolicy)
        return txm_errf(err, TXM_CONFLICT,
                        "nats: stream %s has %s retention, txmsg needs limits (nats-server 2.9 "
                        "dropped unread messages of such streams at restarts): delete the stream "
                        "(`nats stream rm %s`) for txmsg to create it",
                        n, have->Retention == js_InterestPolicy ? "interest" : "work-queue", n);
    int replicas = have->Replicas > 0 ? have->Replicas : 1;
    bool clustered = si->Cluster != NULL && si->Cluster->Name != NULL;
    if (b->replicas > 1 && !clustered) /* a lone server takes an edit, and ignores it */
        return needs_cluster(n, b->replicas, err);
    if (b->replicas > 0 && replicas != b->replicas)
        return txm_errf(err, TXM_CONFLICT,
                        "nats: stream %s has %d replica(s), the URL asks for replicas=%d: run "
                        "`nats stream edit %s --replicas %d`, or delete the stream (`nats stream "
                        "rm %s`, with its messages)",
                        n, replicas, b->replicas, n, b->replicas, n);
    if (want->AllowDirect && !have->AllowDirect)
        return txm_errf(err, TXM_CONFLICT,
                        "nats: stream %s does not allow direct get, which txmsg reads it with: "
                        "run `nats stream edit %s --allow-direct`",
                        n, n);
    return TXM_OK;
}

/* A stream with one replica on a cluster is lost with its node: said once
 * per open, when the URL did not ask for replicas. */
static void warn_single_replica(const txm__broker *b, const jsStreamInfo *si)
{
    if (b->replicas > 0 || si->Config == NULL || si->Config->Replicas > 1 || si->Cluster == NULL ||
        si->Cluster->Name == NULL)
        return;
    txm_logf(b->log, b->log_ctx, TXM_LOG_WARN,
             "nats: stream %s has 1 replica on cluster %s: its messages are on one node only; "
             "add ?replicas=3 to the broker URL",
             si->Config->Name, si->Cluster->Name);
}

/* Explains a failed create the operator has to act on; others are libnats'
 * text. */
static txm_status create_failed(const txm__broker *b, const char *name, natsStatus s,
                                jsErrCode jerr, txm_error *err)
{
    int r = b->replicas > 0 ? b->replicas : 1;
    if (jerr == JSStreamReplicasNotSupportedErr)
        return needs_cluster(name, r, err);
    /* No peers: too few servers up now (an outage that ends when they are
     * back, so TXM_UNAVAILABLE), or in the cluster at all (the text says). */
    if (jerr == JSInsufficientResourcesErr || jerr == JSClusterNoPeersErr)
        return txm_errf(err, jerr == JSClusterNoPeersErr ? TXM_UNAVAILABLE : TXM_INVALID,
                        "nats: create stream %s: replicas=%d needs as many JetStream servers up "
                        "in the cluster (%s)",
                        name, r, nats_GetLastError(NULL));
    return txm__nats_nfail(err, s, jerr, "create stream", name);
}

/* Reads the stream, or creates it when it does not exist. Reading first
 * spares the cluster's metadata leader a create request per open (it
 * answered one slowly enough to time out while busy). Safe when several
 * processes race: a create of the same configuration again succeeds, and
 * "name already in use" has the stream read again. */
static txm_status ensure_stream(txm__broker *b, const char *name, const char *subjects,
                                stream_kind kind, txm_error *err)
{
    const char *subj[1] = {subjects};
    jsStreamConfig cfg;
    stream_config(b, name, subj, kind, &cfg);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, b->js, name, &b->api, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        jerr = 0;
        s = js_AddStream(&si, b->js, &cfg, &b->api, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr) {
            jerr = 0;
            s = js_GetStreamInfo(&si, b->js, name, &b->api, &jerr);
        } else if (s != NATS_OK) {
            return create_failed(b, name, s, jerr, err);
        }
    }
    if (s != NATS_OK)
        return txm__nats_nfail(err, s, jerr, "stream info of", name);
    txm_status st = si->Config != NULL
                        ? compare(b, si, &cfg, err)
                        : txm_errf(err, TXM_BROKER, "nats: stream %s has no configuration", name);
    if (st == TXM_OK && kind == STREAM_MESSAGES)
        warn_single_replica(b, si);
    jsStreamInfo_Destroy(si);
    return st;
}

txm_status txm__nats_ensure_streams(txm__broker *b, txm_error *err)
{
    txm_status st = ensure_stream(b, STREAM, STREAM_SUBJECTS, STREAM_MESSAGES, err);
    if (st == TXM_OK)
        st = ensure_stream(b, DLQ_STREAM, DLQ_STREAM_SUBJECTS, STREAM_DEAD_LETTERS, err);
    if (st == TXM_OK)
        st = ensure_stream(b, BLOB_STREAM, BLOB_STREAM_SUBJECTS, STREAM_PAYLOADS, err);
    if (st == TXM_OK)
        atomic_store(&b->streams_ready, true);
    return st;
}
