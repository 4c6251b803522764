/* labels: reading label stores utterance by utterance, alone or two in lockstep.
 *
 * Memory is one utterance's labels (the largest seen), never a shard or the store. */
#ifndef SLEX_EVAL_LABELS_H
#define SLEX_EVAL_LABELS_H

#include <stdint.h>

#include "core/err.h"
#include "store/store.h"

/* Opens a finalized label store (int32 labels), failing with a message naming dir otherwise. */
slex_store *slex_label_store_open(const char *dir, slex_error *err);

/* Called with each utterance's labels; a non-zero return stops the walk and is returned. */
typedef int (*slex_labels_fn)(void *ctx, const char *utt_id, const int32_t *units, int64_t n, slex_error *err);

/* Walks the utterances of the shards first, first + step, ... (a rank's shards: first = rank,
 * step = size; every shard: 0, 1), in order. */
int slex_labels_walk(const slex_store *s, int first, int step, slex_labels_fn fn, void *ctx, slex_error *err);

/* Two labelings of the same utterances, in lockstep. */
typedef int (*slex_labels_pair_fn)(void *ctx, const char *utt_id, const int32_t *a, const int32_t *b, int64_t n,
                                   slex_error *err);

/* Fails, naming both stores and what differs, unless they hold the same utterances with the same
 * frame counts in the same shards (same nshard, ids and lengths); then walks them like
 * slex_labels_walk. */
int slex_labels_walk_pair(const slex_store *a, const slex_store *b, int first, int step, slex_labels_pair_fn fn,
                          void *ctx, slex_error *err);

#endif
