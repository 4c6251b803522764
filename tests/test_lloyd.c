/* test_lloyd: common/lloyd against the plain assignment (slex_assign_nearest, which is the
 * double-precision argmin, checked against brute force in test_kmeans).
 *
 * For any sequence of centres (Lloyd means here, with some centres thrown far away now and then,
 * and a duplicated centre that makes exact ties), every frame's label and distance with bounds
 * must equal the plain ones bit for bit, whether the frames come in one call or several, and
 * whether all, some or none of the frames have bounds; late passes must skip distances (or the
 * test would not be testing the bounds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cluster/assign.h"
#include "cluster/lloyd.h"
#include "core/rng.h"
#include "kmeans_test_util.h"

/* Overlapping clusters (many more components than centres, so no fit is exact), and a tenth of
 * the frames half-way between two other frames (near-ties). */
static void make_data(uint64_t seed, int n, int d, float *x) {
    slex_rng r;
    slex_rng_seed(&r, seed);
    const int comps = 300;
    float *means = malloc(sizeof(float) * comps * d);
    for (int i = 0; i < comps * d; i++) means[i] = (float)(2.0 * normal(&r) + 5.0);
    for (int i = 0; i < n; i++) {
        int c = (int)slex_rng_below(&r, comps);
        for (int j = 0; j < d; j++) x[i * d + j] = means[c * d + j] + (float)(0.7 * normal(&r));
    }
    for (int i = 0; i < n / 10; i++) {
        int a = (int)slex_rng_below(&r, (uint64_t)n), b = (int)slex_rng_below(&r, (uint64_t)n);
        for (int j = 0; j < d; j++) x[i * d + j] = 0.5f * (x[a * d + j] + x[b * d + j]);
    }
    free(means);
}

/* The next centres: Lloyd means of the labels; every 4th pass three centres jump to frames far
 * from where they were; centre k-1 always duplicates centre 0 (an exact tie for its frames). */
static void next_centres(slex_rng *r, int pass, const float *x, int n, int d, int k, const int32_t *labels,
                         float *c) {
    double *sum = calloc((size_t)k * d, sizeof *sum);
    int *count = calloc((size_t)k, sizeof *count);
    for (int i = 0; i < n; i++) {
        count[labels[i]]++;
        for (int j = 0; j < d; j++) sum[(size_t)labels[i] * d + j] += x[i * d + j];
    }
    for (int c0 = 0; c0 < k; c0++)
        if (count[c0] > 0)
            for (int j = 0; j < d; j++) c[c0 * d + j] = (float)(sum[(size_t)c0 * d + j] / count[c0]);
    if (pass % 4 == 3)
        for (int t = 0; t < 3; t++) {
            int which = 1 + (int)slex_rng_below(r, (uint64_t)(k - 2));
            memcpy(c + which * d, x + slex_rng_below(r, (uint64_t)n) * d, sizeof(float) * d);
        }
    memcpy(c + (k - 1) * d, c, sizeof(float) * d);
    free(sum);
    free(count);
}

/* Brute-force double argmin (ties: lowest index) of every frame; returns the frames whose label
 * differs. */
static int brute_force_mismatches(const float *x, int n, int d, const float *c, int k, const int32_t *labels) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double best = INFINITY;
        int arg = -1;
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < d; t++) {
                double v = (double)x[i * d + t] - c[j * d + t];
                s += v * v;
            }
            if (s < best) {
                best = s;
                arg = j;
            }
        }
        bad += labels[i] != arg;
    }
    return bad;
}

/* passes with bounds (budget max_bytes, frames handed over in `pieces` calls) vs plain; the
 * data scaled by `scale` (float subnormals or overflow of the float scores at the extremes). */
