#include "eval/abx.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "corpus/align.h"
#include "store/store.h"

#define T slex_abx_options
static const slex_option abx_rows[] = {
    {SLEX_OPT_INT_FIELD(T, max_size_group), .name = "max-size-group", .def = 10, .min = 2, .max = INT_MAX,
     .help = "items kept per (phone, context, speaker), seeded"},
    {SLEX_OPT_INT_FIELD(T, max_x_across), .name = "max-x-across", .def = 5, .min = 1, .max = INT_MAX,
     .help = "X speakers per (A, B) cell across speakers, seeded"},
    {SLEX_OPT_LONG_FIELD(T, max_items), .name = "max-items", .def = 5000, .min = 3, .max = (double)INT64_MAX,
     .help = "items kept in all (bounds memory and time), seeded"},
    {SLEX_OPT_LONG_FIELD(T, seed), .name = "seed", .def = 0, .help = "seed of the item and speaker subsampling"},
    {SLEX_OPT_CHOICE_FIELD(T, any_context), .name = "context", .def = 0, .choices = "within|any",
     .help = "within (triphone items, ZeroSpeech) or any (phone items, context ignored)"},
};
#undef T
const slex_option_table slex_abx_option_table = SLEX_OPTION_TABLE(abx_rows);

slex_abx_options slex_abx_default_options(void) {
    slex_abx_options o;
    memset(&o, 0, sizeof o);
    slex_options_defaults(&slex_abx_option_table, &o);
    return o;
}

/* One triphone item. */
typedef struct item {
    int64_t utt;         /* alignment utterance index */
    int64_t first, n;    /* frames [first, first + n) of the utterance */
    int32_t phone, ctx;  /* central phone; context = prev * n_phones + next */
    int32_t speaker;
    int64_t offset;      /* first frame in the shared feature buffer */
} item;

typedef struct abx_data {
    slex_alignment *al;
    slex_label_vocab *phones, *speakers;
    int32_t *speaker_of;   /* per alignment utterance, -1 = unknown */
    char *present;         /* per alignment utterance: in the store */
    int64_t *store_frames; /* per alignment utterance: the store's frame count */
    int hop;               /* samples per frame */
    item *items;
    int64_t n_items, n_total;
    int dim, is_units;
    float *feats;          /* (frames, dim) of all kept items; units: labels as int32 in `units` */
    int32_t *units;
    int64_t frames;
} abx_data;

static void abx_data_free(abx_data *d) {
    slex_alignment_free(d->al);
    slex_label_vocab_free(d->phones);
    slex_label_vocab_free(d->speakers);
    free(d->speaker_of);
    free(d->present);
    free(d->store_frames);
    free(d->items);
    free(d->feats);
    free(d->units);
}

/* relpath<TAB>speaker[<TAB>...] lines; a speaker for every aligned utterance that has one. */
static int read_speakers(abx_data *d, const char *path, slex_error *err) {
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) return slex_fail_wrap(err, "speakers (--speakers, or the .utts beside the alignment)");
    int64_t n = slex_alignment_num_utts(d->al);
    d->speaker_of = malloc((size_t)(n ? n : 1) * sizeof *d->speaker_of);
    d->speakers = slex_label_vocab_create();
    int rc = d->speaker_of && d->speakers ? 0 : slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int64_t i = 0; i < n && !rc; i++) d->speaker_of[i] = -1;
    int line = 0;
    for (char *p = text, *end; !rc && *p; p = end + (*end != 0)) {
        end = p + strcspn(p, "\n");
        line++;
        char *tab = memchr(p, '\t', (size_t)(end - p));
        if (p == end || *p == '#') continue;
        if (!tab) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s:%d: expected relpath<TAB>speaker", path, line);
            break;
        }
        size_t spk_len = strcspn(tab + 1, "\t\n");
        *tab = 0;
        int64_t u = slex_alignment_find(d->al, p);
        *tab = '\t';
        if (u < 0) continue;
        int32_t id = slex_label_vocab_add(d->speakers, tab + 1, spk_len);
        if (id < 0) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        d->speaker_of[u] = id;
    }
    free(text);
    return rc;
}

