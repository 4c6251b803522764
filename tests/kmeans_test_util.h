/* kmeans_test_util: what the k-means tests (test_kmeans, test_kmeans_ranges, test_lloyd) share:
 * frames held in memory as a k-means source, and standard normal draws. */
#ifndef SLEX_TESTS_KMEANS_TEST_UTIL_H
#define SLEX_TESTS_KMEANS_TEST_UTIL_H

#include <stdint.h>

#include "cluster/kmeans.h"
#include "core/rng.h"

/* n frames of dim floats, row after row. */
typedef struct memory_source {
    const float *x;
    int64_t n;
    int dim;
} memory_source;

/* The fetch of a memory_source (a frame out of range is an error naming it). */
int memory_fetch(void *ctx, const int64_t *frames, int64_t n, float *out, slex_error *err);
slex_kmeans_source make_source(memory_source *m);

/* A standard normal draw (Box-Muller, two uniforms). */
double normal(slex_rng *r);

#endif
