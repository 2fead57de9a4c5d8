/* A consumer process for the crash tests: applies each message of one
 * queue as a row in `effects`, slowly, until SIGTERM (graceful) or SIGKILL.
 * With TXM_TEST_KILL_AFTER_COMMIT set it SIGKILLs itself right after its
 * first batch committed, before the batch is acknowledged.
 *   consumer_proc DB_URL BROKER_URL TOPIC QUEUE */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "txmsg/txmsg.h"

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static txm_status apply_effect(void *ctx, txm_uow *uow, const txm_msg *msg, txm_error *err)
{
    (void)ctx;
    txm_value p = TXM_TEXT(txm_msg_id(msg));
    txm_status st =
        txm_uow_exec(uow, "INSERT INTO effects (message_id) VALUES ($1)", &p, 1, NULL, NULL, err);
    struct timespec pause = {0, 2 * 1000000L}; /* widen the window a kill lands in */
    nanosleep(&pause, NULL);
    return st;
}

static void kill_self(void *ctx, const char *queue, size_t handled)
{
    (void)ctx;
    fprintf(stderr, "consumer_proc: %zu messages of %s committed, not acknowledged: SIGKILL\n",
            handled, queue);
    raise(SIGKILL);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: consumer_proc DB_URL BROKER_URL TOPIC QUEUE\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);

    txm_error err;
    txm_db *db = NULL;
    txm_transport *t = NULL;
    txm_consumer *c = NULL;
    txm_handler_options ho;
    txm_handler_options_init(&ho);
    ho.batch_size = 32;
    ho.wait_ms = 100;
    ho.subscription.visibility_timeout_ms = 1000;
    txm_status st = txm_db_open(argv[1], NULL, &db, &err);
    if (st == TXM_OK)
        st = txm_transport_open(argv[2], NULL, &t, &err);
    txm_consumer_options co;
    txm_consumer_options_init(&co);
    if (getenv("TXM_TEST_KILL_AFTER_COMMIT") != NULL)
        co.on_commit = kill_self;
    if (st == TXM_OK)
        st = txm_consumer_open(db, t, &co, &c, &err);
    if (st == TXM_OK)
        st = txm_consumer_subscribe(c, argv[3], argv[4], apply_effect, NULL, &ho, &err);
    if (st == TXM_OK)
        st = txm_consumer_start(c, &err);
    if (st != TXM_OK) {
        fprintf(stderr, "consumer_proc: %s\n", err.text);
    } else {
        fprintf(stderr, "consumer_proc: running\n");
        while (!stop_requested) {
            struct timespec pause = {0, 10 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    txm_consumer_close(c);
    txm_transport_close(t);
    txm_db_close(db);
    return st == TXM_OK ? 0 : 1;
}
