#include "corpus/align.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/hash.h"

/* ---- frames ---- */

enum { FRAME_WINDOW = 400, FRAME_CENTRE = 200 };

static int64_t frame_hop(slex_frame_rate rate) {
    return rate == SLEX_FRAMES_50HZ ? 320 : rate == SLEX_FRAMES_100HZ ? 160 : -1;
}

int64_t slex_align_num_frames(slex_frame_rate rate, int64_t num_samples) {
    int64_t hop = frame_hop(rate);
    if (hop < 0) return -1;
    if (num_samples < FRAME_WINDOW) return 0;
    return (num_samples - FRAME_WINDOW) / hop + 1;
}

size_t slex_label_base_length(const char *label) {
    const char *sep = strrchr(label, SLEX_TONE_SEPARATOR);
    if (!sep || sep == label || !sep[1]) return strlen(label);
    for (const char *p = sep + 1; *p; p++)
        if (*p < '0' || *p > '9') return strlen(label);
    return (size_t)(sep - label);
}

/* ---- segments ---- */

static const char *label_problem(const char *label) {
    if (!label || !*label) return "empty label";
    if (strlen(label) > SLEX_LABEL_MAX) return "label longer than 63 bytes";
    for (const char *p = label; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') return "label contains whitespace";
    return NULL;
}

int slex_align_check_segments(const char *where, const slex_segment *segs, int64_t n, int64_t num_samples,
                              slex_error *err) {
    if (n <= 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no phones", where);
    int64_t expect = 0;
    for (int64_t i = 0; i < n; i++) {
        const slex_segment *s = &segs[i];
        const char *bad = label_problem(s->label);
        if (bad) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: phone %lld: %s", where, (long long)i, bad);
        if (s->start != expect)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: phone %lld ('%s') starts at sample %lld, expected %lld (%s)",
                                where, (long long)i, s->label, (long long)s->start, (long long)expect,
                                i == 0              ? "the first phone starts at 0"
                                : s->start > expect ? "gap"
                                                    : "overlap");
        if (s->end <= s->start)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: phone %lld ('%s') is empty or reversed: [%lld, %lld)", where,
                                (long long)i, s->label, (long long)s->start, (long long)s->end);
        expect = s->end;
    }
    if (num_samples >= 0 && expect != num_samples)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: phones end at sample %lld but the audio has %lld samples", where,
                            (long long)expect, (long long)num_samples);
    return 0;
}

void slex_align_write_header(FILE *f) {
    fprintf(f, "# slex alignment v1: utt_id<TAB>start<TAB>end<TAB>label, 16 kHz samples, end exclusive\n");
}

int slex_align_write_utt(FILE *f, const char *utt_id, const slex_segment *segs, int64_t n, slex_error *err) {
    if (slex_align_check_segments(utt_id, segs, n, -1, err)) return -1;
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%s\t%lld\t%lld\t%s\n", utt_id, (long long)segs[i].start, (long long)segs[i].end, segs[i].label);
    if (ferror(f)) return slex_fail_as(err, SLEX_ERR_IO, "%s: write error", utt_id);
    return 0;
}

/* ---- string -> index hash (open addressing, FNV-1a) ---- */

typedef struct str_index {
    int64_t *slots; /* index + 1, 0 = empty */
    int64_t cap;    /* power of two */
    int64_t used;
} str_index;

/* Finds the slot of key (len bytes) among strings[]; *found tells whether it holds the key. */
static int64_t index_slot(const str_index *x, char *const *strings, const char *key, size_t len, int *found) {
    int64_t mask = x->cap - 1;
    for (int64_t s = (int64_t)(slex_fnv1a64(SLEX_FNV1A_SLEX_BASIS, key, len) & (uint64_t)mask);; s = (s + 1) & mask) {
        int64_t v = x->slots[s];
        if (!v) {
            *found = 0;
            return s;
        }
        const char *cand = strings[v - 1];
        if (strlen(cand) == len && !memcmp(cand, key, len)) {
            *found = 1;
            return s;
        }
    }
}

