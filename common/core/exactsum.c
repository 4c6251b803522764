#include "core/exactsum.h"

#include <stdlib.h>
#include <string.h>

int slex_exact_comm_sum(const slex_exact_comm *comm, int64_t *values, int64_t n, slex_error *err) {
    if (!comm || comm->size <= 1) return 0;
    if (comm->sum_i64(comm->ctx, values, n, err)) return slex_fail_wrap(err, "sum over ranks");
    return 0;
}

int slex_exact_comm_max(const slex_exact_comm *comm, double *values, int64_t n, slex_error *err) {
    if (!comm || comm->size <= 1) return 0;
    if (comm->max_f64(comm->ctx, values, n, err)) return slex_fail_wrap(err, "max over ranks");
    return 0;
}

void slex_exact_comm_rank_size(const slex_exact_comm *comm, int *rank, int *size) {
    *rank = comm && comm->size > 1 ? comm->rank : 0;
    *size = comm && comm->size > 1 ? comm->size : 1;
}

int slex_exactsum_exponent(double max_abs, int64_t n_terms) {
    if (!(max_abs > 0)) return 0;
    int e_max;
    frexp(max_abs, &e_max); /* max_abs < 2^e_max */
    int e_n = 0;
    while (e_n < 62 && ((int64_t)1 << e_n) < n_terms) e_n++; /* n_terms <= 2^e_n */
    /* |round(v * 2^S)| <= 2^(e_max + S) = 2^(62 - e_n); n_terms of them stay <= 2^62. */
    return 62 - e_max - e_n;
}

/* Columns per pass of the integer accumulation: the partial sums (8 bytes each) stay in L2
 * and are reduced over the ranks block by block, so no buffer of the whole length is needed. */
#define SUM_BLOCK 32768

/* max |v| over n floats; INFINITY when one is NaN.  Four running maxima (maxss each), NaN
 * flagged apart (a NaN never wins a comparison). */
static double max_abs_f32(const float *v, int64_t n) {
    float m[4] = {0, 0, 0, 0};
    int nan = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) {
            const float a = fabsf(v[i + k]);
            nan |= a != a;
            m[k] = a > m[k] ? a : m[k];
        }
    for (; i < n; i++) {
        const float a = fabsf(v[i]);
        nan |= a != a;
        m[0] = a > m[0] ? a : m[0];
    }
    if (nan) return INFINITY;
    float a = m[0] > m[1] ? m[0] : m[1], b = m[2] > m[3] ? m[2] : m[3];
    return a > b ? a : b;
}

static double max_abs_f64(const double *v, int64_t n) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) {
        const double a = fabs(v[i]);
        if (a > mx) mx = a;
        else if (a != a) return INFINITY;
    }
    return mx;
}

static int exact_sums(const float *vf, const double *vd, int64_t rows, int64_t len, int64_t block, int64_t total_rows,
                      const slex_exact_comm *comm, double *out, slex_error *err) {
    if (rows < 0 || len < 0 || total_rows < rows || block < 0)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "exact sum: bad sizes (%lld rows of %lld values in blocks of %lld, %lld rows in all)",
                            (long long)rows, (long long)len, (long long)block, (long long)total_rows);
    if (block == 0 || block > len) block = len > 0 ? len : 1;
    const int64_t n_blocks = (len + block - 1) / block;
    /* Each block's max |v| over this rank's rows, then over the ranks (exact: MPI_MAX); a NaN
     * counts as an infinite maximum, so every rank sees the failure. */
    double *mx = calloc((size_t)(n_blocks > 0 ? n_blocks : 1), sizeof *mx);
    int *e = malloc((size_t)(n_blocks > 0 ? n_blocks : 1) * sizeof *e);
    const int64_t nb = len < SUM_BLOCK ? len : SUM_BLOCK;
    int64_t *q = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *q);
    int rc = !mx || !e || !q ? slex_fail_as(err, SLEX_ERR_RESOURCE, "exact sum: out of memory for %lld sums", (long long)len) : 0;
    for (int64_t i = 0; !rc && i < rows; i++)
        for (int64_t b = 0; b < n_blocks; b++) {
            const int64_t j = b * block, w = len - j < block ? len - j : block;
            const double m = vf ? max_abs_f32(vf + i * len + j, w) : max_abs_f64(vd + i * len + j, w);
            mx[b] = m > mx[b] || m != m ? m : mx[b];
        }
    if (!rc) rc = slex_exact_comm_max(comm, mx, n_blocks, err);
    for (int64_t b = 0; !rc && b < n_blocks; b++) {
        if (!isfinite(mx[b])) rc = slex_fail_as(err, SLEX_ERR_INPUT, "exact sum: a value is not finite (NaN or infinite)");
        else e[b] = slex_exactsum_exponent(mx[b], total_rows) < 1023 ? slex_exactsum_exponent(mx[b], total_rows) : 1023;
        /* (2^1023 is the largest scale a double holds: a smaller exponent only keeps fewer bits) */
    }
    for (int64_t j0 = 0; !rc && j0 < len; j0 += nb) {
        const int64_t w = len - j0 < nb ? len - j0 : nb;
        memset(q, 0, (size_t)w * sizeof *q);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = j0; j < j0 + w;) { /* the columns of one block in this pass */
                const int64_t b = j / block, end = (b + 1) * block < j0 + w ? (b + 1) * block : j0 + w;
                const double scale = ldexp(1.0, e[b]);
                int64_t *qb = q + (j - j0);
                if (vf) {
                    const float *v = vf + i * len + j;
                    for (int64_t k = 0; k < end - j; k++) qb[k] += slex_exactsum_fixed((double)v[k], scale);
                } else {
                    const double *v = vd + i * len + j;
                    for (int64_t k = 0; k < end - j; k++) qb[k] += slex_exactsum_fixed(v[k], scale);
                }
                j = end;
            }
        rc = slex_exact_comm_sum(comm, q, w, err);
        for (int64_t j = j0; !rc && j < j0 + w;) {
            const int64_t b = j / block, end = (b + 1) * block < j0 + w ? (b + 1) * block : j0 + w;
            /* q * 2^-e as one multiplication: exact while 2^-e is a normal number (|q| >= 1 keeps
             * the product normal); ldexp beyond. */
            const double unscale = e[b] <= 1022 ? ldexp(1.0, -e[b]) : 0.0;
            for (; j < end; j++) out[j] = unscale != 0.0 ? (double)q[j - j0] * unscale : ldexp((double)q[j - j0], -e[b]);
        }
    }
    free(mx);
    free(e);
    free(q);
    return rc;
}

int slex_exactsum_f32(const float *v, int64_t rows, int64_t len, int64_t block, int64_t total_rows,
                      const slex_exact_comm *comm, double *out, slex_error *err) {
    return exact_sums(v, NULL, rows, len, block, total_rows, comm, out, err);
}

int slex_exactsum_f64(const double *v, int64_t rows, int64_t len, int64_t block, int64_t total_rows,
                      const slex_exact_comm *comm, double *out, slex_error *err) {
    return exact_sums(NULL, v, rows, len, block, total_rows, comm, out, err);
}
