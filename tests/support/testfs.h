/* Test support: small filesystems of a test's own (tmpfs), filled to the
 * last block with a ballast file and emptied again, mounted in a mount
 * namespace of the test process so that no mount outlives it. */
#ifndef TXM_TESTFS_H
#define TXM_TESTFS_H

#include <stdbool.h>
#include <stddef.h>

/* Moves the calling process into a mount namespace of its own, with every
 * mount private, so that mounts made after it vanish with the process (and
 * its children, which share it) even when it is killed. Call it before any
 * thread starts. False, with why, when the process may not (not root, or a
 * container without CAP_SYS_ADMIN). */
bool txm_testfs_private(char *why, size_t cap);

/* txm_testfs_private, then one small tmpfs mounted and unmounted: a mount
 * namespace is not enough where a security profile refuses the mount
 * itself. False, with why, when a test cannot have its own filesystem. */
bool txm_testfs_usable(char *why, size_t cap);

/* Mounts a tmpfs of size_kb KiB on dir (an existing folder). False, with
 * why, when it cannot. */
bool txm_testfs_mount(const char *dir, long size_kb, char *why, size_t cap);

/* Unmounts dir, detaching it lazily when a file on it is still open.
 * A no-op for a folder that is not a mount point. */
void txm_testfs_umount(const char *dir);

/* Writes <dir>/ballast until the filesystem has no block left (ENOSPC).
 * False when another error came first. */
bool txm_testfs_fill(const char *dir);

/* Deletes <dir>/ballast: the space it held returns. */
void txm_testfs_empty(const char *dir);

/* The KiB free on dir's filesystem for an unprivileged writer; -1 on error. */
long txm_testfs_free_kb(const char *dir);

#endif
