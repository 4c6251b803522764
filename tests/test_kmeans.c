/* test_kmeans: common/kmeans + common/rng against references.
 *
 *   test_kmeans <fixture dir>          single-process checks (sklearn fixtures from
 *                                      tests/kmeans_reference.py, brute-force argmin, planted
 *                                      clusters, 1/2/3 simulated ranks as threads, resume)
 *   mpiexec -n P test_kmeans --mpi     the full fit over P real MPI ranks must give the codebook
 *                                      of a single-process fit, bit for bit */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "check_mpi.h"
#include "cluster/kmeans.h"
#include "core/hash.h"
#include "core/mpi_util.h"
#include "core/rng.h"
#include "kmeans_test_util.h"

/* ---- synthetic data: K well-separated Gaussian clusters ---- */

/* x (n, d), truth (n), means (k, d): means on a grid of spacing `sep`, unit-variance noise. */
static void planted(uint64_t seed, int64_t n, int d, int k, double sep, float *x, int32_t *truth, float *means) {
    slex_rng r;
    slex_rng_seed(&r, seed);
    for (int c = 0; c < k; c++)
        for (int j = 0; j < d; j++) means[c * d + j] = (float)(sep * normal(&r));
    for (int64_t i = 0; i < n; i++) {
        int c = (int)slex_rng_below(&r, (uint64_t)k);
        if (truth) truth[i] = c;
        for (int j = 0; j < d; j++) x[i * d + j] = means[c * d + j] + (float)normal(&r);
    }
}

static uint64_t hash_floats(const float *v, size_t n) {
    return slex_fnv1a64(SLEX_FNV1A_BASIS, v, n * sizeof *v);
}

/* ---- fixtures ---- */

static FILE *open_fixture(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open fixture %s", path);
    return f;
}

static int read_floats(FILE *f, float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fscanf(f, "%f", &v[i]) != 1) return -1;
    return 0;
}

static void test_rng(const char *dir) {
    FILE *f = open_fixture(dir, "rng.txt");
    if (!f) return;
    unsigned long long seed, v;
    CHECK(fscanf(f, "%llu", &seed) == 1, "rng.txt: seed");
    slex_rng r;
    slex_rng_seed(&r, seed);
    for (int i = 0; i < 8; i++) {
        CHECK(fscanf(f, "%llu", &v) == 1, "rng.txt: raw %d", i);
        CHECK(slex_rng_next(&r) == v, "raw output %d differs from the reference xoshiro256**", i);
    }
    for (int i = 0; i < 8; i++) {
        CHECK(fscanf(f, "%llu", &v) == 1, "rng.txt: below %d", i);
        CHECK(slex_rng_below(&r, 1000003) == v, "below() %d differs from the reference", i);
    }
    for (int i = 0; i < 4; i++) {
        double u;
        CHECK(fscanf(f, "%lf", &u) == 1, "rng.txt: uniform %d", i);
        CHECK(slex_rng_uniform(&r) == u, "uniform() %d differs from the reference", i);
    }
    fclose(f);
}

