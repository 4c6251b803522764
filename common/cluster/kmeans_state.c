#include "cluster/kmeans_state.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/hash.h"

/* Every row without SLEX_OPTF_NOT_SAVED is also an option field of the checkpoint (SLEXKMS2), in this
 * order (state_fields): a row added, removed or moved makes a new checkpoint format (a new magic). */
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
    {SLEX_OPT_INT_FIELD(T, lloyd_chunk), .name = "lloyd-chunk", .flags = SLEX_OPTF_INTERNAL, .def = 65536, .min = 1,
     .max = INT_MAX},
    {SLEX_OPT_U64_FIELD(T, seed), .name = "seed", .def = 0, .param = "seed", .help = "random seed"},
    {SLEX_OPT_INT_FIELD(T, bounds_mb), .name = "bounds-mb", .flags = SLEX_OPTF_NOT_SAVED, .def = 1024, .min = 0,
     .max = INT_MAX,
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
    if (opts->k < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "kmeans: k must be >= 1 (got %d)", opts->k);
    if (dim < 1 || dim > 100000)
        return slex_fail_as(err, SLEX_ERR_INPUT, "kmeans: feature dimension must be 1..100000 (got %d)", dim);
    if (n_frames < opts->k)
        return slex_fail_as(err, SLEX_ERR_INPUT, "kmeans: k=%d is larger than the number of frames (%lld)", opts->k,
                         (long long)n_frames);
    if (opts->max_iter < 0 || opts->batch_size < 1 || opts->init_size < 0 || opts->n_init < 1 ||
        opts->max_no_improvement < 0 || !(opts->tol >= 0) || !(opts->reassignment_ratio >= 0) ||
        opts->lloyd_passes < 0 || opts->lloyd_chunk < 1 || opts->checkpoint_every < 0 || opts->bounds_mb < 0 ||
        (opts->init != SLEX_KMEANS_INIT_KMEANS_PP && opts->init != SLEX_KMEANS_INIT_RANDOM))
        return slex_fail_as(err, SLEX_ERR_INPUT, "kmeans: invalid options (max_iter %d, batch_size %d, init_size %d, "
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
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for %d x %d centres", opts->k, dim);
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
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory copying the state");
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

enum { MAX_FIELDS = 64, COUNTER_FIELDS = 22 };

/* The options (the table's saved rows, in its order), then the algorithm's counters and the RNG
 * (COUNTER_FIELDS); f holds MAX_FIELDS.  The number of fields, or -1. */
static int state_fields(slex_kmeans_state *s, field *f, slex_error *err) {
    int n = 0;
    const slex_option_table *t = &slex_kmeans_option_table;
    if (t->n + COUNTER_FIELDS > MAX_FIELDS)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "kmeans checkpoint: more than %d fields", MAX_FIELDS);
    for (int i = 0; i < t->n; i++) {
        const slex_option *o = &t->rows[i];
        void *p = (char *)&s->opts + o->offset;
        if (o->flags & SLEX_OPTF_NOT_SAVED) continue;
        if (o->type == SLEX_OPT_INT || o->type == SLEX_OPT_CHOICE || o->type == SLEX_OPT_FLAG)
            f[n++] = (field){FIELD_I64, p, (int)sizeof(int)};
        else if (o->type == SLEX_OPT_LONG) f[n++] = (field){FIELD_I64, p, 8};
        else if (o->type == SLEX_OPT_U64) f[n++] = (field){FIELD_U64, p, 8};
        else if (o->type == SLEX_OPT_DOUBLE) f[n++] = (field){FIELD_F64, p, 8};
        else return slex_fail_as(err, SLEX_ERR_INTERNAL, "kmeans checkpoint: --%s has no binary form", o->name);
    }
#define FI(x) f[n++] = (field){FIELD_I64, &(x), (int)sizeof(x)}
#define FD(x) f[n++] = (field){FIELD_F64, &(x), 8}
#define FU(x) f[n++] = (field){FIELD_U64, &(x), 8}
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

int slex_kmeans_state_save(const slex_kmeans_state *state, const char *path, slex_error *err) {
    slex_kmeans_state copy = *state; /* state_fields wants writable pointers; we only read */
    field fields[MAX_FIELDS];
    int nf = state_fields(&copy, fields, err);
    if (nf < 0) return -1;
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
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory building the k-means checkpoint", path);
    }
    slex_atomic out;
    rc = slex_atomic_fopen(&out, path, err);
    if (!rc) {
        fwrite(b.data, 1, b.len, out.f); /* a short write sets the stream's error: commit fails on it */
        rc = slex_atomic_commit(&out, err);
    }
    free(b.data);
    return rc;
}

int slex_kmeans_state_load(slex_kmeans_state *state, const char *path, slex_error *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", path, strerror(errno));
    byte_buf b = {0};
    unsigned char chunk[65536];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, fp)) > 0) rc = buf_put(&b, chunk, got);
    int read_error = ferror(fp);
    fclose(fp);
    if (rc || read_error) {
        free(b.data);
        return slex_fail_as(err, rc ? SLEX_ERR_RESOURCE : SLEX_ERR_IO, "%s: cannot read the k-means checkpoint%s", path,
                            rc ? ": out of memory" : "");
    }
    slex_kmeans_state s;
    memset(&s, 0, sizeof s);
    slex_kmeans_options_default(&s.opts); /* the options not saved keep their defaults */
    field fields[MAX_FIELDS];
    int nf = state_fields(&s, fields, err);
    if (nf < 0) {
        free(b.data);
        return -1;
    }
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
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s", path, why);
    }
    s.centers = malloc(nc * sizeof *s.centers);
    s.counts = malloc((size_t)s.k * sizeof *s.counts);
    if (!s.centers || !s.counts) {
        slex_kmeans_state_free(&s);
        free(b.data);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
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

