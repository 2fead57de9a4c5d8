/* The JSON documents of dead letters and their groups. */
#include "dlq_doc.h"

/* An RFC 3339 string, or null for 0 (unknown). */
static json_t *time_json(int64_t us)
{
    char text[TXM_TIME_LEN + 1];
    if (us == 0)
        return json_null();
    txm_time_format(us, text);
    return json_string(text);
}

json_t *cli_dlq_delivery_json(const txm_delivery *d)
{
    char fp[TXM_DLQ_FINGERPRINT_MAX + 1], group[TXM_DLQ_GROUP_ID_LEN + 1];
    txm_dlq_fingerprint(txm_delivery_last_error(d), fp);
    txm_dlq_group_id(fp, group);
    json_t *o =
        json_pack("{s:s, s:s, s:i, s:s, s:s, s:o}", "message_id", txm_delivery_message_id(d),
                  "topic", txm_delivery_topic(d), "receive_count", txm_delivery_receive_count(d),
                  "last_error", txm_delivery_last_error(d), "group", group, "dead_lettered_at",
                  time_json(txm_delivery_dead_lettered_at_us(d)));
    if (o == NULL)
        return NULL;
    size_t len = 0;
    const char *body = txm_delivery_body(d, &len);
    json_t *b = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (b == NULL)
        b = json_stringn(body, len); /* NULL if not UTF-8: the key is then absent */
    json_object_set_new(o, "body", b);
    return o;
}

json_t *cli_dlq_list_json(const char *queue, txm_delivery *const *list, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, cli_dlq_delivery_json(list[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr == NULL ? NULL
                       : json_pack("{s:s, s:I, s:o}", "queue", queue, "count", (json_int_t)n,
                                   "messages", arr);
}

static json_t *group_json(const txm_dlq_group *g)
{
    return json_pack("{s:s, s:s, s:I, s:o, s:o, s:{s:s, s:s}}", "id", g->id, "fingerprint",
                     g->fingerprint, "count", (json_int_t)g->count, "first_seen",
                     time_json(g->first_seen_us), "last_seen", time_json(g->last_seen_us), "sample",
                     "message_id", g->sample_id, "last_error", g->sample_error);
}

json_t *cli_dlq_groups_json(const char *queue, const txm_dlq_group *g, size_t n, bool truncated)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, group_json(&g[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr == NULL ? NULL
                       : json_pack("{s:s, s:b, s:o}", "queue", queue, "truncated", truncated,
                                   "groups", arr);
}
