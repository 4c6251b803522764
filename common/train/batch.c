#include "train/batch.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "corpus/audio.h"
#include "corpus/manifest.h"
#include "store/store.h"

#define T slex_batch_options
static const slex_option batch_rows[] = {
    {SLEX_OPT_INT_FIELD(T, num_classes), .name = "num-classes", .flags = SLEX_OPTF_REQUIRED, .min = 1, .max = 1 << 24,
     .param = "num_classes", .help = "K: units of the labels (the codebook size)"},
    {SLEX_OPT_DOUBLE_FIELD(T, label_rate), .name = "label-rate", .def = -1, .min = -1, .max = 16000, .param = "label_rate",
     .help = "labels per second of .km sources (100 MFCC, 50 HuBERT); stores carry their own"},
    {SLEX_OPT_LONG_FIELD(T, max_tokens), .name = "max-tokens", .def = 1400000, .min = 1, .max = 1e15,
     .param = "max_tokens", .help = "audio samples per global batch"},
    {SLEX_OPT_INT_FIELD(T, micro_batch), .name = "micro-batch", .def = 8, .min = 1, .max = 1 << 20,
     .param = "micro_batch", .help = "utterances per micro-batch (one rank computes one whole)"},
    {SLEX_OPT_LONG_FIELD(T, max_sample_size), .name = "max-sample-size", .def = 250000, .min = 400, .max = 1e12,
     .param = "max_sample_size", .help = "longer utterances are cropped to this many samples"},
    {SLEX_OPT_LONG_FIELD(T, min_sample_size), .name = "min-sample-size", .def = 32000, .min = 0, .max = 1e12,
     .param = "min_sample_size", .help = "shorter utterances are skipped"},
};
#undef T
const slex_option_table slex_batch_option_table = SLEX_OPTION_TABLE(batch_rows);

void slex_batch_options_default(slex_batch_options *o) {
    slex_options_defaults(&slex_batch_option_table, o);
    o->tolerance_s = 0.1;
    o->normalize = 0;
    o->seed = 1;
}