/* Pass over this rank's shards: which aligned utterances the store holds, with their frame
 * counts; stored utterances without alignment are counted (an error after the reduction). */
static int scan_store(abx_data *d, const slex_store *s, int rank, int size, int64_t *unaligned, char *first_unaligned,
                      size_t cap, slex_error *err) {
    *unaligned = 0;
    for (int shard = rank; shard < slex_store_nshard(s); shard += size) {
        slex_store_shard *r = slex_store_shard_open(s, shard, err);
        if (!r) return -1;
        for (int64_t i = 0; i < slex_store_shard_num_utts(r); i++) {
            int64_t u = slex_alignment_find(d->al, slex_store_shard_utt_id(r, i));
            if (u < 0) {
                if (!(*unaligned)++) snprintf(first_unaligned, cap, "%s", slex_store_shard_utt_id(r, i));
                continue;
            }
            d->present[u] = 1;
            d->store_frames[u] = slex_store_shard_lengths(r)[i];
        }
        slex_store_shard_close(r);
    }
    return 0;
}

static int is_silence(const slex_segment *s) {
    size_t len = slex_label_base_length(s->label);
    return len == strlen(SLEX_SILENCE_LABEL) && !strncmp(s->label, SLEX_SILENCE_LABEL, len);
}

/* Every triphone (any_context: phone) of every stored, aligned utterance with a speaker. */
static int build_items(abx_data *d, int any_context, slex_error *err) {
    int64_t cap = 0;
    int n_phones = slex_label_vocab_size(d->phones);
    for (int64_t u = 0; u < slex_alignment_num_utts(d->al); u++) {
        if (!d->present[u]) continue;
        int64_t n_segs;
        const slex_segment *seg = slex_alignment_segments(d->al, u, &n_segs);
        int64_t samples = n_segs ? seg[n_segs - 1].end : 0;
        int64_t frames = slex_align_num_frames(d->hop == 320 ? SLEX_FRAMES_50HZ : SLEX_FRAMES_100HZ, samples);
        if (frames != d->store_frames[u])
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld frames in the store, but its alignment (%lld samples) gives %lld",
                             slex_alignment_utt_id(d->al, u), (long long)d->store_frames[u], (long long)samples,
                             (long long)frames);
        if (d->speaker_of[u] < 0)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no speaker for this utterance in the speakers file",
                             slex_alignment_utt_id(d->al, u));
        for (int64_t j = !any_context; j + !any_context < n_segs; j++) {
            if (is_silence(&seg[j]) || (!any_context && (is_silence(&seg[j - 1]) || is_silence(&seg[j + 1])))) continue;
            /* Frames whose centre i*hop + 200 is in [start, end). */
            int64_t start = any_context ? seg[j].start : seg[j - 1].start;
            int64_t end = any_context ? seg[j].end : seg[j + 1].end;
            int64_t first = start <= 200 ? 0 : (start - 200 + d->hop - 1) / d->hop;
            int64_t last = end - 1 < 200 ? -1 : (end - 1 - 200) / d->hop;
            if (last >= frames) last = frames - 1;
            if (last < first) continue;
            if (d->n_items == cap) {
                cap = cap ? 2 * cap : 4096;
                item *it = realloc(d->items, (size_t)cap * sizeof *it);
                if (!it) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld items", (long long)cap);
                d->items = it;
            }
            int32_t ctx = 0;
            if (!any_context) {
                int32_t prev = slex_label_vocab_find(d->phones, seg[j - 1].label, slex_label_base_length(seg[j - 1].label));
                int32_t next = slex_label_vocab_find(d->phones, seg[j + 1].label, slex_label_base_length(seg[j + 1].label));
                ctx = prev * n_phones + next;
            }
            d->items[d->n_items++] = (item){.utt = u,
                                            .first = first,
                                            .n = last - first + 1,
                                            .phone = slex_label_vocab_find(d->phones, seg[j].label,
                                                                           slex_label_base_length(seg[j].label)),
                                            .ctx = ctx,
                                            .speaker = d->speaker_of[u]};
        }
    }
    d->n_total = d->n_items;
    return 0;
}

