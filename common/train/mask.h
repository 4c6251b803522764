/* mask: the time mask of HuBERT's masked prediction, as fairseq's compute_mask_indices for
 * static span lengths (mask_selection "static", no_mask_overlap false, no padding,
 * require_same_masks true, mask_dropout 0; fairseq's defaults num_mask_ver 2, idc_select_ver 1).
 *
 * Per row of T frames:
 *   num_mask = max(min_masks, (int)(mask_prob * T / mask_length + U)),  U uniform in [0, 1)
 *   span starts: num_mask distinct values drawn from [0, T - min_len), min_len = mask_length,
 *     or T - num_mask - 1 when T - mask_length <= num_mask (fairseq's rule for short rows)
 *   masked frames: the union of [start, start + mask_length) within [0, T) (spans may overlap);
 *     a row masked entirely is an error, as fairseq's ValueError
 * then every row with more masked frames than the smallest count c of the batch keeps c of
 * them, chosen uniformly without replacement, so that all rows mask exactly c frames.
 *
 * Random draws come from slex's generator (core/rng.h) in a fixed order, so a mask is a
 * function of the generator state: row 0 (U, then its starts), row 1, ..., then the cuts of
 * rows 0, 1, ... .  "k distinct values of [0, n)" is a partial Fisher-Yates shuffle of the
 * array 0..n-1 (for j = 0..k-1: swap a[j] with a[j + below(n - j)]; take a[0..k-1]); a cut
 * applies the same to the row's masked frames in increasing order.  fairseq draws with numpy
 * (one generator per row); the distribution is the same, the numbers are slex's own. */
#ifndef SLEX_TRAIN_MASK_H
#define SLEX_TRAIN_MASK_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "core/rng.h"

typedef struct slex_mask_options {
    double mask_prob; /* fraction of frames that start a span (before overlaps); default 0.8
                         (the HuBERT Base recipe); 0 masks nothing */
    int mask_length;  /* frames per span; default 10 */
    int min_masks;    /* at least this many spans per row; default 2 (fairseq HuBERT's value) */
} slex_mask_options;

void slex_mask_options_default(slex_mask_options *opts);
/* The options registered once (--mask-prob, --mask-length); min_masks is not an option. */
extern const slex_option_table slex_mask_option_table;

/* Checks the values (mask_prob in [0, 1], mask_length >= 1, min_masks >= 0). */
int slex_mask_options_validate(const slex_mask_options *opts, slex_error *err);

/* mask (B, T): 1 for a masked frame, 0 otherwise.  Every row gets the same number of masked
 * frames, returned in *n_masked_per_row (may be NULL).  Fails (mask untouched past the failing
 * row) when T < 1 or a row would be entirely masked. */
int slex_mask_compute(const slex_mask_options *opts, int B, int T, slex_rng *rng, uint8_t *mask,
                      int *n_masked_per_row, slex_error *err);

#endif
