/* shard: fairseq's split of a manifest into nshard contiguous parts.
 *
 * fairseq (examples/hubert/simple_kmeans/feature_utils.py, get_shard_range):
 *   start = round(n / nshard * rank); end = round(n / nshard * (rank + 1))
 * in Python floats, round() rounding half to even.  Matching it exactly lets a user mix slex
 * shards with fairseq's {split}_{rank}_{nshard} files. */
#ifndef SLEX_SHARD_H
#define SLEX_SHARD_H

#include <stdint.h>

#include "core/err.h"

/* Range [*start, *end) of shard `rank` of `nshard` over n items.  Fails (as fairseq asserts)
 * when the shard would be empty or the arguments are out of range. */
int slex_shard_range(int64_t n, int nshard, int rank, int64_t *start, int64_t *end, slex_error *err);

#endif