/* Lloyd passes from given centres vs sklearn KMeans(init=C0, algorithm="lloyd"). */
static void test_lloyd_vs_sklearn(const char *dir) {
    FILE *f = open_fixture(dir, "lloyd.txt");
    if (!f) return;
    int n, d, k;
    CHECK(fscanf(f, "%d %d %d", &n, &d, &k) == 3, "lloyd.txt header");
    float *x = malloc(sizeof(float) * (size_t)n * d), *c0 = malloc(sizeof(float) * (size_t)k * d);
    float *ref = malloc(sizeof(float) * (size_t)k * d * 2);
    CHECK(!read_floats(f, x, (size_t)n * d) && !read_floats(f, c0, (size_t)k * d) &&
              !read_floats(f, ref, (size_t)k * d * 2), "lloyd.txt body");
    fclose(f);
    memory_source m = {x, n, d};
    slex_kmeans_source src = make_source(&m);
    const int passes[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        slex_kmeans_options o;
        slex_kmeans_options_default(&o);
        o.k = k;
        o.lloyd_passes = passes[t];
        o.lloyd_chunk = 100; /* several exact chunks */
        slex_kmeans_state st;
        slex_error err = {{0}};
        CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
        memcpy(st.centers, c0, sizeof(float) * (size_t)k * d);
        st.phase = SLEX_KMEANS_PHASE_LLOYD; /* start from given centres, as init=array */
        CHECK(slex_kmeans_fit(&st, &src, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
        double worst = 0;
        for (int i = 0; i < k * d; i++) worst = fmax(worst, fabs(st.centers[i] - ref[t * k * d + i]));
        CHECK(worst <= 1e-4, "Lloyd %d pass(es) vs sklearn KMeans: max |diff| %g", passes[t], worst);
        fprintf(stderr, "lloyd %d pass(es) vs sklearn: max |centre diff| = %.3g\n", passes[t], worst);
        slex_kmeans_state_free(&st);
    }
    free(x);
    free(c0);
    free(ref);
}

/* Mini-batch steps on fixed batches vs sklearn MiniBatchKMeans.partial_fit. */
static void test_minibatch_vs_sklearn(const char *dir) {
    FILE *f = open_fixture(dir, "minibatch.txt");
    if (!f) return;
    int n, d, k, nb;
    CHECK(fscanf(f, "%d %d %d %d", &n, &d, &k, &nb) == 4, "minibatch.txt header");
    int sizes[16];
    for (int i = 0; i < nb; i++) CHECK(fscanf(f, "%d", &sizes[i]) == 1, "batch size");
    float *x = malloc(sizeof(float) * (size_t)n * d), *c0 = malloc(sizeof(float) * (size_t)k * d);
    float *ref = malloc(sizeof(float) * (size_t)k * d);
    CHECK(!read_floats(f, x, (size_t)n * d) && !read_floats(f, c0, (size_t)k * d), "minibatch.txt body");
    slex_kmeans_options o;
    slex_kmeans_options_default(&o);
    o.k = k;
    slex_kmeans_state st;
    slex_error err = {{0}};
    CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
    memcpy(st.centers, c0, sizeof(float) * (size_t)k * d);
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
    double *dist = malloc(sizeof(double) * (size_t)n);
    int64_t *sums = malloc(sizeof(int64_t) * (size_t)k * d), *counts = malloc(sizeof(int64_t) * (size_t)k);
    int64_t start = 0;
    double worst = 0;
    for (int b = 0; b < nb; b++) {
        const float *xb = x + start * d;
        slex_assign_nearest(st.centers, k, d, xb, sizes[b], labels, dist, work);
        double mx = 0;
        for (int64_t i = 0; i < (int64_t)sizes[b] * d; i++) mx = fmax(mx, fabs(xb[i]));
        int ex = slex_exactsum_exponent(mx, sizes[b]);
        memset(sums, 0, sizeof(int64_t) * (size_t)k * d);
        memset(counts, 0, sizeof(int64_t) * (size_t)k);
        int64_t dsum = 0;
        slex_kmeans_accumulate(xb, sizes[b], d, labels, dist, ex, 0, sums, counts, &dsum);
        slex_kmeans_minibatch_update(&st, sums, counts, ex);
        start += sizes[b];
        CHECK(!read_floats(f, ref, (size_t)k * d), "minibatch.txt step %d", b);
        for (int i = 0; i < k * d; i++) worst = fmax(worst, fabs(st.centers[i] - ref[i]));
        for (int c = 0; c < k; c++) {
            long long rc;
            CHECK(fscanf(f, "%lld", &rc) == 1, "counts");
            CHECK(st.counts[c] == rc, "step %d centre %d count %lld vs sklearn %lld", b, c,
                  (long long)st.counts[c], rc);
        }
    }
    CHECK(worst <= 1e-4, "mini-batch steps vs sklearn partial_fit: max |diff| %g", worst);
    fprintf(stderr, "mini-batch %d steps vs sklearn partial_fit: max |centre diff| = %.3g\n", nb, worst);
    fclose(f);
    slex_kmeans_state_free(&st);
    free(x); free(c0); free(ref); free(work); free(labels); free(dist); free(sums); free(counts);
}

/* Assignment vs a brute-force double argmin: equal on every row, near-ties included (the float
 * scores only screen); per-row results independent of the call size. */
static void test_assign(void) {
    const int n = 1000, d = 19, k = 37;
    float *x = malloc(sizeof(float) * n * d), *c = malloc(sizeof(float) * k * d);
    slex_rng r;
    slex_rng_seed(&r, 99);
    for (int i = 0; i < n * d; i++) x[i] = (float)(3 * normal(&r) + 10); /* offset: cancellation */
    for (int i = 0; i < k * d; i++) c[i] = (float)(3 * normal(&r) + 10);
    /* near-ties: rows half-way between two centres (up to float rounding) */
    for (int i = 0; i < 100; i++)
        for (int t = 0; t < d; t++) x[i * d + t] = 0.5f * (c[(i % k) * d + t] + c[((i + 1) % k) * d + t]);
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    int32_t *lab = malloc(sizeof(int32_t) * n), *lab2 = malloc(sizeof(int32_t) * n);
    double *dist = malloc(sizeof(double) * n), *dist2 = malloc(sizeof(double) * n);
    slex_assign_nearest(c, k, d, x, n, lab, dist, work);
    int wrong = 0, near = 0;
    for (int i = 0; i < n; i++) {
        double best = INFINITY, second = INFINITY;
        int arg = -1;
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < d; t++) s += ((double)x[i * d + t] - c[j * d + t]) * ((double)x[i * d + t] - c[j * d + t]);
            if (s < best) { second = best; best = s; arg = j; }
            else if (s < second) second = s;
        }
        near += second - best <= 1e-5 * best;
        if (lab[i] != arg) wrong++;
        CHECK(fabs(dist[i] - best) <= 1e-13 * best, "row %d: distance %.17g vs %.17g", i, dist[i], best);
    }
    CHECK(wrong == 0, "%d of %d rows differ from the double brute-force argmin", wrong, n);
    CHECK(near >= 50, "test data without near-ties (%d rows)", near);
    fprintf(stderr, "assign: all %d rows equal the double argmin (%d near-ties within 1e-5)\n", n, near);
    /* Same rows through calls of other sizes (block-aligned pieces, and one row per call, which
     * pads a block of SLEX_ASSIGN_BLOCK rows around a single row). */
    slex_assign_nearest(c, k, d, x, 256, lab2, dist2, work);
    slex_assign_nearest(c, k, d, x + 256 * d, 300, lab2 + 256, dist2 + 256, work);
    slex_assign_nearest(c, k, d, x + 556 * d, n - 556 - 256, lab2 + 556, dist2 + 556, work);
    for (int i = n - 256; i < n; i++) slex_assign_nearest(c, k, d, x + i * d, 1, lab2 + i, dist2 + i, work);
    CHECK(memcmp(lab, lab2, sizeof(int32_t) * n) == 0, "labels depend on the rows per call");
    CHECK(memcmp(dist, dist2, sizeof(double) * n) == 0, "distances depend on the rows per call");
    free(x); free(c); free(work); free(lab); free(lab2); free(dist); free(dist2);
}

