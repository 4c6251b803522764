/* augment: random perturbations of 16 kHz speech together with its phone alignment, so that
 * training speech is not all clean, level and at espeak-ng's tempo.
 *
 * Four perturbations, applied in this order, each with its own probability:
 *  - speed: tempo and pitch together, as sox `speed` (the audio is read as if sampled at
 *    speed x 16 kHz and resampled to 16 kHz with libsoxr HQ): n samples become
 *    round(n / speed), and every phone boundary b becomes round(b / speed) (1000 / speed_permille
 *    exactly, the same rational as the audio's);
 *  - reverberation: convolution (FFT) with a synthetic room impulse response: a unit direct
 *    path at delay 0 (the alignment stays valid) and, after a pre-delay, Gaussian noise whose
 *    energy decays by 60 dB in RT60 seconds, scaled to a direct-to-reverberant energy ratio
 *    (DRR); the response has unit energy; the output keeps the input's length;
 *  - noise: white, pink (1/f power), brown (1/f^2 power), both band-limited to 20 Hz..8 kHz, or
 *    babble (the sum of 3..7 windows of other speech), added at an SNR: 10 log10 of the mean
 *    power of the (perturbed) speech over the mean power of the noise, over the whole utterance;
 *  - gain: a level change in dB.
 * When augmenting, the result is then limited to a peak of SLEX_AUGMENT_PEAK (scaled down, never
 * clipped); the applied gain includes that limit.
 *
 * Every draw comes from a 64-bit key (slex_synth_augment_key: seed, lang, split, utterance), the
 * parameters first (always all of them, in a fixed order, so one probability does not shift
 * another's values), the noise and the room response from streams of their own: the same key
 * gives the same bytes whatever ran before, on any rank. */
#ifndef SLEX_AUGMENT_H
#define SLEX_AUGMENT_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "corpus/align.h"

#define SLEX_AUGMENT_PEAK 0.99

typedef enum {
    SLEX_NOISE_NONE = 0,
    SLEX_NOISE_WHITE = 1,
    SLEX_NOISE_PINK = 2,
    SLEX_NOISE_BROWN = 3,
    SLEX_NOISE_BABBLE = 4,
} slex_noise_kind;
#define SLEX_NOISE_KINDS 5

const char *slex_noise_kind_name(slex_noise_kind kind); /* "none", "white", "pink", "brown", "babble" */

/* Defaults in comments (the rows of slex_augment_option_table; --help lists them). */
typedef struct slex_augment_options {
    double speed_prob;  /* 0.6: probability of a speed change */
    double speed_min;   /* 0.85: factor range (> 1 is faster and higher), uniform in steps of 0.001 */
    double speed_max;   /* 1.15 */
    double reverb_prob; /* 0.3 */
    double rt60_min;    /* 0.2 s: reverberation time range, uniform */
    double rt60_max;    /* 0.8 s */
    double drr_min;     /* -3 dB: direct-to-reverberant ratio range, uniform */
    double drr_max;     /* 12 dB */
    double noise_prob;  /* 0.4 */
    double snr_min;     /* 5 dB: SNR range, uniform */
    double snr_max;     /* 25 dB */
    char *noise_kinds;  /* "white,pink,brown,babble": the kinds drawn from, with equal probability */
    double gain_prob;   /* 0.5 */
    double gain_min;    /* -15 dB: gain range, uniform */
    double gain_max;    /* 5 dB */
} slex_augment_options;

extern const slex_option_table slex_augment_option_table;
void slex_augment_options_default(slex_augment_options *opts);
/* min <= max for every range, noise_kinds a comma-separated list of known kinds.  The table's
 * check. */
int slex_augment_options_check(const void *opts, slex_error *err);

/* What one utterance gets. */
typedef struct slex_augment_params {
    int speed_permille;    /* 1000: no speed change */
    double rt60, drr_db;   /* rt60 0: no reverberation */
    slex_noise_kind noise; /* SLEX_NOISE_NONE: no noise */
    double snr_db;
    double gain_db;        /* drawn gain, 0 when none */
    double applied_gain_db; /* set by slex_augment_apply: gain_db and the peak limit */
} slex_augment_params;

/* 1 when the options can draw babble noise (a babble bank is needed). */
int slex_augment_uses_babble(const slex_augment_options *opts);
/* Draws the parameters of key's utterance (opts checked). */
void slex_augment_draw(const slex_augment_options *opts, uint64_t key, slex_augment_params *p);

/* Applies p to *samples (n of them at 16 kHz; the buffer may be replaced, malloc'd) and to the
 * phones segs[0..*n_segs) that tile them (rescaled in place by a speed change; *n_segs may
 * shrink when a phone becomes empty).  babble (n_babble samples, slex_synth_babble_bank) is
 * needed only for SLEX_NOISE_BABBLE.  Sets p->applied_gain_db. */
int slex_augment_apply(slex_augment_params *p, uint64_t key, const float *babble, int64_t n_babble, float **samples,
                       int64_t *n, slex_segment *segs, int64_t *n_segs, slex_error *err);

/* ---- the pieces (slex_augment_apply's steps) ---- */

/* Speed change by speed_permille / 1000: *out (malloc'd) holds round(n * 1000 / speed_permille)
 * samples. */
int slex_augment_speed(const float *in, int64_t n, int speed_permille, float **out, int64_t *n_out,
                       slex_error *err);
/* Rescales phones tiling [0, n) to the time axis of that speed change, tiling [0, n_out):
 * boundary b -> round(b * 1000 / speed_permille) (halves up), the last end -> n_out; phones
 * that become empty (shorter than one new sample) are dropped, and silences that become
 * neighbours merge.  Returns the new phone count. */
int64_t slex_augment_rescale_segments(slex_segment *segs, int64_t n_segs, int speed_permille, int64_t n_out);

/* A room impulse response at rate Hz (*h malloc'd, *len samples): h[0] the direct path, then
 * from a pre-delay of 2..10 ms a Gaussian tail with amplitude exp(-3 ln(10) t / rt60) (energy
 * -60 dB at rt60) up to rt60 after it, scaled so that 10 log10(h[0]^2 / tail energy) = drr_db;
 * unit energy in all.  From key alone. */
int slex_augment_room_response(double rt60, double drr_db, int rate, uint64_t key, float **h, int64_t *len,
                               slex_error *err);
/* x[0..n) = the first n samples of x * h (linear convolution by FFT). */
int slex_augment_convolve(float *x, int64_t n, const float *h, int64_t len, slex_error *err);
/* n samples of noise of the kind with unit mean power, from key (babble: windows of babble). */
int slex_augment_noise(slex_noise_kind kind, int64_t n, uint64_t key, const float *babble, int64_t n_babble,
                       float *out, slex_error *err);
/* x += noise scaled so that 10 log10(mean x^2 / mean (scaled noise)^2) = snr_db (x silent: no
 * change). */
void slex_augment_add_noise(float *x, int64_t n, const float *noise, double snr_db);

#endif
