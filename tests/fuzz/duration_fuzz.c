/* libFuzzer harness for the CLI's duration and size arguments (cli/duration.c):
 * any text parses or is refused without touching the output, a parsed
 * value is within its documented range, and formatting it never overflows
 * its buffer. A duration formatted as one unit ("45s", "2h") parses back to
 * the same value. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_MAX 64 /* longer arguments parse no differently */

/* The most a formatted duration with this last unit can have dropped, in
 * ms: "36s" is 36.000..36.999 s, "2h" drops minutes, "6250d" hours. */
static int64_t next_unit_ms(const char *formatted)
{
    size_t len = strlen(formatted);
    char last = len > 0 ? formatted[len - 1] : 's';
    if (len >= 2 && formatted[len - 2] == 'm' && last == 's')
        return 1; /* "ms": exact */
    return last == 'd' ? 3600000 : last == 'h' ? 60000 : 1000;
}

static void check_duration(const char *text)
{
    int64_t ms = -7;
    if (cli_duration_parse(text, &ms) != 0) {
        if (ms != -7)
            abort(); /* untouched on failure */
        return;
    }
    if (ms <= 0 || ms > CLI_DURATION_MAX_MS)
        abort();
    char out[32];
    cli_duration_format(ms, out, sizeof out);
    if (strnlen(out, sizeof out) == sizeof out)
        abort();
    /* The format keeps at most two units, truncating: "36s" for 36507 ms,
     * "6250d" for 6250 days and 11 minutes. What reads back is never more
     * than ms, and short by less than the next smaller unit. */
    int64_t back = 0;
    if (strchr(out, '.') == NULL && cli_duration_parse(out, &back) == 0 &&
        (back > ms || ms - back >= next_unit_ms(out)))
        abort();
    char tiny[4];
    cli_duration_format(ms, tiny, sizeof tiny); /* truncates, still terminated */
    if (strnlen(tiny, sizeof tiny) == sizeof tiny)
        abort();
}

static void check_size(const char *text)
{
    int64_t bytes = -7;
    if (cli_size_parse(text, &bytes) != 0) {
        if (bytes != -7)
            abort();
        return;
    }
    if (bytes <= 0 || bytes > CLI_SIZE_MAX_BYTES)
        abort();
    char out[32];
    cli_size_format(bytes, out, sizeof out);
    if (strnlen(out, sizeof out) == sizeof out)
        abort();
    int64_t back = 0;
    /* "512B" is exact; "1.50MB" is rounded and does not parse (a fraction). */
    if (bytes < 1024 && (cli_size_parse(out, &back) != 0 || back != bytes))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[TEXT_MAX + 1];
    size_t len = size < TEXT_MAX ? size : TEXT_MAX;
    memcpy(text, data, len);
    text[len] = '\0';
    check_duration(text);
    check_size(text);
    /* Any value formats within its buffer, negative ones included. */
    int64_t v = 0;
    memcpy(&v, text, len < sizeof v ? len : sizeof v);
    char out[32];
    cli_duration_format(v, out, sizeof out);
    cli_size_format(v, out, sizeof out);
    if (strnlen(out, sizeof out) == sizeof out)
        abort();
    return 0;
}
