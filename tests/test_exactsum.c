/* test_exactsum: core/exactsum against references.
 *
 *   test_exactsum            single process: a hand-computed case (dyadic values whose sum is
 *                            exact in double), random vectors with heavy cancellation against a
 *                            compensated long-double sum within the proven bound, NaN refused
 *   mpiexec -n P test_exactsum --mpi
 *                            the same rows split over P ranks, with each rank's values in a
 *                            different range (maxima 4x apart) and one rank without rows, give
 *                            the single-process sums bit for bit; a NaN on one rank fails every
 *                            rank */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "check_mpi.h"
#include "core/exactsum.h"
#include "core/mpi_util.h"
#include "core/rng.h"

enum { ROWS = 3000, LEN = 37 };

/* Row i scaled by 4^(4 i / ROWS): the quarters of the rows have maxima 4x apart, so ranks holding
 * different quarters see different local maxima. */
static void make_rows(float *v) {
    slex_rng r;
    slex_rng_seed(&r, 11);
    for (int i = 0; i < ROWS; i++) {
        const double scale = ldexp(1.0, 2 * (4 * i / ROWS));
        for (int j = 0; j < LEN; j++) {
            /* cancellation: alternating signs around a large common value, plus small noise */
            const double big = (j % 3 == 0 ? 1e3 : 1.0) * ((i & 1) ? -1 : 1);
            v[i * LEN + j] = (float)(scale * (big + (slex_rng_uniform(&r) - 0.5) * ldexp(1.0, -(j % 20))));
        }
    }
}

/* Compensated (Kahan) sum in long double: within ~1e-19 of the total absolute value, far below
 * the fixed-point bound checked against. */
static long double kahan_column(const float *v, int rows, int len, int j) {
    long double s = 0, c = 0;
    for (int i = 0; i < rows; i++) {
        long double y = (long double)v[i * len + j] - c;
        long double t = s + y;
        c = (t - s) - y;
        s = t;
    }
    return s;
}

static void test_hand_computed(void) {
    /* 5 rows of 2: column 0 = 0.5 + 0.25 - 1.5 + 3 + 0.125 = 2.375, column 1 = -2^-20 * 5. */
    const float v[10] = {0.5f, -0x1p-20f, 0.25f, -0x1p-20f, -1.5f, -0x1p-20f, 3.0f, -0x1p-20f, 0.125f, -0x1p-20f};
    double out[2];
    slex_error err = {{0}};
    CHECK(slex_exactsum_f32(v, 5, 2, 5, NULL, out, &err) == 0, "%s", err.msg);
    CHECK(out[0] == 2.375, "column 0: %.17g", out[0]);
    CHECK(out[1] == -5 * 0x1p-20, "column 1: %.17g", out[1]);
    /* The exponent: 5 terms of |v| < 4 = 2^2 fit 2^62 with S = 62 - 2 - 3. */
    CHECK(slex_exactsum_exponent(3.0, 5) == 57, "exponent %d", slex_exactsum_exponent(3.0, 5));
    CHECK(slex_exactsum_exponent(0.0, 5) == 0, "exponent of zeros");
    /* Rounding half away from zero. */
    CHECK(slex_exactsum_fixed(2.5, 1.0) == 3 && slex_exactsum_fixed(-2.5, 1.0) == -3 &&
              slex_exactsum_fixed(-0.0, 1.0) == 0 && slex_exactsum_fixed(0.49, 1.0) == 0,
          "rounding");
    const double d[3] = {0.1, 0.2, -0.3};
    double total;
    CHECK(slex_exactsum_f64(d, 3, 1, 3, NULL, &total, &err) == 0, "%s", err.msg);
    /* The exact sum of these three doubles is 2^-55 (a double sum in this order gives 2^-54). */
    CHECK(total == 0x1p-55, "0.1 + 0.2 - 0.3 = %a", total);
}

