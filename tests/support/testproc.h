/* Test support: child processes (relay, services) with their environment. */
#ifndef TXM_TESTPROC_H
#define TXM_TESTPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Starts path with argv (NULL-terminated, argv[0] included) and the extra
 * environment entries env ("NAME=value", NULL-terminated, may be NULL).
 * Its stderr goes to log_path when given (appended), else is inherited.
 * Returns the pid, or -1. */
pid_t txm_proc_start(const char *path, char *const argv[], char *const env[], const char *log_path);

/* Sends sig and waits; returns the wait status. */
int txm_proc_kill(pid_t pid, int sig);

/* Writes every thread's backtrace of the running process pid to out_path
 * (appended) with gdb, for a process that stopped answering. Returns false
 * when gdb could not run. */
bool txm_proc_dump_stacks(pid_t pid, const char *out_path);

/* Feeds len bytes of text to `promtool check metrics` (Debian's prometheus
 * package); returns its exit status, 0 when the exposition is valid. */
int txm_promtool_check(const char *text, size_t len);

#endif