int slex_batch_options_validate(const slex_batch_options *o, slex_error *err) {
    if (o->max_tokens < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "max-tokens %lld: must be at least 1", (long long)o->max_tokens);
    if (o->micro_batch < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "micro-batch %d: must be at least 1", o->micro_batch);
    if (o->max_sample_size < 1 || o->min_sample_size < 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "max-sample-size %lld must be >= 1 and min-sample-size %lld >= 0",
                            (long long)o->max_sample_size, (long long)o->min_sample_size);
    if (o->num_classes < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "the number of label classes (%d) must be at least 1", o->num_classes);
    if (!(o->tolerance_s >= 0.0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "label length tolerance %g s: must be >= 0", o->tolerance_s);
    if (o->label_rate != -1.0 && !(o->label_rate > 0.0 && isfinite(o->label_rate)))
        return slex_fail_as(err, SLEX_ERR_INPUT, "label-rate %g: must be positive", o->label_rate);
    return 0;
}

int slex_data_spec_parse(const char *text, slex_data_spec *spec, slex_error *err) {
    memset(spec, 0, sizeof *spec);
    spec->weight = 1.0;
    const char *c1 = strchr(text, ':');
    if (!c1 || c1 == text || !c1[1])
        return slex_fail_as(err, SLEX_ERR_INPUT, "--data %s: expected MANIFEST:LABELS[:WEIGHT]", text);
    size_t n1 = (size_t)(c1 - text);
    const char *rest = c1 + 1, *c2 = strrchr(rest, ':');
    size_t n2 = strlen(rest);
    if (c2) {
        char *end;
        errno = 0;
        double w = strtod(c2 + 1, &end);
        if (c2[1] && !*end && !errno) {
            if (!(w >= 0.0) || !isfinite(w))
                return slex_fail_as(err, SLEX_ERR_INPUT, "--data %s: weight %s must be >= 0", text, c2 + 1);
            spec->weight = w;
            n2 = (size_t)(c2 - rest);
        }
    }
    if (n1 >= sizeof spec->manifest || n2 >= sizeof spec->labels || n2 == 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--data %s: expected MANIFEST:LABELS[:WEIGHT]", text);
    memcpy(spec->manifest, text, n1);
    memcpy(spec->labels, rest, n2);
    return 0;
}

/* Open shards of a label store kept per source (least recently used one reopened). */
#define SHARD_CACHE 4
/* Rows of a store shard read per pass of the check at open. */
#define CHECK_BLOCK (1 << 16)

typedef struct shard_slot {
    slex_store_shard *r;
    int shard;
    uint64_t used; /* the batcher's clock at the last read; 0: empty */
} shard_slot;

typedef struct source {
    slex_data_spec spec;
    slex_manifest *manifest;
    double label_rate;
    float ratio;       /* label frames per model frame: label_rate * stride / 16000 */
    int64_t *lab_off;  /* (entries + 1) labels before each entry in the label file (a store's shards in order) */
    FILE *km;          /* a .km source: the file, */
    int64_t *line_pos; /* (entries) and the byte offset of each entry's line */
    slex_store *store; /* a store source: the store, */
    int64_t *shard_utt; /* (nshard + 1) and the first utterance of each shard */
    shard_slot cache[SHARD_CACHE];
    int64_t *sorted;   /* usable entries by manifest length (ties: manifest order) */
    int64_t usable, skipped_short, samples;
} source;

struct slex_batcher {
    slex_batch_options opts;
    int n_conv;
    int kernel[SLEX_HUBERT_MAX_CONV], stride[SLEX_HUBERT_MAX_CONV];
    int64_t total_stride;
    int n_sources;
    source *src;
    /* scratch of the loads: one .km line, one row's labels and their store rows */
    char *line;
    size_t line_cap;
    int32_t *lab;
    int64_t *rows, lab_cap;
    uint64_t clock;
};

static int64_t entry_len(const source *s, int64_t e) { return s->manifest->entries[e].num_samples; }

/* Label v, frame f of manifest entry e, must be in [0, K). */
static int check_label(const source *s, int K, int64_t e, int64_t f, int64_t v, slex_error *err) {
    if (v >= 0 && v < K) return 0;
    const slex_manifest_entry *en = &s->manifest->entries[e];
    return slex_fail_as(err, SLEX_ERR_INPUT, "%s: utterance %s (line %lld of %s): label %lld at frame %lld is "
                        "outside the %d classes [0, %d)", s->spec.labels, en->relpath, (long long)en->line,
                        s->manifest->path, (long long)v, (long long)f, K, K);
}

/* The next unit id of a .km line at *q (0), or the end of the line (1), or -1 when the text
 * there is not an id. */
static int next_unit(char **q, long long *v) {
    while (**q == ' ' || **q == '\t' || **q == '\r' || **q == '\n') (*q)++;
    if (!**q) return 1;
    char *end;
    errno = 0;
    *v = strtoll(*q, &end, 10);
    if (end == *q || errno || (*end && *end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')) return -1;
    *q = end;
    return 0;
}

/* .km: one line of space-separated unit ids per manifest line, checked line by line at open;
 * only each line's byte offset and label count are kept (the labels are read again by loads). */
static int read_km(source *s, int K, slex_error *err) {
    const char *path = s->spec.labels;
    FILE *f = fopen(path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: %s", path, strerror(errno));
    s->km = f;
    int64_t n = s->manifest->n, line = 0, pos = 0, n_labels = 0;
    s->lab_off = malloc(sizeof(int64_t) * (size_t)(n + 1));
    s->line_pos = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int rc = !s->lab_off || !s->line_pos ? slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path) : 0;
    char *text = NULL;
    size_t cap = 0;
    for (ssize_t got; !rc && (got = getline(&text, &cap, f)) >= 0; line++, pos += got) {
        if (line < n) s->lab_off[line] = n_labels, s->line_pos[line] = pos;
        long long v;
        for (char *q = text; !rc;) {
            int r = next_unit(&q, &v);
            if (r > 0) break;
            if (r < 0) {
                rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: line %lld: \"%.20s\" is not a unit id", path, (long long)line + 1, q);
                break;
            }
            if (line < n && !(rc = check_label(s, K, line, n_labels - s->lab_off[line], v, err))) n_labels++;
        }
    }
    if (!rc && ferror(f)) rc = slex_fail_as(err, SLEX_ERR_IO, "%s: read failed", path);
    free(text);
    if (!rc && line != n)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s has %lld lines but the manifest %s has %lld utterances: fairseq needs one label line per "
                       "manifest line", path, (long long)line, s->spec.manifest, (long long)n);
    if (!rc) s->lab_off[n] = n_labels;
    return rc;
}

/* Checks shard sh of a store source (utterances from u0 on): its ids are the manifest's, its
 * CRC-32 the index's, every label in [0, K), streamed CHECK_BLOCK rows at a time through buf.
 * The first failure is the one a whole read would meet: the CRC, then utterance by utterance
 * its id and its labels.  Fills lab_off of the shard's utterances from *n_labels on. */
static int check_shard(source *s, int sh, int64_t u0, int K, int32_t *buf, int64_t *n_labels, slex_error *err) {
    const char *dir = s->spec.labels;
    slex_store_shard *r = slex_store_shard_open(s->store, sh, err);
    if (!r) return -1;
    int64_t nu = slex_store_shard_num_utts(r), nf = slex_store_shard_num_frames(r), bad_id = nu, bad_row = -1;
    const int64_t *off = slex_store_shard_offsets(r);
    for (int64_t i = 0; i < nu && bad_id == nu; i++)
        if (strcmp(slex_store_shard_utt_id(r, i), s->manifest->entries[u0 + i].relpath)) bad_id = i;
    int rc = 0;
    int32_t bad_value = 0;
    for (int64_t row = 0; !rc && bad_row < 0 && row < off[bad_id]; row += CHECK_BLOCK) {
        int64_t cnt = nf - row < CHECK_BLOCK ? nf - row : CHECK_BLOCK;
        if (slex_store_shard_read_rows(r, row, cnt, buf, err)) rc = -1;
        for (int64_t i = 0; !rc && i < cnt; i++)
            if (buf[i] < 0 || buf[i] >= K) {
                bad_row = row + i, bad_value = buf[i];
                break;
            }
    }
    if (!rc && slex_store_shard_verify(r, err)) rc = -1; /* reads what the check did not */
    int64_t bad_utt = bad_row < 0 ? nu : 0;
    while (bad_utt < nu && off[bad_utt + 1] <= bad_row) bad_utt++;
    if (!rc && bad_id < nu && bad_id <= bad_utt) {
        const slex_manifest_entry *e = &s->manifest->entries[u0 + bad_id];
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: utterance %lld is %s but line %lld of %s is %s: the label store was made from "
                       "another manifest", dir, (long long)(u0 + bad_id) + 1, slex_store_shard_utt_id(r, bad_id),
                       (long long)e->line, s->spec.manifest, e->relpath);
    } else if (!rc && bad_row >= 0) {
        rc = check_label(s, K, u0 + bad_utt, bad_row - off[bad_utt], bad_value, err);
    }
    for (int64_t i = 0; !rc && i < nu; i++) s->lab_off[u0 + i] = *n_labels + off[i];
    *n_labels += nf;
    slex_store_shard_close(r);
    return rc;
}

/* A slex-label store of exactly the manifest's utterances, in order, checked shard by shard
 * at open; the store stays open for the loads, which read their rows from its shards. */
static int read_store(source *s, int K, slex_error *err) {
    const char *dir = s->spec.labels;
    if (!(s->store = slex_store_open(dir, err))) return -1;
    int64_t n = s->manifest->n, n_labels = 0;
    int nshard = slex_store_nshard(s->store);
    if (slex_store_get_dtype(s->store) != SLEX_STORE_I32)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: a feature store, not a label store (slex-label)", dir);
    if (slex_store_utterances(s->store) != n)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s holds %lld utterances but the manifest %s has %lld: the label store was made from "
                         "another manifest", dir, (long long)slex_store_utterances(s->store), s->spec.manifest, (long long)n);
    s->lab_off = malloc(sizeof(int64_t) * (size_t)(n + 1));
    s->shard_utt = malloc(sizeof(int64_t) * (size_t)(nshard + 1));
    int32_t *buf = malloc(sizeof(int32_t) * CHECK_BLOCK);
    int rc = !s->lab_off || !s->shard_utt || !buf ? slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir) : 0;
    if (!rc) s->label_rate = slex_store_frame_rate(s->store);
    int64_t u = 0;
    for (int sh = 0; !rc && sh < nshard; u += slex_store_shard_utterances(s->store, sh++)) {
        s->shard_utt[sh] = u;
        rc = check_shard(s, sh, u, K, buf, &n_labels, err);
    }
    free(buf);
    if (!rc) s->shard_utt[nshard] = u, s->lab_off[n] = n_labels;
    return rc;
}

