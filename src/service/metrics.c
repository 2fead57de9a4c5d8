/* Metrics registry: counters, gauges and histograms with label sets, kept
 * here or read through callbacks, and their rendering in the Prometheus
 * text exposition format 0.0.4.
 *
 * Thread safety: one mutex per registry guards every family and series.
 * Updates hold it for a hash lookup and an addition. txm_metrics_render
 * takes it twice: once to copy the list of callback series, and once to
 * write the text; the callbacks run in between without the lock, so a slow
 * callback (a database query) never blocks updates and may itself update
 * the registry. Series are never removed, so an index stays valid. */
#include "txmsg/service.h"

#include <inttypes.h>
#include <math.h> /* isfinite, isnan, isinf: macros, no libm */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "service/service_int.h"
#include "txmsg/outbox.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };
enum op { OP_ADD, OP_SET, OP_OBSERVE, OP_FN };

/* The callback an OP_FN update installs: value for counters and gauges,
 * histogram for histograms. */
struct callback {
    txm_metrics_value_fn value;
    txm_metrics_histogram_data_fn histogram;
    void *ctx;
};

#define BUCKETS 13
static const double bucket_le[BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10};
#define HASH_SLOTS (2 * TXM_METRICS_SERIES_MAX) /* a power of two, half full at most */
/* Canonical label text: name="escaped value" pairs; escaping at most
 * doubles a value. */
#define LABELS_TEXT_MAX                                                                            \
    (TXM_METRICS_LABELS_MAX * (TXM_METRICS_LABEL_NAME_MAX + 2 * TXM_METRICS_LABEL_VALUE_MAX + 4))

struct family {
    char *name; /* metric name, the "_total" included for counters */
    char *help; /* HELP text as given, or NULL */
    enum kind kind;
    int head, tail; /* first and last series index, -1 when none */
};

struct series {
    int family;                            /* index in txm_metrics.families */
    int next;                              /* next series of the family, -1 at the end */
    char *labels;                          /* canonical label text without braces; "" for none */
    double value;                          /* counter or gauge value */
    txm_metrics_value_fn fn;               /* callback giving the value, or NULL */
    txm_metrics_histogram_data_fn hist_fn; /* callback giving the histogram, or NULL */
    void *fn_ctx;                          /* ctx of fn or hist_fn */
    uint64_t bucket[BUCKETS + 1];          /* histogram: observations per bucket, last is +Inf */
    uint64_t count;                        /* histogram: observations */
    double sum;                            /* histogram: sum of the observed values */
};

struct txm_metrics {
    pthread_mutex_t lock;
    int nfamilies;
    int nseries;
    struct family *families[TXM_METRICS_SERIES_MAX];
    struct series *series[TXM_METRICS_SERIES_MAX];
    int slots[HASH_SLOTS]; /* series index, -1 when free; open addressing */
};

txm_status txm_metrics_new(txm_metrics **out, txm_error *err)
{
    if (out == NULL)
        return txm_errf(err, TXM_INVALID, "metrics_new: NULL argument");
    *out = NULL;
    txm_metrics *m = txm__calloc(1, sizeof *m);
    if (m == NULL)
        return txm_errf(err, TXM_NOMEM, "metrics_new: out of memory");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return txm_errf(err, TXM_NOMEM, "metrics_new: cannot create a mutex");
    }
    for (int i = 0; i < HASH_SLOTS; i++)
        m->slots[i] = -1;
    *out = m;
    return TXM_OK;
}

void txm_metrics_free(txm_metrics *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->nseries; i++) {
        free(m->series[i]->labels);
        free(m->series[i]);
    }
    for (int i = 0; i < m->nfamilies; i++) {
        free(m->families[i]->name);
        free(m->families[i]->help);
        free(m->families[i]);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---- validation and canonical labels ---- */

static bool is_name_char(char c, bool first, bool colon_ok)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':'))
        return true;
    return !first && c >= '0' && c <= '9';
}

