/* lloyd: the assignment step of Lloyd passes, skipping the distances that cannot change a label.
 *
 * Yinyang k-means (Ding et al., ICML 2015): the centres are split once into G groups (k-means of
 * the centres themselves); every frame keeps its label and, per group, a lower bound on the
 * distance to every other centre of the group.  When the centres move, a group's bound shrinks
 * by the largest move in the group; the exact distance u to the frame's (moved) centre is
 * recomputed; a group whose bound still exceeds u cannot hold a nearer centre, so its distances
 * are not computed.  Late Lloyd passes move centres little and skip most groups.
 *
 * The labels are exactly those of slex_assign_nearest (the double-precision argmin, ties to the
 * lowest index) for every frame: the bounds are kept rigorous (rounded outwards, widened by the
 * proven float error of the sgemm scores, slex_assign_score_error), and the frames and groups that
 * are examined go through the same exact decision.  A pass with bounds therefore gives the same
 * codebook as a pass without them, on any number of ranks, and a run resumed from a checkpoint
 * (which does not hold the bounds: they are rebuilt by one full pass) ends with the same bits.
 * Distances of examined groups come from cblas_sgemm on the frames that need the group, gathered.
 *
 * Memory: 4 + 4 G bytes per frame of this rank, within a budget; frames beyond it are assigned
 * with all distances every pass.  Besides: work for 1024 frames (1024 x K and 1024 x D floats).
 * The rounding slack of the bounds (relative 1e-12 on double sums of D terms) holds for
 * D <= 100000.  Not thread-safe; one handle per rank. */
#ifndef SLEX_LLOYD_H
#define SLEX_LLOYD_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct slex_lloyd slex_lloyd;

/* Bounds for n_local frames (this rank's frames of one pass, numbered 0..n_local-1 in pass
 * order) within max_bytes; groups are made from `centers` (K, D). */
slex_lloyd *slex_lloyd_open(const float *centers, int k, int dim, int64_t n_local, size_t max_bytes,
                            slex_error *err);
void slex_lloyd_close(slex_lloyd *l);

/* Starts a pass with these centres (K, D): how far each moved since the previous pass loosens
 * the bounds.  The first pass examines everything. */
void slex_lloyd_begin(slex_lloyd *l, const float *centers);

/* Labels (n) and squared distances (n) of this rank's frames first..first+n-1 of the pass,
 * x (n, D).  Between two begins every frame 0..n_local-1 must be assigned exactly once (a
 * frame's bounds are loosened by the moves of one pass when it is assigned), with the same
 * numbering in every pass. */
void slex_lloyd_assign(slex_lloyd *l, int64_t first, const float *x, int64_t n, int32_t *labels, double *dist);

/* Groups, frames with bounds, and the share of frame-centre distances computed by sgemm in the
 * current pass so far (1 = all). */
typedef struct slex_lloyd_stats {
    int groups;
    int64_t frames_with_bounds;
    double computed_fraction;
} slex_lloyd_stats;
void slex_lloyd_get_stats(const slex_lloyd *l, slex_lloyd_stats *stats);

#endif
