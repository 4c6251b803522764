#include "core/lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"

struct slex_lock {
    char path[4200];
    char owner[512]; /* the file's contents: "host pid start-time\n" */
    time_t refreshed;
};

typedef struct owner {
    char host[256];
    long pid;
    long long start; /* clock ticks after boot (/proc/PID/stat field 22); -1 when unknown */
} owner;

/* When process pid started (field 22 of /proc/PID/stat), or -1. */
static long long start_time(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return -1;
    p++;
    for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' '); /* p: before field 22 */
    return p ? strtoll(p + 1, NULL, 10) : -1;
}

/* 0 when process pid of this host no longer runs (or the pid now names a process that started
 * at another time than `start`, when start >= 0). */
static int process_alive(long pid, long long start) {
    if (pid <= 0) return 0;
    if (kill((pid_t)pid, 0) && errno == ESRCH) return 0;
    if (start >= 0) {
        long long now = start_time(pid);
        if (now >= 0 && now != start) return 0;
    }
    return 1;
}

/* Reads a lock file's owner: 1 when read, 0 when the file is gone, -1 when it is not (yet)
 * complete. */
static int read_owner(const char *path, owner *o, struct stat *st) {
    char buf[512];
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    ssize_t n = fstat(fd, st) == 0 ? read(fd, buf, sizeof buf - 1) : -1;
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    if (!strchr(buf, '\n')) return -1;
    return sscanf(buf, "%255s %ld %lld", o->host, &o->pid, &o->start) == 3 ? 1 : -1;
}

static int is_stale(const owner *o, const struct stat *st, const char *host) {
    if (!strcmp(o->host, host)) return !process_alive(o->pid, o->start);
    return time(NULL) - st->st_mtime > SLEX_LOCK_STALE_SECONDS;
}

/* Removes a stale lock unless another process got there first: breakers serialise on flock of
 * the file, and the one that finds the path still naming the file it opened removes it. */
static void break_stale(const char *path, const struct stat *seen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat mine, now;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &mine) == 0 && stat(path, &now) == 0 &&
        mine.st_ino == now.st_ino && mine.st_dev == now.st_dev && mine.st_ino == seen->st_ino &&
        mine.st_mtime == seen->st_mtime)
        unlink(path);
    close(fd);
}

slex_lock *slex_lock_take(const char *path, const char *what, slex_error *err) {
    slex_lock *l = calloc(1, sizeof *l);
    if (!l) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path), NULL;
    if (snprintf(l->path, sizeof l->path, "%s", path) >= (int)sizeof l->path) {
        free(l);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path), NULL;
    }
    char host[256];
    slex_host_name(host, sizeof host);
    long pid = (long)getpid();
    snprintf(l->owner, sizeof l->owner, "%s %ld %lld\n", host, pid, start_time(pid));
    size_t len = strlen(l->owner);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            int bad = write(fd, l->owner, len) != (ssize_t)len;
            bad |= close(fd) != 0;
            if (bad) {
                unlink(path);
                free(l);
                return slex_fail_as(err, SLEX_ERR_IO, "%s: cannot write the lock (disk full?)", path), NULL;
            }
            l->refreshed = time(NULL);
            return l;
        }
        if (errno != EEXIST) {
            slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create the lock: %s", path, strerror(errno));
            free(l);
            return NULL;
        }
        owner o;
        struct stat st;
        int got = read_owner(path, &o, &st);
        if (got == 0) continue; /* released meanwhile */
        if (got < 0) {
            /* Being written by an owner that has just created it, or left empty by one that died
             * at that moment (then old). */
            if (st.st_mtime && time(NULL) - st.st_mtime > 10) break_stale(path, &st);
            struct timespec pause = {0, 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
            continue;
        }
        if (is_stale(&o, &st, host)) {
            break_stale(path, &st);
            continue;
        }
        slex_fail_as(err, SLEX_ERR_IO, "%s is being written by another run: pid %ld on host %s (lock %s, refreshed %lld s ago); "
                       "wait for it, or if that run is dead remove the lock",
                  what, o.pid, o.host, path, (long long)(time(NULL) - st.st_mtime));
        free(l);
        return NULL;
    }
    slex_fail_as(err, SLEX_ERR_IO, "%s: cannot take the lock (it keeps changing hands)", path);
    free(l);
    return NULL;
}

/* 1 when the lock file still holds our owner line. */
static int still_ours(const slex_lock *l) {
    char buf[512];
    int fd = open(l->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return 0;
    buf[n] = '\0';
    return !strcmp(buf, l->owner);
}

void slex_lock_refresh(slex_lock *l) {
    if (!l) return;
    time_t now = time(NULL);
    if (now - l->refreshed < SLEX_LOCK_REFRESH_SECONDS) return;
    l->refreshed = now;
    if (still_ours(l)) utimensat(AT_FDCWD, l->path, NULL, 0);
}

void slex_lock_release(slex_lock *l) {
    if (!l) return;
    if (still_ours(l)) unlink(l->path);
    free(l);
}

/* The pid of a name "<anything>.tmp-<host>-<pid>", or 0 when the name is not one of host's. */
static long tmp_owner(const char *name, const char *host) {
    size_t hl = strlen(host);
    for (const char *p = strstr(name, ".tmp-"); p; p = strstr(p + 1, ".tmp-")) {
        const char *h = p + 5;
        if (strncmp(h, host, hl) || h[hl] != '-') continue;
        char *end;
        long pid = strtol(h + hl + 1, &end, 10);
        if (*end == '\0' && end != h + hl + 1 && pid > 0) return pid;
    }
    return 0;
}

int slex_sweep_dead_temporaries(const char *dir, slex_error *err) {
    DIR *d = opendir(dir);
    if (!d) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot list: %s", dir, strerror(errno));
    char host[256], path[4600];
    slex_host_name(host, sizeof host);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        struct stat st;
        if (lstat(path, &st) || !S_ISREG(st.st_mode)) continue;
        long pid = tmp_owner(e->d_name, host);
        int dead = pid > 0 && pid != (long)getpid() && !process_alive(pid, -1);
        size_t n = strlen(e->d_name);
        if (!pid && n > 5 && !strcmp(e->d_name + n - 5, ".lock")) {
            owner o;
            struct stat lst;
            dead = read_owner(path, &o, &lst) == 1 && !strcmp(o.host, host) && !process_alive(o.pid, o.start);
        }
        if (dead && unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}
