#include "cluster/kmeans.h"

#include "cluster/assign.h"
#include "cluster/lloyd.h"
#include "core/exactsum.h"
#include "core/hash.h"

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T slex_kmeans_options
static const slex_option kmeans_rows[] = {
    {SLEX_OPT_INT_FIELD(T, k), .name = "k", .flags = SLEX_OPTF_REQUIRED, .def = 0, .min = 1, .max = INT_MAX,
     .param = "k", .help = "number of clusters"},
    {SLEX_OPT_INT_FIELD(T, max_iter), .name = "max-iter", .def = 100, .min = 0, .max = INT_MAX, .param = "max_iter",
     .help = "passes' worth of mini-batch steps (steps = max_iter * n / batch)"},
    {SLEX_OPT_INT_FIELD(T, batch_size), .name = "batch-size", .def = 10000, .min = 1, .max = INT_MAX,
     .param = "batch_size", .help = "mini-batch size"},
    {SLEX_OPT_INT_FIELD(T, init_size), .name = "init-size", .def = 0, .min = 0, .max = INT_MAX, .param = "init_size",
     .help = "frames for k-means++ (0 = 3 * batch size)"},
    {SLEX_OPT_INT_FIELD(T, n_init), .name = "n-init", .def = 20, .min = 1, .max = INT_MAX, .param = "n_init",
     .help = "initialisations, the best on a validation sample is kept"},
    {SLEX_OPT_CHOICE_FIELD(T, init), .name = "init", .def = SLEX_KMEANS_INIT_KMEANS_PP, .choices = "k-means++|random",
     .param = "init", .help = "k-means++ (sklearn's greedy k-means++) or random (K distinct sample rows)"},
    {SLEX_OPT_INT_FIELD(T, max_no_improvement), .name = "max-no-improvement", .def = 100, .min = 0, .max = INT_MAX,
     .param = "max_no_improvement", .help = "stop after this many steps without smoothed-inertia improvement (0 = never)"},
    {SLEX_OPT_DOUBLE_FIELD(T, tol), .name = "tol", .def = 0, .min = 0, .max = DBL_MAX, .param = "tol",
     .help = "stop when the centres move less than this (0 = off)"},
    {SLEX_OPT_DOUBLE_FIELD(T, reassignment_ratio), .name = "reassignment-ratio", .def = 0, .min = 0, .max = DBL_MAX,
     .param = "reassignment_ratio", .help = "sklearn's low-count centre reassignment"},
    {SLEX_OPT_INT_FIELD(T, lloyd_passes), .name = "lloyd-passes", .def = 0, .min = 0, .max = INT_MAX,
     .param = "lloyd_passes", .help = "full-batch Lloyd refinement passes after the mini-batches"},
    {SLEX_OPT_U64_FIELD(T, seed), .name = "seed", .def = 0, .param = "seed", .help = "random seed"},
    {SLEX_OPT_INT_FIELD(T, lloyd_chunk), .name = "lloyd-chunk", .flags = SLEX_OPTF_INTERNAL, .def = 65536, .min = 1,
     .max = INT_MAX},
    {SLEX_OPT_INT_FIELD(T, bounds_mb), .name = "bounds-mb", .def = 1024, .min = 0, .max = INT_MAX,
     .help = "per-rank memory for the bounds that let Lloyd passes skip distances (0 = compute all; same result)"},
    {SLEX_OPT_INT_FIELD(T, checkpoint_every), .name = "checkpoint-every", .def = 100, .min = 0, .max = INT_MAX,
     .help = "mini-batch steps between checkpoints (OUT.ckpt; 0 = never)"},
};
#undef T
const slex_option_table slex_kmeans_option_table = SLEX_OPTION_TABLE(kmeans_rows);

void slex_kmeans_options_default(slex_kmeans_options *opts) {
    memset(opts, 0, sizeof *opts);
    slex_options_defaults(&slex_kmeans_option_table, opts);
}

const char *slex_kmeans_stop_name(int stop_reason) {
    return stop_reason == SLEX_KMEANS_STOP_NO_IMPROVEMENT ? "no_improvement"
           : stop_reason == SLEX_KMEANS_STOP_TOL          ? "tol"
                                                          : "max_iter";
}

/* ------------------------------------------------------------------------------------------ */
/* State */

int slex_kmeans_state_init(slex_kmeans_state *state, const slex_kmeans_options *opts,
                           int64_t n_frames, int dim, slex_error *err) {
    memset(state, 0, sizeof *state);
    if (opts->k < 1) return slex_fail(err, "kmeans: k must be >= 1 (got %d)", opts->k);
    if (dim < 1 || dim > 100000)
        return slex_fail(err, "kmeans: feature dimension must be 1..100000 (got %d)", dim);
    if (n_frames < opts->k)
        return slex_fail(err, "kmeans: k=%d is larger than the number of frames (%lld)", opts->k,
                         (long long)n_frames);
    if (opts->max_iter < 0 || opts->batch_size < 1 || opts->init_size < 0 || opts->n_init < 1 ||
        opts->max_no_improvement < 0 || !(opts->tol >= 0) || !(opts->reassignment_ratio >= 0) ||
        opts->lloyd_passes < 0 || opts->lloyd_chunk < 1 || opts->checkpoint_every < 0 || opts->bounds_mb < 0 ||
        (opts->init != SLEX_KMEANS_INIT_KMEANS_PP && opts->init != SLEX_KMEANS_INIT_RANDOM))
        return slex_fail(err, "kmeans: invalid options (max_iter %d, batch_size %d, init_size %d, "
                              "n_init %d, max_no_improvement %d, tol %g, reassignment_ratio %g, "
                              "lloyd_passes %d, lloyd_chunk %d, checkpoint_every %d)",
                         opts->max_iter, opts->batch_size, opts->init_size, opts->n_init,
                         opts->max_no_improvement, opts->tol, opts->reassignment_ratio,
                         opts->lloyd_passes, opts->lloyd_chunk, opts->checkpoint_every);
    state->opts = *opts;
    state->k = opts->k;
    state->dim = dim;
    state->n_frames = n_frames;
    /* sklearn MiniBatchKMeans._check_params_vs_input */
    int64_t batch = opts->batch_size < n_frames ? opts->batch_size : n_frames;
    int64_t init = opts->init_size;
    if (init == 0) {
        init = 3 * batch;
        if (init < opts->k) init = 3 * (int64_t)opts->k;
    } else if (init < opts->k) {
        init = 3 * (int64_t)opts->k;
    }
    if (init > n_frames) init = n_frames;
    state->batch_size = (int32_t)batch;
    state->init_size = (int32_t)init;
    state->n_steps = (int64_t)opts->max_iter * n_frames / batch;
    state->phase = SLEX_KMEANS_PHASE_INIT;
    slex_rng_seed(&state->rng, opts->seed);
    state->centers = calloc((size_t)opts->k * (size_t)dim, sizeof *state->centers);
    state->counts = calloc((size_t)opts->k, sizeof *state->counts);
    if (!state->centers || !state->counts) {
        slex_kmeans_state_free(state);
        return slex_fail(err, "kmeans: out of memory for %d x %d centres", opts->k, dim);
    }
    return 0;
}

