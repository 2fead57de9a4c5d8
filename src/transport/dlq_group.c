/* Dead letters by cause: a fingerprint of each dead letter's last error
 * (numbers, ids and quoted values masked), groups of a queue's dead letters
 * by fingerprint, and redriving or deleting one group, paced, through the
 * transport's own dlq_list, dlq_redrive and dlq_delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "transport/transport_int.h"

#define DEFAULT_SCAN 10000
#define RATE_MAX 1000000.0
#define NAP_MAX_MS 100 /* longest sleep between two should_stop questions */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_word(char c)
{
    return is_hex(c) || (c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z') || c == '_';
}

/* The fingerprint being written: out holds k bytes, at most cap. */
typedef struct fp_out {
    char *out;
    size_t k;
    size_t cap;
} fp_out;

static void put(fp_out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->k < o->cap; i++)
        o->out[o->k++] = s[i];
}

/* Length of an id at s (UUID or 8+ hex digits with at least one decimal
 * digit, dashes inside, ending before a non-word character); 0 if none. */
static size_t id_len(const char *s)
{
    size_t j = 0;
    bool digit = false;
    while (is_hex(s[j]) || s[j] == '-')
        digit |= is_digit(s[j++]);
    while (j > 0 && s[j - 1] == '-')
        j--;
    return j >= 8 && digit && !is_word(s[j]) ? j : 0;
}

/* Length of a number at s: digits with an optional fraction. */
static size_t number_len(const char *s)
{
    size_t j = 0;
    while (is_digit(s[j]))
        j++;
    if (j > 0 && s[j] == '.' && is_digit(s[j + 1]))
        for (j++; is_digit(s[j]); j++)
            ;
    return j;
}

/* The end of a quoted value opening at s[0] ('"', or '\'' at a word's
 * start), at the closing quote; NULL when it does not close. A single
 * quote closes only before a non-word character (not "don't"). */
static const char *quote_end(const char *s)
{
    for (const char *p = s + 1; *p != '\0'; p++)
        if (*p == s[0] && (s[0] == '"' || !is_word(p[1])))
            return p;
    return NULL;
}

