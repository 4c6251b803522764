/* safetensors: strict reader and F32 writer of the safetensors checkpoint format.
 *
 * File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the raw
 * tensor bytes.  The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the start of the data, end exclusive) plus an optional "__metadata__"
 * object of string values.  Opening a file validates all of it before any tensor is read:
 * N <= 100,000,000 and within the file, the header parses as a JSON object, every dtype is
 * known, every shape is a list of non-negative integers, end - begin == numel * dtype size,
 * the tensors tile the data region from 0 without gaps or overlaps, and 8 + N + last end is
 * exactly the file size.  Error messages name the file and the reason.
 *
 * Reading converts F32, F16, BF16 and F64 to float32 (little-endian hosts only, as the format
 * itself is little endian). */
#ifndef SLEX_SAFETENSORS_H
#define SLEX_SAFETENSORS_H

#include <stdint.h>

#include "core/err.h"

#define SLEX_ST_MAX_DIMS 8
#define SLEX_ST_MAX_HEADER 100000000ULL

typedef enum {
    SLEX_ST_BOOL,
    SLEX_ST_U8,
    SLEX_ST_I8,
    SLEX_ST_F8_E5M2,
    SLEX_ST_F8_E4M3,
    SLEX_ST_I16,
    SLEX_ST_U16,
    SLEX_ST_F16,
    SLEX_ST_BF16,
    SLEX_ST_I32,
    SLEX_ST_U32,
    SLEX_ST_F32,
    SLEX_ST_F64,
    SLEX_ST_I64,
    SLEX_ST_U64,
} slex_st_dtype;

/* "F32", "BF16", ... */
const char *slex_st_dtype_name(slex_st_dtype dtype);
/* Bytes per element. */
int slex_st_dtype_size(slex_st_dtype dtype);

typedef struct slex_st_tensor_info {
    const char *name; /* owned by the handle */
    slex_st_dtype dtype;
    int ndim;
    int64_t shape[SLEX_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte offsets relative to the data region */
} slex_st_tensor_info;

typedef struct slex_safetensors slex_safetensors;

/* Opens and validates path; NULL with err filled on any problem. */
slex_safetensors *slex_safetensors_open(const char *path, slex_error *err);

/* Tensors in the order of their data offsets. */
int slex_safetensors_count(const slex_safetensors *st);
const slex_st_tensor_info *slex_safetensors_tensor(const slex_safetensors *st, int index);

/* NULL when the file holds no tensor of that name. */
const slex_st_tensor_info *slex_safetensors_find(const slex_safetensors *st, const char *name);

/* Value of a "__metadata__" key, NULL when absent. */
const char *slex_safetensors_metadata(const slex_safetensors *st, const char *key);

/* Reads tensor `name` converted to float32 into dst, which holds numel floats.
 * Fails (naming file and tensor) when the tensor is absent, its dtype is not a float type,
 * or the read comes up short. */
int slex_safetensors_read_f32(slex_safetensors *st, const char *name, float *dst, slex_error *err);

/* slex_safetensors_read_f32 for model weights: a NaN or an infinity (also one that a
 * conversion from F64 overflowed to) is an error naming the file, the tensor and the element,
 * since one such weight turns every output into NaN. */
int slex_safetensors_read_weights(slex_safetensors *st, const char *name, float *dst, slex_error *err);

const char *slex_safetensors_path(const slex_safetensors *st);

void slex_safetensors_close(slex_safetensors *st);

/* One float32 tensor to write. */
typedef struct slex_st_write_tensor {
    const char *name;
    int ndim;
    int64_t shape[SLEX_ST_MAX_DIMS];
    const float *data; /* numel floats, C order */
} slex_st_write_tensor;

typedef struct slex_st_metadata {
    const char *key;
    const char *value;
} slex_st_metadata;

/* Writes tensors (in the given order) as F32 with optional string metadata.  The file is
 * written atomically (slex_atomic: temporary name, fsync, rename), so a file at `path` is complete.
 * The header is padded with spaces to a multiple of 8 bytes, as the reference writer does. */
int slex_safetensors_write(const char *path, const slex_st_write_tensor *tensors, int n_tensors,
                           const slex_st_metadata *metadata, int n_metadata, slex_error *err);

#endif
