/* The relay's outside: JSON log lines, and /metrics and /health over HTTP. */
#ifndef RELAY_RELAY_HTTP_H
#define RELAY_RELAY_HTTP_H

#include "relay.h"

typedef struct relay_http relay_http;

/* Sets cfg's log to JSON lines on stderr and, when port >= 0, serves
 * /metrics and /health on address:port. On failure cfg's log is unset
 * again and err says why (TXM_NOMEM, or the status of the metrics or
 * server setup). Owns: *out (relay_http_close), NULL on failure. Borrows
 * cfg and stats until relay_http_close. */
txm_status relay_http_open(relay_config *cfg, relay_stats *stats, const char *address, int port,
                           relay_http **out, txm_error *err);

void relay_http_close(relay_http *h); /* NULL-safe */

#endif
