/* What the benchmark programs share: clocks, failing loudly, payloads padded
 * to a target envelope size, the relay as a child process, its /metrics page,
 * and removing a NATS queue after a run. Benchmarks are programs, not tests:
 * they print key=value lines that bench/run collects. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "txmsg/txmsg.h"

/* Exits with status 1 and a message on stderr unless st is TXM_OK. */
void bench_check(txm_status st, const txm_error *err, const char *what);

/* Prints a message on stderr and exits with status 1. */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Parses a decimal argument in lo..hi or fails with the argument's name. */
long long bench_arg_int(const char *text, long long lo, long long hi, const char *name);

/* Nanoseconds of CLOCK_MONOTONIC. */
int64_t bench_mono_ns(void);

/* Sleeps ms milliseconds. */
void bench_sleep_ms(int ms);

/* A message of topic whose payload is {"seq":seq,"t_us":t_us,"pad":"xx..."}
 * with pad_len bytes of padding. Owns: *out is the caller's. */
txm_status bench_msg_new(const char *topic, int64_t seq, int64_t t_us, size_t pad_len,
                         txm_msg **out, txm_error *err);

/* The padding that makes a bench_msg_new envelope about envelope_len bytes
 * long (0 when even an empty pad is longer). */
size_t bench_pad_for(const char *topic, size_t envelope_len);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int bench_free_port(void);

/* Starts the relay at relay_path on db_url and broker_url with
 * --metrics-port port and the NULL-terminated extra arguments, its output
 * appended to log_path. Returns the child's pid; fails the program if the
 * fork fails. */
pid_t bench_relay_start(const char *relay_path, const char *db_url, const char *broker_url,
                        int port, char *const *extra, const char *log_path);

/* The kB figure of field ("VmHWM", "VmRSS") in /proc/pid/status, or -1. */
long bench_proc_kb(pid_t pid, const char *field);

/* The 1-minute load average from /proc/loadavg, or -1. */
double bench_load1(void);

/* SIGTERM, then SIGKILL after 10 s. Returns the wait status. */
int bench_relay_stop(pid_t pid);

/* Reads the unlabelled sample name from http://127.0.0.1:port/metrics.
 * Returns 0 on success, -1 while the page or the sample is not there. */
int bench_metric(int port, const char *name, double *value);

/* Deletes the JetStream consumer behind queue on a nats:// broker, so the
 * stream (interest retention) drops what only that queue kept. No-op for
 * other URLs. */
void bench_drop_queue(const char *broker_url, const char *queue);

#endif
