/* browser-dlq-seed: puts dead letters into a queue for the console's browser
 * tests, through the public transport API. It publishes COUNT well-formed
 * events on TOPIC, receives them from QUEUE and dead-letters each with
 * REASON, as a consumer does with a message it cannot handle. Run it while
 * no other process consumes QUEUE, so that it receives every message.
 *   browser-dlq-seed BROKER_URL TOPIC QUEUE COUNT REASON
 * The events are order--cancelled-shaped ({"order_id", "customer_id"}, both
 * fresh UUIDs), which the Customers service handles without error once
 * redriven (no credit is reserved for an unknown customer). Exit 0 when
 * COUNT messages were dead-lettered, 1 on failure, 2 on usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <txmsg/txmsg.h>

#define SEED_MAX 1000
#define RECEIVE_ROUNDS 50 /* receives of up to 500 ms each before giving up */

/* Publishes count events on topic. */
static txm_status publish(txm_transport *t, const char *topic, long count, txm_error *err)
{
    txm_status st = TXM_OK;
    for (long i = 0; st == TXM_OK && i < count; i++) {
        char order[TXM_UUID_LEN + 1], customer[TXM_UUID_LEN + 1], payload[160];
        txm_msg *m = NULL;
        st = txm_uuid_v7(order, err);
        if (st == TXM_OK)
            st = txm_uuid_v7(customer, err);
        if (st == TXM_OK) {
            snprintf(payload, sizeof payload, "{\"order_id\":\"%s\",\"customer_id\":\"%s\"}", order,
                     customer);
            st = txm_msg_new(topic, order, order, payload, &m, err);
        }
        if (st == TXM_OK)
            st = txm_msg_set_source(m, "browser-dlq-seed", err);
        if (st == TXM_OK) {
            const txm_msg *one[] = {m};
            st = txm_transport_publish_msgs(t, one, 1, NULL, err);
        }
        txm_msg_free(m);
    }
    return st;
}

/* Receives from queue and dead-letters with reason until count are moved. */
static txm_status dead_letter(txm_transport *t, const char *queue, long count, const char *reason,
                              txm_error *err)
{
    long moved = 0;
    txm_status st = TXM_OK;
    for (int round = 0; st == TXM_OK && moved < count && round < RECEIVE_ROUNDS; round++) {
        txm_delivery **ds = NULL;
        size_t n = 0;
        st = txm_transport_receive(t, queue, (size_t)(count - moved), 500, &ds, &n, err);
        for (size_t i = 0; i < n; i++) {
            if (st == TXM_OK)
                st = txm_transport_dead_letter(t, ds[i], reason, err);
            if (st == TXM_OK)
                moved++;
        }
        txm_delivery_list_free(ds, n);
    }
    if (st == TXM_OK && moved < count)
        st = txm_errf(err, TXM_TIMEOUT, "received only %ld of %ld messages from %s", moved, count,
                      queue);
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: browser-dlq-seed BROKER_URL TOPIC QUEUE COUNT REASON\n");
        return 2;
    }
    char *end = NULL;
    long count = strtol(argv[4], &end, 10);
    if (*end != '\0' || count < 1 || count > SEED_MAX) {
        fprintf(stderr, "browser-dlq-seed: COUNT must be 1..%d\n", SEED_MAX);
        return 2;
    }
    txm_error err;
    txm_error_clear(&err);
    txm_transport *t = NULL;
    txm_status st = txm_transport_open(argv[1], NULL, &t, &err);
    if (st == TXM_OK)
        st = txm_transport_declare_subscription(t, argv[2], argv[3], NULL, &err);
    if (st == TXM_OK)
        st = publish(t, argv[2], count, &err);
    if (st == TXM_OK)
        st = dead_letter(t, argv[3], count, argv[5], &err);
    txm_transport_close(t);
    if (st != TXM_OK) {
        fprintf(stderr, "browser-dlq-seed: %s: %s\n", txm_strerror(st), err.text);
        return 1;
    }
    return 0;
}
