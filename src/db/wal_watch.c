/* Commit notification for SQLite across processes, used by the relay's
 * SQLite tail and the embedded broker's long polls. A commit in WAL mode
 * writes the -wal file; inotify reports that write to every watcher of the
 * file, so an idle reader sleeps in poll() and wakes within a millisecond or
 * so of another process's commit. SQLite creates and deletes the -wal file as
 * connections come and go, and a watch on a file ends (IN_IGNORED) when the
 * file is removed, so the folder is watched too, but only for files created
 * or closed after writing: each time the -wal (or the database) is created
 * again, its watch is added again. The folder is not watched for writes
 * (IN_MODIFY): then every write to any file in it, such as another
 * database's -wal next to this one, queued an event for every watch and woke
 * every waiter, a cost on each write of the writing process (fsnotify in
 * pwrite) and of the waiters. */
#include "db/wal_watch.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"

#define FALLBACK_POLL_MS 10

struct txm__wal_watch {
    int fd;                  /* inotify descriptor, or -1 for timed polling */
    int dir_wd;              /* the folder's watch: files created or closed */
    char name[NAME_MAX + 1]; /* the database file's name within its folder */
    size_t name_len;
    char db_path[PATH_MAX];  /* the database file, watched for writes */
    char wal_path[PATH_MAX]; /* its -wal, watched for writes */
};

/* Watches the file at path for writes. Fails (no watch) while the file does
 * not exist: its creation in the folder adds the watch then. */
static void watch_writes(const txm__wal_watch *w, const char *path)
{
    inotify_add_watch(w->fd, path, IN_MODIFY);
}

txm_status txm__wal_watch_open(const char *path, txm__wal_watch **out, txm_error *err)
{
    *out = NULL;
    txm__wal_watch *w = txm__calloc(1, sizeof *w);
    if (w == NULL)
        return txm_errf(err, TXM_NOMEM, "wal_watch: out of memory");
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    char dir[PATH_MAX];
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
    snprintf(w->name, sizeof w->name, "%s", base);
    w->name_len = strlen(w->name);
    snprintf(w->db_path, sizeof w->db_path, "%s", path);
    snprintf(w->wal_path, sizeof w->wal_path, "%s-wal", path);
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    /* The folder first: a file created after it is reported, one created
     * before it is there for the file watches that follow. */
    if (w->fd >= 0 && (w->dir_wd = inotify_add_watch(w->fd, dir, IN_CREATE | IN_CLOSE_WRITE)) < 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->fd >= 0) {
        watch_writes(w, w->db_path);
        watch_writes(w, w->wal_path);
    }
    *out = w;
    return TXM_OK;
}

/* True if the folder event ev names our database or one of its files
 * (-wal, -shm); a created database or -wal gets its write watch again. */
static bool folder_event_ours(const txm__wal_watch *w, const struct inotify_event *ev)
{
    if (ev->len == 0 || strncmp(ev->name, w->name, w->name_len) != 0)
        return false;
    if (ev->mask & IN_CREATE) {
        const char *rest = ev->name + w->name_len;
        if (rest[0] == '\0')
            watch_writes(w, w->db_path);
        else if (strcmp(rest, "-wal") == 0)
            watch_writes(w, w->wal_path);
    }
    return true;
}

/* True if the inotify events in buf are writes to our database or its -wal,
 * or the creation of one of its files. A lost event (queue overflow) counts:
 * a spurious wake-up only makes the caller read again. */
static bool events_ours(const txm__wal_watch *w, const char *buf, ssize_t len)
{
    bool ours = false;
    for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= len;) {
        const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
        if (ev->mask & IN_Q_OVERFLOW)
            ours = true;
        else if (ev->wd == w->dir_wd)
            ours = folder_event_ours(w, ev) || ours;
        else if (ev->mask & IN_MODIFY)
            ours = true;
        off += (ssize_t)sizeof(struct inotify_event) + ev->len;
    }
    return ours;
}

bool txm__wal_watch_drain(txm__wal_watch *w)
{
    if (w == NULL || w->fd < 0)
        return false;
    bool ours = false;
    _Alignas(struct inotify_event) char buf[4096];
    ssize_t n;
    while ((n = read(w->fd, buf, sizeof buf)) > 0)
        ours = events_ours(w, buf, n) || ours;
    return ours;
}

bool txm__wal_watch_wait(txm__wal_watch *w, int timeout_ms)
{
    if (w == NULL || w->fd < 0) {
        int ms = timeout_ms < FALLBACK_POLL_MS ? timeout_ms : FALLBACK_POLL_MS;
        struct timespec ts = {0, (long)ms * 1000000L};
        nanosleep(&ts, NULL);
        return false;
    }
    long long end = txm__mono_ms() + timeout_ms;
    for (;;) {
        long long left = end - txm__mono_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc <= 0)
            return false; /* timeout, or EINTR: let the caller look again */
        /* Read every pending event, so the next wait does not wake for the
         * rest of this burst (one commit writes several pages). */
        if (txm__wal_watch_drain(w))
            return true;
    }
}

bool txm__wal_watch_is_polling(const txm__wal_watch *w)
{
    return w == NULL || w->fd < 0;
}

void txm__wal_watch_close(txm__wal_watch *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}