static bool name_ok(const char *s, size_t max, bool colon_ok)
{
    size_t len = strnlen(s, max + 1);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i], i == 0, colon_ok))
            return false;
    return true;
}

static txm_status check_name(const char *name, const char *help, enum kind kind, txm_error *err)
{
    if (name == NULL || !name_ok(name, TXM_METRICS_NAME_MAX, true))
        return txm_errf(err, TXM_INVALID, "metrics: bad metric name");
    size_t len = strlen(name);
    if (kind == KIND_COUNTER && (len < 6 || strcmp(name + len - 6, "_total") != 0))
        return txm_errf(err, TXM_INVALID, "metrics: counter %s must end in _total", name);
    if (help != NULL) {
        size_t hlen = strnlen(help, TXM_METRICS_HELP_MAX + 1);
        if (hlen > TXM_METRICS_HELP_MAX || txm__utf8_valid_prefix(help, hlen) != hlen)
            return txm_errf(err, TXM_INVALID, "metrics: help of %s too long or not UTF-8", name);
    }
    return TXM_OK;
}

static txm_status check_label(const char *name, const char *value, txm_error *err)
{
    if (!name_ok(name, TXM_METRICS_LABEL_NAME_MAX, false) || strncmp(name, "__", 2) == 0 ||
        strcmp(name, "le") == 0)
        return txm_errf(err, TXM_INVALID, "metrics: bad label name");
    if (value == NULL)
        return txm_errf(err, TXM_INVALID, "metrics: label %s has no value", name);
    size_t len = strnlen(value, TXM_METRICS_LABEL_VALUE_MAX + 1);
    if (len > TXM_METRICS_LABEL_VALUE_MAX || txm__utf8_valid_prefix(value, len) != len)
        return txm_errf(err, TXM_INVALID, "metrics: value of label %s too long or not UTF-8", name);
    return TXM_OK;
}

/* Appends value escaped as a 0.0.4 label value (\\, \", \n) to out. */
static size_t escape_label_value(const char *value, char *out)
{
    size_t n = 0;
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[n++] = '\\';
            out[n++] = *p == '\n' ? 'n' : *p;
        } else {
            out[n++] = *p;
        }
    }
    return n;
}

/* Validates labels and writes them sorted by name as `a="x",b="y"` into
 * out (LABELS_TEXT_MAX + 1 bytes). */
