/* hash: FNV-1a 64 (Fowler/Noll/Vo), the one implementation of the hash slex uses for parameter
 * fingerprints, the corpus train/test split, the alignment id index and the k-means checkpoint
 * checksum.
 *
 * The start value is a parameter because two start values are in use and both must stay bit for
 * bit what they are, since files already written depend on them:
 * - SLEX_FNV1A_BASIS is FNV's offset basis (14695981039346656037): the k-means checkpoint
 *   checksum.
 * - SLEX_FNV1A_SLEX_BASIS (1469598103934665603) is the offset basis with its last decimal digit
 *   lost, as slex has always used it for store fingerprints (params.json, shard records: changing
 *   it would make every existing store "made with other parameters"), the sentence split of
 *   slex-synth (changing it would move sentences between train and test) and the alignment index.
 *   It is not FNV-1a's standard value; keep it.
 * Both are pinned against an independent implementation in tests/test_hash.c. */
#ifndef SLEX_HASH_H
#define SLEX_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SLEX_FNV1A_BASIS 0xcbf29ce484222325ULL
#define SLEX_FNV1A_SLEX_BASIS 1469598103934665603ULL
#define SLEX_FNV1A_PRIME 0x100000001b3ULL

/* FNV-1a over n bytes, starting from h: a basis above, or the result of an earlier call to hash
 * data given in pieces. */
uint64_t slex_fnv1a64(uint64_t h, const void *data, size_t n);
/* The same over a NUL-terminated string (the NUL not included). */
uint64_t slex_fnv1a64_str(uint64_t h, const char *s);

#endif