/* Cuts a trailing UTF-8 sequence the cap left incomplete. */
static void utf8_trim(fp_out *o)
{
    size_t start = o->k;
    while (start > 0 && ((unsigned char)o->out[start - 1] & 0xC0) == 0x80)
        start--;
    if (start == 0 || (unsigned char)o->out[start - 1] < 0xC0)
        return;
    unsigned char lead = (unsigned char)o->out[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (o->k - (start - 1) < need)
        o->k = start - 1;
}

void txm_dlq_fingerprint(const char *error, char out[TXM_DLQ_FINGERPRINT_MAX + 1])
{
    fp_out o = {out, 0, TXM_DLQ_FINGERPRINT_MAX};
    for (size_t i = 0; error != NULL && error[i] != '\0' && o.k < o.cap;) {
        const char *s = error + i;
        bool start = i == 0 || !is_word(s[-1]);
        const char *close = (*s == '"' || (*s == '\'' && start)) ? quote_end(s) : NULL;
        size_t n = 0;
        if (close != NULL) {
            put(&o, s, 1);
            put(&o, "<s>", 3);
            put(&o, s, 1);
            i += (size_t)(close - s) + 1;
        } else if (start && (n = id_len(s)) > 0) {
            put(&o, "<id>", 4);
            i += n;
        } else if (start && (n = number_len(s)) > 0) {
            put(&o, "<n>", 3);
            i += n;
        } else {
            put(&o, s, 1);
            i++;
        }
    }
    utf8_trim(&o);
    out[o.k] = '\0';
}

void txm_dlq_group_id(const char *fingerprint, char out[TXM_DLQ_GROUP_ID_LEN + 1])
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
    for (const char *p = fingerprint != NULL ? fingerprint : ""; *p != '\0'; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    /* 48 bits: the high ones folded onto the low ones. */
    snprintf(out, TXM_DLQ_GROUP_ID_LEN + 1, "%012llx",
             (unsigned long long)((h ^ (h >> 48)) & 0xFFFFFFFFFFFFULL));
}

/* Adds d to the group with its fingerprint in *groups (*n of them, room for
 * *cap, grown here). */
static txm_status add_member(txm_dlq_group **groups, size_t *n, size_t *cap, const txm_delivery *d,
                             txm_error *err)
{
    char fp[TXM_DLQ_FINGERPRINT_MAX + 1];
    txm_dlq_fingerprint(d->last_error, fp);
    txm_dlq_group *g = NULL;
    for (size_t i = 0; i < *n && g == NULL; i++)
        if (strcmp((*groups)[i].fingerprint, fp) == 0)
            g = &(*groups)[i];
    if (g == NULL) {
        if (*n == *cap) {
            size_t ncap = *cap == 0 ? 8 : *cap * 2;
            txm_dlq_group *grown = txm__realloc(*groups, ncap * sizeof *grown);
            if (grown == NULL)
                return txm_errf(err, TXM_NOMEM, "dlq_groups: out of memory");
            *groups = grown;
            *cap = ncap;
        }
        g = &(*groups)[(*n)++];
        memset(g, 0, sizeof *g);
        snprintf(g->fingerprint, sizeof g->fingerprint, "%s", fp);
        txm_dlq_group_id(fp, g->id);
        snprintf(g->sample_id, sizeof g->sample_id, "%s", d->message_id);
        snprintf(g->sample_error, sizeof g->sample_error, "%s", d->last_error);
        g->first_seen_us = d->dead_lettered_at_us;
    }
    g->count++;
    int64_t at = d->dead_lettered_at_us;
    if (at != 0 && (g->first_seen_us == 0 || at < g->first_seen_us))
        g->first_seen_us = at;
    if (at > g->last_seen_us)
        g->last_seen_us = at;
    return TXM_OK;
}

static int by_size(const void *pa, const void *pb)
{
    const txm_dlq_group *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    if (a->first_seen_us != b->first_seen_us)
        return a->first_seen_us < b->first_seen_us ? -1 : 1;
    return strcmp(a->id, b->id);
}

txm_status txm_transport_dlq_groups(txm_transport *t, const char *queue, size_t scan_limit,
                                    txm_dlq_group **out, size_t *count, bool *truncated,
                                    txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (truncated != NULL)
        *truncated = false;
    if (out == NULL || count == NULL || scan_limit == 0 || scan_limit > TXM_DLQ_SCAN_MAX)
        return txm_errf(err, TXM_INVALID, "dlq_groups: bad argument");
    txm_delivery **list = NULL;
    size_t n = 0, ng = 0, cap = 0;
    txm_dlq_group *groups = NULL;
    txm_status st = txm_transport_dlq_list(t, queue, scan_limit, &list, &n, err);
    for (size_t i = 0; st == TXM_OK && i < n; i++)
        st = add_member(&groups, &ng, &cap, list[i], err);
    txm_delivery_list_free(list, n);
    if (st != TXM_OK) {
        txm_free(groups);
        return st;
    }
    if (ng > 1)
        qsort(groups, ng, sizeof *groups, by_size);
    *out = groups;
    *count = ng;
    if (truncated != NULL)
        *truncated = n == scan_limit;
    return TXM_OK;
}

void txm_dlq_redrive_options_init(txm_dlq_redrive_options *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->scan_limit = DEFAULT_SCAN;
}

/* The distinct message ids of queue's dead letters in group_id (any when
 * NULL) whose last error contains match (any when NULL), oldest first.
 * Owns: *ids (each and the array, txm_free). */
static txm_status select_ids(txm_transport *t, const char *queue, const char *group_id,
                             const char *match, size_t scan_limit, char ***ids, size_t *n,
                             txm_error *err)
{
    *ids = NULL;
    *n = 0;
    txm_delivery **list = NULL;
    size_t count = 0;
    txm_status st = txm_transport_dlq_list(t, queue, scan_limit, &list, &count, err);
    char **sel = st == TXM_OK && count > 0 ? txm__calloc(count, sizeof *sel) : NULL;
    if (st == TXM_OK && count > 0 && sel == NULL)
        st = txm_errf(err, TXM_NOMEM, "dlq: out of memory");
    size_t k = 0;
    for (size_t i = 0; st == TXM_OK && i < count; i++) {
        const txm_delivery *d = list[i];
        char fp[TXM_DLQ_FINGERPRINT_MAX + 1], id[TXM_DLQ_GROUP_ID_LEN + 1];
        txm_dlq_fingerprint(d->last_error, fp);
        txm_dlq_group_id(fp, id);
        bool take = (group_id == NULL || strcmp(id, group_id) == 0) &&
                    (match == NULL || strstr(d->last_error, match) != NULL) &&
                    d->message_id[0] != '\0';
        /* Redriving or deleting by id takes every copy of a message
         * dead-lettered twice; a later copy's turn then finds none, which
         * is harmless. Only neighbours are skipped here, in linear time. */
        if (take && k > 0)
            take = strcmp(sel[k - 1], d->message_id) != 0;
        if (take && (sel[k++] = txm__strdup(d->message_id)) == NULL)
            st = txm_errf(err, TXM_NOMEM, "dlq: out of memory");
    }
    txm_delivery_list_free(list, count);
    if (st != TXM_OK) {
        for (size_t i = 0; i < k; i++)
            txm_free(sel[i]);
        txm_free(sel);
        return st;
    }
    *ids = sel;
    *n = k;
    return TXM_OK;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        txm_free(ids[i]);
    txm_free(ids);
}

static bool stopped(const txm_dlq_redrive_options *o)
{
    return o->should_stop != NULL && o->should_stop(o->ctx);
}

/* Waits until start_ms + due_ms on the monotonic clock, asking should_stop
 * at least every NAP_MAX_MS. Returns false when told to stop. */
static bool wait_until(const txm_dlq_redrive_options *o, int64_t start_ms, int64_t due_ms)
{
    for (;;) {
        if (stopped(o))
            return false;
        int64_t left = start_ms + due_ms - txm__mono_ms();
        if (left <= 0)
            return true;
        int64_t nap = left < NAP_MAX_MS ? left : NAP_MAX_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

txm_status txm_transport_dlq_redrive_group(txm_transport *t, const char *queue,
                                           const txm_dlq_redrive_options *o, size_t *moved,
                                           txm_error *err)
{
    if (moved != NULL)
        *moved = 0;
    if (t == NULL || o == NULL || o->scan_limit == 0 || o->scan_limit > TXM_DLQ_SCAN_MAX ||
        !(o->rate_per_s >= 0 && o->rate_per_s <= RATE_MAX))
        return txm_errf(err, TXM_INVALID, "dlq_redrive_group: bad argument");
    char **ids = NULL;
    size_t n = 0, done = 0;
    txm_status st = select_ids(t, queue, o->group_id, o->match, o->scan_limit, &ids, &n, err);
    if (st == TXM_OK && n == 0)
        st = txm_errf(err, TXM_NOT_FOUND, "dlq: no dead letter of %s matches", queue);
    int64_t start_ms = txm__mono_ms();
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        int64_t due_ms = o->rate_per_s > 0 ? (int64_t)((double)i * 1000.0 / o->rate_per_s) : 0;
        if (!wait_until(o, start_ms, due_ms))
            break;
        size_t m = 0;
        st = txm_transport_dlq_redrive(t, queue, ids[i], &m, err);
        done += m;
        if (st == TXM_OK && o->progress != NULL)
            o->progress(o->ctx, done, n);
    }
    free_ids(ids, n);
    if (moved != NULL)
        *moved = done;
    return st;
}

txm_status txm_transport_dlq_purge_group(txm_transport *t, const char *queue, const char *group_id,
                                         size_t scan_limit, size_t *purged, txm_error *err)
{
    if (purged != NULL)
        *purged = 0;
    if (t == NULL || group_id == NULL || scan_limit == 0 || scan_limit > TXM_DLQ_SCAN_MAX)
        return txm_errf(err, TXM_INVALID, "dlq_purge_group: bad argument");
    char **ids = NULL;
    size_t n = 0, done = 0;
    txm_status st = select_ids(t, queue, group_id, NULL, scan_limit, &ids, &n, err);
    if (st == TXM_OK && n == 0)
        st = txm_errf(err, TXM_NOT_FOUND, "dlq: no dead letter of %s in group %s", queue, group_id);
    for (size_t i = 0; st == TXM_OK && i < n; i++) {
        size_t m = 0;
        st = txm_transport_dlq_delete(t, queue, ids[i], &m, err);
        done += m;
    }
    free_ids(ids, n);
    if (purged != NULL)
        *purged = done;
    return st;
}
