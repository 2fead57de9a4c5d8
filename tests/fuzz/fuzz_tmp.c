/* Private folders of the harnesses: made per process, removed at exit, and
 * those of dead processes removed on the next start. */
#include "fuzz_tmp.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fuzz_tmp_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[512];
        if (e->d_name[0] != '.' &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_stale(const char *base, const char *prefix)
{
    DIR *d = opendir(base);
    if (d == NULL)
        return;
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0)
            continue;
        long pid = strtol(e->d_name + plen, NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char path[512];
            if (snprintf(path, sizeof path, "%s/%s", base, e->d_name) < (int)sizeof path)
                fuzz_tmp_remove(path);
        }
    }
    closedir(d);
}

void fuzz_tmp_make(const char *prefix, char *out, size_t cap)
{
    struct stat sb;
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    remove_stale(base, prefix);
    if (snprintf(out, cap, "%s/%s%ld", base, prefix, (long)getpid()) >= (int)cap)
        abort();
    fuzz_tmp_remove(out);
    if (mkdir(out, 0700) != 0) {
        fprintf(stderr, "fuzz: cannot make %s: %s\n", out, strerror(errno));
        abort();
    }
}
