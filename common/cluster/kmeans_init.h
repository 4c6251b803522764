/* kmeans_init: the initialisation phase of k-means (kmeans.h, step 2 of the algorithm).
 *
 * A validation sample of init_size frames is drawn; n_init times greedy k-means++ (sklearn's
 * _kmeans_plusplus: 2 + floor(ln K) local trials per centre, the candidate that lowers the
 * potential most wins, candidates drawn in exact integer arithmetic on the potentials) runs on
 * an init sample, or init = random takes K distinct rows of it; the initialisation with the
 * lowest inertia on the validation sample wins (first on ties).  All exact over ranks. */
#ifndef SLEX_KMEANS_INIT_H
#define SLEX_KMEANS_INIT_H

#include "cluster/kmeans_data.h"
#include "cluster/kmeans_state.h"
#include "core/err.h"
#include "core/exactsum.h"

/* From PHASE_INIT to PHASE_MINIBATCH at step 0: st->centers, init_inertia and (tol > 0)
 * tol_scaled are set, counts zeroed.  All ranks call it together. */
int slex_kmeans_initialise(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                           slex_error *err);

#endif
