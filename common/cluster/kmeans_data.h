/* kmeans_data: the frames a k-means step reads, spread over ranks.
 *
 * A step's sample (a mini-batch, the init or validation sample, a Lloyd chunk) is split over
 * ranks in whole blocks of SLEX_ASSIGN_BLOCK rows (slex_kmeans_slice), so every row meets
 * cblas_sgemm at the same position of the same call shape whatever the rank count (assign.h).
 * Frames are checked finite as they are fetched; vectors one rank holds are made known to all
 * through the exact integer sum (their float bit patterns), which reproduces them exactly. */
#ifndef SLEX_KMEANS_DATA_H
#define SLEX_KMEANS_DATA_H

#include <stdint.h>

#include "cluster/kmeans_state.h"
#include "core/err.h"
#include "core/exactsum.h"

/* Where the frames come from.  Frames are numbered 0..n_frames-1 globally (over all shards and
 * stores); fetch copies the given frames, in the given order, into out (n x dim floats,
 * row-major) and returns 0, or returns -1 with a message in err.  Indices may repeat. */
typedef struct slex_kmeans_source {
    void *ctx;
    int64_t n_frames;
    int dim;
    int (*fetch)(void *ctx, const int64_t *frames, int64_t n, float *out, slex_error *err);
} slex_kmeans_source;

/* This rank's part [*lo, *hi) of n rows: whole blocks of SLEX_ASSIGN_BLOCK rows, split as
 * evenly as possible in rank order (the last rank may get a partial block). */
void slex_kmeans_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* Fetches frames and rejects non-finite values (reported with their global frame index). */
int slex_kmeans_fetch_checked(const slex_kmeans_source *src, const int64_t *frames, int64_t n, float *out,
                              slex_error *err);

/* Largest |x[i]| of n floats, largest v[i] (at least 0) of n doubles. */
double slex_kmeans_max_abs(const float *x, int64_t n);
double slex_kmeans_max_of(const double *v, int64_t n);

/* Vectors held by one rank, made known to all: the owner writes the float bit patterns, the
 * others zeros, and the integer sum over ranks reproduces the bits exactly. */
void slex_kmeans_pack_floats(const float *v, int dim, int64_t *out);
void slex_kmeans_unpack_floats(const int64_t *in, int dim, float *v);

/* A sample of frames: every rank knows all its frame numbers, holds its slice of the rows. */
typedef struct slex_kmeans_sample {
    int64_t n_global;  /* rows of the whole sample */
    int64_t lo, hi;    /* this rank's rows */
    int64_t *frames;   /* (n_global) global frame index of every sample row */
    float *x;          /* (hi - lo, D) this rank's rows */
} slex_kmeans_sample;

/* n frames drawn with replacement from st's RNG (every rank draws the same), or all frames in
 * order when draw == 0. */
void slex_kmeans_draw_frames(slex_kmeans_state *st, int64_t n, int draw, int64_t *frames);

/* Draws a sample as slex_kmeans_draw_frames does, then fetches this rank's slice. */
int slex_kmeans_sample_make(slex_kmeans_sample *s, slex_kmeans_state *st, const slex_kmeans_source *src,
                            const slex_exact_comm *comm, int64_t n, int draw, slex_error *err);
void slex_kmeans_sample_free(slex_kmeans_sample *s);

#endif
