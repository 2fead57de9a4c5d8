/* Dispatching outbox messages by hand: declare their topics, publish,
 * then mark what the broker accepted. */
#include "dispatch.h"

#include <string.h>

/* Declares each distinct topic of the batch, so the broker has it. */
static txm_status declare_topics(txm_transport *t, const txm_msg *const *msgs, size_t n,
                                 txm_error *err)
{
    txm_status st = TXM_OK;
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(txm_msg_topic(msgs[i]), txm_msg_topic(msgs[j])) == 0;
        if (!seen)
            st = txm_transport_declare_topic(t, txm_msg_topic(msgs[i]), err);
    }
    return st;
}

txm_status cli_dispatch_msgs(txm_db *db, txm_transport *t, const txm_msg *const *msgs, size_t n,
                             txm_status *results, size_t *marked, txm_error *err)
{
    *marked = 0;
    if (n == 0 || n > CLI_DISPATCH_BATCH)
        return txm_errf(err, TXM_INVALID, "dispatch: 1..%d messages", CLI_DISPATCH_BATCH);
    /* On failure the per-message results say which messages the broker
     * accepted; those it never got keep the failure. */
    for (size_t i = 0; i < n; i++)
        results[i] = TXM_BROKER;
    txm_status st = declare_topics(t, msgs, n, err);
    if (st == TXM_OK)
        st = txm_transport_publish_msgs(t, msgs, n, results, err);
    const char *ids[CLI_DISPATCH_BATCH];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (st == TXM_OK || results[i] == TXM_BROKER)
            results[i] = st;
        if (results[i] == TXM_OK)
            ids[k++] = txm_msg_id(msgs[i]);
    }
    if (k == 0)
        return st;
    txm_error merr;
    txm_status mst = txm_outbox_mark_dispatched(db, ids, k, marked, &merr);
    if (mst != TXM_OK && st == TXM_OK)
        st = txm_errf(err, mst, "published %zu messages but cannot mark them dispatched: %s", k,
                      merr.text);
    return st;
}

txm_status cli_dispatch_id(txm_db *db, txm_transport *t, const char *id, txm_error *err)
{
    if (id == NULL || id[0] == '\0')
        return txm_errf(err, TXM_INVALID, "dispatch: empty message id");
    txm_outbox_entry *e = NULL;
    txm_status st = txm_outbox_get(db, id, &e, err);
    if (st == TXM_NOT_FOUND)
        return txm_errf(err, TXM_NOT_FOUND, "no message %s in the outbox", id);
    if (st == TXM_OK && txm_outbox_entry_is_dispatched(e))
        st = txm_errf(err, TXM_CONFLICT, "message %s is dispatched already", id);
    if (st == TXM_OK) {
        const txm_msg *msg = txm_outbox_entry_msg(e);
        txm_status result = TXM_OK;
        size_t marked = 0;
        st = cli_dispatch_msgs(db, t, &msg, 1, &result, &marked, err);
    }
    txm_outbox_entry_free(e);
    return st;
}
