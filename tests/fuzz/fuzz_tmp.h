/* Private folders of the harnesses that keep files (SQLite databases):
 * on /dev/shm when there is one, so per-input writes cost no disk I/O. */
#ifndef TXM_FUZZ_TMP_H
#define TXM_FUZZ_TMP_H

#include <stddef.h>

/* Makes the folder <base>/<prefix><pid> (base /dev/shm, else $TMPDIR, else
 * /tmp) into out, after removing the folders of earlier harness processes
 * with this prefix that are gone (a crash ends libFuzzer without atexit).
 * Aborts when it cannot. */
void fuzz_tmp_make(const char *prefix, char *out, size_t cap);

/* Removes the files in dir, then dir. */
void fuzz_tmp_remove(const char *dir);

#endif