static int64_t index_find(const str_index *x, char *const *strings, const char *key, size_t len) {
    if (!x->cap) return -1;
    int found;
    int64_t s = index_slot(x, strings, key, len, &found);
    return found ? x->slots[s] - 1 : -1;
}

/* Rebuilds the table for strings[0..n) with room to grow. */
static int index_rebuild(str_index *x, char *const *strings, int64_t n) {
    int64_t cap = 64;
    while (cap < 2 * (n + 1)) cap *= 2;
    int64_t *slots = calloc((size_t)cap, sizeof *slots);
    if (!slots) return -1;
    free(x->slots);
    x->slots = slots;
    x->cap = cap;
    x->used = 0;
    for (int64_t i = 0; i < n; i++) {
        int found;
        int64_t s = index_slot(x, strings, strings[i], strlen(strings[i]), &found);
        if (!found) x->slots[s] = i + 1, x->used++;
    }
    return 0;
}

/* Inserts strings[i] (the caller appended it); keeps the load below 1/2. */
static int index_insert(str_index *x, char *const *strings, int64_t i) {
    if (2 * (x->used + 1) > x->cap) return index_rebuild(x, strings, i + 1);
    int found;
    int64_t s = index_slot(x, strings, strings[i], strlen(strings[i]), &found);
    if (!found) x->slots[s] = i + 1, x->used++;
    return 0;
}

/* ---- vocabulary ---- */

struct slex_label_vocab {
    char **labels;
    int64_t *counts;
    int32_t n, cap;
    str_index index;
};

slex_label_vocab *slex_label_vocab_create(void) { return calloc(1, sizeof(slex_label_vocab)); }

void slex_label_vocab_free(slex_label_vocab *v) {
    if (!v) return;
    for (int32_t i = 0; i < v->n; i++) free(v->labels[i]);
    free(v->labels);
    free(v->counts);
    free(v->index.slots);
    free(v);
}

int32_t slex_label_vocab_find(const slex_label_vocab *v, const char *label, size_t len) {
    return (int32_t)index_find(&v->index, v->labels, label, len);
}

int32_t slex_label_vocab_add(slex_label_vocab *v, const char *label, size_t len) {
    int32_t id = slex_label_vocab_find(v, label, len);
    if (id >= 0) return id;
    if (v->n == v->cap) {
        int32_t cap = v->cap ? 2 * v->cap : 64;
        char **labels = realloc(v->labels, (size_t)cap * sizeof *labels);
        if (!labels) return -1;
        v->labels = labels;
        int64_t *counts = realloc(v->counts, (size_t)cap * sizeof *counts);
        if (!counts) return -1;
        v->counts = counts;
        v->cap = cap;
    }
    if (!(v->labels[v->n] = strndup(label, len))) return -1;
    v->counts[v->n] = 0;
    if (index_insert(&v->index, v->labels, v->n)) {
        free(v->labels[v->n]);
        return -1;
    }
    return v->n++;
}

int32_t slex_label_vocab_count(slex_label_vocab *v, const char *label, size_t len) {
    int32_t id = slex_label_vocab_add(v, label, len);
    if (id >= 0) v->counts[id]++;
    return id;
}

int32_t slex_label_vocab_size(const slex_label_vocab *v) { return v->n; }
const char *slex_label_vocab_label(const slex_label_vocab *v, int32_t id) {
    return id >= 0 && id < v->n ? v->labels[id] : NULL;
}
int64_t slex_label_vocab_occurrences(const slex_label_vocab *v, int32_t id) {
    return id >= 0 && id < v->n ? v->counts[id] : 0;
}

typedef struct {
    char *label;
    int64_t count;
} label_count;

static int compare_label_count(const void *a, const void *b) {
    return strcmp(((const label_count *)a)->label, ((const label_count *)b)->label);
}

int slex_label_vocab_sort(slex_label_vocab *v) {
    if (!v->n) return 0;
    label_count *tmp = malloc((size_t)v->n * sizeof *tmp);
    if (!tmp) return -1;
    for (int32_t i = 0; i < v->n; i++) tmp[i] = (label_count){v->labels[i], v->counts[i]};
    qsort(tmp, (size_t)v->n, sizeof *tmp, compare_label_count);
    for (int32_t i = 0; i < v->n; i++) v->labels[i] = tmp[i].label, v->counts[i] = tmp[i].count;
    free(tmp);
    return index_rebuild(&v->index, v->labels, v->n);
}

