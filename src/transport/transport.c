/* Transport dispatch: argument checks shared by both variants, then the
 * variant chosen by the URL scheme does the work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "transport/transport_int.h"

void txm_transport_options_init(txm_transport_options *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 5000;
    o->publish_timeout_ms = 10000;
    o->max_message_len = 256u << 10; /* as SQS */
}

void txm_subscription_options_init(txm_subscription_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_receive_count = 3;
    o->visibility_timeout_ms = 30000;
}

bool txm__transport_name_ok(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strlen(name);
    if (n == 0 || n > TXM_TOPIC_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

void txm__transport_dlq_name(const char *queue, const txm_subscription_options *o,
                             char out[TXM__DLQ_NAME_MAX])
{
    const char *given = o != NULL ? o->dlq : NULL;
    if (given != NULL && given[0] != '\0')
        snprintf(out, TXM__DLQ_NAME_MAX, "%s", given);
    else
        snprintf(out, TXM__DLQ_NAME_MAX, "%s--dlq", queue);
}

txm_delivery *txm__delivery_new(const char *body, size_t len, const char *message_id,
                                const char *topic, const char *queue, const char *last_error,
                                int receive_count, void *handle, void (*free_handle)(void *))
{
    txm_delivery *d = txm__calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->body = txm__strndup(body != NULL ? body : "", body != NULL ? len : 0);
    d->len = body != NULL ? len : 0;
    d->message_id = txm__strdup(message_id != NULL ? message_id : "");
    d->topic = txm__strdup(topic != NULL ? topic : "");
    d->queue = txm__strdup(queue != NULL ? queue : "");
    d->last_error = txm__strdup(last_error != NULL ? last_error : "");
    d->receive_count = receive_count;
    d->handle = handle;
    d->free_handle = free_handle;
    if (d->body == NULL || d->message_id == NULL || d->topic == NULL || d->queue == NULL ||
        d->last_error == NULL) {
        d->handle = NULL; /* the caller still owns the handle on failure */
        txm_delivery_free(d);
        return NULL;
    }
    return d;
}

void txm_delivery_free(txm_delivery *d)
{
    if (d == NULL)
        return;
    if (d->handle != NULL && d->free_handle != NULL)
        d->free_handle(d->handle);
    free(d->body);
    free(d->message_id);
    free(d->topic);
    free(d->queue);
    free(d->last_error);
    free(d);
}

void txm_delivery_list_free(txm_delivery **list, size_t count)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        txm_delivery_free(list[i]);
    free(list);
}

const char *txm_delivery_body(const txm_delivery *d, size_t *len)
{
    if (len != NULL)
        *len = d == NULL ? 0 : d->len;
    return d == NULL ? NULL : d->body;
}

const char *txm_delivery_message_id(const txm_delivery *d)
{
    return d == NULL ? "" : d->message_id;
}

const char *txm_delivery_topic(const txm_delivery *d)
{
    return d == NULL ? "" : d->topic;
}

const char *txm_delivery_queue(const txm_delivery *d)
{
    return d == NULL ? "" : d->queue;
}

int txm_delivery_receive_count(const txm_delivery *d)
{
    return d == NULL ? 0 : d->receive_count;
}

bool txm_delivery_is_exhausted(const txm_delivery *d)
{
    return d != NULL && d->exhausted;
}

const char *txm_delivery_last_error(const txm_delivery *d)
{
    return d == NULL ? "" : d->last_error;
}

int64_t txm_delivery_dead_lettered_at_us(const txm_delivery *d)
{
    return d == NULL ? 0 : d->dead_lettered_at_us;
}

static const txm__transport_ops *ops_for(const char *url)
{
    if (strncmp(url, "embedded:", 9) == 0)
        return &txm__transport_embedded;
    if (strncmp(url, "nats://", 7) == 0)
        return &txm__transport_nats;
    return NULL;
}

txm_status txm_transport_open(const char *url, const txm_transport_options *opts,
                              txm_transport **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (url == NULL || out == NULL)
        return txm_errf(err, TXM_INVALID, "transport_open: NULL argument");
    const txm__transport_ops *ops = ops_for(url);
    if (ops == NULL)
        return txm_errf(err, TXM_INVALID,
                        "transport_open: unknown broker URL scheme (want embedded:PATH or "
                        "nats://host:port)");
    txm_transport *t = txm__calloc(1, sizeof *t);
    if (t == NULL)
        return txm_errf(err, TXM_NOMEM, "transport_open: out of memory");
    if (opts != NULL)
        t->opts = *opts;
    else
        txm_transport_options_init(&t->opts);
    t->ops = ops;
    txm_status st = ops->open(url, &t->opts, &t->broker, err);
    if (st != TXM_OK) {
        free(t);
        return st;
    }
    *out = t;
    return TXM_OK;
}

void txm_transport_close(txm_transport *t)
{
    if (t == NULL)
        return;
    t->ops->close(t->broker);
    free(t);
}

txm_status txm_transport_declare_topic(txm_transport *t, const char *topic, txm_error *err)
{
    if (t == NULL || !txm__transport_name_ok(topic))
        return txm_errf(err, TXM_INVALID, "declare_topic: bad topic name");
    return t->ops->declare_topic(t->broker, topic, err);
}

txm_status txm_transport_declare_subscription(txm_transport *t, const char *topic,
                                              const char *queue,
                                              const txm_subscription_options *opts, txm_error *err)
{
    txm_subscription_options o;
    if (opts != NULL)
        o = *opts;
    else
        txm_subscription_options_init(&o);
    if (t == NULL || !txm__transport_name_ok(topic) || !txm__transport_name_ok(queue))
        return txm_errf(err, TXM_INVALID, "declare_subscription: bad topic or queue name");
    if (o.dlq != NULL && !txm__transport_name_ok(o.dlq))
        return txm_errf(err, TXM_INVALID, "declare_subscription: bad dead-letter queue name");
    if (o.max_receive_count < 1 || o.visibility_timeout_ms < 1)
        return txm_errf(err, TXM_INVALID,
                        "declare_subscription: max_receive_count and visibility timeout must "
                        "be positive");
    return t->ops->declare_subscription(t->broker, topic, queue, &o, err);
}

/* Replaces every message over the limit by its claim document. Owns:
 * *out (and the claims it points to) when it differs from msgs. */
static txm_status store_large(txm_transport *t, const txm_outgoing *msgs, size_t n,
                              txm_outgoing **out, char ***claims, txm_error *err)
{
    *out = NULL;
    *claims = NULL;
    size_t large = 0;
    for (size_t i = 0; i < n; i++)
        large += msgs[i].len > t->opts.max_message_len;
    if (large == 0)
        return TXM_OK;
    txm_outgoing *copy = txm__calloc(n, sizeof *copy);
    char **texts = txm__calloc(n, sizeof *texts);
    txm_status st =
        copy == NULL || texts == NULL ? txm_errf(err, TXM_NOMEM, "out of memory") : TXM_OK;
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        copy[i] = msgs[i];
        if (msgs[i].len > t->opts.max_message_len)
            st = txm__claim_store(t, &msgs[i], &texts[i], &copy[i].len, err);
        if (texts[i] != NULL)
            copy[i].body = texts[i];
    }
    *out = copy;
    *claims = texts;
    return st;
}

