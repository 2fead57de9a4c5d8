/* Child processes for end-to-end and crash tests. */
#include "testproc.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t txm_proc_start(const char *path, char *const argv[], char *const env[], const char *log_path)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* A txm_app in the test blocks SIGTERM and SIGINT in its threads, and
     * exec keeps the mask: unblock them, or the child would never stop. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        putenv(env[i]);
    if (log_path != NULL) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
    }
    execv(path, argv);
    _exit(127);
}

int txm_proc_kill(pid_t pid, int sig)
{
    int status = 0;
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    waitpid(pid, &status, 0);
    return status;
}

bool txm_proc_dump_stacks(pid_t pid, const char *out_path)
{
    char attach[32];
    snprintf(attach, sizeof attach, "%d", (int)pid);
    char *const argv[] = {"gdb", "-batch", "-nx", "-p", attach, "-ex", "thread apply all bt 25",
                          NULL};
    pid_t g = txm_proc_start("/usr/bin/gdb", argv, NULL, out_path);
    if (g < 0)
        return false;
    int status = 0;
    waitpid(g, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int txm_promtool_check(const char *text, size_t len)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[0], STDIN_FILENO);
        close(fds[0]);
        close(fds[1]);
        execlp("promtool", "promtool", "check", "metrics", (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    ssize_t n = write(fds[1], text, len);
    close(fds[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)len)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
