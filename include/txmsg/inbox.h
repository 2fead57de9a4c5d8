/* Inbox repository (Idempotent Consumer): the ids of messages a subscription
 * has processed, written in the same transaction as the handler's effects. */
#ifndef TXMSG_INBOX_H
#define TXMSG_INBOX_H

#include <stdint.h>

#include "txmsg/db.h"
#include "txmsg/uow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Records that subscription processed message_id, inside uow. Returns
 * TXM_DUPLICATE when that pair exists; the unit of work then fails and its
 * commit rolls back every write made in it. Thread: the uow's thread. */
TXM_API txm_status txm_inbox_save(txm_uow *uow, const char *subscription, const char *message_id,
                                  txm_error *err);

/* Looks the pair up. Returns TXM_NOT_FOUND when absent; *created_at_us (may
 * be NULL) receives when it was processed, in microseconds since the epoch. */
TXM_API txm_status txm_inbox_get(txm_db *db, const char *subscription, const char *message_id,
                                 int64_t *created_at_us, txm_error *err);

#ifdef __cplusplus
}
#endif
#endif
