/* Embedded broker: fan-out, leases, dead-letter queue, FIFO order,
 * durability, cross-handle wake-up latency and idle CPU, thread safety. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "txmsg/transport.h"

typedef struct fixture {
    char dir[64];  /* mkdtemp directory holding the broker file */
    char url[128]; /* embedded:<dir>/broker.db */
    txm_transport *t;
} fixture;

static int64_t mono_us(void)
{
    struct timespec ts = {0};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Closes the broker and removes the temporary directory with its files. */
static int teardown(void **state)
{
    fixture *fx = *state;
    txm_transport_close(fx->t);
    DIR *d = opendir(fx->dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d != NULL)
        closedir(d);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/txm-embedded-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->url, sizeof fx->url, "embedded:%s/broker.db", fx->dir);
    txm_error err;
    if (txm_transport_open(fx->url, NULL, &fx->t, &err) != TXM_OK) {
        fprintf(stderr, "open %s: %s\n", fx->url, err.text);
        *state = fx;
        teardown(state);
        return -1;
    }
    *state = fx;
    return 0;
}

static void subscribe(txm_transport *t, const char *topic, const char *queue, int max_receive,
                      int visibility_ms)
{
    txm_subscription_options o;
    txm_subscription_options_init(&o);
    o.max_receive_count = max_receive;
    o.visibility_timeout_ms = visibility_ms;
    txm_error err;
    txm_status st = txm_transport_declare_subscription(t, topic, queue, &o, &err);
    if (st != TXM_OK)
        fprintf(stderr, "declare_subscription: %s\n", err.text);
    assert_int_equal(st, TXM_OK);
}

static void publish(txm_transport *t, const char *topic, const char *id, const char *body)
{
    txm_outgoing m = {topic, id, body, strlen(body)};
    txm_status result = TXM_BROKER;
    txm_error err;
    txm_status st = txm_transport_publish(t, &m, 1, &result, &err);
    if (st != TXM_OK)
        fprintf(stderr, "publish: %s\n", err.text);
    assert_int_equal(st, TXM_OK);
    assert_int_equal(result, TXM_OK);
}

/* Receives at most one message; NULL when none came within wait_ms. */
static txm_delivery *receive_one(txm_transport *t, const char *queue, int wait_ms)
{
    txm_delivery **list = NULL;
    size_t n = 0;
    txm_error err;
    txm_status st = txm_transport_receive(t, queue, 1, wait_ms, &list, &n, &err);
    if (st != TXM_OK)
        fprintf(stderr, "receive: %s\n", err.text);
    assert_int_equal(st, TXM_OK);
    txm_delivery *d = n == 1 ? list[0] : NULL;
    free(list);
    return d;
}

static int64_t depth(txm_transport *t, const char *queue)
{
    int64_t n = -1;
    assert_int_equal(txm_transport_queue_depth(t, queue, &n, NULL), TXM_OK);
    return n;
}

static void embedded_publish_fans_out_to_every_subscribed_queue(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "order--created", "customer--order-created", 3, 30000);
    subscribe(fx->t, "order--created", "audit--order-created", 3, 30000);
    publish(fx->t, "order--created", "m-1", "{\"n\":1}");
    const char *queues[] = {"customer--order-created", "audit--order-created"};
    for (size_t i = 0; i < 2; i++) {
        txm_delivery *d = receive_one(fx->t, queues[i], 0);
        assert_non_null(d);
        size_t len = 0;
        assert_string_equal(txm_delivery_body(d, &len), "{\"n\":1}");
        assert_int_equal(len, 7);
        assert_string_equal(txm_delivery_message_id(d), "m-1");
        assert_string_equal(txm_delivery_topic(d), "order--created");
        assert_string_equal(txm_delivery_queue(d), queues[i]);
        assert_int_equal(txm_delivery_receive_count(d), 1);
        assert_string_equal(txm_delivery_last_error(d), "");
        assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
        txm_delivery_free(d);
        assert_null(receive_one(fx->t, queues[i], 0));
        assert_int_equal(depth(fx->t, queues[i]), 0);
    }
}

