#include "core/hash.h"

#include <string.h>

uint64_t slex_fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * SLEX_FNV1A_PRIME;
    return h;
}

uint64_t slex_fnv1a64_str(uint64_t h, const char *s) { return slex_fnv1a64(h, s, strlen(s)); }
