#include "model/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"

struct slex_safetensors {
    char *path;
    FILE *file;
    uint64_t data_start; /* 8 + N */
    int n_tensors;
    slex_st_tensor_info *tensors; /* sorted by begin offset */
    int n_metadata;
    char **metadata_keys;
    char **metadata_values;
};

static const struct {
    const char *name;
    int size;
} dtype_table[] = {
    [SLEX_ST_BOOL] = {"BOOL", 1},       [SLEX_ST_U8] = {"U8", 1},     [SLEX_ST_I8] = {"I8", 1},
    [SLEX_ST_F8_E5M2] = {"F8_E5M2", 1}, [SLEX_ST_F8_E4M3] = {"F8_E4M3", 1},
    [SLEX_ST_I16] = {"I16", 2},         [SLEX_ST_U16] = {"U16", 2},   [SLEX_ST_F16] = {"F16", 2},
    [SLEX_ST_BF16] = {"BF16", 2},       [SLEX_ST_I32] = {"I32", 4},   [SLEX_ST_U32] = {"U32", 4},
    [SLEX_ST_F32] = {"F32", 4},         [SLEX_ST_F64] = {"F64", 8},   [SLEX_ST_I64] = {"I64", 8},
    [SLEX_ST_U64] = {"U64", 8},
};
#define N_DTYPES ((int)(sizeof dtype_table / sizeof dtype_table[0]))

const char *slex_st_dtype_name(slex_st_dtype dtype) {
    return (int)dtype >= 0 && (int)dtype < N_DTYPES ? dtype_table[dtype].name : "?";
}

int slex_st_dtype_size(slex_st_dtype dtype) {
    return (int)dtype >= 0 && (int)dtype < N_DTYPES ? dtype_table[dtype].size : 0;
}

static int dtype_from_name(const char *name, slex_st_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(dtype_table[i].name, name) == 0) {
            *out = (slex_st_dtype)i;
            return 0;
        }
    return -1;
}

void slex_safetensors_close(slex_safetensors *st) {
    if (!st) return;
    if (st->file) fclose(st->file);
    for (int i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_metadata; i++) {
        free(st->metadata_keys[i]);
        free(st->metadata_values[i]);
    }
    free(st->metadata_keys);
    free(st->metadata_values);
    free(st->tensors);
    free(st->path);
    free(st);
}

/* A JSON number that is an exact non-negative integer below 2^53 (doubles hold those exactly). */
static int json_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || floor(v) != v) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_tensor(const char *path, const cJSON *item, slex_st_tensor_info *t, slex_error *err) {
    if (!cJSON_IsObject(item))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': entry is not a JSON object", path, t->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': missing or non-string \"dtype\"", path, t->name);
    if (dtype_from_name(dtype->valuestring, &t->dtype) != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': unknown dtype \"%s\"", path, t->name,
                            dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': missing or non-list \"shape\"", path, t->name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > SLEX_ST_MAX_DIMS)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': %d dimensions (at most %d supported)", path, t->name,
                            ndim, SLEX_ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        uint64_t dim;
        if (json_u64(cJSON_GetArrayItem(shape, d), &dim) != 0)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                                path, t->name, d);
        t->shape[d] = (int64_t)dim;
        if (dim != 0 && numel > (UINT64_C(1) << 53) / dim)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': shape is too large", path, t->name);
        numel *= dim;
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_u64(cJSON_GetArrayItem(offsets, 0), &t->begin) != 0 ||
        json_u64(cJSON_GetArrayItem(offsets, 1), &t->end) != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                            path, t->name);
    if (t->end < t->begin)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                            path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end);
    uint64_t expect = numel * (uint64_t)slex_st_dtype_size(t->dtype);
    if (t->end - t->begin != expect)
        return slex_fail_as(
            err, SLEX_ERR_INPUT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s shape needs %llu",
            path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
            (unsigned long long)(t->end - t->begin), slex_st_dtype_name(t->dtype), (unsigned long long)expect);
    return 0;
}

static int parse_metadata(slex_safetensors *st, const cJSON *meta, slex_error *err) {
    if (!cJSON_IsObject(meta))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"__metadata__\" is not a JSON object", st->path);
    int n = cJSON_GetArraySize(meta);
    st->metadata_keys = calloc((size_t)n + 1, sizeof(char *));
    st->metadata_values = calloc((size_t)n + 1, sizeof(char *));
    if (!st->metadata_keys || !st->metadata_values)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", st->path);
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"__metadata__\" value of \"%s\" is not a string", st->path,
                                m->string);
        st->metadata_keys[st->n_metadata] = strdup(m->string);
        st->metadata_values[st->n_metadata] = strdup(m->valuestring);
        st->n_metadata++;
        if (!st->metadata_keys[st->n_metadata - 1] || !st->metadata_values[st->n_metadata - 1])
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", st->path);
    }
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const slex_st_tensor_info *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Tensors must tile [0, data_size) exactly: the reference writer produces that layout and
 * anything else (gaps, overlaps, trailing bytes) means a damaged or hostile file. */