/* Items ordered by (context, speaker, phone, position in the alignment): groups are runs. */
static int by_group(const void *pa, const void *pb) {
    const item *a = pa, *b = pb;
    if (a->ctx != b->ctx) return a->ctx < b->ctx ? -1 : 1;
    if (a->speaker != b->speaker) return a->speaker < b->speaker ? -1 : 1;
    if (a->phone != b->phone) return a->phone < b->phone ? -1 : 1;
    if (a->utt != b->utt) return a->utt < b->utt ? -1 : 1;
    return a->first < b->first ? -1 : a->first > b->first;
}

static int same_group(const item *a, const item *b) {
    return a->ctx == b->ctx && a->speaker == b->speaker && a->phone == b->phone;
}

/* Marks a seeded random subset of `keep` of n items (partial Fisher-Yates over idx). */
static void keep_random(int64_t n, int64_t keep, slex_rng *rng, int64_t *idx, char *mark) {
    for (int64_t i = 0; i < n; i++) {
        idx[i] = i;
        mark[i] = 0;
    }
    for (int64_t i = 0; i < keep; i++) {
        int64_t j = i + (int64_t)slex_rng_below(rng, (uint64_t)(n - i));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        mark[idx[i]] = 1;
    }
}

/* At most max_size_group items per (context, speaker, phone), then at most max_items in all;
 * the kept items stay in group order. */
