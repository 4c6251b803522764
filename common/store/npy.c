#include "store/npy.h"

#include <string.h>

int slex_npy_write_header_f32(FILE *f, int64_t rows, int64_t cols, const char *path, slex_error *err) {
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)rows, (long long)cols);
    /* magic (6) + version (2) + header length (2) + dict + padding + '\n' is a multiple of 64. */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    unsigned short header_len = (unsigned short)(len + pad + 1);
    unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(header_len & 0xff),
                                (unsigned char)(header_len >> 8)};
    char spaces[64];
    memset(spaces, ' ', sizeof spaces);
    if (fwrite(prefix, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)len, f) != (size_t)len ||
        fwrite(spaces, 1, (size_t)pad, f) != (size_t)pad || fputc('\n', f) == EOF)
        return slex_fail_as(err, SLEX_ERR_IO, "%s: write failed", path);
    return 0;
}
