/* Durations on the command line: a positive integer and one unit, as in
 * "500ms", "30s", "5m", "2h", "365d". */
#ifndef TXM_CLI_DURATION_H
#define TXM_CLI_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Longest duration accepted: 100 years, in milliseconds. */
#define CLI_DURATION_MAX_MS (100LL * 366 * 24 * 3600 * 1000)

/* Parses text into *ms. Returns 0, or -1 for anything else: empty text, a
 * sign, spaces, zero, a missing or unknown unit, more than one unit, or a
 * value above CLI_DURATION_MAX_MS. *ms is untouched on failure. */
int cli_duration_parse(const char *text, int64_t *ms);

/* Formats ms (>= 0) for people, with at most two units: "250ms", "1.23s",
 * "45s", "45m", "45m12s", "2h5m", "3d4h". Always NUL-terminates out. */
void cli_duration_format(int64_t ms, char *out, size_t len);

#endif
