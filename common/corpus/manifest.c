#include "corpus/manifest.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/hash.h"

#define PATH_CAP 4200

static void strip_newline(char *s, ssize_t *len) {
    while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r')) s[--*len] = '\0';
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static int is_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0 || (n == 1 && c < 0xc2) || (c == 0xf4 && p[1] > 0x8f) || c > 0xf4) return 0;
        if (n == 2 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))) return 0;
        if (n == 3 && c == 0xf0 && p[1] < 0x90) return 0;
        for (int k = 1; k <= n; k++)
            if ((p[k] & 0xc0) != 0x80) return 0;
        p += n + 1;
    }
    return 1;
}

int slex_manifest_columns_path(const char *manifest, char *buf, size_t size, slex_error *err) {
    size_t n = strlen(manifest);
    if (n >= 4 && !strcmp(manifest + n - 4, ".tsv")) n -= 4;
    int w = snprintf(buf, size, "%.*s.columns", (int)n, manifest);
    if (w < 0 || (size_t)w >= size) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", manifest);
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------ */

struct slex_manifest_reader {
    char *path;
    FILE *f;
    char *root;
    char *line;
    size_t cap;
    int64_t lineno;
    char side_path[PATH_CAP];
    FILE *side;       /* the side file, or NULL */
    char *columns;    /* its column names */
    char *side_line;
    size_t side_cap;
};

/* Parses `relpath<TAB>num_samples[<TAB>extra...]` in place into e (pointers into line); sets
 * e->malformed when the line cannot be used. */
static void parse_line(char *line, slex_manifest_entry *e) {
    e->relpath = line;
    e->num_samples = -1;
    e->extra = NULL;
    e->malformed = NULL;
    char *tab = strchr(line, '\t');
    if (!*line) e->malformed = "empty line";
    else if (!tab) e->malformed = "no tab between path and sample count";
    else if (tab == line) e->malformed = "empty path";
    if (e->malformed) return;
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
        return;
    }
    if (!is_utf8(line)) {
        *tab = '\t';
        if (next) *next = '\t';
        e->malformed = "path is not valid UTF-8 (ids are stored as UTF-8)";
        return;
    }
    e->num_samples = v;
    if (next) e->extra = next + 1;
}

/* One line of f into *line without its newline; 0 at the end, -1 on a NUL byte or read error. */
static int read_line(FILE *f, const char *path, int64_t lineno, char **line, size_t *cap, slex_error *err) {
    ssize_t len = getline(line, cap, f);
    if (len < 0) {
        if (ferror(f)) return slex_fail_as(err, slex_errno_kind(errno), "%s: read error: %s", path, strerror(errno));
        return 0;
    }
    strip_newline(*line, &len);
    if ((size_t)len != strlen(*line))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: line contains a NUL byte%s", path, (long long)lineno,
                            lineno == 1 ? " (line 1 is the root directory)" : "");
    return 1;
}

void slex_manifest_reader_close(slex_manifest_reader *r) {
    if (!r) return;
    if (r->f) fclose(r->f);
    if (r->side) fclose(r->side);
    free(r->path);
    free(r->root);
    free(r->line);
    free(r->columns);
    free(r->side_line);
    free(r);
}

slex_manifest_reader *slex_manifest_reader_open(const char *path, slex_error *err) {
    slex_manifest_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path), NULL;
    }
    if (!(r->f = fopen(path, "r"))) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open manifest: %s", path, strerror(errno));
        goto fail;
    }
    int got = read_line(r->f, path, 1, &r->line, &r->cap, err);
    if (got < 0) goto fail;
    if (got == 0) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: empty manifest (line 1 must be the root directory)", path);
        goto fail;
    }
    r->lineno = 1;
    if (!(r->root = strdup(r->line))) goto oom;
    if (slex_manifest_columns_path(path, r->side_path, sizeof r->side_path, err)) goto fail;
    if ((r->side = fopen(r->side_path, "r"))) {
        got = read_line(r->side, r->side_path, 1, &r->side_line, &r->side_cap, err);
        if (got < 0) goto fail;
        if (got == 0 || strncmp(r->side_line, "relpath", 7) || (r->side_line[7] && r->side_line[7] != '\t')) {
            slex_fail_as(err, SLEX_ERR_INPUT,
                         "%s: line 1 must name the columns, starting with \"relpath\" (the side file of %s)",
                         r->side_path, path);
            goto fail;
        }
        if (r->side_line[7] && !(r->columns = strdup(r->side_line + 8))) goto oom;
    } else if (errno != ENOENT) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", r->side_path, strerror(errno));
        goto fail;
    }
    return r;
oom:
    slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
fail:
    slex_manifest_reader_close(r);
    return NULL;
}