/* Per-row labels must not depend on how many rows a call has.  OpenBLAS picks other kernels
 * (other summation orders) for other M, e.g. a single row, at D = 39, K = 100.  Rows here sit
 * on an exact tie between centres c and -c (x orthogonal to c), so the label is decided by the
 * rounding of x.c alone: any change of kernel shows up as flipped labels. */
static void test_assign_rows_per_call(void) {
    const int n = 600, d = 39, k = 100;
    float *x = malloc(sizeof(float) * n * d), *c = malloc(sizeof(float) * k * d);
    slex_rng r;
    slex_rng_seed(&r, 5);
    for (int j = 0; j < d; j++) c[j] = (float)(1e-3 * normal(&r)); /* small: ||c||^2 absorbs nothing */
    for (int j = 0; j < d; j++) c[d + j] = -c[j];
    for (int i = 2 * d; i < k * d; i++) c[i] = (float)(1000 * normal(&r)); /* far away */
    double cc = 0;
    for (int j = 0; j < d; j++) cc += (double)c[j] * c[j];
    int ones = 0;
    for (int i = 0; i < n; i++) {
        double v[64], dot = 0;
        for (int j = 0; j < d; j++) v[j] = normal(&r);
        for (int j = 0; j < d; j++) dot += v[j] * c[j];
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(v[j] - dot / cc * c[j]);
    }
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    int32_t *lab = malloc(sizeof(int32_t) * n), *lab2 = malloc(sizeof(int32_t) * n);
    slex_assign_nearest(c, k, d, x, n, lab, NULL, work);
    for (int i = 0; i < n; i++) {
        CHECK(lab[i] == 0 || lab[i] == 1, "row %d: label %d, not one of the tied centres", i, lab[i]);
        ones += lab[i] == 1;
    }
    CHECK(ones > 0 && ones < n, "ties all went one way (%d of %d to centre 1)", ones, n);
    for (int i = 0; i < n; i++) slex_assign_nearest(c, k, d, x + i * d, 1, lab2 + i, NULL, work);
    int flipped = 0, flipped_single;
    for (int i = 0; i < n; i++) flipped += lab[i] != lab2[i];
    CHECK(flipped == 0, "%d of %d tie labels change when rows are assigned one per call", flipped, n);
    flipped_single = flipped;
    slex_assign_nearest(c, k, d, x, 256, lab2, NULL, work);
    slex_assign_nearest(c, k, d, x + 256 * d, 263, lab2 + 256, NULL, work);
    slex_assign_nearest(c, k, d, x + 519 * d, n - 519, lab2 + 519, NULL, work);
    flipped = 0;
    for (int i = 0; i < 256; i++) flipped += lab[i] != lab2[i];
    CHECK(flipped == 0, "%d tie labels change with the rows per call", flipped);
    fprintf(stderr, "assign ties: %d of %d rows to centre 1; labels changed by one-row calls: %d, by other splits: %d\n",
            ones, n, flipped_single, flipped);
    free(x); free(c); free(work); free(lab); free(lab2);
}

