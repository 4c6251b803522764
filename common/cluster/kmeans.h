/* kmeans: k-means++ initialisation, mini-batch k-means with sklearn 1.2 MiniBatchKMeans
 * semantics, and optional full-batch Lloyd passes; distances through blocked cblas_sgemm.
 *
 * Algorithm (what sklearn.cluster.MiniBatchKMeans.fit does, in the same order of random draws):
 *   1. a validation sample of init_size frames is drawn (with replacement);
 *   2. n_init times: an init sample of init_size frames is drawn (all frames when
 *      init_size >= n), greedy k-means++ runs on it (2 + floor(ln K) local trials per centre,
 *      the candidate that lowers the potential most wins) or, with init = random, K distinct
 *      rows of it are taken; the result is scored by its inertia on the validation sample; the
 *      lowest score wins (first on ties);
 *   3. n_steps = max_iter * n / batch_size mini-batch steps: draw batch_size frames (with
 *      replacement), assign them to the nearest centre, then every centre c that received
 *      b_c > 0 points moves to (c * count_c + sum of its points) / (count_c + b_c), i.e. towards
 *      the batch mean with learning rate b_c / (count_c + b_c); counts grow by b_c;
 *      optional random reassignment of low-count centres (reassignment_ratio, fairseq: 0.0);
 *      early stop when the exponentially weighted average of the mean batch inertia
 *      (alpha = 2 * batch_size / (n + 1), first step ignored) has not improved for
 *      max_no_improvement steps, or (tol > 0) when the squared centre change <= tol * mean
 *      per-dimension variance (sklearn uses the variance of all data, we use the validation
 *      sample's, as memory must not grow with the corpus);
 *   4. lloyd_passes full passes over all frames: every centre becomes the mean of its points
 *      (a centre with no points keeps its position).  The assignments skip the distances that
 *      bounds prove useless (lloyd.h) without changing any label.
 * Differences from sklearn, all deliberate: our own RNG (rng.h) instead of numpy's, so the
 * sampled frames differ; centre updates are computed in double from exact integer sums (below)
 * and rounded to float once; k-means++ samples candidates in exact integer arithmetic on the
 * potentials instead of a float cumsum + searchsorted.
 *
 * Determinism over ranks.  The work of a step is split over ranks in whole blocks of
 * SLEX_ASSIGN_BLOCK rows of the sample (slex_kmeans_slice), and every block goes to cblas_sgemm
 * as exactly that many rows (assign.h): per-row assignments and distances are identical whatever
 * the number of ranks or rows per call.  Sums over rows (per-centre sums of points, inertia,
 * k-means++ potentials) are exact fixed-point sums (core/exactsum.h): any split and any
 * reduction order gives the same bits.  Everything after the reduction (centre update, EWA,
 * early stop, random draws) is computed identically on every rank from identical inputs, so
 * the codebook is bit-identical for any number of ranks.  (OpenBLAS threads split sgemm over
 * rows and columns, never over the inner dimension; we still recommend 1 thread per rank.)
 *
 * Memory per rank: the codebook (K x D floats), the exact sums (K x D int64), and this rank's
 * slice of one mini-batch / init sample / validation sample / Lloyd chunk; never the corpus.
 *
 * Checkpoints.  The whole algorithm state, including the options that shape the trajectory and
 * the RNG state, is the plain struct slex_kmeans_state; slex_kmeans_fit() runs from whatever
 * point the state is at and calls a checkpoint callback after the initialisation, every
 * checkpoint_every steps, after the mini-batch phase, after every Lloyd pass but the last, and
 * once when done (phase DONE: the final codebook).  Saving the
 * state there (slex_kmeans_state_save) and resuming from it (slex_kmeans_state_load +
 * slex_kmeans_fit) ends with the same codebook, bit for bit, as an uninterrupted run. */
#ifndef SLEX_KMEANS_H
#define SLEX_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/assign.h"
#include "core/err.h"
#include "core/exactsum.h"
#include "core/options.h"
#include "core/rng.h"

typedef enum {
    SLEX_KMEANS_INIT_KMEANS_PP = 0, /* greedy k-means++ on the init sample (sklearn's default) */
    SLEX_KMEANS_INIT_RANDOM = 1     /* K distinct rows of the init sample (sklearn's "random") */
} slex_kmeans_init;