static int subsample(abx_data *d, const slex_abx_options *o, slex_error *err) {
    qsort(d->items, (size_t)d->n_items, sizeof *d->items, by_group);
    size_t n = (size_t)(d->n_items ? d->n_items : 1);
    char *mark = malloc(n);
    int64_t *idx = malloc(n * sizeof *idx);
    if (!mark || !idx) {
        free(mark);
        free(idx);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    slex_rng rng;
    slex_rng_seed(&rng, (uint64_t)o->seed);
    int64_t out = 0;
    for (int64_t g = 0; g < d->n_items;) {
        int64_t e = g;
        while (e < d->n_items && same_group(&d->items[g], &d->items[e])) e++;
        int64_t len = e - g;
        if (len > o->max_size_group) keep_random(len, o->max_size_group, &rng, idx, mark);
        for (int64_t i = 0; i < len; i++)
            if (len <= o->max_size_group || mark[i]) d->items[out++] = d->items[g + i];
        g = e;
    }
    d->n_items = out;
    if (d->n_items > o->max_items) {
        keep_random(d->n_items, o->max_items, &rng, idx, mark);
        out = 0;
        for (int64_t i = 0; i < d->n_items; i++)
            if (mark[i]) d->items[out++] = d->items[i];
        d->n_items = out;
    }
    free(mark);
    free(idx);
    d->frames = 0;
    for (int64_t i = 0; i < d->n_items; i++) {
        d->items[i].offset = d->frames;
        d->frames += d->items[i].n;
    }
    return 0;
}

/* Reads the kept items' frames of this rank's shards into the shared buffer, then shares them
 * (every slot is written by exactly one rank, the others add zeros: exact). */
static int load_items(abx_data *d, const slex_store *s, int rank, int size, slex_error *err) {
    size_t values = (size_t)(d->frames ? d->frames : 1) * (size_t)d->dim;
    if (d->is_units) d->units = calloc(values, sizeof *d->units);
    else d->feats = calloc(values, sizeof *d->feats);
    if (!d->units && !d->feats) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld frames of dim %d", (long long)d->frames, d->dim);
    /* For each utterance, its kept items (items are grouped by context, not utterance). */
    int64_t n_utts = slex_alignment_num_utts(d->al);
    int64_t *head = malloc((size_t)(n_utts ? n_utts : 1) * sizeof *head), *next = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *next);
    if (!head || !next) {
        free(head);
        free(next);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    for (int64_t u = 0; u < n_utts; u++) head[u] = -1;
    for (int64_t i = d->n_items - 1; i >= 0; i--) {
        next[i] = head[d->items[i].utt];
        head[d->items[i].utt] = i;
    }
    int rc = 0;
    for (int shard = rank; !rc && shard < slex_store_nshard(s); shard += size) {
        slex_store_shard *r = slex_store_shard_open(s, shard, err);
        if (!r) {
            rc = -1;
            break;
        }
        for (int64_t i = 0; !rc && i < slex_store_shard_num_utts(r); i++) {
            int64_t u = slex_alignment_find(d->al, slex_store_shard_utt_id(r, i));
            for (int64_t it = u < 0 ? -1 : head[u]; !rc && it >= 0; it = next[it]) {
                const item *x = &d->items[it];
                void *dst = d->is_units ? (void *)(d->units + x->offset) : (void *)(d->feats + x->offset * d->dim);
                rc = slex_store_shard_read_rows(r, slex_store_shard_offsets(r)[i] + x->first, x->n, dst, err);
            }
        }
        if (!rc) rc = slex_store_shard_verify(r, err); /* the CRC-32 of the whole file, read once */
        slex_store_shard_close(r);
    }
    free(head);
    free(next);
    if (!rc && size > 1) {
        /* Chunks below 2^31 elements for MPI's int counts. */
        for (size_t at = 0; at < values; at += (size_t)1 << 30) {
            int n = (int)(values - at < ((size_t)1 << 30) ? values - at : ((size_t)1 << 30));
            if (d->is_units) MPI_Allreduce(MPI_IN_PLACE, d->units + at, n, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD);
            else MPI_Allreduce(MPI_IN_PLACE, d->feats + at, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
    }
    if (!rc && !d->is_units) /* unit length per frame: the angular distance needs only dot products */
        for (int64_t f = 0; f < d->frames; f++) {
            float *v = d->feats + f * d->dim;
            double q = 0;
            for (int c = 0; c < d->dim; c++) q += (double)v[c] * v[c];
            float inv = q > 0 ? (float)(1.0 / sqrt(q)) : 0.0f;
            for (int c = 0; c < d->dim; c++) v[c] *= inv;
        }
    return rc;
}

double slex_abx_dtw(const double *d, int n, int m, double *work) {
    double *cost = work, *steps = work + (size_t)n * m;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            size_t at = (size_t)i * m + j;
            if (!i && !j) {
                cost[at] = d[at];
                steps[at] = 1;
                continue;
            }
            /* Predecessors in order of preference on equal cost: diagonal, up, left. */
            double best = INFINITY, best_steps = 0;
            if (i && j && cost[at - m - 1] < best) {
                best = cost[at - m - 1];
                best_steps = steps[at - m - 1];
            }
            if (i && cost[at - m] < best) {
                best = cost[at - m];
                best_steps = steps[at - m];
            }
            if (j && cost[at - 1] < best) {
                best = cost[at - 1];
                best_steps = steps[at - 1];
            }
            cost[at] = best + d[at];
            steps[at] = best_steps + 1;
        }
    size_t last = (size_t)n * m - 1;
    return cost[last] / steps[last];
}

/* Work buffers of the distance computation. */
typedef struct dist_work {
    float *dots;
    double *d, *dtw;
    size_t cap;
} dist_work;

static double item_distance(const abx_data *a, const item *x, const item *y, dist_work *w) {
    int n = (int)x->n, m = (int)y->n;
    size_t need = (size_t)n * m;
    if (need > w->cap) {
        free(w->dots);
        free(w->d);
        free(w->dtw);
        w->dots = malloc(need * sizeof *w->dots);
        w->d = malloc(need * sizeof *w->d);
        w->dtw = malloc(2 * need * sizeof *w->dtw);
        w->cap = need;
        if (!w->dots || !w->d || !w->dtw) {
            w->cap = 0;
            return NAN;
        }
    }
    if (a->is_units) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) w->d[(size_t)i * m + j] = a->units[x->offset + i] == a->units[y->offset + j] ? 0 : 0.5;
    } else {
        /* (n, m) = (n, D) . (m, D)^T of unit-length frames. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, a->dim, 1.0f, a->feats + x->offset * a->dim, a->dim,
                    a->feats + y->offset * a->dim, a->dim, 0.0f, w->dots, m);
        for (size_t k = 0; k < need; k++) {
            double c = w->dots[k];
            w->d[k] = acos(c > 1 ? 1 : c < -1 ? -1 : c) / M_PI;
        }
    }
    return slex_abx_dtw(w->d, n, m, w->dtw);
}

/* A cell: A items [a0, a0+na), B items [b0, b0+nb), X items [x0, x0+nx) (X = A within speakers). */
typedef struct cell {
    int64_t a0, b0, x0;
    int32_t na, nb, nx;
    int32_t pa, pb; /* phones */
    int across;
} cell;

typedef struct cell_list {
    cell *v;
    int64_t n, cap;
} cell_list;

static int push_cell(cell_list *l, cell c, slex_error *err) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        cell *v = realloc(l->v, (size_t)l->cap * sizeof *v);
        if (!v) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld ABX cells", (long long)l->cap);
        l->v = v;
    }
    l->v[l->n++] = c;
    return 0;
}