static int check_layout(slex_safetensors *st, uint64_t data_size, slex_error *err) {
    slex_st_tensor_info *t = st->tensors;
    int n = st->n_tensors;
    qsort(t, (size_t)n, sizeof *t, cmp_by_offset);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].begin > pos) {
            if (i == 0)
                return slex_fail_as(err, SLEX_ERR_INPUT, "%s: data of the first tensor '%s' starts at %llu, not 0",
                                    st->path, t[i].name, (unsigned long long)t[i].begin);
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: gap of %llu bytes between tensors '%s' and '%s'", st->path,
                                (unsigned long long)(t[i].begin - pos), t[i - 1].name, t[i].name);
        }
        if (t[i].begin < pos)
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: tensor '%s' data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]", st->path,
                                t[i].name, (unsigned long long)t[i].begin, (unsigned long long)t[i].end, t[i - 1].name,
                                (unsigned long long)t[i - 1].begin, (unsigned long long)t[i - 1].end);
        pos = t[i].end;
    }
    if (pos != data_size)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: tensors end at data offset %llu but the file holds %llu data bytes "
                            "(8 + header %llu + data must equal the file size)",
                            st->path, (unsigned long long)pos, (unsigned long long)data_size,
                            (unsigned long long)(st->data_start - 8));
    /* Duplicate names would make lookups ambiguous; cJSON keeps duplicates, so check. */
    const char **names = malloc(((size_t)n + 1) * sizeof *names);
    if (!names) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", st->path);
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor name '%s' appears twice in the header", st->path, names[i]);
            free(names);
            return -1;
        }
    free(names);
    return 0;
}

static int parse_header(slex_safetensors *st, const char *json, size_t len, uint64_t data_size, slex_error *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: header is not valid JSON (near byte %zu of %zu)", st->path, at,
                            len);
    }
    int rc = 0;
    for (const char *p = end; p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: header has trailing bytes after the JSON object", st->path);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: header is not a JSON object", st->path);
        goto done;
    }
    int n_entries = cJSON_GetArraySize(root);
    st->tensors = calloc((size_t)n_entries + 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", st->path);
        goto done;
    }
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (st->metadata_keys) {
                rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"__metadata__\" appears twice", st->path);
                goto done;
            }
            if ((rc = parse_metadata(st, item, err)) != 0) goto done;
            continue;
        }
        slex_st_tensor_info *t = &st->tensors[st->n_tensors];
        t->name = strdup(item->string);
        if (!t->name) {
            rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", st->path);
            goto done;
        }
        st->n_tensors++;
        if ((rc = parse_tensor(st->path, item, t, err)) != 0) goto done;
    }
    rc = check_layout(st, data_size, err);
done:
    cJSON_Delete(root);
    return rc;
}

slex_safetensors *slex_safetensors_open(const char *path, slex_error *err) {
    slex_safetensors *st = calloc(1, sizeof *st);
    char *json = NULL;
    if (!st || !(st->path = strdup(path))) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto fail;
    }
    st->file = fopen(path, "rb");
    if (!st->file) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fileno(st->file), &sb) != 0) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t file_size = (uint64_t)sb.st_size;
    unsigned char len_bytes[8];
    if (file_size < 8 || fread(len_bytes, 1, 8, st->file) != 8) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: file of %llu bytes is too short for the 8-byte header length", path,
                     (unsigned long long)file_size);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len_bytes[i];
    if (n > SLEX_ST_MAX_HEADER) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                     (unsigned long long)n, (unsigned long long)SLEX_ST_MAX_HEADER);
        goto fail;
    }
    if (n < 2) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: header length %llu is too short for a JSON object", path,
                     (unsigned long long)n);
        goto fail;
    }
    if (8 + n > file_size) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                     (unsigned long long)n, (unsigned long long)file_size);
        goto fail;
    }
    json = malloc((size_t)n);
    if (!json) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for a header of %llu bytes", path,
                     (unsigned long long)n);
        goto fail;
    }
    if (fread(json, 1, (size_t)n, st->file) != (size_t)n) {
        slex_fail_as(err, SLEX_ERR_IO, "%s: short read of the header", path);
        goto fail;
    }
    st->data_start = 8 + n;
    if (parse_header(st, json, (size_t)n, file_size - st->data_start, err) != 0) goto fail;
    free(json);
    return st;
fail:
    free(json);
    slex_safetensors_close(st);
    return NULL;
}

int slex_safetensors_count(const slex_safetensors *st) { return st->n_tensors; }

const slex_st_tensor_info *slex_safetensors_tensor(const slex_safetensors *st, int index) {
    return index >= 0 && index < st->n_tensors ? &st->tensors[index] : NULL;
}

const slex_st_tensor_info *slex_safetensors_find(const slex_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *slex_safetensors_metadata(const slex_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_metadata; i++)
        if (strcmp(st->metadata_keys[i], key) == 0) return st->metadata_values[i];
    return NULL;
}

int slex_safetensors_read_weights(slex_safetensors *st, const char *name, float *dst, slex_error *err) {
    if (slex_safetensors_read_f32(st, name, dst, err)) return -1;
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i]))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: tensor '%s' holds %s at element %lld (of %lld): the weights are damaged", st->path,
                                name,
                                isnan(dst[i]) ? "NaN"
                                : dst[i] > 0  ? "+Inf"
                                              : "-Inf",
                                (long long)i, (long long)t->numel);
    return 0;
}