/* Labels [f0, f0 + count) of entry u of a .km source into out: its line read again. */
static int load_km(slex_batcher *b, source *s, int64_t u, int64_t f0, int64_t count, int32_t *out, slex_error *err) {
    const char *path = s->spec.labels;
    if (fseeko(s->km, (off_t)s->line_pos[u], SEEK_SET) || getline(&b->line, &b->line_cap, s->km) < 0)
        return slex_fail_as(err, ferror(s->km) ? SLEX_ERR_IO : SLEX_ERR_INPUT, "%s: cannot read line %lld again%s%s", path,
                            (long long)u + 1, ferror(s->km) ? ": " : " (the file is shorter than at open)",
                            ferror(s->km) ? strerror(errno) : "");
    char *q = b->line;
    long long v = 0;
    for (int64_t f = 0; f < f0 + count; f++) {
        if (next_unit(&q, &v) || v < 0 || v >= b->opts.num_classes)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: line %lld is not the one checked at open (label %lld): the file changed",
                                path, (long long)u + 1, (long long)f);
        if (f >= f0) out[f - f0] = (int32_t)v;
    }
    return 0;
}

/* Labels [f0, f0 + count) of entry u of a store source into out, from its shard (kept open in
 * the source's cache of SHARD_CACHE shards). */
