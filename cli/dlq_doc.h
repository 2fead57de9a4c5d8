/* The JSON documents of dead letters: `txmsg dlq list --json`, `dlq show
 * --json` and `dlq groups --json`, also served by the console. */
#ifndef TXM_CLI_DLQ_DOC_H
#define TXM_CLI_DLQ_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "txmsg/txmsg.h"

/* One dead letter: message_id, topic, receive_count, last_error, group (the
 * id of its cause, txm_dlq_group_id), dead_lettered_at (null when unknown)
 * and body (its JSON, or a string when it is not JSON, absent when it is not
 * UTF-8). NULL when out of memory. Owns: the result is the caller's. */
json_t *cli_dlq_delivery_json(const txm_delivery *d);

/* {"queue", "count", "messages": [cli_dlq_delivery_json...]}. NULL when out
 * of memory. */
json_t *cli_dlq_list_json(const char *queue, txm_delivery *const *list, size_t n);

/* {"queue", "truncated", "groups": [{id, fingerprint, count, first_seen,
 * last_seen, sample: {message_id, last_error}}...]}. NULL when out of
 * memory. */
json_t *cli_dlq_groups_json(const char *queue, const txm_dlq_group *g, size_t n, bool truncated);

#endif