static void run_case(const char *name, int n, int d, int k, size_t max_bytes, int pieces, int passes, float scale) {
    float *x = malloc(sizeof(float) * n * d), *c = malloc(sizeof(float) * k * d);
    make_data(7 + (uint64_t)d, n, d, x);
    for (int i = 0; i < n * d; i++) x[i] *= scale;
    memcpy(c, x + (size_t)(n / 2) * d, sizeof(float) * k * d);
    memcpy(c + (k - 1) * d, c, sizeof(float) * d);
    int32_t *lab = malloc(sizeof(int32_t) * n), *ref = malloc(sizeof(int32_t) * n);
    double *dist = malloc(sizeof(double) * n), *ref_dist = malloc(sizeof(double) * n);
    float *work = malloc(sizeof(float) * slex_assign_work_floats(k, d));
    slex_error err = {{0}};
    slex_lloyd *l = slex_lloyd_open(c, k, d, n, max_bytes, &err);
    CHECK(l != NULL, "%s: open: %s", name, err.msg);
    if (!l) return;
    slex_lloyd_stats stats;
    slex_lloyd_get_stats(l, &stats);
    slex_rng r;
    slex_rng_seed(&r, 3);
    int bad_labels = 0, bad_dist = 0, ties = 0, bad_brute = 0;
    double last_fraction = 1, lowest = 1;
    for (int pass = 0; pass < passes; pass++) {
        slex_lloyd_begin(l, c);
        int64_t first = 0;
        for (int p = 0; p < pieces; p++) {
            int64_t end = (int64_t)n * (p + 1) / pieces;
            slex_lloyd_assign(l, first, x + first * d, end - first, lab + first, dist + first);
            first = end;
        }
        slex_assign_nearest(c, k, d, x, n, ref, ref_dist, work);
        if (scale != 1.0f) bad_brute += brute_force_mismatches(x, n, d, c, k, ref);
        for (int i = 0; i < n; i++) {
            bad_labels += lab[i] != ref[i];
            bad_dist += memcmp(&dist[i], &ref_dist[i], sizeof(double)) != 0;
            ties += ref[i] == 0 && pass > 0; /* centre 0 wins its ties with centre k-1 */
        }
        slex_lloyd_stats s;
        slex_lloyd_get_stats(l, &s);
        last_fraction = s.computed_fraction;
        if (pass > 0 && s.computed_fraction < lowest) lowest = s.computed_fraction;
        next_centres(&r, pass, x, n, d, k, ref, c);
    }
    CHECK(bad_labels == 0, "%s: %d labels differ from the plain assignment", name, bad_labels);
    CHECK(bad_dist == 0, "%s: %d distances differ from the plain assignment", name, bad_dist);
    CHECK(ties > 0, "%s: no frame went to the duplicated centre", name);
    CHECK(bad_brute == 0, "%s: the plain assignment differs from the brute-force argmin on %d frames", name, bad_brute);
    if (stats.frames_with_bounds > 0 && scale == 1.0f) { /* frames without bounds are computed in full */
        double most = 1.0 - 0.3 * (double)stats.frames_with_bounds / n;
        CHECK(lowest < most, "%s: bounds never skipped much (lowest share computed %.3f)", name, lowest);
    }
    if (stats.frames_with_bounds == 0) CHECK(last_fraction == 1.0, "%s: no bounds, yet %.3f computed", name, last_fraction);
    fprintf(stderr, "%s: %d groups, bounds for %lld of %d frames, %d passes equal to the plain assignment; "
                    "share of distances computed: lowest %.3f, last %.3f\n",
            name, stats.groups, (long long)stats.frames_with_bounds, n, passes, lowest, last_fraction);
    slex_lloyd_close(l);
    free(x); free(c); free(lab); free(ref); free(dist); free(ref_dist); free(work);
}

/* Centres that do not move: after the first pass nothing needs computing, not even for frames
 * whose group holds only their own centre (an infinite bound, which must stay infinite). */
static void test_still_centres(void) {
    const int n = 3000, d = 8, k = 51;
    float *x = malloc(sizeof(float) * n * d), *c = malloc(sizeof(float) * k * d);
    slex_rng r;
    slex_rng_seed(&r, 11);
    for (int j = 0; j < 50 * d; j++) c[j] = (float)(20.0 * normal(&r)); /* 50 separated centres */
    for (int j = 0; j < d; j++) c[50 * d + j] = 200.0f;                  /* and one far away */
    for (int i = 0; i < n; i++) {
        int j = i % k;
        for (int t = 0; t < d; t++) x[i * d + t] = c[j * d + t] + (float)(0.1 * normal(&r));
    }
    int32_t *lab = malloc(sizeof(int32_t) * n);
    double *dist = malloc(sizeof(double) * n);
    slex_error err = {{0}};
    slex_lloyd *l = slex_lloyd_open(c, k, d, n, 64 << 20, &err);
    CHECK(l != NULL, "open: %s", err.msg);
    if (!l) return;
    slex_lloyd_stats first, second;
    slex_lloyd_begin(l, c);
    slex_lloyd_assign(l, 0, x, n, lab, dist);
    slex_lloyd_get_stats(l, &first);
    slex_lloyd_begin(l, c);
    slex_lloyd_assign(l, 0, x, n, lab, dist);
    slex_lloyd_get_stats(l, &second);
    CHECK(first.computed_fraction == 1.0, "first pass computed %.3f", first.computed_fraction);
    CHECK(second.computed_fraction == 0.0, "still centres: second pass computed %.4f of the distances",
          second.computed_fraction);
    fprintf(stderr, "still centres: %d groups, second pass computes %.4f of the distances\n", second.groups,
            second.computed_fraction);
    slex_lloyd_close(l);
    free(x); free(c); free(lab); free(dist);
}

int main(void) {
    run_case("d24 k100 all bounds", 6000, 24, 100, 64 << 20, 1, 16, 1.0f);
    run_case("d24 k100 3 calls", 6000, 24, 100, 64 << 20, 3, 12, 1.0f);
    run_case("d24 k100 half the frames", 6000, 24, 100, 6000 * 20 / 2, 2, 12, 1.0f);
    run_case("d24 k100 no bounds", 6000, 24, 100, 0, 1, 4, 1.0f);
    run_case("d3 k60", 5000, 3, 60, 64 << 20, 1, 16, 1.0f);
    run_case("d64 k400", 4000, 64, 400, 64 << 20, 2, 12, 1.0f);
    run_case("d1 k10", 3000, 1, 10, 64 << 20, 1, 10, 1.0f);
    run_case("d8 k60 values ~1e-22 (subnormal products)", 3000, 8, 60, 64 << 20, 1, 8, 1e-22f);
    run_case("d8 k60 values ~1e19 (scores overflow)", 3000, 8, 60, 64 << 20, 1, 8, 1e19f);
    test_still_centres();
    return check_finish("test_lloyd");
}
