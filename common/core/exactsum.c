#include "core/exactsum.h"

#include <stdlib.h>

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

/* The value of element i of either array (one of them is NULL). */
static inline double element(const float *vf, const double *vd, int64_t i) {
    return vf ? (double)vf[i] : vd[i];
}

static int exact_sums(const float *vf, const double *vd, int64_t rows, int64_t len, int64_t total_rows,
                      const slex_exact_comm *comm, double *out, slex_error *err) {
    if (rows < 0 || len < 0 || total_rows < rows)
        return slex_fail(err, "exact sum: bad sizes (%lld rows of %lld values, %lld rows in all)", (long long)rows,
                         (long long)len, (long long)total_rows);
    /* A NaN counts as an infinite maximum, so every rank sees the failure. */
    double mx = 0;
    const int64_t n = rows * len;
    for (int64_t i = 0; i < n; i++) {
        const double a = fabs(element(vf, vd, i));
        if (a > mx) mx = a;
        else if (a != a) mx = INFINITY;
    }
    if (slex_exact_comm_max(comm, &mx, 1, err)) return -1;
    if (!isfinite(mx)) return slex_fail(err, "exact sum: a value is not finite (NaN or infinite)");
    int64_t *q = calloc((size_t)len + 1, sizeof *q);
    if (!q) return slex_fail(err, "exact sum: out of memory for %lld sums", (long long)len);
    const int e = slex_exactsum_exponent(mx, total_rows);
    const double scale = ldexp(1.0, e);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < len; j++) q[j] += slex_exactsum_fixed(element(vf, vd, i * len + j), scale);
    int rc = slex_exact_comm_sum(comm, q, len, err);
    if (!rc)
        for (int64_t j = 0; j < len; j++) out[j] = ldexp((double)q[j], -e);
    free(q);
    return rc;
}

int slex_exactsum_f32(const float *v, int64_t rows, int64_t len, int64_t total_rows, const slex_exact_comm *comm,
                      double *out, slex_error *err) {
    return exact_sums(v, NULL, rows, len, total_rows, comm, out, err);
}

int slex_exactsum_f64(const double *v, int64_t rows, int64_t len, int64_t total_rows, const slex_exact_comm *comm,
                      double *out, slex_error *err) {
    return exact_sums(NULL, v, rows, len, total_rows, comm, out, err);
}
