/* Test databases: temporary SQLite files and throw-away PostgreSQL databases. */
#include "testdb.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int db_counter;

const char *txm_testdb_name(txm_test_backend b)
{
    return b == TXM_TEST_PG ? "postgresql" : "sqlite";
}

bool txm_testdb_available(txm_test_backend b)
{
    if (b == TXM_TEST_SQLITE)
        return true;
    const char *u = getenv("TXMSG_TEST_PG_URL");
    return u != NULL && u[0] != '\0';
}

static bool admin_command(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("TXMSG_TEST_PG_URL"));
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "testdb: %s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    } else {
        fprintf(stderr, "testdb: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

static void admin_query(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("TXMSG_TEST_PG_URL"));
    if (PQstatus(c) == CONNECTION_OK)
        PQclear(PQexec(c, sql));
    PQfinish(c);
}

/* Replaces the database part of the admin URL (after the last '/'). */
static char *pg_url_with_db(const char *dbname)
{
    const char *admin = getenv("TXMSG_TEST_PG_URL");
    const char *slash = strrchr(admin, '/');
    size_t base = slash != NULL && slash > admin + 2 && slash[-1] != '/' ? (size_t)(slash - admin)
                                                                         : strlen(admin);
    size_t n = base + 1 + strlen(dbname) + 1;
    char *url = malloc(n);
    if (url != NULL)
        snprintf(url, n, "%.*s/%s", (int)base, admin, dbname);
    return url;
}

char *txm_testdb_create(txm_test_backend b)
{
    char name[64];
    snprintf(name, sizeof name, "txmtest_%d_%d", (int)getpid(), atomic_fetch_add(&db_counter, 1));
    if (b == TXM_TEST_PG) {
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        return admin_command(sql) ? pg_url_with_db(name) : NULL;
    }
    char dir[] = "/tmp/txmtest-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("testdb: mkdtemp");
        return NULL;
    }
    size_t n = strlen(dir) + strlen(name) + 16;
    char *url = malloc(n);
    if (url != NULL)
        snprintf(url, n, "sqlite:%s/%s.db", dir, name);
    return url;
}

void txm_testdb_drop(txm_test_backend b, char *url)
{
    if (url == NULL)
        return;
    if (b == TXM_TEST_PG) {
        /* Logical slots (the relay's) pin a database: drop them first. */
        char sql[256];
        const char *name = strrchr(url, '/') + 1;
        snprintf(sql, sizeof sql,
                 "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                 " WHERE database = '%s' AND NOT active",
                 name);
        admin_query(sql);
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
        admin_command(sql);
    } else {
        const char *path = url + strlen("sqlite:");
        char buf[512];
        static const char *const suffix[] = {"", "-wal", "-shm"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(buf, sizeof buf, "%s%s", path, suffix[i]);
            unlink(buf);
        }
        snprintf(buf, sizeof buf, "%s", path);
        char *slash = strrchr(buf, '/');
        if (slash != NULL) {
            *slash = '\0';
            rmdir(buf);
        }
    }
    free(url);
}

/* cmocka fixtures -------------------------------------------------------- */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

const txm_test_backend txm_backend_sqlite = TXM_TEST_SQLITE;
const txm_test_backend txm_backend_pg = TXM_TEST_PG;

int txm_testdb_open(txm_test_backend b, const txm_db_options *o, char **url, txm_db **db)
{
    *url = NULL;
    *db = NULL;
    if (!txm_testdb_available(b))
        return 0;
    *url = txm_testdb_create(b);
    if (*url == NULL)
        return -1;
    txm_db_options defaults;
    txm_db_options_init(&defaults);
    defaults.pool_size = 16;
    txm_error err;
    if (txm_db_open(*url, o != NULL ? o : &defaults, db, &err) != TXM_OK) {
        fprintf(stderr, "setup: open %s: %s\n", *url, err.text);
        return -1;
    }
    return 0;
}

