/* rng: an explicitly specified pseudo-random generator, so that results never depend on libc.
 *
 * xoshiro256** 1.0 (Blackman & Vigna), seeded by expanding a 64-bit seed with splitmix64 (the
 * seeding the authors recommend).  The whole state is four 64-bit words in a plain struct, so
 * it can be copied, saved in a checkpoint and restored exactly.  Bounded integers use
 * rejection sampling (no modulo bias); doubles take the top 53 bits. */
#ifndef SLEX_RNG_H
#define SLEX_RNG_H

#include <stdint.h>

typedef struct slex_rng {
    uint64_t s[4];
} slex_rng;

/* One splitmix64 step: advances *state and returns the next output. */
uint64_t slex_splitmix64(uint64_t *state);

/* s[0..3] = four consecutive splitmix64 outputs starting from `seed`. */
void slex_rng_seed(slex_rng *rng, uint64_t seed);

/* The next xoshiro256** output. */
uint64_t slex_rng_next(slex_rng *rng);

/* Uniform integer in [0, n); n must be > 0 (returns 0 for n == 0).  Draws are rejected while
 * the raw output falls in the incomplete last bucket, so the number of raw draws consumed is
 * data dependent but deterministic. */
uint64_t slex_rng_below(slex_rng *rng, uint64_t n);

/* Uniform double in [0, 1): (next >> 11) * 2^-53. */
double slex_rng_uniform(slex_rng *rng);

/* Standard normal double: Box-Muller on two uniforms (the cosine branch only, so every call
 * consumes exactly two raw draws and a sequence does not depend on call history). */
double slex_rng_normal(slex_rng *rng);

#endif