const char *slex_manifest_reader_root(const slex_manifest_reader *r) { return r->root; }
const char *slex_manifest_reader_columns(const slex_manifest_reader *r) { return r->columns; }

/* The side file's line for the entry just read: its columns into e->extra. */
static int read_side_line(slex_manifest_reader *r, slex_manifest_entry *e, slex_error *err) {
    int got = read_line(r->side, r->side_path, r->lineno, &r->side_line, &r->side_cap, err);
    if (got < 0) return -1;
    if (got == 0)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: ends at line %lld but %s goes on (line %lld): the side file does not belong "
                            "to this manifest",
                            r->side_path, (long long)r->lineno - 1, r->path, (long long)r->lineno);
    if (e->extra)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s:%lld: the line has extra columns and %s gives columns too: keep one of them", r->path,
                            (long long)r->lineno, r->side_path);
    char *tab = strchr(r->side_line, '\t');
    if (tab) *tab = '\0';
    if (!e->malformed && strcmp(r->side_line, e->relpath))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s:%lld: is for '%s' but line %lld of %s is '%s': the side file does not belong to "
                            "this manifest",
                            r->side_path, (long long)r->lineno, r->side_line, (long long)r->lineno, r->path,
                            e->relpath);
    e->extra = tab ? tab + 1 : NULL;
    return 0;
}

int slex_manifest_reader_next(slex_manifest_reader *r, slex_manifest_entry *e, slex_error *err) {
    int got = read_line(r->f, r->path, r->lineno + 1, &r->line, &r->cap, err);
    if (got < 0) return -1;
    if (got == 0) {
        if (r->side && read_line(r->side, r->side_path, r->lineno + 1, &r->side_line, &r->side_cap, err) != 0)
            return err->msg[0] ? -1
                               : slex_fail_as(err, SLEX_ERR_INPUT,
                                              "%s: has more lines than %s (%lld): the side file does not belong to "
                                              "this manifest",
                                              r->side_path, r->path, (long long)r->lineno);
        return 0;
    }
    r->lineno++;
    parse_line(r->line, e);
    e->line = r->lineno;
    if (r->side && read_side_line(r, e, err)) return -1;
    return 1;
}

slex_manifest *slex_manifest_read(const char *path, slex_error *err) {
    return slex_manifest_read_range(path, 0, INT64_MAX, err);
}

static int copy_entry(slex_manifest_entry *dst, const slex_manifest_entry *src) {
    *dst = *src;
    dst->relpath = strdup(src->relpath);
    dst->extra = src->extra ? strdup(src->extra) : NULL;
    return dst->relpath && (dst->extra || !src->extra) ? 0 : -1;
}

slex_manifest *slex_manifest_read_range(const char *path, int64_t start, int64_t end, slex_error *err) {
    slex_manifest_reader *r = slex_manifest_reader_open(path, err);
    if (!r) return NULL;
    slex_manifest *m = calloc(1, sizeof *m);
    size_t entries_cap = 0;
    if (!m || !(m->path = strdup(path)) || !(m->root = strdup(r->root)) ||
        (r->columns && !(m->columns = strdup(r->columns))))
        goto oom;
    m->first = start;
    slex_manifest_entry e;
    int got;
    while ((got = slex_manifest_reader_next(r, &e, err)) > 0) {
        int64_t index = m->total++;
        if (index < start || index >= end) continue;
        if ((size_t)m->n == entries_cap) {
            entries_cap = entries_cap ? 2 * entries_cap : 1024;
            slex_manifest_entry *grown = realloc(m->entries, entries_cap * sizeof *grown);
            if (!grown) goto oom;
            m->entries = grown;
        }
        if (copy_entry(&m->entries[m->n++], &e)) goto oom;
    }
    slex_manifest_reader_close(r);
    if (got < 0) {
        slex_manifest_free(m);
        return NULL;
    }
    return m;
oom:
    slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory while reading the manifest", path);
    slex_manifest_reader_close(r);
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
    free(m->columns);
    free(m->path);
    free(m);
}

int slex_manifest_audio_path(const slex_manifest *m, int64_t i, char *buf, size_t size, slex_error *err) {
    int w = snprintf(buf, size, "%s/%s", m->root, m->entries[i].relpath);
    if (w < 0 || (size_t)w >= size)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: audio path is too long", m->path, (long long)m->entries[i].line);
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

struct slex_manifest_writer {
    char path[PATH_CAP], tmp[PATH_CAP + 300];
    char side_path[PATH_CAP], side_tmp[PATH_CAP + 300], body_tmp[PATH_CAP + 300];
    FILE *f;       /* the manifest */
    FILE *body;    /* the side file's lines after its header */
    char *columns; /* given names, or NULL */
    int max_extra; /* most extra columns on one line; 0: no side file */
};

static int close_synced(FILE *f) {
    int bad = ferror(f) || fflush(f) || fsync(fileno(f));
    return (fclose(f) != 0) | bad;
}

void slex_manifest_writer_abort(slex_manifest_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->body) fclose(w->body);
    unlink(w->tmp);
    unlink(w->body_tmp);
    unlink(w->side_tmp);
    free(w->columns);
    free(w);
}