static int load_store(slex_batcher *b, source *s, int64_t u, int64_t f0, int64_t count, int32_t *out, slex_error *err) {
    int lo = 0, hi = slex_store_nshard(s->store) - 1;
    while (lo < hi) { /* the last shard whose first utterance is <= u */
        int mid = lo + (hi - lo + 1) / 2;
        if (s->shard_utt[mid] <= u) lo = mid;
        else hi = mid - 1;
    }
    shard_slot *slot = &s->cache[0];
    for (int i = 0; i < SHARD_CACHE; i++) {
        if (s->cache[i].used && s->cache[i].shard == lo) {
            slot = &s->cache[i];
            break;
        }
        if (s->cache[i].used < slot->used) slot = &s->cache[i];
    }
    if (!slot->used || slot->shard != lo) {
        slex_store_shard_close(slot->r);
        slot->used = 0;
        if (!(slot->r = slex_store_shard_open(s->store, lo, err))) return -1;
        slot->shard = lo;
    }
    slot->used = ++b->clock;
    int64_t first = s->lab_off[u] - s->lab_off[s->shard_utt[lo]] + f0;
    for (int64_t i = 0; i < count; i++) b->rows[i] = first + i;
    if (slex_store_shard_gather(slot->r, b->rows, count, out, err)) return -1;
    for (int64_t i = 0; i < count; i++)
        if (out[i] < 0 || out[i] >= b->opts.num_classes)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: utterance %lld: label %d at frame %lld is not the one checked at open: the "
                                "store changed", s->spec.labels, (long long)u + 1, out[i], (long long)(f0 + i));
    return 0;
}

