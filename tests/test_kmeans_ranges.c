/* test_kmeans_ranges: a whole k-means fit over P real MPI ranks on data whose ranks' parts differ in
 * range by 1000x must give the single-process result bit for bit.
 *
 *   mpiexec -n P test_kmeans_ranges
 *
 * Most frames lie within ~1 of the origin; the last 8 frames and every 500th frame after the
 * first 4096 are 1000-3000x larger: the first rank's part of every pass over the frames in order
 * (k-means++ on all frames, Lloyd chunks, the inertia) has only small frames, the last rank's has
 * large ones, and about a third of the mini-batch slices hold one.  The exact sums' fixed-point exponent must come from the global maximum: one
 * taken from a rank's own maximum scales that rank's integers differently and changes the sums,
 * which data with the same range on every rank cannot show. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "check_mpi.h"
#include "cluster/kmeans.h"
#include "core/mpi_util.h"
#include "core/hash.h"
#include "core/rng.h"
#include "kmeans_test_util.h"

/* Frames [0, N_SMALL) are all small: the first rank's part of a pass in order, for 2 or 3 ranks. */
enum { N = 6000, D = 12, K = 10, N_LARGE_TAIL = 8, N_SMALL = 4096 };

static void make_data(float *x) {
    slex_rng r;
    slex_rng_seed(&r, 1000);
    float means[6 * D];
    for (int i = 0; i < 6 * D; i++) means[i] = (float)(2 * slex_rng_uniform(&r) - 1);
    for (int64_t i = 0; i < N; i++) {
        int c = (int)slex_rng_below(&r, 6);
        double scale = i >= N - N_LARGE_TAIL ? 3000 : i >= N_SMALL && i % 500 == 499 ? 1000 : 1;
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(scale * (means[c * D + j] + 0.1 * normal(&r)));
    }
}

static double max_abs_rows(const float *x, int64_t lo, int64_t hi) {
    double m = 0;
    for (int64_t i = lo * D; i < hi * D; i++) m = fmax(m, fabs(x[i]));
    return m;
}

typedef struct variant {
    const char *name;
    int init, batch_size, init_size, n_init, max_iter, lloyd_passes, lloyd_chunk;
    double tol, reassignment_ratio;
} variant;

static const variant kVariants[] = {
    /* init_size = 3 x 2000 = N: k-means++ on every frame, in order */
    {"k-means++ on all frames, mini-batch, Lloyd", SLEX_KMEANS_INIT_KMEANS_PP, 2000, 0, 2, 30, 2, 65536, 0, 0},
    {"drawn init sample, tol, reassignment", SLEX_KMEANS_INIT_KMEANS_PP, 700, 1500, 2, 20, 0, 65536, 1e-6, 0.01},
    {"Lloyd mode in chunks", SLEX_KMEANS_INIT_RANDOM, 1000, 0, 1, 0, 5, 1500, 0, 0},
};

static void fit_variant(const variant *v, uint64_t seed, const slex_kmeans_source *src, const slex_exact_comm *comm,
                        int rank, int size) {
    slex_kmeans_options o;
    slex_kmeans_options_default(&o);
    o.k = K;
    o.init = v->init;
    o.batch_size = v->batch_size;
    o.init_size = v->init_size;
    o.n_init = v->n_init;
    o.max_iter = v->max_iter;
    o.lloyd_passes = v->lloyd_passes;
    o.lloyd_chunk = v->lloyd_chunk;
    o.tol = v->tol;
    o.reassignment_ratio = v->reassignment_ratio;
    o.seed = seed;
    slex_error err = {{0}};
    slex_kmeans_state st;
    CHECK(slex_kmeans_state_init(&st, &o, N, D, &err) == 0, "%s", err.msg);
    CHECK(slex_kmeans_fit(&st, src, comm, NULL, NULL, &err) == 0, "%s, rank %d: %s", v->name, rank, err.msg);
    double inertia = NAN;
    CHECK(slex_kmeans_inertia(st.centers, K, D, src, comm, 1500, &inertia, &err) == 0, "%s", err.msg);
    unsigned long long h = slex_fnv1a64(SLEX_FNV1A_BASIS, st.centers, sizeof(float) * K * D) ^
                             slex_fnv1a64(SLEX_FNV1A_BASIS, &inertia, sizeof inertia), lo = h,
                       hi = h;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi, "%s: the ranks disagree on the codebook", v->name);
    if (rank == 0) {
        slex_kmeans_state one;
        double one_inertia = NAN;
        CHECK(slex_kmeans_state_init(&one, &o, N, D, &err) == 0, "%s", err.msg);
        CHECK(slex_kmeans_fit(&one, src, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
        CHECK(slex_kmeans_inertia(one.centers, K, D, src, NULL, 1500, &one_inertia, &err) == 0, "%s", err.msg);
        CHECK(memcmp(one.centers, st.centers, sizeof(float) * K * D) == 0,
              "%s: centres over %d ranks differ from a single process", v->name, size);
        CHECK(memcmp(one.counts, st.counts, sizeof(int64_t) * K) == 0, "%s: counts over %d ranks differ", v->name,
              size);
        CHECK(one.step == st.step && one.init_inertia == st.init_inertia && one.ewa_inertia == st.ewa_inertia,
              "%s: step %lld / init inertia %.17g / EWA %.17g over %d ranks vs %lld / %.17g / %.17g", v->name,
              (long long)st.step, st.init_inertia, st.ewa_inertia, size, (long long)one.step, one.init_inertia,
              one.ewa_inertia);
        CHECK(one_inertia == inertia, "%s: inertia %.17g over %d ranks vs %.17g", v->name, inertia, size, one_inertia);
        fprintf(stderr, "ranges: %s, seed %d, %d ranks: %lld steps, inertia %.9g, same bits as 1 process: %s\n",
                v->name, (int)seed, size, (long long)st.step, inertia,
                memcmp(one.centers, st.centers, sizeof(float) * K * D) == 0 && one_inertia == inertia ? "yes" : "no");
        slex_kmeans_state_free(&one);
    }
    slex_kmeans_state_free(&st);
}

int main(void) {
    MPI_Init(NULL, NULL);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    float *x = malloc(sizeof(float) * N * D);
    make_data(x);
    /* The data do what they are for: the ranks' parts of a pass in order differ by 1000x. */
    double lo_max = INFINITY, hi_max = 0;
    for (int r = 0; r < size; r++) {
        int64_t lo, hi;
        slex_kmeans_slice(N, r, size, &lo, &hi);
        double m = max_abs_rows(x, lo, hi);
        lo_max = fmin(lo_max, m);
        hi_max = fmax(hi_max, m);
    }
    CHECK(size == 1 || hi_max >= 1000 * lo_max, "maxima of the ranks' parts %g .. %g", lo_max, hi_max);
    memory_source m = {x, N, D};
    slex_kmeans_source src = make_source(&m);
    slex_exact_comm comm = slex_mpi_exact_comm();
    /* Several seeds: the validation sample (which sets tol's scale) is drawn once per fit, and
     * whether its slices' maxima differ depends on the draw. */
    for (size_t v = 0; v < sizeof kVariants / sizeof kVariants[0]; v++)
        for (uint64_t seed = 3; seed < 7; seed++) fit_variant(&kVariants[v], seed, &src, &comm, rank, size);
    free(x);
    return check_finish_mpi("test_kmeans_ranges");
}
