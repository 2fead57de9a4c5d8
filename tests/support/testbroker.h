/* Test support: brokers for the conformance suite, a private nats-server
 * that a test can stop and start on the same store, and the nodes of the
 * 3-node cluster that scripts/with-servers starts. */
#ifndef TXM_TESTBROKER_H
#define TXM_TESTBROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* TXM_TEST_NATS_CLUSTER: the cluster's server list with ?replicas=3. */
typedef enum { TXM_TEST_EMBEDDED, TXM_TEST_NATS, TXM_TEST_NATS_CLUSTER } txm_test_transport;

extern const txm_test_transport txm_transport_embedded_kind;
extern const txm_test_transport txm_transport_nats_kind;
extern const txm_test_transport txm_transport_nats_cluster_kind;

/* True if the transport can be used: NATS needs TXMSG_TEST_NATS_URL, the
 * cluster TXMSG_TEST_NATS_CLUSTER_URL. */
bool txm_testbroker_available(txm_test_transport k);
const char *txm_testbroker_name(txm_test_transport k);

/* Writes the cluster's URL with ?replicas=3 into out; false without
 * TXMSG_TEST_NATS_CLUSTER_URL or when it does not fit. */
bool txm_testcluster_url(char *out, size_t len);

/* Writes "<prefix>-<pid>-<n>-<random>" into out: names unique across tests
 * that share one nats-server. */
void txm_test_unique(const char *prefix, char *out, size_t len);

/* Creates a temporary folder (mkdtemp) and returns it, caller frees.
 * txm_test_rmdir removes it with everything inside. */
char *txm_test_mkdtemp(void);
void txm_test_rmdir(const char *dir);

/* A free TCP port on 127.0.0.1. */
int txm_test_free_port(void);

/* Starts nats-server -js on 127.0.0.1:port with store dir; returns its pid
 * once it accepts connections, or -1. */
pid_t txm_testnats_start(const char *store, int port);
/* The same, with the HTTP monitoring endpoint on monitor_port (0: none) and
 * the server's output appended to log_path (NULL: discarded). */
pid_t txm_testnats_start_ext(const char *store, int port, int monitor_port, const char *log_path);
/* SIGTERM, then waits for the process to exit. */
void txm_testnats_stop(pid_t pid);

/* The cluster's nodes are 1..TXM_TESTCLUSTER_NODES, server names "node<n>",
 * each with nodeN.args, nodeN.pid and nodeN.log in
 * TXMSG_TEST_NATS_CLUSTER_DIR (see scripts/with-servers). */
#define TXM_TESTCLUSTER_NODES 3

/* True when node n's recorded pid is a live process. */
bool txm_testcluster_is_running(int node);
/* Sends sig (SIGKILL, SIGTERM) to node n and waits up to 10 s until it is
 * gone. False when it was not running or did not end. */
bool txm_testcluster_stop(int node, int sig);
/* Starts node n again with its command line on its store, records the pid
 * in nodeN.pid (so with-servers' cleanup stops it) and waits until it
 * accepts connections. Returns the pid, or -1. */
pid_t txm_testcluster_start(int node);
/* The node a server name belongs to ("node2": 2), 0 when none. */
int txm_testcluster_node_of(const char *server_name);

/* Lines of the file at path that contain text; 0 when it cannot be read. */
int txm_test_file_count(const char *path, const char *text);
/* Polls until a line of the file at path contains text, up to timeout_ms. */
bool txm_test_file_wait(const char *path, const char *text, int timeout_ms);

/* Milliseconds of a monotonic clock. */
long long txm_test_now_ms(void);
void txm_test_sleep_ms(int ms);

#endif
