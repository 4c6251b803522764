/* npy: NumPy .npy files (format 1.0), written as a stream: header first with the final shape,
 * then rows as they come, so a shard of any size is exported with bounded memory. */
#ifndef SLEX_NPY_H
#define SLEX_NPY_H

#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

/* Writes the header of a little-endian float32 C-order array of shape (rows, cols). */
int slex_npy_write_header_f32(FILE *f, int64_t rows, int64_t cols, const char *path, slex_error *err);

#endif
