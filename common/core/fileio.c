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
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return slex_fail(err, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return slex_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return slex_fail(err, "%s: exists and is not a directory", path);
    return 0;
}

int slex_mkdirs_for_file(const char *path, slex_error *err) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return slex_fail(err, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = '\0';
    return slex_mkdirs(dir, err);
}

int slex_fsync_path(const char *path, slex_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return slex_fail(err, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc) return slex_fail(err, "%s: fsync failed: %s", path, strerror(saved));
    return 0;
}

int slex_tmp_name(const char *path, char *buf, size_t size, slex_error *err) {
    char host[256] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    int w = snprintf(buf, size, "%s.tmp-%s-%ld", path, host, (long)getpid());
    if (w < 0 || (size_t)w >= size) return slex_fail(err, "%s: path too long", path);
    return 0;
}

int slex_write_file_atomic(const char *path, const char *text, size_t len, slex_error *err) {
    char tmp[4400];
    if (slex_tmp_name(path, tmp, sizeof tmp, err)) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return slex_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            close(fd);
            unlink(tmp);
            return slex_fail(err, "%s: write failed: %s", tmp, strerror(saved));
        }
        done += (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        int saved = errno;
        unlink(tmp);
        return slex_fail(err, "%s: cannot flush: %s", tmp, strerror(saved));
    }
    if (rename(tmp, path)) {
        int saved = errno;
        unlink(tmp);
        return slex_fail(err, "%s: cannot rename into place: %s", path, strerror(saved));
    }
    return 0;
}

char *slex_read_text_file(const char *path, size_t *len, slex_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return slex_fail(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
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
    if (!buf) return slex_fail(err, "%s: out of memory", path), NULL;
    if (bad) {
        free(buf);
        return slex_fail(err, "%s: read error", path), NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int slex_file_crc32(const char *path, uint32_t *crc, int64_t *bytes, slex_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return slex_fail(err, "%s: cannot open: %s", path, strerror(errno));
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) {
        close(fd);
        return slex_fail(err, "%s: out of memory", path);
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
            return slex_fail(err, "%s: read error: %s", path, strerror(saved));
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
