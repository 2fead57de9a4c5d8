/* Dispatching outbox messages by hand: publish them now and mark them
 * dispatched. Shared by `txmsg outbox dispatch` and the console. */
#ifndef TXM_CLI_DISPATCH_H
#define TXM_CLI_DISPATCH_H

#include <stddef.h>

#include "txmsg/txmsg.h"

/* Most messages one cli_dispatch_msgs call takes. */
#define CLI_DISPATCH_BATCH 100

/* Declares each message's topic, publishes the n (1..CLI_DISPATCH_BATCH)
 * messages as CloudEvents and marks those the broker accepted dispatched.
 * results[i] receives each message's status: TXM_OK once published (marked
 * or not). *marked receives how many were marked. Returns TXM_OK when every
 * message was published and marked, else the first failure with err set.
 * Borrows everything. Thread: any (db and t are thread-safe). */
txm_status cli_dispatch_msgs(txm_db *db, txm_transport *t, const txm_msg *const *msgs, size_t n,
                             txm_status *results, size_t *marked, txm_error *err);

/* Dispatches the outbox message id now (as cli_dispatch_msgs) unless it is
 * dispatched already. Returns TXM_NOT_FOUND when db has no such message,
 * TXM_CONFLICT when it is dispatched already (nothing is sent), TXM_INVALID
 * for an empty id, or the status of the publish or the mark. */
txm_status cli_dispatch_id(txm_db *db, txm_transport *t, const char *id, txm_error *err);

#endif
