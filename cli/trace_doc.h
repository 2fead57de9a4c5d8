/* One business flow (a correlation id) read from the databases of several
 * services and merged into one timeline, and its JSON document: shared by
 * `txmsg trace` and the console's GET /api/trace. */
#ifndef TXM_CLI_TRACE_DOC_H
#define TXM_CLI_TRACE_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "txmsg/admin.h"
#include "txmsg/txmsg.h"

/* One traced service. name and db are borrowed; the rest is filled by
 * cli_trace_read. */
typedef struct cli_trace_source {
    const char *name;   /* the service's name */
    txm_db *db;         /* its database */
    bool messages_mode; /* PostgreSQL messages mode: no outbox rows */
    bool truncated;     /* returned the limit: older entries may be missing */
} cli_trace_source;

/* One entry of the merged timeline. */
typedef struct cli_trace_item {
    txm_trace_entry e;
    size_t service; /* index into cli_trace_doc.services */
} cli_trace_item;

typedef struct cli_trace_doc {
    cli_trace_source *services; /* borrowed array of n_services */
    size_t n_services;
    cli_trace_item *items; /* owned, time order */
    size_t n;
} cli_trace_doc;

/* Reads correlation_id from every service's database (limit entries each,
 * 1..TXM_TRACE_LIMIT_MAX), merges them in time order and keeps the oldest
 * limit. On failure *failed is the index of the service that failed and err
 * says why (with a hint when the schema predates version 3). Owns: tr->items
 * until cli_trace_fini, also on failure. */
txm_status cli_trace_read(cli_trace_doc *tr, const char *correlation_id, size_t limit,
                          size_t *failed, txm_error *err);

/* True when item i is an outbox message no traced inbox has processed. */
bool cli_trace_is_pending(const cli_trace_doc *tr, size_t i);

/* The document of `txmsg trace --json`: correlation_id, services, entries,
 * waiting; with at_ms, each entry also has "at_ms". NULL when out of memory.
 * Owns: the result is the caller's. */
json_t *cli_trace_json(const cli_trace_doc *tr, const char *correlation_id, bool at_ms);

/* "outbox" or "inbox". */
const char *cli_trace_kind_name(txm_trace_kind k);

/* Frees tr->items. */
void cli_trace_fini(cli_trace_doc *tr);

#endif