static int open_source(slex_batcher *b, source *s, slex_error *err) {
    const slex_batch_options *o = &b->opts;
    if (!(s->manifest = slex_manifest_read(s->spec.manifest, err))) return -1;
    slex_manifest *m = s->manifest;
    for (int64_t e = 0; e < m->n; e++)
        if (m->entries[e].malformed)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: line %lld: %s", m->path, (long long)m->entries[e].line, m->entries[e].malformed);
    struct stat sb;
    int is_store = stat(s->spec.labels, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (is_store) {
        if (read_store(s, o->num_classes, err)) return -1; /* its frame rate is the label rate (--label-rate is for .km) */
    } else {
        if (o->label_rate <= 0.0)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: a .km label file needs --label-rate (100 for MFCC units, 50 for HuBERT units)",
                             s->spec.labels);
        s->label_rate = o->label_rate;
        if (read_km(s, o->num_classes, err)) return -1;
    }
    s->ratio = (float)(s->label_rate * (double)b->total_stride / SLEX_BATCH_SAMPLE_RATE);
    s->sorted = malloc(sizeof(int64_t) * (size_t)(m->n ? m->n : 1));
    if (!s->sorted) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", m->path);
    for (int64_t e = 0; e < m->n; e++) {
        const slex_manifest_entry *en = &m->entries[e];
        if (en->num_samples < o->min_sample_size) {
            s->skipped_short++;
            continue;
        }
        int64_t nl = s->lab_off[e + 1] - s->lab_off[e];
        double dur_audio = (double)en->num_samples / SLEX_BATCH_SAMPLE_RATE, dur_label = (double)nl / s->label_rate;
        if (fabs(dur_audio - dur_label) > o->tolerance_s)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: utterance %s (line %lld of %s): %lld labels at %g Hz last %.3f s but the audio "
                             "lasts %.3f s (%lld samples): more than %g s apart (is the label rate right?)",
                             s->spec.labels, en->relpath, (long long)en->line, m->path, (long long)nl, s->label_rate,
                             dur_label, dur_audio, (long long)en->num_samples, o->tolerance_s);
        s->sorted[s->usable++] = e;
        s->samples += en->num_samples;
    }
    if (s->usable == 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no usable utterance (%lld entries, %lld shorter than min-sample-size %lld)", m->path,
                         (long long)m->n, (long long)s->skipped_short, (long long)o->min_sample_size);
    /* stable sort by length (bottom-up merge sort of the indices) */
    int64_t n = s->usable, *tmp = malloc(sizeof(int64_t) * (size_t)n);
    if (!tmp) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", m->path);
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = entry_len(s, s->sorted[j]) < entry_len(s, s->sorted[i]) ? s->sorted[j++] : s->sorted[i++];
            while (i < mid) tmp[k++] = s->sorted[i++];
            while (j < hi) tmp[k++] = s->sorted[j++];
        }
        memcpy(s->sorted, tmp, sizeof(int64_t) * (size_t)n);
    }
    free(tmp);
    return 0;
}

slex_batcher *slex_batcher_open(const slex_batch_options *opts, const slex_data_spec *specs, int n_specs,
                                const slex_hubert_config *model, slex_error *err) {
    if (slex_batch_options_validate(opts, err)) return NULL;
    if (n_specs < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "no --data source"), NULL;
    slex_batcher *b = calloc(1, sizeof *b);
    if (!b || !(b->src = calloc((size_t)n_specs, sizeof *b->src))) {
        free(b);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    }
    b->opts = *opts;
    b->n_conv = model->num_conv;
    b->total_stride = 1;
    for (int i = 0; i < model->num_conv; i++) {
        b->kernel[i] = model->conv_kernel[i];
        b->stride[i] = model->conv_stride[i];
        b->total_stride *= model->conv_stride[i];
    }
    b->n_sources = n_specs;
    double wsum = 0.0;
    for (int i = 0; i < n_specs; i++) {
        b->src[i].spec = specs[i];
        wsum += specs[i].weight;
        if (open_source(b, &b->src[i], err)) {
            slex_batcher_free(b);
            return NULL;
        }
    }
    if (!(wsum > 0.0)) {
        slex_batcher_free(b);
        return slex_fail_as(err, SLEX_ERR_INPUT, "every --data source has weight 0"), NULL;
    }
    return b;
}

