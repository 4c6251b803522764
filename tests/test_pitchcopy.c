/* corpus/pitchcopy.h without sox: the envelope lag on hand-made cases (a copy advanced by a
 * known number of samples, silence, bounds) and the per-utterance cents draws. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "corpus/pitchcopy.h"

/* Noise under syllable-like bursts (a random envelope of 60-250 ms segments), n samples. */
static float *bursts(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    slex_rng rng;
    slex_rng_seed(&rng, seed);
    double gain = 0;
    for (int64_t i = 0, next = 0; i < n; i++) {
        if (i == next) {
            gain = slex_rng_uniform(&rng) < 0.3 ? 0.001 : 0.05 + 0.5 * slex_rng_uniform(&rng);
            next = i + 960 + (int64_t)slex_rng_below(&rng, 3040);
        }
        x[i] = (float)(gain * (2 * slex_rng_uniform(&rng) - 1));
    }
    return x;
}

static void check_lag(void) {
    const int64_t n = 48000;
    float *x = bursts(n + 2000, 5);
    int64_t leads[] = {0, 16, 112, 160, 240, 384};
    for (size_t j = 0; j < sizeof leads / sizeof leads[0]; j++) {
        /* the copy leads the original by leads[j] samples, as sox's output does */
        int lag = slex_pitchcopy_lag(x, n, x + leads[j], n, 25, NULL);
        CHECK(lag == leads[j] / SLEX_PITCHCOPY_HOP, "lead %lld samples: lag %d hops", (long long)leads[j], lag);
        /* a shorter or longer copy: the sums run where both exist */
        lag = slex_pitchcopy_lag(x, n, x + leads[j], n - 5000, 25, NULL);
        CHECK(lag == leads[j] / SLEX_PITCHCOPY_HOP, "shorter copy, lead %lld: lag %d", (long long)leads[j], lag);
        lag = slex_pitchcopy_lag(x, n, x + leads[j], n + 1000, 25, NULL);
        CHECK(lag == leads[j] / SLEX_PITCHCOPY_HOP, "longer copy, lead %lld: lag %d", (long long)leads[j], lag);
    }
    /* between two hops: one of the two neighbours */
    int lag = slex_pitchcopy_lag(x, n, x + 120, n, 25, NULL);
    CHECK(lag == 7 || lag == 8, "lead 120 samples: lag %d", lag);
    /* the search stops at max_lag_hops */
    lag = slex_pitchcopy_lag(x, n, x + 384, n, 10, NULL);
    CHECK(lag >= 0 && lag <= 10, "max 10 hops: lag %d", lag);
    /* a scaled copy (the shift changes the level) is the same lag: the correlation is normalised */
    float *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) y[i] = 0.2f * x[i + 208];
    lag = slex_pitchcopy_lag(x, n, y, n, 25, NULL);
    CHECK(lag == 13, "scaled copy, lead 208: lag %d", lag);
    /* silence has no best lag: 0 */
    memset(y, 0, (size_t)n * sizeof *y);
    CHECK(slex_pitchcopy_lag(x, n, y, n, 25, NULL) == 0, "silent copy: lag 0");
    CHECK(slex_pitchcopy_lag(y, n, x, n, 25, NULL) == 0, "silent original: lag 0");
    /* shorter than one window, and shorter than the lags */
    CHECK(slex_pitchcopy_lag(x, 100, x, 100, 25, NULL) == 0, "100 samples: lag 0");
    free(x);
    free(y);
}

static void check_cents(void) {
    slex_pitchcopy_options o;
    slex_pitchcopy_options_default(&o);
    CHECK(o.cents_min == 300 && o.cents_max == 500 && o.seed == 1 && o.max_lag_hops == 25, "defaults");
    o.cents_min = 300, o.cents_max = 310;
    int seen[11] = {0}, in_range = 1;
    double sum = 0;
    const int draws = 11000;
    for (int k = 0; k < draws; k++) {
        int c = slex_pitchcopy_cents(&o, k);
        if (c < 300 || c > 310) in_range = 0;
        else seen[c - 300]++;
        sum += c;
    }
    CHECK(in_range, "every draw in 300..310");
    for (int v = 0; v < 11; v++)
        CHECK(seen[v] > 850 && seen[v] < 1150, "value %d drawn %d times of %d (uniform: 1000)", 300 + v, seen[v], draws);
    CHECK_CLOSE(sum / draws, 305, 0.15, "mean draw");
    /* a draw depends on (seed, index) only: the same in any order, another for another seed */
    int again = slex_pitchcopy_cents(&o, 4321), differ = 0;
    CHECK(again == slex_pitchcopy_cents(&o, 4321), "the same draw twice");
    slex_pitchcopy_options o2 = o;
    o2.seed = 2;
    for (int k = 0; k < 100; k++) differ += slex_pitchcopy_cents(&o, k) != slex_pitchcopy_cents(&o2, k);
    CHECK(differ > 70, "seed 2 differs from seed 1 on %d of 100 utterances", differ);
    o.cents_min = o.cents_max = -200;
    CHECK(slex_pitchcopy_cents(&o, 9) == -200, "a one-value range");
}

int main(void) {
    check_lag();
    check_cents();
    return check_finish("test_pitchcopy");
}