static void test_against_reference(void) {
    float *v = malloc(sizeof(float) * ROWS * LEN);
    double out[LEN];
    make_rows(v);
    slex_error err = {{0}};
    CHECK(slex_exactsum_f32(v, ROWS, LEN, ROWS, NULL, out, &err) == 0, "%s", err.msg);
    double mx = 0;
    for (int i = 0; i < ROWS * LEN; i++) mx = fmax(mx, fabs((double)v[i]));
    const double bound = ROWS * ldexp(1.0, -slex_exactsum_exponent(mx, ROWS) - 1);
    double worst = 0;
    for (int j = 0; j < LEN; j++) {
        double ref = (double)kahan_column(v, ROWS, LEN, j);
        CHECK(fabs(out[j] - ref) <= bound, "column %d: %.17g vs %.17g (bound %g)", j, out[j], ref, bound);
        worst = fmax(worst, fabs(out[j] - ref));
    }
    fprintf(stderr, "reference: %d x %d, worst error %.3g, bound %.3g (max |v| %g)\n", ROWS, LEN, worst, bound, mx);
    /* A plain float sum is far off on these rows: the test data can tell a careless sum. */
    float naive = 0;
    for (int i = 0; i < ROWS; i++) naive += v[i * LEN + 1];
    CHECK(fabs(naive - (double)kahan_column(v, ROWS, LEN, 1)) > bound, "the data does not need exact sums");
    v[5 * LEN + 3] = NAN;
    CHECK(slex_exactsum_f32(v, ROWS, LEN, ROWS, NULL, out, &err) == -1 && strstr(err.msg, "not finite"),
          "NaN accepted: %s", err.msg);
    CHECK(slex_exactsum_f32(v, 2, LEN, 1, NULL, out, &err) == -1, "more rows than total rows accepted");
    free(v);
}

/* ---- real MPI ranks ---- */

static int run_mpi(void) {
    MPI_Init(NULL, NULL);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    slex_exact_comm comm = slex_mpi_exact_comm();
    float *v = malloc(sizeof(float) * ROWS * LEN);
    double *vd = malloc(sizeof(double) * ROWS * LEN);
    make_rows(v);
    for (int i = 0; i < ROWS * LEN; i++) vd[i] = (double)v[i] * (1 + 1e-9 * (i % 13));
    /* Contiguous rows per rank, in order; with 3 or more ranks rank 1 holds none. */
    int lo = ROWS * rank / size, hi = ROWS * (rank + 1) / size;
    if (size >= 3 && rank == 1) hi = lo;
    if (size >= 3 && rank == 2) lo = ROWS * 1 / size;
    double one[LEN], all[LEN], one_d[LEN], all_d[LEN];
    slex_error err = {{0}};
    CHECK(slex_exactsum_f32(v, ROWS, LEN, ROWS, NULL, one, &err) == 0, "%s", err.msg);
    CHECK(slex_exactsum_f32(v + (size_t)lo * LEN, hi - lo, LEN, ROWS, &comm, all, &err) == 0, "rank %d: %s", rank,
          err.msg);
    CHECK(memcmp(one, all, sizeof one) == 0, "rank %d: f32 sums over %d ranks differ from one process", rank, size);
    CHECK(slex_exactsum_f64(vd, ROWS, LEN, ROWS, NULL, one_d, &err) == 0, "%s", err.msg);
    CHECK(slex_exactsum_f64(vd + (size_t)lo * LEN, hi - lo, LEN, ROWS, &comm, all_d, &err) == 0, "rank %d: %s",
          rank, err.msg);
    CHECK(memcmp(one_d, all_d, sizeof one_d) == 0, "rank %d: f64 sums over %d ranks differ", rank, size);
    double local_max = 0;
    for (int i = lo * LEN; i < hi * LEN; i++) local_max = fmax(local_max, fabs((double)v[i]));
    fprintf(stderr, "mpi: rank %d of %d, rows %d..%d, local max %g, column 0 %.17g\n", rank, size, lo, hi, local_max,
            all[0]);
    /* A NaN on the last rank only: every rank fails. */
    if (rank == size - 1 && hi > lo) v[(size_t)lo * LEN] = NAN;
    int rc = slex_exactsum_f32(v + (size_t)lo * LEN, hi - lo, LEN, ROWS, &comm, all, &err);
    CHECK(size == 1 || rc == -1, "rank %d: a NaN on rank %d not reported here", rank, size - 1);
    free(v);
    free(vd);
    return check_finish_mpi("test_exactsum --mpi");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0) return run_mpi();
    test_hand_computed();
    test_against_reference();
    return check_finish("test_exactsum");
}
