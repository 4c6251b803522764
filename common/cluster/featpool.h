/* featpool: the frames of one or more feature stores as one numbered pool, for k-means.
 *
 * Each store may be thinned to a seeded sample of whole utterances (--percent, as fairseq's
 * learn_kmeans.py samples per shard) and weighted: with weights, store s fills the share
 * w_s / sum(w) of the pool (its frames are repeated or thinned evenly to that size), so that a
 * codebook can be learned on English and Mandarin in a chosen ratio whatever their sizes;
 * without weights the pool is the plain union.  The pool keeps the total number of selected
 * frames, so sklearn's step count (max_iter * n / batch_size) keeps its meaning.
 *
 * Frames are fetched by pool index (kmeans' source interface).  Up to cache_bytes of the
 * selected frames are loaded into memory once (the rest is read row by row from the shard
 * files), so memory is bounded by that budget and never by the corpus.
 *
 * Verification: opening the pool reads every shard of every input once, in file order, and
 * checks its CRC-32 against the store's index (cached inputs are loaded from that same stream);
 * with the checks every shard open makes (size, identity attributes, counts, utterance ids), a
 * damaged or substituted shard is an error naming it before any frame is used.  Later row reads
 * of uncached inputs are not checksummed (a row is too small to carry a CRC). */
#ifndef SLEX_FEATPOOL_H
#define SLEX_FEATPOOL_H

#include <stdint.h>

#include "core/err.h"

typedef struct slex_featpool_input {
    const char *dir; /* a finished feature store */
    double weight;   /* > 0: share of the pool; 0: no weight given */
} slex_featpool_input;

typedef struct slex_featpool slex_featpool;

/* All inputs must share dim and frame rate; with weights, every input must have one. */
slex_featpool *slex_featpool_open(const slex_featpool_input *inputs, int n_inputs, double percent, uint64_t seed,
                                  int64_t cache_bytes, slex_error *err);
void slex_featpool_close(slex_featpool *p);
int64_t slex_featpool_size(const slex_featpool *p); /* frames in the pool */
int slex_featpool_dim(const slex_featpool *p);
double slex_featpool_frame_rate(const slex_featpool *p);
/* Selected frames and utterances of input i (before weighting). */
int64_t slex_featpool_input_frames(const slex_featpool *p, int i);
int64_t slex_featpool_input_utterances(const slex_featpool *p, int i);
/* The store fingerprints, content ids, weights and sample, as a JSON array (malloc'd): what the
 * codebook and its checkpoint are keyed on, so features redone with other contents make them stale. */
char *slex_featpool_describe(const slex_featpool *p);
/* out (n, dim) = the frames with the given pool indices (any order, repeats allowed). */
int slex_featpool_fetch(slex_featpool *p, const int64_t *index, int64_t n, float *out, slex_error *err);

#endif