slex_manifest_writer *slex_manifest_writer_open(const char *path, const char *root, const char *columns,
                                                slex_error *err) {
    slex_manifest_writer *w = calloc(1, sizeof *w);
    if (!w) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path), NULL;
    char body[PATH_CAP + 16];
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path ||
        slex_tmp_name(path, w->tmp, sizeof w->tmp, err) ||
        slex_manifest_columns_path(path, w->side_path, sizeof w->side_path, err) ||
        slex_tmp_name(w->side_path, w->side_tmp, sizeof w->side_tmp, err) ||
        snprintf(body, sizeof body, "%s.body", w->side_path) >= (int)sizeof body ||
        slex_tmp_name(body, w->body_tmp, sizeof w->body_tmp, err)) {
        if (!err->msg[0]) slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", path);
        free(w);
        return NULL;
    }
    if (strpbrk(root, "\r\n")) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: the root directory '%s' holds a line break", path, root);
        free(w);
        return NULL;
    }
    if ((columns && !(w->columns = strdup(columns))) || !(w->f = fopen(w->tmp, "w")) ||
        !(w->body = fopen(w->body_tmp, "w+"))) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", w->f ? w->body_tmp : w->tmp,
                     strerror(errno));
        slex_manifest_writer_abort(w);
        return NULL;
    }
    fprintf(w->f, "%s\n", root);
    return w;
}

int slex_manifest_writer_add(slex_manifest_writer *w, const char *relpath, int64_t num_samples, const char *extra,
                             slex_error *err) {
    if (!*relpath || strpbrk(relpath, "\t\r\n"))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: path '%s' is empty or holds a tab or line break: fairseq could not read it", w->path,
                            relpath);
    if (extra && strpbrk(extra, "\r\n"))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: the columns of '%s' hold a line break", w->path, relpath);
    fprintf(w->f, "%s\t%lld\n", relpath, (long long)num_samples);
    if (extra) {
        int n = 1;
        for (const char *p = extra; *p; p++) n += *p == '\t';
        if (n > w->max_extra) w->max_extra = n;
        fprintf(w->body, "%s\t%s\n", relpath, extra);
    } else {
        fprintf(w->body, "%s\n", relpath);
    }
    if (ferror(w->f) || ferror(w->body))
        return slex_fail_as(err, slex_errno_kind(errno), "%s: write error: %s", w->path, strerror(errno));
    return 0;
}

/* The side file: the column names, then the body. */
static int write_side_file(slex_manifest_writer *w, slex_error *err) {
    FILE *side = fopen(w->side_tmp, "w");
    if (!side) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", w->side_tmp, strerror(errno));
    fputs("relpath", side);
    if (w->columns) fprintf(side, "\t%s", w->columns);
    else
        for (int c = 0; c < w->max_extra; c++) fprintf(side, "\tcolumn%d", c + 3);
    fputc('\n', side);
    rewind(w->body);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, w->body)) > 0) fwrite(buf, 1, n, side);
    int bad = ferror(w->body);
    bad |= close_synced(side);
    if (bad || rename(w->side_tmp, w->side_path))
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot write: %s", w->side_path, strerror(errno));
    return 0;
}

int slex_manifest_writer_commit(slex_manifest_writer *w, slex_error *err) {
    int bad = close_synced(w->f);
    w->f = NULL;
    int rc = bad ? slex_fail_as(err, slex_errno_kind(errno), "%s: cannot write: %s", w->tmp, strerror(errno)) : 0;
    if (!rc && w->max_extra) rc = write_side_file(w, err);
    if (!rc && !w->max_extra && unlink(w->side_path) && errno != ENOENT)
        rc = slex_fail_as(err, slex_errno_kind(errno), "%s: cannot remove the side file of an earlier manifest: %s",
                          w->side_path, strerror(errno));
    if (!rc && rename(w->tmp, w->path))
        rc = slex_fail_as(err, slex_errno_kind(errno), "%s: cannot write: %s", w->path, strerror(errno));
    /* The renames (side file and manifest) are durable once their directory is (core/fileio.h). */
    if (!rc) rc = slex_fsync_parent(w->path, err);
    slex_manifest_writer_abort(w); /* closes and removes what is left */
    return rc;
}

