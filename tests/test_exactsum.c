/* test_exactsum: core/exactsum against references.
 *
 *   test_exactsum            single process: a hand-computed case (dyadic values whose sum is
 *                            exact in double), random vectors with heavy cancellation against a
 *                            compensated long-double sum within the proven bound, NaN refused;
 *                            an exponent per block: a hand-computed case, and blocks 2^60 apart
 *                            summed exactly (the long-double sums) where one exponent fails
 *   mpiexec -n P test_exactsum --mpi
 *                            the same rows split over P ranks, with each rank's values in a
 *                            different range (maxima 4x apart) and one rank without rows, give
 *                            the single-process sums bit for bit, the blocks 2^60 apart exactly;
 *                            a NaN on one rank fails every rank
 *   [mpiexec -n P] test_exactsum --bench LEN ROWS REPS
 *                            times one exponent against one per 256 values (run_bench) */
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
    CHECK(slex_exactsum_f32(v, 5, 2, 0, 5, NULL, out, &err) == 0, "%s", err.msg);
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
    CHECK(slex_exactsum_f64(d, 3, 1, 0, 3, NULL, &total, &err) == 0, "%s", err.msg);
    /* The exact sum of these three doubles is 2^-55 (a double sum in this order gives 2^-54). */
    CHECK(total == 0x1p-55, "0.1 + 0.2 - 0.3 = %a", total);
}

static void test_against_reference(void) {
    float *v = malloc(sizeof(float) * ROWS * LEN);
    double out[LEN];
    make_rows(v);
    slex_error err = {{0}};
    CHECK(slex_exactsum_f32(v, ROWS, LEN, 0, ROWS, NULL, out, &err) == 0, "%s", err.msg);
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
    CHECK(slex_exactsum_f32(v, ROWS, LEN, 0, ROWS, NULL, out, &err) == -1 && strstr(err.msg, "not finite"),
          "NaN accepted: %s", err.msg);
    CHECK(slex_exactsum_f32(v, 2, LEN, 0, 1, NULL, out, &err) == -1, "more rows than total rows accepted");
    free(v);
}

/* 3 rows of 3 columns (dyadic values: every exact sum is a double): column 0 is 3 * 2^59,
 * column 1 is 5 * 2^-61, column 2 is 2.5.  Per column (block 1) all three are exact; with
 * columns 0 and 1 in one block (block 2), column 1 is below its resolution of 2^-1 and reads 0,
 * while column 2, a block of its own, stays exact; with one exponent (block 0) column 2 is
 * rounded to a multiple of 2 as well. */
static void test_blocks_hand_computed(void) {
    const float v[9] = {0x1p60f, 0x1p-60f, 3.0f, 0x1p60f, 0x1p-60f, -1.0f, -0x1p59f, 0x1p-61f, 0.5f};
    double out[3];
    slex_error err = {{0}};
    CHECK(slex_exactsum_f32(v, 3, 3, 1, 3, NULL, out, &err) == 0, "%s", err.msg);
    CHECK(out[0] == 0x3p59 && out[1] == 0x5p-61 && out[2] == 2.5, "block 1: %a %a %a", out[0], out[1], out[2]);
    CHECK(slex_exactsum_f32(v, 3, 3, 2, 3, NULL, out, &err) == 0, "%s", err.msg);
    CHECK(out[0] == 0x3p59 && out[1] == 0 && out[2] == 2.5, "block 2: %a %a %a", out[0], out[1], out[2]);
    CHECK(slex_exactsum_f32(v, 3, 3, 0, 3, NULL, out, &err) == 0, "%s", err.msg);
    CHECK(out[0] == 0x3p59 && out[1] == 0 && out[2] != 2.5, "one exponent: %a %a %a", out[0], out[1], out[2]);
}

