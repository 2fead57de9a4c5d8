/* Redelivery delay after a failed attempt. */
#ifndef TXM_CONSUMER_BACKOFF_H
#define TXM_CONSUMER_BACKOFF_H

/* Delay before the next attempt after the attempt-th failure (1-based):
 * base_ms * 2^(attempt-1), capped at max_ms, never negative. */
int txm__backoff_ms(int base_ms, int max_ms, int attempt);

#endif
