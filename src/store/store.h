/* Store internals for other parts of txmsg (the relay). */
#ifndef TXM_STORE_STORE_H
#define TXM_STORE_STORE_H

#include <stddef.h>

#include "txmsg/db.h"

/* As txm_outbox_mark_dispatched, for rows not marked yet only: a retry of
 * rows another snapshot could not see yet does not count the others twice. */
txm_status txm__outbox_mark_new(txm_db *db, const char *const *message_ids, size_t count,
                                size_t *marked, txm_error *err);

#endif
