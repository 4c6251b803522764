/* lock: which process owns an output, and the leftovers of processes that died.
 *
 * A lock is a file created with O_EXCL (atomic on local file systems, NFS v3+ and Lustre) that
 * names its owner: "host pid start-time".  Another run that wants the same output fails with a
 * message naming that owner.  A lock whose owner is gone is taken over: on the same host when
 * the pid no longer runs (or now names a younger process), on another host when its owner has
 * not refreshed it for SLEX_LOCK_STALE_SECONDS (writers refresh it as they go).  Different
 * outputs take different locks, so the tasks of a job array, each writing its own shard of one
 * store, never wait for each other.
 *
 * Temporaries (slex_tmp_name: "<final>.tmp-<host>-<pid>") of processes of this host that no
 * longer run are garbage: slex_sweep_dead_temporaries removes them when a run finishes. */
#ifndef SLEX_LOCK_H
#define SLEX_LOCK_H

#include "core/err.h"

/* A lock of another host is stale after this many seconds without a refresh. */
#define SLEX_LOCK_STALE_SECONDS 300
/* Writers refresh their locks at most this often (slex_lock_refresh). */
#define SLEX_LOCK_REFRESH_SECONDS 30

typedef struct slex_lock slex_lock;

/* Takes the lock file at path for `what` (a phrase for messages: "shard 3 of store feats/en").
 * Fails when a live process holds it, with a message naming it (host, pid, age). */
slex_lock *slex_lock_take(const char *path, const char *what, slex_error *err);
/* Touches the lock when SLEX_LOCK_REFRESH_SECONDS have passed since the last refresh (cheap
 * otherwise), so that other hosts see its owner is alive. */
void slex_lock_refresh(slex_lock *lock);
/* Removes the lock file and frees lock (NULL is fine). */
void slex_lock_release(slex_lock *lock);

/* Removes from dir (not recursively) the regular files named "*.tmp-<this host>-<pid>" and the
 * "*.lock" files whose owner is a process of this host that no longer runs.  Never touches
 * files of live processes or of other hosts.  Returns the number removed, or -1. */
int slex_sweep_dead_temporaries(const char *dir, slex_error *err);

#endif