int slex_label_vocab_write(const slex_label_vocab *v, const char *path, slex_error *err) {
    slex_atomic out;
    if (slex_atomic_fopen(&out, path, err)) return -1;
    for (int32_t i = 0; i < v->n; i++) fprintf(out.f, "%s\t%lld\n", v->labels[i], (long long)v->counts[i]);
    return slex_atomic_commit(&out, err);
}

slex_label_vocab *slex_label_vocab_read(const char *path, slex_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open label vocabulary: %s", path, strerror(errno)), NULL;
    slex_label_vocab *v = slex_label_vocab_create();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    if (!v) goto oom;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        char *tab = strchr(line, '\t');
        size_t label_len = tab ? (size_t)(tab - line) : (size_t)len;
        long long count = 0;
        if (tab) {
            char *end;
            errno = 0;
            count = strtoll(tab + 1, &end, 10);
            if (errno || end == tab + 1 || *end || count < 0) {
                slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: count is not a non-negative integer", path,
                             (long long)lineno);
                goto fail;
            }
        }
        if (!label_len || label_len > SLEX_LABEL_MAX || memchr(line, ' ', label_len)) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: bad label (empty, longer than %d bytes or with spaces)", path,
                         (long long)lineno, SLEX_LABEL_MAX);
            goto fail;
        }
        if (slex_label_vocab_find(v, line, label_len) >= 0) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: label '%.*s' is listed twice", path, (long long)lineno,
                         (int)label_len, line);
            goto fail;
        }
        int32_t id = slex_label_vocab_add(v, line, label_len);
        if (id < 0) goto oom;
        v->counts[id] = count;
    }
    free(line);
    fclose(f);
    return v;
oom:
    slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
fail:
    free(line);
    fclose(f);
    slex_label_vocab_free(v);
    return NULL;
}

/* ---- alignment files ---- */

struct slex_alignment {
    char *path;
    int64_t n_utts, utts_cap;
    char **utt_ids;
    int64_t *utt_first; /* index of the first segment; utt_first[n_utts] = n_segs */
    int64_t *utt_line;
    int64_t n_segs, segs_cap;
    slex_segment *segs;
    slex_label_vocab *labels; /* owns the label strings the segments point to */
    str_index utt_index;
};

void slex_alignment_free(slex_alignment *a) {
    if (!a) return;
    for (int64_t i = 0; i < a->n_utts; i++) free(a->utt_ids[i]);
    free(a->utt_ids);
    free(a->utt_first);
    free(a->utt_line);
    free(a->segs);
    slex_label_vocab_free(a->labels);
    free(a->utt_index.slots);
    free(a->path);
    free(a);
}

const char *slex_alignment_path(const slex_alignment *a) { return a->path; }
int64_t slex_alignment_num_utts(const slex_alignment *a) { return a->n_utts; }
const char *slex_alignment_utt_id(const slex_alignment *a, int64_t i) { return a->utt_ids[i]; }
int64_t slex_alignment_utt_line(const slex_alignment *a, int64_t i) { return a->utt_line[i]; }
int64_t slex_alignment_find(const slex_alignment *a, const char *utt_id) {
    return index_find(&a->utt_index, a->utt_ids, utt_id, strlen(utt_id));
}
const slex_segment *slex_alignment_segments(const slex_alignment *a, int64_t i, int64_t *n) {
    *n = a->utt_first[i + 1] - a->utt_first[i];
    return a->segs + a->utt_first[i];
}

/* Splits a line into exactly 4 tab-separated fields in place. */
static const char *split_fields(char *line, char *fields[4]) {
    char *p = line;
    for (int k = 0; k < 4; k++) {
        fields[k] = p;
        char *tab = strchr(p, '\t');
        if (k < 3) {
            if (!tab) return "expected 4 tab-separated columns: utt_id, start, end, label";
            *tab = '\0';
            p = tab + 1;
        } else if (tab) {
            return "more than 4 columns";
        }
    }
    if (!*fields[0]) return "empty utterance id";
    return NULL;
}

