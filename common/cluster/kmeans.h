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
 * The state and its checkpoint file: kmeans_state.h; the frames and their split over ranks:
 * kmeans_data.h; the initialisation: kmeans_init.h; the mini-batch and Lloyd drivers: here.
 *
 * Checkpoints: slex_kmeans_fit() calls a checkpoint callback at the points kmeans_state.h lists;
 * saving the state there and resuming from it ends with the same codebook, bit for bit, as an
 * uninterrupted run. */
#ifndef SLEX_KMEANS_H
#define SLEX_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/assign.h"
#include "cluster/kmeans_data.h"
#include "cluster/kmeans_state.h"
#include "core/err.h"
#include "core/exactsum.h"

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
