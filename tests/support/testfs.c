/* Small filesystems that tests fill and empty (testfs.h). */
#include "testfs.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "testbroker.h"

#define BALLAST_CHUNK (64 * 1024) /* bytes per write of the ballast */

bool txm_testfs_private(char *why, size_t cap)
{
    if (unshare(CLONE_NEWNS) != 0) {
        snprintf(why, cap, "unshare(CLONE_NEWNS): %s", strerror(errno));
        return false;
    }
    /* Without this, a mount made here could propagate back to the host's
     * namespace through a shared "/" (systemd's default). */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        snprintf(why, cap, "mount --make-rprivate /: %s", strerror(errno));
        return false;
    }
    return true;
}

bool txm_testfs_mount(const char *dir, long size_kb, char *why, size_t cap)
{
    char opts[64];
    snprintf(opts, sizeof opts, "size=%ldk,mode=0755", size_kb);
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        snprintf(why, cap, "mount -t tmpfs -o %s tmpfs %s: %s", opts, dir, strerror(errno));
        return false;
    }
    return true;
}

bool txm_testfs_usable(char *why, size_t cap)
{
    if (!txm_testfs_private(why, cap))
        return false;
    char *dir = txm_test_mkdtemp();
    if (dir == NULL) {
        snprintf(why, cap, "no temporary folder");
        return false;
    }
    bool ok = txm_testfs_mount(dir, 64, why, cap);
    if (ok)
        txm_testfs_umount(dir);
    txm_test_rmdir(dir);
    free(dir);
    return ok;
}

void txm_testfs_umount(const char *dir)
{
    if (umount2(dir, 0) != 0 && errno == EBUSY)
        umount2(dir, MNT_DETACH);
}

bool txm_testfs_fill(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ballast", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOSPC;
    static const char zeros[BALLAST_CHUNK];
    bool full = false;
    for (;;) {
        ssize_t n = write(fd, zeros, sizeof zeros);
        if (n >= 0)
            continue; /* a short write is followed by ENOSPC */
        if (errno == EINTR)
            continue;
        full = errno == ENOSPC;
        break;
    }
    close(fd);
    return full;
}

void txm_testfs_empty(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ballast", dir);
    unlink(path);
}

long txm_testfs_free_kb(const char *dir)
{
    struct statvfs s;
    if (statvfs(dir, &s) != 0)
        return -1;
    return (long)((unsigned long long)s.f_bavail * s.f_frsize / 1024);
}
