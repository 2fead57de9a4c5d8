/* Inbox repository (Idempotent Consumer): the ids of messages a subscription
 * has processed, written in the same transaction as the handler's effects. */
#ifndef TXMSG_INBOX_H
#define TXMSG_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "txmsg/db.h"
#include "txmsg/message.h"
#include "txmsg/uow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Records that subscription processed message_id, inside uow. Returns
 * TXM_DUPLICATE when that pair exists; the unit of work then fails and its
 * commit rolls back every write made in it. Thread: the uow's thread. */
TXM_API txm_status txm_inbox_save(txm_uow *uow, const char *subscription, const char *message_id,
                                  txm_error *err);

/* Most ids one txm_inbox_save_batch call takes. */
#define TXM_INBOX_BATCH_MAX 1000

/* Records that subscription processed each of the n message ids, inside uow,
 * in one statement. fresh[i] is set true for an id recorded now and false
 * for one recorded before (a duplicate, whose row stays as it was) or
 * repeated earlier in ids. Unlike txm_inbox_save, duplicates do not fail the
 * unit of work. On PostgreSQL an id another open transaction is recording
 * waits for that one to end. TXM_INVALID for n outside 1..TXM_INBOX_BATCH_MAX
 * or a bad id. Thread: the uow's thread. */
TXM_API txm_status txm_inbox_save_batch(txm_uow *uow, const char *subscription,
                                        const char *const *message_ids, size_t n, bool *fresh,
                                        txm_error *err);

/* As txm_inbox_save_batch for the n messages themselves, in one statement,
 * also recording each one's correlation id, topic and source (NULL when
 * empty), so txm_trace_list finds it. fresh[i] as there. TXM_INVALID for n
 * outside 1..TXM_INBOX_BATCH_MAX, a NULL message or a bad id. Borrows msgs.
 * Thread: the uow's thread. */
TXM_API txm_status txm_inbox_save_msgs(txm_uow *uow, const char *subscription,
                                       const txm_msg *const *msgs, size_t n, bool *fresh,
                                       txm_error *err);

/* Deletes the pair inside uow: undoes a save whose message's work was undone
 * (rolled back to a savepoint) while the rest of the unit commits. */
TXM_API txm_status txm_inbox_remove(txm_uow *uow, const char *subscription, const char *message_id,
                                    txm_error *err);

/* Looks the pair up. Returns TXM_NOT_FOUND when absent; *created_at_us (may
 * be NULL) receives when it was processed, in microseconds since the epoch. */
TXM_API txm_status txm_inbox_get(txm_db *db, const char *subscription, const char *message_id,
                                 int64_t *created_at_us, txm_error *err);

#ifdef __cplusplus
}
#endif
#endif
