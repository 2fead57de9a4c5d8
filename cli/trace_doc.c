/* One business flow across services: read, merge and the JSON document. */
#include "trace_doc.h"

#include <stdlib.h>
#include <string.h>

/* Appends the entries of service i to tr->items. */
static txm_status read_service(cli_trace_doc *tr, const char *corr, size_t limit, size_t i,
                               txm_error *err)
{
    cli_trace_source *s = &tr->services[i];
    if (s->db == NULL)
        return txm_errf(err, TXM_UNAVAILABLE, "service %s: its database is not open", s->name);
    s->messages_mode = txm_outbox_mode_get(s->db) == TXM_OUTBOX_MESSAGES;
    txm_trace_entry *list = NULL;
    size_t count = 0;
    txm_error e;
    txm_status st = txm_trace_list(s->db, corr, limit, &list, &count, &e);
    if (st != TXM_OK)
        return txm_errf(err, st, "service %s: cannot trace: %s%s", s->name, e.text,
                        strstr(e.text, "correlation_id") != NULL
                            ? " (the schema is older than version 3: run a service of this "
                              "txmsg version on it once to migrate it)"
                            : "");
    s->truncated = count == limit;
    if (count == 0)
        return TXM_OK;
    cli_trace_item *grown = realloc(tr->items, (tr->n + count) * sizeof *grown);
    if (grown == NULL) {
        txm_free(list);
        return txm_errf(err, TXM_NOMEM, "out of memory");
    }
    tr->items = grown;
    for (size_t k = 0; k < count; k++) {
        grown[tr->n].e = list[k];
        grown[tr->n].service = i;
        tr->n++;
    }
    txm_free(list);
    return TXM_OK;
}

static int by_time(const void *pa, const void *pb)
{
    const cli_trace_item *a = pa, *b = pb;
    if (a->e.at_us != b->e.at_us)
        return a->e.at_us < b->e.at_us ? -1 : 1;
    if (a->e.kind != b->e.kind)
        return a->e.kind == TXM_TRACE_OUTBOX ? -1 : 1;
    if (a->service != b->service)
        return a->service < b->service ? -1 : 1;
    return strcmp(a->e.message_id, b->e.message_id);
}

txm_status cli_trace_read(cli_trace_doc *tr, const char *correlation_id, size_t limit,
                          size_t *failed, txm_error *err)
{
    tr->items = NULL;
    tr->n = 0;
    for (size_t i = 0; i < tr->n_services; i++) {
        txm_status st = read_service(tr, correlation_id, limit, i, err);
        if (st != TXM_OK) {
            *failed = i;
            return st;
        }
    }
    if (tr->n > 1)
        qsort(tr->items, tr->n, sizeof *tr->items, by_time);
    /* Each service gave its oldest entries; the merge keeps the oldest. */
    if (tr->n > limit)
        tr->n = limit;
    return TXM_OK;
}

bool cli_trace_is_pending(const cli_trace_doc *tr, size_t i)
{
    if (tr->items[i].e.kind != TXM_TRACE_OUTBOX)
        return false;
    for (size_t k = 0; k < tr->n; k++)
        if (tr->items[k].e.kind == TXM_TRACE_INBOX &&
            strcmp(tr->items[k].e.message_id, tr->items[i].e.message_id) == 0)
            return false;
    return true;
}

const char *cli_trace_kind_name(txm_trace_kind k)
{
    return k == TXM_TRACE_OUTBOX ? "outbox" : "inbox";
}

static json_t *entry_json(const cli_trace_doc *tr, const cli_trace_item *m, bool at_ms)
{
    const txm_trace_entry *e = &m->e;
    char at[TXM_TIME_LEN + 1];
    txm_time_format(e->at_us, at);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "time", at, "service",
                          tr->services[m->service].name, "kind", cli_trace_kind_name(e->kind),
                          "message_id", e->message_id, "topic", e->topic, "source", e->source);
    if (o == NULL)
        return NULL;
    int bad = e->kind == TXM_TRACE_OUTBOX
                  ? json_object_set_new(o, "aggregate_id", json_string(e->aggregate_id)) |
                        json_object_set_new(o, "dispatched", json_boolean(e->dispatched))
                  : json_object_set_new(o, "subscription", json_string(e->subscription));
    if (!bad && at_ms)
        bad = json_object_set_new(o, "at_ms", json_integer(e->at_us / 1000));
    if (bad != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *cli_trace_json(const cli_trace_doc *tr, const char *correlation_id, bool at_ms)
{
    json_t *services = json_array(), *entries = json_array(), *waiting = json_array();
    int bad = services == NULL || entries == NULL || waiting == NULL;
    for (size_t i = 0; !bad && i < tr->n_services; i++)
        bad = json_array_append_new(
            services, json_pack("{s:s, s:s, s:b}", "name", tr->services[i].name, "outbox_mode",
                                tr->services[i].messages_mode ? "messages" : "table", "truncated",
                                tr->services[i].truncated));
    for (size_t i = 0; !bad && i < tr->n; i++) {
        bad = json_array_append_new(entries, entry_json(tr, &tr->items[i], at_ms));
        if (!bad && cli_trace_is_pending(tr, i))
            bad = json_array_append_new(waiting, json_string(tr->items[i].e.message_id));
    }
    json_t *doc = bad ? NULL
                      : json_pack("{s:s, s:O, s:O, s:O}", "correlation_id", correlation_id,
                                  "services", services, "entries", entries, "waiting", waiting);
    json_decref(services);
    json_decref(entries);
    json_decref(waiting);
    return doc;
}

void cli_trace_fini(cli_trace_doc *tr)
{
    free(tr->items);
    tr->items = NULL;
    tr->n = 0;
}
