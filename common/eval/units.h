/* units: frame counts of one language's labelled utterances against its phone alignment.
 *
 * A slex_unit_counts gathers, utterance by utterance, the integer counts every unit metric is
 * computed from (eval/unitstats.h): the joint counts of (tone-free phone, unit) and of (tonal
 * phone, unit) over the aligned frames that are not excluded, the frames per unit over all
 * frames, runs of equal units, frames, audio samples and utterances.  Each frame is labelled by
 * the phone at its centre (docs/alignments.md) at the label store's rate, and the utterance's
 * label count must equal the feature stages' frame count for its audio length.
 *
 * The counts live in one int64 buffer (slex_unit_counts_buffer) so that the caller reduces them
 * over MPI ranks with one exact integer sum: results do not depend on the rank count.  The unit
 * count K grows with the largest unit seen; before reducing, every rank grows to the global K
 * (slex_unit_counts_grow). */
#ifndef SLEX_EVAL_UNITS_H
#define SLEX_EVAL_UNITS_H

#include <stdint.h>

#include "core/err.h"
#include "corpus/align.h"
#include "eval/unitstats.h"

typedef struct slex_unit_counts slex_unit_counts;

/* Counts against alignment al (kept by the caller) at frame rate 50 or 100 Hz.  exclude: tone-free
 * phone labels, separated by commas, whose frames do not enter the phone tables (NULL: none). */
slex_unit_counts *slex_unit_counts_create(const slex_alignment *al, int frame_rate_hz, const char *exclude,
                                          slex_error *err);
void slex_unit_counts_free(slex_unit_counts *c);

/* Adds one utterance's units.  Fails (naming the utterance) when its label count differs from the
 * frame count of its aligned length, or a unit is negative; returns 1 (nothing added) when the
 * alignment has no such utterance, so the caller can count and name the missing ones. */
int slex_unit_counts_add(slex_unit_counts *c, const char *utt_id, const int32_t *units, int64_t n, slex_error *err);

/* Grows the unit count to k (k >= current); -1 when out of memory. */
int slex_unit_counts_grow(slex_unit_counts *c, int k, slex_error *err);
int slex_unit_counts_k(const slex_unit_counts *c);
/* The counters, *n of them, in the layout of this K: reduce them in place (MPI_SUM of int64). */
int64_t *slex_unit_counts_buffer(slex_unit_counts *c, int64_t *n);

int slex_unit_counts_phones(const slex_unit_counts *c, int tonal);
const char *slex_unit_counts_phone(const slex_unit_counts *c, int tonal, int id);
/* 1 when tonal labels differ from the tone-free ones (Mandarin finals with tones). */
int slex_unit_counts_has_tones(const slex_unit_counts *c);

/* The joint table (phones, K) row-major as slex_purity_compute takes it; caller frees. */
int64_t *slex_unit_counts_joint(const slex_unit_counts *c, int tonal, slex_error *err);
/* Frames per unit (all frames, excluded ones too), K entries owned by c. */
const int64_t *slex_unit_counts_per_unit(slex_unit_counts *c);

typedef struct slex_unit_totals {
    int64_t utterances;
    int64_t frames;        /* all labelled frames */
    int64_t frames_scored; /* frames that entered the phone tables */
    int64_t runs;          /* runs of equal consecutive units, summed over utterances */
    int64_t samples;       /* audio length at 16 kHz, summed */
} slex_unit_totals;

void slex_unit_counts_totals(const slex_unit_counts *c, slex_unit_totals *t);

#endif