typedef struct slex_kmeans_options {
    int k;                     /* number of centres (no default: must be set, >= 1) */
    int max_iter;              /* 100: mini-batch steps = max_iter * n / batch_size */
    int batch_size;            /* 10000 (fairseq); capped at n */
    int init_size;             /* 0 = 3 * batch_size (at least 3 * k); capped at n */
    int n_init;                /* 20 (fairseq) initialisations, the best on the validation sample kept */
    int init;                  /* SLEX_KMEANS_INIT_KMEANS_PP (slex_kmeans_init) */
    int max_no_improvement;    /* 100; 0 disables the early stop on the smoothed inertia */
    double tol;                /* 0.0 (fairseq); > 0 stops on a small squared centre change */
    double reassignment_ratio; /* 0.0 (fairseq): centres with no points are left where they are */
    int lloyd_passes;          /* 0: full-batch Lloyd passes after the mini-batch phase */
    int lloyd_chunk;           /* 65536 frames reduced exactly at a time in Lloyd passes */
    int bounds_mb;             /* 1024: per-rank memory for the bounds that let Lloyd passes skip
                                  distances (lloyd.h); 0 = every distance, every pass.  Does not
                                  change the result. */
    uint64_t seed;             /* 0 */
    int checkpoint_every;      /* 100 mini-batch steps between checkpoint callbacks; 0 = never */
} slex_kmeans_options;

void slex_kmeans_options_default(slex_kmeans_options *opts);

/* The options registered once: defaults, ranges, --help and the run parameters (k .. seed, in
 * the table's order; bounds_mb and checkpoint_every do not change the result); lloyd_chunk is
 * internal.  k is required. */
extern const slex_option_table slex_kmeans_option_table;

/* Where the frames come from.  Frames are numbered 0..n_frames-1 globally (over all shards and
 * stores); fetch copies the given frames, in the given order, into out (n x dim floats,
 * row-major) and returns 0, or returns -1 with a message in err.  Indices may repeat. */
typedef struct slex_kmeans_source {
    void *ctx;
    int64_t n_frames;
    int dim;
    int (*fetch)(void *ctx, const int64_t *frames, int64_t n, float *out, slex_error *err);
} slex_kmeans_source;

typedef enum {
    SLEX_KMEANS_PHASE_INIT = 0,      /* nothing done yet */
    SLEX_KMEANS_PHASE_MINIBATCH = 1, /* centres initialised; `step` mini-batch steps done */
    SLEX_KMEANS_PHASE_LLOYD = 2,     /* mini-batch phase over; `lloyd_pass` passes done */
    SLEX_KMEANS_PHASE_DONE = 3
} slex_kmeans_phase;

/* Why the mini-batch phase ended (slex_kmeans_state.stop_reason; the codebook records the name). */
typedef enum {
    SLEX_KMEANS_STOP_MAX_ITER = 0,       /* ran all n_steps steps */
    SLEX_KMEANS_STOP_NO_IMPROVEMENT = 1, /* max_no_improvement steps without a better smoothed inertia */
    SLEX_KMEANS_STOP_TOL = 2             /* the squared centre change fell to tol_scaled */
} slex_kmeans_stop;

/* "max_iter", "no_improvement" or "tol" (sklearn's words). */
const char *slex_kmeans_stop_name(int stop_reason);

/* The complete algorithm state: copying it (slex_kmeans_state_copy) or saving and loading it
 * reproduces the run exactly.  Fields are read-only for callers except through the functions
 * below; centers and counts are owned by the state. */
