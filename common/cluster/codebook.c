#include "cluster/codebook.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "store/h5util.h"
#include "store/npy.h"

int slex_codebook_write(const char *path, const slex_codebook *cb, slex_error *err) {
    slex_h5_quiet();
    slex_atomic out;
    if (slex_atomic_begin(&out, path, err)) return -1;
    hid_t file = slex_h5_create(out.tmp);
    if (file < 0) return slex_fail_as(err, SLEX_ERR_IO, "%s: cannot create HDF5 file", out.tmp);
    hsize_t centers[2] = {(hsize_t)cb->k, (hsize_t)cb->dim}, counts[1] = {(hsize_t)cb->k};
    hsize_t history[2] = {(hsize_t)cb->n_history, 3};
    int bad = slex_h5_write_array(file, "centers", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, centers, cb->centers) ||
              slex_h5_write_array(file, "counts", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, counts, cb->counts) ||
              slex_h5_write_array(file, "inertia_history", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, history,
                                  cb->history) ||
              slex_h5_set_int(file, "k", cb->k) || slex_h5_set_int(file, "dim", cb->dim) ||
              slex_h5_set_double(file, "frame_rate_hz", cb->frame_rate_hz) ||
              slex_h5_set_string(file, "producer", "slex-kmeans") ||
              slex_h5_set_string(file, "version", SLEX_VERSION) ||
              slex_h5_set_string(file, "params", cb->params ? cb->params : "{}") ||
              slex_h5_set_double(file, "init_inertia", cb->init_inertia) ||
              slex_h5_set_double(file, "final_inertia", cb->final_inertia) ||
              slex_h5_set_int(file, "steps", cb->steps) ||
              slex_h5_set_string(file, "stop_reason", cb->stop_reason ? cb->stop_reason : "");
    if (slex_h5_close_written(file)) bad = 1;
    if (bad) {
        slex_atomic_abandon(&out);
        return slex_fail_as(err, SLEX_ERR_IO, "%s: cannot write the codebook (disk full or no permission?)", path);
    }
    if (slex_atomic_commit(&out, err)) return -1;
    return 0;
}

void slex_codebook_free(slex_codebook *cb) {
    free(cb->centers);
    free(cb->counts);
    free(cb->history);
    free(cb->stop_reason);
    free(cb->params);
    memset(cb, 0, sizeof *cb);
}

int slex_codebook_read(const char *path, slex_codebook *cb, slex_error *err) {
    slex_h5_quiet();
    memset(cb, 0, sizeof *cb);
    if (!slex_path_exists(path)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no such codebook", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not an HDF5 file", path);
    hsize_t dims[2] = {0, 0}, hist[2] = {0, 0};
    int rc = 0;
    if (slex_h5_dims(file, "centers", dims) != 2 || dims[0] < 1 || dims[1] < 1)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: no 2-D dataset 'centers' (not a slex codebook?)", path);
    if (!rc) {
        cb->k = (int)dims[0];
        cb->dim = (int)dims[1];
        cb->centers = malloc(dims[0] * dims[1] * sizeof *cb->centers);
        cb->counts = calloc(dims[0], sizeof *cb->counts);
        if (slex_h5_dims(file, "inertia_history", hist) == 2 && hist[1] == 3) cb->n_history = (int64_t)hist[0];
        cb->history = calloc(hist[0] * 3 + 1, sizeof *cb->history);
        if (!cb->centers || !cb->counts || !cb->history) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    }
    if (!rc && slex_h5_read_array(file, "centers", H5T_NATIVE_FLOAT, 2, dims, cb->centers))
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: cannot read centers", path);
    hsize_t kdim[1] = {dims[0]};
    if (!rc && H5Lexists(file, "counts", H5P_DEFAULT) > 0 &&
        slex_h5_read_array(file, "counts", H5T_NATIVE_INT64, 1, kdim, cb->counts))
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: counts do not match centers", path);
    if (!rc && cb->n_history && slex_h5_read_array(file, "inertia_history", H5T_NATIVE_DOUBLE, 2, hist, cb->history))
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: cannot read inertia_history", path);
    if (!rc) {
        cb->frame_rate_hz = cb->init_inertia = cb->final_inertia = NAN;
        slex_h5_get_double(file, "frame_rate_hz", &cb->frame_rate_hz);
        slex_h5_get_double(file, "init_inertia", &cb->init_inertia);
        slex_h5_get_double(file, "final_inertia", &cb->final_inertia);
        slex_h5_get_int(file, "steps", &cb->steps);
        cb->params = slex_h5_get_string(file, "params");
        cb->stop_reason = slex_h5_get_string(file, "stop_reason");
        for (int64_t i = 0; i < (int64_t)cb->k * cb->dim; i++)
            if (!isfinite(cb->centers[i])) {
                rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: centre %lld has a NaN/Inf value", path, (long long)(i / cb->dim));
                break;
            }
    }
    H5Fclose(file);
    if (rc) slex_codebook_free(cb);
    return rc;
}

int slex_codebook_export_npy(const char *path, const slex_codebook *cb, slex_error *err) {
    slex_atomic out;
    if (slex_atomic_fopen(&out, path, err)) return -1;
    int rc = slex_npy_write_header_f32(out.f, cb->k, cb->dim, out.tmp, err);
    size_t n = (size_t)cb->k * (size_t)cb->dim;
    if (!rc && fwrite(cb->centers, sizeof(float), n, out.f) != n) rc = slex_fail_as(err, SLEX_ERR_IO, "%s: write failed", out.tmp);
    if (rc) slex_atomic_abandon(&out);
    return rc ? -1 : slex_atomic_commit(&out, err);
}
