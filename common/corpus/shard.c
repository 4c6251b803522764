#include "corpus/shard.h"

#include <math.h>

/* Python's round(): nearest, ties to even.  rint() does that in the default rounding mode. */
static int64_t python_round(double x) { return (int64_t)rint(x); }

int slex_shard_range(int64_t n, int nshard, int rank, int64_t *start, int64_t *end, slex_error *err) {
    if (nshard < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "nshard must be at least 1 (got %d)", nshard);
    if (rank < 0 || rank >= nshard)
        return slex_fail_as(err, SLEX_ERR_INPUT, "shard %d is outside 0..%d", rank, nshard - 1);
    double per_shard = (double)n / (double)nshard;
    *start = python_round(per_shard * rank);
    *end = python_round(per_shard * (rank + 1));
    if (*start >= *end)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "shard %d of %d over %lld utterances would be empty (fairseq asserts start < end): "
                            "use fewer shards",
                            rank, nshard, (long long)n);
    return 0;
}