void slex_batcher_free(slex_batcher *b) {
    if (!b) return;
    for (int i = 0; i < b->n_sources; i++) {
        source *s = &b->src[i];
        slex_manifest_free(s->manifest);
        free(s->lab_off);
        if (s->km) fclose(s->km);
        free(s->line_pos);
        for (int c = 0; c < SHARD_CACHE; c++) slex_store_shard_close(s->cache[c].r);
        slex_store_close(s->store);
        free(s->shard_utt);
        free(s->sorted);
    }
    free(b->src);
    free(b->line);
    free(b->lab);
    free(b->rows);
    free(b);
}

int slex_batcher_num_sources(const slex_batcher *b) { return b->n_sources; }

void slex_batcher_source_info(const slex_batcher *b, int i, slex_source_info *info) {
    const source *s = &b->src[i];
    info->manifest = s->spec.manifest;
    info->labels = s->spec.labels;
    info->weight = s->spec.weight;
    info->label_rate = s->label_rate;
    info->codebook_crc32 = s->store ? slex_store_codebook_crc32(s->store) : NULL;
    info->usable = s->usable;
    info->skipped_short = s->skipped_short;
    info->samples = s->samples;
}

/* Frames of the conv stack on n samples. */
static int64_t conv_frames(const slex_batcher *b, int64_t n) {
    for (int i = 0; i < b->n_conv; i++) n = n >= b->kernel[i] ? (n - b->kernel[i]) / b->stride[i] + 1 : 0;
    return n;
}

