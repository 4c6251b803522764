/* Prints "n nshard rank start end" (or "... error") for the cases test_shard.py sends on stdin. */
#include <stdio.h>

#include "corpus/shard.h"

int main(void) {
    long long n;
    int nshard, rank;
    while (scanf("%lld %d %d", &n, &nshard, &rank) == 3) {
        int64_t start, end;
        if (slex_shard_range(n, nshard, rank, &start, &end, NULL)) printf("%lld %d %d error\n", n, nshard, rank);
        else printf("%lld %d %d %lld %lld\n", n, nshard, rank, (long long)start, (long long)end);
    }
    return 0;
}