/* Blocks 2^60 apart: BLEN columns in blocks of BLOCK (the passes of 32,768 columns cut blocks
 * 327 and 655), block b of magnitude below 2^E_b, E_b = 30, -30, -90 in turn (block 7 all zero),
 * values m 2^(E_b - 24 - k) with m an integer below 2^24 in magnitude and k in [0, 8]: a column's
 * exact sum spans fewer than 24 + 8 + 6 bits, so it is a double, and the column's plain long
 * double sum is it exactly (64 bits).  k is lowered by row % 4, so ranks see other maxima. */
enum { BROWS = 60, BLEN = 70001, BLOCK = 100 };

static void make_block_rows(float *v) {
    static const int E[3] = {30, -30, -90};
    slex_rng r;
    slex_rng_seed(&r, 23);
    for (int64_t i = 0; i < BROWS; i++)
        for (int64_t j = 0; j < BLEN; j++) {
            const int64_t b = j / BLOCK, m = (int64_t)slex_rng_below(&r, (1u << 25) - 1) - ((1 << 24) - 1);
            const int k = (int)slex_rng_below(&r, 9) - (int)(i % 4);
            v[i * BLEN + j] = b == 7 ? 0.0f : ldexpf((float)m, E[b % 3] - 24 - (k < 0 ? 0 : k));
        }
}

/* Columns of out that differ from the exact (long double) column sums of v. */
static int64_t block_mismatches(const float *v, const double *out) {
    int64_t bad = 0;
    for (int64_t j = 0; j < BLEN; j++) {
        long double s = 0;
        for (int64_t i = 0; i < BROWS; i++) s += v[i * BLEN + j];
        bad += (long double)out[j] != s;
    }
    return bad;
}

static void test_blocks_against_reference(void) {
    float *v = malloc(sizeof(float) * BROWS * BLEN);
    double *out = malloc(sizeof(double) * BLEN);
    make_block_rows(v);
    slex_error err = {{0}};
    CHECK(slex_exactsum_f32(v, BROWS, BLEN, BLOCK, BROWS, NULL, out, &err) == 0, "%s", err.msg);
    int64_t bad = block_mismatches(v, out);
    CHECK(bad == 0, "blocks of %d: %lld of %d columns differ from the exact sums", BLOCK, (long long)bad, BLEN);
    CHECK(slex_exactsum_f32(v, BROWS, BLEN, 0, BROWS, NULL, out, &err) == 0, "%s", err.msg);
    int64_t bad_one = block_mismatches(v, out);
    fprintf(stderr, "blocks 2^60 apart: %lld columns wrong with an exponent per block, %lld with one exponent\n", (long long)bad,
            (long long)bad_one);
    CHECK(bad_one > BLEN / 2, "one exponent gets the small blocks right (%lld wrong): the data needs blocks", (long long)bad_one);
    free(v);
    free(out);
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
    CHECK(slex_exactsum_f32(v, ROWS, LEN, 0, ROWS, NULL, one, &err) == 0, "%s", err.msg);
    CHECK(slex_exactsum_f32(v + (size_t)lo * LEN, hi - lo, LEN, 0, ROWS, &comm, all, &err) == 0, "rank %d: %s", rank,
          err.msg);
    CHECK(memcmp(one, all, sizeof one) == 0, "rank %d: f32 sums over %d ranks differ from one process", rank, size);
    CHECK(slex_exactsum_f64(vd, ROWS, LEN, 0, ROWS, NULL, one_d, &err) == 0, "%s", err.msg);
    CHECK(slex_exactsum_f64(vd + (size_t)lo * LEN, hi - lo, LEN, 0, ROWS, &comm, all_d, &err) == 0, "rank %d: %s",
          rank, err.msg);
    CHECK(memcmp(one_d, all_d, sizeof one_d) == 0, "rank %d: f64 sums over %d ranks differ", rank, size);
    double local_max = 0;
    for (int i = lo * LEN; i < hi * LEN; i++) local_max = fmax(local_max, fabs((double)v[i]));
    fprintf(stderr, "mpi: rank %d of %d, rows %d..%d, local max %g, column 0 %.17g\n", rank, size, lo, hi, local_max,
            all[0]);
    /* Blocks 2^60 apart, rows split the same way: exact, and the same bits as one process. */
    float *vb = malloc(sizeof(float) * BROWS * BLEN);
    double *ob = malloc(sizeof(double) * BLEN), *ab = malloc(sizeof(double) * BLEN);
    make_block_rows(vb);
    int blo = BROWS * rank / size, bhi = BROWS * (rank + 1) / size;
    if (size >= 3 && rank == 1) bhi = blo;
    if (size >= 3 && rank == 2) blo = BROWS * 1 / size;
    CHECK(slex_exactsum_f32(vb, BROWS, BLEN, BLOCK, BROWS, NULL, ob, &err) == 0, "%s", err.msg);
    CHECK(slex_exactsum_f32(vb + (size_t)blo * BLEN, bhi - blo, BLEN, BLOCK, BROWS, &comm, ab, &err) == 0, "rank %d: %s", rank,
          err.msg);
    CHECK(memcmp(ob, ab, sizeof(double) * BLEN) == 0, "rank %d: block sums over %d ranks differ from one process", rank, size);
    CHECK(block_mismatches(vb, ab) == 0, "rank %d: block sums over %d ranks are not exact", rank, size);
    free(vb);
    free(ob);
    free(ab);
    /* A NaN on the last rank only: every rank fails. */
    if (rank == size - 1 && hi > lo) v[(size_t)lo * LEN] = NAN;
    int rc = slex_exactsum_f32(v + (size_t)lo * LEN, hi - lo, LEN, 0, ROWS, &comm, all, &err);
    CHECK(size == 1 || rc == -1, "rank %d: a NaN on rank %d not reported here", rank, size - 1);
    free(v);
    free(vd);
    return check_finish_mpi("test_exactsum --mpi");
}