static void embedded_publish_to_topic_without_subscribers_is_dropped(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "order--created", "q1", 3, 30000);
    assert_int_equal(txm_transport_declare_topic(fx->t, "order--cancelled", NULL), TXM_OK);
    publish(fx->t, "order--cancelled", "m-1", "{}");
    publish(fx->t, "never--declared", "m-2", "{}");
    assert_int_equal(depth(fx->t, "q1"), 0);
    assert_null(receive_one(fx->t, "q1", 0));
}

static void embedded_unacked_message_is_redelivered_after_lease_with_count_2(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 150);
    publish(fx->t, "t", "m-1", "x");
    txm_delivery *first = receive_one(fx->t, "q", 0);
    assert_non_null(first);
    assert_null(receive_one(fx->t, "q", 0)); /* leased */
    assert_int_equal(depth(fx->t, "q"), 1);
    /* A receiver waiting on the queue wakes when the lease ends, no publish needed. */
    int64_t t0 = mono_us();
    txm_delivery *second = receive_one(fx->t, "q", 2000);
    int64_t waited_ms = (mono_us() - t0) / 1000;
    assert_non_null(second);
    assert_int_equal(txm_delivery_receive_count(second), 2);
    assert_string_equal(txm_delivery_message_id(second), "m-1");
    assert_true(waited_ms < 150 + 120);
    assert_int_equal(txm_transport_ack(fx->t, second, NULL), TXM_OK);
    txm_delivery_free(second);
    txm_delivery_free(first);
}

static void embedded_nack_with_delay_hides_message_until_delay(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 5, 30000);
    publish(fx->t, "t", "m-1", "x");
    txm_delivery *d = receive_one(fx->t, "q", 0);
    assert_non_null(d);
    assert_int_equal(txm_transport_nack(fx->t, d, 200, "handler failed", NULL), TXM_OK);
    txm_delivery_free(d);
    assert_null(receive_one(fx->t, "q", 50));
    d = receive_one(fx->t, "q", 1000);
    assert_non_null(d);
    assert_int_equal(txm_delivery_receive_count(d), 2);
    assert_string_equal(txm_delivery_last_error(d), "handler failed");
    txm_error err;
    assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
    assert_int_equal(txm_transport_ack(fx->t, d, &err), TXM_STATE); /* settled */
    txm_delivery_free(d);
}

/* Receives and nacks the message of q once; returns its receive count. */
static int receive_and_fail(txm_transport *t, const char *queue, const char *reason)
{
    txm_delivery *d = receive_one(t, queue, 0);
    assert_non_null(d);
    int count = txm_delivery_receive_count(d);
    assert_int_equal(txm_transport_nack(t, d, 0, reason, NULL), TXM_OK);
    txm_delivery_free(d);
    return count;
}