typedef struct slex_kmeans_state {
    slex_kmeans_options opts; /* the options the run was started with (resolved, see init) */
    int32_t k, dim;
    int64_t n_frames;
    int32_t batch_size, init_size; /* resolved (capped at n_frames, init_size >= 3k rule) */
    int32_t phase;                 /* slex_kmeans_phase */
    int64_t step;                  /* mini-batch steps done */
    int64_t n_steps;               /* max_iter * n_frames / batch_size */
    int32_t lloyd_pass;            /* Lloyd passes done */
    int32_t has_ewa;               /* ewa_inertia / ewa_inertia_min are set (sklearn: not None) */
    double ewa_inertia, ewa_inertia_min;
    int64_t no_improvement;        /* steps since ewa_inertia_min last improved */
    int64_t since_reassign;        /* frames seen since the last random reassignment */
    double tol_scaled;             /* tol * mean per-dimension variance of the validation sample */
    double init_inertia;           /* validation inertia of the chosen initialisation */
    double last_inertia;           /* mean inertia of the last batch, or of the last Lloyd pass */
    int32_t stop_reason;           /* slex_kmeans_stop */
    double last_computed_fraction; /* share of the distances the last Lloyd pass computed (not saved) */
    slex_rng rng;
    float *centers;  /* (K, D) */
    int64_t *counts; /* (K): points each centre has absorbed in the mini-batch phase */
} slex_kmeans_state;

/* Validates opts against the data size (k > n_frames and k < 1 are errors), resolves batch
 * and init sizes as sklearn does, allocates centres and counts, seeds the RNG. */
int slex_kmeans_state_init(slex_kmeans_state *state, const slex_kmeans_options *opts,
                           int64_t n_frames, int dim, slex_error *err);
void slex_kmeans_state_free(slex_kmeans_state *state);
/* dst must be freed or zero-initialised; it gets its own arrays. */
int slex_kmeans_state_copy(slex_kmeans_state *dst, const slex_kmeans_state *src, slex_error *err);

/* Binary checkpoint: "SLEXKMS2" (format 2), every field in fixed little-endian layout, the arrays, an
 * FNV-1a 64 checksum.  Written to "<path>.tmp" then renamed, so a file that exists is whole. */
int slex_kmeans_state_save(const slex_kmeans_state *state, const char *path, slex_error *err);
/* state must be freed or zero-initialised; on success it owns new arrays. */
int slex_kmeans_state_load(slex_kmeans_state *state, const char *path, slex_error *err);

/* Called by slex_kmeans_fit at checkpoint points: return 0 to continue, 1 to stop the run
 * there (fit then returns 1 and the state can be resumed later), -1 on failure. */
typedef int (*slex_kmeans_checkpoint_fn)(void *ctx, const slex_kmeans_state *state, slex_error *err);

/* Runs the algorithm from wherever `state` is to PHASE_DONE.  Returns 0 when done, 1 when the
 * checkpoint callback asked to stop, -1 on failure (source errors, a non-finite value in a
 * fetched frame, a state that does not match the source).  All ranks call it together. */
int slex_kmeans_fit(slex_kmeans_state *state, const slex_kmeans_source *src,
                    const slex_exact_comm *comm, slex_kmeans_checkpoint_fn checkpoint,
                    void *checkpoint_ctx, slex_error *err);

/* Sum over all frames of the squared distance to the nearest centre (in exact chunks of
 * `chunk` frames, accumulated in double in chunk order: identical on every rank). */
int slex_kmeans_inertia(const float *centers, int k, int dim, const slex_kmeans_source *src,
                        const slex_exact_comm *comm, int chunk, double *inertia, slex_error *err);

/* ---- The pieces a distributed step is made of (used by fit; exposed for stages and tests) ---- */

/* This rank's part [*lo, *hi) of n rows: whole blocks of SLEX_ASSIGN_BLOCK rows, split as
 * evenly as possible in rank order (the last rank may get a partial block). */
void slex_kmeans_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* Adds this rank's rows to the exact sums: sums (K, D) += round(x * 2^exponent_x) per label,
 * counts (K) += 1 per label, *dist_sum += round(dist * 2^exponent_d).  The totals over all
 * ranks (sum_i64) are the same integers for any split of the rows. */
void slex_kmeans_accumulate(const float *x, int64_t n, int dim, const int32_t *labels,
                            const double *dist, int exponent_x, int exponent_d, int64_t *sums,
                            int64_t *counts, int64_t *dist_sum);

/* The mini-batch centre update from the reduced sums: for each centre with counts[c] > 0,
 * centre = (centre * state->counts[c] + sums[c] * 2^-exponent_x) / (state->counts[c] + counts[c]),
 * computed in double and rounded to float; state->counts += counts. */
void slex_kmeans_minibatch_update(slex_kmeans_state *state, const int64_t *sums,
                                  const int64_t *counts, int exponent_x);

#endif
