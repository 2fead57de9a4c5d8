/* The monotonic clock, for deadlines and intervals inside the library. */
#ifndef TXM_CORE_CLOCK_H
#define TXM_CORE_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC; never for times shown to people. */
int64_t txm__mono_ms(void);

#endif