static void embedded_max_receive_count_moves_to_dlq_then_redrive_and_purge(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 30000);
    publish(fx->t, "t", "m-1", "{\"payload\":true}");
    assert_int_equal(receive_and_fail(fx->t, "q", "boom 1"), 1);
    assert_int_equal(receive_and_fail(fx->t, "q", "boom 2"), 2);
    assert_int_equal(receive_and_fail(fx->t, "q", "boom 3"), 3);
    assert_null(receive_one(fx->t, "q", 0));
    assert_int_equal(depth(fx->t, "q"), 0);
    assert_int_equal(depth(fx->t, "q--dlq"), 1);

    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, "q", 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_delivery_body(list[0], NULL), "{\"payload\":true}");
    assert_string_equal(txm_delivery_message_id(list[0]), "m-1");
    assert_string_equal(txm_delivery_last_error(list[0]), "boom 3");
    assert_string_equal(txm_delivery_queue(list[0]), "q--dlq");
    assert_int_equal(txm_delivery_receive_count(list[0]), 3);
    assert_int_equal(txm_transport_ack(fx->t, list[0], NULL), TXM_STATE); /* a peek */
    txm_delivery_list_free(list, n);

    size_t moved = 0;
    assert_int_equal(txm_transport_dlq_redrive(fx->t, "q", "other", &moved, NULL), TXM_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(txm_transport_dlq_redrive(fx->t, "q", NULL, &moved, NULL), TXM_OK);
    assert_int_equal(moved, 1);
    txm_delivery *d = receive_one(fx->t, "q", 0);
    assert_non_null(d);
    assert_int_equal(txm_delivery_receive_count(d), 1);
    assert_string_equal(txm_delivery_body(d, NULL), "{\"payload\":true}");
    assert_int_equal(txm_transport_dead_letter(fx->t, d, "cannot decode", NULL), TXM_OK);
    txm_delivery_free(d);

    assert_int_equal(txm_transport_dlq_list(fx->t, "q", 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_delivery_last_error(list[0]), "cannot decode");
    txm_delivery_list_free(list, n);
    size_t purged = 0;
    assert_int_equal(txm_transport_dlq_purge(fx->t, "q", &purged, NULL), TXM_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(depth(fx->t, "q--dlq"), 0);
}

static void embedded_expired_leases_count_toward_max_receive(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 2, 50);
    publish(fx->t, "t", "m-1", "body");
    for (int i = 1; i <= 2; i++) {
        txm_delivery *d = receive_one(fx->t, "q", 1000);
        assert_non_null(d);
        assert_int_equal(txm_delivery_receive_count(d), i);
        txm_delivery_free(d); /* never acked: the lease runs out */
    }
    assert_null(receive_one(fx->t, "q", 200)); /* the third receive dead-letters it */
    txm_delivery **list = NULL;
    size_t n = 0;
    assert_int_equal(txm_transport_dlq_list(fx->t, "q", 10, &list, &n, NULL), TXM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(txm_delivery_body(list[0], NULL), "body");
    assert_string_equal(txm_delivery_last_error(list[0]), "dead-lettered after 2 receives");
    txm_delivery_list_free(list, n);
}

static void embedded_ack_after_lease_lost_is_not_found(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 5, 50);
    publish(fx->t, "t", "m-1", "x");
    txm_delivery *old = receive_one(fx->t, "q", 0);
    assert_non_null(old);
    txm_delivery *now = receive_one(fx->t, "q", 1000); /* after the lease ran out */
    assert_non_null(now);
    txm_error err;
    assert_int_equal(txm_transport_ack(fx->t, old, &err), TXM_NOT_FOUND);
    assert_non_null(strstr(err.text, "lease lost"));
    assert_int_equal(txm_transport_nack(fx->t, old, 0, "late", &err), TXM_NOT_FOUND);
    assert_int_equal(txm_transport_ack(fx->t, now, NULL), TXM_OK);
    txm_delivery_free(old);
    txm_delivery_free(now);
}

/* As a single ack: the delivery whose lease was lost gets TXM_NOT_FOUND
 * and stays unsettled, and the rest of the batch is acked all the same. */
static void embedded_ack_batch_after_lease_lost_reports_not_found_for_it(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 5, 50);
    publish(fx->t, "t", "m-1", "x");
    txm_delivery *old = receive_one(fx->t, "q", 0);
    assert_non_null(old);
    txm_delivery *now = receive_one(fx->t, "q", 1000); /* after the lease ran out */
    assert_non_null(now);
    assert_string_equal(txm_delivery_message_id(now), "m-1");
    subscribe(fx->t, "t", "q", 5, 30000); /* the next one keeps its lease */
    publish(fx->t, "t", "m-2", "y");
    txm_delivery *other = receive_one(fx->t, "q", 1000);
    assert_non_null(other);
    assert_string_equal(txm_delivery_message_id(other), "m-2");
    txm_delivery *batch[] = {old, other};
    txm_status results[2] = {TXM_INVALID, TXM_INVALID};
    txm_error err;
    assert_int_equal(txm_transport_ack_batch(fx->t, batch, 2, results, &err), TXM_NOT_FOUND);
    assert_non_null(strstr(err.text, "lease lost"));
    assert_int_equal(results[0], TXM_NOT_FOUND);
    assert_int_equal(results[1], TXM_OK);
    assert_int_equal(txm_transport_ack(fx->t, other, NULL), TXM_STATE); /* settled */
    /* The late one is not settled: the call can be made again, and the
     * receiver holding the message now still acks it. */
    assert_int_equal(txm_transport_ack(fx->t, old, NULL), TXM_NOT_FOUND);
    assert_int_equal(txm_transport_ack(fx->t, now, NULL), TXM_OK);
    int64_t depth = -1;
    assert_int_equal(txm_transport_queue_depth(fx->t, "q", &depth, NULL), TXM_OK);
    assert_int_equal(depth, 0);
    txm_delivery_free(old);
    txm_delivery_free(now);
    txm_delivery_free(other);
}

