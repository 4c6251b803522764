/* mfcc: Kaldi-compatible MFCC + deltas, as fairseq's examples/hubert/simple_kmeans/
 * dump_mfcc_feature.py computes them with torchaudio 0.13.1.
 *
 * One frame of the output is [num_ceps MFCC | num_ceps deltas | num_ceps delta-deltas]
 * (39 floats with the defaults), the MFCC being torchaudio.compliance.kaldi.mfcc(wave,
 * sample_frequency=16000, use_energy=False) and the deltas torchaudio.functional.compute_deltas
 * (win_length 2*delta_window+1, replicate padding) applied to the MFCC and then to the deltas.
 *
 * Fixed Kaldi choices (those of fairseq's call; not options): dither 0 (deterministic),
 * remove_dc_offset per frame, preemphasis with the first sample of the frame replicated,
 * povey window (symmetric Hann ^ 0.85), zero-padded FFT of the next power of two (512),
 * power spectrum, snip_edges (only frames that fit entirely), no energy coefficient, no VTLN,
 * no htk_compat, no mean subtraction.  Measured agreement with torchaudio: see tests/test_mfcc.c.
 *
 *   slex_mfcc_options o; slex_mfcc_options_default(&o);
 *   slex_mfcc *m = slex_mfcc_create(&o, &err);
 *   int64_t T = slex_mfcc_num_frames(m, n);             // rows of the output
 *   float *feat = malloc(T * slex_mfcc_dim(m) * sizeof *feat);
 *   slex_mfcc_compute(m, wave, n, feat, &err);           // (T, dim) row-major
 *   slex_mfcc_free(m);
 *
 * Threads: a handle holds its own scratch buffers, so one handle per thread computes
 * concurrently without locks; one handle must not be used by two threads at once.  Creating
 * and freeing handles calls FFTW's planner, which is NOT thread-safe: create/free handles from
 * one thread at a time (or call fftwf_make_planner_thread_safe() first).  Plans are made with
 * FFTW_ESTIMATE (deterministic and fast); FFTW may still reuse wisdom that the process imported
 * or accumulated for the same size, which could select another (equally exact-to-rounding)
 * algorithm. */
#ifndef SLEX_MFCC_H
#define SLEX_MFCC_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"

/* Defaults are Kaldi's / torchaudio 0.13.1's as fairseq uses them. */
typedef struct slex_mfcc_options {
    double sample_rate;     /* Hz of the input waveform; 16000 */
    double frame_length_ms; /* 25 -> window of int(16000*25*0.001) = 400 samples */
    double frame_shift_ms;  /* 10 -> hop of 160 samples */
    int num_mel_bins;       /* 23 triangular mel filters (more than 3) */
    int num_ceps;           /* 13 cepstra including C0 (at most num_mel_bins) */
    double low_freq;        /* 20 Hz: lower edge of the first mel filter */
    double high_freq;       /* 0: Nyquist; negative: offset below Nyquist */
    double preemphasis;     /* 0.97, in [0, 1] */
    double cepstral_lifter; /* 22; 0 disables liftering */
    int delta_window;       /* 2: compute_deltas win_length = 2*delta_window+1 = 5 (at least 1) */
    int with_deltas;        /* 1: append deltas and delta-deltas (dim 3*num_ceps); 0: dim num_ceps */
} slex_mfcc_options;

void slex_mfcc_options_default(slex_mfcc_options *opts);

/* The options registered once: defaults, ranges, --help and the store parameters (the keys of
 * the fields, in struct order).  sample_rate and the frame lengths are internal (fixed by the
 * stage).  Its check is slex_mfcc_options_check. */
extern const slex_option_table slex_mfcc_option_table;

/* The rules across fields that slex_mfcc_create applies (num_ceps <= num_mel_bins, the mel
 * band inside Nyquist, ...), without creating anything; messages name the options. */
int slex_mfcc_options_check(const void *opts, slex_error *err);

typedef struct slex_mfcc slex_mfcc;

/* Validates the options (same checks as torchaudio's asserts) and precomputes the window,
 * the sparse mel bank, the DCT and the FFT plan.  NULL and a message in err on failure. */
slex_mfcc *slex_mfcc_create(const slex_mfcc_options *opts, slex_error *err);

/* Rows of the output for n samples: 0 when n < window (400), else 1 + (n - window) / shift. */
int64_t slex_mfcc_num_frames(const slex_mfcc *m, int64_t n_samples);

/* Floats per output row: 3*num_ceps with deltas (39), else num_ceps. */
int slex_mfcc_dim(const slex_mfcc *m);

/* wave: (n) float32 in [-1, 1] -> out: (T, dim) row-major, T = slex_mfcc_num_frames(m, n).
 * A wave shorter than one window gives T = 0 and returns 0 without touching out (torchaudio
 * raises instead).  Returns 0, or -1 with a message in err.  No allocation. */
int slex_mfcc_compute(slex_mfcc *m, const float *wave, int64_t n, float *out, slex_error *err);

void slex_mfcc_free(slex_mfcc *m);

#endif