static void test_assign_ties_lowest(void) {
    const int d = 19, k = 37;
    float *c = malloc(sizeof(float) * k * d);
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    int32_t lab2[1];
    slex_rng r;
    slex_rng_seed(&r, 6);
    for (int i = 0; i < k * d; i++) c[i] = (float)(3 * normal(&r) + 10);
    /* Ties go to the lowest index: two identical centres. */
    memcpy(c + 5 * d, c + 2 * d, sizeof(float) * d);
    slex_assign_nearest(c, k, d, c + 2 * d, 1, lab2, NULL, work);
    CHECK(lab2[0] == 2, "tie between centres 2 and 5 went to %d", lab2[0]);
    free(c);
    free(work);
}

/* One mini-batch split over 1, 2 and 3 simulated ranks, combined by integer sums. */
static void test_split_batch(void) {
    const int n = 1100, d = 16, k = 20;
    float *x = malloc(sizeof(float) * n * d), *means = malloc(sizeof(float) * k * d);
    planted(5, n, d, k, 2.0, x, NULL, means);
    slex_kmeans_options o;
    slex_kmeans_options_default(&o);
    o.k = k;
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    int32_t *lab = malloc(sizeof(int32_t) * n);
    double *dist = malloc(sizeof(double) * n);
    int64_t *tot = malloc(sizeof(int64_t) * (k * d + k + 1)), *part = malloc(sizeof(int64_t) * (k * d + k + 1));
    float ref[20 * 16];
    for (int size = 1; size <= 3; size++) {
        slex_kmeans_state st;
        slex_error err = {{0}};
        CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
        memcpy(st.centers, x, sizeof(float) * k * d); /* first k rows as centres */
        for (int c = 0; c < k; c++) st.counts[c] = 3 + c;
        double mx = 0, md = 0;
        for (int rank = 0; rank < size; rank++) { /* the max over ranks */
            int64_t lo, hi;
            slex_kmeans_slice(n, rank, size, &lo, &hi);
            slex_assign_nearest(st.centers, k, d, x + lo * d, hi - lo, lab, dist, work);
            for (int64_t i = 0; i < (hi - lo) * d; i++) mx = fmax(mx, fabs(x[lo * d + i]));
            for (int64_t i = 0; i < hi - lo; i++) md = fmax(md, dist[i]);
        }
        int ex = slex_exactsum_exponent(mx, n), ed = slex_exactsum_exponent(md, n);
        memset(tot, 0, sizeof(int64_t) * (k * d + k + 1));
        for (int rank = 0; rank < size; rank++) {
            int64_t lo, hi;
            slex_kmeans_slice(n, rank, size, &lo, &hi);
            CHECK(lo % SLEX_ASSIGN_BLOCK == 0, "slice start %lld not block aligned", (long long)lo);
            memset(part, 0, sizeof(int64_t) * (k * d + k + 1));
            slex_assign_nearest(st.centers, k, d, x + lo * d, hi - lo, lab, dist, work);
            slex_kmeans_accumulate(x + lo * d, hi - lo, d, lab, dist, ex, ed, part, part + k * d, part + k * d + k);
            for (int i = 0; i < k * d + k + 1; i++) tot[i] += part[i];
        }
        slex_kmeans_minibatch_update(&st, tot, tot + k * d, ex);
        if (size == 1) memcpy(ref, st.centers, sizeof ref);
        else CHECK(memcmp(ref, st.centers, sizeof ref) == 0, "centres after a batch split over %d ranks differ", size);
        slex_kmeans_state_free(&st);
    }
    free(x); free(means); free(work); free(lab); free(dist); free(tot); free(part);
}

/* ---- simulated ranks: threads with a barrier-based exact communicator ---- */

typedef struct thread_world {
    int size;
    pthread_barrier_t barrier;
    void *posted[8];
} thread_world;

typedef struct thread_rank {
    thread_world *world;
    int rank;
    slex_exact_comm comm;
    slex_kmeans_state state;
    const slex_kmeans_source *src;
    int rc;
    slex_error err;
} thread_rank;

static int thread_sum(void *ctx, int64_t *v, int64_t n, slex_error *err) {
    thread_rank *t = ctx;
    int64_t *tmp = calloc((size_t)n + 1, sizeof *tmp);
    if (!tmp) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    t->world->posted[t->rank] = v;
    pthread_barrier_wait(&t->world->barrier);
    for (int r = 0; r < t->world->size; r++)
        for (int64_t i = 0; i < n; i++) tmp[i] += ((int64_t *)t->world->posted[r])[i];
    pthread_barrier_wait(&t->world->barrier); /* all reads done before anyone writes */
    memcpy(v, tmp, sizeof *tmp * (size_t)n);
    free(tmp);
    return 0;
}