static void embedded_thousand_messages_arrive_in_fifo_order(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 30000);
    enum { N = 1000, BATCH = 100 };
    char ids[N][16];
    txm_outgoing msgs[BATCH];
    for (int i = 0; i < N; i++)
        snprintf(ids[i], sizeof ids[i], "m-%04d", i);
    for (int b = 0; b < N / BATCH; b++) {
        for (int j = 0; j < BATCH; j++)
            msgs[j] = (txm_outgoing){"t", ids[b * BATCH + j], ids[b * BATCH + j], 6};
        assert_int_equal(txm_transport_publish(fx->t, msgs, BATCH, NULL, NULL), TXM_OK);
    }
    assert_int_equal(depth(fx->t, "q"), N);
    int next = 0;
    while (next < N) {
        txm_delivery **list = NULL;
        size_t n = 0;
        assert_int_equal(txm_transport_receive(fx->t, "q", 64, 0, &list, &n, NULL), TXM_OK);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++, next++) {
            assert_string_equal(txm_delivery_message_id(list[i]), ids[next]);
            assert_int_equal(txm_transport_ack(fx->t, list[i], NULL), TXM_OK);
        }
        txm_delivery_list_free(list, n);
    }
    assert_int_equal(depth(fx->t, "q"), 0);
}

static void embedded_messages_persist_across_reopen(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 30000);
    publish(fx->t, "t", "m-1", "kept");
    txm_transport_close(fx->t);
    fx->t = NULL;
    assert_int_equal(txm_transport_open(fx->url, NULL, &fx->t, NULL), TXM_OK);
    txm_delivery *d = receive_one(fx->t, "q", 0);
    assert_non_null(d);
    assert_string_equal(txm_delivery_body(d, NULL), "kept");
    assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
    txm_delivery_free(d);
}

typedef struct waiter_arg {
    txm_transport *t;
    const char *queue;
    int wait_ms;
    txm_delivery *got;
    int64_t returned_us; /* mono_us when receive returned */
    int64_t cpu_us;      /* this thread's CPU time during receive */
} waiter_arg;

static int64_t thread_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

static void *waiter_main(void *p)
{
    waiter_arg *w = p;
    int64_t cpu0 = thread_cpu_us();
    txm_delivery **list = NULL;
    size_t n = 0;
    txm_status st = txm_transport_receive(w->t, w->queue, 1, w->wait_ms, &list, &n, NULL);
    w->returned_us = mono_us();
    w->cpu_us = thread_cpu_us() - cpu0;
    w->got = st == TXM_OK && n == 1 ? list[0] : NULL;
    free(list);
    return NULL;
}