/* Runs of one phone inside the (context, speaker) group [g, e). */
typedef struct run {
    int64_t start;
    int32_t n, phone, speaker;
} run;

static int enumerate_cells(const abx_data *d, const slex_abx_options *o, cell_list *cells, slex_error *err) {
    run *runs = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *runs);
    int32_t *pick = malloc((size_t)(d->n_items ? d->n_items : 1) * sizeof *pick);
    if (!runs || !pick) {
        free(runs);
        free(pick);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    slex_rng rng;
    slex_rng_seed(&rng, (uint64_t)o->seed ^ 0x5a5a5a5a5a5a5a5aULL);
    int rc = 0;
    for (int64_t c0 = 0; !rc && c0 < d->n_items;) {
        /* One context: its runs of (speaker, phone). */
        int64_t c1 = c0;
        while (c1 < d->n_items && d->items[c1].ctx == d->items[c0].ctx) c1++;
        int n_runs = 0;
        for (int64_t i = c0; i < c1;) {
            int64_t j = i;
            while (j < c1 && d->items[j].speaker == d->items[i].speaker && d->items[j].phone == d->items[i].phone) j++;
            runs[n_runs++] = (run){.start = i, .n = (int32_t)(j - i), .phone = d->items[i].phone, .speaker = d->items[i].speaker};
            i = j;
        }
        for (int ra = 0; !rc && ra < n_runs; ra++)
            for (int rb = 0; !rc && rb < n_runs; rb++) {
                const run *A = &runs[ra], *B = &runs[rb];
                if (A->speaker != B->speaker || A->phone == B->phone) continue;
                if (A->n >= 2)
                    rc = push_cell(cells, (cell){A->start, B->start, A->start, A->n, B->n, A->n, A->phone, B->phone, 0}, err);
                /* Across: X of phone a from other speakers, at most max_x_across of them. */
                int n_x = 0;
                for (int rx = 0; rx < n_runs; rx++)
                    if (runs[rx].phone == A->phone && runs[rx].speaker != A->speaker) pick[n_x++] = rx;
                for (int i = 0; i < n_x && n_x > o->max_x_across && i < o->max_x_across; i++) {
                    int j = i + (int)slex_rng_below(&rng, (uint64_t)(n_x - i)); /* partial Fisher-Yates */
                    int32_t t = pick[i];
                    pick[i] = pick[j];
                    pick[j] = t;
                }
                if (n_x > o->max_x_across) n_x = o->max_x_across;
                for (int i = 0; !rc && i < n_x; i++) {
                    const run *X = &runs[pick[i]];
                    rc = push_cell(cells, (cell){A->start, B->start, X->start, A->n, B->n, X->n, A->phone, B->phone, 1}, err);
                }
            }
        c0 = c1;
    }
    free(runs);
    free(pick);
    return rc;
}

