/* codebook: the k-means result slex-kmeans writes and slex-label reads (HDF5).
 *
 *   centers          float32 (K, D)
 *   counts           int64 (K)       points each centre absorbed (mini-batch phase)
 *   inertia_history  float64 (n, 3)  step, smoothed (EWA) batch inertia, batch inertia
 *   root attributes  k, dim, frame_rate_hz, producer, version, params (JSON: options, stores,
 *                    weights), init_inertia, final_inertia (mean over all frames, or NaN),
 *                    steps, stop_reason ("max_iter", "no_improvement", "tol")
 * Plain h5py reads it: centers = h5py.File(p)["centers"][:]. */
#ifndef SLEX_CODEBOOK_H
#define SLEX_CODEBOOK_H

#include <stdint.h>

#include "core/err.h"

typedef struct slex_codebook {
    int k, dim;
    float *centers;         /* (k, dim) */
    int64_t *counts;        /* (k) */
    double *history;        /* (n_history, 3) */
    int64_t n_history;
    double frame_rate_hz;
    double init_inertia, final_inertia;
    int64_t steps;
    char *stop_reason;
    char *params;           /* JSON */
} slex_codebook;

/* Writes atomically (slex_atomic: temporary name, fsync, rename); the same codebook gives the same bytes. */
int slex_codebook_write(const char *path, const slex_codebook *cb, slex_error *err);
/* Reads a codebook; *cb is filled with new allocations (slex_codebook_free). */
int slex_codebook_read(const char *path, slex_codebook *cb, slex_error *err);
void slex_codebook_free(slex_codebook *cb);
/* The centres as a .npy (float32, K x D), as fairseq users load them. */
int slex_codebook_export_npy(const char *path, const slex_codebook *cb, slex_error *err);

#endif
