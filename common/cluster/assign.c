#include "cluster/assign.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* A full block is passed to sgemm as it is; a partial one is first copied into the zero-padded
 * xblock.  OpenBLAS packs A before computing, so the two paths give the same bits
 * (tests/test_kmeans.c checks it). */
void slex_assign_block_products(const float *x, int64_t rows, int dim, const float *cand, int m, float *xblock,
                                float *g) {
    const float *a = x;
    if (rows < SLEX_ASSIGN_BLOCK) {
        memcpy(xblock, x, (size_t)rows * (size_t)dim * sizeof *xblock);
        memset(xblock + rows * dim, 0, (size_t)(SLEX_ASSIGN_BLOCK - rows) * (size_t)dim * sizeof *xblock);
        a = xblock;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, SLEX_ASSIGN_BLOCK, m, dim, 1.0f, a, dim,
                cand, dim, 0.0f, g, m);
}

size_t slex_assign_work_floats(int k, int dim) {
    return (size_t)SLEX_ASSIGN_BLOCK * (size_t)dim + (size_t)SLEX_ASSIGN_BLOCK * (size_t)k + (size_t)k;
}

/* Sums of D terms in 8 interleaved partial sums (locals, so that they stay in registers),
 * added in a fixed order at the end: the same bits on every machine, and 8 independent
 * additions in flight instead of one chain. */
#define SUM8(TERM)                                                                              \
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;                    \
    int d = 0;                                                                                  \
    for (; d + 8 <= dim; d += 8) {                                                              \
        s0 += TERM(d); s1 += TERM(d + 1); s2 += TERM(d + 2); s3 += TERM(d + 3);                 \
        s4 += TERM(d + 4); s5 += TERM(d + 5); s6 += TERM(d + 6); s7 += TERM(d + 7);             \
    }                                                                                           \
    for (; d < dim; d++) s0 += TERM(d);                                                         \
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))

static inline double sq_diff(const float *a, const float *b, int d) {
    double t = (double)a[d] - (double)b[d];
    return t * t;
}

double slex_assign_sq_dist(const float *a, const float *b, int dim) {
#define TERM_DIST(i) sq_diff(a, b, i)
    SUM8(TERM_DIST);
#undef TERM_DIST
}

double slex_assign_sq_norm(const float *a, int dim) {
#define TERM_NORM(i) ((double)a[i] * (double)a[i])
    SUM8(TERM_NORM);
#undef TERM_NORM
}
#undef SUM8

double slex_assign_score_error(double x_norm, double max_center_norm, int dim) {
    /* u = 2^-24.  The sgemm dot product of D float terms, summed in any order with or without
     * FMA, is off by at most gamma_D |x| |c| (gamma_D = D u / (1 - D u)); rounding ||c||^2 to
     * float and the float subtraction add at most u ||c||^2 and u (||c||^2 + 2 |x| |c|); the
     * double distance at most ~D 2^-53 of R^2.  With R = |x| + max |c| all of it stays below
     * (gamma_D + 4u + 1e-12) R^2, about twice the worst case.  Subnormal products and sums
     * are off by up to 2^-150 each in absolute terms: (D + 4) 2^-149 covers them. */
    const double u = ldexp(1.0, -24);
    const double gamma = dim * u / (1.0 - dim * u);
    const double r = x_norm + max_center_norm;
    return (gamma + 4.0 * u + 1e-12) * r * r + (dim + 4) * 0x1p-149;
}

/* The lowest of m > 0 floats: four independent running minima (no branches to mispredict). */
static float min_of(const float *v, int m) {
    float m0 = v[0], m1 = v[0], m2 = v[0], m3 = v[0];
    int t = 0;
    for (; t + 4 <= m; t += 4) {
        m0 = v[t] < m0 ? v[t] : m0;
        m1 = v[t + 1] < m1 ? v[t + 1] : m1;
        m2 = v[t + 2] < m2 ? v[t + 2] : m2;
        m3 = v[t + 3] < m3 ? v[t + 3] : m3;
    }
    for (; t < m; t++) m0 = v[t] < m0 ? v[t] : m0;
    m0 = m1 < m0 ? m1 : m0;
    m2 = m3 < m2 ? m3 : m2;
    return m2 < m0 ? m2 : m0;
}

int slex_assign_decide(const float *x, const float *centers, int dim, const float *scores, const int32_t *ids,
                       int m, double x_norm, double max_center_norm, int32_t *label, double *sq_dist) {
    /* Every candidate's true s_j - ||x||^2 lies within score_error of its score, so only
     * candidates whose score is within 2 * score_error of the lowest can hold the minimum.  The
     * limit is rounded up to a float: comparing floats keeps a superset of those candidates. */
    const double limit = (double)min_of(scores, m) + 2.0 * slex_assign_score_error(x_norm, max_center_norm, dim);
    float limit_f = (float)limit;
    if ((double)limit_f < limit) limit_f = nextafterf(limit_f, INFINITY);
    int32_t best = -1;
    double best_d = INFINITY;
    int exact = 0;
    for (int t = 0; t < m; t++) {
        if (scores[t] > limit_f && scores[t] < INFINITY) continue; /* overflowed scores are measured */
        const int32_t j = ids ? ids[t] : t;
        double s = slex_assign_sq_dist(x, centers + (size_t)j * dim, dim);
        exact++;
        if (s < best_d || (s == best_d && j < best)) {
            best_d = s;
            best = j;
        }
    }
    *label = best;
    *sq_dist = best_d;
    return exact;
}

double slex_assign_max_norm(const float *centers, int k, int dim) {
    double m = 0;
    for (int c = 0; c < k; c++) {
        double v = slex_assign_sq_norm(centers + (size_t)c * dim, dim);
        if (v > m) m = v;
    }
    return sqrt(m);
}

void slex_assign_nearest(const float *centers, int k, int dim, const float *x, int64_t n,
                         int32_t *labels, double *dist, float *work) {
    float *xblock = work;                                  /* (BLOCK, D) */
    float *g = xblock + (size_t)SLEX_ASSIGN_BLOCK * dim;   /* (BLOCK, K) */
    float *cc = g + (size_t)SLEX_ASSIGN_BLOCK * k;         /* (K) */
    for (int c = 0; c < k; c++) cc[c] = (float)slex_assign_sq_norm(centers + (size_t)c * dim, dim);
    const double c_max = slex_assign_max_norm(centers, k, dim);
    for (int64_t b0 = 0; b0 < n; b0 += SLEX_ASSIGN_BLOCK) {
        int64_t rows = n - b0 < SLEX_ASSIGN_BLOCK ? n - b0 : SLEX_ASSIGN_BLOCK;
        slex_assign_block_products(x + b0 * dim, rows, dim, centers, k, xblock, g);
        for (int64_t r = 0; r < rows; r++) {
            float *score = g + r * k; /* ||c||^2 - 2 x.c, in place */
            for (int c = 0; c < k; c++) score[c] = cc[c] - 2.0f * score[c];
            const float *xr = x + (b0 + r) * dim;
            double d;
            slex_assign_decide(xr, centers, dim, score, NULL, k, sqrt(slex_assign_sq_norm(xr, dim)), c_max,
                               &labels[b0 + r], &d);
            if (dist) dist[b0 + r] = d;
        }
    }
}