/* Errors of one cell in half-errors, and its triplets. */
static int score_cell(const abx_data *d, const cell *c, dist_work *w, int64_t *half_errors, int64_t *triplets,
                      slex_error *err) {
    size_t nax = (size_t)c->na * c->nx, nbx = (size_t)c->nb * c->nx;
    double *dax = malloc((nax + nbx) * sizeof *dax), *dbx = dax + nax;
    if (!dax) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int i = 0; i < c->na; i++)
        for (int x = 0; x < c->nx; x++)
            dax[(size_t)i * c->nx + x] = (!c->across && i == x) ? 0 : item_distance(d, &d->items[c->a0 + i], &d->items[c->x0 + x], w);
    for (int b = 0; b < c->nb; b++)
        for (int x = 0; x < c->nx; x++)
            dbx[(size_t)b * c->nx + x] = item_distance(d, &d->items[c->b0 + b], &d->items[c->x0 + x], w);
    for (size_t k = 0; k < nax + nbx; k++)
        if (isnan(dax[k])) {
            free(dax);
            return slex_fail_as(err, SLEX_ERR_RESOURCE,
                                "ABX: a distance is not a number (NaN in the features, or out of memory)");
        }
    int64_t he = 0, t = 0;
    for (int x = 0; x < c->nx; x++)
        for (int i = 0; i < c->na; i++) {
            if (!c->across && i == x) continue; /* A != X */
            double ax = dax[(size_t)i * c->nx + x];
            for (int b = 0; b < c->nb; b++) {
                double bx = dbx[(size_t)b * c->nx + x];
                he += ax > bx ? 2 : ax == bx ? 1 : 0;
                t++;
            }
        }
    free(dax);
    *half_errors = he;
    *triplets = t;
    return 0;
}

/* Mean over phone pairs of the mean over their cells, for within (across = 0) or across cells. */
static double pair_mean(const cell_list *cells, const int64_t *counts, int n_phones, int across, int64_t *pairs,
                        int64_t *triplets) {
    size_t np2 = (size_t)n_phones * n_phones;
    double *sum = calloc(np2 ? np2 : 1, sizeof *sum);
    int64_t *n = calloc(np2 ? np2 : 1, sizeof *n);
    double total = 0;
    *pairs = *triplets = 0;
    if (sum && n) {
        for (int64_t i = 0; i < cells->n; i++) {
            const cell *c = &cells->v[i];
            int64_t t = counts[2 * i + 1];
            if (c->across != across || !t) continue;
            size_t p = (size_t)c->pa * n_phones + c->pb;
            sum[p] += (double)counts[2 * i] / (2.0 * (double)t);
            n[p]++;
            *triplets += t;
        }
        for (size_t p = 0; p < np2; p++)
            if (n[p]) {
                total += sum[p] / (double)n[p];
                (*pairs)++;
            }
    }
    free(sum);
    free(n);
    return *pairs ? total / (double)*pairs : NAN;
}