/* --bench LEN ROWS REPS: the time of one reduction of ROWS gradient rows of LEN floats per rank
 * with one exponent and with an exponent per 256 values, alternating, the median of REPS each. */
static int cmp_double(const void *a, const void *b) { return (*(const double *)a > *(const double *)b) - (*(const double *)a < *(const double *)b); }

static int run_bench(int64_t len, int rows, int reps) {
    MPI_Init(NULL, NULL);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    slex_exact_comm comm = slex_mpi_exact_comm();
    float *v = malloc(sizeof(float) * (size_t)(rows * len));
    double *out = malloc(sizeof(double) * (size_t)len), *t[2] = {malloc(sizeof(double) * (size_t)reps), malloc(sizeof(double) * (size_t)reps)};
    slex_rng r;
    slex_rng_seed(&r, 5 + (uint64_t)rank);
    for (int64_t i = 0; i < rows * len; i++) v[i] = (float)ldexp(slex_rng_uniform(&r) - 0.5, -(int)((i % len) / 4096 % 24));
    slex_error err = {{0}};
    for (int k = 0; k < 2 * reps; k++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        CHECK(slex_exactsum_f32(v, rows, len, k % 2 ? 256 : 0, (int64_t)rows * size, &comm, out, &err) == 0, "%s", err.msg);
        t[k % 2][k / 2] = MPI_Wtime() - t0;
    }
    qsort(t[0], (size_t)reps, sizeof(double), cmp_double);
    qsort(t[1], (size_t)reps, sizeof(double), cmp_double);
    if (rank == 0)
        printf("%d ranks x %d rows of %lld floats: one exponent %.4f s, an exponent per 256 values %.4f s (median of %d): %+.1f%%\n",
               size, rows, (long long)len, t[0][reps / 2], t[1][reps / 2], reps, 100.0 * (t[1][reps / 2] / t[0][reps / 2] - 1.0));
    free(v);
    free(out);
    free(t[0]);
    free(t[1]);
    return check_finish_mpi("test_exactsum --bench");
}

int main(int argc, char **argv) {
    if (argc > 4 && strcmp(argv[1], "--bench") == 0) return run_bench(atoll(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0) return run_mpi();
    test_hand_computed();
    test_against_reference();
    test_blocks_hand_computed();
    test_blocks_against_reference();
    return check_finish("test_exactsum");
}