static void embedded_blocked_receiver_wakes_when_another_handle_publishes(void **state)
{
    fixture *fx = *state;
    txm_transport *other = NULL; /* as another process would: its own open */
    assert_int_equal(txm_transport_open(fx->url, NULL, &other, NULL), TXM_OK);
    subscribe(other, "t", "q", 3, 30000);
    enum { ROUNDS = 10 };
    int64_t worst_us = 0, total_us = 0;
    for (int r = 0; r < ROUNDS; r++) {
        waiter_arg w = {fx->t, "q", 5000, NULL, 0, 0};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
        sleep_ms(150); /* past the first check and the arming of the watch */
        int64_t published_us = mono_us();
        publish(other, "t", "m", "wake");
        pthread_join(th, NULL);
        assert_non_null(w.got);
        assert_int_equal(txm_transport_ack(fx->t, w.got, NULL), TXM_OK);
        txm_delivery_free(w.got);
        int64_t latency = w.returned_us - published_us;
        total_us += latency;
        worst_us = latency > worst_us ? latency : worst_us;
        assert_true(latency < 100000);
    }
    printf("embedded wake latency (publish start -> receive return, other handle): "
           "mean %.2f ms, worst %.2f ms over %d rounds\n",
           total_us / 1000.0 / ROUNDS, worst_us / 1000.0, ROUNDS);
    txm_transport_close(other);
}

/* The child process: opens the broker itself, waits, notes the time and
 * publishes. Never returns. */
static void publisher_child(const char *url, int fd)
{
    txm_transport *t = NULL;
    int64_t published_us = -1;
    if (txm_transport_open(url, NULL, &t, NULL) == TXM_OK) {
        sleep_ms(150);
        published_us = mono_us(); /* CLOCK_MONOTONIC is system-wide */
        txm_outgoing m = {"t", "from-child", "x", 1};
        if (txm_transport_publish(t, &m, 1, NULL, NULL) != TXM_OK)
            published_us = -1;
        txm_transport_close(t);
    }
    ssize_t n = write(fd, &published_us, sizeof published_us);
    _exit(n == (ssize_t)sizeof published_us ? 0 : 1);
}

static void embedded_blocked_receiver_wakes_when_another_process_publishes(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 30000);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        publisher_child(fx->url, fds[1]);
    close(fds[1]);
    txm_delivery *d = receive_one(fx->t, "q", 5000);
    int64_t returned_us = mono_us();
    int64_t published_us = -1;
    assert_int_equal(read(fds[0], &published_us, sizeof published_us), sizeof published_us);
    close(fds[0]);
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(d);
    assert_string_equal(txm_delivery_message_id(d), "from-child");
    assert_int_equal(txm_transport_ack(fx->t, d, NULL), TXM_OK);
    txm_delivery_free(d);
    assert_true(published_us > 0);
    printf("embedded wake latency (publish start in another process -> receive return): "
           "%.2f ms\n",
           (returned_us - published_us) / 1000.0);
    assert_true(returned_us - published_us < 100000);
}

static void embedded_idle_receiver_uses_little_cpu(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 30000);
    waiter_arg w = {fx->t, "q", 10000, NULL, 0, 0};
    int64_t t0 = mono_us();
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
    pthread_join(th, NULL);
    double wall_s = (w.returned_us - t0) / 1e6;
    double share = w.cpu_us / 1e6 / wall_s;
    printf("embedded idle receiver: %.1f ms CPU over %.2f s blocked in receive (%.3f%% of "
           "one core)\n",
           w.cpu_us / 1000.0, wall_s, share * 100);
    assert_null(w.got);
    assert_true(wall_s >= 9.9);
    assert_true(share < 0.20);
}

typedef struct declarer_arg {
    const char *url;
    txm_status worst;
} declarer_arg;

static void *declarer_main(void *p)
{
    declarer_arg *a = p;
    txm_transport *t = NULL;
    txm_error err = {0};
    a->worst = txm_transport_open(a->url, NULL, &t, &err);
    for (int i = 0; i < 50 && a->worst == TXM_OK; i++) {
        txm_status st = txm_transport_declare_topic(t, "order--created", &err);
        if (st == TXM_OK)
            st = txm_transport_declare_subscription(t, "order--created", "qa", NULL, &err);
        if (st == TXM_OK)
            st = txm_transport_declare_subscription(t, "order--created", "qb", NULL, &err);
        a->worst = st;
    }
    if (a->worst != TXM_OK)
        fprintf(stderr, "declarer: %s: %s\n", txm_status_name(a->worst), err.text);
    txm_transport_close(t);
    return NULL;
}

