/* pitchcopy: a pitch-shifted copy of an utterance that stays frame-aligned with the original,
 * so that the original's frame labels serve the copy: a higher voice saying the same phones at
 * the same times (as ContentVec's speaker perturbation; docs/base-model.md, session 16).
 *
 * The shift is sox's `pitch` effect (a WSOLA time stretch then a resampling: F0 and formants
 * both move by `cents`, the duration is kept), run as an external program as the synthesisers
 * are (core/proc.h), on the utterance at 16 kHz written as float WAV (exactly the samples slex
 * reads), without dither, so the same input gives the same bytes.  sox's output leads its input
 * by a few milliseconds (6-16 ms, mostly 9-13, at +300..+500 cents on flite's awb and kal16,
 * measured with Debian's sox 14.4.2), which at 50 Hz frames would move about one label in two; so the copy is delayed by the lag that best matches the energy
 * envelopes (slex_pitchcopy_lag), then cut or zero-padded to the original's length.
 *
 * Cents are drawn per utterance from (seed, utterance index) alone, uniformly over the integers
 * cents_min..cents_max, so any order and any rank count give the same copies. */
#ifndef SLEX_PITCHCOPY_H
#define SLEX_PITCHCOPY_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"

typedef struct slex_pitchcopy_options {
    int cents_min;    /* --cents-min: lowest shift (cents; 100 = a semitone); default 300 */
    int cents_max;    /* --cents-max: highest shift; default 500 */
    int64_t seed;     /* --seed: of the per-utterance draws; default 1 */
    int max_lag_hops; /* --max-lag-hops: largest delay searched, in hops of SLEX_PITCHCOPY_HOP
                         samples; default 25 (25 ms) */
} slex_pitchcopy_options;

extern const slex_option_table slex_pitchcopy_option_table;
void slex_pitchcopy_options_default(slex_pitchcopy_options *o);

/* Envelope: the RMS over a window of SLEX_PITCHCOPY_WINDOW samples (25 ms) every
 * SLEX_PITCHCOPY_HOP samples (1 ms). */
enum { SLEX_PITCHCOPY_HOP = 16, SLEX_PITCHCOPY_WINDOW = 400, SLEX_PITCHCOPY_RATE = 16000 };

/* The shift of utterance `index` (0-based line of its manifest), in cents. */
int slex_pitchcopy_cents(const slex_pitchcopy_options *o, int64_t index);

/* The delay, in hops (0..max_lag_hops), that maximises the normalised correlation
 * sum_t e_o[t + L] e_s[t] / sqrt(sum_t e_o[t + L]^2 sum_t e_s[t]^2) of the envelopes of
 * original (n samples) and shifted (m samples), the sums over the hops t where both exist; the
 * smallest such L on ties, 0 when no lag has any energy.  Memory: the two envelopes. */
int slex_pitchcopy_lag(const float *original, int64_t n, const float *shifted, int64_t m, int max_lag_hops,
                       slex_error *err);

typedef struct slex_pitchcopy slex_pitchcopy;

/* Checks that sox is installed (in PATH) and makes a private temporary directory (under $TMPDIR
 * or /tmp).  A missing sox is an input error that names the Debian package. */
slex_pitchcopy *slex_pitchcopy_open(const slex_pitchcopy_options *o, slex_error *err);
/* Removes the temporary directory. */
void slex_pitchcopy_close(slex_pitchcopy *p);

/* The copy of original (n samples at 16 kHz) shifted by `cents`: *copy (malloc'd) holds n
 * samples, sox's output delayed by *lag_samples (a multiple of SLEX_PITCHCOPY_HOP) and cut or
 * zero-padded to n.  Fails naming sox's exit and last message. */
int slex_pitchcopy_utterance(slex_pitchcopy *p, const float *original, int64_t n, int cents, float **copy,
                             int *lag_samples, slex_error *err);

#endif
