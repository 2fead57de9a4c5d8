/* Duration and size arguments: parsing "30s"- and "64MB"-style text and
 * formatting the values back for messages. */
#include "duration.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct unit {
    const char *suffix;
    int64_t ms;
} unit;

/* "ms" precedes "m" and "s" so the longest suffix wins. */
static const unit units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

int cli_duration_parse(const char *text, int64_t *ms)
{
    if (text == NULL || ms == NULL || !isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    long long n = strtoll(text, &end, 10);
    if (errno != 0 || n <= 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (n > CLI_DURATION_MAX_MS / units[i].ms)
            return -1;
        *ms = (int64_t)n * units[i].ms;
        return 0;
    }
    return -1;
}

void cli_duration_format(int64_t ms, char *out, size_t len)
{
    if (out == NULL || len == 0)
        return;
    if (ms < 0)
        ms = 0;
    if (ms < 1000) {
        snprintf(out, len, "%lldms", (long long)ms);
        return;
    }
    if (ms < 10000 && ms % 1000 != 0) {
        snprintf(out, len, "%lld.%02llds", (long long)(ms / 1000), (long long)(ms % 1000 / 10));
        return;
    }
    /* The largest unit that fits, then the next smaller one when not zero. */
    size_t u = sizeof units / sizeof *units - 1;
    while (u > 1 && ms < units[u].ms)
        u--;
    long long major = (long long)(ms / units[u].ms);
    long long minor = (long long)(ms % units[u].ms / units[u - 1].ms);
    if (u == 1 || minor == 0)
        snprintf(out, len, "%lld%s", major, units[u].suffix);
    else
        snprintf(out, len, "%lld%s%lld%s", major, units[u].suffix, minor, units[u - 1].suffix);
}

/* Size units, longest first within each letter so "kB" wins over "k". */
static const struct {
    const char *suffix;
    int shift;
} size_units[] = {
    {"", 0},   {"b", 0},   {"kb", 10}, {"k", 10},  {"mb", 20},
    {"m", 20}, {"gb", 30}, {"g", 30},  {"tb", 40}, {"t", 40},
};

int cli_size_parse(const char *text, int64_t *bytes)
{
    if (text == NULL || bytes == NULL || !isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    long long n = strtoll(text, &end, 10);
    if (errno != 0 || n <= 0 || strlen(end) > 2)
        return -1;
    char suffix[3] = {0};
    for (size_t i = 0; end[i] != '\0'; i++)
        suffix[i] = (char)tolower((unsigned char)end[i]);
    for (size_t i = 0; i < sizeof size_units / sizeof *size_units; i++) {
        if (strcmp(suffix, size_units[i].suffix) != 0)
            continue;
        if (n > CLI_SIZE_MAX_BYTES >> size_units[i].shift)
            return -1;
        *bytes = (int64_t)n << size_units[i].shift;
        return 0;
    }
    return -1;
}

void cli_size_format(int64_t bytes, char *out, size_t len)
{
    static const char *const names[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof names / sizeof *names) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%lldB", (long long)bytes);
    else
        snprintf(out, len, v < 10 ? "%.2f%s" : v < 100 ? "%.1f%s" : "%.0f%s", v, names[u]);
}
