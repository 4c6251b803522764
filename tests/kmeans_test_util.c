#include "kmeans_test_util.h"

#include <math.h>
#include <string.h>

int memory_fetch(void *ctx, const int64_t *frames, int64_t n, float *out, slex_error *err) {
    const memory_source *m = ctx;
    for (int64_t i = 0; i < n; i++) {
        if (frames[i] < 0 || frames[i] >= m->n)
            return slex_fail_as(err, SLEX_ERR_INPUT, "frame %lld out of range", (long long)frames[i]);
        memcpy(out + i * m->dim, m->x + frames[i] * m->dim, (size_t)m->dim * sizeof *out);
    }
    return 0;
}

slex_kmeans_source make_source(memory_source *m) { return (slex_kmeans_source){m, m->n, m->dim, memory_fetch}; }

double normal(slex_rng *r) {
    double u1 = slex_rng_uniform(r), u2 = slex_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