int slex_manifest_copy(const char *src, const char *dst, slex_error *err) {
    slex_manifest_reader *r = slex_manifest_reader_open(src, err);
    if (!r) return -1;
    slex_manifest_writer *w = slex_manifest_writer_open(dst, r->root, r->columns, err);
    slex_manifest_entry e;
    int got = w ? 1 : -1;
    while (got > 0 && (got = slex_manifest_reader_next(r, &e, err)) > 0) {
        if (e.malformed)
            got = slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: malformed line: %s", src, (long long)e.line, e.malformed);
        else if (slex_manifest_writer_add(w, e.relpath, e.num_samples, e.extra, err)) got = -1;
    }
    slex_manifest_reader_close(r);
    if (got < 0) {
        slex_manifest_writer_abort(w);
        return -1;
    }
    return slex_manifest_writer_commit(w, err);
}

/* ---- duplicate ids ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t path_hash(const char *relpath) { return slex_fnv1a64_str(SLEX_FNV1A_BASIS, relpath); }

/* First pass: the path hashes that occur on more than one line, sorted and distinct. */
static int repeated_hashes(const char *path, uint64_t **out, int64_t *n_out, slex_error *err) {
    slex_manifest_reader *r = slex_manifest_reader_open(path, err);
    if (!r) return -1;
    uint64_t *all = NULL;
    int64_t n = 0, cap = 0;
    slex_manifest_entry e;
    int got;
    while ((got = slex_manifest_reader_next(r, &e, err)) > 0) {
        if (e.malformed) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            uint64_t *grown = realloc(all, (size_t)cap * sizeof *grown);
            if (!grown) {
                got = slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for %lld paths", path, (long long)n);
                break;
            }
            all = grown;
        }
        all[n++] = path_hash(e.relpath);
    }
    slex_manifest_reader_close(r);
    if (got < 0) {
        free(all);
        return -1;
    }
    if (n) qsort(all, (size_t)n, sizeof *all, cmp_u64);
    int64_t k = 0;
    for (int64_t i = 1; i < n; i++)
        if (all[i] == all[i - 1] && (k == 0 || all[k - 1] != all[i])) all[k++] = all[i];
    *out = all;
    *n_out = k;
    return 0;
}

typedef struct {
    uint64_t hash;
    int64_t line;
    char *path;
} candidate;

static int by_hash_then_line(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Second pass: the lines whose hash repeats, with their paths (equal hashes are not proof). */
static int read_candidates(const char *path, const uint64_t *hashes, int64_t n_hashes, candidate **out,
                           int64_t *n_out, slex_error *err) {
    slex_manifest_reader *r = slex_manifest_reader_open(path, err);
    if (!r) return -1;
    candidate *c = NULL;
    int64_t n = 0, cap = 0;
    slex_manifest_entry e;
    int got;
    while ((got = slex_manifest_reader_next(r, &e, err)) > 0) {
        uint64_t h = path_hash(e.relpath);
        if (e.malformed || !bsearch(&h, hashes, (size_t)n_hashes, sizeof *hashes, cmp_u64)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            candidate *grown = realloc(c, (size_t)cap * sizeof *grown);
            if (!grown) {
                got = -1;
                break;
            }
            c = grown;
        }
        c[n] = (candidate){.hash = h, .line = e.line, .path = strdup(e.relpath)};
        if (!c[n++].path) {
            got = -1;
            break;
        }
    }
    slex_manifest_reader_close(r);
    *out = c;
    *n_out = n;
    if (got < 0 && !err->msg[0]) slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    return got < 0 ? -1 : 0;
}

int slex_manifest_find_duplicates(const char *path, int64_t *n_duplicates, char *example, size_t size,
                                  slex_error *err) {
    *n_duplicates = 0;
    if (size) example[0] = '\0';
    uint64_t *hashes = NULL;
    int64_t n_hashes = 0, n = 0;
    candidate *cand = NULL;
    if (repeated_hashes(path, &hashes, &n_hashes, err)) return -1;
    int rc = n_hashes ? read_candidates(path, hashes, n_hashes, &cand, &n, err) : 0;
    free(hashes);
    /* Within each group of equal hashes (in line order), a line that repeats an earlier one. */
    if (n) qsort(cand, (size_t)n, sizeof *cand, by_hash_then_line); /* (qsort of NULL is undefined) */
    int64_t first_line = INT64_MAX;
    for (int64_t i = 0, group = 0; !rc && i < n; i++) {
        if (cand[i].hash != cand[group].hash) group = i;
        for (int64_t j = group; j < i; j++) {
            if (strcmp(cand[j].path, cand[i].path)) continue;
            ++*n_duplicates;
            if (cand[i].line < first_line && size) {
                first_line = cand[i].line;
                snprintf(example, size, "%s (lines %lld and %lld)", cand[i].path, (long long)cand[j].line,
                         (long long)cand[i].line);
            }
            break;
        }
    }
    for (int64_t i = 0; i < n; i++) free(cand[i].path);
    free(cand);
    return rc;
}