void slex_kmeans_state_free(slex_kmeans_state *state) {
    free(state->centers);
    free(state->counts);
    state->centers = NULL;
    state->counts = NULL;
}

int slex_kmeans_state_copy(slex_kmeans_state *dst, const slex_kmeans_state *src, slex_error *err) {
    size_t nc = (size_t)src->k * (size_t)src->dim;
    float *centers = malloc(nc * sizeof *centers);
    int64_t *counts = malloc((size_t)src->k * sizeof *counts);
    if (!centers || !counts) {
        free(centers);
        free(counts);
        return slex_fail(err, "kmeans: out of memory copying the state");
    }
    memcpy(centers, src->centers, nc * sizeof *centers);
    memcpy(counts, src->counts, (size_t)src->k * sizeof *counts);
    slex_kmeans_state_free(dst);
    *dst = *src;
    dst->centers = centers;
    dst->counts = counts;
    return 0;
}

/* ---- checkpoint file: explicit little-endian packing, so the format does not follow the ABI */

typedef struct byte_buf {
    unsigned char *data;
    size_t len, cap;
    size_t pos; /* read position */
} byte_buf;

static int buf_put(byte_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int put_u64(byte_buf *b, uint64_t v) {
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(v >> (8 * i));
    return buf_put(b, le, 8);
}
static int put_f64(byte_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return put_u64(b, u);
}
static int get_u64(byte_buf *b, uint64_t *v) {
    if (b->pos + 8 > b->len) return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)b->data[b->pos + (size_t)i] << (8 * i);
    b->pos += 8;
    *v = u;
    return 0;
}
static int get_f64(byte_buf *b, double *v) {
    uint64_t u;
    if (get_u64(b, &u)) return -1;
    memcpy(v, &u, 8);
    return 0;
}

static const char kCheckpointMagic[8] = {'S', 'L', 'E', 'X', 'K', 'M', 'S', '2'};

/* The scalar fields in file order; one table serves writing and reading. */
typedef enum { FIELD_I64, FIELD_F64, FIELD_U64 } field_kind;
typedef struct field {
    field_kind kind;
    void *ptr;
    int width; /* bytes of the in-memory integer (4 or 8) */
} field;

static int state_fields(slex_kmeans_state *s, field *f) {
    int n = 0;
#define FI(x) f[n++] = (field){FIELD_I64, &(x), (int)sizeof(x)}
#define FD(x) f[n++] = (field){FIELD_F64, &(x), 8}
#define FU(x) f[n++] = (field){FIELD_U64, &(x), 8}
    FI(s->opts.k); FI(s->opts.max_iter); FI(s->opts.batch_size); FI(s->opts.init_size);
    FI(s->opts.n_init); FI(s->opts.init); FI(s->opts.max_no_improvement); FD(s->opts.tol);
    FD(s->opts.reassignment_ratio); FI(s->opts.lloyd_passes); FI(s->opts.lloyd_chunk);
    FU(s->opts.seed); FI(s->opts.checkpoint_every);
    FI(s->k); FI(s->dim); FI(s->n_frames); FI(s->batch_size); FI(s->init_size); FI(s->phase);
    FI(s->step); FI(s->n_steps); FI(s->lloyd_pass); FI(s->has_ewa); FD(s->ewa_inertia);
    FD(s->ewa_inertia_min); FI(s->no_improvement); FI(s->since_reassign); FD(s->tol_scaled);
    FD(s->init_inertia); FD(s->last_inertia); FI(s->stop_reason);
    FU(s->rng.s[0]); FU(s->rng.s[1]); FU(s->rng.s[2]); FU(s->rng.s[3]);
#undef FI
#undef FD
#undef FU
    return n;
}

#define MAX_FIELDS 64

int slex_kmeans_state_save(const slex_kmeans_state *state, const char *path, slex_error *err) {
    slex_kmeans_state copy = *state; /* state_fields wants writable pointers; we only read */
    field fields[MAX_FIELDS];
    int nf = state_fields(&copy, fields);
    byte_buf b = {0};
    int rc = buf_put(&b, kCheckpointMagic, 8);
    for (int i = 0; i < nf && !rc; i++) {
        const field *f = &fields[i];
        if (f->kind == FIELD_F64) rc = put_f64(&b, *(const double *)f->ptr);
        else if (f->kind == FIELD_U64) rc = put_u64(&b, *(const uint64_t *)f->ptr);
        else if (f->width == 4) rc = put_u64(&b, (uint64_t)(int64_t)*(const int32_t *)f->ptr);
        else rc = put_u64(&b, (uint64_t)*(const int64_t *)f->ptr);
    }
    size_t nc = (size_t)state->k * (size_t)state->dim;
    for (size_t i = 0; i < nc && !rc; i++) {
        uint32_t u;
        memcpy(&u, &state->centers[i], 4);
        unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                               (unsigned char)(u >> 24)};
        rc = buf_put(&b, le, 4);
    }
    for (int32_t i = 0; i < state->k && !rc; i++) rc = put_u64(&b, (uint64_t)state->counts[i]);
    if (!rc) rc = put_u64(&b, slex_fnv1a64(SLEX_FNV1A_BASIS, b.data, b.len));
    if (rc) {
        free(b.data);
        return slex_fail(err, "%s: out of memory building the k-means checkpoint", path);
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(b.data);
        return slex_fail(err, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        rc = slex_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        size_t wrote = fwrite(b.data, 1, b.len, fp);
        int close_rc = fclose(fp);
        if (wrote != b.len || close_rc != 0) rc = slex_fail(err, "%s: write failed: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            rc = slex_fail(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (rc) remove(tmp);
    }
    free(tmp);
    free(b.data);
    return rc;
}

int slex_kmeans_state_load(slex_kmeans_state *state, const char *path, slex_error *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return slex_fail(err, "%s: cannot open: %s", path, strerror(errno));
    byte_buf b = {0};
    unsigned char chunk[65536];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, fp)) > 0) rc = buf_put(&b, chunk, got);
    int read_error = ferror(fp);
    fclose(fp);
    if (rc || read_error) {
        free(b.data);
        return slex_fail(err, "%s: cannot read the k-means checkpoint", path);
    }
    slex_kmeans_state s;
    memset(&s, 0, sizeof s);
    field fields[MAX_FIELDS];
    int nf = state_fields(&s, fields);
    const char *why = NULL;
    if (b.len < 16 || memcmp(b.data, kCheckpointMagic, 8) != 0) why = "not a k-means checkpoint";
    if (!why) {
        byte_buf tail = {b.data, b.len, b.len, b.len - 8};
        uint64_t sum;
        get_u64(&tail, &sum);
        if (sum != slex_fnv1a64(SLEX_FNV1A_BASIS, b.data, b.len - 8)) why = "checksum mismatch (truncated or corrupt)";
    }
    b.pos = 8;
    for (int i = 0; i < nf && !why; i++) {
        field *f = &fields[i];
        uint64_t u = 0;
        if (f->kind == FIELD_F64 ? get_f64(&b, (double *)f->ptr) : get_u64(&b, &u)) {
            why = "truncated header";
            break;
        }
        if (f->kind == FIELD_U64) *(uint64_t *)f->ptr = u;
        else if (f->kind == FIELD_I64 && f->width == 4) *(int32_t *)f->ptr = (int32_t)(int64_t)u;
        else if (f->kind == FIELD_I64) *(int64_t *)f->ptr = (int64_t)u;
    }
    if (!why && (s.k < 1 || s.dim < 1 || s.k != s.opts.k)) why = "invalid sizes";
    size_t nc = why ? 0 : (size_t)s.k * (size_t)s.dim;
    if (!why && b.len - 8 - b.pos != nc * 4 + (size_t)s.k * 8) why = "array sizes do not match the header";
    if (why) {
        free(b.data);
        return slex_fail(err, "%s: %s", path, why);
    }
    s.centers = malloc(nc * sizeof *s.centers);
    s.counts = malloc((size_t)s.k * sizeof *s.counts);
    if (!s.centers || !s.counts) {
        slex_kmeans_state_free(&s);
        free(b.data);
        return slex_fail(err, "%s: out of memory", path);
    }
    for (size_t i = 0; i < nc; i++) {
        const unsigned char *p = b.data + b.pos + 4 * i;
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&s.centers[i], &u, 4);
    }
    b.pos += nc * 4;
    for (int32_t i = 0; i < s.k; i++) {
        uint64_t u = 0;
        get_u64(&b, &u);
        s.counts[i] = (int64_t)u;
    }
    free(b.data);
    slex_kmeans_state_free(state);
    *state = s;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Building blocks */

