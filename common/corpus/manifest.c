#include "corpus/manifest.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void strip_newline(char *s, ssize_t *len) {
    while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r')) s[--*len] = '\0';
}

/* Parses `relpath<TAB>num_samples[<TAB>extra...]` in place into e; sets e->malformed on failure. */
static int parse_line(char *line, slex_manifest_entry *e) {
    e->num_samples = -1;
    e->extra = NULL;
    e->malformed = NULL;
    char *tab = strchr(line, '\t');
    if (!*line) e->malformed = "empty line";
    else if (!tab) e->malformed = "no tab between path and sample count";
    else if (tab == line) e->malformed = "empty path";
    if (e->malformed) return (e->relpath = strdup(line)) ? 0 : -1;
    *tab = '\0';
    char *count = tab + 1;
    char *next = strchr(count, '\t');
    if (next) *next = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(count, &end, 10);
    if (errno || end == count || *end || v < 0) {
        *tab = '\t';
        if (next) *next = '\t';
        e->malformed = "sample count is not a non-negative integer";
        return (e->relpath = strdup(line)) ? 0 : -1;
    }
    e->num_samples = v;
    if (!(e->relpath = strdup(line))) return -1;
    if (next && !(e->extra = strdup(next + 1))) return -1;
    return 0;
}

slex_manifest *slex_manifest_read(const char *path, slex_error *err) {
    return slex_manifest_read_range(path, 0, INT64_MAX, err);
}

slex_manifest *slex_manifest_read_range(const char *path, int64_t start, int64_t end, slex_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return slex_fail(err, "%s: cannot open manifest: %s", path, strerror(errno)), NULL;
    slex_manifest *m = calloc(1, sizeof *m);
    char *line = NULL;
    size_t cap = 0, entries_cap = 0;
    ssize_t len;
    if (!m || !(m->path = strdup(path))) goto oom;
    if ((len = getline(&line, &cap, f)) < 0) {
        slex_fail(err, "%s: empty manifest (line 1 must be the root directory)", path);
        goto fail;
    }
    strip_newline(line, &len);
    if (!(m->root = strdup(line))) goto oom;
    m->first = start;
    for (int64_t lineno = 2; (len = getline(&line, &cap, f)) >= 0; lineno++) {
        strip_newline(line, &len);
        if ((size_t)len != strlen(line)) {
            slex_fail(err, "%s:%lld: line contains a NUL byte", path, (long long)lineno);
            goto fail;
        }
        int64_t index = m->total++;
        if (index < start || index >= end) continue;
        if ((size_t)m->n == entries_cap) {
            entries_cap = entries_cap ? 2 * entries_cap : 1024;
            slex_manifest_entry *grown = realloc(m->entries, entries_cap * sizeof *grown);
            if (!grown) goto oom;
            m->entries = grown;
        }
        slex_manifest_entry *e = &m->entries[m->n];
        memset(e, 0, sizeof *e);
        e->line = lineno;
        m->n++;
        if (parse_line(line, e)) goto oom;
    }
    if (ferror(f)) {
        slex_fail(err, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    free(line);
    fclose(f);
    return m;
oom:
    slex_fail(err, "%s: out of memory while reading the manifest", path);
fail:
    free(line);
    fclose(f);
    slex_manifest_free(m);
    return NULL;
}

void slex_manifest_free(slex_manifest *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n; i++) {
        free(m->entries[i].relpath);
        free(m->entries[i].extra);
    }
    free(m->entries);
    free(m->root);
    free(m->path);
    free(m);
}

int slex_manifest_audio_path(const slex_manifest *m, int64_t i, char *buf, size_t size, slex_error *err) {
    int w = snprintf(buf, size, "%s/%s", m->root, m->entries[i].relpath);
    if (w < 0 || (size_t)w >= size)
        return slex_fail(err, "%s:%lld: audio path is too long", m->path, (long long)m->entries[i].line);
    return 0;
}

void slex_manifest_write_entry(FILE *f, const slex_manifest_entry *e) {
    if (e->extra) fprintf(f, "%s\t%lld\t%s\n", e->relpath, (long long)e->num_samples, e->extra);
    else fprintf(f, "%s\t%lld\n", e->relpath, (long long)e->num_samples);
}
