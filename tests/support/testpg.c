/* Private PostgreSQL clusters for tests: initdb, pg_basebackup, pg_ctl. */
#include "testpg.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testbroker.h"

#define ARGS_MAX 24

bool txm_testpg_available(void)
{
    const char *bin = getenv("TXMSG_TEST_PG_BIN");
    return bin != NULL && bin[0] != '\0';
}

/* Runs the PostgreSQL tool argv[0] (a name in TXMSG_TEST_PG_BIN) as the
 * clusters' owner (runuser when root) from "/", which that user can read,
 * with its output appended to <dir>/tools.log (not the server log: pg_ctl
 * opens that as the owner, and a file root made first would stop it). True
 * when it exits 0. */
static bool run_tool(const char *const *argv, const char *dir)
{
    char out_path[128];
    snprintf(out_path, sizeof out_path, "%s/tools.log", dir);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", getenv("TXMSG_TEST_PG_BIN"), argv[0]);
    const char *full[ARGS_MAX + 5];
    int n = 0;
    if (geteuid() == 0) {
        full[n++] = "runuser";
        full[n++] = "-u";
        full[n++] = "postgres";
        full[n++] = "--";
    }
    full[n++] = path;
    for (int i = 1; argv[i] != NULL && n < ARGS_MAX + 4; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        if (chdir("/") != 0)
            _exit(126);
        execvp(full[0], (char *const *)full);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    fprintf(stderr, "testpg: %s failed; see %s\n", argv[0], out_path);
    return false;
}

/* A new folder the postgres user owns, for one cluster. */
static bool make_dir(txm_testpg *pg)
{
    memset(pg, 0, sizeof *pg);
    snprintf(pg->dir, sizeof pg->dir, "/tmp/txmsg-testpg-XXXXXX");
    if (mkdtemp(pg->dir) == NULL || chmod(pg->dir, 0755) != 0) {
        perror("testpg: mkdtemp");
        return false;
    }
    if (geteuid() == 0) {
        const struct passwd *pw = getpwnam("postgres");
        if (pw == NULL || chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
            fprintf(stderr, "testpg: cannot give %s to the postgres user\n", pg->dir);
            return false;
        }
    }
    snprintf(pg->data, sizeof pg->data, "%s/data", pg->dir);
    snprintf(pg->log, sizeof pg->log, "%s/log", pg->dir);
    pg->port = txm_test_free_port();
    snprintf(pg->url, sizeof pg->url, "postgresql://postgres@127.0.0.1:%d/postgres", pg->port);
    return pg->port > 0;
}

/* Appends the settings of this cluster, then conf, to postgresql.conf:
 * the last setting of a name wins. */
static bool append_conf(const txm_testpg *pg, const char *const *conf)
{
    char path[128];
    snprintf(path, sizeof path, "%s/postgresql.conf", pg->data);
    FILE *f = fopen(path, "a");
    if (f == NULL) {
        perror("testpg: postgresql.conf");
        return false;
    }
    fprintf(f,
            "\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
            "wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
            "fsync = off\n",
            pg->port, pg->dir);
    for (size_t i = 0; conf != NULL && conf[i] != NULL; i++)
        fprintf(f, "%s\n", conf[i]);
    return fclose(f) == 0;
}

static bool pg_ctl(txm_testpg *pg, const char *action, const char *mode)
{
    const char *argv[] = {"pg_ctl", "-D", pg->data, "-l", pg->log, "-m",
                          mode,     "-w", "-t",     "60", action,  NULL};
    return run_tool(argv, pg->dir);
}

bool txm_testpg_init(txm_testpg *pg, int wal_segsize_mb, const char *const *conf)
{
    if (!make_dir(pg))
        return false;
    char segsize[32];
    snprintf(segsize, sizeof segsize, "--wal-segsize=%d", wal_segsize_mb > 0 ? wal_segsize_mb : 16);
    const char *argv[] = {"initdb",           "-D",           pg->data, "-U",
                          "postgres",         "--auth=trust", "-E",     "UTF8",
                          "--locale=C.UTF-8", "--no-sync",    segsize,  NULL};
    return run_tool(argv, pg->dir) && append_conf(pg, conf) && txm_testpg_start(pg);
}

bool txm_testpg_standby(const txm_testpg *primary, txm_testpg *standby)
{
    if (!make_dir(standby))
        return false;
    char port[16];
    snprintf(port, sizeof port, "%d", primary->port);
    const char *argv[] = {
        "pg_basebackup", "-D", standby->data, "-h",     "127.0.0.1", "-p",   port,        "-U",
        "postgres",      "-R", "-X",          "stream", "-c",        "fast", "--no-sync", NULL};
    return run_tool(argv, standby->dir) && append_conf(standby, NULL) && txm_testpg_start(standby);
}

bool txm_testpg_stop(txm_testpg *pg, const char *mode)
{
    bool ok = pg_ctl(pg, "stop", mode);
    if (ok)
        pg->running = false;
    return ok;
}

bool txm_testpg_start(txm_testpg *pg)
{
    bool ok = pg_ctl(pg, "start", "fast");
    if (ok)
        pg->running = true;
    return ok;
}

bool txm_testpg_promote(txm_testpg *pg)
{
    return pg_ctl(pg, "promote", "fast");
}

bool txm_testpg_exec(const txm_testpg *pg, const char *sql)
{
    PGconn *c = PQconnectdb(pg->url);
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            fprintf(stderr, "testpg: %s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    } else {
        fprintf(stderr, "testpg: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

bool txm_testpg_create_db(const txm_testpg *pg, const char *name, char *url, int len)
{
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (!txm_testpg_exec(pg, sql))
        return false;
    snprintf(url, (size_t)len, "postgresql://postgres@127.0.0.1:%d/%s", pg->port, name);
    return true;
}

void txm_testpg_cleanup(txm_testpg *pg)
{
    if (pg->dir[0] == '\0')
        return;
    if (pg->running)
        txm_testpg_stop(pg, "immediate");
    txm_test_rmdir(pg->dir);
    pg->dir[0] = '\0';
}