static int parse_sample(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

/* Appends a new utterance block; fails on a repeated id (blocks must be contiguous). */
static int begin_utt(slex_alignment *a, const char *id, int64_t lineno, slex_error *err) {
    int64_t prev = slex_alignment_find(a, id);
    if (prev >= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s:%lld: utterance '%s' already appeared in lines from %lld on (an utterance's "
                            "lines must be consecutive)",
                            a->path, (long long)lineno, id, (long long)a->utt_line[prev]);
    if (a->n_utts + 1 >= a->utts_cap) {
        int64_t cap = a->utts_cap ? 2 * a->utts_cap : 1024;
        char **ids = realloc(a->utt_ids, (size_t)cap * sizeof *ids);
        if (!ids) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
        a->utt_ids = ids;
        int64_t *first = realloc(a->utt_first, (size_t)(cap + 1) * sizeof *first);
        if (!first) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
        a->utt_first = first;
        int64_t *line = realloc(a->utt_line, (size_t)cap * sizeof *line);
        if (!line) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
        a->utt_line = line;
        a->utts_cap = cap;
    }
    if (!(a->utt_ids[a->n_utts] = strdup(id)))
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
    a->utt_first[a->n_utts] = a->n_segs;
    a->utt_line[a->n_utts] = lineno;
    if (index_insert(&a->utt_index, a->utt_ids, a->n_utts))
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
    a->n_utts++;
    a->utt_first[a->n_utts] = a->n_segs;
    return 0;
}

slex_alignment *slex_alignment_read(const char *path, slex_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open alignment: %s", path, strerror(errno)), NULL;
    slex_alignment *a = calloc(1, sizeof *a);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    /* Label pointers move when the vocabulary grows: store ids first, resolve at the end. */
    if (!a || !(a->path = strdup(path)) || !(a->labels = slex_label_vocab_create())) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto fail;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if ((size_t)len != strlen(line)) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: line contains a NUL byte", path, (long long)lineno);
            goto fail;
        }
        if (!len || line[0] == '#') continue;
        char *fld[4];
        const char *bad = split_fields(line, fld);
        int64_t start = 0, end = 0;
        if (!bad && parse_sample(fld[1], &start)) bad = "start is not a non-negative integer";
        if (!bad && parse_sample(fld[2], &end)) bad = "end is not a non-negative integer";
        if (!bad && end <= start) bad = "end is not after start (empty or reversed phone)";
        if (!bad) bad = label_problem(fld[3]);
        if (bad) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: %s", path, (long long)lineno, bad);
            goto fail;
        }
        int same = a->n_utts && !strcmp(a->utt_ids[a->n_utts - 1], fld[0]);
        int64_t expect = same ? a->segs[a->n_segs - 1].end : 0;
        if (!same && begin_utt(a, fld[0], lineno, err)) goto fail;
        if (start != expect) {
            if (!same)
                slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: utterance '%s' starts at sample %lld, not 0", path,
                             (long long)lineno, fld[0], (long long)start);
            else
                slex_fail_as(
                    err, SLEX_ERR_INPUT, "%s:%lld: %s: phone starts at sample %lld but the previous one ends at %lld",
                    path, (long long)lineno, start > expect ? "gap" : "overlap", (long long)start, (long long)expect);
            goto fail;
        }
        if (a->n_segs == a->segs_cap) {
            int64_t c = a->segs_cap ? 2 * a->segs_cap : 4096;
            slex_segment *s = realloc(a->segs, (size_t)c * sizeof *s);
            if (!s) {
                slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
                goto fail;
            }
            a->segs = s;
            a->segs_cap = c;
        }
        int32_t id = slex_label_vocab_count(a->labels, fld[3], strlen(fld[3]));
        if (id < 0) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
            goto fail;
        }
        a->segs[a->n_segs++] = (slex_segment){start, end, (const char *)(intptr_t)id};
        a->utt_first[a->n_utts] = a->n_segs;
    }
    if (ferror(f)) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    for (int64_t i = 0; i < a->n_segs; i++)
        a->segs[i].label = slex_label_vocab_label(a->labels, (int32_t)(intptr_t)a->segs[i].label);
    free(line);
    fclose(f);
    return a;
