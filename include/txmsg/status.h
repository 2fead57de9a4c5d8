/* txmsg status codes: one enum for every fallible call, and its text. */
#ifndef TXMSG_STATUS_H
#define TXMSG_STATUS_H

#include "txmsg/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only: never renumber or remove an entry. txm_strerror() covers each.
 * TXM_UNAVAILABLE means the database or broker cannot be reached right now
 * (refused, lost, starting up, shutting down): an outage, not a failure of
 * the input, so retrying the same call later is the right answer.
 * TXM_NO_SPACE means the disk under the database or the broker is full
 * (SQLite's SQLITE_FULL, or a write that failed with ENOSPC or EFBIG):
 * nothing of the call was kept, and the same call succeeds again once space
 * is freed. It is an outage too, but one an operator has to end, so it has
 * a status of its own. */
#define TXM_STATUS_MAP(X)                                                                          \
    X(OK, "ok")                                                                                    \
    X(INVALID, "invalid argument or input")                                                        \
    X(NOMEM, "out of memory")                                                                      \
    X(TOO_BIG, "value exceeds its size limit")                                                     \
    X(NOT_FOUND, "not found")                                                                      \
    X(DUPLICATE, "message already processed")                                                      \
    X(ALREADY_PUBLISHED, "message id already in outbox")                                           \
    X(CONFLICT, "optimistic-lock conflict: the row changed or is gone")                            \
    X(CONSTRAINT, "constraint violated")                                                           \
    X(DB, "database error")                                                                        \
    X(BUSY, "resource busy")                                                                       \
    X(TIMEOUT, "timed out")                                                                        \
    X(IO, "input/output error")                                                                    \
    X(MALFORMED, "malformed document")                                                             \
    X(UNSUPPORTED, "unsupported")                                                                  \
    X(STATE, "operation not allowed in this state")                                                \
    X(BROKER, "broker error")                                                                      \
    X(CLOSED, "closed")                                                                            \
    X(UNAVAILABLE, "database or broker unavailable; retry later")                                  \
    X(NO_SPACE, "storage full; retry once space is freed")

typedef enum {
#define TXM_STATUS_ENUM(name, text) TXM_##name,
    TXM_STATUS_MAP(TXM_STATUS_ENUM)
#undef TXM_STATUS_ENUM
} txm_status;

/* Returns a static English text for st. Never NULL, also for unknown values. */
TXM_API const char *txm_strerror(txm_status st);

/* Returns the status name without prefix ("DUPLICATE"), or "UNKNOWN". Never NULL. */
TXM_API const char *txm_status_name(txm_status st);

#ifdef __cplusplus
}
#endif
#endif
