#include "cluster/kmeans_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/assign.h"

void slex_kmeans_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
    int64_t nblocks = (n + SLEX_ASSIGN_BLOCK - 1) / SLEX_ASSIGN_BLOCK;
    int64_t b0 = nblocks * rank / size, b1 = nblocks * (rank + 1) / size;
    *lo = b0 * SLEX_ASSIGN_BLOCK < n ? b0 * SLEX_ASSIGN_BLOCK : n;
    *hi = b1 * SLEX_ASSIGN_BLOCK < n ? b1 * SLEX_ASSIGN_BLOCK : n;
}

int slex_kmeans_fetch_checked(const slex_kmeans_source *src, const int64_t *frames, int64_t n, float *out,
                              slex_error *err) {
    if (n == 0) return 0;
    if (src->fetch(src->ctx, frames, n, out, err)) return slex_fail_wrap(err, "kmeans: fetching frames");
    const int dim = src->dim;
    for (int64_t i = 0; i < n; i++)
        for (int d = 0; d < dim; d++)
            if (!isfinite(out[i * dim + d]))
                return slex_fail_as(err, SLEX_ERR_INPUT, "kmeans: frame %lld has a non-finite value (%g) in dimension %d",
                                 (long long)frames[i], (double)out[i * dim + d], d);
    return 0;
}

double slex_kmeans_max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)x[i]);
        if (a > m) m = a;
    }
    return m;
}

double slex_kmeans_max_of(const double *v, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    return m;
}

/* Vectors held by one rank, made known to all: the owner writes the float bit patterns, the
 * others zeros, and the integer sum over ranks reproduces the bits exactly. */
void slex_kmeans_pack_floats(const float *v, int dim, int64_t *out) {
    for (int d = 0; d < dim; d++) {
        uint32_t u;
        memcpy(&u, &v[d], 4);
        out[d] = (int64_t)u;
    }
}
void slex_kmeans_unpack_floats(const int64_t *in, int dim, float *v) {
    for (int d = 0; d < dim; d++) {
        uint32_t u = (uint32_t)in[d];
        memcpy(&v[d], &u, 4);
    }
}

void slex_kmeans_sample_free(slex_kmeans_sample *s) {
    free(s->frames);
    free(s->x);
    memset(s, 0, sizeof *s);
}

/* n frames drawn with replacement (every rank draws the same), or all frames in order when
 * draw == 0. */
void slex_kmeans_draw_frames(slex_kmeans_state *st, int64_t n, int draw, int64_t *frames) {
    for (int64_t i = 0; i < n; i++) frames[i] = draw ? (int64_t)slex_rng_below(&st->rng, (uint64_t)st->n_frames) : i;
}

int slex_kmeans_sample_make(slex_kmeans_sample *s, slex_kmeans_state *st, const slex_kmeans_source *src,
                            const slex_exact_comm *comm, int64_t n, int draw, slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    memset(s, 0, sizeof *s);
    s->n_global = n;
    s->frames = malloc((size_t)n * sizeof *s->frames);
    slex_kmeans_slice(n, rank, size, &s->lo, &s->hi);
    s->x = malloc(((size_t)(s->hi - s->lo) * (size_t)src->dim + 1) * sizeof *s->x);
    if (!s->frames || !s->x) {
        slex_kmeans_sample_free(s);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for a sample of %lld frames", (long long)n);
    }
    slex_kmeans_draw_frames(st, n, draw, s->frames);
    if (slex_kmeans_fetch_checked(src, s->frames + s->lo, s->hi - s->lo, s->x, err)) {
        slex_kmeans_sample_free(s);
        return -1;
    }
    return 0;
}