void slex_kmeans_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
    int64_t nblocks = (n + SLEX_ASSIGN_BLOCK - 1) / SLEX_ASSIGN_BLOCK;
    int64_t b0 = nblocks * rank / size, b1 = nblocks * (rank + 1) / size;
    *lo = b0 * SLEX_ASSIGN_BLOCK < n ? b0 * SLEX_ASSIGN_BLOCK : n;
    *hi = b1 * SLEX_ASSIGN_BLOCK < n ? b1 * SLEX_ASSIGN_BLOCK : n;
}


void slex_kmeans_accumulate(const float *x, int64_t n, int dim, const int32_t *labels,
                            const double *dist, int exponent_x, int exponent_d, int64_t *sums,
                            int64_t *counts, int64_t *dist_sum) {
    const double scale_x = ldexp(1.0, exponent_x), scale_d = ldexp(1.0, exponent_d);
    for (int64_t i = 0; i < n; i++) {
        int64_t *s = sums + (int64_t)labels[i] * dim;
        const float *xi = x + i * dim;
        for (int d = 0; d < dim; d++) s[d] += slex_exactsum_fixed(xi[d], scale_x);
        counts[labels[i]]++;
        if (dist && dist_sum) *dist_sum += slex_exactsum_fixed(dist[i], scale_d);
    }
}

void slex_kmeans_minibatch_update(slex_kmeans_state *state, const int64_t *sums,
                                  const int64_t *counts, int exponent_x) {
    const int dim = state->dim;
    const double unscale = ldexp(1.0, -exponent_x);
    for (int c = 0; c < state->k; c++) {
        if (counts[c] <= 0) continue; /* sklearn: centre kept as it is */
        float *cen = state->centers + (size_t)c * dim;
        const int64_t *s = sums + (size_t)c * dim;
        const double old_count = (double)state->counts[c];
        const double new_count = (double)(state->counts[c] + counts[c]);
        for (int d = 0; d < dim; d++)
            cen[d] = (float)(((double)cen[d] * old_count + (double)s[d] * unscale) / new_count);
        state->counts[c] += counts[c];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Data access helpers */

/* Fetches frames and rejects non-finite values (reported with their global frame index). */
static int fetch_checked(const slex_kmeans_source *src, const int64_t *frames, int64_t n, float *out,
                         slex_error *err) {
    if (n == 0) return 0;
    if (src->fetch(src->ctx, frames, n, out, err)) return slex_fail_wrap(err, "kmeans: fetching frames");
    const int dim = src->dim;
    for (int64_t i = 0; i < n; i++)
        for (int d = 0; d < dim; d++)
            if (!isfinite(out[i * dim + d]))
                return slex_fail(err, "kmeans: frame %lld has a non-finite value (%g) in dimension %d",
                                 (long long)frames[i], (double)out[i * dim + d], d);
    return 0;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)x[i]);
        if (a > m) m = a;
    }
    return m;
}

static double max_of(const double *v, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    return m;
}

/* Vectors held by one rank, made known to all: the owner writes the float bit patterns, the
 * others zeros, and the integer sum over ranks reproduces the bits exactly. */
