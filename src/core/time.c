/* Wall-clock time in microseconds and its RFC 3339 text form, formatted and
 * parsed without depending on the process's time zone. */
#include "txmsg/message.h"

#include <stdint.h>
#include <time.h>

#include "core/core_int.h"

int64_t txm_now_us(void)
{
    struct timespec ts = {0};
    clock_gettime(CLOCK_REALTIME, &ts); /* cannot fail for CLOCK_REALTIME */
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes v as exactly width decimal digits, zero-padded; returns the end. */
static char *put_digits(char *p, long v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

void txm_time_format(int64_t us, char out[TXM_TIME_LEN + 1])
{
    if (out == NULL)
        return;
    /* Four year digits cannot show more: clamp instead of overflowing out. */
    if (us < TXM__TIME_MIN_US)
        us = TXM__TIME_MIN_US;
    if (us > TXM__TIME_MAX_US)
        us = TXM__TIME_MAX_US;
    int64_t secs = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) { /* C division truncates; times before 1970 need floor */
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm = {0};
    gmtime_r(&t, &tm); /* cannot fail inside the clamped range */
    char *p = put_digits(out, tm.tm_year + 1900L, 4);
    *p++ = '-';
    p = put_digits(p, tm.tm_mon + 1L, 2);
    *p++ = '-';
    p = put_digits(p, tm.tm_mday, 2);
    *p++ = 'T';
    p = put_digits(p, tm.tm_hour, 2);
    *p++ = ':';
    p = put_digits(p, tm.tm_min, 2);
    *p++ = ':';
    p = put_digits(p, tm.tm_sec, 2);
    *p++ = '.';
    p = put_digits(p, (long)frac, 6);
    *p++ = 'Z';
    *p = '\0';
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (H. Hinnant's
 * days_from_civil), so the conversion never consults TZ as mktime would. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Reads exactly n digits at *p into *v and advances *p. Stops at the first
 * non-digit (the NUL is one), so it never reads past the end. */
static int digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return 0;
        x = x * 10 + (c - '0');
    }
    *p += n;
    *v = x;
    return 1;
}

/* Consumes the character c at *p; returns 0 if another one is there. */
static int expect(const char **p, char c)
{
    if (**p != c)
        return 0;
    (*p)++;
    return 1;
}

/* Reads an optional ".d{1,9}" fraction into *frac_us, truncating below one
 * microsecond. Returns 0 for a dot without digits or more than nine. */
static int fraction(const char **p, int *frac_us)
{
    *frac_us = 0;
    if (!expect(p, '.'))
        return 1;
    int n = 0;
    while (**p >= '0' && **p <= '9') {
        if (++n > 9)
            return 0;
        if (n <= 6)
            *frac_us = *frac_us * 10 + (**p - '0');
        (*p)++;
    }
    for (int i = n; i < 6; i++)
        *frac_us *= 10;
    return n > 0;
}

/* Reads "Z", "z" or "+HH:MM"/"-HH:MM" into *off_s, the seconds east of UTC. */
static int zone(const char **p, int *off_s)
{
    *off_s = 0;
    if (expect(p, 'Z') || expect(p, 'z'))
        return 1;
    int sign = **p == '+' ? 1 : **p == '-' ? -1 : 0;
    if (sign == 0)
        return 0;
    (*p)++;
    int hh = 0, mm = 0;
    if (!digits(p, 2, &hh) || !expect(p, ':') || !digits(p, 2, &mm) || hh > 23 || mm > 59)
        return 0;
    *off_s = sign * (hh * 3600 + mm * 60);
    return 1;
}

txm_status txm_time_parse(const char *s, int64_t *us, txm_error *err)
{
    if (s == NULL || us == NULL)
        return txm_errf(err, TXM_INVALID, "time_parse: NULL argument");
    *us = 0;
    const char *p = s;
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    if (!digits(&p, 4, &y) || !expect(&p, '-') || !digits(&p, 2, &mo) || !expect(&p, '-') ||
        !digits(&p, 2, &d))
        return txm_errf(err, TXM_MALFORMED, "time \"%.40s\": expected YYYY-MM-DD", s);
    if (!expect(&p, 'T') && !expect(&p, 't') && !expect(&p, ' '))
        return txm_errf(err, TXM_MALFORMED, "time \"%.40s\": expected 'T' after the date", s);
    if (!digits(&p, 2, &h) || !expect(&p, ':') || !digits(&p, 2, &mi) || !expect(&p, ':') ||
        !digits(&p, 2, &sec))
        return txm_errf(err, TXM_MALFORMED, "time \"%.40s\": expected HH:MM:SS", s);
    if (!fraction(&p, &frac))
        return txm_errf(err, TXM_MALFORMED, "time \"%.40s\": fraction needs 1..9 digits", s);
    if (!zone(&p, &off) || *p != '\0')
        return txm_errf(err, TXM_MALFORMED, "time \"%.40s\": expected Z or +HH:MM at the end", s);
    /* RFC 3339 allows second 60 for leap seconds, but Unix time cannot hold
     * one, so it is rejected along with the other out-of-range fields. */
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
        return txm_errf(err, TXM_MALFORMED, "time \"%.40s\": field out of range", s);
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    *us = t * 1000000 + frac;
    return TXM_OK;
}