int slex_abx_run(const char *store_dir, const char *align_path, const char *speakers_path, const slex_abx_options *o,
                 int rank, int size, slex_abx_result *r, slex_error *err) {
    memset(r, 0, sizeof *r);
    abx_data d = {0};
    slex_store *s = slex_store_open(store_dir, err);
    int rc = s ? 0 : -1;
    if (!rc && slex_store_frame_rate(s) != 50 && slex_store_frame_rate(s) != 100)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: frame rate %g Hz: alignments give frames at 50 or 100 Hz only", store_dir,
                       slex_store_frame_rate(s));
    if (!rc) {
        d.hop = slex_store_frame_rate(s) == 50 ? 320 : 160;
        d.is_units = slex_store_get_dtype(s) == SLEX_STORE_I32;
        d.dim = slex_store_dim(s);
        if (!(d.al = slex_alignment_read(align_path, err)) || !(d.phones = slex_alignment_vocab(d.al, 1, err)) ||
            read_speakers(&d, speakers_path, err))
            rc = -1;
    }
    int64_t n_utts = d.al ? slex_alignment_num_utts(d.al) : 0;
    if (!rc) {
        d.present = calloc((size_t)(n_utts ? n_utts : 1), 1);
        d.store_frames = calloc((size_t)(n_utts ? n_utts : 1), sizeof *d.store_frames);
        if (!d.present || !d.store_frames) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    int64_t unaligned = 0;
    char first_unaligned[512] = "";
    if (!rc) rc = scan_store(&d, s, rank, size, &unaligned, first_unaligned, sizeof first_unaligned, err);
    int ok = 1, ok_local = !rc;
    MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!ok) {
        rc = rc ? rc : (slex_error_clear(err), -1); /* that rank says why */
        goto done;
    }
    int64_t unaligned_all = 0;
    MPI_Allreduce(&unaligned, &unaligned_all, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (unaligned_all) {
        slex_error_clear(err);
        rc = rank ? -1 : slex_fail_as(err, SLEX_ERR_INPUT, "%s does not cover %s: %lld stored utterance(s) have no alignment (e.g. %s)", align_path,
                       store_dir, (long long)unaligned_all, first_unaligned[0] ? first_unaligned : "on another rank");
        goto done;
    }
    /* Every rank learns which utterances the store holds, and their frame counts. */
    MPI_Allreduce(MPI_IN_PLACE, d.present, (int)n_utts, MPI_CHAR, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, d.store_frames, (int)n_utts, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    rc = build_items(&d, o->any_context, err) || subsample(&d, o, err);
    if (!rc && d.n_items == 0) rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: no triphone item (speech without silence) to evaluate", align_path);
    if (!rc) rc = load_items(&d, s, rank, size, err);
    ok_local = !rc;
    MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!ok) {
        rc = rc ? rc : (slex_error_clear(err), -1); /* that rank says why */
        goto done;
    }
    cell_list cells = {0};
    rc = enumerate_cells(&d, o, &cells, err);
    int64_t *counts = rc ? NULL : calloc((size_t)(2 * cells.n + 1), sizeof *counts);
    if (!rc && !counts) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    dist_work w = {0};
    for (int64_t i = rank; !rc && i < cells.n; i += size)
        rc = score_cell(&d, &cells.v[i], &w, &counts[2 * i], &counts[2 * i + 1], err);
    free(w.dots);
    free(w.d);
    free(w.dtw);
    ok_local = !rc;
    MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (ok) {
        MPI_Allreduce(MPI_IN_PLACE, counts, (int)(2 * cells.n), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        int n_phones = slex_label_vocab_size(d.phones);
        r->within = pair_mean(&cells, counts, n_phones, 0, &r->pairs_within, &r->triplets_within);
        r->across = pair_mean(&cells, counts, n_phones, 1, &r->pairs_across, &r->triplets_across);
        r->items = d.n_items;
        r->items_total = d.n_total;
        r->frames = d.frames;
        r->speakers = slex_label_vocab_size(d.speakers);
        r->is_units = d.is_units;
    } else if (!rc) {
        rc = (slex_error_clear(err), -1); /* that rank says why */
    }
    free(counts);
    free(cells.v);
done:
    abx_data_free(&d);
    slex_store_close(s);
    return rc;
}

cJSON *slex_abx_report(const slex_abx_result *r, const char *store_dir, const char *align_path, const char *lang,
                       const slex_abx_options *o) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "kind", "abx");
    cJSON_AddStringToObject(doc, "lang", lang);
    cJSON_AddStringToObject(doc, "features", store_dir);
    cJSON_AddStringToObject(doc, "align", align_path);
    cJSON_AddStringToObject(doc, "input", r->is_units ? "units" : "features");
    cJSON_AddStringToObject(doc, "context", o->any_context ? "any (phone items)" : "within (triphone items)");
    if (!isnan(r->within)) cJSON_AddNumberToObject(doc, "abx_within", r->within);
    if (!isnan(r->across)) cJSON_AddNumberToObject(doc, "abx_across", r->across);
    cJSON_AddNumberToObject(doc, "triplets_within", (double)r->triplets_within);
    cJSON_AddNumberToObject(doc, "triplets_across", (double)r->triplets_across);
    cJSON_AddNumberToObject(doc, "phone_pairs_within", (double)r->pairs_within);
    cJSON_AddNumberToObject(doc, "phone_pairs_across", (double)r->pairs_across);
    cJSON_AddNumberToObject(doc, "items", (double)r->items);
    cJSON_AddNumberToObject(doc, "items_before_subsampling", (double)r->items_total);
    cJSON_AddNumberToObject(doc, "frames", (double)r->frames);
    cJSON_AddNumberToObject(doc, "speakers", r->speakers);
    cJSON_AddNumberToObject(doc, "max_size_group", o->max_size_group);
    cJSON_AddNumberToObject(doc, "max_x_across", o->max_x_across);
    cJSON_AddNumberToObject(doc, "max_items", (double)o->max_items);
    cJSON_AddNumberToObject(doc, "seed", (double)o->seed);
    return doc;
}