const char *slex_safetensors_path(const slex_safetensors *st) { return st->path; }

/* IEEE binary16 -> binary32, exact for all inputs (subnormals, inf, NaN). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: renormalise */
        int shift = 0;
        while (!(mant & 0x400)) {
            mant <<= 1;
            shift++;
        }
        mant &= 0x3ff;
        bits = sign | ((uint32_t)(113 - shift) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int slex_safetensors_read_f32(slex_safetensors *st, const char *name, float *dst, slex_error *err) {
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    if (!t) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no tensor named '%s'", st->path, name);
    if (t->dtype != SLEX_ST_F32 && t->dtype != SLEX_ST_F16 && t->dtype != SLEX_ST_BF16 && t->dtype != SLEX_ST_F64)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has dtype %s, which cannot be read as float32",
                            st->path, name, slex_st_dtype_name(t->dtype));
    size_t bytes = (size_t)(t->end - t->begin);
    if (bytes == 0) return 0;
    if (fseeko(st->file, (off_t)(st->data_start + t->begin), SEEK_SET) != 0)
        return slex_fail_as(err, slex_errno_kind(errno), "%s: seek to tensor '%s' failed: %s", st->path, name,
                            strerror(errno));
    if (t->dtype == SLEX_ST_F32) {
        if (fread(dst, 1, bytes, st->file) != bytes)
            return slex_fail_as(err, SLEX_ERR_IO, "%s: short read of tensor '%s'", st->path, name);
        return 0;
    }
    /* Other dtypes convert through a bounded staging buffer. */
    enum { STAGE = 1 << 16 };
    unsigned char *buf = malloc(STAGE * 8);
    if (!buf) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory reading '%s'", st->path, name);
    int esize = slex_st_dtype_size(t->dtype);
    int64_t done = 0;
    while (done < t->numel) {
        int64_t count = t->numel - done < STAGE ? t->numel - done : STAGE;
        if (fread(buf, (size_t)esize, (size_t)count, st->file) != (size_t)count) {
            free(buf);
            return slex_fail_as(err, SLEX_ERR_IO, "%s: short read of tensor '%s'", st->path, name);
        }
        for (int64_t i = 0; i < count; i++) {
            const unsigned char *p = buf + i * esize;
            if (t->dtype == SLEX_ST_F64) {
                double d;
                memcpy(&d, p, sizeof d);
                dst[done + i] = (float)d;
            } else {
                uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
                dst[done + i] = t->dtype == SLEX_ST_F16 ? half_to_float(h) : bf16_to_float(h);
            }
        }
        done += count;
    }
    free(buf);
    return 0;
}

int slex_safetensors_write(const char *path, const slex_st_write_tensor *tensors, int n_tensors,
                           const slex_st_metadata *metadata, int n_metadata, slex_error *err) {
    cJSON *root = cJSON_CreateObject();
    char *json = NULL;
    slex_atomic out = {.f = NULL};
    int rc = -1;
    if (!root) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    if (n_metadata > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < n_metadata; i++)
            if (!cJSON_AddStringToObject(meta, metadata[i].key, metadata[i].value)) meta = NULL;
        if (!meta) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
            goto done;
        }
    }
    uint64_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const slex_st_write_tensor *t = &tensors[i];
        if (strcmp(t->name, "__metadata__") == 0 || cJSON_GetObjectItemCaseSensitive(root, t->name)) {
            slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: tensor name '%s' is reserved or repeated", path, t->name);
            goto done;
        }
        if (t->ndim < 0 || t->ndim > SLEX_ST_MAX_DIMS) {
            slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: tensor '%s' has %d dimensions", path, t->name, t->ndim);
            goto done;
        }
        uint64_t numel = 1;
        cJSON *entry = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = entry ? cJSON_AddArrayToObject(entry, "shape") : NULL;
        if (!shape || !cJSON_AddStringToObject(entry, "dtype", "F32")) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
            goto done;
        }
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) {
                slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: tensor '%s' has a negative dimension", path, t->name);
                goto done;
            }
            numel *= (uint64_t)t->shape[d];
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        }
        cJSON *offs = cJSON_AddArrayToObject(entry, "data_offsets");
        if (!offs) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
            goto done;
        }
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += numel * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto done;
    }
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    if (slex_atomic_fopen(&out, path, err)) goto done;
    FILE *f = out.f;
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len_bytes, 1, 8, f) == 8 && fwrite(json, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n_tensors; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (uint64_t)tensors[i].shape[d];
        ok = fwrite(tensors[i].data, 4, (size_t)numel, f) == (size_t)numel;
    }
    if (!ok) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: write failed: %s", out.tmp, strerror(errno));
        goto done;
    }
    rc = slex_atomic_commit(&out, err);
done:
    if (rc) slex_atomic_abandon(&out);
    cJSON_free(json);
    cJSON_Delete(root);
    return rc;
}