/* Checks a batch before it is published. */
static txm_status check_outgoing(const txm_outgoing *msgs, size_t n, txm_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!txm__transport_name_ok(msgs[i].topic) || msgs[i].message_id == NULL ||
            msgs[i].message_id[0] == '\0' || strlen(msgs[i].message_id) > TXM_ID_MAX ||
            (msgs[i].len > 0 && msgs[i].body == NULL))
            return txm_errf(err, TXM_INVALID, "publish: message %zu has a bad topic or id", i);
        if (msgs[i].len > TXM_ENVELOPE_MAX)
            return txm_errf(err, TXM_TOO_BIG, "publish: message %zu is %zu bytes, limit %u", i,
                            msgs[i].len, TXM_ENVELOPE_MAX);
    }
    return TXM_OK;
}

/* A batch between txm_transport_publish_start and _wait. */
struct txm_publish {
    size_t n;
    void *handle;       /* the broker's, while its answers are awaited; NULL when done */
    txm_outgoing *sent; /* a copy with claims in place of large bodies; NULL if none */
    char **claims;      /* owned by sent; NULL when none */
    txm_status st;      /* when done: the outcome, with err */
    txm_status *results;
    txm_error err;
};

static void publish_free(txm_publish *p)
{
    for (size_t i = 0; p->claims != NULL && i < p->n; i++)
        free(p->claims[i]);
    free(p->claims);
    free(p->sent);
    free(p->results);
    free(p);
}