/* First position of s->sorted whose length is >= L. */
static int64_t lower_bound(const source *s, int64_t L) {
    int64_t lo = 0, hi = s->usable;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (entry_len(s, s->sorted[mid]) < L) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* A source drawn by weight among those with ok[i] set. */
static int draw_source(const slex_batcher *b, const int *ok, slex_rng *rng) {
    double total = 0.0;
    int last = -1;
    for (int i = 0; i < b->n_sources; i++)
        if (ok[i]) total += b->src[i].spec.weight, last = i;
    double u = slex_rng_uniform(rng) * total, acc = 0.0;
    for (int i = 0; i < b->n_sources; i++) {
        if (!ok[i]) continue;
        acc += b->src[i].spec.weight;
        if (u < acc) return i;
    }
    return last;
}

void slex_batch_plan_free(slex_batch_plan *plan) {
    free(plan->items);
    free(plan->micro_start);
    memset(plan, 0, sizeof *plan);
}

int slex_batcher_plan(slex_batcher *b, int64_t step, int k, slex_batch_plan *plan, slex_error *err) {
    memset(plan, 0, sizeof *plan);
    uint64_t st = b->opts.seed;
    st = slex_splitmix64(&st) ^ (uint64_t)step;
    st = slex_splitmix64(&st) ^ (uint64_t)k;
    slex_rng rng;
    slex_rng_seed(&rng, slex_splitmix64(&st));
    const int S = b->n_sources;
    int *ok = calloc((size_t)S, sizeof *ok), *count = calloc((size_t)S, sizeof *count);
    int64_t *lb = calloc((size_t)S, sizeof *lb);
    int rc = (!ok || !count || !lb) ? slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory") : 0;
    for (int i = 0; !rc && i < S; i++) ok[i] = b->src[i].spec.weight > 0.0;
    int64_t L = 0, n = 0, anchor_len = 0;
    if (!rc) {
        int a = draw_source(b, ok, &rng);
        const source *s = &b->src[a];
        int64_t e = s->sorted[slex_rng_below(&rng, (uint64_t)s->usable)];
        anchor_len = entry_len(s, e);
        L = anchor_len < b->opts.max_sample_size ? anchor_len : b->opts.max_sample_size;
        n = b->opts.max_tokens / L;
        if (n < 1) n = 1;
        for (int i = 0; i < S; i++) {
            lb[i] = lower_bound(&b->src[i], L);
            ok[i] = ok[i] && lb[i] < b->src[i].usable;
        }
        for (int64_t j = 0; j < n; j++) count[draw_source(b, ok, &rng)]++;
        plan->items = malloc(sizeof(slex_batch_item) * (size_t)n);
        plan->micro_start = malloc(sizeof(int) * (size_t)(n + 1));
        if (!plan->items || !plan->micro_start) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    int64_t *win = rc ? NULL : malloc(sizeof(int64_t) * (size_t)n);
    if (!rc && !win) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int i = 0; !rc && i < S; i++) {
        const source *s = &b->src[i];
        /* The window: the n shortest utterances at least as long as the anchor, moved down
         * when fewer are left but never below L. An anchor longer than max_sample_size thus
         * brings the utterances of its own length (fairseq's batches of similar sizes), not
         * always the n shortest ones above L: those would make one fixed batch of nearly the
         * same crops for every long anchor, a batch the model learns by heart. */
        int64_t start = lower_bound(s, anchor_len);
        if (start > s->usable - n) start = s->usable - n;
        if (start < lb[i]) start = lb[i];
        int64_t avail = s->usable - start, w = avail < n ? avail : n, c = count[i] < w ? count[i] : w;
        for (int64_t j = 0; j < w; j++) win[j] = start + j;
        for (int64_t j = 0; j < c; j++) { /* partial Fisher-Yates */
            int64_t r = j + (int64_t)slex_rng_below(&rng, (uint64_t)(w - j)), t = win[j];
            win[j] = win[r];
            win[r] = t;
        }
        int first = plan->n_items;
        for (int64_t j = 0; j < c; j++) plan->items[plan->n_items++] = (slex_batch_item){i, s->sorted[win[j]], 0};
        for (int j = first; j < plan->n_items; j += b->opts.micro_batch) plan->micro_start[plan->n_micro++] = j;
    }
    free(win);
    if (!rc) {
        plan->micro_start[plan->n_micro] = plan->n_items;
        plan->crop = L;
        int64_t cnn = conv_frames(b, L), T = cnn;
        for (int j = 0; j < plan->n_items; j++) {
            slex_batch_item *it = &plan->items[j];
            const source *s = &b->src[it->source];
            it->offset = (int64_t)slex_rng_below(&rng, (uint64_t)(entry_len(s, it->utt) - L + 1));
            double r = s->label_rate / SLEX_BATCH_SAMPLE_RATE;
            int64_t f0 = (int64_t)rint((double)it->offset * r), fs = (int64_t)rint((double)L * r);
            int64_t left = s->lab_off[it->utt + 1] - s->lab_off[it->utt] - f0;
            if (left < fs) fs = left;
            double ratio = s->label_rate * (double)b->total_stride / SLEX_BATCH_SAMPLE_RATE;
            int64_t Ti = ratio * (double)cnn > (double)fs ? (int64_t)((double)fs / ratio) : cnn;
            if (Ti < T) T = Ti;
        }
        plan->frames = T;
        if (T < 1)
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "update %lld, batch %d: crops of %lld samples leave no model frame with a label",
                           (long long)step, k, (long long)L);
    }
    free(ok);
    free(count);
    free(lb);
    if (rc) slex_batch_plan_free(plan);
    return rc;
}

void slex_microbatch_free(slex_microbatch *mb) {
    free(mb->wave);
    free(mb->labels);
    memset(mb, 0, sizeof *mb);
}