fail:
    free(line);
    fclose(f);
    if (a) a->n_segs = 0; /* labels are still ids: nothing to resolve */
    slex_alignment_free(a);
    return NULL;
}

slex_label_vocab *slex_alignment_vocab(const slex_alignment *a, int strip_tones, slex_error *err) {
    slex_label_vocab *v = slex_label_vocab_create();
    if (!v) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path), NULL;
    for (int64_t i = 0; i < a->n_segs; i++) {
        const char *l = a->segs[i].label;
        if (slex_label_vocab_count(v, l, strip_tones ? slex_label_base_length(l) : strlen(l)) < 0) goto oom;
    }
    if (slex_label_vocab_sort(v)) goto oom;
    return v;
oom:
    slex_label_vocab_free(v);
    return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path), NULL;
}

int slex_alignment_check_manifest(const slex_alignment *a, const slex_manifest *m, int require_all,
                                  slex_error *err) {
    str_index idx = {0};
    char **paths = malloc((size_t)(m->n ? m->n : 1) * sizeof *paths);
    int rc = -1;
    if (!paths) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
    for (int64_t i = 0; i < m->n; i++) paths[i] = m->entries[i].relpath;
    if (index_rebuild(&idx, paths, m->n)) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", a->path);
        goto done;
    }
    for (int64_t u = 0; u < a->n_utts; u++) {
        const char *id = a->utt_ids[u];
        int64_t e = index_find(&idx, paths, id, strlen(id));
        if (e < 0 || m->entries[e].malformed) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: unknown utterance '%s' (not in manifest %s)", a->path,
                         (long long)a->utt_line[u], id, m->path);
            goto done;
        }
        int64_t last = a->utt_first[u + 1] - 1;
        int64_t end = a->segs[last].end;
        if (end != m->entries[e].num_samples) {
            slex_fail_as(err, SLEX_ERR_INPUT,
                         "%s:%lld: utterance '%s' ends at sample %lld but %s:%lld gives %lld samples", a->path,
                         (long long)(a->utt_line[u] + (last - a->utt_first[u])), id, (long long)end, m->path,
                         (long long)m->entries[e].line, (long long)m->entries[e].num_samples);
            goto done;
        }
    }
    if (require_all)
        for (int64_t i = 0; i < m->n; i++) {
            if (m->entries[i].malformed || slex_alignment_find(a, m->entries[i].relpath) >= 0) continue;
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: utterance '%s' has no alignment in %s", m->path,
                         (long long)m->entries[i].line, m->entries[i].relpath, a->path);
            goto done;
        }
    rc = 0;
done:
    free(idx.slots);
    free(paths);
    return rc;
}

int slex_align_frame_labels(const slex_segment *segs, int64_t n, int64_t num_samples, slex_frame_rate rate,
                            const slex_label_vocab *v, int strip_tones, int32_t *out, slex_error *err) {
    int64_t hop = frame_hop(rate);
    if (hop < 0) return slex_fail_as(err, SLEX_ERR_INPUT, "frame rate %d Hz is not 50 or 100", (int)rate);
    if (slex_align_check_segments("alignment", segs, n, num_samples, err)) return -1;
    int64_t frames = slex_align_num_frames(rate, num_samples);
    int64_t s = 0;
    int32_t id = -1;
    int64_t id_seg = -1;
    for (int64_t i = 0; i < frames; i++) {
        int64_t centre = i * hop + FRAME_CENTRE;
        while (segs[s].end <= centre) s++; /* centres increase; the last segment ends at num_samples > centre */
        if (s != id_seg) {
            const char *l = segs[s].label;
            id = slex_label_vocab_find(v, l, strip_tones ? slex_label_base_length(l) : strlen(l));
            if (id < 0)
                return slex_fail_as(err, SLEX_ERR_INPUT, "label '%.*s' is not in the vocabulary",
                                    (int)(strip_tones ? slex_label_base_length(l) : strlen(l)), l);
            id_seg = s;
        }
        out[i] = id;
    }
    return 0;
}