txm_status txm_transport_publish_start(txm_transport *t, const txm_outgoing *msgs, size_t n,
                                       txm_publish **out, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (t == NULL || out == NULL || (n > 0 && msgs == NULL))
        return txm_errf(err, TXM_INVALID, "publish: NULL argument");
    txm_status st = check_outgoing(msgs, n, err);
    if (st != TXM_OK || n == 0)
        return st;
    txm_publish *p = txm__calloc(1, sizeof *p);
    if (p == NULL || (p->results = txm__calloc(n, sizeof *p->results)) == NULL) {
        free(p);
        return txm_errf(err, TXM_NOMEM, "publish: out of memory");
    }
    p->n = n;
    p->st = store_large(t, msgs, n, &p->sent, &p->claims, &p->err);
    const txm_outgoing *send = p->sent != NULL ? p->sent : msgs;
    if (p->st == TXM_OK && t->ops->publish_start != NULL) {
        p->st = t->ops->publish_start(t->broker, send, n, &p->handle, &p->err);
    } else if (p->st == TXM_OK) {
        p->st = t->ops->publish(t->broker, send, n, p->results, &p->err);
    }
    for (size_t i = 0; p->st != TXM_OK && p->handle == NULL && i < n; i++)
        p->results[i] = p->st;
    *out = p;
    return TXM_OK;
}

txm_status txm_transport_publish_wait(txm_transport *t, txm_publish *p, txm_status *results,
                                      txm_error *err)
{
    if (t == NULL || p == NULL)
        return txm_errf(err, TXM_INVALID, "publish_wait: NULL argument");
    if (p->handle != NULL)
        p->st = t->ops->publish_wait(t->broker, p->handle, p->sent, p->results, &p->err);
    txm_status st = p->st;
    if (st != TXM_OK && err != NULL)
        *err = p->err;
    for (size_t i = 0; results != NULL && i < p->n; i++)
        results[i] = p->results[i];
    publish_free(p);
    return st;
}

txm_status txm_transport_publish(txm_transport *t, const txm_outgoing *msgs, size_t n,
                                 txm_status *results, txm_error *err)
{
    if (t == NULL || (n > 0 && msgs == NULL))
        return txm_errf(err, TXM_INVALID, "publish: NULL argument");
    txm_status st = check_outgoing(msgs, n, err);
    if (st != TXM_OK || n == 0)
        return st;
    txm_outgoing *copy = NULL;
    char **claims = NULL;
    st = store_large(t, msgs, n, &copy, &claims, err);
    if (st == TXM_OK)
        st = t->ops->publish(t->broker, copy != NULL ? copy : msgs, n, results, err);
    for (size_t i = 0; claims != NULL && i < n; i++)
        free(claims[i]);
    free(claims);
    free(copy);
    return st;
}