void txm_testdb_close(txm_test_backend b, char *url, txm_db *db)
{
    txm_db_close(db);
    txm_testdb_drop(b, url);
}

void txm_testdb_require(txm_test_backend b, const txm_db *db)
{
    if (db == NULL) {
        fprintf(stderr, "skipped: %s not available (set TXMSG_TEST_PG_URL)\n", txm_testdb_name(b));
        skip();
    }
}

void txm_testdb_inbox_insert_at(txm_db *db, const char *sub, const char *id, int64_t us)
{
    char at[TXM_TIME_LEN + 1];
    txm_time_format(us, at);
    txm_value p[3] = {TXM_TEXT(sub), TXM_TEXT(id), TXM_TEXT(at)};
    assert_int_equal(txm_db_exec(db,
                                 "INSERT INTO txmsg_inbox (subscription, message_id, created_at)"
                                 " VALUES ($1, $2, $3)",
                                 p, 3, NULL, NULL, NULL),
                     TXM_OK);
}

bool txm_testdb_pg_slot_exists(txm_db *db, const char *slot)
{
    txm_value p = TXM_TEXT(slot);
    txm_rows *rows = NULL;
    assert_int_equal(txm_db_exec(db, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &p,
                                 1, &rows, NULL, NULL),
                     TXM_OK);
    bool found = txm_rows_count(rows) == 1;
    txm_rows_free(rows);
    return found;
}

int txm_fixture_setup(void **state)
{
    txm_fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    fx->backend = *(const txm_test_backend *)*state;
    *state = fx;
    return txm_testdb_open(fx->backend, NULL, &fx->url, &fx->db);
}

int txm_fixture_teardown(void **state)
{
    txm_fixture *fx = *state;
    if (fx == NULL)
        return 0;
    txm_testdb_close(fx->backend, fx->url, fx->db);
    free(fx);
    return 0;
}

txm_fixture *txm_fixture_get(void **state)
{
    txm_fixture *fx = *state;
    txm_testdb_require(fx->backend, fx->db);
    return fx;
}

/* PostgreSQL restarts -------------------------------------------------------- */
#include <fcntl.h>
#include <sys/wait.h>

/* Runs pg_ctl ACTION with mode (-m) on the test cluster; true when it
 * succeeded. */
static bool pg_ctl(const char *action, const char *mode)
{
    const char *data = getenv("TXMSG_TEST_PG_DATA");
    const char *bin = getenv("TXMSG_TEST_PG_BIN");
    if (data == NULL || bin == NULL)
        return false;
    char path[512], log[512];
    snprintf(path, sizeof path, "%s/pg_ctl", bin);
    snprintf(log, sizeof log, "%s/../log", data);
    pid_t pid = fork();
    if (pid == 0) {
        /* runuser keeps the working directory, which postgres may not read;
         * the log file keeps the server off our stdout. */
        if (chdir("/") != 0)
            _exit(126);
        int null_fd = open("/dev/null", O_WRONLY);
        if (null_fd >= 0)
            dup2(null_fd, STDOUT_FILENO); /* "waiting for server..." */
        if (getuid() == 0)
            execlp("runuser", "runuser", "-u", "postgres", "--", path, "-D", data, "-l", log, "-m",
                   mode, "-w", "-t", "60", action, (char *)NULL);
        else
            execl(path, "pg_ctl", "-D", data, "-l", log, "-m", mode, "-w", "-t", "60", action,
                  (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool txm_testdb_pg_restart(void)
{
    return pg_ctl("restart", "fast");
}

bool txm_testdb_pg_crash(void)
{
    return pg_ctl("stop", "immediate");
}

bool txm_testdb_pg_start(void)
{
    return pg_ctl("start", "fast");
}

const char *txm_testdb_pg_name(const char *url)
{
    const char *slash = strrchr(url, '/');
    return slash != NULL ? slash + 1 : url;
}