static void embedded_concurrent_declarations_are_idempotent(void **state)
{
    fixture *fx = *state;
    /* A second, new file: the two threads also race to create its schema. */
    char url[160];
    snprintf(url, sizeof url, "embedded:%s/fresh.db", fx->dir);
    declarer_arg a[2] = {{url, TXM_BROKER}, {url, TXM_BROKER}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, declarer_main, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(a[0].worst, TXM_OK);
    assert_int_equal(a[1].worst, TXM_OK);
    txm_transport *t = NULL;
    assert_int_equal(txm_transport_open(url, NULL, &t, NULL), TXM_OK);
    publish(t, "order--created", "m-1", "{}");
    assert_int_equal(depth(t, "qa"), 1);
    assert_int_equal(depth(t, "qb"), 1);
    txm_transport_close(t);
}

static void embedded_queue_declared_with_other_topic_conflicts(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t1", "q", 3, 30000);
    subscribe(fx->t, "t1", "q", 5, 1000); /* same topic: settings are updated */
    txm_error err;
    assert_int_equal(txm_transport_declare_subscription(fx->t, "t2", "q", NULL, &err),
                     TXM_CONFLICT);
    assert_non_null(strstr(err.text, "t1"));
    /* Names may not clash with another subscription's dead-letter queue. */
    assert_int_equal(txm_transport_declare_subscription(fx->t, "t1", "q--dlq", NULL, &err),
                     TXM_CONFLICT);
    txm_subscription_options o;
    txm_subscription_options_init(&o);
    o.dlq = "q";
    assert_int_equal(txm_transport_declare_subscription(fx->t, "t2", "r", &o, &err), TXM_CONFLICT);
}

static void embedded_undeclared_queue_is_not_found(void **state)
{
    fixture *fx = *state;
    txm_delivery **list = NULL;
    size_t n = 0;
    txm_error err;
    assert_int_equal(txm_transport_receive(fx->t, "nope", 1, 0, &list, &n, &err), TXM_NOT_FOUND);
    assert_int_equal(txm_transport_dlq_list(fx->t, "nope", 1, &list, &n, &err), TXM_NOT_FOUND);
    assert_int_equal(txm_transport_dlq_purge(fx->t, "nope", NULL, &err), TXM_NOT_FOUND);
    assert_int_equal(depth(fx->t, "nope"), 0);
    txm_transport *bad = NULL;
    assert_int_equal(txm_transport_open("embedded:", NULL, &bad, &err), TXM_INVALID);
    assert_null(bad);
}

/* Every allocation failure inside open, receive and dlq_list is reported as
 * TXM_NOMEM and leaks nothing (the ASan build checks); a failed receive
 * leaves the messages in the queue. */
static void embedded_out_of_memory_fails_cleanly(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 1000, 30000);
    for (int i = 0; i < 3; i++)
        publish(fx->t, "t", "m", "body");
    for (long n = 0; n < 40; n++) {
        txm_delivery **list = NULL;
        size_t count = 0;
        txm__alloc_fail_after(n);
        txm_status st = txm_transport_receive(fx->t, "q", 3, 0, &list, &count, NULL);
        txm__alloc_fail_after(-1);
        assert_true(st == TXM_OK || st == TXM_NOMEM);
        assert_int_equal(count, st == TXM_OK ? 3 : 0);
        for (size_t i = 0; i < count; i++)
            assert_int_equal(txm_transport_nack(fx->t, list[i], 0, NULL, NULL), TXM_OK);
        txm_delivery_list_free(list, count);
        assert_int_equal(depth(fx->t, "q"), 3);

        txm_transport *t = NULL;
        txm__alloc_fail_after(n);
        st = txm_transport_open(fx->url, NULL, &t, NULL);
        txm__alloc_fail_after(-1);
        assert_true(st == TXM_OK || st == TXM_NOMEM);
        assert_true((st == TXM_OK) == (t != NULL));
        txm_transport_close(t);
    }
}