static void pack_floats(const float *v, int dim, int64_t *out) {
    for (int d = 0; d < dim; d++) {
        uint32_t u;
        memcpy(&u, &v[d], 4);
        out[d] = (int64_t)u;
    }
}
static void unpack_floats(const int64_t *in, int dim, float *v) {
    for (int d = 0; d < dim; d++) {
        uint32_t u = (uint32_t)in[d];
        memcpy(&v[d], &u, 4);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The pieces of fit */

typedef struct sample_slice {
    int64_t n_global;  /* rows of the whole sample */
    int64_t lo, hi;    /* this rank's rows */
    int64_t *frames;   /* (n_global) global frame index of every sample row */
    float *x;          /* (hi - lo, D) this rank's rows */
} sample_slice;

static void sample_free(sample_slice *s) {
    free(s->frames);
    free(s->x);
    memset(s, 0, sizeof *s);
}

/* n frames drawn with replacement (every rank draws the same), or all frames in order when
 * draw == 0. */
static void draw_frames(slex_kmeans_state *st, int64_t n, int draw, int64_t *frames) {
    for (int64_t i = 0; i < n; i++) frames[i] = draw ? (int64_t)slex_rng_below(&st->rng, (uint64_t)st->n_frames) : i;
}

/* Draws a sample as draw_frames does, then fetches this rank's slice. */
static int sample_make(sample_slice *s, slex_kmeans_state *st, const slex_kmeans_source *src,
                       const slex_exact_comm *comm, int64_t n, int draw, slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    memset(s, 0, sizeof *s);
    s->n_global = n;
    s->frames = malloc((size_t)n * sizeof *s->frames);
    slex_kmeans_slice(n, rank, size, &s->lo, &s->hi);
    s->x = malloc(((size_t)(s->hi - s->lo) * (size_t)src->dim + 1) * sizeof *s->x);
    if (!s->frames || !s->x) {
        sample_free(s);
        return slex_fail(err, "kmeans: out of memory for a sample of %lld frames", (long long)n);
    }
    draw_frames(st, n, draw, s->frames);
    if (fetch_checked(src, s->frames + s->lo, s->hi - s->lo, s->x, err)) {
        sample_free(s);
        return -1;
    }
    return 0;
}

/* Squared distances (double, >= 0) of the rows of x (n, D; at a block boundary) with squared
 * norms xx to the m vectors cand (m, D), as ||x||^2 + ||c||^2 - 2 x.c with the product from
 * sgemm: out (m, n). */
static void candidate_sq_dists(const float *x, const double *xx, int64_t n, int dim, const float *cand,
                               int m, double *out, float *work) {
    float *xblock = work;
    float *g = xblock + (size_t)SLEX_ASSIGN_BLOCK * dim;
    double cc[64]; /* m <= 2 + ln(K) candidates */
    for (int t = 0; t < m; t++) cc[t] = slex_assign_sq_norm(cand + (size_t)t * dim, dim);
    for (int64_t b0 = 0; b0 < n; b0 += SLEX_ASSIGN_BLOCK) {
        int64_t rows = n - b0 < SLEX_ASSIGN_BLOCK ? n - b0 : SLEX_ASSIGN_BLOCK;
        slex_assign_block_products(x + b0 * dim, rows, dim, cand, m, xblock, g);
        for (int64_t r = 0; r < rows; r++)
            for (int t = 0; t < m; t++) {
                double d = xx[b0 + r] + cc[t] - 2.0 * (double)g[r * m + t];
                out[(int64_t)t * n + b0 + r] = d > 0 ? d : 0;
            }
    }
}

/* Greedy k-means++ (sklearn _kmeans_plusplus) on a sample spread over ranks; centers (K, D).
 * Candidates are drawn with probability proportional to the potential in exact integers:
 * r uniform in [0, total), the candidate is the first row whose running sum exceeds r. */
static int kmeans_plusplus(slex_kmeans_state *st, const sample_slice *s, const slex_exact_comm *comm,
                           float *centers, float *work, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const int trials = 2 + (int)log((double)k);
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    const int64_t nloc = s->hi - s->lo;
    double *xx = malloc(((size_t)nloc + 1) * sizeof *xx);
    double *closest = malloc(((size_t)nloc + 1) * sizeof *closest);
    double *cand_d = malloc(((size_t)nloc * (size_t)trials + 1) * sizeof *cand_d);
    int64_t *closest_q = malloc(((size_t)nloc + 1) * sizeof *closest_q); /* closest in fixed point */
    /* exchange buffer: trials candidate potentials | trials x D candidate bits | per-rank totals */
    int64_t *exch = malloc(((size_t)trials * (size_t)(dim + 1) + (size_t)size) * sizeof *exch);
    float *cand = malloc((size_t)trials * (size_t)dim * sizeof *cand);
    int rc = 0;
    if (!xx || !closest || !cand_d || !closest_q || !exch || !cand) {
        rc = slex_fail(err, "kmeans: out of memory in k-means++");
        goto done;
    }
    for (int64_t i = 0; i < nloc; i++) xx[i] = slex_assign_sq_norm(s->x + i * dim, dim);

    /* First centre: a uniformly drawn sample row. */
    {
        int64_t p = (int64_t)slex_rng_below(&st->rng, (uint64_t)s->n_global);
        memset(exch, 0, (size_t)dim * sizeof *exch);
        if (p >= s->lo && p < s->hi) pack_floats(s->x + (p - s->lo) * dim, dim, exch);
        if (slex_exact_comm_sum(comm, exch, dim, err)) { rc = -1; goto done; }
        unpack_floats(exch, dim, centers);
        candidate_sq_dists(s->x, xx, nloc, dim, centers, 1, closest, work);
    }
    for (int c = 1; c < k; c++) {
        double mx = max_of(closest, nloc);
        if (slex_exact_comm_max(comm, &mx, 1, err)) { rc = -1; goto done; }
        const int e = slex_exactsum_exponent(mx, s->n_global);
        const double scale = ldexp(1.0, e);
        /* Per-rank totals of the potential, exchanged so every rank knows where each lies. */
        int64_t *rank_total = exch + (size_t)trials * (size_t)(dim + 1);
        memset(rank_total, 0, (size_t)size * sizeof *rank_total);
        /* Converted once: the draws below scan these again for every candidate. */
        for (int64_t i = 0; i < nloc; i++) {
            closest_q[i] = slex_exactsum_fixed(closest[i], scale);
            rank_total[rank] += closest_q[i];
        }
        if (slex_exact_comm_sum(comm, rank_total, size, err)) { rc = -1; goto done; }
        int64_t total = 0, before = 0;
        for (int r = 0; r < size; r++) {
            if (r < rank) before += rank_total[r];
            total += rank_total[r];
        }
        /* Draw the candidates; the rank holding each writes its row and vector. */
        memset(exch, 0, (size_t)trials * (size_t)(dim + 1) * sizeof *exch);
        for (int t = 0; t < trials; t++) {
            int64_t r = total > 0 ? (int64_t)slex_rng_below(&st->rng, (uint64_t)total) : 0;
            int64_t found = -1;
            if (total == 0) {
                if (s->lo == 0 && s->hi > 0) found = 0; /* all potentials zero: row 0, as sklearn */
            } else if (r >= before && r < before + rank_total[rank]) {
                int64_t run = before;
                for (int64_t i = 0; i < nloc; i++) {
                    run += closest_q[i];
                    if (run > r) {
                        found = i;
                        break;
                    }
                }
            }
            if (found >= 0) {
                pack_floats(s->x + found * dim, dim, exch + trials + (size_t)t * dim);
            }
        }
        if (slex_exact_comm_sum(comm, exch, (int64_t)trials * (dim + 1), err)) { rc = -1; goto done; }
        unpack_floats(exch + trials, trials * dim, cand);
        /* Potential after adding each candidate (exact: same exponent, values only shrink). */
        candidate_sq_dists(s->x, xx, nloc, dim, cand, trials, cand_d, work);
        int64_t *pot = exch;
        memset(pot, 0, (size_t)trials * sizeof *pot);
        for (int t = 0; t < trials; t++) {
            double *dt = cand_d + (int64_t)t * nloc;
            for (int64_t i = 0; i < nloc; i++) {
                if (closest[i] < dt[i]) dt[i] = closest[i];
                pot[t] += slex_exactsum_fixed(dt[i], scale);
            }
        }
        if (slex_exact_comm_sum(comm, pot, trials, err)) { rc = -1; goto done; }
        int best = 0;
        for (int t = 1; t < trials; t++)
            if (pot[t] < pot[best]) best = t;
        memcpy(closest, cand_d + (int64_t)best * nloc, (size_t)nloc * sizeof *closest);
        memcpy(centers + (size_t)c * dim, cand + (size_t)best * dim, (size_t)dim * sizeof *centers);
    }
done:
    free(xx);
    free(closest);
    free(cand_d);
    free(closest_q);
    free(exch);
    free(cand);
    return rc;
}

/* Inertia of the sample slice to centers, exact over ranks. */
static int sample_inertia(const slex_kmeans_state *st, const sample_slice *s, const float *centers,
                          const slex_exact_comm *comm, float *work, int32_t *labels, double *dist,
                          double *inertia, slex_error *err) {
    const int64_t nloc = s->hi - s->lo;
    slex_assign_nearest(centers, st->k, st->dim, s->x, nloc, labels, dist, work);
    return slex_exactsum_f64(dist, nloc, 1, s->n_global, comm, inertia, err);
}

/* tol * mean per-dimension variance of the sample (sklearn _tolerance), exact over ranks. */
static int scaled_tolerance(slex_kmeans_state *st, const sample_slice *s, const slex_exact_comm *comm,
                            slex_error *err) {
    const int dim = st->dim;
    const int64_t nloc = s->hi - s->lo;
    int64_t *q = calloc((size_t)dim * 2, sizeof *q);
    if (!q) return slex_fail(err, "kmeans: out of memory");
    double m[2] = {max_abs(s->x, nloc * dim), 0};
    m[1] = m[0] * m[0];
    if (slex_exact_comm_max(comm, m, 2, err)) {
        free(q);
        return -1;
    }
    const int e1 = slex_exactsum_exponent(m[0], s->n_global);
    const int e2 = slex_exactsum_exponent(m[1], s->n_global);
    const double s1 = ldexp(1.0, e1), s2 = ldexp(1.0, e2);
    for (int64_t i = 0; i < nloc; i++)
        for (int d = 0; d < dim; d++) {
            double v = s->x[i * dim + d];
            q[d] += slex_exactsum_fixed(v, s1);
            q[dim + d] += slex_exactsum_fixed(v * v, s2);
        }
    if (slex_exact_comm_sum(comm, q, 2 * dim, err)) {
        free(q);
        return -1;
    }
    double var_sum = 0;
    for (int d = 0; d < dim; d++) {
        double mean = ldexp((double)q[d], -e1) / (double)s->n_global;
        double mean_sq = ldexp((double)q[dim + d], -e2) / (double)s->n_global;
        var_sum += mean_sq - mean * mean;
    }
    st->tol_scaled = st->opts.tol * var_sum / dim;
    free(q);
    return 0;
}

/* sklearn's init="random": K distinct rows of the init sample, chosen uniformly (a partial
 * Fisher-Yates shuffle of the sample positions).  Every rank fetches the K frames itself. */
static int random_init(slex_kmeans_state *st, const slex_kmeans_source *src, int draw, float *centers,
                       slex_error *err) {
    const int64_t n = st->init_size;
    int64_t *frames = malloc((size_t)n * sizeof *frames);
    if (!frames) return slex_fail(err, "kmeans: out of memory for a sample of %lld frames", (long long)n);
    draw_frames(st, n, draw, frames);
    for (int c = 0; c < st->k; c++) {
        int64_t j = c + (int64_t)slex_rng_below(&st->rng, (uint64_t)(n - c));
        int64_t t = frames[c];
        frames[c] = frames[j];
        frames[j] = t;
    }
    int rc = fetch_checked(src, frames, st->k, centers, err);
    free(frames);
    return rc;
}

static int run_init(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                    slex_error *err) {
    const int k = st->k, dim = st->dim;
    sample_slice valid = {0}, init = {0};
    size_t nc = (size_t)k * (size_t)dim;
    float *work = malloc(slex_assign_work_floats(k > 64 ? k : 64, dim) * sizeof *work);
    float *trial = malloc(nc * sizeof *trial);
    int32_t *labels = malloc(((size_t)st->init_size + 1) * sizeof *labels);
    double *dist = malloc(((size_t)st->init_size + 1) * sizeof *dist);
    int rc = 0;
    if (!work || !trial || !labels || !dist) {
        rc = slex_fail(err, "kmeans: out of memory for the initialisation");
        goto done;
    }
    if (sample_make(&valid, st, src, comm, st->init_size, 1, err)) { rc = -1; goto done; }
    double best = 0;
    for (int run = 0; run < st->opts.n_init; run++) {
        int draw = st->init_size < st->n_frames;
        if (st->opts.init == SLEX_KMEANS_INIT_RANDOM) {
            if (random_init(st, src, draw, trial, err)) { rc = -1; goto done; }
        } else {
            if (sample_make(&init, st, src, comm, st->init_size, draw, err)) { rc = -1; goto done; }
            if (kmeans_plusplus(st, &init, comm, trial, work, err)) { rc = -1; goto done; }
            sample_free(&init);
        }
        double inertia;
        if (sample_inertia(st, &valid, trial, comm, work, labels, dist, &inertia, err)) { rc = -1; goto done; }
        if (run == 0 || inertia < best) {
            best = inertia;
            memcpy(st->centers, trial, nc * sizeof *trial);
        }
    }
    if (st->opts.tol > 0 && scaled_tolerance(st, &valid, comm, err)) { rc = -1; goto done; }
    st->init_inertia = best;
    memset(st->counts, 0, (size_t)k * sizeof *st->counts);
    st->phase = SLEX_KMEANS_PHASE_MINIBATCH;
    st->step = 0;
done:
    sample_free(&valid);
    sample_free(&init);
    free(work);
    free(trial);
    free(labels);
    free(dist);
    return rc;
}

typedef struct minibatch_work {
    int64_t *frames; /* (B) */
    float *x;        /* (slice, D) */
    int32_t *labels;
    double *dist;
    float *work;
    int64_t *reduce; /* (K*D + K + 1) sums | counts | inertia */
    float *old;      /* (K, D) for the tol check, or NULL */
} minibatch_work;

static void minibatch_work_free(minibatch_work *w) {
    free(w->frames);
    free(w->x);
    free(w->labels);
    free(w->dist);
    free(w->work);
    free(w->reduce);
    free(w->old);
    memset(w, 0, sizeof *w);
}

static int minibatch_work_alloc(minibatch_work *w, const slex_kmeans_state *st, int64_t slice_rows,
                                slex_error *err) {
    memset(w, 0, sizeof *w);
    size_t nc = (size_t)st->k * (size_t)st->dim;
    w->frames = malloc((size_t)st->batch_size * sizeof *w->frames);
    w->x = malloc(((size_t)slice_rows * (size_t)st->dim + 1) * sizeof *w->x);
    w->labels = malloc(((size_t)slice_rows + 1) * sizeof *w->labels);
    w->dist = malloc(((size_t)slice_rows + 1) * sizeof *w->dist);
    w->work = malloc(slex_assign_work_floats(st->k, st->dim) * sizeof *w->work);
    w->reduce = malloc((nc + (size_t)st->k + 1) * sizeof *w->reduce);
    if (st->opts.tol > 0) w->old = malloc(nc * sizeof *w->old);
    if (!w->frames || !w->x || !w->labels || !w->dist || !w->work || !w->reduce ||
        (st->opts.tol > 0 && !w->old)) {
        minibatch_work_free(w);
        return slex_fail(err, "kmeans: out of memory for a mini-batch of %d frames", st->batch_size);
    }
    return 0;
}

/* sklearn: reassign centres whose count is below reassignment_ratio * max count to uniformly
 * chosen distinct batch rows (at most half the batch, the lowest counts first). */
static int random_reassign(slex_kmeans_state *st, minibatch_work *w, int64_t lo, int64_t hi,
                           const slex_exact_comm *comm, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const int64_t B = st->batch_size;
    int64_t max_count = 0;
    for (int c = 0; c < k; c++)
        if (st->counts[c] > max_count) max_count = st->counts[c];
    const double limit = st->opts.reassignment_ratio * (double)max_count;
    int *chosen = malloc((size_t)k * sizeof *chosen);
    int *order = malloc((size_t)k * sizeof *order);
    int64_t *rows = malloc((size_t)B * sizeof *rows);
    int64_t *exch = NULL;
    int rc = 0;
    if (!chosen || !order || !rows) {
        rc = slex_fail(err, "kmeans: out of memory in reassignment");
        goto done;
    }
    int n_low = 0;
    for (int c = 0; c < k; c++) {
        chosen[c] = (double)st->counts[c] < limit;
        n_low += chosen[c];
    }
    if (n_low == 0) goto done;
    const int64_t keep = B / 2; /* int(0.5 * batch_size) */
    if (n_low > 0.5 * (double)B) {
        /* Only the `keep` lowest counts (ties: lower index first) may be reassigned. */
        for (int c = 0; c < k; c++) order[c] = c;
        for (int i = 1; i < k; i++) { /* insertion sort by (count, index): k is small */
            int v = order[i], j = i;
            while (j > 0 && st->counts[order[j - 1]] > st->counts[v]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = v;
        }
        for (int i = (int)keep; i < k; i++) chosen[order[i]] = 0;
        n_low = 0;
        for (int c = 0; c < k; c++) n_low += chosen[c];
    }
    if (n_low == 0) goto done;
    /* n_low distinct batch rows: partial Fisher-Yates over 0..B-1. */
    for (int64_t i = 0; i < B; i++) rows[i] = i;
    for (int i = 0; i < n_low; i++) {
        int64_t j = i + (int64_t)slex_rng_below(&st->rng, (uint64_t)(B - i));
        int64_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    exch = calloc((size_t)n_low * (size_t)dim, sizeof *exch);
    if (!exch) {
        rc = slex_fail(err, "kmeans: out of memory in reassignment");
        goto done;
    }
    for (int i = 0; i < n_low; i++)
        if (rows[i] >= lo && rows[i] < hi) pack_floats(w->x + (rows[i] - lo) * dim, dim, exch + (size_t)i * dim);
    if (slex_exact_comm_sum(comm, exch, (int64_t)n_low * dim, err)) { rc = -1; goto done; }
    int64_t min_kept = -1;
    for (int c = 0; c < k; c++)
        if (!chosen[c] && (min_kept < 0 || st->counts[c] < min_kept)) min_kept = st->counts[c];
    for (int c = 0, i = 0; c < k; c++) {
        if (!chosen[c]) continue;
        unpack_floats(exch + (size_t)i * dim, dim, st->centers + (size_t)c * dim);
        st->counts[c] = min_kept;
        i++;
    }
done:
    free(chosen);
    free(order);
    free(rows);
    free(exch);
    return rc;
}

/* sklearn MiniBatchKMeans._mini_batch_convergence: returns 1 to stop. */
static int minibatch_converged(slex_kmeans_state *st, double batch_inertia, double centers_sq_diff) {
    batch_inertia /= st->batch_size;
    st->last_inertia = batch_inertia;
    if (st->step == 0) return 0; /* the first step's inertia comes from the initialisation */
    const int first = !st->has_ewa; /* sklearn: _ewa_inertia (and _ewa_inertia_min) still None */
    if (first) {
        st->ewa_inertia = batch_inertia;
        st->has_ewa = 1;
    } else {
        double alpha = st->batch_size * 2.0 / (double)(st->n_frames + 1);
        if (alpha > 1) alpha = 1;
        st->ewa_inertia = st->ewa_inertia * (1 - alpha) + batch_inertia * alpha;
    }
    if (st->tol_scaled > 0.0 && centers_sq_diff <= st->tol_scaled) {
        st->stop_reason = SLEX_KMEANS_STOP_TOL;
        return 1;
    }
    if (first || st->ewa_inertia < st->ewa_inertia_min) {
        st->no_improvement = 0;
        st->ewa_inertia_min = st->ewa_inertia;
    } else {
        st->no_improvement++;
    }
    if (st->opts.max_no_improvement > 0 && st->no_improvement >= st->opts.max_no_improvement) {
        st->stop_reason = SLEX_KMEANS_STOP_NO_IMPROVEMENT;
        return 1;
    }
    return 0;
}

static int minibatch_step(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                          minibatch_work *w, int *stop, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const int64_t B = st->batch_size;
    const size_t nc = (size_t)k * (size_t)dim;
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    int64_t lo, hi;
    slex_kmeans_slice(B, rank, size, &lo, &hi);
    for (int64_t i = 0; i < B; i++) w->frames[i] = (int64_t)slex_rng_below(&st->rng, (uint64_t)st->n_frames);
    /* sklearn _random_reassign: due when a centre is empty or every 10 K frames. */
    st->since_reassign += B;
    int reassign_due = 0;
    for (int c = 0; c < k && !reassign_due; c++) reassign_due = st->counts[c] == 0;
    if (reassign_due || st->since_reassign >= 10 * (int64_t)k) {
        st->since_reassign = 0;
        reassign_due = 1;
    }
    const int64_t nloc = hi - lo;
    if (fetch_checked(src, w->frames + lo, nloc, w->x, err)) return -1;
    slex_assign_nearest(st->centers, k, dim, w->x, nloc, w->labels, w->dist, w->work);
    double mx[2] = {max_abs(w->x, nloc * dim), max_of(w->dist, nloc)};
    if (slex_exact_comm_max(comm, mx, 2, err)) return -1;
    const int ex = slex_exactsum_exponent(mx[0], B), ed = slex_exactsum_exponent(mx[1], B);
    int64_t *sums = w->reduce, *counts = w->reduce + nc, *inertia_q = w->reduce + nc + k;
    memset(w->reduce, 0, (nc + (size_t)k + 1) * sizeof *w->reduce);
    slex_kmeans_accumulate(w->x, nloc, dim, w->labels, w->dist, ex, ed, sums, counts, inertia_q);
    if (slex_exact_comm_sum(comm, w->reduce, (int64_t)(nc + (size_t)k + 1), err)) return -1;
    const double batch_inertia = ldexp((double)*inertia_q, -ed);
    if (w->old) memcpy(w->old, st->centers, nc * sizeof *w->old);
    slex_kmeans_minibatch_update(st, sums, counts, ex);
    if (reassign_due && st->opts.reassignment_ratio > 0 && random_reassign(st, w, lo, hi, comm, err)) return -1;
    double diff = 0;
    if (w->old)
        for (size_t i = 0; i < nc; i++) {
            double t = (double)st->centers[i] - (double)w->old[i];
            diff += t * t;
        }
    *stop = minibatch_converged(st, batch_inertia, diff);
    st->step++;
    return 0;
}

/* The buffers of a pass over all frames (one rank's slice of a chunk); kept over the passes
 * of the Lloyd phase, as fresh pages for ~100 MB per pass cost more than the pass's arithmetic. */
typedef struct pass_buffers {
    int64_t *frames;
    float *x;
    int32_t *labels;
    double *dist;
    float *work;
    int64_t *reduce;
    int checked; /* a whole pass went through these buffers: every frame is known finite */
} pass_buffers;

static void pass_buffers_free(pass_buffers *b) {
    free(b->frames);
    free(b->x);
    free(b->labels);
    free(b->dist);
    free(b->work);
    free(b->reduce);
    memset(b, 0, sizeof *b);
}

static int pass_buffers_alloc(pass_buffers *b, int k, int dim, int64_t chunk, const slex_exact_comm *comm,
                              slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    int64_t max_slice = 0;
    for (int r = 0; r < size; r++) {
        int64_t lo, hi;
        slex_kmeans_slice(chunk, r, size, &lo, &hi);
        if (hi - lo > max_slice) max_slice = hi - lo;
    }
    b->frames = malloc((size_t)max_slice * sizeof *b->frames + 1);
    b->x = malloc(((size_t)max_slice * (size_t)dim + 1) * sizeof *b->x);
    b->labels = malloc(((size_t)max_slice + 1) * sizeof *b->labels);
    b->dist = malloc(((size_t)max_slice + 1) * sizeof *b->dist);
    b->work = malloc(slex_assign_work_floats(k, dim) * sizeof *b->work);
    b->reduce = malloc(((size_t)k * (size_t)dim + (size_t)k + 1) * sizeof *b->reduce);
    if (!b->frames || !b->x || !b->labels || !b->dist || !b->work || !b->reduce) {
        pass_buffers_free(b);
        return slex_fail(err, "kmeans: out of memory for a pass in chunks of %lld frames", (long long)chunk);
    }
    return 0;
}

/* One pass over all frames in chunks of `chunk` (global order), each reduced exactly, the chunk
 * results accumulated in double in chunk order.  acc (K*D) / acc_counts (K) may be NULL.
 * buffers from pass_buffers_alloc with the same k, dim, chunk and comm. */
static int full_pass(const float *centers, int k, int dim, const slex_kmeans_source *src,
                     const slex_exact_comm *comm, int64_t chunk, slex_lloyd *bounds, pass_buffers *buf,
                     double *acc, int64_t *acc_counts, double *inertia, slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    const size_t nc = (size_t)k * (size_t)dim;
    const size_t nred = (acc ? nc + (size_t)k : 0) + 1;
    int64_t *frames = buf->frames, *reduce = buf->reduce;
    float *x = buf->x, *work = buf->work;
    int32_t *labels = buf->labels;
    double *dist = buf->dist;
    int rc = 0;
    *inertia = 0;
    int64_t local_first = 0; /* this rank's frames numbered in pass order, for the bounds */
    if (bounds) slex_lloyd_begin(bounds, centers);
    for (int64_t c0 = 0; c0 < src->n_frames; c0 += chunk) {
        const int64_t n = src->n_frames - c0 < chunk ? src->n_frames - c0 : chunk;
        int64_t lo, hi;
        slex_kmeans_slice(n, rank, size, &lo, &hi);
        const int64_t nloc = hi - lo;
        for (int64_t i = 0; i < nloc; i++) frames[i] = c0 + lo + i;
        /* Frames fetched by an earlier pass over these buffers were checked for NaN/Inf then. */
        if (buf->checked ? nloc > 0 && src->fetch(src->ctx, frames, nloc, x, err)
                         : fetch_checked(src, frames, nloc, x, err)) {
            rc = -1;
            goto done;
        }
        if (bounds) {
            slex_lloyd_assign(bounds, local_first, x, nloc, labels, dist);
            local_first += nloc;
        } else {
            slex_assign_nearest(centers, k, dim, x, nloc, labels, dist, work);
        }
        double mx[2] = {max_abs(x, nloc * dim), max_of(dist, nloc)};
        if (slex_exact_comm_max(comm, mx, 2, err)) { rc = -1; goto done; }
        const int ex = slex_exactsum_exponent(mx[0], n), ed = slex_exactsum_exponent(mx[1], n);
        memset(reduce, 0, nred * sizeof *reduce);
        int64_t *inertia_q = reduce + nred - 1;
        if (acc) {
            slex_kmeans_accumulate(x, nloc, dim, labels, dist, ex, ed, reduce, reduce + nc, inertia_q);
        } else {
            const double scale = ldexp(1.0, ed);
            for (int64_t i = 0; i < nloc; i++) *inertia_q += slex_exactsum_fixed(dist[i], scale);
        }
        if (slex_exact_comm_sum(comm, reduce, (int64_t)nred, err)) { rc = -1; goto done; }
        *inertia += ldexp((double)*inertia_q, -ed);
        if (acc) {
            const double unscale = ldexp(1.0, -ex);
            for (size_t i = 0; i < nc; i++) acc[i] += (double)reduce[i] * unscale;
            for (int c = 0; c < k; c++) acc_counts[c] += reduce[nc + (size_t)c];
        }
    }
    buf->checked = 1;
done:
    return rc;
}

int slex_kmeans_inertia(const float *centers, int k, int dim, const slex_kmeans_source *src,
                        const slex_exact_comm *comm, int chunk, double *inertia, slex_error *err) {
    if (src->dim != dim) return slex_fail(err, "kmeans: centres have %d dimensions, data %d", dim, src->dim);
    if (chunk < 1) return slex_fail(err, "kmeans: chunk must be >= 1");
    pass_buffers buf;
    if (pass_buffers_alloc(&buf, k, dim, chunk, comm, err)) return -1;
    int rc = full_pass(centers, k, dim, src, comm, chunk, NULL, &buf, NULL, NULL, inertia, err);
    pass_buffers_free(&buf);
    return rc;
}

static int lloyd_pass(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                      slex_lloyd *bounds, pass_buffers *buf, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const size_t nc = (size_t)k * (size_t)dim;
    double *acc = calloc(nc, sizeof *acc);
    int64_t *counts = calloc((size_t)k, sizeof *counts);
    int rc = 0;
    if (!acc || !counts) {
        rc = slex_fail(err, "kmeans: out of memory for a Lloyd pass");
    } else {
        double inertia;
        rc = full_pass(st->centers, k, dim, src, comm, st->opts.lloyd_chunk, bounds, buf, acc, counts, &inertia, err);
        if (!rc) {
            for (int c = 0; c < k; c++) {
                if (counts[c] == 0) continue; /* no points: the centre stays */
                for (int d = 0; d < dim; d++)
                    st->centers[(size_t)c * dim + d] = (float)(acc[(size_t)c * dim + d] / (double)counts[c]);
            }
            st->last_inertia = inertia / (double)st->n_frames;
            st->lloyd_pass++;
        }
    }
    free(acc);
    free(counts);
    return rc;
}

/* Bounds for this rank's frames of a Lloyd pass (the slices of every chunk), grouped on the
 * current centres. */
static slex_lloyd *open_bounds(const slex_kmeans_state *st, const slex_exact_comm *comm, slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    const int64_t chunk = st->opts.lloyd_chunk;
    int64_t n_local = 0;
    for (int64_t c0 = 0; c0 < st->n_frames; c0 += chunk) {
        int64_t lo, hi;
        slex_kmeans_slice(st->n_frames - c0 < chunk ? st->n_frames - c0 : chunk, rank, size, &lo, &hi);
        n_local += hi - lo;
    }
    return slex_lloyd_open(st->centers, st->k, st->dim, n_local, (size_t)st->opts.bounds_mb << 20, err);
}

static int call_checkpoint(slex_kmeans_checkpoint_fn cb, void *ctx, const slex_kmeans_state *st,
                           slex_error *err) {
    if (!cb) return 0;
    int rc = cb(ctx, st, err);
    /* A rank that failed only because another rank did has no message of its own: it stays
     * silent (the stage logs non-empty messages), instead of logging an empty "checkpoint:". */
    if (rc < 0) return err && err->msg[0] ? slex_fail_wrap(err, "kmeans: checkpoint") : -1;
    return rc ? 1 : 0;
}

int slex_kmeans_fit(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                    slex_kmeans_checkpoint_fn checkpoint, void *checkpoint_ctx, slex_error *err) {
    if (src->dim != st->dim || src->n_frames != st->n_frames)
        return slex_fail(err, "kmeans: the state is for %lld frames of dimension %d, the data has %lld of %d",
                         (long long)st->n_frames, st->dim, (long long)src->n_frames, src->dim);
    if (comm && comm->size > 1 && (!comm->sum_i64 || !comm->max_f64 || comm->rank < 0 || comm->rank >= comm->size))
        return slex_fail(err, "kmeans: incomplete communicator (rank %d of %d)", comm->rank, comm->size);
    int rc;
    if (st->phase == SLEX_KMEANS_PHASE_INIT) {
        if (run_init(st, src, comm, err)) return -1;
        if ((rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0) return rc;
    }
    if (st->phase == SLEX_KMEANS_PHASE_MINIBATCH) {
        int rank, size;
        slex_exact_comm_rank_size(comm, &rank, &size);
        int64_t lo, hi;
        slex_kmeans_slice(st->batch_size, rank, size, &lo, &hi);
        minibatch_work w;
        if (minibatch_work_alloc(&w, st, hi - lo, err)) return -1;
        int stop = 0;
        while (st->step < st->n_steps && !stop) {
            if (minibatch_step(st, src, comm, &w, &stop, err)) {
                minibatch_work_free(&w);
                return -1;
            }
            if (!stop && st->step < st->n_steps && st->opts.checkpoint_every > 0 &&
                st->step % st->opts.checkpoint_every == 0) {
                if ((rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0) {
                    minibatch_work_free(&w);
                    return rc;
                }
            }
        }
        minibatch_work_free(&w);
        st->phase = SLEX_KMEANS_PHASE_LLOYD;
        if ((rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0) return rc;
    }
    slex_lloyd *bounds = NULL;
    pass_buffers buf = {0};
    rc = 0;
    while (st->phase == SLEX_KMEANS_PHASE_LLOYD) {
        if (st->lloyd_pass >= st->opts.lloyd_passes) {
            st->phase = SLEX_KMEANS_PHASE_DONE;
            break;
        }
        if (!buf.x && pass_buffers_alloc(&buf, st->k, st->dim, st->opts.lloyd_chunk, comm, err)) {
            rc = -1;
            break;
        }
        if (!bounds && st->opts.bounds_mb > 0 &&
            !(bounds = open_bounds(st, comm, err))) {
            rc = -1;
            break;
        }
        if (lloyd_pass(st, src, comm, bounds, &buf, err)) {
            rc = -1;
            break;
        }
        st->last_computed_fraction = 1; /* without bounds every distance is computed */
        if (bounds) {
            slex_lloyd_stats stats;
            slex_lloyd_get_stats(bounds, &stats);
            st->last_computed_fraction = stats.computed_fraction;
        }
        if (st->lloyd_pass < st->opts.lloyd_passes &&
            (rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0)
            break;
    }
    slex_lloyd_close(bounds);
    pass_buffers_free(&buf);
    if (rc) return rc;
    return call_checkpoint(checkpoint, checkpoint_ctx, st, err) < 0 ? -1 : 0;
}
