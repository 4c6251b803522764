#include "core/rng.h"

#include <math.h>

uint64_t slex_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void slex_rng_seed(slex_rng *rng, uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = slex_splitmix64(&sm);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t slex_rng_next(slex_rng *rng) {
    uint64_t *s = rng->s;
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

uint64_t slex_rng_below(slex_rng *rng, uint64_t n) {
    if (n == 0) return 0;
    /* Accept x < limit, where limit is the largest multiple of n that fits in 2^64. */
    const uint64_t rem = (UINT64_MAX % n + 1) % n; /* = 2^64 mod n */
    const uint64_t limit = UINT64_MAX - rem + 1;   /* 0 means "2^64": every x accepted */
    uint64_t x;
    do {
        x = slex_rng_next(rng);
    } while (limit != 0 && x >= limit);
    return x % n;
}

double slex_rng_uniform(slex_rng *rng) { return (double)(slex_rng_next(rng) >> 11) * 0x1.0p-53; }

double slex_rng_normal(slex_rng *rng) {
    double u1 = 1.0 - slex_rng_uniform(rng); /* (0, 1]: log is finite */
    double u2 = slex_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}
