/* unitstats: what a labelling of frames says about the units, computed from exact frame counts.
 *
 * Everything here is a function of integer counts (int64 frame counts, reduced exactly over MPI
 * ranks by the caller), so results do not depend on how the frames were split between ranks.
 *
 * With p(y, z) the joint distribution of reference phone y and unit z over the frames (the
 * HuBERT paper, Hsu et al. 2021, section IV-D):
 *   phone purity   = sum_z max_y p(y, z)      (= E_z[max_y p(y|z)]: how pure a unit is)
 *   cluster purity = sum_y max_z p(y, z)      (= E_y[max_z p(z|y)]: how concentrated a phone is)
 *   PNMI           = I(y; z) / H(y)           (the share of phone uncertainty a unit removes)
 * Logarithms are natural (the ratio does not depend on the base).  Drift between two labelings
 * of the same frames: NMI = I(a; b) / ((H(a) + H(b)) / 2) (sklearn's default, "arithmetic").
 */
#ifndef SLEX_UNITSTATS_H
#define SLEX_UNITSTATS_H

#include <stdint.h>

#include "core/err.h"

typedef struct slex_purity {
    int64_t frames;        /* frames counted */
    double phone_purity;
    double cluster_purity;
    double pnmi;
    double mutual_info;    /* I(y; z), nats */
    double phone_entropy;  /* H(y), nats */
} slex_purity;

/* Purities and PNMI of a joint count table joint (n_phones, n_units), row-major. */
void slex_purity_compute(const int64_t *joint, int n_phones, int n_units, slex_purity *out);

/* Mutual information (nats) and the two marginal entropies of a joint count table (na, nb). */
void slex_joint_information(const int64_t *joint, int na, int nb, double *mutual_info, double *entropy_a,
                            double *entropy_b);

typedef struct slex_usage {
    int units_used;     /* units with at least one frame */
    double perplexity;  /* exp(H(z)) of the unit distribution */
} slex_usage;

void slex_usage_compute(const int64_t *unit_counts, int n_units, slex_usage *out);

/* Runs of one utterance's units: the number of maximal stretches of equal consecutive units
 * (0 for no frames).  Mean run length = frames / runs; deduplicated unit rate = runs / seconds. */
int64_t slex_unit_runs(const int32_t *units, int64_t n);

/* The best one-to-one matching of the rows of a count table (na, nb) to its columns: the
 * assignment that maximises the matched frames (Hungarian algorithm on integers, exact; O(n^3)
 * with n = max(na, nb)).  match[a] = matched column of row a, or -1 when na > nb left it out.
 * Returns the matched frame count, or -1 when out of memory (err set). */
int64_t slex_best_matching(const int64_t *joint, int na, int nb, int32_t *match, slex_error *err);

#endif