enum { PUBLISHERS = 4, PER_PUBLISHER = 250, TOTAL = PUBLISHERS * PER_PUBLISHER };

typedef struct stress {
    txm_transport *t;
    int next_publisher;
    pthread_mutex_t mu;
    int seen[TOTAL]; /* deliveries per message */
    int received;
    txm_status worst;
} stress;

static void *stress_publisher(void *p)
{
    stress *s = p;
    pthread_mutex_lock(&s->mu);
    int who = s->next_publisher++;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < PER_PUBLISHER; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", who * PER_PUBLISHER + i);
        txm_outgoing m = {"t", id, id, strlen(id)};
        txm_status st = txm_transport_publish(s->t, &m, 1, NULL, NULL);
        pthread_mutex_lock(&s->mu);
        if (st != TXM_OK)
            s->worst = st;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static void *stress_receiver(void *p)
{
    stress *s = p;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool done = s->received >= TOTAL || s->worst != TXM_OK;
        pthread_mutex_unlock(&s->mu);
        if (done)
            return NULL;
        txm_delivery **list = NULL;
        size_t n = 0;
        txm_status st = txm_transport_receive(s->t, "q", 16, 50, &list, &n, NULL);
        for (size_t i = 0; st == TXM_OK && i < n; i++) {
            st = txm_transport_ack(s->t, list[i], NULL);
            long idx = strtol(txm_delivery_message_id(list[i]), NULL, 10);
            pthread_mutex_lock(&s->mu);
            if (idx >= 0 && idx < TOTAL)
                s->seen[idx]++;
            s->received++;
            pthread_mutex_unlock(&s->mu);
        }
        txm_delivery_list_free(list, n);
        pthread_mutex_lock(&s->mu);
        if (st != TXM_OK)
            s->worst = st;
        pthread_mutex_unlock(&s->mu);
    }
}

static void embedded_threads_publishing_and_receiving_deliver_each_message_once(void **state)
{
    fixture *fx = *state;
    subscribe(fx->t, "t", "q", 3, 30000);
    stress *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->t = fx->t;
    pthread_mutex_init(&s->mu, NULL);
    pthread_t th[PUBLISHERS + 2];
    for (int i = 0; i < PUBLISHERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, stress_publisher, s), 0);
    for (int i = PUBLISHERS; i < PUBLISHERS + 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, stress_receiver, s), 0);
    for (int i = 0; i < PUBLISHERS + 2; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&s->mu);
    stress got = *s;
    free(s);
    assert_int_equal(got.worst, TXM_OK);
    assert_int_equal(got.received, TOTAL);
    for (int i = 0; i < TOTAL; i++)
        assert_int_equal(got.seen[i], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(embedded_publish_fans_out_to_every_subscribed_queue),
        T(embedded_publish_to_topic_without_subscribers_is_dropped),
        T(embedded_unacked_message_is_redelivered_after_lease_with_count_2),
        T(embedded_nack_with_delay_hides_message_until_delay),
        T(embedded_max_receive_count_moves_to_dlq_then_redrive_and_purge),
        T(embedded_expired_leases_count_toward_max_receive),
        T(embedded_ack_after_lease_lost_is_not_found),
        T(embedded_ack_batch_after_lease_lost_reports_not_found_for_it),
        T(embedded_thousand_messages_arrive_in_fifo_order),
        T(embedded_messages_persist_across_reopen),
        T(embedded_blocked_receiver_wakes_when_another_handle_publishes),
        T(embedded_blocked_receiver_wakes_when_another_process_publishes),
        T(embedded_idle_receiver_uses_little_cpu),
        T(embedded_concurrent_declarations_are_idempotent),
        T(embedded_queue_declared_with_other_topic_conflicts),
        T(embedded_undeclared_queue_is_not_found),
        T(embedded_threads_publishing_and_receiving_deliver_each_message_once),
        T(embedded_out_of_memory_fails_cleanly),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
