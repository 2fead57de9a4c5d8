/* Stopping and starting the test PostgreSQL cluster with pg_ctl. */
#include "testpgctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs pg_ctl -D <data> -l <log> -w -t 60 <args...> and waits for it.
 * argv holds the action and its options, NULL-terminated, at most 4. */
static bool pg_ctl(const char *const *args)
{
    const char *data = getenv("TXMSG_TEST_PG_DATA");
    const char *bin = getenv("TXMSG_TEST_PG_BIN");
    if (data == NULL || bin == NULL)
        return false;
    char path[512], log[512];
    snprintf(path, sizeof path, "%s/pg_ctl", bin);
    snprintf(log, sizeof log, "%s/../log", data);
    const char *argv[16];
    size_t n = 0;
    if (getuid() == 0) {
        /* runuser keeps the working directory, which postgres may not read. */
        argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    argv[n++] = path;
    argv[n++] = "-D";
    argv[n++] = data;
    argv[n++] = "-l";
    argv[n++] = log;
    argv[n++] = "-w";
    argv[n++] = "-t";
    argv[n++] = "60";
    for (size_t i = 0; args[i] != NULL && i < 4; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        /* The log file keeps the server off our stdout. */
        if (chdir("/") != 0)
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool txm_testpg_stop(const char *mode)
{
    const char *const args[] = {"-m", mode, "stop", NULL};
    return pg_ctl(args);
}

bool txm_testpg_start(void)
{
    const char *const args[] = {"start", NULL};
    return pg_ctl(args);
}