txm_status txm_transport_publish_msgs(txm_transport *t, const txm_msg *const *msgs, size_t n,
                                      txm_status *results, txm_error *err)
{
    if (t == NULL || (n > 0 && msgs == NULL))
        return txm_errf(err, TXM_INVALID, "publish: NULL argument");
    txm_outgoing *out = txm__calloc(n, sizeof *out);
    char **bodies = txm__calloc(n, sizeof *bodies);
    txm_status st =
        out == NULL || bodies == NULL ? txm_errf(err, TXM_NOMEM, "out of memory") : TXM_OK;
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        size_t len = 0;
        st = txm_msg_encode(msgs[i], &bodies[i], &len, err);
        out[i] = (txm_outgoing){txm_msg_topic(msgs[i]), txm_msg_id(msgs[i]), bodies[i], len};
    }
    if (st == TXM_OK)
        st = txm_transport_publish(t, out, n, results, err);
    for (size_t i = 0; bodies != NULL && i < n; i++)
        free(bodies[i]);
    free(bodies);
    free(out);
    return st;
}

txm_status txm_transport_receive(txm_transport *t, const char *queue, size_t max, int wait_ms,
                                 txm_delivery ***out, size_t *count, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (t == NULL || out == NULL || count == NULL || !txm__transport_name_ok(queue) || max == 0 ||
        max > 10000 || wait_ms < 0)
        return txm_errf(err, TXM_INVALID, "receive: bad argument");
    txm_status st = t->ops->receive(t->broker, queue, max, wait_ms, out, count, err);
    for (size_t i = 0; st == TXM_OK && i < *count; i++)
        txm__claim_resolve(t, (*out)[i]);
    return st;
}

static txm_status check_settle(txm_transport *t, txm_delivery *d, txm_error *err)
{
    if (t == NULL || d == NULL)
        return txm_errf(err, TXM_INVALID, "ack/nack: NULL argument");
    if (d->handle == NULL || d->settled)
        return txm_errf(err, TXM_STATE, "ack/nack: delivery already settled or not ackable");
    return TXM_OK;
}

txm_status txm_transport_ack(txm_transport *t, txm_delivery *d, txm_error *err)
{
    txm_status st = check_settle(t, d, err);
    if (st == TXM_OK && (st = t->ops->ack(t->broker, d, err)) == TXM_OK)
        d->settled = true;
    return st;
}

txm_status txm_transport_ack_batch(txm_transport *t, txm_delivery *const *ds, size_t n,
                                   txm_status *results, txm_error *err)
{
    if (t == NULL || (ds == NULL && n > 0))
        return txm_errf(err, TXM_INVALID, "ack_batch: NULL argument");
    txm_status *res = results;
    if (res == NULL && n > 0 && (res = txm__calloc(n, sizeof *res)) == NULL)
        return txm_errf(err, TXM_NOMEM, "ack_batch: out of memory");
    /* Deliveries that cannot be acked are reported and left out. */
    txm_delivery **ok = n > 0 ? txm__calloc(n, sizeof *ok) : NULL;
    size_t *at = n > 0 ? txm__calloc(n, sizeof *at) : NULL;
    txm_status first = TXM_OK;
    size_t m = 0;
    if (n > 0 && (ok == NULL || at == NULL))
        first = txm_errf(err, TXM_NOMEM, "ack_batch: out of memory");
    for (size_t i = 0; first != TXM_NOMEM && i < n; i++) {
        txm_error e;
        res[i] = check_settle(t, ds[i], &e);
        if (res[i] == TXM_OK) {
            ok[m] = ds[i];
            at[m++] = i;
        } else if (first == TXM_OK) {
            first = res[i];
            if (err != NULL)
                *err = e;
        }
    }
    txm_status *sub = m > 0 ? txm__calloc(m, sizeof *sub) : NULL;
    if (m > 0 && sub == NULL && first == TXM_OK)
        first = txm_errf(err, TXM_NOMEM, "ack_batch: out of memory");
    if (sub != NULL) {
        txm_error e;
        txm_error_clear(&e);
        if (t->ops->ack_batch != NULL) {
            t->ops->ack_batch(t->broker, ok, m, sub, &e);
        } else {
            for (size_t k = 0; k < m; k++)
                sub[k] = t->ops->ack(t->broker, ok[k], &e);
        }
        for (size_t k = 0; k < m; k++) {
            res[at[k]] = sub[k];
            if (sub[k] == TXM_OK)
                ok[k]->settled = true;
            else if (first == TXM_OK) {
                first = sub[k];
                if (err != NULL)
                    *err = e;
            }
        }
    }
    free(sub);
    free(ok);
    free(at);
    if (res != results)
        free(res);
    return first;
}