int slex_batcher_load(slex_batcher *b, const slex_batch_plan *plan, int m, slex_microbatch *mb, slex_error *err) {
    if (m < 0 || m >= plan->n_micro) return slex_fail_as(err, SLEX_ERR_INTERNAL, "micro-batch %d of %d", m, plan->n_micro);
    int j0 = plan->micro_start[m], j1 = plan->micro_start[m + 1];
    int64_t B = j1 - j0, L = plan->crop, T = plan->frames;
    if (mb->capacity_wave < B * L) {
        float *w = realloc(mb->wave, sizeof(float) * (size_t)(B * L));
        if (!w) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for a micro-batch of %lld x %lld samples", (long long)B, (long long)L);
        mb->wave = w;
        mb->capacity_wave = B * L;
    }
    if (mb->capacity_labels < B * T) {
        int32_t *l = realloc(mb->labels, sizeof(int32_t) * (size_t)(B * T));
        if (!l) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for a micro-batch's labels");
        mb->labels = l;
        mb->capacity_labels = B * T;
    }
    mb->B = (int)B;
    mb->L = L;
    mb->T = T;
    mb->source = plan->items[j0].source;
    for (int64_t r = 0; r < B; r++) {
        const slex_batch_item *it = &plan->items[j0 + r];
        source *s = &b->src[it->source];
        char path[8192];
        if (slex_manifest_audio_path(s->manifest, it->utt, path, sizeof path, err)) return -1;
        float *x = NULL;
        int64_t n = 0;
        slex_audio_info info;
        if (slex_audio_read(path, SLEX_BATCH_SAMPLE_RATE, &x, &n, &info, err)) return -1;
        if (n < it->offset + L) {
            free(x);
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld samples, but line %lld of %s says %lld: the crop [%lld, %lld) does not fit",
                             path, (long long)n, (long long)s->manifest->entries[it->utt].line, s->manifest->path,
                             (long long)entry_len(s, it->utt), (long long)it->offset, (long long)(it->offset + L));
        }
        float *row = mb->wave + r * L;
        if (b->opts.normalize) { /* F.layer_norm(wav, wav.shape): biased variance, eps 1e-5 */
            double sum = 0.0, sq = 0.0;
            for (int64_t i = 0; i < n; i++) sum += x[i];
            double mean = sum / (double)n;
            for (int64_t i = 0; i < n; i++) sq += (x[i] - mean) * (x[i] - mean);
            double rstd = 1.0 / sqrt(sq / (double)n + 1e-5);
            for (int64_t i = 0; i < L; i++) row[i] = (float)((x[it->offset + i] - mean) * rstd);
        } else {
            memcpy(row, x + it->offset, sizeof(float) * (size_t)L);
        }
        free(x);
        int64_t nl = s->lab_off[it->utt + 1] - s->lab_off[it->utt];
        int64_t f0 = (int64_t)rint((double)it->offset * s->label_rate / SLEX_BATCH_SAMPLE_RATE);
        /* frame i takes label f0 + (int)(i * ratio) (torch: arange(T).float() * ratio), nondecreasing in i */
        int64_t count = T > 0 ? (int64_t)((float)(T - 1) * s->ratio) + 1 : 0;
        if (f0 + count > nl)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: utterance %s: frame %lld maps to label %lld of %lld", s->spec.labels,
                             s->manifest->entries[it->utt].relpath, (long long)T - 1, (long long)(f0 + count - 1), (long long)nl);
        if (count > b->lab_cap) {
            int32_t *lab = realloc(b->lab, sizeof(int32_t) * (size_t)count);
            if (lab) b->lab = lab;
            int64_t *rows = realloc(b->rows, sizeof(int64_t) * (size_t)count);
            if (rows) b->rows = rows;
            if (!lab || !rows) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld labels", (long long)count);
            b->lab_cap = count;
        }
        if (count > 0 && (s->km ? load_km(b, s, it->utt, f0, count, b->lab, err) : load_store(b, s, it->utt, f0, count, b->lab, err)))
            return -1;
        for (int64_t i = 0; i < T; i++) mb->labels[r * T + i] = b->lab[(int64_t)((float)i * s->ratio)];
    }
    return 0;
}
