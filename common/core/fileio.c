#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/hash.h"

int slex_mkdirs(const char *path, slex_error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create directory: %s", buf, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: exists and is not a directory", path);
    return 0;
}

int slex_mkdirs_for_file(const char *path, slex_error *err) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = '\0';
    return slex_mkdirs(dir, err);
}

int slex_fsync_path(const char *path, slex_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc) return slex_fail_as(err, slex_errno_kind(saved), "%s: fsync failed: %s", path, strerror(saved));
    return 0;
}

void slex_host_name(char *buf, size_t size) {
    if (gethostname(buf, size) || !buf[0]) snprintf(buf, size, "host");
    buf[size - 1] = '\0';
}

int slex_tmp_name(const char *path, char *buf, size_t size, slex_error *err) {
    char host[256];
    slex_host_name(host, sizeof host);
    int w = snprintf(buf, size, "%s.tmp-%s-%ld", path, host, (long)getpid());
    if (w < 0 || (size_t)w >= size) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path);
    return 0;
}

int slex_fsync_parent(const char *path, slex_error *err) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    /* Some file systems cannot fsync a directory (EINVAL): their renames are as durable as they get. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open for fsync: %s", dir, strerror(errno));
    int rc = fsync(fd) && errno != EINVAL;
    int saved = errno;
    close(fd);
    if (rc) return slex_fail_as(err, slex_errno_kind(saved), "%s: fsync of the directory failed: %s", dir, strerror(saved));
    return 0;
}

int slex_atomic_begin(slex_atomic *a, const char *path, slex_error *err) {
    a->f = NULL;
    a->tmp[0] = '\0';
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path);
    return slex_tmp_name(path, a->tmp, sizeof a->tmp, err);
}

int slex_atomic_fopen(slex_atomic *a, const char *path, slex_error *err) {
    if (slex_atomic_begin(a, path, err)) return -1;
    if (!(a->f = fopen(a->tmp, "wb"))) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", a->tmp, strerror(errno));
    return 0;
}

int slex_atomic_commit(slex_atomic *a, slex_error *err) {
    if (a->f) {
        errno = 0;
        int bad = ferror(a->f) || fflush(a->f);
        int saved = errno;
        if (fclose(a->f)) {
            bad = 1;
            if (!saved) saved = errno;
        }
        a->f = NULL;
        if (bad) {
            unlink(a->tmp);
            return slex_fail_as(err, SLEX_ERR_IO, "%s: write failed (disk full?)%s%s", a->tmp, saved ? ": " : "",
                             saved ? strerror(saved) : "");
        }
    }
    if (slex_fsync_path(a->tmp, err)) {
        unlink(a->tmp);
        return -1;
    }
    if (rename(a->tmp, a->path)) {
        int saved = errno;
        unlink(a->tmp);
        return slex_fail_as(err, slex_errno_kind(saved), "%s: cannot rename into place: %s", a->path, strerror(saved));
    }
    a->tmp[0] = '\0';
    return slex_fsync_parent(a->path, err);
}

void slex_atomic_abandon(slex_atomic *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) unlink(a->tmp);
    a->tmp[0] = '\0';
}

int slex_write_file_atomic(const char *path, const char *text, size_t len, slex_error *err) {
    slex_atomic a;
    if (slex_atomic_fopen(&a, path, err)) return -1;
    if (fwrite(text, 1, len, a.f) != len) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: write failed (disk full?): %s", a.tmp, strerror(errno));
        slex_atomic_abandon(&a);
        return -1;
    }
    return slex_atomic_commit(&a, err);
}

char *slex_read_text_file(const char *path, size_t *len, slex_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", path, strerror(errno)), NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path), NULL;
    if (bad) {
        free(buf);
        return slex_fail_as(err, SLEX_ERR_IO, "%s: read error", path), NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int slex_file_crc32(const char *path, uint32_t *crc, int64_t *bytes, slex_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", path, strerror(errno));
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) {
        close(fd);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    }
    uLong c = crc32(0L, Z_NULL, 0);
    int64_t total = 0;
    for (;;) {
        ssize_t r = read(fd, buf, BUF);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int saved = errno;
            free(buf);
            close(fd);
            return slex_fail_as(err, slex_errno_kind(saved), "%s: read error: %s", path, strerror(saved));
        }
        if (r == 0) break;
        c = crc32(c, buf, (uInt)r);
        total += r;
    }
    free(buf);
    close(fd);
    *crc = (uint32_t)c;
    if (bytes) *bytes = total;
    return 0;
}

int slex_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void slex_fingerprint_hex(const char *text, char out[17]) {
    /* The historical basis: existing stores' fingerprints depend on it (core/hash.h). */
    snprintf(out, 17, "%016llx", (unsigned long long)slex_fnv1a64_str(SLEX_FNV1A_SLEX_BASIS, text));
}