static txm_status canonical_labels(const char *const *labels, char *out, txm_error *err)
{
    int order[TXM_METRICS_LABELS_MAX];
    int count = 0;
    for (int i = 0; labels != NULL && labels[2 * i] != NULL; i++) {
        if (count == TXM_METRICS_LABELS_MAX)
            return txm_errf(err, TXM_INVALID, "metrics: more than %d labels",
                            TXM_METRICS_LABELS_MAX);
        txm_status st = check_label(labels[2 * i], labels[2 * i + 1], err);
        if (st != TXM_OK)
            return st;
        /* Insertion sort by name: at most TXM_METRICS_LABELS_MAX entries. */
        int j = count++;
        while (j > 0 && strcmp(labels[2 * order[j - 1]], labels[2 * i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        if (j > 0 && strcmp(labels[2 * order[j - 1]], labels[2 * i]) == 0)
            return txm_errf(err, TXM_INVALID, "metrics: label %s given twice", labels[2 * i]);
        order[j] = i;
    }
    size_t n = 0;
    for (int k = 0; k < count; k++) {
        const char *name = labels[2 * order[k]];
        size_t len = strlen(name);
        if (k > 0)
            out[n++] = ',';
        memcpy(out + n, name, len);
        n += len;
        out[n++] = '=';
        out[n++] = '"';
        n += escape_label_value(labels[2 * order[k] + 1], out + n);
        out[n++] = '"';
    }
    out[n] = '\0';
    return TXM_OK;
}

/* ---- lookup and creation (lock held) ---- */

static uint32_t hash_key(const char *name, const char *labels)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = name; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ 0xFFu) * 16777619u; /* separator: 0xFF never occurs in a name */
    for (const char *p = labels; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

/* Returns the index of the family named name, creating it with kind and
 * help; -1 when out of memory, -2 when it exists with another kind, -3
 * when the family table is full. */
static int family_get(txm_metrics *m, const char *name, const char *help, enum kind kind)
{
    for (int i = 0; i < m->nfamilies; i++) {
        if (strcmp(m->families[i]->name, name) == 0)
            return m->families[i]->kind == kind ? i : -2;
    }
    if (m->nfamilies == TXM_METRICS_SERIES_MAX)
        return -3; /* only after failed allocations left families without series */
    struct family *f = txm__calloc(1, sizeof *f);
    char *name_copy = txm__strdup(name);
    char *help_copy = help != NULL ? txm__strdup(help) : NULL;
    if (f == NULL || name_copy == NULL || (help != NULL && help_copy == NULL)) {
        free(f);
        free(name_copy);
        free(help_copy);
        return -1;
    }
    *f =
        (struct family){.name = name_copy, .help = help_copy, .kind = kind, .head = -1, .tail = -1};
    m->families[m->nfamilies] = f;
    return m->nfamilies++;
}

/* Finds or creates the series name{labels}; sets *out to its index. */
static txm_status series_get(txm_metrics *m, const char *name, const char *help, enum kind kind,
                             const char *labels, int *out, txm_error *err)
{
    uint32_t slot = hash_key(name, labels) & (HASH_SLOTS - 1);
    for (; m->slots[slot] >= 0; slot = (slot + 1) & (HASH_SLOTS - 1)) {
        struct series *s = m->series[m->slots[slot]];
        struct family *f = m->families[s->family];
        if (strcmp(f->name, name) == 0 && strcmp(s->labels, labels) == 0) {
            if (f->kind != kind)
                return txm_errf(err, TXM_INVALID, "metrics: %s has another type", name);
            *out = m->slots[slot];
            return TXM_OK;
        }
    }
    if (m->nseries == TXM_METRICS_SERIES_MAX)
        return txm_errf(err, TXM_TOO_BIG, "metrics: more than %d series", TXM_METRICS_SERIES_MAX);
    int fi = family_get(m, name, help, kind);
    if (fi == -2)
        return txm_errf(err, TXM_INVALID, "metrics: %s has another type", name);
    if (fi == -3)
        return txm_errf(err, TXM_TOO_BIG, "metrics: too many families");
    struct series *s = fi >= 0 ? txm__calloc(1, sizeof *s) : NULL;
    char *labels_copy = s != NULL ? txm__strdup(labels) : NULL;
    if (labels_copy == NULL) {
        free(s);
        return txm_errf(err, TXM_NOMEM, "metrics: out of memory");
    }
    struct family *f = m->families[fi];
    int idx = m->nseries++;
    *s = (struct series){.family = fi, .next = -1, .labels = labels_copy};
    if (f->tail >= 0)
        m->series[f->tail]->next = idx;
    else
        f->head = idx;
    f->tail = idx;
    m->series[idx] = s;
    m->slots[slot] = idx;
    *out = idx;
    return TXM_OK;
}

static void apply(struct series *s, enum op op, double v, const struct callback *cb)
{
    switch (op) {
    case OP_ADD:
        s->value += v;
        break;
    case OP_SET:
        s->value = v;
        break;
    case OP_OBSERVE: {
        int b = 0;
        while (b < BUCKETS && v > bucket_le[b])
            b++;
        s->bucket[b]++;
        s->count++;
        s->sum += v;
        break;
    }
    case OP_FN:
        s->fn = cb->value;
        s->hist_fn = cb->histogram;
        s->fn_ctx = cb->ctx;
        break;
    }
}

static txm_status update(txm_metrics *m, const char *name, const char *help,
                         const char *const *labels, enum kind kind, enum op op, double v,
                         const struct callback *cb, txm_error *err)
{
    if (m == NULL)
        return txm_errf(err, TXM_INVALID, "metrics: NULL registry");
    if (op != OP_FN && !isfinite(v))
        return txm_errf(err, TXM_INVALID, "metrics: value of %s is not finite",
                        name != NULL ? name : "?");
    txm_status st = check_name(name, help, kind, err);
    char text[LABELS_TEXT_MAX + 1];
    if (st == TXM_OK)
        st = canonical_labels(labels, text, err);
    if (st != TXM_OK)
        return st;
    pthread_mutex_lock(&m->lock);
    int idx = -1;
    st = series_get(m, name, help, kind, text, &idx, err);
    if (st == TXM_OK)
        apply(m->series[idx], op, v, cb);
    pthread_mutex_unlock(&m->lock);
    return st;
}

txm_status txm_metrics_counter_add(txm_metrics *m, const char *name, const char *help,
                                   const char *const *labels, double delta, txm_error *err)
{
    if (!(delta >= 0))
        return txm_errf(err, TXM_INVALID, "metrics: counter delta must be >= 0");
    return update(m, name, help, labels, KIND_COUNTER, OP_ADD, delta, NULL, err);
}

txm_status txm_metrics_gauge_set(txm_metrics *m, const char *name, const char *help,
                                 const char *const *labels, double value, txm_error *err)
{
    return update(m, name, help, labels, KIND_GAUGE, OP_SET, value, NULL, err);
}

txm_status txm_metrics_gauge_add(txm_metrics *m, const char *name, const char *help,
                                 const char *const *labels, double delta, txm_error *err)
{
    return update(m, name, help, labels, KIND_GAUGE, OP_ADD, delta, NULL, err);
}

txm_status txm_metrics_histogram_observe(txm_metrics *m, const char *name, const char *help,
                                         const char *const *labels, double value_s, txm_error *err)
{
    return update(m, name, help, labels, KIND_HISTOGRAM, OP_OBSERVE, value_s, NULL, err);
}

txm_status txm_metrics_gauge_fn(txm_metrics *m, const char *name, const char *help,
                                const char *const *labels, txm_metrics_value_fn fn, void *ctx,
                                txm_error *err)
{
    if (fn == NULL)
        return txm_errf(err, TXM_INVALID, "metrics: NULL callback");
    struct callback cb = {.value = fn, .ctx = ctx};
    return update(m, name, help, labels, KIND_GAUGE, OP_FN, 0, &cb, err);
}

txm_status txm_metrics_counter_fn(txm_metrics *m, const char *name, const char *help,
                                  const char *const *labels, txm_metrics_value_fn fn, void *ctx,
                                  txm_error *err)
{
    if (fn == NULL)
        return txm_errf(err, TXM_INVALID, "metrics: NULL callback");
    struct callback cb = {.value = fn, .ctx = ctx};
    return update(m, name, help, labels, KIND_COUNTER, OP_FN, 0, &cb, err);
}

txm_status txm_metrics_histogram_fn(txm_metrics *m, const char *name, const char *help,
                                    const char *const *labels, txm_metrics_histogram_data_fn fn,
                                    void *ctx, txm_error *err)
{
    if (fn == NULL)
        return txm_errf(err, TXM_INVALID, "metrics: NULL callback");
    struct callback cb = {.histogram = fn, .ctx = ctx};
    return update(m, name, help, labels, KIND_HISTOGRAM, OP_FN, 0, &cb, err);
}

/* ---- rendering ---- */

/* A growing text buffer capped at TXM_METRICS_RENDER_MAX; the first failure
 * sticks in st and later appends do nothing. */
typedef struct sbuf {
    char *data;
    size_t len; /* bytes used, without the NUL */
    size_t cap; /* bytes allocated */
    txm_status st;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->st != TXM_OK)
        return;
    if (n > TXM_METRICS_RENDER_MAX - b->len) {
        b->st = TXM_TOO_BIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap < 4096 ? 4096 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = txm__realloc(b->data, cap);
        if (p == NULL) {
            b->st = TXM_NOMEM;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Formats v as a Prometheus float: integers exactly, others with the fewest
 * digits that read back as the same double; NaN and +Inf/-Inf by name. */
static void format_num(double v, char out[40])
{
    if (isnan(v)) {
        snprintf(out, 40, "NaN");
    } else if (isinf(v)) {
        snprintf(out, 40, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v > -9007199254740992.0 && v < 9007199254740992.0 && (double)(int64_t)v == v) {
        snprintf(out, 40, "%" PRId64, (int64_t)v); /* |v| < 2^53: exact as an integer */
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, 40, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void sb_num(sbuf *b, double v)
{
    char text[40];
    format_num(v, text);
    sb_str(b, text);
}

/* Writes a HELP text escaped as 0.0.4 requires: \\ and \n. */
static void sb_help(sbuf *b, const char *help)
{
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\')
            sb_put(b, "\\\\", 2);
        else if (*p == '\n')
            sb_put(b, "\\n", 2);
        else
            sb_put(b, p, 1);
    }
}

/* Writes `name[suffix]{labels[,extra]} value\n`. */
static void sb_sample(sbuf *b, const char *name, const char *suffix, const char *labels,
                      const char *extra, double v)
{
    sb_str(b, name);
    sb_str(b, suffix);
    if (labels[0] != '\0' || extra != NULL) {
        sb_put(b, "{", 1);
        sb_str(b, labels);
        if (labels[0] != '\0' && extra != NULL)
            sb_put(b, ",", 1);
        if (extra != NULL)
            sb_str(b, extra);
        sb_put(b, "}", 1);
    }
    sb_put(b, " ", 1);
    sb_num(b, v);
    sb_put(b, "\n", 1);
}

/* Writes one histogram series: bounds[0..n_bounds) and +Inf as cumulative
 * _bucket lines from the per-bucket counts in buckets, then _sum, _count. */
static void render_histogram(sbuf *b, const char *name, const char *labels, const double *bounds,
                             size_t n_bounds, const uint64_t *buckets, uint64_t count, double sum)
{
    uint64_t cumulative = 0;
    char le[48];
    for (size_t i = 0; i <= n_bounds; i++) {
        cumulative += buckets[i];
        if (i == n_bounds) {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        } else {
            char num[40];
            format_num(bounds[i], num);
            snprintf(le, sizeof le, "le=\"%s\"", num);
        }
        sb_sample(b, name, "_bucket", labels, le, (double)cumulative);
    }
    sb_sample(b, name, "_sum", labels, NULL, sum);
    sb_sample(b, name, "_count", labels, NULL, (double)count);
}

/* Whether a callback's histogram can be rendered: the bounds must be few
 * enough, finite and increasing (le labels in order, none repeated), and
 * the count must be the +Inf bucket, as the format requires. */
static bool histogram_data_ok(const txm_metrics_histogram_data *h)
{
    if (h->n_bounds > TXM_METRICS_HISTOGRAM_BOUNDS_MAX)
        return false;
    uint64_t total = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        if (!isfinite(h->bounds[i]) || (i > 0 && !(h->bounds[i] > h->bounds[i - 1])))
            return false;
        total += h->buckets[i];
    }
    return total + h->buckets[h->n_bounds] == h->count;
}

/* The value of a callback series, computed before the text is written. */
struct cb_value {
    txm_metrics_value_fn fn;               /* NULL when the series has no value callback */
    txm_metrics_histogram_data_fn hist_fn; /* NULL when it has no histogram callback */
    void *ctx;
    double value;                     /* what fn gave */
    txm_metrics_histogram_data *hist; /* where hist_fn writes; NULL without hist_fn */
    bool ok; /* the callback returned TXM_OK (and, for a histogram, valid data) */
};

/* The callbacks of a render, copied under the lock and run without it. */
struct snapshot {
    struct cb_value *cbs;              /* indexed like txm_metrics.series */
    txm_metrics_histogram_data *hists; /* one per histogram callback */
    int limit;                         /* series that existed at the copy */
    int nfamilies;                     /* families that existed at the copy */
};

static void render_series(sbuf *b, const struct family *f, const struct series *s,
                          const struct cb_value *cb)
{
    if (f->kind == KIND_HISTOGRAM) {
        if (s->hist_fn == NULL) {
            render_histogram(b, f->name, s->labels, bucket_le, BUCKETS, s->bucket, s->count,
                             s->sum);
        } else if (cb->hist_fn != NULL && cb->ok) { /* else failed, or made one after the copy */
            const txm_metrics_histogram_data *h = cb->hist;
            render_histogram(b, f->name, s->labels, h->bounds, h->n_bounds, h->buckets, h->count,
                             h->sum);
        }
        return;
    }
    double v = s->value;
    if (s->fn != NULL) {
        if (cb->fn == NULL || !cb->ok) /* failed, or made a callback after the copy */
            return;
        v = cb->value;
    }
    sb_sample(b, f->name, "", s->labels, NULL, v);
}

static void render_family(sbuf *b, const txm_metrics *m, const struct family *f,
                          const struct snapshot *snap)
{
    static const char *const type_name[] = {"counter", "gauge", "histogram"};
    if (f->help != NULL && f->help[0] != '\0') {
        sb_str(b, "# HELP ");
        sb_str(b, f->name);
        sb_put(b, " ", 1);
        sb_help(b, f->help);
        sb_put(b, "\n", 1);
    }
    sb_str(b, "# TYPE ");
    sb_str(b, f->name);
    sb_put(b, " ", 1);
    sb_str(b, type_name[f->kind]);
    sb_put(b, "\n", 1);
    for (int i = f->head; i >= 0 && i < snap->limit; i = m->series[i]->next)
        render_series(b, f, m->series[i], &snap->cbs[i]);
}

/* Copies the callback of every series (lock held) whose family is selected
 * (every family when selected is NULL), with room for the data of each
 * histogram callback. Owns: snap's arrays (snapshot_fini). */
static txm_status collect_callbacks(txm_metrics *m, const bool *selected, struct snapshot *snap)
{
    snap->limit = m->nseries;
    snap->nfamilies = m->nfamilies;
    size_t nhist = 0;
    for (int i = 0; i < m->nseries; i++)
        nhist += m->series[i]->hist_fn != NULL;
    snap->cbs = txm__calloc((size_t)m->nseries + 1, sizeof *snap->cbs);
    snap->hists = txm__calloc(nhist + 1, sizeof *snap->hists);
    if (snap->cbs == NULL || snap->hists == NULL)
        return TXM_NOMEM;
    size_t k = 0;
    for (int i = 0; i < m->nseries; i++) {
        const struct series *s = m->series[i];
        if (selected != NULL && !selected[s->family])
            continue;
        snap->cbs[i] = (struct cb_value){.fn = s->fn, .hist_fn = s->hist_fn, .ctx = s->fn_ctx};
        if (s->hist_fn != NULL)
            snap->cbs[i].hist = &snap->hists[k++];
    }
    return TXM_OK;
}

static void snapshot_fini(struct snapshot *snap)
{
    free(snap->cbs);
    free(snap->hists);
}

/* Runs the callbacks of snap; the registry's lock must not be held. */
static void run_callbacks(struct snapshot *snap)
{
    for (int i = 0; i < snap->limit; i++) {
        struct cb_value *cb = &snap->cbs[i];
        if (cb->fn != NULL)
            cb->ok = cb->fn(cb->ctx, &cb->value) == TXM_OK;
        else if (cb->hist_fn != NULL)
            cb->ok = cb->hist_fn(cb->ctx, cb->hist) == TXM_OK && histogram_data_ok(cb->hist);
    }
}

/* Marks the families named in names (all when n is 0) in selected. */
static void select_families(const txm_metrics *m, const char *const *names, size_t n,
                            bool *selected)
{
    for (int i = 0; i < m->nfamilies; i++) {
        selected[i] = n == 0;
        for (size_t k = 0; k < n && !selected[i]; k++)
            selected[i] = names[k] != NULL && strcmp(m->families[i]->name, names[k]) == 0;
    }
}

txm_status txm_metrics_render_only(txm_metrics *m, const char *const *names, size_t n, char **out,
                                   size_t *len, txm_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (m == NULL || out == NULL || (n > 0 && names == NULL))
        return txm_errf(err, TXM_INVALID, "metrics_render: NULL argument");
    struct snapshot snap = {0};
    pthread_mutex_lock(&m->lock);
    bool *selected = txm__calloc((size_t)m->nfamilies + 1, sizeof *selected);
    txm_status st = TXM_NOMEM;
    if (selected != NULL) {
        select_families(m, names, n, selected);
        st = collect_callbacks(m, selected, &snap);
    }
    pthread_mutex_unlock(&m->lock);
    if (st != TXM_OK) {
        free(selected);
        snapshot_fini(&snap);
        return txm_errf(err, st, "metrics_render: out of memory");
    }
    /* Callbacks run unlocked: they may block or update this registry. */
    run_callbacks(&snap);
    sbuf b = {0};
    sb_put(&b, "", 0); /* an empty registry renders as "" rather than NULL */
    pthread_mutex_lock(&m->lock);
    /* Families made after the copy are not in selected: render up to its end. */
    for (int i = 0; i < m->nfamilies && b.st == TXM_OK; i++)
        if (m->families[i]->head >= 0 && m->families[i]->head < snap.limit && i < snap.nfamilies &&
            selected[i])
            render_family(&b, m, m->families[i], &snap);
    pthread_mutex_unlock(&m->lock);
    free(selected);
    snapshot_fini(&snap);
    if (b.st != TXM_OK) {
        free(b.data);
        return txm_errf(err, b.st, "metrics_render: %s", txm_strerror(b.st));
    }
    *out = b.data;
    if (len != NULL)
        *len = b.len;
    return TXM_OK;
}

txm_status txm_metrics_render(txm_metrics *m, char **out, size_t *len, txm_error *err)
{
    return txm_metrics_render_only(m, NULL, 0, out, len, err);
}

static txm_status read_not_dispatched(void *ctx, double *value)
{
    int64_t count = 0;
    txm_status st = txm_outbox_count_not_dispatched(ctx, &count, NULL);
    *value = (double)count;
    return st;
}

static txm_status read_oldest_age(void *ctx, double *value)
{
    int64_t age_us = 0;
    bool found = false;
    txm_status st = txm_outbox_oldest_age(ctx, &age_us, &found, NULL);
    /* A clock step can make the newest row look younger than zero. */
    *value = found && age_us > 0 ? (double)age_us / 1e6 : 0.0;
    return st;
}

txm_status txm_metrics_add_outbox(txm_metrics *m, txm_db *db, txm_error *err)
{
    if (m == NULL || db == NULL)
        return txm_errf(err, TXM_INVALID, "metrics_add_outbox: NULL argument");
    txm_status st = txm_metrics_gauge_fn(m, "txmsg_outbox_not_dispatched",
                                         "Outbox messages not yet dispatched.", NULL,
                                         read_not_dispatched, db, err);
    if (st == TXM_OK)
        st = txm_metrics_gauge_fn(m, "txmsg_outbox_oldest_not_dispatched_age_seconds",
                                  "Age of the oldest not-dispatched outbox message; 0 if none.",
                                  NULL, read_oldest_age, db, err);
    return st;
}
