/* Durations on the command line: a positive integer and one unit, as in
 * "500ms", "30s", "5m", "2h", "365d"; and sizes: a positive integer with an
 * optional unit, as in "4096", "512kB", "64MB", "1GB" (PostgreSQL's units,
 * powers of 1024). */
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

/* Largest size accepted: 1 PiB. */
#define CLI_SIZE_MAX_BYTES (1LL << 50)

/* Parses text into *bytes: digits, then nothing (bytes) or one of B, kB,
 * MB, GB, TB (also written K, M, G, T, any case). Returns 0, or -1 for
 * anything else (zero, a sign, spaces, an unknown unit, a value above
 * CLI_SIZE_MAX_BYTES); *bytes is untouched on failure. */
int cli_size_parse(const char *text, int64_t *bytes);

/* Formats bytes (>= 0) for people: "512B", "64.0kB", "1.5MB", "2.00GB".
 * Always NUL-terminates out. */
void cli_size_format(int64_t bytes, char *out, size_t len);

#endif