static int thread_max(void *ctx, double *v, int64_t n, slex_error *err) {
    thread_rank *t = ctx;
    double *tmp = malloc(sizeof *tmp * ((size_t)n + 1));
    if (!tmp) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    t->world->posted[t->rank] = v;
    pthread_barrier_wait(&t->world->barrier);
    for (int64_t i = 0; i < n; i++) {
        tmp[i] = ((double *)t->world->posted[0])[i];
        for (int r = 1; r < t->world->size; r++) tmp[i] = fmax(tmp[i], ((double *)t->world->posted[r])[i]);
    }
    pthread_barrier_wait(&t->world->barrier);
    memcpy(v, tmp, sizeof *tmp * (size_t)n);
    free(tmp);
    return 0;
}

static void *thread_main(void *arg) {
    thread_rank *t = arg;
    t->rc = slex_kmeans_fit(&t->state, t->src, &t->comm, NULL, NULL, &t->err);
    return NULL;
}

/* A full fit (init + mini-batch + Lloyd) over `size` threads; returns the centres of rank 0. */
static int fit_threads(const slex_kmeans_options *o, const slex_kmeans_source *src, int size, float *out) {
    thread_world w = {.size = size};
    pthread_barrier_init(&w.barrier, NULL, (unsigned)size);
    thread_rank ranks[8];
    pthread_t tid[8];
    int ok = 1;
    for (int r = 0; r < size; r++) {
        ranks[r] = (thread_rank){.world = &w, .rank = r, .src = src};
        ranks[r].comm = (slex_exact_comm){&ranks[r], r, size, thread_sum, thread_max};
        slex_kmeans_state_init(&ranks[r].state, o, src->n_frames, src->dim, NULL);
    }
    for (int r = 0; r < size; r++) pthread_create(&tid[r], NULL, thread_main, &ranks[r]);
    for (int r = 0; r < size; r++) pthread_join(tid[r], NULL);
    size_t nc = (size_t)o->k * src->dim;
    for (int r = 0; r < size; r++) {
        CHECK(ranks[r].rc == 0, "rank %d of %d: %s", r, size, ranks[r].err.msg);
        ok &= ranks[r].rc == 0;
        if (ok && r > 0) CHECK(memcmp(ranks[r].state.centers, ranks[0].state.centers, nc * sizeof(float)) == 0,
                               "rank %d of %d ended with other centres than rank 0", r, size);
    }
    if (ok) memcpy(out, ranks[0].state.centers, nc * sizeof(float));
    for (int r = 0; r < size; r++) slex_kmeans_state_free(&ranks[r].state);
    pthread_barrier_destroy(&w.barrier);
    return ok ? 0 : -1;
}

static void small_fit_options(slex_kmeans_options *o, int k) {
    slex_kmeans_options_default(o);
    o->k = k;
    o->batch_size = 700;
    o->n_init = 2;
    o->max_iter = 3;
    o->lloyd_passes = 1;
    o->lloyd_chunk = 1500;
    o->seed = 42;
    o->checkpoint_every = 4;
}