txm_status txm_transport_nack(txm_transport *t, txm_delivery *d, int delay_ms, const char *reason,
                              txm_error *err)
{
    txm_status st = check_settle(t, d, err);
    if (st == TXM_OK && delay_ms < 0)
        st = txm_errf(err, TXM_INVALID, "nack: negative delay");
    if (st == TXM_OK && (st = t->ops->nack(t->broker, d, delay_ms, reason, err)) == TXM_OK)
        d->settled = true;
    return st;
}

txm_status txm_transport_dead_letter(txm_transport *t, txm_delivery *d, const char *reason,
                                     txm_error *err)
{
    txm_status st = check_settle(t, d, err);
    if (st == TXM_OK && (st = t->ops->dead_letter(t->broker, d, reason, err)) == TXM_OK)
        d->settled = true;
    return st;
}

txm_status txm_transport_extend(txm_transport *t, txm_delivery *d, txm_error *err)
{
    txm_status st = check_settle(t, d, err);
    return st == TXM_OK ? t->ops->extend(t->broker, d, err) : st;
}

bool txm_transport_is_available(txm_transport *t)
{
    if (t == NULL)
        return false;
    return t->ops->is_available == NULL || t->ops->is_available(t->broker);
}

txm_status txm_transport_queue_depth(txm_transport *t, const char *queue, int64_t *depth,
                                     txm_error *err)
{
    if (depth != NULL)
        *depth = 0;
    if (t == NULL || depth == NULL || !txm__transport_name_ok(queue))
        return txm_errf(err, TXM_INVALID, "queue_depth: bad argument");
    return t->ops->queue_depth(t->broker, queue, depth, err);
}

txm_status txm_transport_queues(txm_transport *t, txm_queue_info **out, size_t *count,
                                txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (t == NULL || out == NULL || count == NULL)
        return txm_errf(err, TXM_INVALID, "queues: NULL argument");
    return t->ops->queues(t->broker, out, count, err);
}

txm_status txm_transport_dlq_list(txm_transport *t, const char *queue, size_t limit,
                                  txm_delivery ***out, size_t *count, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (t == NULL || out == NULL || count == NULL || !txm__transport_name_ok(queue) || limit == 0 ||
        limit > 100000)
        return txm_errf(err, TXM_INVALID, "dlq_list: bad argument");
    return t->ops->dlq_list(t->broker, queue, limit, out, count, err);
}

txm_status txm_transport_dlq_redrive(txm_transport *t, const char *queue, const char *message_id,
                                     size_t *moved, txm_error *err)
{
    if (moved != NULL)
        *moved = 0;
    if (t == NULL || !txm__transport_name_ok(queue))
        return txm_errf(err, TXM_INVALID, "dlq_redrive: bad argument");
    return t->ops->dlq_redrive(t->broker, queue, message_id, moved, err);
}

txm_status txm_transport_dlq_purge(txm_transport *t, const char *queue, size_t *purged,
                                   txm_error *err)
{
    if (purged != NULL)
        *purged = 0;
    if (t == NULL || !txm__transport_name_ok(queue))
        return txm_errf(err, TXM_INVALID, "dlq_purge: bad argument");
    return t->ops->dlq_purge(t->broker, queue, purged, err);
}

txm_status txm_transport_dlq_delete(txm_transport *t, const char *queue, const char *message_id,
                                    size_t *deleted, txm_error *err)
{
    if (deleted != NULL)
        *deleted = 0;
    if (t == NULL || !txm__transport_name_ok(queue) || message_id == NULL || message_id[0] == '\0')
        return txm_errf(err, TXM_INVALID, "dlq_delete: bad argument");
    return t->ops->dlq_delete(t->broker, queue, message_id, deleted, err);
}