static void test_ranks_threads(void) {
    const int n = 4000, d = 12, k = 30;
    float *x = malloc(sizeof(float) * n * d), *means = malloc(sizeof(float) * k * d);
    planted(11, n, d, k, 1.5, x, NULL, means);
    memory_source m = {x, n, d};
    slex_kmeans_source src = make_source(&m);
    slex_kmeans_options o;
    small_fit_options(&o, k);
    o.reassignment_ratio = 0.01; /* exercise the reassignment exchange too */
    float ref[30 * 12], got[30 * 12];
    slex_kmeans_state st;
    slex_error err = {{0}};
    CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
    CHECK(slex_kmeans_fit(&st, &src, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    memcpy(ref, st.centers, sizeof ref);
    slex_kmeans_state_free(&st);
    for (int size = 1; size <= 3; size++) {
        if (fit_threads(&o, &src, size, got) == 0)
            CHECK(memcmp(ref, got, sizeof ref) == 0, "fit over %d simulated ranks differs from 1 process", size);
    }
    free(x);
    free(means);
}

/* Planted, well-separated clusters are found exactly (up to a permutation of labels). */
static void test_planted(void) {
    const int n = 20000, d = 10, k = 8;
    float *x = malloc(sizeof(float) * n * d), *means = malloc(sizeof(float) * k * d);
    int32_t *truth = malloc(sizeof(int32_t) * n), *lab = malloc(sizeof(int32_t) * n);
    planted(3, n, d, k, 12.0, x, truth, means);
    memory_source m = {x, n, d};
    slex_kmeans_source src = make_source(&m);
    slex_kmeans_options o;
    slex_kmeans_options_default(&o);
    o.k = k;
    o.batch_size = 1000;
    o.n_init = 3;
    o.max_iter = 10;
    o.seed = 1;
    slex_kmeans_state st;
    slex_error err = {{0}};
    CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
    CHECK(slex_kmeans_fit(&st, &src, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    slex_assign_nearest(st.centers, k, d, x, n, lab, NULL, work);
    int map[8], used[8] = {0}, bad = 0;
    for (int c = 0; c < k; c++) map[c] = -1;
    for (int i = 0; i < n; i++) {
        if (map[truth[i]] < 0) {
            map[truth[i]] = lab[i];
            if (used[lab[i]]++) bad++; /* two true clusters on one centre */
        }
        if (map[truth[i]] != lab[i]) bad++;
    }
    CHECK(bad == 0, "planted clusters not recovered: %d mismatches", bad);
    double worst = 0;
    for (int c = 0; c < k; c++)
        if (map[c] >= 0)
            for (int j = 0; j < d; j++) worst = fmax(worst, fabs(st.centers[map[c] * d + j] - means[c * d + j]));
    CHECK(worst < 0.15, "centre vs planted mean: max |diff| %g", worst);
    fprintf(stderr, "planted: %d mismatched labels, max |centre - planted mean| = %.3g, steps %lld of %lld\n",
            bad, worst, (long long)st.step, (long long)st.n_steps);
    slex_kmeans_state_free(&st);
    free(x); free(means); free(truth); free(lab); free(work);
}

/* ---- checkpoint / resume ---- */

typedef struct stopper {
    const char *path;
    int calls, stop_at;
    int64_t saved_step;
    int saved_phase;
} stopper;

static int save_and_maybe_stop(void *ctx, const slex_kmeans_state *st, slex_error *err) {
    stopper *s = ctx;
    s->calls++;
    if (s->calls != s->stop_at) return 0;
    if (slex_kmeans_state_save(st, s->path, err)) return -1;
    s->saved_step = st->step;
    s->saved_phase = st->phase;
    return 1;
}

static void test_resume(void) {
    const int n = 5000, d = 8, k = 25;
    float *x = malloc(sizeof(float) * n * d), *means = malloc(sizeof(float) * k * d);
    planted(21, n, d, k, 1.5, x, NULL, means);
    memory_source m = {x, n, d};
    slex_kmeans_source src = make_source(&m);
    slex_kmeans_options o;
    small_fit_options(&o, k);
    o.lloyd_passes = 6; /* the last pass of the full run uses bounds; the resumed one starts without */
    slex_error err = {{0}};
    slex_kmeans_state full;
    CHECK(slex_kmeans_state_init(&full, &o, n, d, &err) == 0, "%s", err.msg);
    stopper count = {NULL, 0, -1, 0, 0};
    CHECK(slex_kmeans_fit(&full, &src, NULL, save_and_maybe_stop, &count, &err) == 0, "%s", err.msg);
    CHECK(count.calls >= 5, "only %d checkpoint calls", count.calls);
    char path[] = "/tmp/test_kmeans_ckpt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    /* Stop at a mid-mini-batch checkpoint, resume from the file; stop again after the fifth
     * Lloyd pass (the second-to-last call), resume again. */
    const int stops[2] = {3, count.calls - 1};
    slex_kmeans_state st = {0};
    CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        stopper s = {path, 0, stops[i], 0, 0};
        /* calls are counted from the start of each resumed run */
        if (i == 1) s.stop_at = stops[1] - stops[0];
        int rc = slex_kmeans_fit(&st, &src, NULL, save_and_maybe_stop, &s, &err);
        CHECK(rc == 1, "run %d should have been stopped by the callback (rc %d: %s)", i, rc, err.msg);
        slex_kmeans_state_free(&st);
        memset(&st, 0, sizeof st);
        CHECK(slex_kmeans_state_load(&st, path, &err) == 0, "%s", err.msg);
        fprintf(stderr, "resume: stopped at phase %d step %lld\n", s.saved_phase, (long long)s.saved_step);
        if (i == 0) CHECK(s.saved_phase == SLEX_KMEANS_PHASE_MINIBATCH && s.saved_step > 0, "first stop not mid mini-batch");
        if (i == 1) CHECK(s.saved_phase == SLEX_KMEANS_PHASE_LLOYD && st.lloyd_pass == 5, "second stop not after Lloyd pass 5");
    }
    CHECK(slex_kmeans_fit(&st, &src, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(memcmp(st.centers, full.centers, sizeof(float) * k * d) == 0, "resumed run ends with other centres");
    CHECK(memcmp(st.counts, full.counts, sizeof(int64_t) * k) == 0, "resumed run ends with other counts");
    CHECK(st.step == full.step && st.ewa_inertia == full.ewa_inertia, "resumed run: step/EWA differ");
    /* A damaged checkpoint is rejected. */
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 200, SEEK_SET);
        fputc(0x5a, f);
        fclose(f);
    }
    slex_kmeans_state bad = {0};
    CHECK(slex_kmeans_state_load(&bad, path, &err) == -1 && strstr(err.msg, "checksum"), "corrupt file: %s", err.msg);
    remove(path);
    slex_kmeans_state_free(&st);
    slex_kmeans_state_free(&full);
    free(x);
    free(means);
}

/* A SLEXKMS2 file packed here by hand, from the format's description (kmeans_state.h; the fields as
 * the code before the option table wrote them), loads into the same values: checkpoints written
 * by older builds still resume. */
static void put_le(FILE *f, uint64_t v) {
    for (int i = 0; i < 8; i++) fputc((int)(v >> (8 * i)) & 0xff, f);
}
static uint64_t f64_bits(double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return u;
}

static void test_checkpoint_format(void) {
    const int k = 3, d = 2;
    /* options k, max_iter, batch_size, init_size, n_init, init, max_no_improvement, tol,
     * reassignment_ratio, lloyd_passes, lloyd_chunk, seed, checkpoint_every (not bounds_mb) */
    const uint64_t head[] = {k, 7, 11, 13, 2, SLEX_KMEANS_INIT_RANDOM, 17, f64_bits(0.25), f64_bits(0.125), 4, 300,
                             0xfedcba9876543210ull, 9,
                             /* k, dim, n_frames, batch_size, init_size, phase, step, n_steps, lloyd_pass,
                              * has_ewa, ewa_inertia, ewa_inertia_min, no_improvement, since_reassign,
                              * tol_scaled, init_inertia, last_inertia, stop_reason */
                             k, d, 1000, 11, 39, SLEX_KMEANS_PHASE_MINIBATCH, 27, 636, 0, 1, f64_bits(1.5),
                             f64_bits(1.25), 5, 297, f64_bits(0.0625), f64_bits(3.5), f64_bits(2.75),
                             SLEX_KMEANS_STOP_TOL,
                             /* the RNG */
                             1, 2, 3, 0x8000000000000001ull};
    const float centers[6] = {1.5f, -2.0f, 0.25f, 1e-3f, -7.0f, 3.0f};
    const int64_t counts[3] = {10, 0, 17};
    char path[] = "/tmp/test_kmeans_format_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    FILE *f = fopen(path, "w+b");
    fwrite("SLEXKMS2", 1, 8, f);
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++) put_le(f, head[i]);
    for (int i = 0; i < k * d; i++) {
        uint32_t u;
        memcpy(&u, &centers[i], 4);
        for (int b = 0; b < 4; b++) fputc((int)(u >> (8 * b)) & 0xff, f);
    }
    for (int i = 0; i < k; i++) put_le(f, (uint64_t)counts[i]);
    long len = ftell(f);
    unsigned char *bytes = malloc((size_t)len);
    rewind(f);
    CHECK(fread(bytes, 1, (size_t)len, f) == (size_t)len, "read back");
    put_le(f, slex_fnv1a64(SLEX_FNV1A_BASIS, bytes, (size_t)len));
    fclose(f);
    slex_kmeans_state st = {0};
    slex_error err = {{0}};
    CHECK(slex_kmeans_state_load(&st, path, &err) == 0, "hand-made checkpoint: %s", err.msg);
    const slex_kmeans_options *o = &st.opts;
    CHECK(o->k == k && o->max_iter == 7 && o->batch_size == 11 && o->init_size == 13 && o->n_init == 2 &&
              o->init == SLEX_KMEANS_INIT_RANDOM && o->max_no_improvement == 17 && o->tol == 0.25 &&
              o->reassignment_ratio == 0.125 && o->lloyd_passes == 4 && o->lloyd_chunk == 300 &&
              o->seed == 0xfedcba9876543210ull && o->checkpoint_every == 9,
          "options read from the file: max_iter %d batch %d init_size %d n_init %d init %d mni %d tol %g rr %g "
          "lloyd %d chunk %d seed %llx every %d",
          o->max_iter, o->batch_size, o->init_size, o->n_init, o->init, o->max_no_improvement, o->tol,
          o->reassignment_ratio, o->lloyd_passes, o->lloyd_chunk, (unsigned long long)o->seed, o->checkpoint_every);
    CHECK(o->bounds_mb == 1024, "bounds_mb is not saved: the default, got %d", o->bounds_mb);
    CHECK(st.k == k && st.dim == d && st.n_frames == 1000 && st.batch_size == 11 && st.init_size == 39 &&
              st.phase == SLEX_KMEANS_PHASE_MINIBATCH && st.step == 27 && st.n_steps == 636 && st.lloyd_pass == 0 &&
              st.has_ewa == 1 && st.ewa_inertia == 1.5 && st.ewa_inertia_min == 1.25 && st.no_improvement == 5 &&
              st.since_reassign == 297 && st.tol_scaled == 0.0625 && st.init_inertia == 3.5 &&
              st.last_inertia == 2.75 && st.stop_reason == SLEX_KMEANS_STOP_TOL,
          "counters read from the file");
    CHECK(st.rng.s[0] == 1 && st.rng.s[1] == 2 && st.rng.s[2] == 3 && st.rng.s[3] == 0x8000000000000001ull, "rng");
    CHECK(memcmp(st.centers, centers, sizeof centers) == 0 && memcmp(st.counts, counts, sizeof counts) == 0, "arrays");
    /* Saving it again writes the same bytes. */
    CHECK(slex_kmeans_state_save(&st, path, &err) == 0, "%s", err.msg);
    f = fopen(path, "rb");
    unsigned char *again = malloc((size_t)len + 8);
    size_t got = fread(again, 1, (size_t)len + 8, f);
    CHECK(got == (size_t)len + 8 && fgetc(f) == EOF && memcmp(again, bytes, (size_t)len) == 0,
          "the state saved again differs from the hand-made file (%zu bytes)", got);
    fclose(f);
    free(again);
    free(bytes);
    remove(path);
    slex_kmeans_state_free(&st);
}

static void test_errors(void) {
    slex_kmeans_options o;
    slex_kmeans_options_default(&o);
    o.k = 11;
    slex_kmeans_state st;
    slex_error err = {{0}};
    CHECK(slex_kmeans_state_init(&st, &o, 10, 3, &err) == -1, "k > frames accepted");
    CHECK(strstr(err.msg, "larger than the number of frames") != NULL, "message: %s", err.msg);
    /* NaN in a frame: reported with its frame index. */
    const int n = 200, d = 4;
    float *y = malloc(sizeof(float) * n * d), means[3 * 4];
    planted(8, n, d, 3, 5.0, y, NULL, means);
    y[123 * d + 2] = NAN;
    memory_source m = {y, n, d};
    slex_kmeans_source src = make_source(&m);
    o.k = 3;
    o.batch_size = 100; /* init sample = all 200 frames, so frame 123 is read */
    CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
    CHECK(slex_kmeans_fit(&st, &src, NULL, NULL, NULL, &err) == -1, "NaN not reported");
    CHECK(strstr(err.msg, "frame 123") && strstr(err.msg, "non-finite"), "message: %s", err.msg);
    fprintf(stderr, "errors: \"%s\"\n", err.msg);
    slex_kmeans_state_free(&st);
    free(y);
}

/* ---- real MPI ranks ---- */

static int run_mpi(void) {
    MPI_Init(NULL, NULL);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int n = 6000, d = 20, k = 100; /* 4 groups of centres for the Lloyd bounds */
    float *x = malloc(sizeof(float) * n * d), *means = malloc(sizeof(float) * k * d);
    planted(77, n, d, k, 1.5, x, NULL, means);
    memory_source m = {x, n, d};
    slex_kmeans_source src = make_source(&m);
    slex_exact_comm comm = slex_mpi_exact_comm();
    /* fairseq-like settings; then the Lloyd mode (random init, bounded passes only) */
    for (int variant = 0; variant < 2; variant++) {
        slex_kmeans_options o;
        small_fit_options(&o, k);
        if (variant == 1) {
            o.init = SLEX_KMEANS_INIT_RANDOM;
            o.max_iter = 0;
            o.lloyd_passes = 12;
        }
        slex_kmeans_state st;
        slex_error err = {{0}};
        CHECK(slex_kmeans_state_init(&st, &o, n, d, &err) == 0, "%s", err.msg);
        CHECK(slex_kmeans_fit(&st, &src, &comm, NULL, NULL, &err) == 0, "rank %d: %s", rank, err.msg);
        unsigned long long h = hash_floats(st.centers, (size_t)k * d), hmin = h, hmax = h;
        MPI_Allreduce(&h, &hmin, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&h, &hmax, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
        CHECK(hmin == hmax, "ranks disagree on the codebook");
        if (rank == 0) {
            slex_kmeans_state one;
            CHECK(slex_kmeans_state_init(&one, &o, n, d, &err) == 0, "%s", err.msg);
            CHECK(slex_kmeans_fit(&one, &src, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
            CHECK(memcmp(one.centers, st.centers, sizeof(float) * k * d) == 0,
                  "codebook over %d MPI ranks differs from a single process (variant %d)", size, variant);
            fprintf(stderr, "mpi: %s, %d ranks, codebook hash %016llx, single process %016llx\n",
                    variant ? "Lloyd mode" : "fairseq settings", size, h,
                    (unsigned long long)hash_floats(one.centers, (size_t)k * d));
            slex_kmeans_state_free(&one);
        }
        slex_kmeans_state_free(&st);
    }
    free(x);
    free(means);
    return check_finish_mpi("test_kmeans --mpi");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0) return run_mpi();
    const char *dir = argc > 1 ? argv[1] : "tests/data/kmeans";
    test_rng(dir);
    test_assign();
    test_assign_rows_per_call();
    test_assign_ties_lowest();
    test_lloyd_vs_sklearn(dir);
    test_minibatch_vs_sklearn(dir);
    test_split_batch();
    test_planted();
    test_ranks_threads();
    test_resume();
    test_checkpoint_format();
    test_errors();
    return check_finish("test_kmeans");
}
